#!/usr/bin/env python3
"""Memory under the probe's reproductions: what one client without a token can make the
server hold, and what one hostile partner platform can make it hold through the pull pattern.

    cargo build --release -p taxbridge && python3 bench/memory.py --bin target/release/taxbridge

Starts `taxbridge serve` on a fresh data dir, then sends
  1. 300 distinct 8 KB query documents (`query Qn { ab ab ab ... }`, each parsed, none valid),
  2. the 900 KB document `{a a a ... x450000}` four times at once,
  3. documents of 4,000 tokens (the most a document may have) eight at once, twice,
and prints the server's resident memory (VmRSS) after each step and its peak (VmHWM), against
a ceiling of 100 MiB. Then, against a hostile platform started here (it ignores `limit`: 10,000
clients, and for each client's files an answer of just under 4 MiB, either 115,000 small files
or three files with 1 MiB names), it runs `clients(options: {limit: 500}) { files }` (501 pulls
in one request) three times on each, and prints RSS against the idle figure before the pulls,
with a ceiling of 64 MiB above it. A figure, not a test: nothing here fails a build.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CEILING_MIB = 100
PULL_CEILING_MIB = 64
ANSWER_BYTES = 4 * 1024 * 1024 - 4096


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def post(endpoint, query):
    body = json.dumps({"query": query}).encode()
    request = urllib.request.Request(
        endpoint, data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        return json.load(err)


def at_once(count, fn):
    threads = [threading.Thread(target=fn) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def hostile_answers():
    """The hostile platform's answers, built once: a clients list and two files answers."""
    clients = json.dumps({"clients": [{"id": f"c-{n}", "name": f"Client {n}"} for n in range(10_000)]})
    items, size, n = [], 12, 0
    while True:
        item = json.dumps({"id": f"f-{n}", "fileName": f"f{n}.pdf"})
        if size + len(item) + 1 > ANSWER_BYTES:
            break
        items.append(item)
        size += len(item) + 1
        n += 1
    many = '{"files": [' + ",".join(items) + "]}"
    name = "n" * (1024 * 1024 - 64)
    wide = json.dumps({"files": [{"id": f"w-{i}", "fileName": name} for i in range(3)]})
    return clients.encode(), many.encode(), wide.encode(), n


def start_platform():
    import http.server

    clients, many, wide, count = hostile_answers()

    class Platform(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            if path.endswith("/v1/verify"):
                body = b'{"firmId": "f-1", "firmName": "Hostile Platform"}'
            elif path.endswith("/files"):
                body = wide if path.startswith("/wide/") else many
            elif path.endswith("/v1/clients"):
                body = clients
            else:
                self.send_response(404)
                self.end_headers()
                return
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway stopped reading: what a cut list does

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Platform)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, count


