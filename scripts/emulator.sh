# Sourced by scripts/demo.sh and bench/*.sh: start and stop the emulator
# harness (tests/emulator/harness.py) on a free loopback port.
#   emulator_start SCENARIO [harness args...]   sets EMULATOR_ENDPOINT, EMULATOR_PID
#   emulator_stop                              stops it by PID
# Also exports the environment that points the AWS SDK and CLI at it.

EMULATOR_DIR=$(mktemp -d)

emulator_start() {
  local scenario=$1; shift
  local python
  # The real interpreter, not a pyenv shim, so the PID is the server's.
  python=$(python3 -c 'import sys; print(sys.executable)')
  "$python" tests/emulator/harness.py --scenario "$scenario" \
    --ready-file "$EMULATOR_DIR/ready.json" --truth "$EMULATOR_DIR/truth.json" "$@" >/dev/null &
  EMULATOR_PID=$!
  trap emulator_stop EXIT
  for _ in $(seq 600); do
    [ -f "$EMULATOR_DIR/ready.json" ] && break
    kill -0 "$EMULATOR_PID" 2>/dev/null || { echo "the emulator did not start" >&2; exit 2; }
    sleep 0.1
  done
  EMULATOR_ENDPOINT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$EMULATOR_DIR/ready.json")
  export AWS_ENDPOINT_URL=$EMULATOR_ENDPOINT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
}

emulator_stop() {
  if [ -n "${EMULATOR_PID:-}" ]; then
    kill "$EMULATOR_PID" 2>/dev/null || true
    wait "$EMULATOR_PID" 2>/dev/null || true
    EMULATOR_PID=
  fi
  rm -rf "$EMULATOR_DIR"
}

# GET or POST a harness endpoint: emulator_api GET /_rekey/calls
emulator_api() {
  python3 - "$EMULATOR_ENDPOINT$2" "$1" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], method=sys.argv[2], data=b"{}" if sys.argv[2] == "POST" else None,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req).read().decode())
PY
}
