#!/usr/bin/env bash
# The main job on the embedded default configuration: validate, plan, and render every file
# `autogit install` would deploy, without touching the container engine (a dry run works on a
# machine with no image registry). Output lands in ./target/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_rust
data=./target/demo
cargo build --locked -q -p autogit
bin=./target/debug/autogit
echo "== autogit validate (embedded default configuration)"
"$bin" validate --data-dir "$data"
echo
echo "== autogit install --dry-run"
"$bin" install --dry-run --data-dir "$data"
