#!/usr/bin/env bash
# The soak (bench/soak.py says what it runs and prints): the fleet of scripts/fleet/ under a
# steady mixed load, on release binaries. Not part of the test run.
#   bench/soak.sh                 # 30 minutes
#   bench/soak.sh --minutes 3     # shorter
#   REQUESTS_PER_SECOND=100 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p taxbridge -p reference-partner
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
python3 -c 'import requests' 2>/dev/null || python3 -m pip install --quiet requests
eval "$(scripts/test-s3.sh start)"
export TAXBRIDGE_TEST_PG_PORT="${TAXBRIDGE_FLEET_PG_PORT:-55433}" TAXBRIDGE_TEST_PG_DIR="${TAXBRIDGE_FLEET_PG_DIR:-/tmp/taxbridge-fleet-pg}"
eval "$(scripts/test-postgres.sh start 2>/dev/null)"
DB="tb_soak_$(date +%s)"
psql "$TAXBRIDGE_TEST_POSTGRES_URL" -qc "CREATE DATABASE $DB" >/dev/null
trap 'psql "$TAXBRIDGE_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
python3 bench/soak.py --bin target/release/taxbridge --partner target/release/reference-partner \
  --database-url "${TAXBRIDGE_TEST_POSTGRES_URL%/*}/$DB" "$@"
