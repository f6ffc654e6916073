#!/usr/bin/env bash
# Benchmarks of `rekey run` as a scheduler, and of the state store at size.
#
#   bench/scheduler.sh due [N]     N due rotations (default 100; zero waits,
#                                  sts verifier) advanced by one `run --once`
#                                  with [rotation] concurrency 1, then 8,
#                                  behind bench/latency_proxy.py (LATENCY_MS,
#                                  default 50 ms per request): wall time of each;
#                                  SECURITYHUB=true adds the finding notes
#   bench/scheduler.sh store [N]   N waiting rotations (default 10,000; each
#                                  with its audit lines) in SQLite, then
#                                  copied to DynamoDB with `rekey state
#                                  migrate`: `run --once` on each backend
#                                  (wall, peak RSS, DynamoDB requests), and
#                                  `status` / `history` on SQLite
#   PROFILE=dev bench/scheduler.sh ...   times a debug build
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-due}
latency=${LATENCY_MS:-50}   # added to every request by the proxy (due)
source bench/prepare.sh
work=$(mktemp -d)
cleanup() { proxy_stop; emulator_stop; rm -rf "$work"; }
# scripts/emulator.sh's emulator_start traps EXIT itself: ours comes after it.
start() { mkdir -p "$EMULATOR_DIR"; emulator_start "$@"; trap cleanup EXIT; }

proxy_start() {
  python3 bench/latency_proxy.py --target "$EMULATOR_ENDPOINT" --min-ms "$latency" --max-ms "$latency" --ready-file "$work/proxy.json" >/dev/null &
  PROXY_PID=$!
  for _ in $(seq 300); do [ -f "$work/proxy.json" ] && break; sleep 0.1; done
  export AWS_ENDPOINT_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint"])' "$work/proxy.json")
}
proxy_stop() {
  if [ -n "${PROXY_PID:-}" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=; fi
  rm -f "$work/proxy.json"
  export AWS_ENDPOINT_URL=${EMULATOR_ENDPOINT:-}
}

scenario() {
  python3 - "$1" >"$work/scenario.json" <<'PY'
import json, sys
users = [{"name": f"svc-{i:05d}", "keys": [{"status": "Active", "age": "120d"}]} for i in range(int(sys.argv[1]))]
print(json.dumps({"users": users}))
PY
}

# Wall time in ms and peak RSS in MB of one command: "WALL RSS".
timed() {
  local t0; t0=$(date +%s%N)
  /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/out.txt" 2>"$work/err.txt" || { cat "$work/err.txt" >&2; return 1; }
  echo "$(( ($(date +%s%N) - t0) / 1000000 )) $(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$work/time.txt")"
}

ddb_calls() {
  emulator_api GET /_rekey/calls | python3 -c 'import json,sys; d=json.load(sys.stdin)["by_operation"]; ops={k:v for k,v in d.items() if k.startswith("dynamodb:")}; print(sum(ops.values()), " ".join(k.split(":")[1] + "=" + str(v) for k,v in sorted(ops.items())))'
}

due() {
  local n=${1:-100}
  for concurrency in ${CONCURRENCIES:-1 8}; do
    scenario "$n"
    start "$work/scenario.json"
    # Security Hub off: its notes are one BatchUpdateFindings per rotation
    # (each note names its rotation), sent after the pass and bounded by
    # Security Hub's own quota (10 a second), not by rekey's concurrency.
    cat >"$work/rekey.toml" <<TOML
[securityhub]
enabled = ${SECURITYHUB:-false}

[rotation]
wait_unused = "3s"
last_used_lag = "0s"
grace = "0s"
concurrency = $concurrency
TOML
    sink='{ type = "exec", command = ["sh", "-c", "cat > /dev/null"] }'
    rm -f "$work/state.db"
    seq 0 $((n - 1)) | xargs -P 4 -I{} sh -c 'cd "$1" && "$2" --state "$1/state.db" rotate --user "svc-$(printf %05d {})" --deliver "$3" --yes >/dev/null' _ "$work" "$bin" "$sink"
    sleep 4   # the drain window passes: every rotation is due
    emulator_api POST /_rekey/calls/reset >/dev/null
    proxy_start
    read -r wall rss < <(cd "$work" && timed "$bin" --state "$work/state.db" run --once)
    proxy_stop
    done_n=$(grep -c ': completed' "$work/out.txt" || true)
    echo "concurrency $concurrency: $n due rotations -> $done_n completed by one run --once in ${wall} ms (peak RSS ${rss} MB, ${latency} ms per request, $(emulator_api GET /_rekey/calls | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total"], "requests in all:", " ".join(f"{k}={v}" for k,v in sorted(d["by_operation"].items())))'))"
    emulator_stop
  done
}

