#!/usr/bin/env bash
# Egress proxy benchmark (docs/performance.md, "Egress proxy").
#
# Builds a test host in a network namespace of its own (veth to the host),
# serves SIZE bytes per request from it with sendfile(2), and measures
#   1. throughput of one SIZE download: curl on the host straight to the test
#      host ("direct") vs curl in an `allowlist` jail through the egress proxy
#      in aiopsctl ("proxy"), plain HTTP and CONNECT;
#   2. connection set-up: time to the first byte of a tiny response, N times,
#      direct vs through the proxy (in one jail, so jail start-up is not counted).
# Needs root, ip, python3, curl; uses the static release builds the package
# ships (bench/helpers.sh; AIOPS_BENCH_BUILD=dynamic for the glibc ones).
#
# Usage: sudo bench/egress.sh [SIZE_MIB=1024] [RUNS=3] [N=50]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
n=${3:-50}
[ "$(id -u)" = 0 ] || { echo "egress.sh: needs root (ip netns)" >&2; exit 1; }

cargo build --release -q -p aiops-supervisor -p aiops-jailer -p aiops-agentd
# shellcheck disable=SC2034  # read by bench/helpers.sh
BIN=$PWD/target/release
# shellcheck source=bench/helpers.sh
source bench/helpers.sh
ctl=$CTL

id=$(( $$ % 200 + 20 ))
ns=aiops-egb-$$
veth=aegb$$
host=10.79.$id.2
dir=$(mktemp -d /var/tmp/aiops-egress-bench.XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip link del "$veth" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$ns"
ip link add "$veth" type veth peer name "${veth}p"
ip link set "${veth}p" netns "$ns"
ip addr add "10.79.$id.1/24" dev "$veth"
ip link set "$veth" up
ip netns exec "$ns" ip addr add "$host/24" dev "${veth}p"
ip netns exec "$ns" ip link set "${veth}p" up
ip netns exec "$ns" ip link set lo up

# /big: SIZE bytes by sendfile from a sparse file; anything else: 2 bytes.
truncate -s "${size_mib}M" "$dir/big"
cat >"$dir/server.py" <<'EOF'
import os, socket, sys, threading
host, big = sys.argv[1], sys.argv[2]
size = os.path.getsize(big)
def serve(c):
    with c:
        head = b""
        while b"\r\n\r\n" not in head:
            b = c.recv(4096)
            if not b:
                return
            head += b
        if head.split(b" ")[1] == b"/big":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
            with open(big, "rb") as f:
                c.sendfile(f)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, 8000))
s.listen(64)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
ip netns exec "$ns" python3 "$dir/server.py" "$host" "$dir/big" & pids+=($!)
# TLS is not needed for CONNECT's cost: the proxy copies opaque bytes either way.
for _ in $(seq 50); do curl -s -o /dev/null "http://$host:8000/" && break; sleep 0.1; done

cat >"$dir/bench.toml" <<EOF
schema = 1
name = "bench"
description = "egress benchmark"
extends = "agent"
[net]
mode = "allowlist"
allow = ["bulk.test:8000"]
allow_private = [{ cidr = "10.79.$id.0/24", reason = "the benchmark's test host" }]
hosts = { "bulk.test" = "$host" }
[limits]
timeout = "30m"
EOF
mkdir -m 777 "$dir/ws"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
jail() { (cd "$dir/ws" && AIOPS_PROFILE_PATH=$PWD/profiles "$ctl" exec --profile "$dir/bench.toml" --workspace "$dir/ws" -- "$@"); }
AIOPS_PROFILE_PATH=$PWD/profiles
export AIOPS_PROFILE_PATH

speed='%{speed_download}\n'
direct=() proxy=() tunnel=()
for _ in $(seq "$runs"); do
  direct+=("$(curl -s -o /dev/null -w "$speed" "http://$host:8000/big")")
  proxy+=("$(jail curl -s -o /dev/null -w "$speed" http://bulk.test:8000/big 2>/dev/null)")
  tunnel+=("$(jail curl -s -p -o /dev/null -w "$speed" http://bulk.test:8000/big 2>/dev/null)")
done
d=$(printf '%s\n' "${direct[@]}" | median)
p=$(printf '%s\n' "${proxy[@]}" | median)
t=$(printf '%s\n' "${tunnel[@]}" | median)

ttfb='%{time_starttransfer}\n'
loop="for i in \$(seq $n); do curl -s -o /dev/null -w '$ttfb' http://bulk.test:8000/small; done"
lat_direct=$(for _ in $(seq "$n"); do curl -s -o /dev/null -w "$ttfb" "http://$host:8000/small"; done | median)
lat_proxy=$(jail sh -c "$loop" 2>/dev/null | median)
loop_t="for i in \$(seq $n); do curl -s -p -o /dev/null -w '$ttfb' http://bulk.test:8000/small; done"
lat_tunnel=$(jail sh -c "$loop_t" 2>/dev/null | median)

mib() { awk -v b="$1" 'BEGIN {printf "%.0f MiB/s", b / 1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
ms() { awk -v s="$1" 'BEGIN {printf "%.2f ms", s * 1000}'; }
echo "| path | ${size_mib} MiB download (median of $runs) | vs direct | time to first byte (median of $n) |"
echo "|---|---|---|---|"
echo "| direct (host → test host) | $(mib "$d") | 1.00 | $(ms "$lat_direct") |"
echo "| proxy, plain HTTP (jail → aiopsctl → test host) | $(mib "$p") | $(ratio "$p" "$d") | $(ms "$lat_proxy") |"
echo "| proxy, CONNECT tunnel | $(mib "$t") | $(ratio "$t" "$d") | $(ms "$lat_tunnel") |"
