#!/usr/bin/env bash
# What the guard's search (aiops-guard: every git directory and outside hard
# link in the writable roots) costs `aiopsctl exec`, by workspace: empty, a
# repository of 100k files, a monorepo with submodules, linked worktrees and
# nested repositories, and a local clone whose objects are hard-linked to
# its source. Each row is side by side with bwrap on the same tree (bwrap
# searches nothing), in one hyperfine run.
#
#   bash bench/guard.sh                    # static builds (packaging/static-build.sh)
#   AIOPS_BENCH_BUILD=dynamic BIN=target/release bash bench/guard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
# shellcheck source=bench/helpers.sh
. bench/helpers.sh
RUNS=${RUNS:-30}
WORK=${WORK:-/var/tmp/aiops-guard-bench}
G=(git -c user.name=b -c user.email=b@b -c init.defaultBranch=main -c protocol.file.allow=always -c safe.directory='*')

make_trees() {
  [ -e "$WORK/done" ] && return
  rm -rf "$WORK" && mkdir -p "$WORK/empty"
  # 100k files in 1000 directories two levels deep, committed.
  python3 - "$WORK/files100k" <<'EOF'
import os, sys
root = sys.argv[1]
for a in range(40):
    for b in range(25):
        d = os.path.join(root, f"d{a}", f"e{b}")
        os.makedirs(d)
        for c in range(100):
            with open(os.path.join(d, f"f{c}.txt"), "w") as f:
                f.write(f"{a} {b} {c}\n")
EOF
  (cd "$WORK/files100k" && "${G[@]}" init -q && "${G[@]}" add -A && "${G[@]}" commit -qm files)
  # A monorepo: 20 submodules, 5 linked worktrees, 30 nested repositories, 10k files.
  mkdir -p "$WORK/src" && (cd "$WORK/src" && "${G[@]}" init -q && echo x >f && "${G[@]}" add f && "${G[@]}" commit -qm s)
  mkdir -p "$WORK/mono" && cd "$WORK/mono" && "${G[@]}" init -q
  python3 - . <<'EOF'
import os, sys
for a in range(100):
    d = os.path.join(sys.argv[1], "pkg", f"p{a}")
    os.makedirs(d)
    for c in range(100):
        open(os.path.join(d, f"m{c}.js"), "w").write("x\n")
EOF
  "${G[@]}" add -A && "${G[@]}" commit -qm mono
  for i in $(seq 1 20); do "${G[@]}" submodule add -q "$WORK/src" "sub/s$i" 2>/dev/null; done
  "${G[@]}" commit -qm subs
  for i in $(seq 1 5); do "${G[@]}" worktree add -q "wt/w$i" 2>/dev/null; done
  for i in $(seq 1 30); do mkdir -p "vendor/v$i" && (cd "vendor/v$i" && "${G[@]}" init -q); done
  cd - >/dev/null
  # A local clone: git hard-links the source's object files.
  "${G[@]}" clone -q "$WORK/mono" "$WORK/linked" 2>/dev/null
  touch "$WORK/done"
}
make_trees
# As root the jail runs as the workspace owner; keep it a plain user.
if [ "$(id -u)" = 0 ]; then chown -R 65534:65534 "$WORK"; fi

echo "== trees in $WORK"
for t in empty files100k mono linked; do
  printf '   %-10s %7s files %6s dirs\n' "$t" "$(find "$WORK/$t" -type f | wc -l)" "$(find "$WORK/$t" -type d | wc -l)"
done
echo "== guard layer (what the jailer found)"
for t in empty files100k mono linked; do
  printf '   %-10s ' "$t"
  "$CTL" exec --profile restrictive --workspace "$WORK/$t" --report json -- true 2>&1 >/dev/null |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(next((l for l in r["exit"]["layers"] if l.startswith("guard")), "?"))'
done

args=()
for t in empty files100k mono linked; do
  args+=(-n "aiops $t" "$CTL exec --profile restrictive --workspace $WORK/$t -- /bin/true")
  args+=(-n "bwrap $t" "$(bwrap_restrictive "$WORK/$t") /bin/true")
done
hyperfine -N -w 3 -r "$RUNS" --export-json "$WORK/guard.json" "${args[@]}" >/dev/null
python3 - "$WORK/guard.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
base = r["aiops empty"]["median"]
print(f"{'workspace':<11} {'aiops ms':>9} {'bwrap ms':>9} {'aiops/bwrap':>12} {'aiops - empty ms':>17}")
for t in ["empty", "files100k", "mono", "linked"]:
    a, b = r[f"aiops {t}"]["median"] * 1e3, r[f"bwrap {t}"]["median"] * 1e3
    print(f"{t:<11} {a:9.2f} {b:9.2f} {a / b:12.2f} {a - base * 1e3:17.2f}")
EOF
