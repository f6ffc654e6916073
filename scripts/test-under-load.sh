#!/usr/bin/env bash
# The README's test command, run RUNS times in a row (default 3) while
# stress-ng keeps every core busy: proof that no test depends on how fast
# the machine is. Installs stress-ng from Debian if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
command -v stress-ng >/dev/null || { apt-get install -y -q stress-ng >/dev/null || sudo apt-get install -y -q stress-ng >/dev/null; }
stress-ng --cpu "$(nproc)" --timeout 0 --quiet &
load=$!
trap 'kill "$load" 2>/dev/null; wait "$load" 2>/dev/null || true' EXIT
for i in $(seq "$runs"); do
  started=$(date +%s)
  scripts/test.sh > "target/test-under-load-$i.log" 2>&1 || { echo "run $i of $runs FAILED (target/test-under-load-$i.log)"; grep -E '^test .* FAILED|panicked' "target/test-under-load-$i.log" | head -20; exit 1; }
  passed=$(grep -E '^test result' "target/test-under-load-$i.log" | awk '{s+=$4} END {print s}')
  echo "run $i of $runs passed under load: $passed tests in $(( $(date +%s) - started ))s"
done
