#!/usr/bin/env bash
# shellcheck disable=SC2086  # command strings are word-split on purpose
# Real work inside the jail: a syscall-heavy workload (small files created
# and read, grep -r, tar out and back, a C compile, git status on a tree)
# bare, under `aiopsctl exec --profile restrictive` and under bwrap with
# the closest equivalent profile, interleaved in one hyperfine run (the
# machine is noisy: compare ratios from the same run). With BASE set (the
# static build dir of a baseline commit), that build's aiopsctl runs too.
#   bash bench/workload.sh              # RUNS=10 FILES=3000 by default
#   BASE=/path/to/static bash bench/workload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
FILES=${FILES:-3000}
for t in hyperfine bwrap python3 cc git; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing" >&2; exit 1; }
done
export BIN=$PWD/target/release # helpers.sh reads it
# shellcheck source=bench/helpers.sh
source bench/helpers.sh
WS=$(mktemp -d)
OUT=$(mktemp -d)
trap 'rm -rf "$WS" "$OUT"' EXIT
chmod 755 "$WS"
# The workload, inside the workspace so every runner reaches it.
cat >"$WS/work.sh" <<'SH'
#!/bin/sh
# One round: everything under $1/round, removed first.
set -eu
cd "$1"
rm -rf round && mkdir round && cd round
mkdir src
i=0
while [ "$i" -lt "$2" ]; do
  echo "line $i of the workload" >"src/f$i.txt"
  i=$((i + 1))
done
cat src/*.txt >/dev/null
grep -r "line 29" src >/dev/null
tar cf src.tar src
mkdir back && tar xf src.tar -C back
printf '#include <stdio.h>\nint main(void){puts("ok");return 0;}\n' >t.c
cc -O0 -o t t.c
./t >/dev/null
git -C "$1/tree" status --porcelain >/dev/null
SH
# A git tree for `git status` (built once, outside the timed rounds).
mkdir -p "$WS/tree"
python3 - "$WS/tree" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(50):
        with open(f"{root}/d{d}/f{f}.txt", "w") as fh:
            fh.write(f"{d} {f}\n")
PY
git -C "$WS/tree" init -q && git -C "$WS/tree" add -A &&
  git -C "$WS/tree" -c user.name=b -c user.email=b@b commit -qm tree
if [ "$(id -u)" = 0 ]; then chown -R 65534:65534 "$WS"; fi
export AIOPS_PROFILE_PATH=$PWD/bench/profiles:$PWD/profiles
BWRAP=$(bwrap_restrictive "$WS")
run="sh $WS/work.sh $WS $FILES"
# As root the jail runs as the workspace owner; bare and bwrap match it.
as=""
if [ "$(id -u)" = 0 ]; then as="setpriv --reuid=65534 --regid=65534 --clear-groups"; fi
cmds=(-n bare "$as $run"
      -n aiops "$CTL exec --profile restrictive --workspace $WS -- $run"
      -n bwrap "$as $BWRAP $run")
if [ -n "${BASE:-}" ]; then
  cmds+=(-n before "env -u AIOPS_JAILER -u AIOPS_AGENTD $BASE/aiopsctl exec --profile restrictive --workspace $WS -- $run")
fi
echo "== workload: $FILES files, grep, tar, cc, git status (5000 files); $RUNS runs each"
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$OUT/w.json" "${cmds[@]}" >/dev/null
python3 - "$OUT/w.json" <<'PY'
import json, sys, statistics as st
r = {x["command"]: x["times"] for x in json.load(open(sys.argv[1]))["results"]}
bare, bw = st.median(r["bare"]), st.median(r["bwrap"])
print("\n| workload | median ms | vs bare | vs bwrap |")
print("|---|---:|---:|---:|")
for k in r:
    m = st.median(r[k])
    print(f"| {k} | {m*1e3:.1f} | {m/bare:.3f}x | {m/bw:.3f}x |")
PY
