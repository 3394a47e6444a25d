#!/usr/bin/env bash
# shellcheck disable=SC2086  # $BWRAP is word-split on purpose
# Supervisor throughput and memory: N trivial nodes (default 1000) through
# the daemon with SQLite and the audit log on, parallelism 2, each in its
# own restrictive jail. Side by side in the same run: the same N jails
# started straight from a shell (`aiopsctl exec`, and bwrap, 2 at a time),
# so the ratios say what the scheduler, store and audit add.
#   bash bench/supervisor.sh           # N=1000
#   N=200 bash bench/supervisor.sh     # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
for t in bwrap git python3 curl; do
  command -v "$t" >/dev/null || { echo "bench: $t is missing (apt-get install bubblewrap git python3 curl)" >&2; exit 1; }
done
cargo build --release --workspace --quiet
BIN=$PWD/target/release
# shellcheck source=bench/helpers.sh
source bench/helpers.sh
# Not under /tmp (the jail's /tmp is private) and reachable by nobody.
T=$(mktemp -d /var/tmp/aiops-bench-XXXXXX)
chmod 711 "$T"
cleanup() { [ -n "${D:-}" ] && kill "$D" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
export AIOPS_PROFILE_PATH=$PWD/profiles
mkdir "$T/repo"
git -C "$T/repo" init -q -b main
echo bench > "$T/repo/README"
git -C "$T/repo" add README
GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@b GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@b \
  git -C "$T/repo" commit -q -m bench
cat > "$T/supervisor.toml" <<TOML
schema = 1
state_dir = "$T/state"
parallelism = 2
[api]
socket = "$T/api.sock"
TOML
{
  printf 'schema = 1\nname = "bench"\n[workspace]\nrepo = "%s"\nref = "main"\n' "$T/repo"
  for i in $(seq 1 "$N"); do
    printf '\n[[node]]\nid = "n%d"\nkind = "agent"\nargv = ["/bin/true"]\nprofile = "restrictive"\n' "$i"
  done
} > "$T/flow.toml"
ctl() { local cmd=$1; shift; "$CTL" "$cmd" --config "$T/supervisor.toml" "$@"; }
rss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

"$BIN/aiops-supervisor" --config "$T/supervisor.toml" 2>"$T/daemon.log" & D=$!
for _ in $(seq 100); do [ -S "$T/api.sock" ] && break; sleep 0.1; done
sleep 1
IDLE=$(rss "$D")
RUN=$(ctl submit "$T/flow.toml")
PEAK=0
while :; do
  r=$(rss "$D"); [ "$r" -gt "$PEAK" ] && PEAK=$r
  # Cheap to ask (not the whole run): is any run still active?
  ACTIVE=$(curl -s --unix-socket "$T/api.sock" http://aiops/metrics | awk '/^aiops_runs_active /{print $2}')
  [ "$ACTIVE" = 0 ] && break
  sleep 0.5
done
ctl status "$RUN" --json > "$T/run.json"
read -r SECS OK < <(python3 - "$T/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = sum(n["state"] == "succeeded" for n in r["nodes"])
print((r["updated_at"] - r["created_at"]) / 1000, ok)
PY
)
AFTER=$(rss "$D")
AUDIT=$(cat "$T"/state/audit/*.jsonl | grep -c '"kind":"node_end"')
kill "$D"; wait "$D" 2>/dev/null || true; D=

# The peers get a workspace of their own (the run's is its jail user's, 0700).
WS=$T/peer-ws
mkdir -m 755 "$WS"
if [ "$(id -u)" = 0 ]; then chown 65534:65534 "$WS"; fi
EXEC_START=$EPOCHREALTIME
seq "$N" | xargs -P2 -I{} "$CTL" exec --profile restrictive --workspace "$WS" -- /bin/true
EXEC_SECS=$(python3 -c "print($EPOCHREALTIME - $EXEC_START)")
BWRAP="bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL --clearenv \
  --ro-bind /usr /usr --ro-bind /etc /etc --symlink usr/bin /bin --symlink usr/lib /lib \
  --symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp --bind $WS $WS --chdir $WS --"
BW_START=$EPOCHREALTIME
seq "$N" | xargs -P2 -I{} $BWRAP /bin/true
BW_SECS=$(python3 -c "print($EPOCHREALTIME - $BW_START)")

python3 - "$N" "$SECS" "$OK" "$EXEC_SECS" "$BW_SECS" "$IDLE" "$PEAK" "$AFTER" "$AUDIT" <<'PY'
import sys
n, secs, ok, ex, bw, idle, peak, after, audit = sys.argv[1:]
n, secs, ex, bw = int(n), float(secs), float(ex), float(bw)
rate = lambda s: n / s if s else float("inf")
print(f"\n{n} nodes, parallelism 2 ({ok} succeeded, {audit} audit lines)\n")
print("| path | seconds | nodes/s | vs bwrap |")
print("|---|---:|---:|---:|")
for name, s in [("aiops-supervisor (SQLite + audit + jail per node)", secs),
                ("`aiopsctl exec` ×N, 2 at a time", ex),
                ("bwrap ×N, 2 at a time", bw)]:
    print(f"| {name} | {s:.2f} | {rate(s):.0f} | {rate(s)/rate(bw):.2f}x |")
print("\n| supervisor memory | RSS MB |")
print("|---|---:|")
for name, kib in [("idle", idle), ("peak under load", peak), ("after the run", after)]:
    print(f"| {name} | {int(kib)/1024:.1f} |")
print(f"\ntargets: >= 400 nodes/s (reached {rate(secs):.0f}); <= 20 MB idle (reached {int(idle)/1024:.1f})")
PY
