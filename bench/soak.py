#!/usr/bin/env python3
"""The soak: the fleet of scripts/fleet/ (deploy/'s haproxy and units, three `serve` nodes and a
`taxbridge worker` on PostgreSQL and S3) under a steady mixed load for a long time, to see what
only time shows: errors that come and go, latency that creeps, memory that grows.

The load, through the balancer, about REQUESTS_PER_SECOND in all: logins, `me`, lists
(workspaces, job works), pulls from the reference partner (clients, a client's files), a push
import of 20 works x 3 files every minute, and a file sent to the partner's tus endpoint every
10 s. Each minute prints requests, errors by kind, p50/p99 latency and each process's resident
memory; the end prints the totals and whether memory stayed flat.

    python3 bench/soak.py --bin target/release/taxbridge --partner target/release/reference-partner \\
        --database-url URL [--minutes 30]
Run by bench/soak.sh, which builds the binaries and starts PostgreSQL and the S3 store.
"""
import argparse, base64, collections, os, random, signal, subprocess, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "fleet"))
import check as fleet_test  # noqa: E402  scripts/fleet/check.py: the fleet's processes
from check import Client, Fleet, Files, Import, free_port, login, fail  # noqa: E402

import requests  # noqa: E402

REQUESTS_PER_SECOND = int(os.environ.get("REQUESTS_PER_SECOND", "60"))


