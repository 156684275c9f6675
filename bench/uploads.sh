#!/usr/bin/env bash
# The pull-pattern benchmark (SQLite): one 1 GiB file sent with uploadConnectionFile to the
# official tus server on loopback, against `curl -T` of the same file to a plain HTTP sink in
# the same run, with the server's memory sampled; and the latency `clients(options: {limit:
# 500})` adds over calling the reference partner directly. Builds release binaries; not part
# of the test run.
#   bench/uploads.sh
#   BIG_BYTES=268435456 bench/uploads.sh   # a 256 MiB file instead
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p taxbridge -p taxbridge-bench -p reference-partner
eval "$(scripts/test-tus.sh start)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
DIRS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "${DIRS[@]}"; }
trap cleanup EXIT

FILES_PORT=$(free_port)
./target/release/files "127.0.0.1:$FILES_PORT" >/dev/null 2>&1 &
PIDS+=("$!")
PARTNER_PORT=$(free_port)
./target/release/reference-partner --listen "127.0.0.1:$PARTNER_PORT" --api-key bench-key --clients 500 >/dev/null 2>&1 &
PIDS+=("$!")

data=$(mktemp -d); DIRS+=("$data")
port=$(free_port)
env=(TAXBRIDGE_EGRESS__ALLOW_CIDRS='["127.0.0.0/8"]'
     TAXBRIDGE_RATE_LIMITS__REQUESTS_PER_SECOND=1000000 TAXBRIDGE_RATE_LIMITS__REQUEST_BURST=1000000)
env "${env[@]}" ./target/release/taxbridge --data-dir "$data" serve --listen "127.0.0.1:$port" >"$data/out" 2>"$data/err" &
pid=$!; PIDS+=("$pid")
for _ in $(seq 100); do grep -q "Taxbridge is serving" "$data/out" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
key=$(env "${env[@]}" ./target/release/taxbridge --data-dir "$data" partners create --name Bench --provider-key bench --email eng@bench.example 2>/dev/null)
echo "Load: $(nproc) cores; tus chunks of 64 MiB (the default), streamed"
python3 bench/uploads.py "http://127.0.0.1:$port/graphql" "$key" "http://127.0.0.1:$FILES_PORT" \
  "http://127.0.0.1:$PARTNER_PORT" "$TAXBRIDGE_TEST_TUS_URL" "$pid" "$data"
