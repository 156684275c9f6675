#!/usr/bin/env python3
"""The fleet test: Taxbridge run as deploy/ and the README's "Run a fleet" describe it, and
disturbed as operators see fleets disturbed.

Three `serve` nodes and one `taxbridge worker`, each started with the `ExecStart=` line of its
systemd unit in deploy/, share one PostgreSQL cluster of their own and the SeaweedFS bucket,
behind Debian's haproxy running deploy/haproxy.cfg unchanged. Checked, in order:

  refusal    a PostgreSQL node without blobs.url refuses to start, naming the setting
  owner      three nodes starting at once on an empty database make one owner account
  limits     one API key through the balancer gets about one node's quota, not three
  rolling    every node restarted in turn (SIGTERM, drain, start) while a client sends `me`
             and an import runs: no request fails and the balancer retried nothing
  takeover   a node killed (SIGKILL) mid-import: its downloads resume on the others
  database   PostgreSQL stopped mid-import: nodes answer 503 UNAVAILABLE (the balancer too),
             answer again by themselves once it is back
  storage    the S3 store stopped 20 s mid-import: downloads wait, nothing is marked failed;
             every node reports not ready, and the balancer sends requests to the live
             nodes anyway, so what needs no file keeps working
  exactly    every artifact of every import stored once: right sha256, one object each

Timings are printed, not asserted (a busy CI machine is slow); the bounds below are generous.

    python3 scripts/fleet/check.py --bin target/debug/taxbridge
Run by scripts/fleet/run.sh, which starts the database, the S3 store and checks haproxy.
"""
import argparse, hashlib, json, os, re, shlex, signal, socket, subprocess, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step(name, text):
    print(f"\n--- {name}: {text}", flush=True)


def fail(message):
    print(f"FLEET TEST FAILED: {message}", flush=True)
    raise SystemExit(1)


def check(ok, message):
    if not ok:
        fail(message)


# ----- the partner's file server -------------------------------------------------------------

def body_of(n):
    """The 10 KiB file number n serves."""
    return hashlib.sha256(str(n).encode()).digest() * 320


class Files(BaseHTTPRequestHandler):
    delay = 0.0

    def do_GET(self):
        if self.path.startswith("/v1/verify"):
            self.answer(200, json.dumps({"firmId": "fleet", "firmName": "Fleet CPA"}).encode(), "application/json")
        elif self.path.startswith("/f/"):
            time.sleep(Files.delay)
            self.answer(200, body_of(int(self.path[3:].split("?")[0])), "application/pdf")
        else:
            self.answer(404, b"", "text/plain")

    def answer(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *_):
        pass


# ----- the fleet's processes -----------------------------------------------------------------

def exec_start(unit):
    """The ExecStart= command of a deploy/ unit, as argv."""
    text = open(os.path.join(DEPLOY, unit)).read()
    line = re.search(r"^ExecStart=(.+)$", text, re.M).group(1)
    return shlex.split(line)


