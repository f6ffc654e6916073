#!/usr/bin/env bash
# The full test suite: unit tests and the emulator tests (each test starts
# its own emulator). This is the README's test command, and .ci/run runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
scripts/install-test-deps.sh
cargo test --workspace --locked --no-fail-fast
