#!/usr/bin/env bash
# The property tests as fuzzing, at length (CI runs each with proptest's
# default 256 cases): per target, each of its properties with N cases
# (default 1,000,000), the botocore check of the credentials-file editor
# with B cases (default 100,000: one Python process reads them all), and the
# engine's model test with M sequences of up to 60 events (default 100,000;
# about 30 minutes).
# Prints, per target, the cases executed, the wall time and the failures.
#   bench/fuzz.sh [N] [B] [M]    debug build; tests run one at a time
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
b=${2:-100000}
m=${3:-100000}
python=${REKEY_PYTHON:-}
source scripts/venv.sh
export REKEY_PYTHON=${python:-$REKEY_PYTHON}

# target name, cases per property, cargo test arguments
run() {
  local name=$1 cases=$2; shift 2
  cargo test --quiet "$@" --no-run 2>/dev/null
  local start end log status=0
  log=$(mktemp)
  start=$(date +%s.%N)
  PROPTEST_CASES=$cases cargo test --quiet "$@" -- --test-threads=1 >"$log" 2>&1 || status=$?
  end=$(date +%s.%N)
  local passed failed
  passed=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$log" | head -1)
  failed=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$log" | head -1)
  printf '%-28s %2s properties x %9s cases = %10s cases  %8.1f s  failures: %s\n' \
    "$name" "$((${passed:-0} + ${failed:-0}))" "$cases" "$(((${passed:-0} + ${failed:-0}) * cases))" "$(awk "BEGIN {print $end - $start}")" "${failed:-?}"
  if [ "$status" != 0 ]; then grep -v '^ *[0-9]*: \|^ *at ' "$log" | head -40; fi
  rm -f "$log"
}

run "rekey.toml loader" "$n" -p rekey --bin rekey settings::tests::properties
run "credential report parser" "$n" -p rekey-aws --lib credential_report::tests::properties
run "credentials-file editor" "$n" -p rekey-engine --lib properties::editing_one_profile
run "  + botocore check" "$b" -p rekey-engine --lib properties::botocore_reads
# The engine's model: new random sequences (CI replays a fixed corpus).
started=$(date +%s)
model=0
REKEY_MODEL_SEED=random REKEY_MODEL_CASES=$m cargo test --quiet -p rekey-engine --test model the_engine_keeps_every_safety_invariant -- --test-threads=1 || model=$?
printf '%-28s %s sequences  %s s  exit: %s\n' "engine model" "$m" "$(( $(date +%s) - started ))" "$model"
