#!/usr/bin/env bash
# The push-import benchmark: 10,000 works x 3 artifacts of 10 KiB from a local file server, end
# to end, on SQLite and on PostgreSQL; and one 1 GiB artifact against `curl -o` of the same URL
# with the server's memory sampled. Builds release binaries; not part of the test run.
#   bench/imports.sh              # both databases (PostgreSQL from scripts/test-postgres.sh)
#   WORKS=1000 bench/imports.sh   # a smaller import
#   SQLITE_ONLY=1 bench/imports.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p taxbridge -p taxbridge-bench
python3 -c 'import requests' 2>/dev/null || python3 -m pip install --quiet requests

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FILES_PORT=$(free_port)
./target/release/files "127.0.0.1:$FILES_PORT" >/dev/null 2>&1 &
FILES_PID=$!
PIDS=("$FILES_PID")
DIRS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "${DIRS[@]}"; }
trap cleanup EXIT

# One run: $1 label, $2 database URL ("" for SQLite in the data dir), $3 extra flag.
run() {
  local label=$1 url=$2 flag=${3:-} data port pid key token
  data=$(mktemp -d); DIRS+=("$data")
  port=$(free_port)
  local env=(TAXBRIDGE_EGRESS__ALLOW_CIDRS='["127.0.0.0/8"]'
             TAXBRIDGE_RATE_LIMITS__REQUESTS_PER_SECOND=1000000 TAXBRIDGE_RATE_LIMITS__REQUEST_BURST=1000000)
  if [ -n "$url" ]; then
    # One node on PostgreSQL, its blobs in its data dir as on SQLite: said so explicitly.
    env+=(TAXBRIDGE_DATABASE_URL="$url" TAXBRIDGE_SERVER__SINGLE_NODE=true TAXBRIDGE_AUTH__JWT_SECRET="bench-signing-secret-0123456789abcdef"
          TAXBRIDGE_ENCRYPTION__KEY="$(head -c 32 /dev/urandom | base64)")
  fi
  env "${env[@]}" ${SERVER_ENV:-} ./target/release/taxbridge --data-dir "$data" serve --listen "127.0.0.1:$port" >"$data/out" 2>"$data/err" &
  pid=$!; PIDS+=("$pid")
  for _ in $(seq 100); do grep -q "Taxbridge is serving" "$data/out" 2>/dev/null && break; sleep 0.1; done
  key=$(env "${env[@]}" ./target/release/taxbridge --data-dir "$data" partners create --name Bench --provider-key bench --email eng@bench.example 2>/dev/null)
  token=$(curl -s -X POST "http://127.0.0.1:$port/graphql" -H 'Content-Type: application/json' \
    -d "{\"query\":\"mutation { loginViaPersonalApiToken(token: \\\"$key\\\") { accessToken } }\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["loginViaPersonalApiToken"]["accessToken"])')
  python3 ${DRIVER:-bench/imports.py} "http://127.0.0.1:$port/graphql" "$token" "http://127.0.0.1:$FILES_PORT" "$pid" "$data" "$label" $flag
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "Load: $(nproc) cores; worker concurrency 16 (the default; one workspace takes at most 8)"
export BENCH_TOTALS; BENCH_TOTALS=$(mktemp); DIRS+=("$BENCH_TOTALS")
run SQLite "" --big
[ -n "${SQLITE_ONLY:-}" ] && exit 0
eval "$(scripts/test-postgres.sh start)"
DB="tb_bench_$(date +%s)"
PGURL="${TAXBRIDGE_TEST_POSTGRES_URL%/*}"
psql "$TAXBRIDGE_TEST_POSTGRES_URL" -qc "CREATE DATABASE $DB" >/dev/null
run PostgreSQL "$PGURL/$DB"
psql "$TAXBRIDGE_TEST_POSTGRES_URL" -qc "DROP DATABASE $DB" >/dev/null 2>&1 || true
python3 - "$BENCH_TOTALS" <<'PY'
import sys
totals = dict(line.split() for line in open(sys.argv[1]))
ratio = float(totals["PostgreSQL"]) / float(totals["SQLite"])
print(f"PostgreSQL / SQLite, the same import on one node: {ratio:.2f}x (target <= 1.2: {'ok' if ratio <= 1.2 else 'MISSED'})")
PY
