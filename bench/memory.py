#!/usr/bin/env python3
"""Memory under the probe's unauthenticated reproductions (issue rows 2 and 3): what one
client without a token can make the server hold.

    cargo build --release -p taxbridge && python3 bench/memory.py --bin target/release/taxbridge

Starts `taxbridge serve` on a fresh data dir, then sends
  1. 300 distinct 8 KB query documents (`query Qn { ab ab ab ... }`, each parsed, none valid),
  2. the 900 KB document `{a a a ... x450000}` four times at once,
  3. documents of 4,000 tokens (the most a document may have) eight at once, twice,
and prints the server's resident memory (VmRSS) after each step and its peak (VmHWM), against
a ceiling of 100 MiB. A figure, not a test: nothing here fails a build.
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/taxbridge")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="taxbridge-memory-")
    port = free_port()
    proc = subprocess.Popen(
        [args.bin, "--data-dir", data, "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    for line in proc.stdout:
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
    finally:
        proc.terminate()
        proc.wait()
    print(f"{'after':<44}{'RSS MiB':>10}")
    for name, value in rows:
        print(f"{name:<44}{value:>10.1f}")
    verdict = "ok" if peak < CEILING_MIB else "MISSED"
    print(f"{'peak (VmHWM)':<44}{peak:>10.1f}   ceiling {CEILING_MIB} MiB: {verdict}")
    print(f"answers seen: {', '.join(sorted(codes))}")


if __name__ == "__main__":
    sys.exit(main())
