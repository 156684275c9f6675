#!/usr/bin/env python3
"""The workspace dashboard's benchmark (issue: p50 under 20 ms for 50 connections and 10,000
works). Starts the release binary on a fresh SQLite data dir, makes two workspaces for one
user (an empty one, and one with 50 connections, 20 import jobs and 10,000 works of one file
each, written straight into the database), signs in through the pages with the code from the
log, then GETs each dashboard 500 times over one kept-alive connection after 50 to warm up.

    python3 bench/dashboard.py --bin target/release/taxbridge

Prints p50, p90 and p99 of the time to the whole page on loopback (server time plus one local
round trip) and the ratio between the two workspaces. Fails nothing.
"""
import argparse
import http.client
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

parser = argparse.ArgumentParser()
parser.add_argument("--bin", default="target/release/taxbridge")
parser.add_argument("--requests", type=int, default=500)
args = parser.parse_args()

EMAIL = "bench@firm.example"
data = tempfile.mkdtemp(prefix="taxbridge-dashboard-")
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
log = open(f"{data}/serve.log", "w+")
server = subprocess.Popen(
    [args.bin, "--data-dir", data, "serve", "--listen", f"127.0.0.1:{port}"],
    stdout=log, stderr=subprocess.STDOUT, text=True)
try:
    for _ in range(200):
        time.sleep(0.05)
        if "Taxbridge is serving" in open(f"{data}/serve.log").read():
            break

    def cli(*words):
        return subprocess.run([args.bin, "--data-dir", data, *words], check=True,
                              capture_output=True, text=True).stdout.strip()

    busy = cli("workspaces", "create", "--name", "Busy Firm", "--admin-email", EMAIL)
    cli("workspaces", "create", "--name", "Empty Firm", "--admin-email", EMAIL)

    db = sqlite3.connect(f"{data}/taxbridge.db", timeout=30)
    now = int(time.time() * 1000)
    connections = [f"con_{uuid.uuid4().hex}" for _ in range(50)]
    db.executemany(
        "INSERT INTO provider_connections (id, workspace_id, provider_key, category, status, display_name, settings, credentials, status_detail, last_verified_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(c, busy, "drake", "tax_software", "active", f"Office {i}", "{}", None, None, now, now + i, now + i)
         for i, c in enumerate(connections)])
    jobs = [(f"cjob_{uuid.uuid4().hex}", connections[i % 50]) for i in range(20)]
    db.executemany(
        "INSERT INTO connection_jobs (id, connection_id, workspace_id, name, status, created_at, updated_at, triggered_at, completed_at) VALUES (?,?,?,?,?,?,?,?,?)",
        [(j, c, busy, f"Batch {i}", "completed", now + i, now + i, now + i, now + i) for i, (j, c) in enumerate(jobs)])
    works, artifacts = [], []
    for n in range(10_000):
        job, connection = jobs[n % 20]
        work = f"jwork_{uuid.uuid4().hex}"
        work_id = f"work_{uuid.uuid4().hex}"
        works.append((work, work_id, job, connection, busy, f"client-{n}", f"Client {n}", None, "ready", now + n, now + n))
        artifacts.append((f"jart_{uuid.uuid4().hex}", f"art_{uuid.uuid4().hex}", work, work_id, job, connection, busy,
                          "w2", "W-2", "document", None, "success", "{}", None, 1024, "0" * 64, "application/pdf", now + n, now + n))
    db.executemany("INSERT INTO job_works (id, work_id, job_id, connection_id, workspace_id, external_id, name, tag, status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", works)
    db.executemany("INSERT INTO job_artifacts (id, artifact_id, job_work_id, work_id, job_id, connection_id, workspace_id, external_id, name, artifact_type, url, status, metadata, blob_key, size, sha256, mime_type, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", artifacts)
    db.commit()
    db.execute("ANALYZE")
    db.close()

    conn = http.client.HTTPConnection("127.0.0.1", port)
    cookies = {}

    def request(method, path, form=None):
        body = urllib.parse.urlencode(form) if form else None
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookies[key] = rest.split(";")[0]
        return response.status, text

    _, page = request("GET", "/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    request("POST", "/sign-in", {"email": EMAIL, "csrf_token": csrf})
    code = None
    for _ in range(100):
        found = re.findall(r'code="?(\d{6})', open(f"{data}/serve.log").read())
        if found:
            code = found[-1]
            break
        time.sleep(0.05)
    status, _ = request("POST", "/sign-in/code", {"email": EMAIL, "code": code, "csrf_token": csrf})
    assert status == 303 and "tb_session" in cookies, f"sign-in failed: {status}"

    def measure(slug, must_show):
        status, body = request("GET", f"/w/{slug}")
        assert status == 200 and must_show in body, (status, body[:500])
        for _ in range(50):
            request("GET", f"/w/{slug}")
        times = []
        for _ in range(args.requests):
            start = time.perf_counter()
            request("GET", f"/w/{slug}")
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
        return pick(0.5), pick(0.9), pick(0.99), len(body)

    busy_figures = measure("busy-firm", "Batch 19")
    empty_figures = measure("empty-firm", "No software is connected yet")
    print(f"dashboard GET /w/{{slug}}, {args.requests} requests after 50 to warm up, one kept-alive connection, SQLite, release")
    for name, (p50, p90, p99, size) in (("50 connections, 20 jobs, 10,000 works", busy_figures), ("empty workspace", empty_figures)):
        print(f"  {name:<40} p50 {p50:6.2f} ms  p90 {p90:6.2f} ms  p99 {p99:6.2f} ms  page {size / 1024:.1f} KiB")
    verdict = "ok" if busy_figures[0] < 20 else "MISSED"
    print(f"  p50 with 10,000 works: {busy_figures[0]:.2f} ms (target < 20: {verdict}); {busy_figures[0] / empty_figures[0]:.2f}x the empty workspace's")
finally:
    server.terminate()
    server.wait()
