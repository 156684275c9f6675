#!/usr/bin/env python3
"""The pull-pattern benchmark's driver (run by bench/uploads.sh, which starts the servers).

    python3 bench/uploads.py ENDPOINT PARTNER_KEY FILES_BASE REFERENCE_BASE TUS_ENDPOINT SERVER_PID DATA_DIR

1. One file of BIG_BYTES (1 GiB) is imported as an artifact (the bytes into blob storage),
   then sent with uploadConnectionFile to the tus server; timed from the mutation to the
   upload's `completed`, with the server's resident memory sampled. `curl -T` sends the same
   stored file to a plain HTTP sink for comparison: target >= 0.7x curl, RSS < 64 MiB.
2. `clients(options: {limit: 500})` through the gateway against the reference partner, and
   `GET /v1/clients?limit=500` to it directly, 300 times each over kept-alive connections:
   the added latency at p50 (target < 2 ms) and p90.
Prints figures; fails nothing.
"""
import glob
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

from rss import Rss  # bench/rss.py, beside this script

endpoint, partner_key, files, reference, tus_endpoint, pid, data_dir = sys.argv[1:8]
BIG = int(os.environ.get("BIG_BYTES", str(1 << 30)))


class Client:
    """One kept-alive HTTP/1.1 connection."""

    def __init__(self, base):
        url = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port)
        self.prefix = url.path.rstrip("/")

    def request(self, method, path, body=None, headers=None):
        self.conn.request(method, self.prefix + path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return response.status, response.read()


api = Client(endpoint.rsplit("/graphql", 1)[0])
token = None


def gql(query, variables=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, body = api.request("POST", "/graphql", json.dumps({"query": query, "variables": variables or {}}), headers)
    answer = json.loads(body)
    assert "errors" not in answer, answer
    return answer["data"]


token = gql("mutation L($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } }", {"k": partner_key})["loginViaPersonalApiToken"]["accessToken"]
ws = gql("mutation { createWorkspace(input: {displayName: \"Bench CPA\"}) { id } }")["createWorkspace"]["id"]


def connection(base, key):
    conn = gql("mutation S($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"bench\", inputs: $i) { id } }",
               {"w": ws, "i": {"apiKey": key, "baseUrl": base}})["startProviderConnection"]["id"]
    status = gql("mutation C($c: ID!) { collectProviderConnection(connectionId: $c) { status statusDetail } }", {"c": conn})
    assert status["collectProviderConnection"]["status"] == "active", status
    return conn


def one_big_upload():
    conn = connection(files, "bench-key")
    job = gql("mutation J($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"big\") { id } }", {"c": conn})["createConnectionJob"]["id"]
    work = gql("mutation W($j: ID!) { createJobWorks(connectionJobId: $j, inputs: [{name: \"Big\", externalId: \"big\"}]) { id } }", {"j": job})["createJobWorks"][0]["id"]
    artifact = gql("mutation A($w: ID!, $u: String) { createJobWorkArtifacts(jobWorkId: $w, inputs: [{name: \"big\", type: \"document\", externalId: \"big\", url: $u}]) { artifactId } }",
                   {"w": work, "u": f"{files}/big"})["createJobWorkArtifacts"][0]["artifactId"]
    gql("mutation T($j: ID!) { triggerConnectionJob(connectionJobId: $j) { id } }", {"j": job})
    while True:
        found = gql("query($c: ID!) { me { workspaces { connections(filters: {ids: [$c]}) { connectionJobs { status } } } } }", {"c": conn})
        if found["me"]["workspaces"][0]["connections"][0]["connectionJobs"][0]["status"] == "completed":
            break
        time.sleep(0.2)
    stored = max(glob.glob(os.path.join(data_dir, "blobs", "**", artifact), recursive=True), key=os.path.getsize)
    size = os.path.getsize(stored)

    rss = Rss(pid); rss.start()
    started = time.time()
    upload = gql("mutation U($c: ID!, $f: FileUploadInput!) { uploadConnectionFile(connectionId: $c, clientKey: \"bench-client\", file: $f) { uploadId } }",
                 {"c": conn, "f": {"fileName": "big.bin", "tusdEndpoint": tus_endpoint, "artifactId": artifact}})["uploadConnectionFile"]["uploadId"]
    while True:
        rows = gql("query($c: ID!) { me { workspaces { connections(filters: {ids: [$c]}) { uploads { id status bytesSent error } } } } }", {"c": conn})
        row = next(u for u in rows["me"]["workspaces"][0]["connections"][0]["uploads"] if u["id"] == upload)
        if row["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    through = time.time() - started
    rss.running = False
    assert row["status"] == "completed", row

    started = time.time()
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-T", stored, f"{files}/sink"], check=True)
    direct = time.time() - started
    # The same bytes into the same tus server by curl: one creation, one PATCH of the whole
    # file. What the tus server itself can take, and so the most any client can reach.
    created = subprocess.run(["curl", "-si", "-X", "POST", tus_endpoint, "-H", "Tus-Resumable: 1.0.0",
                              "-H", f"Upload-Length: {size}"], check=True, capture_output=True, text=True).stdout
    location = next(line.split(":", 1)[1].strip() for line in created.splitlines() if line.lower().startswith("location:"))
    started = time.time()
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "PATCH", location, "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                    "-H", "Content-Type: application/offset+octet-stream", "-T", stored], check=True)
    tus_direct = time.time() - started
    ratio = direct / through
    print(f"one {size / 2**30:.2f} GiB file over tus: {through:.2f} s through Taxbridge ({size / through / 2**20:,.0f} MiB/s), "
          f"{direct:.2f} s with curl -T to a plain sink ({size / direct / 2**20:,.0f} MiB/s): {ratio:.2f}x curl "
          f"(target >= 0.7: {'ok' if ratio >= 0.7 else 'MISSED'}); server RSS peak {rss.peak} MiB "
          f"(target < 64: {'ok' if rss.peak < 64 else 'MISSED'})")
    print(f"  the tus server's own ceiling: curl -T of the same file into it (one PATCH) takes {tus_direct:.2f} s "
          f"({size / tus_direct / 2**20:,.0f} MiB/s); Taxbridge reaches {tus_direct / through:.2f}x of that")


def pull_latency(rounds=300):
    conn = connection(reference, "bench-key")
    query = "query($c: ID!) { me { workspaces { connections(filters: {ids: [$c]}) { clients(options: {limit: 500}) { id name email phone type lastModified } } } } }"
    body = json.dumps({"query": query, "variables": {"c": conn}})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    direct_client = Client(reference)
    direct_headers = {"Authorization": "Bearer bench-key", "Accept": "application/json"}
    gateway, direct = [], []
    for i in range(rounds + 20):
        started = time.perf_counter()
        status, answer = api.request("POST", "/graphql", body, headers)
        took = time.perf_counter() - started
        assert status == 200 and len(json.loads(answer)["data"]["me"]["workspaces"][0]["connections"][0]["clients"]) == 500
        if i >= 20:
            gateway.append(took)
        started = time.perf_counter()
        status, answer = direct_client.request("GET", "/v1/clients?limit=500", headers=direct_headers)
        took = time.perf_counter() - started
        assert status == 200 and len(json.loads(answer)["clients"]) == 500
        if i >= 20:
            direct.append(took)

    def pct(values, p):
        return sorted(values)[int(len(values) * p)] * 1000

    added50 = pct(gateway, 0.5) - pct(direct, 0.5)
    added90 = pct(gateway, 0.9) - pct(direct, 0.9)
    print(f"clients(options: {{limit: 500}}) x {rounds}: through Taxbridge p50 {pct(gateway, 0.5):.2f} ms, p90 {pct(gateway, 0.9):.2f} ms; "
          f"the reference partner directly p50 {pct(direct, 0.5):.2f} ms, p90 {pct(direct, 0.9):.2f} ms; "
          f"added p50 {added50:.2f} ms (target < 2: {'ok' if added50 < 2 else 'MISSED'}), added p90 {added90:.2f} ms")


pull_latency()
one_big_upload()
