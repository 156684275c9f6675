//! Push imports run by the binary. Crash safety (spec §6): `kill -9` the server at a random
//! moment of an import of 100 artifacts, start it again, and every artifact ends `success`
//! exactly once, its bytes exact, with no duplicate rows and no partial blob served. Twenty
//! runs, each with its own data dir and moment; the moments come from a fixed seed, so a
//! failing run can be replayed. And scale-out: `serve` without a worker beside `taxbridge
//! worker`, storing blobs in a real S3-compatible store.

use serde_json::{json, Value};
use sha2::Digest;
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod common;

use common::{curl, graphql, serve, serve_with, Server};

use common::BIN;
const RUNS: u64 = 20;
const WORKS: usize = 10;
const FILES_PER_WORK: usize = 10;

/// The bytes of file `n`: 48 KiB, different for every `n`.
fn content(n: usize) -> Vec<u8> {
    (0..48 * 1024)
        .map(|i: usize| (i.wrapping_mul(n + 3) >> 3) as u8)
        .collect()
}

/// A platform on loopback: `GET /v1/verify` accepts every firm; `GET /files/{n}` answers file
/// `n` after 30 ms (slow enough that a kill lands in the middle of an import).
fn platform() -> String {
    common::loopback_server(|path| {
        if path == "/v1/verify" {
            return (
                "200 OK",
                "application/json",
                br#"{"firmId":"f-1","firmName":"Crash CPA"}"#.to_vec(),
            );
        }
        match path.strip_prefix("/files/").and_then(|n| n.parse().ok()) {
            Some(n) => {
                std::thread::sleep(Duration::from_millis(30));
                ("200 OK", "application/pdf", content(n))
            }
            None => ("404 Not Found", "text/plain", Vec::new()),
        }
    })
}

fn post(endpoint: &str, token: Option<&str>, query: &str, variables: Value) -> Value {
    let answer = graphql(endpoint, token, query, variables);
    assert!(answer.get("errors").is_none(), "{query}: {answer}");
    answer["data"].clone()
}

/// A partner registered with the CLI, its workspace and an active connection to `platform`:
/// (token, connection id).
fn active_connection(server: &Server, data_dir: &Path, platform: &str) -> (String, String) {
    let created = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "partners",
            "create",
            "--name",
            "Crashco",
            "--provider-key",
            "crashco",
        ])
        .args(["--email", "eng@crashco.example"])
        .env_remove("TAXBRIDGE_DATABASE_URL")
        .output()
        .expect("partners create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let token = post(
        &server.endpoint,
        None,
        "mutation L($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } }",
        json!({ "k": key }),
    )["loginViaPersonalApiToken"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let ep = server.endpoint.as_str();
    let ws = post(
        ep,
        Some(&token),
        "mutation { createWorkspace(input: {displayName: \"Crash CPA\"}) { id } }",
        json!({}),
    )["createWorkspace"]["id"]
        .as_str()
        .expect("ws")
        .to_owned();
    let connection = post(ep, Some(&token), "mutation S($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"crashco\", inputs: $i) { id } }",
        json!({ "w": ws, "i": { "apiKey": "k", "baseUrl": platform } }))["startProviderConnection"]["id"].as_str().expect("connection").to_owned();
    let collected = post(ep, Some(&token), "mutation C($c: ID!) { collectProviderConnection(connectionId: $c) { status statusDetail } }", json!({ "c": connection }));
    assert_eq!(
        collected["collectProviderConnection"]["status"], "active",
        "{collected}"
    );
    (token, connection)
}

