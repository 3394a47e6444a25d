#!/usr/bin/env bash
# shellcheck disable=SC2086  # command strings are word-split on purpose
# Before/after for a change that must not cost speed: `aiopsctl exec` of a
# baseline build and of this tree, with bwrap, interleaved in one hyperfine
# run (the machine is noisy: compare ratios from the same run).
#   BASE=/path/to/dir bash bench/ab.sh   # BASE holds the baseline's static
#                                       # aiopsctl, aiops-jailer, aiops-agentd
# Each aiopsctl finds the helpers next to itself, so AIOPS_JAILER and
# AIOPS_AGENTD must be unset.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-300}
: "${BASE:?set BASE to the static build dir of the baseline (packaging/static-build.sh of the baseline commit)}"
for t in hyperfine bwrap python3; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing" >&2; exit 1; }
done
BIN=$PWD/target/release
# shellcheck source=bench/helpers.sh
source bench/helpers.sh
NEW=$STATIC
# helpers.sh points both at the new builds; each aiopsctl must use its own.
unset AIOPS_JAILER AIOPS_AGENTD
WS=$(mktemp -d)
OUT=$(mktemp -d)
chmod 755 "$WS"
if [ "$(id -u)" = 0 ]; then chown 65534:65534 "$WS"; fi
trap 'rm -rf "$WS" "$OUT"' EXIT
export AIOPS_PROFILE_PATH=$PWD/bench/profiles:$PWD/profiles
BWRAP=$(bwrap_restrictive "$WS")
echo "== spawn /bin/true, $RUNS runs each: before ($BASE), after ($NEW), bwrap"
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/ab.json" \
  -n before "$BASE/aiopsctl exec --profile restrictive --workspace $WS -- /bin/true" \
  -n after "$NEW/aiopsctl exec --profile restrictive --workspace $WS -- /bin/true" \
  -n bwrap "$BWRAP /bin/true" >/dev/null
python3 - "$OUT/ab.json" <<'PY'
import json, sys, statistics as st
r = {x["command"]: sorted(x["times"]) for x in json.load(open(sys.argv[1]))["results"]}
bw = st.median(r["bwrap"])
print("\n| spawn /bin/true | median ms | vs bwrap |")
print("|---|---:|---:|")
for k in ["before", "after", "bwrap"]:
    m = st.median(r[k])
    print(f"| {k} | {m*1e3:.2f} | {m/bw:.2f}x |")
print(f"\nafter / before: {st.median(r['after'])/st.median(r['before']):.3f}x")
PY
