"""The push-import benchmark's driver: one import of WORKS works x 3 artifacts of 10 KiB, from
the first mutation to the job's `completed`, then one 1 GiB artifact against `curl -o` of the
same URL. Prints figures; samples the server's resident memory throughout.

    python3 bench/imports.py ENDPOINT TOKEN FILES_BASE SERVER_PID DATA_DIR LABEL [--big]
"""
import json, os, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

import requests

from rss import Rss  # bench/rss.py, beside this script

endpoint, token, files, pid, data_dir, label = sys.argv[1:7]
big = "--big" in sys.argv
WORKS = int(os.environ.get("WORKS", "10000"))
local = threading.local()


def gql(query, variables=None):
    session = getattr(local, "session", None)
    if session is None:
        session = local.session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    answer = session.post(endpoint, data=json.dumps({"query": query, "variables": variables or {}})).json()
    if answer.get("errors"):
        raise SystemExit(f"{query[:60]}…: {answer['errors']}")
    return answer["data"]


def new_job(name):
    ws = gql("mutation W($n: String!) { createWorkspace(input: {displayName: $n}) { id } }", {"n": name})["createWorkspace"]["id"]
    conn = gql("mutation S($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"bench\", inputs: $i) { id } }",
               {"w": ws, "i": {"apiKey": "bench-key", "baseUrl": files}})["startProviderConnection"]["id"]
    status = gql("mutation C($c: ID!) { collectProviderConnection(connectionId: $c) { status statusDetail } }", {"c": conn})
    assert status["collectProviderConnection"]["status"] == "active", status
    return gql("mutation J($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"bench\") { id } }", {"c": conn})["createConnectionJob"]["id"]


def wait(job):
    query = "query J($j: [ID!]) { me { workspaces { connections { connectionJobs(filters: {ids: $j}) { status progress { artifacts artifactsSucceeded artifactsFailed } } } } } }"
    while True:
        for ws in gql(query, {"j": [job]})["me"]["workspaces"]:
            for conn in ws["connections"]:
                for found in conn["connectionJobs"]:
                    if found["status"] != "active":
                        return found
        time.sleep(0.1)


def small_import():
    rss = Rss(pid); rss.start()
    started = time.time()
    job = new_job(f"{label} small")
    batches = [[{"name": f"Client {i}", "externalId": f"c-{i}"} for i in range(b, min(b + 1000, WORKS))] for b in range(0, WORKS, 1000)]
    with ThreadPoolExecutor(4) as pool:
        works = [w["id"] for ws in pool.map(lambda batch: gql(
            "mutation W($j: ID!, $i: [CreateJobWorksInput!]!) { createJobWorks(connectionJobId: $j, inputs: $i) { id } }",
            {"j": job, "i": batch})["createJobWorks"], batches) for w in ws]

    def artifacts(item):
        n, work = item
        files_of = [{"name": f"doc {k}", "type": "document", "externalId": str(k), "url": f"{files}/f/{n * 3 + k}"} for k in range(3)]
        gql("mutation A($w: ID!, $i: [CreateJobWorkArtifactsInput!]!) { createJobWorkArtifacts(jobWorkId: $w, inputs: $i) { id } }", {"w": work, "i": files_of})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(artifacts, enumerate(works)))
    created = time.time()
    gql("mutation T($j: ID!) { triggerConnectionJob(connectionJobId: $j) { id } }", {"j": job})
    final = wait(job)
    done = time.time()
    rss.running = False
    total = WORKS * 3
    p = final["progress"]
    assert final["status"] == "completed" and p["artifactsSucceeded"] == total, final
    if os.environ.get("BENCH_TOTALS"):
        with open(os.environ["BENCH_TOTALS"], "a") as totals:
            totals.write(f"{label} {done - started:.3f}\n")
    print(f"{label}: {WORKS:,} works x 3 artifacts of 10 KiB: {done - started:.1f} s from the first mutation to completed "
          f"(creating {created - started:.1f} s; {total / (done - started):,.0f} artifacts/s); server RSS peak {rss.peak} MiB; "
          f"target <= 60 s: {'ok' if done - started <= 60 else 'MISSED'}")


def one_gib():
    job = new_job(f"{label} big")
    work = gql("mutation W($j: ID!) { createJobWorks(connectionJobId: $j, inputs: [{name: \"Big\", externalId: \"big\"}]) { id } }", {"j": job})["createJobWorks"][0]["id"]
    rss = Rss(pid); rss.start()
    started = time.time()
    gql("mutation A($w: ID!, $u: String) { createJobWorkArtifacts(jobWorkId: $w, inputs: [{name: \"big\", type: \"document\", externalId: \"big\", url: $u}]) { id } }",
        {"w": work, "u": f"{files}/big"})
    gql("mutation T($j: ID!) { triggerConnectionJob(connectionJobId: $j) { id } }", {"j": job})
    final = wait(job)
    through = time.time() - started
    rss.running = False
    assert final["progress"]["artifactsSucceeded"] == 1, final
    target = os.path.join(data_dir, "curl.bin")
    started = time.time()
    subprocess.run(["curl", "-s", "-o", target, f"{files}/big"], check=True)
    direct = time.time() - started
    size = os.path.getsize(target)
    os.remove(target)
    ratio = direct / through
    print(f"{label}: one {size / 2**30:.0f} GiB artifact: {through:.2f} s through Taxbridge ({size / through / 2**20:,.0f} MiB/s), "
          f"{direct:.2f} s with curl -o ({size / direct / 2**20:,.0f} MiB/s): {ratio:.2f}x curl (target >= 0.8: {'ok' if ratio >= 0.8 else 'MISSED'}); "
          f"server RSS peak {rss.peak} MiB (target < 64: {'ok' if rss.peak < 64 else 'MISSED'})")


small_import()
if big:
    one_gib()
