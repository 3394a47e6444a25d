#!/bin/bash
# Throughput and resident memory of aiops-agentd (see agentd/README.md).
#   agentd/bench/throughput.sh [RUNS] [BYTES]
# Interleaves `head -c BYTES /dev/zero | wc -c` with the same head run as an
# agentd node, prints min/median wall time of each and the throughput ratio,
# then agentd's VmRSS/Pss while its node sleeps. Build first:
#   cargo build -p aiops-agentd --release
set -euo pipefail
runs=${1:-10}
bytes=${2:-2G}
root=$(cd "$(dirname "$0")/../.." && pwd)
agentd=${AGENTD:-$root/target/release/aiops-agentd}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

spec() { # argv-json secrets-json
  printf '{"proto_version":1,"argv":%s,"cwd":"/","env":[["PATH","/usr/bin:/bin"]],"secrets":%s,"timeout_ms":600000,"output_bytes":1099511627776,"stream_reports":false,"layers":[]}' "$1" "$2"
}
spec "[\"head\",\"-c\",\"$bytes\",\"/dev/zero\"]" '[]' >"$tmp/copy.json"
spec '["sleep","2"]' '[]' >"$tmp/sleep.json"

now() { date +%s%N; }
bare=() through=()
for _ in $(seq "$runs"); do
  s=$(now); head -c "$bytes" /dev/zero | wc -c >/dev/null; e=$(now); bare+=($((e - s)))
  s=$(now); "$agentd" 3<"$tmp/copy.json" | wc -c >/dev/null; e=$(now); through+=($((e - s)))
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.3f %.3f", a[1]/1e9, a[int((NR+1)/2)]/1e9}'; }
read -r bmin bmed <<<"$(stats "${bare[@]}")"
read -r amin amed <<<"$(stats "${through[@]}")"
echo "bare   head|wc:        min ${bmin}s  median ${bmed}s"
echo "agentd head->agentd|wc: min ${amin}s  median ${amed}s"
awk -v b="$bmin" -v a="$amin" -v bm="$bmed" -v am="$amed" \
  'BEGIN {printf "throughput ratio agentd/bare: %.3f (min)  %.3f (median)\n", b/a, bm/am}'

"$agentd" 3<"$tmp/sleep.json" &
pid=$!
sleep 1
grep -E '^(VmRSS|RssAnon|RssFile)' "/proc/$pid/status" | tr -s ' \t' ' ' | paste -sd' '
grep -E '^(Pss|Private_Dirty|Private_Clean)' "/proc/$pid/smaps_rollup" | tr -s ' \t' ' ' | paste -sd' '
wait "$pid"
