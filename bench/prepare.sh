# Sourced by the bench scripts: installs what they use, builds rekey in
# PROFILE (release unless set; PROFILE=dev times a debug build), sets $bin,
# and loads the emulator functions (scripts/emulator.sh).
profile=${PROFILE:-release}
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }
source scripts/venv.sh
scripts/install-test-deps.sh
cargo build --quiet --profile "$profile" -p rekey
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target_dir/$([ "$profile" = dev ] && echo debug || echo "$profile")/rekey
source scripts/emulator.sh
