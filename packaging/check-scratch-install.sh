#!/usr/bin/env bash
# Install a built aiops .deb into a scratch root with `dpkg --root` (the
# maintainer scripts run with $DPKG_ROOT set; nothing on the host changes)
# and check that every path the units and the configuration name is there,
# with the users and groups they run as.
# Usage: packaging/check-scratch-install.sh target/debian/aiops_*.deb [ROOT]
set -euo pipefail
deb=${1:?usage: $0 path/to/aiops.deb [root]}
root=${2:-$(mktemp -d /var/tmp/aiops-root-XXXXXX)}
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-script-chrootless --force-depends -i "$deb"
echo "installed into $root"

fail=0
check() {
  if [ -e "$root$1" ]; then echo "ok       $1${2:+ ($2)}"; else echo "MISSING  $1${2:+ ($2)}"; fail=1; fi
}
units=$root/usr/lib/systemd/system
for u in "$units"/aiops*; do
  name=$(basename "$u")
  # Executables, writable paths and credential sources the unit names.
  while IFS= read -r p; do check "$p" "$name"; done < <(
    sed -n -e 's/^ExecStart=\([^ ]*\).*/\1/p' \
           -e 's/^ReadWritePaths=-\{0,1\}\(.*\)/\1/p' \
           -e 's/^LoadCredential=[^:]*:\(.*\)/\1/p' "$u")
  # The socket's directory (the socket itself appears when systemd binds it).
  while IFS= read -r p; do check "$(dirname "$p")" "$name"; done < <(sed -n 's/^ListenStream=\(.*\)/\1/p' "$u")
  # --config FILE
  while IFS= read -r p; do check "$p" "$name"; done < <(sed -n 's/^ExecStart=.*--config \([^ ]*\).*/\1/p' "$u")
done
for p in /usr/bin/aiopsctl /usr/libexec/aiops/aiops-agentd /usr/share/aiops/profiles/restrictive.toml \
         /usr/lib/sysusers.d/aiops.conf /usr/lib/tmpfiles.d/aiops.conf /usr/share/aiops/apparmor/aiops-jailer \
         /usr/share/man/man1/aiopsctl.1.gz /usr/share/man/man1/aiopsctl-exec.1.gz \
         /usr/share/man/man1/aiopsctl-profile-show.1.gz /usr/share/man/man8/aiops-supervisor.8.gz \
         /usr/share/bash-completion/completions/aiopsctl /usr/share/doc/aiops/copyright \
         /usr/share/doc/aiops/docs/operations.md /usr/share/doc/aiops/examples/quickstart/flow.toml; do
  check "$p"
done
for u in aiops aiops-jail; do
  if grep -q "^$u:" "$root/etc/passwd" 2>/dev/null; then echo "ok       user $u"; else echo "MISSING  user $u"; fail=1; fi
done
for g in aiops aiops-jail aiops-work aiops-admin; do
  if grep -q "^$g:" "$root/etc/group" 2>/dev/null; then echo "ok       group $g"; else echo "MISSING  group $g"; fail=1; fi
done
# Every relative link in the shipped docs names a file the package ships.
doc=$root/usr/share/doc/aiops
while IFS=$'\t' read -r md link; do
  check "$(dirname "${md#"$root"}")/$link" "link in $(basename "$md")"
done < <(python3 - "$doc" <<'PY'
import os, re, sys
for d, _, names in os.walk(sys.argv[1]):
    for n in names:
        if n.endswith(".md"):
            p = os.path.join(d, n)
            for t in re.findall(r"\]\(([^)\s]+)\)", open(p, encoding="utf-8").read()):
                t = t.split("#")[0]
                if t and "://" not in t and not t.startswith("mailto:"):
                    print(p, t, sep="\t")
PY
)
# The quickstart's repository can be made from the shipped copy.
qs=$(mktemp -d)
sh "$doc/examples/quickstart/make-repo.sh" "$qs/repo" >/dev/null ||
  { echo "MISSING  a working examples/quickstart/make-repo.sh"; fail=1; }
rm -rf "$qs"
# The supervisor accepts the shipped configuration and profiles.
AIOPS_PROFILE_PATH=$root/usr/share/aiops/profiles \
  "$root/usr/sbin/aiops-supervisor" --config "$root/etc/aiops/supervisor.toml" --check
[ "$fail" = 0 ] || { echo "check-scratch-install: something is missing"; exit 1; }
echo "check-scratch-install: ok"