# Clones one real rotation (and its audit lines) into N waiting rotations,
# with SQL: starting N rotations one by one through AWS would take an hour.
seed_sqlite() {
  python3 - "$1" "$2" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
cols = [r[1] for r in c.execute("PRAGMA table_info(rotations)")]
row = dict(zip(cols, c.execute("SELECT * FROM rotations").fetchone()))
acols = [r[1] for r in c.execute("PRAGMA table_info(audit)") if r[1] != "seq"]
audit = [dict(zip(acols, r)) for r in c.execute(f"SELECT {', '.join(acols)} FROM audit WHERE rotation_id = ? ORDER BY seq", (row["id"],))]
later = int(time.time()) + 86400
with c:
    for i in range(1, n):
        r = dict(row, id=f"rot-bench-{i:05d}", old_key_id=f"AKIABENCH{i:011d}", next_check_at=later, started_at=row["started_at"] + i, lease_owner=None, lease_until=None)
        c.execute(f"INSERT INTO rotations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", [r[k] for k in cols])
        for a in audit:
            c.execute(f"INSERT INTO audit ({', '.join(acols)}) VALUES ({', '.join('?' * len(acols))})", [dict(a, rotation_id=r["id"])[k] for k in acols])
    c.execute("UPDATE rotations SET next_check_at = ? WHERE id = ?", (later, row["id"]))
print(c.execute("SELECT COUNT(*) FROM rotations").fetchone()[0], "rotations,", c.execute("SELECT COUNT(*) FROM audit").fetchone()[0], "audit events")
PY
}

sql() { python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()' "$@"; }

store() {
  local n=${1:-10000}
  scenario 1
  start "$work/scenario.json"
  printf '[rotation]\nwait_unused = "24h"\n' >"$work/rekey.toml"
  (cd "$work" && "$bin" --state "$work/state.db" rotate --user svc-00000 --deliver '{ type = "exec", command = ["sh", "-c", "cat > /dev/null"] }' --yes >/dev/null)
  echo "seeded SQLite: $(seed_sqlite "$work/state.db" "$n")"
  cd "$work"
  for run in 1 2 3; do
    read -r wall rss < <(timed "$bin" --state state.db run --once)
    echo "sqlite   run --once over $n waiting: ${wall} ms, peak RSS ${rss} MB ($(tail -1 out.txt))"
  done
  # As a store ages: all but 100 of them finished (status lists unfinished ones).
  sql state.db "UPDATE rotations SET stage = 'completed', next_check_at = NULL WHERE id NOT IN (SELECT id FROM rotations ORDER BY started_at DESC LIMIT 100)"
  for args in "status" "status --format json" "status --all --format json" "status --all --limit 50" "history --limit 100" "history --format json"; do
    read -r wall rss < <(timed "$bin" --state state.db $args)
    echo "sqlite   $args: ${wall} ms, peak RSS ${rss} MB, $(wc -l <out.txt) lines"
  done
  sql state.db "UPDATE rotations SET stage = 'draining', next_check_at = strftime('%s', 'now') + 86400"
  # Into another SQLite file first (a copy of the source, which a migration
  # marks as moved): the copy's cost without DynamoDB's.
  cp state.db from-copy.db
  read -r wall rss < <(timed "$bin" state migrate --from sqlite:from-copy.db --to sqlite:to-copy.db)
  echo "migrate  sqlite -> sqlite: ${wall} ms, peak RSS ${rss} MB: $(head -1 out.txt)"
  read -r wall rss < <(timed "$bin" state init --table bench)
  read -r wall rss < <(timed "$bin" state migrate --from sqlite:state.db --to dynamodb:bench)
  echo "migrate  sqlite -> dynamodb: ${wall} ms, peak RSS ${rss} MB: $(head -1 out.txt)"
  for run in 1 2; do
    emulator_api POST /_rekey/calls/reset >/dev/null
    read -r wall rss < <(timed "$bin" --state dynamodb:bench run --once)
    echo "dynamodb run --once over $n waiting: ${wall} ms, peak RSS ${rss} MB, DynamoDB requests: $(ddb_calls)"
  done
  emulator_api POST /_rekey/calls/reset >/dev/null
  read -r wall rss < <(timed "$bin" --state dynamodb:bench status --limit 50)
  echo "dynamodb status --limit 50: ${wall} ms, peak RSS ${rss} MB, DynamoDB requests: $(ddb_calls)"
  cd - >/dev/null
}

case "$what" in
  due) due "${2:-100}" ;;
  store) store "${2:-10000}" ;;
  *) echo "usage: bench/scheduler.sh due|store [N]" >&2; exit 2 ;;
esac
