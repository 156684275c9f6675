#!/usr/bin/env bash
# Starts a real SMTP receiver with an HTTP API (npm maildev, pinned in
# scripts/maildev/package-lock.json) for the sign-in tests, and prints the lines to export.
#   eval "$(scripts/test-maildev.sh start)"  # sets TAXBRIDGE_TEST_SMTP_URL and TAXBRIDGE_TEST_MAILDEV_URL
#   scripts/test-maildev.sh stop
# Loopback only; messages kept in memory: test use only.
set -euo pipefail
cd "$(dirname "$0")/maildev"
SMTP_PORT="${TAXBRIDGE_TEST_SMTP_PORT:-18025}"
WEB_PORT="${TAXBRIDGE_TEST_MAILDEV_PORT:-18088}"
RUN="${TAXBRIDGE_TEST_MAILDEV_RUN:-/tmp/taxbridge-test-maildev}"

case "${1:-start}" in
  start)
    [ -x node_modules/.bin/maildev ] || npm ci --no-audit --no-fund --loglevel=error >&2
    if ! curl -s -o /dev/null "http://127.0.0.1:$WEB_PORT/api/email"; then
      nohup node_modules/.bin/maildev -s "$SMTP_PORT" -w "$WEB_PORT" --ip 127.0.0.1 --web-ip 127.0.0.1 \
        >"$RUN.log" 2>&1 &
      echo $! >"$RUN.pid"
      for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$WEB_PORT/api/email" && break; sleep 0.1; done
      curl -s -o /dev/null "http://127.0.0.1:$WEB_PORT/api/email" \
        || { echo "maildev did not start; see $RUN.log" >&2; exit 1; }
    fi
    echo "export TAXBRIDGE_TEST_SMTP_URL=smtp://127.0.0.1:$SMTP_PORT TAXBRIDGE_TEST_MAILDEV_URL=http://127.0.0.1:$WEB_PORT"
    ;;
  stop)
    [ -f "$RUN.pid" ] && kill "$(cat "$RUN.pid")" 2>/dev/null || true
    rm -f "$RUN.pid"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
