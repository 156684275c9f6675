#!/usr/bin/env python3
"""Checks that the reference partner answers what docs/partner-protocol.openapi.yaml says.

    python3 scripts/partner/check_openapi.py --bin target/debug/reference-partner

Starts the reference partner on a free port, calls every operation of the OpenAPI file with
good credentials (and the documented error cases: no key, wrong security token, unknown
client), and validates each answer's status and body against the file's schemas
(JSON Schema 2020-12, as OpenAPI 3.1 has it). Prints a line per check and closes with
`partner-protocol: N ok, N wrong`; exits non-zero on any mismatch.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import jsonschema
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPEC = os.path.join(ROOT, "docs", "partner-protocol.openapi.yaml")
KEY, TOKEN = "check-key", "check-token"


def resolve(node, spec):
    """The node with every local `$ref` replaced by what it points at."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(target, spec)
        return {k: resolve(v, spec) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, spec) for v in node]
    return node


def call(base, path, headers):
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "reference-partner"))
    args = parser.parse_args()
    spec = resolve(yaml.safe_load(open(SPEC, encoding="utf-8")), yaml.safe_load(open(SPEC, encoding="utf-8")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([args.bin, "--listen", f"127.0.0.1:{port}", "--api-key", KEY, "--security-token", TOKEN],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    proc.stdout.readline()
    base = f"http://127.0.0.1:{port}"
    good = {"Authorization": f"Bearer {KEY}", "X-Security-Token": TOKEN}
    ok = wrong = 0

    def check(name, path, headers, status):
        nonlocal ok, wrong
        template = next(p for p in spec["paths"] if p.replace("{id}", "client-0001") == path.split("?")[0] or p == path.split("?")[0])
        documented = spec["paths"][template]["get"]["responses"][str(status)]
        schema = documented["content"]["application/json"]["schema"]
        got_status, body = call(base, path, headers)
        problem = None
        if got_status != status:
            problem = f"status {got_status}, documented {status}"
        else:
            try:
                jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)
            except jsonschema.ValidationError as err:
                problem = err.message
        if problem:
            wrong += 1
            print(f"WRONG {name}: {problem}")
        else:
            ok += 1
            print(f"OK    {name}")

    try:
        check("verify", "/v1/verify", good, 200)
        check("verify without a key", "/v1/verify", {}, 401)
        check("verify with a wrong security token", "/v1/verify", {"Authorization": f"Bearer {KEY}", "X-Security-Token": "nope"}, 403)
        check("list clients", "/v1/clients?limit=5&offset=2", good, 200)
        check("list clients without a key", "/v1/clients", {}, 401)
        check("one client", "/v1/clients/client-0001", good, 200)
        check("a client's files", "/v1/clients/client-0001/files?limit=2", good, 200)
        check("a client's files with a wrong token", "/v1/clients/client-0001/files", {"Authorization": f"Bearer {KEY}", "X-Security-Token": "x"}, 403)
        for path in ["/v1/clients/nobody", "/v1/clients/nobody/files"]:
            name = "an unknown client" + (" (files)" if path.endswith("files") else "")
            _, body = call(base, path, good)
            got_status, _ = call(base, path, good)
            schema = spec["components"]["responses"]["NotFound"]["content"]["application/json"]["schema"]
            if got_status == 404 and jsonschema.Draft202012Validator(schema).is_valid(body):
                ok += 1
                print(f"OK    {name}")
            else:
                wrong += 1
                print(f"WRONG {name}: status {got_status}, body {body}")
        # Paging: the seeded firm has 25 clients.
        _, page = call(base, "/v1/clients?limit=500", good)
        if len(page["clients"]) == 25:
            ok += 1
            print("OK    paging returns the seeded 25 clients")
        else:
            wrong += 1
            print(f"WRONG paging: {len(page['clients'])} clients")
        # The tus endpoint: create, two chunks, a wrong offset, HEAD, and the file listed.
        def tus(name, method, path, headers, status, expect_headers=(), data=None):
            nonlocal ok, wrong
            documented = spec["paths"][next(p for p in spec["paths"] if p.startswith("/v1/uploads") and (p == path or "{uploadId}" in p and path.count("/") == 3))]
            known = str(status) in documented[method.lower()]["responses"]
            request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    got, got_headers = response.status, response.headers
            except urllib.error.HTTPError as err:
                got, got_headers = err.code, err.headers
            missing = [h for h in expect_headers if got_headers.get(h) is None]
            if got == status and known and not missing:
                ok += 1
                print(f"OK    {name}")
            else:
                wrong += 1
                print(f"WRONG {name}: status {got} (documented: {known}), missing headers {missing}")
            return got_headers

        resumable = {"Tus-Resumable": "1.0.0"}
        meta = "filename cmV0dXJuLnBkZg==,filetype YXBwbGljYXRpb24vcGRm,clientKey Y2xpZW50LTAwMDE="
        created = tus("tus: create an upload", "POST", "/v1/uploads",
                      {**resumable, "Upload-Length": "10", "Upload-Metadata": meta}, 201, ["Location", "Tus-Resumable"])
        upload = (created.get("Location") or "/v1/uploads/missing").replace(base, "")
        chunk = {**resumable, "Content-Type": "application/offset+octet-stream"}
        tus("tus: the first chunk", "PATCH", upload, {**chunk, "Upload-Offset": "0"}, 204, ["Upload-Offset"], b"%PDF-")
        tus("tus: a chunk at the wrong offset", "PATCH", upload, {**chunk, "Upload-Offset": "0"}, 409, [], b"xxxxx")
        offset = tus("tus: HEAD gives the offset", "HEAD", upload, resumable, 200, ["Upload-Offset"])
        tus("tus: the last chunk", "PATCH", upload, {**chunk, "Upload-Offset": offset.get("Upload-Offset") or "0"}, 204, ["Upload-Offset"], b"1.7\n%")
        tus("tus: without Tus-Resumable", "POST", "/v1/uploads", {"Upload-Length": "1"}, 412)
        tus("tus: an unknown upload", "HEAD", "/v1/uploads/nobody", resumable, 404)
        status, listed = call(base, "/v1/clients/client-0001/files?limit=10", good)
        files_schema = spec["paths"]["/v1/clients/{id}/files"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        names = [f.get("fileName") for f in listed.get("files", [])]
        if status == 200 and jsonschema.Draft202012Validator(files_schema).is_valid(listed) and "return.pdf" in names:
            ok += 1
            print("OK    tus: the finished upload is listed among the client's files")
        else:
            wrong += 1
            print(f"WRONG tus: the finished upload is not listed: {listed}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"partner-protocol: {ok} ok, {wrong} wrong")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
