#!/bin/sh
# Create the quickstart's git repository at DIR from fixture/: one commit on
# branch `main`, with fixed author, committer and dates, so every machine
# gets the same commit id. Safe to re-run: an existing repository made by
# this script is left alone; any other existing, non-empty DIR is refused.
set -eu

usage() { echo "usage: $0 DIR" >&2; exit 64; }
[ "$#" -eq 1 ] || usage
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
fixture=$here/fixture
marker=aiops-quickstart   # a file in DIR/.git that says this script made it

# Only the repository's own settings apply, not the caller's ~/.gitconfig.
GIT_CONFIG_GLOBAL=/dev/null
GIT_CONFIG_NOSYSTEM=1
GIT_AUTHOR_NAME="aiops quickstart"
GIT_AUTHOR_EMAIL="quickstart@aiops.invalid"
GIT_AUTHOR_DATE="2026-01-01T00:00:00Z"
GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME
GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
GIT_COMMITTER_DATE=$GIT_AUTHOR_DATE
export GIT_CONFIG_GLOBAL GIT_CONFIG_NOSYSTEM GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL \
    GIT_AUTHOR_DATE GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL GIT_COMMITTER_DATE

if [ -e "$dir" ]; then
    if [ -f "$dir/.git/$marker" ]; then
        echo "$dir: quickstart repository already there ($(git -C "$dir" rev-parse --short main))"
        exit 0
    fi
    if [ ! -d "$dir" ] || [ -n "$(ls -A "$dir")" ]; then
        echo "$0: $dir exists and is not a quickstart repository; refusing to touch it" >&2
        exit 73 # EX_CANTCREAT
    fi
fi

mkdir -p "$dir"
# Fixed modes, whatever the caller's umask or checkout gave the fixture.
(cd "$fixture" && find . -type d) | while IFS= read -r d; do mkdir -p "$dir/$d"; done
(cd "$fixture" && find . -type f) | while IFS= read -r f; do
    cp "$fixture/$f" "$dir/$f"
    chmod 0644 "$dir/$f"
done
git -C "$dir" init -q -b main
git -C "$dir" add -A
git -C "$dir" commit -q -m "quickstart fixture"
: > "$dir/.git/$marker"
echo "$dir: created quickstart repository ($(git -C "$dir" rev-parse --short main))"
