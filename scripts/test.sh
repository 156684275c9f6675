#!/usr/bin/env bash
# Runs every check Taxbridge has, as CI does: formatting, lints, the committed schema, the test
# suites on SQLite and on a throwaway PostgreSQL, and the doc pages' example programs against a
# real server, and graphql-http's GraphQL-over-HTTP audit of a live server. Installs what it needs
# (PostgreSQL, SeaweedFS for the S3 tests, the official tus server, the maildev SMTP receiver and
# Chromium and chromedriver for the browser tests, the TypeScript compiler and graphql-http from npm, Python requests,
# Debian's haproxy for the fleet test).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools"
python3 -c 'import requests, yaml, jsonschema' 2>/dev/null || python3 -m pip install --quiet requests pyyaml jsonschema
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
# A real headless browser for the web pages' tests (Debian's chromium and its WebDriver).
command -v chromedriver >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; }
# The fleet test's balancer, run with deploy/haproxy.cfg.
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy; }
# cargo-deny from crates.io (built once per machine; a few minutes on two cores).
command -v cargo-deny >/dev/null || cargo install --quiet --locked cargo-deny@0.20.2
(cd scripts/seeds && npm ci --no-audit --no-fund --loglevel=error)
eval "$(scripts/test-postgres.sh start)"
eval "$(scripts/test-s3.sh start)"
eval "$(scripts/test-tus.sh start)"
eval "$(scripts/test-maildev.sh start)"
export CI="${CI:-local}"   # makes the PostgreSQL halves of the suites mandatory

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo deny: licenses, sources, duplicate versions, advisories"
cargo deny --log-level error check licenses bans sources
# The RustSec advisory database is a git repository: where it cannot be fetched (a machine
# that reaches only package registries), say so rather than pass silently.
if cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check --disable-fetch advisories
else
  echo "cargo deny advisories: SKIPPED, the RustSec advisory database could not be fetched from here"
fi

step "schema.graphql matches the code"
cargo build --quiet -p taxbridge -p reference-partner
# Through `cargo run`, as the README's first command runs the server: it must stay unambiguous.
cargo run --quiet -- schema | diff -u schema.graphql - \
  || { echo "schema.graphql is stale: run ./target/debug/taxbridge schema > schema.graphql"; exit 1; }

step "cargo test (SQLite and PostgreSQL)"
cargo test --workspace

step "the doc pages' example programs against a running server"
python3 scripts/seeds/run.py --bin target/debug/taxbridge

step "GraphQL-over-HTTP conformance (graphql-http's server audit, 0 warnings)"
scripts/audit/run.sh target/debug/taxbridge

step "the reference partner answers what docs/partner-protocol.openapi.yaml says"
python3 scripts/partner/check_openapi.py --bin target/debug/reference-partner

step "the fleet: deploy/'s haproxy and units, three nodes and a worker, disturbed (last: it restarts the S3 store)"
scripts/fleet/run.sh target/debug/taxbridge
