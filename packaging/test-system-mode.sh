#!/usr/bin/env bash
# System-mode test: the aiops Debian package installed with apt into a fresh
# Debian 12 container booted by systemd-nspawn with systemd as PID 1, then
# used as an operator would (docs/operations.md, "Testing system mode").
#
# Usage, as root: packaging/test-system-mode.sh [path/to/aiops.deb]
# Without a .deb it runs packaging/build-deb.sh. Needs debootstrap and
# systemd-container (installed with apt when missing) and the Debian mirror
# apt uses. The minbase root is cached under $AIOPS_SYSTEST_CACHE
# (/var/cache/aiops-systest), keyed by suite, mirror and package list; every
# run boots a fresh copy. Exits non-zero naming the first failed check;
# the container is always stopped and removed.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=bookworm
mirror=${AIOPS_SYSTEST_MIRROR:-http://deb.debian.org/debian}
pkgs=systemd,systemd-sysv,dbus,git,ca-certificates,python3,procps
cache=${AIOPS_SYSTEST_CACHE:-/var/cache/aiops-systest}
key=$(printf '%s %s %s minbase v1' "$suite" "$mirror" "$pkgs" | sha256sum | cut -c1-12)
base=$cache/root-$key

log() { printf 'systest: %s\n' "$*"; }
die() { printf 'systest: FAIL %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

# The cached root: built once, then only copied.
if [ ! -e "$base/.aiops-systest-complete" ]; then
  log "building the $suite minbase root in $base (once)"
  rm -rf "$base" "$base.tmp"
  mkdir -p "$cache"
  debootstrap --variant=minbase --include="$pkgs" "$suite" "$base.tmp" "$mirror" >"$cache/debootstrap-$key.log" 2>&1 ||
    { tail -20 "$cache/debootstrap-$key.log" >&2; die "debootstrap"; }
  # apt inside uses the same mirror; no recommends, like the CI host.
  echo "deb $mirror $suite main" >"$base.tmp/etc/apt/sources.list"
  echo 'APT::Install-Recommends "false";' >"$base.tmp/etc/apt/apt.conf.d/90aiops-systest"
  rm -f "$base.tmp/etc/hostname"
  touch "$base.tmp/.aiops-systest-complete"
  mv "$base.tmp" "$base"
fi
[ "${1:-}" = --prepare-root ] && { log "root ready: $base"; exit 0; }

# The package: given, or built (cargo-deb prints the path it wrote).
deb=${1:-}
if [ -z "$deb" ]; then
  log "building the package (packaging/build-deb.sh)"
  bash packaging/build-deb.sh >/dev/null
  target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  deb=$(find "$target/debian" -maxdepth 1 -name 'aiops_*.deb' -printf '%T@ %p\n' | sort -rn | head -n1 | cut -d' ' -f2-)
fi
[ -f "$deb" ] || die "no package at $deb"
log "package $deb"

work=$(mktemp -d /var/tmp/aiops-systest-XXXXXX)
root=$work/root
nspawn_pid=
pid1=
cleanup() {
  local rc=$?
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # SIGRTMIN+4 asks the container's systemd to power off; then force.
    if [ -n "$pid1" ]; then kill -s RTMIN+4 "$pid1" 2>/dev/null || true; fi
    for _ in $(seq 1 40); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ -s "$work/console.log" ]; then
    echo "systest: last lines of the container's console:" >&2
    tail -n 15 "$work/console.log" >&2 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "copying the root to $root"
cp -a "$base" "$root"
cp "$deb" "$root/var/tmp/aiops.deb"
# Flows and repositories live where the daemon can read them (not /root,
# /home or /tmp: ProtectHome=, PrivateTmp=; docs/operations.md).
mkdir -p "$root/srv/aiops"
cp -r examples/quickstart "$root/srv/aiops/quickstart"
rm -rf "$root/srv/aiops/quickstart/repo"
cat >"$root/srv/aiops/secret.toml" <<'TOML'
schema = 1
name = "secret"
[workspace]
repo = "quickstart/repo"
ref = "main"
[[node]]
id = "token"
kind = "shell"
run = "printf 'len=%s\n' ${#ANTHROPIC_API_KEY}; echo \"value=$ANTHROPIC_API_KEY\"; python3 -c 'import urllib.request; urllib.request.urlopen(\"http://evil.test/\", timeout=10)' || echo egress-refused"
profile = "agent"
timeout = "60s"
[node.caps]
secrets = ["ANTHROPIC_API_KEY"]
TOML
cat >"$root/srv/aiops/fail.toml" <<'TOML'
schema = 1
name = "failing"
[workspace]
repo = "quickstart/repo"
ref = "main"
[[node]]
id = "no"
kind = "shell"
run = "echo failing on purpose; exit 3"
profile = "restrictive"
TOML
cat >"$root/srv/aiops/sleep.toml" <<'TOML'
schema = 1
name = "sleeper"
[workspace]
repo = "quickstart/repo"
ref = "main"
[[node]]
id = "nap"
kind = "shell"
run = "sleep ${NAP:-6}; echo rested"
profile = "restrictive"
timeout = "600s"
TOML
chmod -R a+rX "$root/srv/aiops"

boot() {
  systemd-nspawn -D "$root" --register=no --keep-unit --boot --private-network \
    --console=read-only --machine="aiops-systest-$$" \
    --system-call-filter='landlock_create_ruleset landlock_add_rule landlock_restrict_self' \
    >>"$work/console.log" 2>&1 &
  nspawn_pid=$!
  pid1=
  local _ p
  for _ in $(seq 1 100); do
    # The container's PID 1 (systemd) is a descendant of nspawn.
    for p in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
      [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ] && pid1=$p
    done
    [ -n "$pid1" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || die "boot: systemd-nspawn exited"
    sleep 0.2
  done
  [ -n "$pid1" ] || die "boot: no systemd in the container"
  for _ in $(seq 1 120); do
    state=$(ct systemctl is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    sleep 1
  done
  case $state in running|degraded) ;; *) die "boot: system state '$state' after 120 s" ;; esac
  log "booted (container PID 1 is $pid1 on the host, state $state)"
}

# Run a command inside the container, outside nspawn's seccomp filter.
ct() {
  nsenter --target "$pid1" --all -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}
# As user ops, a member of aiops-admin only.
ops() { ct runuser -u ops -- env HOME=/home/ops "$@"; }
# As user plain, in no aiops group.
plain() { ct runuser -u plain -- env HOME=/home/plain "$@"; }

passed=()
ok() { passed+=("$1"); log "ok   $1"; }
fail() {
  local what=$1; shift
  printf 'systest: FAIL %s: %s\n' "$what" "$*" >&2
  echo "systest: diagnostics:" >&2
  ct journalctl --no-pager -n 40 -u aiops-supervisor -u 'aiops-jailer@*' >&2 2>&1 || true
  exit 1
}
# check NAME CMD...: the command must succeed.
check() {
  local what=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$what"; else fail "$what" "$(printf '%s' "$out" | tail -n 20)"; fi
}
# Poll until CMD succeeds, at most N seconds.
wait_for() {
  local n=$1; shift
  local _
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  return 1
}
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
# "node=state ..." of a run, sorted by node.
node_states() {
  ct aiopsctl status --json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
nodes = d.get("nodes", d) if isinstance(d, dict) else d
print(" ".join(sorted("%s=%s" % (n.get("node", n.get("id")), n["state"]) for n in nodes)))'
}
run_state() { ct aiopsctl status --json "$1" | json 'd.get("state", d.get("run", {}).get("state"))'; }

boot

# --- install, as an operator would --------------------------------------
check "apt install" ct apt-get install -y -q /var/tmp/aiops.deb
ct useradd -m -G aiops-admin ops
ct useradd -m plain
check "units enabled" ct systemctl is-enabled aiops-supervisor.service aiops-jailer.socket
check "units active" wait_for 20 ct systemctl is-active aiops-supervisor.service aiops-jailer.socket
check "ready line in the journal" wait_for 10 \
  sh -c "nsenter --target $pid1 --all journalctl --no-pager -o cat -u aiops-supervisor | grep -q 'aiops-supervisor ready'"
check "API socket group aiops-admin" sh -c "[ \"\$(nsenter --target $pid1 --all stat -c %G /run/aiops/api.sock)\" = aiops-admin ]"
check "no chown warning at start" sh -c "! nsenter --target $pid1 --all journalctl --no-pager -o cat -u aiops-supervisor | grep -q 'could not give the API socket'"

# --- live exposure scores within docs/operations.md's limits -----------
live_exposure() {
  ct systemd-analyze security --no-pager "$1" 2>/dev/null |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p'
}
sup=$(live_exposure aiops-supervisor.service)
jail=$(live_exposure aiops-jailer@0.service)
log "live exposure: aiops-supervisor.service=$sup aiops-jailer@.service=$jail"
check "live exposure within limits (supervisor <= 1.5, jailer <= 3.4)" \
  awk -v s="$sup" -v j="$jail" 'BEGIN { exit !(s != "" && j != "" && s <= 1.5 && j <= 3.4) }'

# --- the quickstart through the API, as root then as an admin ----------
check "make the quickstart repository" ct sh /srv/aiops/quickstart/make-repo.sh /srv/aiops/quickstart/repo
ct chmod -R a+rX /srv/aiops/quickstart/repo
check "lint" ct aiopsctl lint /srv/aiops/quickstart/flow.toml
quickstart() { # $1: ct or ops
  local who=$1 out rc run
  rc=0; out=$("$who" aiopsctl run --json /srv/aiops/quickstart/flow.toml 2>&1) || rc=$?
  [ "$rc" = 75 ] || fail "quickstart as $who pauses at the gate" "exit $rc: $out"
  run=$("$who" aiopsctl status --json --limit 1 | json 'd[0]["id"] if isinstance(d, list) else d["runs"][0]["id"]') ||
    fail "quickstart as $who: run id" "$("$who" aiopsctl status --json --limit 1 2>&1)"
  ok "quickstart as $who pauses at the gate ($run)"
  check "confirm as $who" "$who" aiopsctl confirm "$run" clean
  node_states "$run" | grep -qx 'build=succeeded clean=succeeded test=succeeded' ||
    fail "every node succeeded ($who)" "$(node_states "$run")"
  ok "every node succeeded, git included ($who)"
  check "status as $who" "$who" aiopsctl status "$run"
  check "logs as $who" "$who" aiopsctl logs "$run" test
  "$who" aiopsctl audit --run "$run" | grep -q "node_end $run clean succeeded" ||
    fail "audit as $who" "$("$who" aiopsctl audit --run "$run" 2>&1 | tail -n 5)"
  ok "audit as $who"
  # Every layer, as in local mode: nothing ran weaker under systemd.
  layers=$("$who" aiopsctl audit --json --run "$run" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if r.get("kind") == "node_end" and r.get("node") == "clean":
        print(" ".join(r.get("layers", [])))')
  for want in userns mountns pidns netns pivot_root "landlock:v" "fully enforced" seccomp no_new_privs "caps: none"; do
    case $layers in *"$want"*) ;; *) fail "jail layers as $who" "no '$want' in: $layers" ;; esac
  done
  ok "jail layers as $who: $layers"
  last_run=$run
}
quickstart ct
quickstart ops
ops aiopsctl gc --older-than 0s | grep -q "^removed /var/lib/aiops/workspaces/quickstart/$last_run" ||
  fail "gc as ops" "$(ops aiopsctl gc --older-than 0s 2>&1 | tail -n 5)"
ok "gc as ops (removed the workspace)"

# --- a repository under /root: the daemon cannot see it (ProtectHome=) --
ct sh -c 'mkdir -p /root/qs && cp -r /srv/aiops/quickstart/repo /srv/aiops/quickstart/flow.toml /root/qs/'
check "a flow under /root lints" ct aiopsctl lint /root/qs/flow.toml
rc=0; ct aiopsctl run /root/qs/flow.toml >/dev/null 2>&1 || rc=$?
hrun=$(ct aiopsctl status --json --limit 1 | json 'd[0]["id"] if isinstance(d, list) else d["runs"][0]["id"]')
hstatus=$(ct aiopsctl status "$hrun" 2>&1)
if [ "$rc" != 1 ] || ! printf '%s\n' "$hstatus" | grep -q workspace_failed; then
  fail "a repository under /root fails closed in the daemon (documented)" "exit $rc: $hstatus"
fi
ok "a repository under /root fails closed in the daemon (workspace_failed, documented)"

# --- a secret from /etc/aiops/credentials: injected, redacted; egress ----
secret=aiops-systest-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$secret" >"$root/etc/aiops/credentials/ANTHROPIC_API_KEY"
chmod 0600 "$root/etc/aiops/credentials/ANTHROPIC_API_KEY"
rc=0; out=$(ct aiopsctl run --json /srv/aiops/secret.toml 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "secret flow" "exit $rc: $out"
srun=$(ct aiopsctl status --json --limit 1 | json 'd[0]["id"] if isinstance(d, list) else d["runs"][0]["id"]')
sout=$(ct aiopsctl logs "$srun" token)
printf '%s\n' "$sout" | grep -qx "len=${#secret}" || fail "secret injected (its length)" "$sout"
ok "secret injected (length ${#secret})"
case $sout in *"$secret"*) fail "secret redacted from output" "$sout" ;; esac
ok "secret redacted from the node's output"
if ct sh -c "journalctl --no-pager -o cat; cat /var/lib/aiops/state.db* /var/lib/aiops/audit/* /var/lib/aiops/runs/*/* 2>/dev/null" | grep -aqF "$secret"; then
  fail "secret absent from journal, DB, audit and run files" "found"
fi
ok "secret absent from journal, DB, audit and run files"
printf '%s\n' "$sout" | grep -q egress-refused || fail "egress refused" "$sout"
ct aiopsctl audit --json --run "$srun" | grep -q 'evil.test' ||
  fail "egress denial in the audit" "$(ct aiopsctl audit --json --run "$srun" 2>&1 | tail -n 5)"
ok "egress denial in the audit"

# --- a node that fails leaves no failed jailer instance -----------------
rc=0; ct aiopsctl run /srv/aiops/fail.toml >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "failing node fails the run" "exit $rc"
ok "failing node fails the run (exit 1)"
check "no failed jailer instance after a failing node" sh -c "! nsenter --target $pid1 --all systemctl list-units --failed --no-legend 'aiops-jailer@*' | grep -q ."

# --- restart mid-run drains; kill -9 marks lost, leaves no jail --------
ct aiopsctl submit /srv/aiops/sleep.toml >/dev/null || fail "submit" "sleep flow"
drun=$(ct aiopsctl status --json --limit 1 | json 'd[0]["id"] if isinstance(d, list) else d["runs"][0]["id"]')
wait_for 20 sh -c "[ \"\$(nsenter --target $pid1 --all aiopsctl status --json $drun | grep -c running)\" -gt 0 ]" || true
check "node running before restart" sh -c "nsenter --target $pid1 --all aiopsctl status --json $drun | grep -q running"
check "systemctl restart" ct systemctl restart aiops-supervisor.service
check "restart drained the running node (it finished)" sh -c "[ \"\$(nsenter --target $pid1 --all aiopsctl status --json $drun | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[\"nodes\"][0][\"state\"])')\" = succeeded ]"
check "draining and stopped lines in the journal" sh -c "nsenter --target $pid1 --all journalctl --no-pager -o cat -u aiops-supervisor | grep -q draining &&
  nsenter --target $pid1 --all journalctl --no-pager -o cat -u aiops-supervisor | grep -qx stopped"

ct sed -i 's/^run = .*/run = "sleep 300"/' /srv/aiops/sleep.toml
ct aiopsctl submit /srv/aiops/sleep.toml >/dev/null || fail "submit" "sleep flow"
krun=$(ct aiopsctl status --json --limit 1 | json 'd[0]["id"] if isinstance(d, list) else d["runs"][0]["id"]')
wait_for 20 sh -c "nsenter --target $pid1 --all aiopsctl status --json $krun | grep -q running" ||
  fail "node running before kill -9" "$(ct aiopsctl status "$krun" 2>&1)"
ct systemctl kill -s KILL --kill-who=main aiops-supervisor.service
sleep 1
check "no jail left after kill -9" wait_for 15 sh -c "! nsenter --target $pid1 --all pgrep -u aiops-jail >/dev/null"
check "daemon back after kill -9" wait_for 30 ct systemctl is-active aiops-supervisor.service
check "node marked lost after kill -9" wait_for 15 sh -c "nsenter --target $pid1 --all aiopsctl status --json $krun | grep -q lost"
check "no failed jailer instance" sh -c "! nsenter --target $pid1 --all systemctl list-units --failed --no-legend 'aiops-jailer@*' | grep -q ."

# --- a plain user's local run with the package installed ---------------
ct mkdir -p /var/tmp/plain && ct chown plain: /var/tmp/plain
check "plain user's local aiopsctl exec" ct systemd-run --wait --pipe --quiet -p User=plain -p WorkingDirectory=/var/tmp/plain \
  aiopsctl exec --profile restrictive --workspace /var/tmp/plain -- sh -c 'echo hi from plain'
ct cp -r /srv/aiops/quickstart /var/tmp/plain/qs
ct chown -R plain: /var/tmp/plain/qs
# The daemon's socket refuses plain (not in aiops-admin): said, exit 77, no fall-back.
rc=0; out=$(ct systemd-run --wait --pipe --quiet -p User=plain -p WorkingDirectory=/var/tmp/plain \
  aiopsctl run /var/tmp/plain/qs/flow.toml 2>&1) || rc=$?
if [ "$rc" != 77 ] || ! printf '%s' "$out" | grep -q 'api.sock refuses uid' \
  || ! printf '%s' "$out" | grep -q 'usermod -aG aiops-admin'; then
  fail "plain user's aiopsctl run is told the daemon's socket refuses them" "exit $rc: $out"
fi
ok "plain user's aiopsctl run is told the daemon's socket refuses them"
rc=0; out=$(ct systemd-run --wait --pipe --quiet -p User=plain -p WorkingDirectory=/var/tmp/plain \
  aiopsctl run --local /var/tmp/plain/qs/flow.toml 2>&1) || rc=$?
[ "$rc" = 75 ] || fail "plain user's local aiopsctl run --local pauses at the gate" "exit $rc: $out"
ok "plain user's local aiopsctl run --local pauses at the gate"

# --- status with the daemon stopped; a reboot keeps state --------------
ct systemctl stop aiops-supervisor.service
check "status as root with the daemon stopped" ct aiopsctl status "$last_run"
check "logs and audit as root with the daemon stopped" ct sh -c "aiopsctl logs $last_run test >/dev/null && aiopsctl audit --run $last_run | grep -q node_end"
check "daemon's files still its own" ct sh -c '! find /var/lib/aiops -user root | grep -q .'
# --- the jailer's ceiling: the supervisor's uid gets no more than jailer.toml's profiles ---
# As the supervisor's uid (aiops), with its own profile search path: a
# "restrictive" that also grants every run's workspace read-write. The
# engine compiles the wider plan and sends it through the real socket; the
# jailer compiles its own copy of restrictive and refuses the difference.
# shellcheck disable=SC2016 # expanded in the container
check "jailer.toml installed root-owned" ct sh -c '[ "$(stat -c %U:%a /etc/aiops/jailer.toml)" = root:644 ]'
mkdir -p "$root/srv/evil"
# shellcheck disable=SC2016 # $WORKSPACE is the profile's own variable
sed 's|^write = \["\$WORKSPACE"\]|write = ["$WORKSPACE", "/var/lib/aiops/workspaces"]|' \
  "$root/usr/share/aiops/profiles/restrictive.toml" >"$root/srv/evil/restrictive.toml"
grep -q '"/var/lib/aiops/workspaces"' "$root/srv/evil/restrictive.toml" ||
  fail "make the wider profile" "$(grep -n '^write' "$root/srv/evil/restrictive.toml")"
cat >"$root/srv/aiops/escape.toml" <<'TOML'
schema = 1
name = "escape"
[workspace]
repo = "quickstart/repo"
ref = "main"
[[node]]
id = "escape"
kind = "shell"
run = "touch /var/lib/aiops/workspaces/pwned && echo escaped || echo blocked-by-jail"
profile = "restrictive"
TOML
# As the supervisor's unit runs: uid aiops, group aiops-work, umask 0007.
# shellcheck disable=SC2016 # "$@" expands in the container's sh
as_aiops() { ct runuser -u aiops -g aiops -G aiops-work -- sh -c 'umask 0007; exec "$@"' sh "$@"; }
rc=0; out=$(as_aiops env AIOPS_PROFILE_PATH=/srv/evil aiopsctl run /srv/aiops/escape.toml 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "a wider plan from the supervisor's uid is refused" "exit 0: $out"
check "the wider plan did not run (no file in the workspace root)" ct sh -c '! test -e /var/lib/aiops/workspaces/pwned'
# The run shows the jailer's refusal: the first field that differs.
printf '%s\n' "$out" | grep 'outside the ceiling: plan\.' | grep -q 'profile restrictive yields' ||
  fail "the jailer named the field it refused" "$out"
ok "the jailer named the field it refused"
ok "a wider plan from the supervisor's uid is refused (exit $rc)"
# Control: the same flow under the installed profile runs (the jail blocks
# the write; the lint's gate flags the path outside the node's reach, so
# approve it in advance) ...
rc=0; out=$(as_aiops aiopsctl run --yes --json /srv/aiops/escape.toml 2>&1) || rc=$?
[ "$rc" = 0 ] || fail "the same flow under the installed profile runs" "exit $rc: $out"
ok "the same flow under the installed profile runs"
erun=$(as_aiops aiopsctl status --json --limit 1 | json 'd[0]["id"] if isinstance(d, list) else d["runs"][0]["id"]')
check "the installed profile's jail blocked the write" sh -c "nsenter --target $pid1 --all runuser -u aiops -- aiopsctl logs $erun escape | grep -qx blocked-by-jail"
# ... and the wider profile does what it says where the operator allows it
# (root's local exec on a workspace aiops owns): the attack is real.
ws=$(ct sh -c 'ls -d /var/lib/aiops/workspaces/*/ | head -n 1')
check "the wider profile writes the workspace root when allowed (control)" \
  ct aiopsctl exec --profile /srv/evil/restrictive.toml --workspace "$ws" -- touch /var/lib/aiops/workspaces/pwned
ct rm -f /var/lib/aiops/workspaces/pwned

ct systemctl poweroff || true
for _ in $(seq 1 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
wait "$nspawn_pid" 2>/dev/null || true
nspawn_pid=
boot
check "units active after reboot" wait_for 30 ct systemctl is-active aiops-supervisor.service aiops-jailer.socket
check "state kept across the reboot" ops aiopsctl status "$last_run"

# --- apt remove and purge as docs/operations.md says --------------------
check "apt remove" ct apt-get remove -y -q aiops
check "units stopped after remove" sh -c "! nsenter --target $pid1 --all systemctl is-active aiops-supervisor.service aiops-jailer.socket"
check "state, credentials and users kept after remove" ct sh -c 'test -e /var/lib/aiops/state.db && test -e /etc/aiops/credentials/ANTHROPIC_API_KEY && getent passwd aiops >/dev/null'
check "apt purge" ct apt-get purge -y -q aiops
check "configuration gone after purge" ct sh -c '! test -e /etc/aiops/supervisor.toml'
check "state, credentials and users kept after purge" ct sh -c 'test -e /var/lib/aiops/state.db && test -e /etc/aiops/credentials/ANTHROPIC_API_KEY && getent passwd aiops >/dev/null'
check "no unit state left after purge" ct sh -c '! ls /etc/systemd/system/aiops-* /etc/systemd/system/*/aiops-* 2>/dev/null | grep -q .'

log "summary: ${#passed[@]} checks passed"
log "PASS"
