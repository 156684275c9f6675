#!/usr/bin/env bash
# Starts `taxbridge serve` on a fresh data dir and a free port, runs graphql-http's
# GraphQL-over-HTTP audit against it (scripts/audit/graphql-http.mjs), and stops it.
#   scripts/audit/run.sh target/debug/taxbridge
# Needs `npm ci` in scripts/seeds first (scripts/test.sh does it).
set -euo pipefail
BIN="${1:?usage: scripts/audit/run.sh <taxbridge binary>}"
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" --data-dir "$DATA" serve --listen "127.0.0.1:$PORT" >"$DATA/out" 2>"$DATA/err" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 200); do grep -q "Taxbridge is serving" "$DATA/out" 2>/dev/null && break; sleep 0.05; done
node "$HERE/graphql-http.mjs" "http://127.0.0.1:$PORT/graphql"