class Stats:
    """What each request did, by minute."""

    def __init__(self):
        self.lock = threading.Lock()
        self.minutes = collections.defaultdict(lambda: {"latencies": [], "errors": collections.Counter(), "ops": collections.Counter()})
        self.started = time.time()

    def minute(self):
        return int((time.time() - self.started) // 60)

    def add(self, op, latency, error=None):
        with self.lock:
            m = self.minutes[self.minute()]
            m["latencies"].append(latency)
            m["ops"][op] += 1
            if error:
                m["errors"][f"{op}: {error}"] += 1


def rss_of(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--partner", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--minutes", type=float, default=30)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="taxbridge-soak-")
    files_port = free_port()
    files = ThreadingHTTPServer(("127.0.0.1", files_port), Files)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    Files.delay = 0.05
    files_url = f"http://127.0.0.1:{files_port}"
    partner_port = free_port()
    partner = subprocess.Popen([args.partner, "--listen", f"127.0.0.1:{partner_port}", "--api-key", "soak-key", "--security-token", "soak-token"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fleet = Fleet(args, work)
    fleet.write_settings(args.database_url, files_port)
    # The soak measures the fleet, not its limits: one client sends for many.
    with open(fleet.env_file, "a") as env:
        env.write("TAXBRIDGE_RATE_LIMITS__REQUESTS_PER_SECOND=100000\nTAXBRIDGE_RATE_LIMITS__REQUEST_BURST=100000\n")
    try:
        soak(fleet, args, files_url, f"http://127.0.0.1:{partner_port}")
    finally:
        fleet.close()
        partner.kill()
        files.shutdown()


def soak(fleet, args, files_url, partner_url):
    fleet.start_all()
    endpoint = f"{fleet.lb}/graphql"
    key = fleet.cli("partners", "create", "--name", "Soak", "--provider-key", "fleet", "--email", "eng@soak.example")
    client = Client(endpoint, login(endpoint, key))
    puller_key = fleet.cli("partners", "create", "--name", "Soak Partner", "--provider-key", "qount", "--email", "eng@partner.example")
    puller = Client(endpoint, login(endpoint, puller_key))
    ws = puller.gql("mutation W($n: String!) { createWorkspace(input: {displayName: $n}) { id } }", {"n": "Pull Firm"})["createWorkspace"]["id"]
    conn = puller.gql("mutation S($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"qount\", inputs: $i) { id } }",
                      {"w": ws, "i": {"apiKey": "soak-key", "securityToken": "soak-token", "baseUrl": partner_url}})["startProviderConnection"]["id"]
    status = puller.gql("mutation C($c: ID!) { collectProviderConnection(connectionId: $c, inputs: {firmReferenceId: \"F-1\"}) { status } }", {"c": conn})
    if status["collectProviderConnection"]["status"] != "active":
        fail(f"the pull connection: {status}")
    # Some workspaces to list.
    for n in range(60):
        client.gql("mutation W($n: String!) { createWorkspace(input: {displayName: $n}) { id } }", {"n": f"Soak Firm {n}"})

    stats = Stats()
    pids = {name: proc.pid for name, proc in fleet.nodes.items() if name != "haproxy"}
    scope = "me { workspaces(filters: {ids: [$w]}) { connections(filters: {ids: [$c]}) { %s } } }"
    ops = [
        ("login", 2, lambda: requests.post(endpoint, json={"query": "mutation L($t: String!) { loginViaPersonalApiToken(token: $t) { accessToken } }", "variables": {"t": key}}, timeout=30)),
        ("me", 20, lambda: client.post("{ me { id name } }")),
        ("workspaces", 8, lambda: client.post("{ me { workspaces(limit: 50, offset: 10) { id slug } } }")),
        ("jobWorks", 4, lambda: client.post("{ me { workspaces(limit: 5) { connections { jobWorks(limit: 20) { id work { status } } } } } }")),
        ("pull clients", 3, lambda: puller.post("query P($w: ID!, $c: ID!) { " + scope % "clients(options: {limit: 10}) { id name }" + " }", {"w": ws, "c": conn})),
        ("pull files", 2, lambda: puller.post("query P($w: ID!, $c: ID!) { " + scope % "clients(options: {id: \"client-0001\"}) { files(options: {limit: 10}) { id fileName } }" + " }", {"w": ws, "c": conn})),
    ]
    weights = [w for _, w, _ in ops]
    running = True

    def one(op):
        name, _, call = op
        started = time.time()
        try:
            answer = call()
            latency = time.time() - started
            body = answer.json()
            if answer.status_code != 200 or body.get("errors"):
                code = (body.get("errors") or [{}])[0].get("extensions", {}).get("code")
                stats.add(name, latency, f"HTTP {answer.status_code} {code}")
            else:
                stats.add(name, latency)
        except (requests.RequestException, ValueError) as err:
            stats.add(name, time.time() - started, type(err).__name__)

    def background(every, name, action):
        n = 0
        while running:
            started = time.time()
            try:
                action(n)
                stats.add(name, time.time() - started)
            except SystemExit as err:
                stats.add(name, time.time() - started, str(err)[:80])
            except (requests.RequestException, ValueError) as err:
                stats.add(name, time.time() - started, type(err).__name__)
            n += 1
            time.sleep(max(0, every - (time.time() - started)))

    imports = []

    def push_import(n):
        imp = Import(client, files_url, f"soak-{n}", 20, 100000 + n * 100)
        imp.start()
        imports.append(imp)

    def upload(n):
        content = base64.b64encode(os.urandom(64 * 1024)).decode()
        answer = puller.gql("mutation U($c: ID!, $f: FileUploadInput!) { uploadConnectionFile(connectionId: $c, clientKey: \"client-0001\", file: $f) { success uploadId } }",
                            {"c": conn, "f": {"fileName": f"soak-{n}.pdf", "contentType": "application/pdf", "tusdEndpoint": f"{partner_url}/v1/uploads", "contentBase64": content}})
        if not answer["uploadConnectionFile"]["success"]:
            raise SystemExit(f"upload refused: {answer}")

    threads = [threading.Thread(target=background, args=(60, "import", push_import), daemon=True),
               threading.Thread(target=background, args=(10, "upload", upload), daemon=True)]
    for t in threads:
        t.start()
    print(f"soak: {args.minutes:g} min, about {REQUESTS_PER_SECOND} requests/s through haproxy over 3 nodes and a worker "
          f"(PostgreSQL, S3), plus an import of 60 files a minute and a 64 KiB tus upload every 10 s", flush=True)
    print("min  requests  errors  p50 ms  p99 ms  RSS MiB (node1 node2 node3 worker)", flush=True)
    rss = {name: [] for name in pids}
    end = time.time() + args.minutes * 60
    next_report = stats.started + 60
    with ThreadPoolExecutor(32) as pool:
        while time.time() < end:
            pool.submit(one, random.choices(ops, weights)[0])
            time.sleep(1 / REQUESTS_PER_SECOND)
            if time.time() >= next_report:
                minute = int((next_report - stats.started) // 60) - 1
                m = stats.minutes[minute]
                now = {name: rss_of(pid) for name, pid in pids.items()}
                for name, value in now.items():
                    rss[name].append(value)
                errors = sum(m["errors"].values())
                detail = f"  {dict(m['errors'])}" if errors else ""
                print(f"{minute + 1:3d}  {len(m['latencies']):8d}  {errors:6d}  {pct(m['latencies'], 0.5):6.1f}  {pct(m['latencies'], 0.99):6.1f}  "
                      f"{' '.join(str(now[n]) for n in ('node1', 'node2', 'node3', 'worker'))}{detail}", flush=True)
                next_report += 60
        running = False
    # Every import finished, each artifact once.
    for imp in imports:
        found, _ = imp.wait(300)
        if found["status"] != "completed" or found["progress"]["artifactsFailed"]:
            stats.add("import", 0, f"{imp.name} ended {found}")
    uploads = puller.gql("query P($w: ID!, $c: ID!) { " + scope % "uploads(limit: 500) { status }" + " }", {"w": ws, "c": conn})
    statuses = collections.Counter(u["status"] for w in uploads["me"]["workspaces"] for c in w["connections"] for u in c["uploads"])
    total = collections.Counter()
    count = 0
    latencies = []
    for m in stats.minutes.values():
        total.update(m["errors"])
        count += len(m["latencies"])
        latencies.extend(m["latencies"])
    print(f"\ntotal: {count} requests, {sum(total.values())} errors{': ' + str(dict(total)) if total else ''}; p50 {pct(latencies, 0.5):.1f} ms, p99 {pct(latencies, 0.99):.1f} ms")
    print(f"imports: {len(imports)} of 60 files each, all completed with no failed file: {all(i.progress()['status'] == 'completed' for i in imports)}; uploads by status: {dict(statuses)}")
    for name, values in rss.items():
        values = [v for v in values if v]
        if len(values) >= 2:
            # Flat: the last minutes no higher than the second minute's by more than a quarter.
            base = values[min(1, len(values) - 1)]
            flat = max(values[-3:]) <= base * 1.25 + 8
            print(f"RSS {name}: {values[0]} MiB at minute 1, {base} at 2, {values[-1]} at the end, peak {max(values)}: {'flat' if flat else 'GROWING'}")


if __name__ == "__main__":
    main()