/// Sets up an active connection and an import of 100 artifacts, triggers it; returns the
/// token and the job's id.
fn start_import(server: &Server, data_dir: &Path, platform: &str) -> (String, String) {
    let (token, connection) = active_connection(server, data_dir, platform);
    let ep = server.endpoint.as_str();
    let job = post(
        ep,
        Some(&token),
        "mutation J($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"crash\") { id } }",
        json!({ "c": connection }),
    )["createConnectionJob"]["id"]
        .as_str()
        .expect("job")
        .to_owned();
    let inputs: Vec<Value> = (0..WORKS)
        .map(|w| json!({ "name": format!("Client {w}"), "externalId": format!("client-{w}") }))
        .collect();
    let works = post(ep, Some(&token), "mutation W($j: ID!, $i: [CreateJobWorksInput!]!) { createJobWorks(connectionJobId: $j, inputs: $i) { id } }", json!({ "j": job, "i": inputs }));
    for (w, work) in works["createJobWorks"]
        .as_array()
        .expect("works")
        .iter()
        .enumerate()
    {
        let files: Vec<Value> = (0..FILES_PER_WORK)
            .map(|f| {
                let n = w * FILES_PER_WORK + f;
                json!({ "name": format!("file {n}"), "type": "document", "externalId": n.to_string(), "url": format!("{platform}/files/{n}") })
            })
            .collect();
        post(ep, Some(&token), "mutation A($w: ID!, $i: [CreateJobWorkArtifactsInput!]!) { createJobWorkArtifacts(jobWorkId: $w, inputs: $i) { id } }", json!({ "w": work["id"], "i": files }));
    }
    post(
        ep,
        Some(&token),
        "mutation T($j: ID!) { triggerConnectionJob(connectionJobId: $j) { id } }",
        json!({ "j": job }),
    );
    (token, job)
}

const STATE: &str = "{ me { workspaces { connections { connectionJobs { status progress { works artifacts artifactsSucceeded artifactsFailed } } jobWorks(limit: 500) { work { status } jobWorkArtifacts { workArtifact { externalId status uploadedUrl metadata } } } } } } }";

/// Files under `dir` whose names are complete blobs (not staging files of an upload).
fn blobs_in(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                blobs_in(&path)
            } else {
                usize::from(!e.file_name().to_string_lossy().contains('#'))
            }
        })
        .sum()
}

