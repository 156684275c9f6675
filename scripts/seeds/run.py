#!/usr/bin/env python3
"""Runs the example programs of the published doc pages in ../shared/seeds against a real
Taxbridge server, with only the endpoint (and the placeholder key/token) changed.

    python3 scripts/seeds/run.py --bin target/debug/taxbridge

Starts `taxbridge serve` on a fresh data dir and a free port, takes the first-start API key,
then runs every cURL, Python (requests), JavaScript and TypeScript example and the bare GraphQL
documents, checking each for the success it promises. Prints one line per example and closes
with `N passed, N failed`; exits non-zero on any failure.
"""
import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SEEDS = os.path.abspath(os.path.join(ROOT, "..", "shared", "seeds"))
DOC_ENDPOINT = "https://gateway.filed.com/graphql"
BLOCK = re.compile(r"^([ \t]*)```(\w+)(?: ([^\n]*?))?(?: theme=\{null\})?\n(.*?)^\1```", re.M | re.S)

# Doc pages whose operations the gateway does not serve yet, with the reason. Each entry must
# name the issue that removes it; the runner fails if a listed page starts passing unnoticed.
PENDING = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary):
    data_dir = tempfile.mkdtemp(prefix="taxbridge-seeds-")
    port = free_port()
    # The reference partner runs on loopback: the egress policy must allow it.
    env = dict(os.environ, TAXBRIDGE_EGRESS__ALLOW_CIDRS='["127.0.0.0/8"]')
    proc = subprocess.Popen(
        [binary, "--data-dir", data_dir, "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    key = None
    for line in proc.stdout:
        if line.startswith("API key: "):
            key = line.split(": ", 1)[1].strip()
        if line.startswith("Taxbridge is serving"):
            break
    if not key:
        proc.kill()
        sys.exit("taxbridge serve printed no `API key:` line on first start")
    return proc, f"http://127.0.0.1:{port}/graphql", key, data_dir


def blocks(page):
    """Code blocks of a page, as (section heading, language, title, code)."""
    text = open(os.path.join(SEEDS, page), encoding="utf-8").read()
    out = []
    for match in BLOCK.finditer(text):
        heading = [h for h in re.findall(r"^##+ (.+)$", text[: match.start()], re.M)]
        section = next((h for h in reversed(heading) if h.startswith(("Step", "Complete", "Example"))), heading[-1] if heading else "")
        code = textwrap.dedent(match.group(4))
        out.append((section, match.group(2), (match.group(3) or "").strip(), code))
    return out


def post(endpoint, body, token=None):
    headers = {"Content-Type": "application/json", "source-platform": "taxbridge-seed-runner"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(endpoint, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


def shape(value):
    """The key structure of a JSON value, for comparing a doc's sample response with ours."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__ if value is not None else "null"


class Runner:
    def __init__(self, endpoint, key, workdir, tsc):
        self.endpoint, self.key, self.workdir, self.tsc = endpoint, key, workdir, tsc
        self.passed = self.failed = 0
        self._token = None

    def token(self):
        if self._token is None:
            self._token = post(self.endpoint, {
                "query": "mutation L($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } }",
                "variables": {"k": self.key},
            })["data"]["loginViaPersonalApiToken"]["accessToken"]
        return self._token

    def localise(self, code):
        return (code.replace(DOC_ENDPOINT, self.endpoint)
                    .replace("your-api-key-here", self.key)
                    .replace("your-access-token-here", self.token()))

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS  {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name}\n{textwrap.indent(detail.strip(), '      ')}")

    def run(self, name, argv, expect, env_extra=None):
        env = dict(os.environ, FILED_API_KEY=self.key, **(env_extra or {}))
        try:
            done = subprocess.run(argv, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            self.check(name, False, "timed out after 60 s")
            return ""
        output = done.stdout + done.stderr
        self.check(name, done.returncode == 0 and all(e in output for e in expect),
                   f"exit {done.returncode}; expected {expect!r} in:\n{output}")
        return done.stdout

    def write(self, name, code):
        path = os.path.join(self.workdir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(code)
        return path

    def customer_guide(self):
        page = "customer-integration-guide.md"
        by = {}
        for section, lang, title, code in blocks(page):
            by.setdefault((section.split(":")[0], lang, title), []).append(code)
        step2, step3 = "Step 2", "Step 3"
        complete = "Complete Integration Example"
        get = lambda s, lang, title: by[(s, lang, title)][0]

        # Bare GraphQL documents, sent as they are written.
        login_doc = get(step2, "graphql", "GraphQL")
        got = post(self.endpoint, {"query": login_doc, "variables": {"apiKey": self.key}})
        self.check(f"{page} step 2 GraphQL document", "errors" not in got and got["data"]["loginViaPersonalApiToken"]["accessToken"], json.dumps(got))
        sample = json.loads(get(step2, "json", "Response"))
        self.check(f"{page} step 2 response has the documented shape", shape(got) == shape(sample), f"{shape(got)} != {shape(sample)}")
        me_doc = get(step3, "graphql", "GraphQL")
        got = post(self.endpoint, {"query": me_doc}, self.token())
        self.check(f"{page} step 3 GraphQL document", "errors" not in got and got["data"]["me"]["id"], json.dumps(got))
        sample = json.loads(get(step3, "json", "Response"))
        self.check(f"{page} step 3 response has the documented shape", shape(got) == shape(sample), f"{shape(got)} != {shape(sample)}")

        # cURL, run by the shell exactly as printed.
        out = self.run(f"{page} step 2 cURL", ["bash", self.write("step2.sh", self.localise(get(step2, "bash", "cURL")))], ["accessToken"])
        if out:
            token = json.loads(out)["data"]["loginViaPersonalApiToken"]["accessToken"]
            self._token = token
        self.run(f"{page} step 3 cURL", ["bash", self.write("step3.sh", self.localise(get(step3, "bash", "cURL")))], ['"me"', '"id"'])

        # Step 3 uses step 2's variables. In JavaScript both snippets declare `response`, so
        # each runs as its own module: step 2 reports its accessToken, step 3 starts from it.
        js2 = self.localise(get(step2, "javascript", "JavaScript")) + "\nconsole.log(`ACCESS_TOKEN=${accessToken}`);\n"
        out = self.run(f"{page} step 2 JavaScript", ["node", self.write("step2.mjs", js2)], ["ACCESS_TOKEN=eyJ"])
        token = next((l.split("=", 1)[1] for l in out.splitlines() if l.startswith("ACCESS_TOKEN=")), "")
        js3 = f"const accessToken = {json.dumps(token)};\n" + self.localise(get(step3, "javascript", "JavaScript"))
        self.run(f"{page} step 3 JavaScript", ["node", self.write("step3.mjs", js3)], ["Current user:", "id: 'acc_"])
        py = self.localise(get(step2, "python", "Python") + "\n" + get(step3, "python", "Python"))
        self.run(f"{page} steps 2+3 Python", [sys.executable, self.write("steps.py", py)], ["Current user ID: acc_"])

        success = "Integration successful! User ID: acc_"
        self.run(f"{page} complete example JavaScript", ["node", self.write("complete.js", self.localise(get(complete, "javascript", "JavaScript")))], [success])
        self.run(f"{page} complete example Python", [sys.executable, self.write("complete.py", self.localise(get(complete, "python", "Python")))], [success])
        ts = self.write("complete.ts", self.localise(get(complete, "typescript", "TypeScript")))
        compiled = subprocess.run([self.tsc, "--strict", "--target", "es2022", "--module", "commonjs", "--lib", "es2022,dom",
                                   "--types", "node", "--typeRoots", os.path.join(HERE, "node_modules", "@types"),
                                   "--outDir", os.path.join(self.workdir, "ts-out"), ts], capture_output=True, text=True)
        self.check(f"{page} complete example TypeScript type-checks", compiled.returncode == 0, compiled.stdout + compiled.stderr)
        if compiled.returncode == 0:
            self.run(f"{page} complete example TypeScript", ["node", os.path.join(self.workdir, "ts-out", "complete.js")], [success])

    def provider_connection(self, binary, data_dir):
        """start-provider-connection.md: a partner (registered with the CLI, as an operator
        does) starts a connection on its workspace. Only the host, the token and the page's two
        placeholders (`workspace_123456`, `<partner_key>`) are replaced."""
        page = "start-provider-connection.md"
        partner_key = "seedpartner"
        created = subprocess.run(
            [binary, "--data-dir", data_dir, "partners", "create", "--name", "Seed Partner",
             "--provider-key", partner_key, "--email", "eng@seedpartner.example"],
            capture_output=True, text=True, timeout=60,
        )
        if created.returncode != 0:
            self.check(f"{page} partner registered", False, created.stderr)
            return
        token = post(self.endpoint, {
            "query": "mutation L($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } }",
            "variables": {"k": created.stdout.strip()},
        })["data"]["loginViaPersonalApiToken"]["accessToken"]
        workspace = post(self.endpoint, {
            "query": "mutation { createWorkspace(input: {displayName: \"Seed Firm\"}) { id } }",
        }, token)["data"]["createWorkspace"]["id"]
        blocks_ = blocks(page)
        doc = next(code for _, lang, _, code in blocks_ if lang == "graphql")
        curl = next(code for _, lang, title, code in blocks_ if lang == "bash" and title == "cURL")
        sample = json.loads(next(code for _, lang, _, code in blocks_ if lang == "json"))
        variables = {"workspaceId": workspace, "providerKey": partner_key,
                     "inputs": {"apiKey": "firm-specific-api-key-12345", "baseUrl": "https://api.canopy.com"}}
        got = post(self.endpoint, {"query": doc, "variables": variables}, token)
        ok = "errors" not in got and got["data"]["startProviderConnection"]["status"] == "pending"
        self.check(f"{page} GraphQL document", ok, json.dumps(got))
        self.check(f"{page} response has the documented shape", shape(got) == shape(sample), f"{shape(got)} != {shape(sample)}")
        script = (curl.replace(DOC_ENDPOINT, self.endpoint)
                      .replace("<accessToken>", token)
                      .replace("workspace_123456", workspace)
                      .replace("<partner_key>", partner_key))
        self.run(f"{page} cURL", ["bash", self.write("start.sh", script)],
                 ['"status":"pending"', '"action":"collect"', f'"providerKey":"{partner_key}"'])
        self.collect_against_reference_partner(binary, token, workspace, partner_key)

    def collect_against_reference_partner(self, binary, token, workspace, partner_key):
        """The next steps of the partner guide against the reference partner: collect, then
        list the workspace's connections."""
        partner_bin = os.path.join(os.path.dirname(binary), "reference-partner")
        proc = subprocess.Popen([partner_bin, "--listen", "127.0.0.1:0", "--api-key", "demo-key",
                                 "--security-token", "demo-token"], stdout=subprocess.PIPE, text=True)
        try:
            base = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
            start_doc = next(code for _, lang, _, code in blocks("start-provider-connection.md") if lang == "graphql")
            started = post(self.endpoint, {"query": start_doc, "variables": {
                "workspaceId": workspace, "providerKey": partner_key,
                "inputs": {"apiKey": "demo-key", "securityToken": "demo-token", "baseUrl": base}}}, token)
            connection = started["data"]["startProviderConnection"]["id"]
            collected = post(self.endpoint, {
                "query": "mutation CollectProviderConnection($connectionId: ID!, $inputs: JSON) { collectProviderConnection(connectionId: $connectionId, inputs: $inputs) { id status action displayName } }",
                "variables": {"connectionId": connection, "inputs": {"firmReferenceId": "F-1"}},
            }, token)
            done = collected.get("data", {}).get("collectProviderConnection") or {}
            self.check("partner guide: collect against the reference partner",
                       done.get("status") == "active" and done.get("displayName") == "Smith & Associates Tax Firm",
                       json.dumps(collected))
            listed = post(self.endpoint, {
                "query": "query Connections($ids: [ID!]) { me { workspaces(filters: {ids: $ids}) { connections { id providerKey status provider { name category } } } } }",
                "variables": {"ids": [workspace]},
            }, token)
            rows = listed["data"]["me"]["workspaces"][0]["connections"]
            self.check("partner guide: the workspace lists the active connection",
                       any(r["id"] == connection and r["status"] == "active" for r in rows), json.dumps(listed))
            self.pull_and_upload(token, workspace, connection, base)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def pull_and_upload(self, token, workspace, connection, base):
        """The pull pattern against the reference partner: the connection's clients, a
        client's files, and a file sent back over tus, which then shows among the files."""
        scope = "query Clients($workspaceId: ID!, $connectionId: ID!, $options: JSON) { me { workspaces(filters: {ids: [$workspaceId]}) { connections(filters: {ids: [$connectionId]}) { %s } } } }"
        ids = {"workspaceId": workspace, "connectionId": connection}

        def connection_of(answer):
            return ((answer.get("data") or {}).get("me") or {"workspaces": [{"connections": [{}]}]})["workspaces"][0]["connections"][0]

        clients = post(self.endpoint, {"query": scope % "clients(options: $options) { id name email phone type lastModified }",
                                       "variables": {**ids, "options": {"limit": 5}}}, token)
        rows = connection_of(clients).get("clients") or []
        self.check("pull pattern: clients(options: {limit: 5}) from the reference partner",
                   "errors" not in clients and [r["id"] for r in rows] == [f"client-000{n}" for n in range(1, 6)], json.dumps(clients))
        files_query = scope % "clients(options: $options) { id files(options: {limit: 50}) { id fileName fileSize mimeType downloadUrl dateCreated } }"
        files = post(self.endpoint, {"query": files_query, "variables": {**ids, "options": {"id": "client-0001"}}}, token)
        listed = (connection_of(files).get("clients") or [{}])[0].get("files") or []
        self.check("pull pattern: files of client-0001", "errors" not in files and len(listed) == 3, json.dumps(files))
        content = b"%PDF-1.7 signed engagement letter"
        sent = post(self.endpoint, {
            "query": "mutation UploadConnectionFile($connectionId: ID!, $clientKey: String!, $file: FileUploadInput!) { uploadConnectionFile(connectionId: $connectionId, clientKey: $clientKey, file: $file) { success message uploadId } }",
            "variables": {"connectionId": connection, "clientKey": "client-0001",
                          "file": {"fileName": "engagement-letter.pdf", "contentType": "application/pdf",
                                   "tusdEndpoint": f"{base}/v1/uploads", "contentBase64": base64.b64encode(content).decode()}},
        }, token)
        result = (sent.get("data") or {}).get("uploadConnectionFile") or {}
        self.check("pull pattern: uploadConnectionFile is queued", result.get("success") is True, json.dumps(sent))
        status = None
        for _ in range(100):
            uploads = post(self.endpoint, {"query": scope.replace(", $options: JSON", "") % "uploads { id status bytesSent totalBytes error }", "variables": ids}, token)
            row = next((u for u in connection_of(uploads).get("uploads") or [] if u["id"] == result.get("uploadId")), {})
            status = row.get("status")
            if status in ("completed", "failed"):
                break
            time.sleep(0.1)
        self.check("pull pattern: the upload completes over tus", status == "completed", json.dumps(row))
        again = post(self.endpoint, {"query": files_query, "variables": {**ids, "options": {"id": "client-0001"}}}, token)
        names = [f["fileName"] for f in ((connection_of(again).get("clients") or [{}])[0].get("files") or [])]
        self.check("pull pattern: the sent file is among the client's files", "engagement-letter.pdf" in names, json.dumps(again))

    def pending_pages(self):
        for page, reason in PENDING.items():
            count = len(blocks(page))
            print(f"SKIP  {page}: {count} example(s) wait for a feature: {reason}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "taxbridge"))
    args = parser.parse_args()
    tsc = os.path.join(HERE, "node_modules", ".bin", "tsc")
    if not os.path.exists(tsc):
        sys.exit(f"{tsc} is missing: run `npm ci --prefix {HERE}` (or `npm install`) first")
    proc, endpoint, key, data_dir = start_server(args.bin)
    workdir = tempfile.mkdtemp(prefix="taxbridge-seed-programs-")
    runner = Runner(endpoint, key, workdir, tsc)
    try:
        runner.customer_guide()
        runner.provider_connection(args.bin, data_dir)
        runner.pending_pages()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"seeds: {runner.passed} passed, {runner.failed} failed")
    sys.exit(1 if runner.failed else 0)


if __name__ == "__main__":
    main()
