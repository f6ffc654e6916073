#!/usr/bin/env bash
# Benchmark of the rotation workflow on the emulator:
#  1. the AWS requests one full rotation makes (zero waits, credentials-file
#     sink, sts verifier), by operation;
#  2. `rekey run --once` over N rotations that are all waiting (default 500):
#     wall time, peak RSS, and AWS requests (there should be none).
#   bench/run.sh [N]        PROFILE=dev bench/run.sh  to time a debug build
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
source bench/prepare.sh
work=$(mktemp -d)
python3 - "$n" >"$work/scenario.json" <<'PY'
import json, sys
users = [{"name": f"svc-{i:04d}", "keys": [{"status": "Active", "age": "120d"}]} for i in range(int(sys.argv[1]) + 1)]
print(json.dumps({"users": users}))
PY
emulator_start "$work/scenario.json"
calls() { emulator_api GET /_rekey/calls | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total"], " ".join(f"{k}={v}" for k,v in sorted(d["by_operation"].items())))'; }
sink='{ type = "exec", command = ["sh", "-c", "cat > /dev/null"] }'

echo "== one full rotation (zero waits)"
cat >"$work/rekey.toml" <<TOML
[rotation]
wait_unused = "0s"
last_used_lag = "0s"
grace = "0s"
TOML
emulator_api POST /_rekey/calls/reset >/dev/null
(cd "$work" && "$bin" --state "$work/full.db" rotate --user "svc-$(printf %04d "$n")" --deliver "$sink" --yes >/dev/null)
echo "AWS requests: $(calls)"

echo "== $n rotations waiting in draining"
cat >"$work/rekey.toml" <<TOML
[rotation]
wait_unused = "24h"
TOML
started=$(date +%s)
seq 0 $((n - 1)) | xargs -P 2 -I{} sh -c 'cd "$1" && "$2" --state "$1/state.db" rotate --user "svc-$(printf %04d {})" --deliver "$3" --yes >/dev/null' _ "$work" "$bin" "$sink"
echo "started $n rotations in $(( $(date +%s) - started ))s"
for run in 1 2 3; do
  emulator_api POST /_rekey/calls/reset >/dev/null
  t0=$(date +%s%N)
  (cd "$work" && /usr/bin/time -v -o "$work/time.txt" "$bin" --state "$work/state.db" run --once >/dev/null)
  wall=$(( ($(date +%s%N) - t0) / 1000000 ))
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$work/time.txt")
  echo "run --once #$run: wall ${wall} ms, peak RSS ${rss} MB, AWS requests: $(calls)"
done
rm -rf "$work"
