#!/usr/bin/env bash
# Taxbridge's request-path benchmark. Builds release binaries, starts taxbridge on a fresh SQLite
# data dir and the `floor` server (axum + async-graphql answering `me` from a verified JWT, no
# database), drives each with the same load, and prints requests/s, p50 and p99 with ratios to
# the floor. Not part of the test run.
#   bench/run.sh                 # 64 connections, 10 s per case after a 3 s warm-up
#   DURATION=30s CONNECTIONS=128 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
OUT=bench/out
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet -p taxbridge -p taxbridge-bench -p reference-partner

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DATA=$(mktemp -d)
TB_PORT=$(free_port); FLOOR_PORT=$(free_port)
cleanup() { kill "${TB_PID:-}" "${FLOOR_PID:-}" "${PARTNER_PID:-}" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

TAXBRIDGE_RATE_LIMITS__REQUESTS_PER_SECOND=1000000000 TAXBRIDGE_RATE_LIMITS__REQUEST_BURST=1000000000 \
TAXBRIDGE_EGRESS__ALLOW_CIDRS='["127.0.0.0/8"]' \
  ./target/release/taxbridge --data-dir "$DATA" serve --listen "127.0.0.1:$TB_PORT" >"$OUT/taxbridge.out" 2>"$OUT/taxbridge.err" &
TB_PID=$!
./target/release/floor "127.0.0.1:$FLOOR_PORT" >"$OUT/floor.out" 2>&1 &
FLOOR_PID=$!
for _ in $(seq 100); do grep -q "Taxbridge is serving" "$OUT/taxbridge.out" 2>/dev/null && grep -q listening "$OUT/floor.out" 2>/dev/null && break; sleep 0.1; done

KEY=$(sed -n 's/^API key: //p' "$OUT/taxbridge.out")
FLOOR_TOKEN=$(sed -n 's/^token: //p' "$OUT/floor.out")
LOGIN_BODY=$(printf '{"query":"mutation LoginViaPersonalApiToken($apiKey: String!) { loginViaPersonalApiToken(token: $apiKey) { accessToken } }","variables":{"apiKey":"%s"}}' "$KEY")
TB_TOKEN=$(curl -s -X POST "http://127.0.0.1:$TB_PORT/graphql" -H 'Content-Type: application/json' -d "$LOGIN_BODY" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["loginViaPersonalApiToken"]["accessToken"])')
ME_BODY='{"query":"query Me { me { id name } }"}'

cat >"$OUT/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["source-platform"] = "taxbridge-bench"
local token = os.getenv("TOKEN")
if token ~= nil and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

# Runs one case; prints "rps p50_ms p99_ms".
measure() {
  local url=$1 token=$2 body=$3 name=$4
  BODY="$body" TOKEN="$token" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$OUT/post.lua" "$url" >/dev/null
  BODY="$body" TOKEN="$token" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$OUT/post.lua" "$url" >"$OUT/$name.wrk"
  local result; result=$(sed -n 's/^RESULT //p' "$OUT/$name.wrk")
  set -- $result
  [ "${4:-0}" = 0 ] && [ "${5:-0}" = 0 ] || echo "warning: $name had ${4} non-2xx responses and ${5} socket errors" >&2
  echo "$1 $2 $3"
}

# Checks that a case answers what it should before it is timed.
check() { curl -s -X POST "$1" -H 'Content-Type: application/json' ${2:+-H "Authorization: Bearer $2"} -d "$3" | grep -q "$4" \
  || { echo "the $5 case does not answer as expected" >&2; exit 1; }; }
check "http://127.0.0.1:$FLOOR_PORT/graphql" "$FLOOR_TOKEN" "$ME_BODY" '"id":"acc_floor"' floor
check "http://127.0.0.1:$TB_PORT/graphql" "$TB_TOKEN" "$ME_BODY" '"id":"acc_' me
check "http://127.0.0.1:$TB_PORT/graphql" "" "$LOGIN_BODY" accessToken login

# Two partners: one owning 100 workspaces, one owning 100,000, written straight into the
# SQLite file (creating 100,000 through the API would only time the seeding).
partner_token() {
  local key; key=$(./target/release/taxbridge --data-dir "$DATA" partners create --name "$1" --provider-key "$1" --email "eng@$1.io" 2>/dev/null)
  curl -s -X POST "http://127.0.0.1:$TB_PORT/graphql" -H 'Content-Type: application/json' \
    -d "{\"query\":\"mutation { loginViaPersonalApiToken(token: \\\"$key\\\") { accessToken } }\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["loginViaPersonalApiToken"]["accessToken"])'
}
SMALL_TOKEN=$(partner_token small)
LARGE_TOKEN=$(partner_token large)
python3 - "$DATA/taxbridge.db" <<'PY'
import sqlite3, sys, time, uuid
db = sqlite3.connect(sys.argv[1], timeout=30)
owners = dict(db.execute("SELECT provider_key, id FROM accounts WHERE provider_key IN ('small', 'large')"))
now = int(time.time() * 1000)
for key, count in (("small", 100), ("large", 100_000)):
    rows = [(f"wsp_{uuid.uuid4().hex}", f"{key}-firm-{i}", f"{key.title()} Firm {i}", "active", "partner", None, None, owners[key], now + i, now + i)
            for i in range(count)]
    db.executemany("INSERT INTO workspaces (id, slug, display_name, status, workspace_type, firm_size, metadata, owner_partner_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
db.commit()
PY
WS_FIRST='{"query":"{ me { workspaces(limit: 50) { id slug } } }"}'
WS_LAST='{"query":"{ me { workspaces(limit: 50, offset: 99950) { id slug } } }"}'
check "http://127.0.0.1:$TB_PORT/graphql" "$LARGE_TOKEN" "$WS_LAST" 'large-firm-99999' workspaces

FLOOR_PAGE='{"query":"{ me { workspaces(limit: 50) { id slug } } }"}'
FLOOR_PAGE_JSON='{"query":"{ me { workspacesJson(limit: 50) } }"}'
check "http://127.0.0.1:$FLOOR_PORT/graphql" "$FLOOR_TOKEN" "$FLOOR_PAGE" 'floor-firm-49' floor-page
check "http://127.0.0.1:$FLOOR_PORT/graphql" "$FLOOR_TOKEN" "$FLOOR_PAGE_JSON" 'floor-firm-49' floor-page-json

echo "Load: wrk, $THREADS threads, $CONNECTIONS connections, $DURATION per case after a $WARMUP warm-up; $(nproc) cores"
FLOOR=$(measure "http://127.0.0.1:$FLOOR_PORT/graphql" "$FLOOR_TOKEN" "$ME_BODY" floor-me)
ME=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$TB_TOKEN" "$ME_BODY" taxbridge-me)
LOGIN=$(measure "http://127.0.0.1:$TB_PORT/graphql" "" "$LOGIN_BODY" taxbridge-login)
WS100=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$WS_FIRST" workspaces-100)
WS100K=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$LARGE_TOKEN" "$WS_FIRST" workspaces-100k)
WSLAST=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$LARGE_TOKEN" "$WS_LAST" workspaces-100k-offset)
FPAGE=$(measure "http://127.0.0.1:$FLOOR_PORT/graphql" "$FLOOR_TOKEN" "$FLOOR_PAGE" floor-page)
FPAGEJSON=$(measure "http://127.0.0.1:$FLOOR_PORT/graphql" "$FLOOR_TOKEN" "$FLOOR_PAGE_JSON" floor-page-json)

# Provider connections: two of the small partner's workspaces with 10 and 10,000 connections,
# written straight into the SQLite file; starting one through the API; and collect against the
# reference partner on loopback next to a direct GET /v1/verify.
read -r WS_TEN WS_MANY < <(python3 - "$DATA/taxbridge.db" <<'PY'
import sqlite3, sys, time, uuid
db = sqlite3.connect(sys.argv[1], timeout=30)
ten, many = [r[0] for r in db.execute("SELECT w.id FROM workspaces w JOIN accounts a ON a.id = w.owner_partner_id WHERE a.provider_key = 'small' ORDER BY w.created_at LIMIT 2")]
now = int(time.time() * 1000)
for workspace, count in ((ten, 10), (many, 10_000)):
    rows = [(f"con_{uuid.uuid4().hex}", workspace, "small", "practice_management", "active", None, "{}", None, None, None, now + i, now + i) for i in range(count)]
    db.executemany("INSERT INTO provider_connections (id, workspace_id, provider_key, category, status, display_name, settings, credentials, status_detail, last_verified_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
db.commit()
print(ten, many)
PY
)
CONN_PAGE() { printf '{"query":"{ me { workspaces(filters: {ids: [\\"%s\\"]}) { connections(limit: %s) { id providerKey status } } } }"}' "$1" "${2:-50}"; }
# The docs' request, as the start-provider-connection page sends it.
CONN_START=$(printf '{"query":"mutation StartProviderConnection($workspaceId: ID!, $providerKey: String!, $inputs: JSON) { startProviderConnection(workspaceId: $workspaceId, providerKey: $providerKey, inputs: $inputs) { id workspaceId providerKey status action displayName createdAt } }","variables":{"workspaceId":"%s","providerKey":"small","inputs":{"apiKey":"bench-key-0123456789","securityToken":"bench-token-abc","baseUrl":"https://platform.example.com"}}}' "$WS_TEN")
check "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$CONN_START" '"pending"' start-connection
check "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$(CONN_PAGE "$WS_MANY")" '"active"' connections-page
CONN10=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$(CONN_PAGE "$WS_TEN")" connections-10)
CONN10K=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$(CONN_PAGE "$WS_MANY")" connections-10k)
# The same ten rows from both workspaces: what the table's size alone costs a page.
CONN10_TEN=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$(CONN_PAGE "$WS_TEN" 10)" connections-10-limit-10)
CONN10K_TEN=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$(CONN_PAGE "$WS_MANY" 10)" connections-10k-limit-10)
START=$(measure "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$CONN_START" start-connection)

PARTNER_PORT=$(free_port)
./target/release/reference-partner --listen "127.0.0.1:$PARTNER_PORT" --api-key bench-key >"$OUT/partner.out" 2>&1 &
PARTNER_PID=$!
sleep 0.5
COLLECT_MS=$(python3 - "http://127.0.0.1:$TB_PORT/graphql" "$SMALL_TOKEN" "$WS_TEN" "http://127.0.0.1:$PARTNER_PORT" <<'PY'
import json, statistics, subprocess, sys
endpoint, token, workspace, base = sys.argv[1:5]
def timed(args):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"] + args, capture_output=True, text=True).stdout.split()
    assert out[0] == "200", out
    return float(out[1]) * 1000
def gql(body):
    return ["-X", "POST", endpoint, "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {token}", "-d", json.dumps(body)]
started = subprocess.run(["curl", "-s"] + gql({"query": "mutation S($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"small\", inputs: $i) { id } }",
                                               "variables": {"w": workspace, "i": {"apiKey": "bench-key", "baseUrl": base}}}), capture_output=True, text=True).stdout
connection = json.loads(started)["data"]["startProviderConnection"]["id"]
collect = gql({"query": "mutation C($c: ID!) { collectProviderConnection(connectionId: $c) { status } }", "variables": {"c": connection}})
check = subprocess.run(["curl", "-s"] + collect, capture_output=True, text=True).stdout
assert '"active"' in check, check
direct = ["-H", "Authorization: Bearer bench-key", f"{base}/v1/verify"]
for _ in range(20):
    timed(collect); timed(direct)
through = statistics.median(timed(collect) for _ in range(200))
plain = statistics.median(timed(direct) for _ in range(200))
print(f"{through:.3f} {plain:.3f}")
PY
)

python3 - "$FLOOR" "$START" "$CONN10" "$CONN10K" "$COLLECT_MS" "$CONN10_TEN" "$CONN10K_TEN" <<'PY'
import sys
floor, start, c10, c10k = (list(map(float, a.split())) for a in sys.argv[1:5])
through, direct = map(float, sys.argv[5].split())
t10, t10k = (list(map(float, a.split())) for a in sys.argv[6:8])
print()
print(f"{'provider connections':<40} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'x floor':>8} {'target':>10}")
ratio = start[0] / floor[0]
print(f"{'startProviderConnection (seals, writes)':<40} {start[0]:>10.0f} {start[1]:>8.2f} {start[2]:>8.2f} {ratio:>8.2f} {'>= 0.5' + (' ok' if ratio >= 0.5 else ' MISSED'):>10}")
for name, (rps, p50, p99) in (("connections(limit: 50), 10 in workspace", c10), ("connections(limit: 50), 10,000", c10k)):
    print(f"{name:<40} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {rps / floor[0]:>8.2f}")
for name, (rps, p50, p99) in (("connections(limit: 10), 10 in workspace", t10), ("connections(limit: 10), 10,000", t10k)):
    print(f"{name:<40} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {rps / floor[0]:>8.2f}")
cost = c10[0] / c10k[0]
print(f"limit 50: the page at 10,000 connections (50 rows) costs {cost:.2f}x the page at 10 (10 rows)")
cost = t10[0] / t10k[0]
print(f"limit 10: the same ten rows cost {cost:.2f}x at 10,000 connections what they cost at 10 (target <= 1.2): {'ok' if cost <= 1.2 else 'MISSED'}")
overhead = through - direct
print(f"collect against the reference partner: p50 {through:.2f} ms through Taxbridge, {direct:.2f} ms direct with curl: {overhead:.2f} ms overhead (target < 2 ms): {'ok' if overhead < 2 else 'MISSED'}")
PY

python3 - "$FLOOR" "$ME" "$LOGIN" "$WS100" "$WS100K" "$WSLAST" "$FPAGE" "$FPAGEJSON" <<'PY'
import sys
floor, me, login, ws100, ws100k, wslast, fpage, fpagejson = (list(map(float, a.split())) for a in sys.argv[1:9])
rows = [
    ("floor me { id name }", floor, None),
    ("taxbridge me { id name }", me, 0.8),
    ("taxbridge loginViaPersonalApiToken", login, 0.5),
    ("workspaces(limit: 50), 100 owned", ws100, 0.5),
    ("workspaces(limit: 50), 100,000 owned", ws100k, 0.5),
    ("  same, offset 99,950", wslast, None),
    ("floor page of 50 from memory", fpage, None),
    ("  same, as one JSON value", fpagejson, None),
]
print(f"{'case':<40} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'x floor':>8} {'target':>10}")
for name, (rps, p50, p99), target in rows:
    ratio = rps / floor[0]
    verdict = "" if target is None else (f">= {target}" + (" ok" if ratio >= target else " MISSED"))
    print(f"{name:<40} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {ratio:>8.2f} {verdict:>10}")
cost = ws100[0] / ws100k[0]
print(f"first page at 100,000 costs {cost:.2f}x the first page at 100 (target <= 1.2): {'ok' if cost <= 1.2 else 'MISSED'}")
print(f"the page at offset 99,950 costs {ws100[0] / wslast[0]:.1f}x the first page at 100")
print(f"taxbridge's first page reaches {ws100[0] / fpage[0]:.2f}x the floor's in-memory page")
PY
