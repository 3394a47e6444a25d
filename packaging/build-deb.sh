#!/usr/bin/env bash
# Build the aiops Debian package: `packaging/build-deb.sh` from anywhere in
# the tree. Needs cargo-deb (`cargo install cargo-deb`) and the Rust std for
# <arch>-unknown-linux-musl (added with rustup when missing) with musl-gcc
# (musl-tools). Builds the release binaries (aiopsctl, the jailer and agentd
# static), generates the man pages and completions from aiopsctl, then packs
# everything listed in supervisor/Cargo.toml [package.metadata.deb].
# Prints the path of the .deb; `lintian` on it must report no errors.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || { echo "build-deb: needs cargo-deb (cargo install cargo-deb)" >&2; exit 1; }

# A package build never searches the source tree's profiles/ (see
# policy's dev_profiles_dir): the installed binaries must not look for
# profiles under the path they were built at. It builds in its own target
# dir, <target>/package, so target/release (the README's quickstart) and
# the static builds the tests and benchmarks use stay development builds.
# The .deb still lands in <target>/debian.
export AIOPS_PACKAGE_BUILD=1
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export CARGO_TARGET_DIR=$target/package
cargo build --release --locked --workspace --bins
gen=$CARGO_TARGET_DIR/release/pkg
rm -rf "$gen" && mkdir -p "$gen"
# aiopsctl, the jailer and agentd ship as static musl builds: every
# `aiopsctl exec` starts all three, and each starts ~0.5 ms faster than a
# dynamic glibc build. The daemon stays the glibc build (NSS for groups).
static=$(bash packaging/static-build.sh)
cp "$static/aiopsctl" "$static/aiops-jailer" "$static/aiops-agentd" "$gen/"
ctl=$gen/aiopsctl
# One page per subcommand (aiopsctl.1, aiopsctl-exec.1, ...): aiopsctl(1)
# points to each of them.
"$ctl" man --dir "$gen/man1" >/dev/null
gzip -9n "$gen"/man1/*.1
gzip -9n <packaging/man/aiops-supervisor.8 >"$gen/aiops-supervisor.8.gz"
"$ctl" completions bash >"$gen/aiopsctl.bash"
"$ctl" completions zsh >"$gen/_aiopsctl"
"$ctl" completions fish >"$gen/aiopsctl.fish"

mkdir -p "$target/debian"
cargo deb -p aiops-supervisor --no-build --locked --output "$target/debian" "$@"
