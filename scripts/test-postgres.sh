#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the test suites and prints the line to export.
#   eval "$(scripts/test-postgres.sh start)"   # sets TAXBRIDGE_TEST_POSTGRES_URL
#   scripts/test-postgres.sh stop
# Installs Debian's postgresql package when no server binaries are found. The cluster lives in
# a temporary folder, listens on 127.0.0.1 only, and trusts local connections: test use only.
set -euo pipefail
PORT="${TAXBRIDGE_TEST_PG_PORT:-55432}"
DIR="${TAXBRIDGE_TEST_PG_DIR:-/tmp/taxbridge-test-pg}"

find_bin() {
  local bin
  for bin in /usr/lib/postgresql/*/bin; do
    [ -x "$bin/pg_ctl" ] && { echo "$bin"; return 0; }
  done
  return 1
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
  start)
    if ! BIN=$(find_bin); then
      echo "installing PostgreSQL from Debian's packages" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
      BIN=$(find_bin)
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then useradd --system postgres; fi
    if [ ! -f "$DIR/PG_VERSION" ]; then
      rm -rf "$DIR"; mkdir -p "$DIR"
      [ "$(id -u)" = 0 ] && chown postgres "$DIR"
      as_pg "$BIN/initdb" -D "$DIR" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
        -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >&2
    fi
    # Each test creates a database of its own and leaves it; clear an earlier run's (about 8 MB
    # each, a gigabyte a full run) so repeated local runs do not fill the disk.
    "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -Atc \
      "SELECT datname FROM pg_database WHERE datname LIKE 'tb\_test\_%'" 2>/dev/null \
      | while read -r db; do
          "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
        done || true
    echo "export TAXBRIDGE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
  stop)
    BIN=$(find_bin) && as_pg "$BIN/pg_ctl" -D "$DIR" -m fast stop >&2 || true
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
