# Sourced (before or after scripts/install-test-deps.sh): the project's .venv first on
# PATH (its python3 for the emulator, its aws for the tests' application),
# and REKEY_PYTHON for the emulator harness (tests/emulator/src/lib.rs).
# Without it, tests use python3 and aws from PATH as they are.
export PATH="$PWD/.venv/bin:$PATH"
export REKEY_PYTHON="$PWD/.venv/bin/python"
