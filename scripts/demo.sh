#!/usr/bin/env bash
# The demo: rekey's main job end to end against the local AWS emulator.
# Installs moto, builds rekey, seeds an account with a few users and keys of
# various ages, runs `rekey scan` as a table and as JSON, stops the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --quiet -p rekey
rekey() { cargo run --quiet -p rekey -- "$@"; }
source scripts/emulator.sh
# Ages in the scenario count back from now, so the demo looks the same any day.
emulator_start tests/emulator/scenarios/demo.json --as-of "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "emulator on $EMULATOR_ENDPOINT with tests/emulator/scenarios/demo.json"

echo; echo '$ rekey scan'
code=0; rekey scan || code=$?
echo "(exit code $code: 1 means some key FAILED IAM.3)"

echo; echo '$ rekey scan --user alice.analyst --user batch-nightly --format json'
rekey scan --user alice.analyst --user batch-nightly --format json --fail-on never
