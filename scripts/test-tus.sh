#!/usr/bin/env bash
# Starts the official tus 1.0.0 server (npm @tus/server with @tus/file-store, pinned in
# scripts/tus/package-lock.json) for the tus client's tests and prints the lines to export.
#   eval "$(scripts/test-tus.sh start)"   # sets TAXBRIDGE_TEST_TUS_URL and TAXBRIDGE_TEST_TUS_DIR
#   scripts/test-tus.sh stop
# Loopback only; uploads in a temporary folder: test use only.
set -euo pipefail
cd "$(dirname "$0")/tus"
PORT="${TAXBRIDGE_TEST_TUS_PORT:-18081}"
DIR="${TAXBRIDGE_TEST_TUS_DIR:-/tmp/taxbridge-test-tus}"

case "${1:-start}" in
  start)
    [ -d node_modules/@tus/server ] || npm ci --no-audit --no-fund --loglevel=error >&2
    if ! curl -s -o /dev/null -X OPTIONS "http://127.0.0.1:$PORT/files"; then
      rm -rf "$DIR"; mkdir -p "$DIR"
      nohup node server.mjs "$PORT" "$DIR" >"$DIR.log" 2>&1 &
      echo $! >"$DIR.pid"
      for _ in $(seq 100); do grep -q listening "$DIR.log" 2>/dev/null && break; sleep 0.1; done
      grep -q listening "$DIR.log" || { echo "the tus server did not start; see $DIR.log" >&2; exit 1; }
    fi
    echo "export TAXBRIDGE_TEST_TUS_URL=http://127.0.0.1:$PORT/files TAXBRIDGE_TEST_TUS_DIR=$DIR"
    ;;
  stop)
    [ -f "$DIR.pid" ] && kill "$(cat "$DIR.pid")" 2>/dev/null || true
    rm -f "$DIR.pid"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
