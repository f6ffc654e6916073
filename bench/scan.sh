#!/usr/bin/env bash
# Benchmark of `rekey scan` on the emulator seeded with 2,000 users
# (tests/emulator/scenarios/bulk-2000.json, about 2,800 keys).
# Prints, for each source and run: wall time, peak RSS (/usr/bin/time -v),
# AWS requests as rekey counted them (-v) and as the emulator served them.
#   bench/scan.sh [RUNS]        PROFILE=dev bench/scan.sh  to time a debug build
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
source bench/prepare.sh
emulator_start tests/emulator/scenarios/bulk-2000.json --as-of "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
summary=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print("{users} users, {keys} keys, {failed} failed, {warning} warning".format(**s))' "$EMULATOR_DIR/truth.json")
needing=$(python3 -c 'import json,sys; print(len({k["user_name"] for k in json.load(open(sys.argv[1]))["keys"] if k["result"] != "PASSED"}))' "$EMULATOR_DIR/truth.json")
# The report may be hours old: every user with a key old enough to be FAILED
# or WARNING were it active (whatever its reported status) is listed again.
old_key=$(python3 -c '
import json, sys
from datetime import datetime, timedelta
t = json.load(open(sys.argv[1]))
at = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
limit = timedelta(days=t["max_age_days"] - t["warn_within_days"])
print(len({k["user_name"] for k in t["keys"] if at(t["as_of"]) - at(k["created_at"]) > limit}))' "$EMULATOR_DIR/truth.json")
echo "scenario: $summary; $needing users with a FAILED or WARNING key, $old_key with a key over 76 days old; binary: $bin ($profile)"
# Owners come from GetAccountAuthorizationDetails (one call per 1,000 users);
# "no-owners" is the scan without them (owner_tags = []).
echo '[policy]' >"$EMULATOR_DIR/with-owners.toml"
printf '[policy]\nowner_tags = []\n' >"$EMULATOR_DIR/no-owners.toml"
printf '%-30s %4s %8s %8s %8s %13s %14s\n' variant run wall_s cpu_s rss_mb rekey_calls emulator_calls
for variant in credential-report:with-owners credential-report:no-owners api:with-owners; do
  source=${variant%%:*}
  for run in $(seq "$runs"); do
    emulator_api POST /_rekey/calls/reset >/dev/null
    /usr/bin/time -v -o "$EMULATOR_DIR/time.txt" "$bin" scan --config "$EMULATOR_DIR/${variant#*:}.toml" \
      --source "$source" --format json --fail-on never -v >"$EMULATOR_DIR/out.json" 2>"$EMULATOR_DIR/err.txt"
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$EMULATOR_DIR/time.txt")
    cpu=$(awk -F': ' '/(User|System) time/ {s+=$2} END {printf "%.2f", s}' "$EMULATOR_DIR/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$EMULATOR_DIR/time.txt")
    ours=$(sed -n 's/^AWS requests: \([0-9]*\) in all.*/\1/p' "$EMULATOR_DIR/err.txt")
    theirs=$(emulator_api GET /_rekey/calls | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
    printf '%-30s %4s %8s %8s %8s %13s %14s\n' "$variant" "$run" "$wall" "$cpu" "$rss" "$ours" "$theirs"
  done
  echo "  by operation (last run): $(grep '^  ' "$EMULATOR_DIR/err.txt" | tr -s ' ' | tr '\n' ';')"
done
echo "credential-report budget: 3 + $old_key (keys listed again) = $((3 + old_key)) calls, + 2 for owners (2,000 users)"
