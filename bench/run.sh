#!/usr/bin/env bash
# shellcheck disable=SC2086,SC2013  # pid lists and command strings are word-split on purpose
# Spawn latency, output throughput and per-jail memory of `aiopsctl exec`
# against bwrap and `unshare`, measured side by side in one run (the machine
# is noisy: compare the ratios, not the absolute numbers).
#   bash bench/run.sh            # full run (~2-3 minutes)
#   RUNS=100 bash bench/run.sh   # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-300}
for t in hyperfine bwrap unshare python3; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing (apt-get install hyperfine bubblewrap util-linux python3)" >&2; exit 1; }
done
cargo build --release --workspace --quiet
BIN=$PWD/target/release
# shellcheck source=bench/helpers.sh
source bench/helpers.sh
# The floor: a static program that only creates the jail's namespaces and
# id maps, then runs the command (jailer/examples/floor.rs).
cargo build --release --quiet --target "$(uname -m)-unknown-linux-musl" -p aiops-jailer --example floor
FLOOR=$STATIC/examples/floor
WS=$(mktemp -d)
OUT=$(mktemp -d)
# A jail never runs as host root: as root, give the workspace to nobody.
chmod 755 "$WS"
if [ "$(id -u)" = 0 ]; then chown 65534:65534 "$WS"; fi
trap 'rm -rf "$WS" "$OUT"' EXIT
export AIOPS_PROFILE_PATH=$PWD/bench/profiles:$PWD/profiles
AIOPS="$CTL exec --profile restrictive --workspace $WS --"
BWRAP=$(bwrap_restrictive "$WS")

echo "== spawn: /bin/true, $RUNS runs each"
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/spawn.json" \
  -n bare "/bin/true" \
  -n floor "$FLOOR /bin/true" \
  -n aiopsctl "$AIOPS /bin/true" \
  -n bwrap "$BWRAP /bin/true" \
  -n unshare "unshare -Urnmpf /bin/true" >/dev/null

echo "== throughput: 2 GiB of stdout"
SIZE=$((2 << 30))
hyperfine --warmup 1 --runs 5 --export-json "$OUT/tput.json" \
  -n bare "head -c $SIZE /dev/zero | wc -c" \
  -n aiopsctl "AIOPS_PROFILE_PATH=$AIOPS_PROFILE_PATH $CTL exec --profile bench --workspace $WS -- head -c $SIZE /dev/zero | wc -c" \
  >/dev/null

echo "== memory: one jail holding sleep"
mem() { # sum Rss and Pss (KiB) of the given pids
  for p in "$@"; do awk '/^Rss:/{r+=$2} /^Pss:/{s+=$2} END{print r, s}' "/proc/$p/smaps_rollup"; done |
    awk '{r+=$1; s+=$2} END{print r, s}'
}
descendants() { local p=$1; echo "$p"; for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do descendants "$c"; done; }
$AIOPS sleep 30 & A=$!
sleep 1
ALL=$(descendants $A | sort -u)
comm_is() { [ "$(cat /proc/"$1"/comm 2>/dev/null)" = "$2" ]; }
NODE=$(for p in $ALL; do if comm_is "$p" sleep; then echo "$p"; fi; done)
OVER=$(for p in $ALL; do if [ "$p" != "$NODE" ]; then echo "$p"; fi; done)
read -r A_RSS A_PSS < <(mem $OVER)
AGENT=$(for p in $OVER; do if ! comm_is "$p" aiopsctl; then echo "$p"; fi; done)
read -r J_RSS J_PSS < <(mem $AGENT)
kill $A; wait $A 2>/dev/null || true
$BWRAP sleep 30 & B=$!
sleep 1
ALL=$(descendants $B | sort -u)
OVER=$(for p in $ALL; do if ! comm_is "$p" sleep; then echo "$p"; fi; done)
read -r B_RSS B_PSS < <(mem $OVER)
kill $B; wait $B 2>/dev/null || true

python3 - "$OUT" "$A_RSS" "$A_PSS" "$J_RSS" "$J_PSS" "$B_RSS" "$B_PSS" <<'PY'
import json, sys, statistics as st
out, a_rss, a_pss, j_rss, j_pss, b_rss, b_pss = sys.argv[1], *map(int, sys.argv[2:])
def load(name):
    return {r["command"]: sorted(r["times"]) for r in json.load(open(f"{out}/{name}.json"))["results"]}
def p95(t): return t[min(len(t) - 1, int(len(t) * 0.95))]
s = load("spawn")
print("\n| spawn /bin/true | median ms | p95 ms | vs bwrap |")
print("|---|---:|---:|---:|")
bw = st.median(s["bwrap"])
for k in ["bare", "floor", "aiopsctl", "bwrap", "unshare"]:
    m = st.median(s[k])
    print(f"| {k} | {m*1e3:.2f} | {p95(s[k])*1e3:.2f} | {m/bw:.2f}x |")
t = load("tput")
size = 2 << 30
print("\n| 2 GiB stdout | median s | GB/s | vs bare |")
print("|---|---:|---:|---:|")
tb = st.median(t["bare"])
for k in ["bare", "aiopsctl"]:
    m = st.median(t[k])
    print(f"| {k} | {m:.2f} | {size/m/1e9:.2f} | {tb/m:.2f}x |")
print("\n| one jail holding sleep | RSS KiB | PSS KiB |")
print("|---|---:|---:|")
print(f"| aiops: jailer + agentd (per-jail overhead) | {j_rss} | {j_pss} |")
print(f"| aiops: with the aiopsctl client | {a_rss} | {a_pss} |")
print(f"| bwrap processes | {b_rss} | {b_pss} |")
print(f"\naiopsctl exec / bwrap median spawn: {st.median(s['aiopsctl'])/bw:.2f}x (target <= 0.6x)")
print(f"floor (namespaces + id maps + exec only) / bwrap: {st.median(s['floor'])/bw:.2f}x")
print(f"byte counting vs bare reader: {tb/st.median(t['aiopsctl']):.2f}x (target >= 0.9x)")
print(f"per-jail overhead PSS: {j_pss/1024:.2f} MB (target <= 1.5 MB)")
PY
