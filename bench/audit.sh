#!/usr/bin/env bash
# The audit log's figures: `Workspace.auditEvents(limit: 50)` on a workspace with 1,000,000
# events (p50, target under 20 ms), and `taxbridge audit export` of those events (time and
# peak RSS, target under 64 MiB). Seeds the events straight into a fresh SQLite file with valid
# hash chains (so `audit verify` passes on them), then serves it. Not part of the test run;
# `startProviderConnection` with events on is measured by bench/run.sh.
#   bench/audit.sh                 # 1,000,000 events
#   EVENTS=100000 bench/audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${EVENTS:-1000000}"
OUT=bench/out
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet -p taxbridge

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DATA=$(mktemp -d)
PORT=$(free_port)
cleanup() { kill "${TB_PID:-}" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
start() {
  TAXBRIDGE_RATE_LIMITS__REQUESTS_PER_SECOND=1000000000 TAXBRIDGE_RATE_LIMITS__REQUEST_BURST=1000000000 \
    ./target/release/taxbridge --data-dir "$DATA" serve --listen "127.0.0.1:$PORT" >>"$OUT/audit-taxbridge.out" 2>&1 &
  TB_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
}
: >"$OUT/audit-taxbridge.out"
start
KEY=$(sed -n 's/^API key: //p' "$OUT/audit-taxbridge.out")
TOKEN=$(curl -s -X POST "http://127.0.0.1:$PORT/graphql" -H 'Content-Type: application/json' \
  -d "{\"query\":\"mutation { loginViaPersonalApiToken(token: \\\"$KEY\\\") { accessToken } }\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["loginViaPersonalApiToken"]["accessToken"])')
WS=$(curl -s -X POST "http://127.0.0.1:$PORT/graphql" -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
  -d '{"query":"{ me { workspaces { id } } }"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["me"]["workspaces"][0]["id"])')
kill "$TB_PID"; wait "$TB_PID" 2>/dev/null || true

echo "Seeding $EVENTS events into workspace $WS ..."
SEED_START=$(date +%s.%N)
python3 - "$DATA/taxbridge.db" "$WS" "$EVENTS" <<'PY'
import hashlib, json, sqlite3, sys, time, uuid
db = sqlite3.connect(sys.argv[1], timeout=30)
chain, count = sys.argv[2], int(sys.argv[3])
seq, prev = db.execute("SELECT seq, hash FROM audit_heads WHERE chain = ?", (chain,)).fetchone()
actions = ["connection.collected", "credentials.used", "job.created", "artifact.stored", "member.added"]
start = int(time.time() * 1000) - count
batch_events, batch_targets = [], []
for n in range(count):
    seq += 1
    eid = f"evt_{uuid.uuid4().hex}"
    at = start + n
    action = actions[n % len(actions)]
    actor = f"acc_{n % 97:032x}"
    body = json.dumps({"id": eid, "occurredAt": at, "action": action,
        "actor": {"type": "partner", "id": actor, "name": "Bench Partner", "apiKeyId": "key_bench", "apiKeyPrefix": "tb_ptk_bench"},
        "targets": [{"type": "connection", "id": f"con_{n % 1000:032x}"}], "workspaceId": chain,
        "context": {"clientAddress": "203.0.113.7", "userAgent": "bench", "sourcePlatform": "bench", "requestId": eid},
        "metadata": {"status": "active"}}, separators=(",", ":"))
    digest = hashlib.sha256()
    for part in (chain, str(seq), prev, body):
        digest.update(part.encode()); digest.update(b"\0")
    link = digest.hexdigest()
    batch_events.append((eid, chain, seq, at, action, actor, body, prev, link))
    batch_targets.append((f"con_{n % 1000:032x}", eid))
    prev = link
    if len(batch_events) == 50_000 or n == count - 1:
        db.executemany("INSERT INTO audit_events (id, chain, seq, occurred_at, action, actor_id, body, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)", batch_events)
        db.executemany("INSERT INTO audit_targets (target_id, event_id) VALUES (?,?)", batch_targets)
        batch_events, batch_targets = [], []
db.execute("UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ?", (seq, prev, chain))
db.commit()
PY
echo "seeded in $(python3 -c "import time; print(round(time.time() - $SEED_START, 1))") s"

start
BODY=$(printf '{"query":"query($w: ID!) { me { workspaces(filters: {ids: [$w]}) { auditEvents(limit: 50) { id action occurredAt actor { id } } } } }","variables":{"w":"%s"}}' "$WS")
curl -s -X POST "http://127.0.0.1:$PORT/graphql" -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" -d "$BODY" \
  | python3 -c 'import json,sys; n=len(json.load(sys.stdin)["data"]["me"]["workspaces"][0]["auditEvents"]); assert n == 50, n'
FILTERED=$(printf '{"query":"query($w: ID!) { me { workspaces(filters: {ids: [$w]}) { auditEvents(limit: 50, filters: {actions: [\\"member.added\\"], actorIds: [\\"acc_%032x\\"]}) { id } } } }","variables":{"w":"%s"}}' 5 "$WS")
cat >"$OUT/audit-post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.1f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
LUA
measure() { BODY="$1" TOKEN="$TOKEN" wrk -t1 -c1 -d10s -s "$OUT/audit-post.lua" "http://127.0.0.1:$PORT/graphql" | sed -n 's/^RESULT //p'; }
PAGE=$(measure "$BODY")
PAGE_FILTERED=$(measure "$FILTERED")
kill "$TB_PID"; wait "$TB_PID" 2>/dev/null || true

python3 - "$DATA" "$EVENTS" "$PAGE" "$PAGE_FILTERED" <<'PY'
import resource, subprocess, sys, time
data, events = sys.argv[1], int(sys.argv[2])
page = list(map(float, sys.argv[3].split()))
filtered = list(map(float, sys.argv[4].split()))
print(f"{'audit log, ' + format(events, ',') + ' events in one workspace':<52} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'target':>14}")
for name, (rps, p50, p99, errors) in (("auditEvents(limit: 50), newest first", page), ("  filtered by action and actor", filtered)):
    verdict = "p50 < 20 " + ("ok" if p50 < 20 else "MISSED") if name.startswith("auditEvents") else ""
    print(f"{name:<52} {rps:>8.0f} {p50:>8.2f} {p99:>8.2f} {verdict:>14}")
    if errors: print(f"warning: {int(errors)} non-2xx answers")
for fmt in ("jsonl", "csv"):
    started = time.time()
    with open("/dev/null", "wb") as sink:
        child = subprocess.Popen(["./target/release/taxbridge", "--data-dir", data, "audit", "export", "--since", "1970-01-01T00:00:00Z", "--format", fmt], stdout=subprocess.PIPE)
        lines = 0
        for chunk in iter(lambda: child.stdout.read(1 << 20), b""):
            lines += chunk.count(b"\n")
        child.wait()
    took = time.time() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"export {fmt:<5} {lines:>9,} lines in {took:6.1f} s ({lines / took:,.0f}/s), peak RSS of the exports so far {rss:.1f} MiB (target < 64: {'ok' if rss < 64 else 'MISSED'})")
verify_started = time.time()
verify = subprocess.run(["./target/release/taxbridge", "--data-dir", data, "audit", "verify"], capture_output=True, text=True)
print(f"audit verify: {verify.stdout.strip() or verify.stderr.strip()} ({time.time() - verify_started:.1f} s)")
PY
