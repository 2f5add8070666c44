#!/usr/bin/env bash
# Runs every test. On a fresh Debian machine it installs what the tests need (apt-get) and
# starts the daemons they use; daemons log to target/test-logs and are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_rust
apt_need docker-compose docker-compose
mkdir -p target/test-logs
cleanup() {
    # Daemons started by this script are stopped here (none outlive the run).
    for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
# Tests that need a tool fail instead of skipping when it is missing.
export AUTOGIT_REQUIRE_TOOLS=1
cargo test --workspace --locked --no-fail-fast "$@"
