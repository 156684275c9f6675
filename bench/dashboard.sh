#!/usr/bin/env bash
# The workspace dashboard's benchmark: builds the release binary and runs bench/dashboard.py.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p taxbridge
python3 bench/dashboard.py --bin target/release/taxbridge "$@"
