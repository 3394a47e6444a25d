#!/usr/bin/env bash
# Build aiops-jailer and aiops-agentd as static musl executables and print
# the directory that holds them. The package ships these builds, and the
# benchmarks measure them (export AIOPS_JAILER / AIOPS_AGENTD to that dir).
#
# Why: a jail execs both helpers, and a dynamic glibc executable spends
# ~0.5 ms of each start in ld.so and in glibc's CPU-cache probe (cpuid
# leaves 2 and 4, each a VM exit under a hypervisor). A static musl
# executable does neither. docs/performance.md has the numbers.
#
#   packaging/static-helpers.sh            # release build, prints its dir
# Needs the Rust std for <arch>-unknown-linux-musl; with rustup on PATH it
# is added when missing. No C compiler for musl is needed: the helpers link
# no C code.
set -euo pipefail
cd "$(dirname "$0")/.."
triple="$(uname -m)-unknown-linux-musl"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
  rustup target add "$triple" >&2
fi
cargo build --release --locked --quiet --target "$triple" -p aiops-jailer -p aiops-agentd >&2
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
dir=$target/$triple/release
for b in aiops-jailer aiops-agentd; do
  # Static: no PT_INTERP (a dynamic loader) in the program headers.
  if LC_ALL=C readelf -lW "$dir/$b" | grep -q 'INTERP'; then
    echo "static-helpers: $dir/$b is not static" >&2
    exit 1
  fi
done
echo "$dir"
