#!/usr/bin/env bash
# The main job on the embedded default configuration: validate, plan, and render every file
# `autogit install` would deploy, without touching the container engine (a dry run works on a
# machine with no image registry). Output lands in ./target/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_rust
data=./target/demo
echo "== cargo build -p autogit (the first build takes a few minutes; cargo shows its progress)"
cargo build --locked -p autogit
bin=./target/debug/autogit
echo
echo "== autogit validate (embedded default configuration)"
"$bin" validate --data-dir "$data"
echo
echo "== autogit install --dry-run"
rm -rf "$data/rendered" # so that the list below holds this run's files only
"$bin" install --dry-run --data-dir "$data"
echo
echo "== every file the dry run wrote under $data/rendered"
find "$data/rendered" -type f | sort | while read -r f; do
    printf '  %-50s %7s bytes\n' "$f" "$(wc -c <"$f")"
done
echo
echo "Next:"
echo "  $bin init       # write autogit.yml and .env here, to edit (preset, hostname, runners, mirroring)"
echo "  $bin install    # deploy for real: pull the images, start the containers, wait until healthy"