class Fleet:
    def __init__(self, args, work):
        self.bin = os.path.abspath(args.bin)
        self.work = work
        self.lb_port, self.stats_port = free_port(), free_port()
        self.ports = [free_port() for _ in range(3)]
        self.lb = f"http://127.0.0.1:{self.lb_port}"
        self.nodes = {}
        self.logs = {}
        self.config = os.path.join(work, "taxbridge.toml")
        self.env_file = os.path.join(work, "taxbridge.env")

    def write_settings(self, database_url, files_port):
        prefix = f"fleet-{int(time.time())}"
        self.blob_prefix = prefix
        # deploy/taxbridge.toml with this machine's addresses.
        config = open(os.path.join(DEPLOY, "taxbridge.toml")).read()
        config = config.replace('data_dir = "/var/lib/taxbridge"', f'data_dir = "{self.work}/data"')
        config = config.replace('"https://taxbridge.example.com"', f'"{self.lb}"')
        config = config.replace('"s3://taxbridge/blobs"', f'"s3://{os.environ["TAXBRIDGE_TEST_S3_BUCKET"]}/{prefix}"')
        config = config.replace('"http://10.0.0.20:8333"', f'"{os.environ["TAXBRIDGE_TEST_S3_ENDPOINT"]}"')
        config = config.replace('log_format = "json"', 'log_format = "text"')
        config = config.replace('"10.0.0.5/32"', '"127.0.0.1/32"')
        open(self.config, "w").write(config)
        env = open(os.path.join(DEPLOY, "taxbridge.env.example")).read()
        values = {
            "TAXBRIDGE_DATABASE_URL": database_url,
            "TAXBRIDGE_AUTH__JWT_SECRET": "fleet-signing-secret-0123456789abcdef",
            "TAXBRIDGE_ENCRYPTION__KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "TAXBRIDGE_BLOBS__ACCESS_KEY_ID": os.environ["TAXBRIDGE_TEST_S3_KEY"],
            "TAXBRIDGE_BLOBS__SECRET_ACCESS_KEY": os.environ["TAXBRIDGE_TEST_S3_SECRET"],
        }
        lines = []
        for line in env.splitlines():
            key = line.split("=", 1)[0]
            lines.append(f"{key}={values[key]}" if key in values else line)
        # The partner's file server runs on this machine.
        lines.append('TAXBRIDGE_EGRESS__ALLOW_CIDRS=["127.0.0.0/8"]')
        open(self.env_file, "w").write("\n".join(lines) + "\n")
        os.makedirs(f"{self.work}/data", exist_ok=True)

    def env(self, **extra):
        env = dict(os.environ)
        for line in open(self.env_file):
            line = line.strip()
            if line and not line.startswith("#"):
                key, value = line.split("=", 1)
                env[key] = value
        env.update(extra)
        return env

    def argv(self, unit, instance=None):
        argv = exec_start(unit)
        argv = [self.bin if a == "/usr/local/bin/taxbridge" else self.config if a == "/etc/taxbridge/taxbridge.toml" else a for a in argv]
        return [a.replace("%i", str(instance)) for a in argv]

    def start(self, name, unit, instance=None, **extra):
        log = open(os.path.join(self.work, f"{name}.log"), "a")
        self.logs[name] = log.name
        self.nodes[name] = subprocess.Popen(self.argv(unit, instance), env=self.env(**extra), stdout=log, stderr=log)

    def start_all(self):
        """haproxy, the three nodes and the worker, all at once; returns when haproxy sees every
        node up."""
        self.haproxy()
        for i in range(3):
            self.start_node(i)
        self.start("worker", "taxbridge-worker.service")
        for i in range(3):
            self.ready(i)
        self.wait_balanced({0, 1, 2})

    def start_node(self, i):
        self.start(f"node{i + 1}", "taxbridge@.service", self.ports[i])

    def ready(self, i, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{self.ports[i]}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        fail(f"node{i + 1} was not ready within {timeout} s; see {self.logs.get(f'node{i + 1}')}")

    def cli(self, *args):
        done = subprocess.run([self.bin, "--config", self.config, *args], env=self.env(), capture_output=True, text=True, timeout=60)
        check(done.returncode == 0, f"taxbridge {' '.join(args)}: {done.stderr}")
        return done.stdout.strip()

    def haproxy(self):
        env = dict(os.environ,
                   TAXBRIDGE_LB_BIND=f"127.0.0.1:{self.lb_port}",
                   TAXBRIDGE_LB_STATS=f"127.0.0.1:{self.stats_port}",
                   **{f"TAXBRIDGE_NODE_{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(self.ports)})
        log = open(os.path.join(self.work, "haproxy.log"), "a")
        self.nodes["haproxy"] = subprocess.Popen(["haproxy", "-db", "-f", os.path.join(DEPLOY, "haproxy.cfg")], env=env, stdout=log, stderr=log)

    def stats(self):
        """haproxy's counters per node: status, retries and redispatches."""
        text = requests.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5).text
        header = text.splitlines()[0].lstrip("# ").split(",")
        rows = {}
        for line in text.splitlines()[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == "taxbridge_nodes" and row["svname"].startswith("node"):
                rows[row["svname"]] = row
        return rows

    def wait_balanced(self, up, timeout=30):
        """Until haproxy sees exactly the nodes `up` as UP."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = {name: row["status"] for name, row in self.stats().items()}
            if all((status.get(f"node{i + 1}") == "UP") == (i in up) for i in range(3)):
                return
            time.sleep(0.2)
        fail(f"haproxy did not see nodes {sorted(i + 1 for i in up)} up within {timeout} s: {status}")

    def stop(self, name, sig=signal.SIGTERM, timeout=60):
        proc = self.nodes.pop(name)
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail(f"{name} did not stop within {timeout} s of {sig.name}")

    def close(self):
        for proc in self.nodes.values():
            proc.kill()


# ----- a client ------------------------------------------------------------------------------

class Client:
    def __init__(self, endpoint, token):
        self.endpoint, self.token = endpoint, token
        self.local = threading.local()

    def post(self, query, variables=None, timeout=30):
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers.update({"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        return session.post(self.endpoint, data=json.dumps({"query": query, "variables": variables or {}}), timeout=timeout)

    def gql(self, query, variables=None):
        for _ in range(20):
            answer = self.post(query, variables)
            # As a client should: 429 and 503 say when to try again.
            if answer.status_code in (429, 503):
                time.sleep(float(answer.headers.get("Retry-After", "1")))
                continue
            body = answer.json()
            check(not body.get("errors"), f"{query[:60]}…: {body.get('errors')}")
            return body["data"]
        fail(f"{query[:60]}… kept being refused: {answer.status_code} {answer.text[:300]}")


def login(endpoint, key):
    answer = requests.post(endpoint, json={"query": "mutation L($t: String!) { loginViaPersonalApiToken(token: $t) { accessToken } }", "variables": {"t": key}}, timeout=30)
    body = answer.json()
    check("errors" not in body, f"login: {body}")
    return body["data"]["loginViaPersonalApiToken"]["accessToken"]


class Load(threading.Thread):
    """`me` at a steady rate through the balancer; every failure kept with its kind."""

    def __init__(self, client, per_second):
        super().__init__(daemon=True)
        self.client, self.gap = client, 1 / per_second
        self.sent, self.failures, self.running = 0, [], True
        self.phase = "start"

    def run(self):
        with ThreadPoolExecutor(8) as pool:
            while self.running:
                pool.submit(self.one, self.phase)
                time.sleep(self.gap)

    def one(self, phase):
        self.sent += 1
        try:
            answer = self.client.post("{ me { id } }", timeout=20)
            body = answer.json()
            if answer.status_code != 200 or body.get("errors"):
                code = (body.get("errors") or [{}])[0].get("extensions", {}).get("code")
                self.failures.append((phase, f"HTTP {answer.status_code} {code}"))
        except (requests.RequestException, ValueError) as err:
            self.failures.append((phase, type(err).__name__))


# ----- imports -------------------------------------------------------------------------------

class Import:
    def __init__(self, client, files, name, works, first):
        self.client, self.files, self.name, self.works, self.first = client, files, name, works, first

    def start(self):
        c = self.client
        ws = c.gql("mutation W($n: String!) { createWorkspace(input: {displayName: $n}) { id } }", {"n": self.name})["createWorkspace"]["id"]
        self.workspace = ws
        conn = c.gql("mutation S($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"fleet\", inputs: $i) { id } }",
                     {"w": ws, "i": {"apiKey": "fleet-key", "baseUrl": self.files}})["startProviderConnection"]["id"]
        status = c.gql("mutation C($c: ID!) { collectProviderConnection(connectionId: $c) { status statusDetail } }", {"c": conn})
        check(status["collectProviderConnection"]["status"] == "active", f"collect: {status}")
        self.job = c.gql("mutation J($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"fleet\") { id } }", {"c": conn})["createConnectionJob"]["id"]
        inputs = [{"name": f"Client {i}", "externalId": f"c-{i}"} for i in range(self.works)]
        works = [w["id"] for w in c.gql("mutation W($j: ID!, $i: [CreateJobWorksInput!]!) { createJobWorks(connectionJobId: $j, inputs: $i) { id } }",
                                        {"j": self.job, "i": inputs})["createJobWorks"]]

        def artifacts(item):
            i, work = item
            files_of = [{"name": f"doc {k}", "type": "document", "externalId": str(k), "url": f"{self.files}/f/{self.first + i * 3 + k}"} for k in range(3)]
            c.gql("mutation A($w: ID!, $i: [CreateJobWorkArtifactsInput!]!) { createJobWorkArtifacts(jobWorkId: $w, inputs: $i) { id } }", {"w": work, "i": files_of})

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(artifacts, enumerate(works)))
        c.gql("mutation T($j: ID!) { triggerConnectionJob(connectionJobId: $j) { id } }", {"j": self.job})
        self.started = time.time()

    def progress(self):
        query = "query J($w: ID!, $j: [ID!]) { me { workspaces(filters: {ids: [$w]}) { connections { connectionJobs(filters: {ids: $j}) { status progress { artifacts artifactsSucceeded artifactsFailed } } } } } }"
        for ws in self.client.gql(query, {"w": self.workspace, "j": [self.job]})["me"]["workspaces"]:
            for conn in ws["connections"]:
                for found in conn["connectionJobs"]:
                    return found

    def wait(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.progress()
            if found["status"] != "active":
                return found, time.time() - self.started
            time.sleep(0.5)
        fail(f"{self.name} did not finish within {timeout} s: {self.progress()}")


def psql(url, sql):
    done = subprocess.run(["psql", url, "-Atc", sql], capture_output=True, text=True, timeout=30)
    check(done.returncode == 0, f"psql: {done.stderr}")
    return [line.split("|") for line in done.stdout.splitlines() if line]


def exactly_once(fleet, database_url, imp):
    rows = psql(database_url, f"SELECT url, status, sha256, blob_key FROM job_artifacts WHERE job_id = '{imp.job}'")
    check(len(rows) == imp.works * 3, f"{imp.name}: {len(rows)} artifacts, expected {imp.works * 3}")
    for url, status, sha, key in rows:
        n = int(url.rsplit("/", 1)[1])
        check(status == "success", f"{imp.name}: artifact {url} is {status}")
        check(sha == hashlib.sha256(body_of(n)).hexdigest(), f"{imp.name}: artifact {url} stored with the wrong sha256")
    keys = {row[3] for row in rows}
    check(len(keys) == len(rows), f"{imp.name}: two artifacts share a blob")
    # The bucket itself, through SeaweedFS's filer: one object per artifact, no leftovers.
    listing = requests.get(f"http://127.0.0.1:8888/buckets/{os.environ['TAXBRIDGE_TEST_S3_BUCKET']}/{fleet.blob_prefix}/workspaces/{imp.workspace}/artifacts/?limit=100000",
                           headers={"Accept": "application/json"}, timeout=30).json()
    objects = [e["FullPath"].rsplit("/", 1)[1] for e in listing.get("Entries") or []]
    check(sorted(objects) == sorted(k.rsplit("/", 1)[1] for k in keys), f"{imp.name}: the bucket holds {len(objects)} objects for {len(keys)} artifacts")
    print(f"{imp.name}: {len(rows)} artifacts, each stored once with the right sha256; {len(objects)} objects in the bucket")


# ----- the checks ----------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--database-url", required=True, help="a database of the fleet's own cluster (created empty)")
    parser.add_argument("--pg-stop", required=True, help="a shell command that stops the fleet's PostgreSQL")
    parser.add_argument("--pg-start", required=True)
    parser.add_argument("--s3-stop", required=True)
    parser.add_argument("--s3-start", required=True)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="taxbridge-fleet-")
    files_port = free_port()
    files = ThreadingHTTPServer(("127.0.0.1", files_port), Files)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    files_url = f"http://127.0.0.1:{files_port}"
    fleet = Fleet(args, work)
    fleet.write_settings(args.database_url, files_port)
    began = time.time()
    try:
        run(fleet, args, files_url)
    except SystemExit:
        for name, path in fleet.logs.items():
            print(f"\n===== last lines of {name} ({path})")
            print("".join(open(path).readlines()[-25:]))
        raise
    finally:
        fleet.close()
        files.shutdown()
    print(f"\nfleet test passed in {time.time() - began:.0f} s")


def run(fleet, args, files_url):
    step("refusal", "a PostgreSQL node without blobs.url refuses to start")
    done = subprocess.run(fleet.argv("taxbridge@.service", fleet.ports[0]), env=fleet.env(TAXBRIDGE_BLOBS__URL=""), capture_output=True, text=True, timeout=60)
    check(done.returncode != 0 and "blobs.url" in done.stderr, f"a node without blobs.url started or did not say why: {done.returncode} {done.stderr[-400:]}")
    print("refused, naming blobs.url")

    step("owner", "three nodes and a worker start at once on an empty database")
    fleet.start_all()
    owners = psql(args.database_url, "SELECT count(*) FROM accounts")[0][0]
    check(owners == "1", f"{owners} owner accounts after three first starts")
    print("one owner account; haproxy sees three nodes up")

    key = fleet.cli("partners", "create", "--name", "Fleet", "--provider-key", "fleet", "--email", "eng@fleet.example")
    load_key = fleet.cli("keys", "create", "--email", "eng@fleet.example", "--name", "load")
    endpoint = f"{fleet.lb}/graphql"
    client = Client(endpoint, login(endpoint, key))
    load_client = Client(endpoint, login(endpoint, load_key))

    step("limits", "400 requests of one key through the balancer at once")
    limits = Client(endpoint, login(endpoint, fleet.cli("keys", "create", "--email", "eng@fleet.example", "--name", "limits")))
    started = time.time()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: limits.post("{ me { id } }").status_code, range(400)))
    elapsed = time.time() - started
    ok, limited = statuses.count(200), statuses.count(429)
    one_node = 100 + 50 * elapsed  # request_burst + requests_per_second x elapsed
    print(f"{ok} answered, {limited} refused 429 in {elapsed:.2f} s; one node allows {one_node:.0f} in that time ({ok / one_node:.2f}x)")
    check(ok + limited == 400, f"other answers than 200 and 429: {sorted(set(statuses))}")
    check(ok <= 1.2 * one_node, f"{ok} got through: the fleet counts limits per node")

    step("rolling", "every node restarted in turn (SIGTERM) under load and an import")
    Files.delay = 1.0
    before = fleet.stats()
    load = Load(load_client, 25)
    load.phase = "rolling"
    load.start()
    rolling = Import(client, files_url, "rolling", 60, 0)
    rolling.start()
    for i in range(3):
        t0 = time.time()
        code = fleet.stop(f"node{i + 1}")
        stopped = time.time() - t0
        check(code == 0, f"node{i + 1} ended with {code} after SIGTERM")
        fleet.start_node(i)
        fleet.ready(i)
        fleet.wait_balanced({0, 1, 2})
        print(f"node{i + 1}: drained and stopped in {stopped:.1f} s, back and balanced {time.time() - t0:.1f} s after SIGTERM")
    after = fleet.stats()
    retried = sum(int(after[n]["wretr"] or 0) + int(after[n]["wredis"] or 0) - int(before[n]["wretr"] or 0) - int(before[n]["wredis"] or 0) for n in after)
    rolling_failures = [f for f in load.failures if f[0] == "rolling"]
    print(f"`me` requests sent {load.sent}, failed {len(rolling_failures)}; haproxy retries and redispatches {retried}")
    check(not rolling_failures, f"requests failed during the rolling restart: {rolling_failures[:10]}")
    check(retried == 0, f"haproxy retried {retried} requests: a node closed before the balancer moved away")

    step("takeover", "node2 killed (SIGKILL) mid-import, started again")
    load.phase = "killed"
    takeover = Import(client, files_url, "takeover", 60, 1000)
    takeover.start()
    time.sleep(3)
    fleet.stop("node2", signal.SIGKILL)
    killed_at = time.time()
    time.sleep(2)
    fleet.start_node(1)
    fleet.ready(1)
    found, took = takeover.wait(120)
    check(found["status"] == "completed", f"takeover: {found}")
    print(f"completed {took:.1f} s after the trigger, {time.time() - killed_at:.1f} s after the kill "
          f"({sum(1 for f in load.failures if f[0] == 'killed')} `me` requests in flight on the killed node failed)")
    found, _ = rolling.wait(120)
    check(found["status"] == "completed", f"rolling: {found}")
    load.phase = "after"

    step("database", "PostgreSQL stopped 6 s mid-import, then started again")
    Files.delay = 0.5
    engines = Import(client, files_url, "engines", 60, 2000)
    engines.start()
    time.sleep(1)
    load.phase = "database"
    subprocess.run(args.pg_stop, shell=True, check=True)
    down_at = time.time()
    time.sleep(1)
    direct = requests.post(f"http://127.0.0.1:{fleet.ports[0]}/graphql", json={"query": "{ me { id } }"},
                           headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
    body = direct.json()
    code = body["errors"][0]["extensions"]["code"]
    print(f"a node, {time.time() - down_at:.1f} s into the outage: HTTP {direct.status_code} {code}, Retry-After {direct.headers.get('Retry-After')}")
    check(direct.status_code == 503 and code == "UNAVAILABLE", f"a node answered {direct.status_code} {body}")
    time.sleep(max(0, down_at + 4 - time.time()))
    through = requests.post(endpoint, json={"query": "{ me { id } }"}, headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
    print(f"the balancer, {time.time() - down_at:.1f} s in (no node ready; a live one answers): HTTP {through.status_code} {through.json()['errors'][0]['extensions']['code']}")
    check(through.status_code == 503 and through.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE", f"the balancer answered {through.status_code} {through.text[:300]}")
    time.sleep(max(0, down_at + 6 - time.time()))
    subprocess.run(args.pg_start, shell=True, check=True)
    back_at = time.time()
    while True:
        answer = requests.post(f"http://127.0.0.1:{fleet.ports[0]}/graphql", json={"query": "{ me { id } }"},
                               headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        if answer.status_code == 200 and not answer.json().get("errors"):
            break
        check(time.time() - back_at < 30, f"a node still answers {answer.status_code} 30 s after the database came back")
        time.sleep(0.1)
    print(f"a node answered again {time.time() - back_at:.1f} s after the database was back")
    fleet.wait_balanced({0, 1, 2})
    print(f"haproxy sees every node up {time.time() - back_at:.1f} s after")
    load.phase = "after"

    step("storage", "the S3 store stopped 20 s mid-import, then started again")
    storage = Import(client, files_url, "storage", 60, 3000)
    storage.start()
    time.sleep(1)
    subprocess.run(args.s3_stop, shell=True, check=True)
    s3_down = time.time()
    time.sleep(10)
    ready = [name for name, row in fleet.stats().items() if row["status"] == "UP"]
    through = requests.post(endpoint, json={"query": "{ me { id } }"}, headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
    print(f"10 s into the outage: nodes ready {ready or 'none'} (each reports the blob store down); "
          f"`me` through the balancer: HTTP {through.status_code}")
    check(not ready, f"nodes still report ready with the blob store down: {ready}")
    check(through.status_code == 200 and not through.json().get("errors"), f"with no node ready, the balancer answered {through.status_code} {through.text[:300]}")
    time.sleep(max(0, s3_down + 20 - time.time()))
    subprocess.run(args.s3_start, shell=True, check=True)
    for imp in (engines, storage):
        found, took = imp.wait(180)
        progress = found["progress"]
        print(f"{imp.name}: {found['status']} {took:.1f} s after the trigger: {progress}")
        check(found["status"] == "completed" and progress["artifactsFailed"] == 0, f"{imp.name}: {found}")
    load.running = False

    step("exactly", "every artifact stored once")
    for imp in (rolling, takeover, engines, storage):
        exactly_once(fleet, args.database_url, imp)
    kinds = {}
    for phase, kind in load.failures:
        kinds.setdefault(phase, {}).setdefault(kind, 0)
        kinds[phase][kind] += 1
    print(f"`me` load: {load.sent} sent; failures by phase and kind: {kinds or 'none'}")


if __name__ == "__main__":
    main()
