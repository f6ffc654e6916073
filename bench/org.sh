#!/usr/bin/env bash
# Benchmark of `rekey scan --org` over an organization of 50 member accounts
# × 200 users (tests/emulator/scenarios/org-50x200.json) behind
# bench/latency_proxy.py, which adds 30-50 ms to every request (real IAM
# answers that slowly from outside us-east-1; without it only the
# emulator's CPU is measured). Prints wall time, peak RSS and AWS requests
# for the concurrent scan (16 accounts at once, 16 requests within each)
# and the sequential one (1 and 1), then a 500-user account scanned twice
# (the second run finds the credential report already generated), then at
# exactly 0 and 40 ms a request, to tell the latency from the CPU, then at
# 40 ms with answers replayed by the proxy, to take the emulator's CPU out.
#   bench/org.sh [org|one]   PROFILE=dev bench/org.sh  to time a debug build
#   VARIANTS=concurrent:16 bench/org.sh org   the concurrent scan only
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${1:-org one}
source bench/prepare.sh

# proxy_start [--min-ms A --max-ms B]: 30-50 ms unless told.
proxy_start() {
  python3 bench/latency_proxy.py --target "$EMULATOR_ENDPOINT" --ready-file "$EMULATOR_DIR/proxy.json" "$@" >/dev/null &
  PROXY_PID=$!
  for _ in $(seq 300); do [ -f "$EMULATOR_DIR/proxy.json" ] && break; sleep 0.1; done
  export AWS_ENDPOINT_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$EMULATOR_DIR/proxy.json")
}
proxy_stop() { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; rm -f "$EMULATOR_DIR/proxy.json"; }

# One timed run of rekey: "wall_s rss_mb rekey_requests retries emulator_requests".
measure() {
  emulator_api POST /_rekey/calls/reset >/dev/null
  /usr/bin/time -v -o "$EMULATOR_DIR/time.txt" "$bin" -v "$@" >"$EMULATOR_DIR/out.json" 2>"$EMULATOR_DIR/err.txt" || true
  local wall rss ours retries theirs
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$EMULATOR_DIR/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$EMULATOR_DIR/time.txt")
  ours=$(sed -n 's/^AWS requests: \([0-9]*\) in all.*/\1/p' "$EMULATOR_DIR/err.txt")
  retries=$(sed -n 's/^AWS requests: [0-9]* in all, \([0-9]*\) of them retries/\1/p' "$EMULATOR_DIR/err.txt")
  theirs=$(emulator_api GET /_rekey/calls | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
  echo "$wall $rss $ours $retries $theirs"
}

if [[ $parts == *org* ]]; then
emulator_start tests/emulator/scenarios/org-50x200.json --as-of "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# The budget: per account, AssumeRole (not for the caller's own), the
# report's calls, and one ListAccessKeys per user with a key old enough to
# be FAILED or WARNING; ListAccounts and GetCallerIdentity once.
python3 - "$EMULATOR_DIR/truth.json" >"$EMULATOR_DIR/budget.txt" <<'PY'
import json, sys
from datetime import datetime, timedelta
t = json.load(open(sys.argv[1]))
at = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
old = 0
for truth in t["accounts"].values():
    limit = timedelta(days=truth["max_age_days"] - truth["warn_within_days"])
    old += len({k["user_name"] for k in truth["keys"] if at(truth["as_of"]) - at(k["created_at"]) > limit})
print(len(t["accounts"]), old)
PY
read -r accounts old_users <"$EMULATOR_DIR/budget.txt"
echo "scenario: $accounts accounts (the management account and 50 members), 10,000 users; $old_users users with a key over 76 days old; binary: $bin ($profile)"
proxy_start
printf '[org]\nrole_name = "OrganizationAccountAccessRole"\nconcurrency = 16\n' >"$EMULATOR_DIR/concurrent.toml"
printf '[org]\nrole_name = "OrganizationAccountAccessRole"\nconcurrency = 1\n' >"$EMULATOR_DIR/sequential.toml"
printf '%-12s %8s %8s %14s %8s %16s\n' variant wall_s rss_mb rekey_requests retries emulator_requests
for variant in ${VARIANTS:-concurrent:16 sequential:1}; do
  read -r wall rss ours retries theirs < <(measure --config "$EMULATOR_DIR/${variant%%:*}.toml" scan --org --concurrency "${variant#*:}" --format json --fail-on never)
  printf '%-12s %8s %8s %14s %8s %16s\n' "${variant%%:*}" "$wall" "$rss" "$ours" "$retries" "$theirs"
  echo "  by operation: $(grep '^  ' "$EMULATOR_DIR/err.txt" | tr -s ' ' | tr '\n' ';')"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  accounts scanned:", sum(a["scanned"] for a in r["accounts"]), "errors:", len(r["errors"]), "keys:", r["summary"]["keys"])' "$EMULATOR_DIR/out.json"
done
echo "budget: $((accounts - 1)) AssumeRole + $accounts x (2 GenerateCredentialReport + GetCredentialReport + GetAccountAuthorizationDetails) + $old_users ListAccessKeys + ListAccounts + GetCallerIdentity = $((accounts - 1 + accounts * 4 + old_users + 2))"
proxy_stop
emulator_stop
EMULATOR_DIR=$(mktemp -d)   # emulator_stop removed the last one
fi

if [[ $parts == *one* ]]; then
python3 -c '
import json
users = [{"name": f"user-{i:03}", "keys": [{"age": f"{40 + i % 120}d"}]} for i in range(500)]
json.dump({"users": users}, open("'"$EMULATOR_DIR"'/500.json", "w"))'
emulator_start "$EMULATOR_DIR/500.json"
proxy_start
for run in first second; do
  read -r wall rss ours retries theirs < <(measure scan --format json --fail-on never)
  echo "500 users, one account, $run run (the report is $([ $run = first ] && echo generated || echo already there)): wall ${wall} s, peak RSS ${rss} MB, ${ours} requests"
done
proxy_stop
# Where the time goes: the same scan (report already there) with every
# request delayed by exactly 0 ms, then 40 ms. The difference is what the
# latency costs; at 0 ms what is left is CPU (the emulator's, mostly).
# The latency floor is 40 ms x (2 calls one after another + ceil(ListAccessKeys / 16) rounds).
scan_timed() {  # LABEL MS
  read -r wall rss ours retries theirs < <(measure scan --format json --fail-on never)
  cpu=$(awk -F': ' '/(User|System) time/ {s+=$2} END {printf "%.2f", s}' "$EMULATOR_DIR/time.txt")
  lists=$(sed -n 's/^  iam:ListAccessKeys: \([0-9]*\).*/\1/p' "$EMULATOR_DIR/err.txt")
  echo "500 users, one account, $1: wall ${wall} s (rekey's CPU ${cpu} s), ${ours} requests, ${lists:-?} ListAccessKeys (latency floor $(( $2 * (2 + (${lists:-0} + 15) / 16) )) ms)"
}
for ms in 0 40; do
  proxy_start --min-ms "$ms" --max-ms "$ms"
  for run in 1 2 3; do scan_timed "${ms} ms a request, run $run" "$ms"; done
  proxy_stop
done
# And with the emulator's CPU out of the way: the proxy answers each request
# with the answer the emulator gave it the first time (--replay), so what is
# left is the 40 ms and rekey.
proxy_start --min-ms 40 --max-ms 40 --replay
measure scan --format json --fail-on never >/dev/null   # the answers to replay
for run in 1 2 3; do scan_timed "40 ms a request, replayed, run $run" 40; done
proxy_stop
fi