def gql(endpoint, query, variables=None, token=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(endpoint, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        return json.load(err)


def pulls(args, data, port, api_key, proc, endpoint):
    """The hostile platform's case: RSS before and after 501-pull requests."""
    platform, count = start_platform()
    base = f"http://127.0.0.1:{platform.server_address[1]}"
    subprocess.run(
        [args.bin, "--data-dir", data, "partners", "create", "--name", "Hostile",
         "--provider-key", "hostile", "--email", "eng@hostile.example"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    login = "mutation($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } }"
    token = gql(endpoint, login, {"k": api_key})["data"]["loginViaPersonalApiToken"]["accessToken"]
    workspace = gql(endpoint, "{ me { workspaces { id } } }", token=token)["data"]["me"]["workspaces"][0]["id"]
    start = "mutation($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"hostile\", inputs: $i) { id } }"
    collect = "mutation($c: ID!) { collectProviderConnection(connectionId: $c) { status } }"
    connections = {}
    for mode in ["many", "wide"]:
        started = gql(endpoint, start, {"w": workspace, "i": {"apiKey": "k", "baseUrl": f"{base}/{mode}"}}, token)
        connection = started["data"]["startProviderConnection"]["id"]
        assert gql(endpoint, collect, {"c": connection}, token)["data"]["collectProviderConnection"]["status"] == "active"
        connections[mode] = connection
    mib = lambda kib: kib / 1024
    idle = mib(status_kib(proc.pid, "VmRSS"))
    rows = [("idle, before the pulls", idle)]
    query = "query($c: ID!) { me { workspaces { connections(filters: {ids: [$c]}) { clients(options: {limit: 500}) { id files(options: {limit: 30}) { id } } } } } }"
    seen = []
    for mode, what in [("many", f"{count:,} files per answer"), ("wide", "three 1 MiB names per answer")]:
        for _ in range(3):
            answer = gql(endpoint, query, {"c": connections[mode]}, token)
            clients = answer["data"]["me"]["workspaces"][0]["connections"][0]["clients"] or []
            served = sum(1 for c in clients if c.get("files") is not None)
            seen.append(f"{mode}: {len(clients)} clients, {served} files lists, {len(answer.get('errors', []))} errors")
        rows.append((f"3 x 501 pulls, {what}", mib(status_kib(proc.pid, "VmRSS"))))
    platform.shutdown()
    return idle, rows, seen


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/taxbridge")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="taxbridge-memory-")
    port = free_port()
    env = dict(os.environ, TAXBRIDGE_EGRESS__ALLOW_CIDRS='["127.0.0.0/8"]')
    proc = subprocess.Popen(
        [args.bin, "--data-dir", data, "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    api_key = None
    for line in proc.stdout:
        if line.startswith("API key:"):
            api_key = line.split(":", 1)[1].strip()
        if line.startswith("Taxbridge is serving"):
            break
    endpoint = f"http://127.0.0.1:{port}/graphql"
    mib = lambda kib: kib / 1024
    rows = [("started", mib(status_kib(proc.pid, "VmRSS")))]
    codes = set()
    try:
        for n in range(300):
            query = f"query Q{n} {{" + " ab" * 2_600 + " }"
            codes.add(post(endpoint, query)["errors"][0]["extensions"]["code"])
        rows.append(("300 distinct 8 KB documents", mib(status_kib(proc.pid, "VmRSS"))))

        huge = "{" + " a" * 450_000 + "}"
        at_once(4, lambda: codes.add(post(endpoint, huge)["errors"][0]["extensions"]["code"]))
        rows.append(("4 x 900 KB documents at once", mib(status_kib(proc.pid, "VmRSS"))))

        widest = "{" + " a" * 3_990 + "}"
        for _ in range(2):
            at_once(8, lambda: codes.add(post(endpoint, widest)["errors"][0]["extensions"]["code"]))
        rows.append(("16 x 4,000-token documents, 8 at once", mib(status_kib(proc.pid, "VmRSS"))))
        peak = mib(status_kib(proc.pid, "VmHWM"))
        idle, pull_rows, seen = pulls(args, data, port, api_key, proc, endpoint)
    finally:
        proc.terminate()
        proc.wait()
    print(f"{'after':<44}{'RSS MiB':>10}")
    for name, value in rows:
        print(f"{name:<44}{value:>10.1f}")
    verdict = "ok" if peak < CEILING_MIB else "MISSED"
    print(f"{'peak (VmHWM)':<44}{peak:>10.1f}   ceiling {CEILING_MIB} MiB: {verdict}")
    print(f"answers seen: {', '.join(sorted(codes))}")
    print()
    print(f"{'a hostile platform (pull pattern)':<44}{'RSS MiB':>10}{'above idle':>12}")
    for name, value in pull_rows:
        print(f"{name:<44}{value:>10.1f}{value - idle:>12.1f}")
    worst = max(value for _, value in pull_rows) - idle
    verdict = "ok" if worst < PULL_CEILING_MIB else "MISSED"
    print(f"{'most above idle':<44}{'':>10}{worst:>12.1f}   ceiling {PULL_CEILING_MIB} MiB: {verdict}")
    for line in sorted(set(seen)):
        print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
