#!/usr/bin/env bash
# The demo: rekey's main job end to end against the local AWS emulator.
# Installs moto and the AWS CLI, builds rekey, seeds an account with users
# and keys of various ages, scans it, then rotates the key of an application
# (the AWS CLI reading a credentials file) from start to deletion of the old
# key, and stops the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
echo "== installing the emulator (moto) and the AWS CLI into .venv (about a minute the first time, seconds after)"
scripts/install-test-deps.sh
echo "== building rekey (several minutes the first time on 2 cores: the AWS SDK is large; seconds after)"
cargo build -p rekey
repo=$(pwd)
rekey() { cargo run --quiet --manifest-path "$repo/Cargo.toml" -p rekey -- --state "$work/state.db" "$@"; }
source scripts/emulator.sh
work=$EMULATOR_DIR/demo
mkdir -p "$work"
# Ages in the scenario count back from now, so the demo looks the same any day.
echo "== starting the emulator (a few seconds)"
emulator_start tests/emulator/scenarios/demo.json --as-of "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "emulator on $EMULATOR_ENDPOINT with tests/emulator/scenarios/demo.json"

# An application whose key is 120 days old: the AWS CLI with profile [app].
aws iam create-user --user-name payments-api >/dev/null
aws iam tag-user --user-name payments-api --tags Key=Owner,Value=team-payments
aws iam create-access-key --user-name payments-api >"$work/key.json"
python3 - "$work" <<'PY'
import json, sys
key = json.load(open(f"{sys.argv[1]}/key.json"))["AccessKey"]
with open(f"{sys.argv[1]}/credentials", "w") as f:
    f.write(f"[app]\naws_access_key_id = {key['AccessKeyId']}\naws_secret_access_key = {key['SecretAccessKey']}\n")
PY
rm "$work/key.json"
old_key=$(sed -n 's/^aws_access_key_id = //p' "$work/credentials")
python3 - "$EMULATOR_ENDPOINT/_rekey/keys/$old_key" <<'PY'
import datetime, json, sys, urllib.request
created = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=json.dumps({"created_at": created}).encode(), method="POST"))
PY
app() { (unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; AWS_SHARED_CREDENTIALS_FILE="$work/credentials" aws sts get-caller-identity --profile app --query Arn --output text); }
# Waits of zero so the whole procedure runs now; production uses hours and days.
cat >"$work/rekey.toml" <<TOML
[rotation]
wait_unused = "0s"
last_used_lag = "0s"
grace = "0s"

[[target]]
user = "payments-api"
deliver = [{ type = "credentials-file", path = "$work/credentials", profile = "app" }]
verify = [
  { type = "sts" },
  # Exec commands get a clean environment: the emulator's address is theirs to set.
  { type = "exec", command = ["aws", "sts", "get-caller-identity", "--profile", "app"], env = { AWS_SHARED_CREDENTIALS_FILE = "$work/credentials", AWS_ENDPOINT_URL = "$EMULATOR_ENDPOINT", AWS_DEFAULT_REGION = "us-east-1", AWS_EC2_METADATA_DISABLED = "true" } },
]
TOML
cd "$work"

echo; echo '$ rekey scan'
code=0; rekey scan || code=$?
echo "(exit code $code: 1 means some key FAILED IAM.3)"

echo; echo "\$ aws sts get-caller-identity --profile app   # the application, before"
app

echo; echo '$ rekey rotate --user payments-api --dry-run'
rekey rotate --user payments-api --dry-run

echo; echo '$ rekey rotate --user payments-api --yes'
rekey rotate --user payments-api --yes

echo; echo "\$ aws sts get-caller-identity --profile app   # the application, after: new key"
app
echo "key in the file now: $(sed -n 's/^aws_access_key_id = //p' credentials) (was $old_key)"

echo; echo '$ rekey history'
rekey history

echo; echo '$ rekey scan --user payments-api --format json'
rekey scan --user payments-api --format json --fail-on never