#[test]
fn killed_mid_import_a_restarted_server_finishes_every_artifact_once() {
    let platform = platform();
    let mut seed: u64 = 0x5eed_1234;
    for run in 0..RUNS {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let kill_after = Duration::from_millis((seed >> 33) % 700);
        let dir = tempfile::tempdir().expect("data dir");
        let first = serve(dir.path());
        let (token, job) = start_import(&first, dir.path(), &platform);
        std::thread::sleep(kill_after);
        drop(first); // SIGKILL: no shutdown, leases held, downloads cut mid-body.

        let second = serve(dir.path());
        // The killed node's tasks hold 30 s leases; its liveness lapses after 2 s, so the new
        // node takes them over and finishes before any lease would have ended (the deadline
        // leaves a busy machine room, and is still under the lease).
        let deadline = Instant::now() + Duration::from_secs(25);
        let state = loop {
            let state = post(&second.endpoint, Some(&token), STATE, json!({}));
            let connection = state["me"]["workspaces"][0]["connections"][0].clone();
            if connection["connectionJobs"][0]["status"] == "completed" {
                break connection;
            }
            assert!(
                Instant::now() < deadline,
                "run {run} (killed after {kill_after:?}): not finished: {}",
                connection["connectionJobs"]
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let total = WORKS * FILES_PER_WORK;
        assert_eq!(
            state["connectionJobs"][0]["progress"],
            json!({ "works": WORKS, "artifacts": total, "artifactsSucceeded": total, "artifactsFailed": 0 }),
            "run {run} (killed after {kill_after:?})"
        );
        let artifacts: Vec<Value> = state["jobWorks"]
            .as_array()
            .expect("works")
            .iter()
            .flat_map(|w| {
                w["jobWorkArtifacts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|a| a["workArtifact"].clone())
            .collect();
        assert_eq!(artifacts.len(), total, "run {run}: one row per artifact");
        for artifact in &artifacts {
            let n: usize = artifact["externalId"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .expect("n");
            let expected = content(n);
            assert_eq!(artifact["status"], "success");
            assert_eq!(
                artifact["metadata"]["sha256"],
                hex::encode(sha2::Sha256::digest(&expected)),
                "run {run}, file {n}"
            );
            assert_eq!(artifact["metadata"]["size"], expected.len());
        }
        // The bytes served are the file's, whole, for a sample of artifacts.
        for artifact in artifacts.iter().step_by(17) {
            let n: usize = artifact["externalId"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .expect("n");
            let url = artifact["uploadedUrl"].as_str().expect("uploadedUrl");
            let served = curl(&[url, "-H", &format!("Authorization: Bearer {token}")]);
            assert!(
                served == content(n),
                "run {run}: file {n} served {} bytes that differ",
                served.len()
            );
        }
        assert_eq!(
            blobs_in(&dir.path().join("blobs")),
            total,
            "run {run}: one complete blob per artifact"
        );
        if run == 0 {
            watch_shows_the_final_state(dir.path(), &job);
        }
    }
}

/// `taxbridge jobs watch` on a finished job prints its final state and exits; on an unknown
/// id it says which.
fn watch_shows_the_final_state(data_dir: &Path, job: &str) {
    let watch = |id: &str| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["jobs", "watch", id])
            .env_remove("TAXBRIDGE_DATABASE_URL")
            .output()
            .expect("jobs watch")
    };
    let out = watch(job);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("100/100 artifacts")
            && text.contains("completed · 10 works · 100 succeeded, 0 failed, 0 remaining"),
        "{text}"
    );
    let unknown = watch("job_nope");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("`job_nope`"));
}

/// The S3 settings of the server `scripts/test-s3.sh` starts, as `TAXBRIDGE_BLOBS__*`; `None`
/// outside CI when none is named.
fn s3_blobs(prefix: &str) -> Option<Vec<(&'static str, String)>> {
    let var = |name: &str| std::env::var(format!("TAXBRIDGE_TEST_S3_{name}")).ok();
    match (var("ENDPOINT"), var("BUCKET"), var("KEY"), var("SECRET")) {
        (Some(endpoint), Some(bucket), Some(key), Some(secret)) => Some(vec![
            ("TAXBRIDGE_BLOBS__URL", format!("s3://{bucket}/{prefix}")),
            ("TAXBRIDGE_BLOBS__ENDPOINT", endpoint),
            ("TAXBRIDGE_BLOBS__ACCESS_KEY_ID", key),
            ("TAXBRIDGE_BLOBS__SECRET_ACCESS_KEY", secret),
        ]),
        _ if std::env::var_os("CI").is_some() => {
            panic!("TAXBRIDGE_TEST_S3_* must name an S3 server when CI is set (scripts/test-s3.sh)")
        }
        _ => None,
    }
}

#[test]
fn a_separate_worker_process_runs_the_downloads_into_s3() {
    let Some(blobs) = s3_blobs(&format!("worker-{}", std::process::id())) else {
        eprintln!("skipped: no S3 server (eval \"$(scripts/test-s3.sh start)\")");
        return;
    };
    let platform = platform();
    let dir = tempfile::tempdir().expect("data dir");
    let mut env = blobs.clone();
    env.push(("TAXBRIDGE_WORKER__CONCURRENCY", "0".into()));
    let server = serve_with(dir.path(), &env);
    let (token, _) = start_import(&server, dir.path(), &platform);
    std::thread::sleep(Duration::from_millis(800));
    let state = post(&server.endpoint, Some(&token), STATE, json!({}));
    let job = &state["me"]["workspaces"][0]["connections"][0]["connectionJobs"][0];
    assert_eq!(
        job["progress"]["artifactsSucceeded"], 0,
        "serve runs no worker: {job}"
    );

    let mut worker = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("worker")
        .env_remove("TAXBRIDGE_DATABASE_URL")
        .env("TAXBRIDGE_EGRESS__ALLOW_CIDRS", r#"["127.0.0.0/8"]"#)
        .envs(blobs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker");
    let deadline = Instant::now() + Duration::from_secs(60);
    let connection = loop {
        let state = post(&server.endpoint, Some(&token), STATE, json!({}));
        let connection = state["me"]["workspaces"][0]["connections"][0].clone();
        if connection["connectionJobs"][0]["status"] == "completed" {
            break connection;
        }
        assert!(
            Instant::now() < deadline,
            "not finished: {}",
            connection["connectionJobs"]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let total = WORKS * FILES_PER_WORK;
    assert_eq!(
        connection["connectionJobs"][0]["progress"]["artifactsSucceeded"],
        total
    );
    // The gateway serves from S3 what the worker stored there; nothing is under the data dir.
    let artifact = &connection["jobWorks"][0]["jobWorkArtifacts"][0]["workArtifact"];
    let n: usize = artifact["externalId"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("n");
    let url = artifact["uploadedUrl"].as_str().expect("uploadedUrl");
    assert!(curl(&[url, "-H", &format!("Authorization: Bearer {token}")]) == content(n));
    assert_eq!(blobs_in(&dir.path().join("blobs")), 0, "blobs went to S3");
    // SIGTERM: the worker stops cleanly.
    Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("kill");
    assert!(worker.wait().expect("wait").success());
}

/// A TCP proxy to `upstream` that passes what the client sends 8 KiB at a time, 4 ms apart
/// (about 2 MB/s): slow enough for a kill to land mid-upload. Returns its address.
fn slow_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(upstream) else {
                continue;
            };
            let (mut client_in, mut server_out) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 8 * 1024];
                while let Ok(n) = client_in.read(&mut buf) {
                    if n == 0 || server_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(4));
                }
                let _ = server_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
                let _ = client_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// `uploadConnectionFile`'s body is large (6 MiB of base64): sent from a file, not argv.
fn post_large(endpoint: &str, token: &str, body: &Value) -> Value {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), body.to_string()).expect("write body");
    let out = curl(&[
        "-X",
        "POST",
        endpoint,
        "-H",
        "Content-Type: application/json",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "--data-binary",
        &format!("@{}", file.path().display()),
    ]);
    serde_json::from_slice(&out)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out)))
}

const UPLOADS: &str =
    "{ me { workspaces { connections { uploads { id status bytesSent totalBytes error } } } } }";

/// `kill -9` while a file is being sent over tus: the restarted server asks the tus server
/// its offset and sends the rest to the same upload (one upload on the server, never a second
/// one started over), and the bytes arrive exact.
#[test]
fn killed_mid_upload_a_restarted_server_resumes_the_same_tus_upload() {
    let Some((endpoint, tus_dir)) = taxbridge_testkit::tus_server() else {
        return;
    };
    let mut url = url_parts(&endpoint);
    let proxy = slow_proxy(url.0);
    url.0 = proxy;
    let tus_endpoint = format!("http://{}{}", url.0, url.1);
    let platform = platform();
    let dir = tempfile::tempdir().expect("data dir");
    let env = [("TAXBRIDGE_WORKER__TUS_CHUNK_BYTES", "65536".to_owned())];
    let first = serve_with(dir.path(), &env);
    let (token, connection) = active_connection(&first, dir.path(), &platform);
    let bytes: Vec<u8> = (0..6 * 1024 * 1024usize)
        .map(|i| (i.wrapping_mul(7) >> 5) as u8)
        .collect();
    let client_key = format!("crash-{}", std::process::id());
    use base64::Engine;
    let answer = post_large(
        &first.endpoint,
        &token,
        &json!({
            "query": "mutation U($c: ID!, $k: String!, $f: FileUploadInput!) { uploadConnectionFile(connectionId: $c, clientKey: $k, file: $f) { success uploadId } }",
            "variables": { "c": connection, "k": client_key, "f": { "fileName": "return.pdf", "contentType": "application/pdf", "tusdEndpoint": tus_endpoint, "contentBase64": base64::engine::general_purpose::STANDARD.encode(&bytes) } }
        }),
    );
    assert_eq!(
        answer["data"]["uploadConnectionFile"]["success"], true,
        "{answer}"
    );
    let upload = |endpoint: &str| {
        post(endpoint, Some(&token), UPLOADS, json!({}))["me"]["workspaces"][0]["connections"][0]
            ["uploads"][0]
            .clone()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent_at_kill = loop {
        let row = upload(&first.endpoint);
        let sent = row["bytesSent"].as_u64().unwrap_or(0);
        if sent > 0 {
            break sent;
        }
        assert!(Instant::now() < deadline, "the upload never started: {row}");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(first); // SIGKILL mid-file: the tus upload is left part-sent.
    assert!(
        sent_at_kill < bytes.len() as u64,
        "killed after the whole file was sent"
    );

    let second = serve_with(dir.path(), &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let row = loop {
        let row = upload(&second.endpoint);
        if row["status"] == "completed" || row["status"] == "failed" {
            break row;
        }
        assert!(Instant::now() < deadline, "not finished: {row}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(row["status"], "completed", "{row}");
    assert_eq!(row["bytesSent"], bytes.len());
    let mine: Vec<std::path::PathBuf> = std::fs::read_dir(&tus_dir)
        .expect("tus dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| {
            std::fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|info| info["metadata"]["clientKey"] == client_key.as_str())
        })
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "one tus upload, resumed, not started over: {mine:?}"
    );
    let received = std::fs::read(mine[0].with_extension("")).expect("the uploaded file");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&received)),
        hex::encode(sha2::Sha256::digest(&bytes))
    );
}

/// The address and path of an `http://host:port/path` URL.
fn url_parts(url: &str) -> (std::net::SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    (authority.parse().expect("host:port"), format!("/{path}"))
}
