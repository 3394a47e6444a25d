#!/usr/bin/env bash
# Build the three executables on the path of every jail, aiopsctl,
# aiops-jailer and aiops-agentd, as static musl executables and print the
# directory that holds them. The package ships these builds, and the
# benchmarks measure them (export AIOPS_JAILER / AIOPS_AGENTD to that dir
# and run its aiopsctl). The aiops-supervisor daemon stays a glibc build: it
# resolves the admin group through NSS, and it is started once, not per jail.
#
# Why: `aiopsctl exec` starts aiopsctl and the two helpers, and a dynamic
# glibc executable spends ~0.5 ms of each start in ld.so and in glibc's
# CPU probes (cpuid, each a VM exit under a hypervisor, ~7 us here). A
# static musl executable does neither. docs/performance.md has the numbers.
#
#   packaging/static-build.sh            # release build, prints its dir
# Needs the Rust std for <arch>-unknown-linux-musl (added with rustup when
# missing) and, for the C code aiopsctl links (SQLite, libgit2, zlib),
# musl-gcc from Debian's musl-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
triple="$(uname -m)-unknown-linux-musl"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
  rustup target add "$triple" >&2
fi
command -v musl-gcc >/dev/null ||
  { echo "static-build: needs musl-gcc (apt-get install musl-tools)" >&2; exit 1; }
# The jailer on its own: built with the supervisor, cargo would unify
# aiops-policy's features and link the shell linter, flows and schemas
# into the most trusted binary (docs/jailer.md, "The ceiling").
cargo build --release --locked --quiet --target "$triple" -p aiops-jailer --bin aiops-jailer >&2
cargo build --release --locked --quiet --target "$triple" \
  -p aiops-agentd -p aiops-supervisor --bin aiops-agentd --bin aiopsctl >&2
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
dir=$target/$triple/release
for b in aiopsctl aiops-jailer aiops-agentd; do
  # Static: no PT_INTERP (a dynamic loader) in the program headers. Read
  # whole first: `readelf | grep -q` can end in SIGPIPE under pipefail.
  headers=$(LC_ALL=C readelf -lW "$dir/$b") ||
    { echo "static-build: cannot read $dir/$b" >&2; exit 1; }
  if [[ $headers == *INTERP* ]]; then
    echo "static-build: $dir/$b is not static" >&2
    exit 1
  fi
done
echo "$dir"
