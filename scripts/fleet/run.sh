#!/usr/bin/env bash
# The fleet test (scripts/fleet/check.py says what it checks): Debian's haproxy with
# deploy/haproxy.cfg, three `serve` nodes and a `taxbridge worker` started as deploy/'s systemd
# units start them, a PostgreSQL cluster of the fleet's own (it is stopped mid-test) and the
# test SeaweedFS (stopped and resumed mid-test: run this after the suites that use it).
#   scripts/fleet/run.sh [target/debug/taxbridge]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-target/debug/taxbridge}"
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
python3 -c 'import requests' 2>/dev/null || python3 -m pip install --quiet requests
eval "$(scripts/test-s3.sh start)"
export TAXBRIDGE_TEST_PG_PORT="${TAXBRIDGE_FLEET_PG_PORT:-55433}" TAXBRIDGE_TEST_PG_DIR="${TAXBRIDGE_FLEET_PG_DIR:-/tmp/taxbridge-fleet-pg}"
eval "$(scripts/test-postgres.sh start)"
trap 'scripts/test-postgres.sh stop 2>/dev/null; scripts/test-s3.sh resume >/dev/null 2>&1 || true' EXIT
DB="tb_fleet_$(date +%s)"
psql "$TAXBRIDGE_TEST_POSTGRES_URL" -qc "CREATE DATABASE $DB" >/dev/null
python3 scripts/fleet/check.py --bin "$BIN" \
  --database-url "${TAXBRIDGE_TEST_POSTGRES_URL%/*}/$DB" \
  --pg-stop "scripts/test-postgres.sh stop" --pg-start "scripts/test-postgres.sh start >/dev/null" \
  --s3-stop "scripts/test-s3.sh stop" --s3-start "scripts/test-s3.sh resume >/dev/null"
