#!/usr/bin/env bash
# The full test suite: the dependency policy (cargo deny: licenses,
# duplicate versions, sources), unit tests, the emulator tests (each test
# starts its own emulator), the emulator harness's own tests, and the
# offline checks of the deployment examples in deploy/ (with their
# self-tests), and the links between the Markdown pages.
# This is the README's test command, and .ci/run runs it.
#
# `scripts/test.sh fast`: the tests that need no emulator (every crate's unit
# tests, the engine's decisions and its model test at CI depth), for the
# edit-compile-test loop; a couple of minutes once built.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = fast ]; then
  exec cargo test --workspace --locked --lib --bins --test decisions --test model
fi
source scripts/venv.sh
scripts/install-test-deps.sh
status=0
# From an empty CARGO_HOME, so a crate only this machine's cache holds fails
# here. First, while target/ is small: that CARGO_HOME holds every
# platform's crates (removed when the check ends), and the two together
# have filled a disk.
scripts/check-deps.sh || status=$?
cargo test --workspace --locked --no-fail-fast || status=$?
# Every unwrap/expect outside tests is a commented invariant.
scripts/check-unwrap.sh || status=$?
python -m unittest discover -s tests/emulator -p 'test_*.py' || status=$?
scripts/check-deploy.sh || status=$?
python -m unittest discover -s tests/deploy -p 'test_*.py' || status=$?
# Every relative link and #anchor in the repository's Markdown resolves.
python -m unittest discover -s tests/docs -p 'test_*.py' || status=$?
exit "$status"
