//! The `taxbridge` binary as an operator uses it: first start, admin commands beside a running
//! server on the same SQLite file, and the refusal to start on PostgreSQL without secrets.

use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_taxbridge");

fn taxbridge(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("TAXBRIDGE_DATABASE_URL")
        .output()
        .expect("run taxbridge")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Server {
    child: Child,
    endpoint: String,
    first_key: Option<String>,
    first_curl: Option<String>,
    first_sign_in: Option<String>,
}

impl Server {
    /// Stops the server as an init system would (SIGTERM) and waits for it to exit.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "a SIGTERM is a clean shutdown: {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `taxbridge serve` and reads its stdout until it says it is serving.
fn serve(data_dir: &Path) -> Server {
    serve_with(data_dir, &[], Stdio::null())
}

/// [`serve`] with extra environment, and its log (stderr) sent to `log`.
fn serve_with(data_dir: &Path, env: &[(&str, &str)], log: impl Into<Stdio>) -> Server {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--listen", &listen])
        .env_remove("TAXBRIDGE_DATABASE_URL")
        // Stopped tests exit at once; the drain has its own test.
        .env("TAXBRIDGE_SERVER__DRAIN_SECONDS", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut first_key, mut first_curl, mut first_sign_in) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(key) = line.strip_prefix("API key: ") {
            first_key = Some(key.to_owned());
        }
        if line.starts_with("curl ") {
            first_curl = Some(line.clone());
        }
        if let Some(rest) = line.strip_prefix("Web pages: open ") {
            first_sign_in = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.starts_with("Taxbridge is serving") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Server {
        child,
        endpoint: format!("http://{listen}/graphql"),
        first_key,
        first_curl,
        first_sign_in,
    }
}

fn post(endpoint: &str, body: Value, token: Option<&str>) -> Value {
    let mut request = ureq_like::post(endpoint, &body);
    if let Some(token) = token {
        request.bearer = Some(token.to_owned());
    }
    request.send()
}

/// A tiny blocking HTTP client over the system `curl`, the client the README uses.
mod ureq_like {
    use serde_json::Value;
    use std::process::Command;

    pub struct Request {
        url: String,
        body: String,
        pub bearer: Option<String>,
    }

    pub fn post(url: &str, body: &Value) -> Request {
        Request {
            url: url.to_owned(),
            body: body.to_string(),
            bearer: None,
        }
    }

    impl Request {
        pub fn send(self) -> Value {
            let mut cmd = Command::new("curl");
            cmd.args([
                "-s",
                "-X",
                "POST",
                &self.url,
                "-H",
                "Content-Type: application/json",
                "-d",
                &self.body,
            ]);
            if let Some(token) = &self.bearer {
                cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
            }
            let out = cmd.output().expect("curl");
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)))
        }
    }
}

fn login(endpoint: &str, key: &str) -> Value {
    post(
        endpoint,
        json!({ "query": "mutation L($apiKey: String!) { loginViaPersonalApiToken(token: $apiKey) { accessToken } }", "variables": { "apiKey": key } }),
        None,
    )
}

fn token(endpoint: &str, key: &str) -> String {
    let response = login(endpoint, key);
    response["data"]["loginViaPersonalApiToken"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("login failed: {response}"))
        .to_owned()
}

#[test]
fn first_start_prints_a_working_key_and_curl_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());
    let key = server
        .first_key
        .clone()
        .expect("an `API key:` line on first start");
    assert!(key.starts_with("tb_pat_"), "{key}");

    // The printed cURL is the customer guide's step 2, ready to paste.
    let curl = server.first_curl.clone().expect("a cURL line");
    let out = Command::new("sh")
        .arg("-c")
        .arg(&curl)
        .output()
        .expect("run the printed curl");
    let body: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let access = body["data"]["loginViaPersonalApiToken"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let me = post(
        &server.endpoint,
        json!({ "query": "query Me { me { id name } }" }),
        Some(&access),
    );
    assert_eq!(me["data"]["me"]["name"], "Owner");
    // The owner has a workspace of its own, where the printed sign-in link lands.
    let mine = post(
        &server.endpoint,
        json!({ "query": "{ me { workspaces { slug displayName } } }" }),
        Some(&access),
    );
    assert_eq!(
        mine["data"]["me"]["workspaces"][0]["slug"], "my-firm",
        "{mine}"
    );
    // The printed sign-in link opens the sign-in form.
    let link = server.first_sign_in.clone().expect("a sign-in link");
    let page = Command::new("curl")
        .args(["-s", &link])
        .output()
        .expect("open the sign-in link");
    let html = String::from_utf8_lossy(&page.stdout);
    assert!(
        html.contains("name=\"csrf_token\"") && html.contains("value=\"/w/my-firm\""),
        "{html}"
    );
    drop(server);

    let again = serve(dir.path());
    assert_eq!(
        again.first_key, None,
        "the key is printed only on the first start"
    );
    assert!(dir.path().join("secrets/jwt-signing.key").exists());
    assert!(dir.path().join("secrets/encryption.key").exists());
    // Tokens survive a restart: the signing secret was kept in the data dir.
    let me = post(
        &again.endpoint,
        json!({ "query": "{ me { id } }" }),
        Some(&access),
    );
    assert!(me["data"]["me"]["id"].is_string(), "{me}");
}

/// A partner `qount` registered with the CLI, logged in, with one workspace: (token, id).
fn partner_with_workspace(server: &Server, data: &Path) -> (String, String) {
    let partner_key = stdout(&taxbridge(
        data,
        &[
            "partners",
            "create",
            "--name",
            "Qount",
            "--provider-key",
            "qount",
            "--email",
            "eng@qount.example",
        ],
    ));
    let access = token(&server.endpoint, partner_key.trim());
    let workspace = post(
        &server.endpoint,
        json!({ "query": "mutation { createWorkspace(input: {displayName: \"Smith CPA\"}) { id } }" }),
        Some(&access),
    )["data"]["createWorkspace"]["id"]
        .as_str()
        .expect("workspace")
        .to_owned();
    (access, workspace)
}

/// A platform that accepts every verify: a thread answering 200 with a firm, on loopback.
fn accepting_platform() -> String {
    common::loopback_server(|_| {
        (
            "200 OK",
            "application/json",
            br#"{"firmId":"f-1","firmName":"Smith CPA"}"#.to_vec(),
        )
    })
}

/// `taxbridge encryption rotate` while a client collects in a loop: no collect fails, and
/// afterwards every stored credential is sealed under the new key.
#[test]
fn rotating_the_key_while_serving_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let platform = accepting_platform();
    // Each rotate waits a second for the server to see the new ring; the collector loops for
    // those seconds, faster than the default per-key rate.
    let server = serve_with(
        &data,
        &[
            ("TAXBRIDGE_EGRESS__ALLOW_CIDRS", "[\"127.0.0.0/8\"]"),
            ("TAXBRIDGE_RATE_LIMITS__REQUESTS_PER_SECOND", "100000"),
            ("TAXBRIDGE_RATE_LIMITS__REQUEST_BURST", "100000"),
        ],
        Stdio::null(),
    );
    let (access, workspace) = partner_with_workspace(&server, &data);
    let start = "mutation S($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"qount\", inputs: $i) { id } }";
    let ids: Vec<String> = (0..5)
        .map(|n| {
            post(
                &server.endpoint,
                json!({ "query": start, "variables": { "w": workspace, "i": { "apiKey": format!("key-{n}"), "baseUrl": platform } } }),
                Some(&access),
            )["data"]["startProviderConnection"]["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    let before = stdout(&taxbridge(&data, &["encryption", "status"]));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (endpoint, access, ids, stop) = (
            server.endpoint.clone(),
            access.clone(),
            ids.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for id in &ids {
                    let answer = post(
                        &endpoint,
                        json!({ "query": "mutation C($c: ID!) { collectProviderConnection(connectionId: $c) { status } }", "variables": { "c": id } }),
                        Some(&access),
                    );
                    outcomes.push(answer);
                }
            }
            outcomes
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    for _ in 0..2 {
        stdout(&taxbridge(&data, &["encryption", "rotate"]));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcomes = collector.join().expect("collector");
    assert!(outcomes.len() >= 10, "{} collects", outcomes.len());
    for answer in &outcomes {
        assert_eq!(
            answer["data"]["collectProviderConnection"]["status"], "active",
            "{answer}"
        );
    }

    let after = stdout(&taxbridge(&data, &["encryption", "status"]));
    let primary = after
        .lines()
        .find_map(|l| l.strip_prefix("primary key: "))
        .expect("a primary key")
        .to_owned();
    assert!(
        !before.contains(&primary),
        "the primary key changed: {before} / {after}"
    );
    let counts: Vec<&str> = after.lines().skip(1).collect();
    assert_eq!(counts, [format!("{primary}: 5 credentials")], "{after}");
    // The two older keys are no longer used: retire drops them, the primary stays, and the
    // credentials still open (a collect still verifies).
    let ring = || std::fs::read_to_string(data.join("secrets/encryption.key")).expect("ring");
    assert_eq!(ring().lines().count(), 3);
    let retired = stdout(&taxbridge(&data, &["encryption", "retire"]));
    assert_eq!(retired.matches("retired key").count(), 2, "{retired}");
    assert_eq!(ring().lines().count(), 1);
    // Each rotation and each retired key is in the audit log, by the operator.
    let logged = stdout(&taxbridge(
        &data,
        &[
            "audit",
            "list",
            "--action",
            "encryption_key.rotated",
            "--action",
            "encryption_key.retired",
            "--limit",
            "10",
        ],
    ));
    assert_eq!(
        logged.matches("encryption_key.rotated").count(),
        2,
        "{logged}"
    );
    assert_eq!(
        logged.matches("encryption_key.retired").count(),
        2,
        "{logged}"
    );
    assert!(logged.lines().all(|l| l.contains("operator")), "{logged}");
    assert!(stdout(&taxbridge(&data, &["audit", "verify"])).starts_with("ok:"));
    let again = post(
        &server.endpoint,
        json!({ "query": "mutation C($c: ID!) { collectProviderConnection(connectionId: $c) { status } }", "variables": { "c": ids[0] } }),
        Some(&access),
    );
    assert_eq!(
        again["data"]["collectProviderConnection"]["status"], "active",
        "{again}"
    );
    drop(server);
}

/// An operator's provider catalog with a mistake stops `serve`, naming the file and the line.
#[test]
fn a_bad_provider_catalog_stops_serve_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("providers.toml");
    std::fs::write(
        &catalog,
        "[[provider]]\nkey = \"acme\"\nname = \"Acme\"\ncategory = 7\n",
    )
    .expect("write");
    let output = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("TAXBRIDGE_PROVIDERS_FILE", &catalog)
        .env_remove("TAXBRIDGE_DATABASE_URL")
        .output()
        .expect("run serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&catalog.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

/// Provider credentials never reach the disk or the log in the clear: after starting,
/// collecting and disconnecting connections with debug logging on, no file under the data dir
/// and no log line holds a secret's bytes.
#[test]
fn provider_secrets_never_reach_the_data_dir_or_the_log() {
    const API_KEY: &str = "plaintext-api-key-7f3a9c";
    const TOKEN: &str = "plaintext-security-token-41be";
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let server = serve_with(
        &data,
        &[
            ("TAXBRIDGE_LOG_LEVEL", "debug"),
            ("TAXBRIDGE_EGRESS__ALLOW_CIDRS", "[\"127.0.0.0/8\"]"),
        ],
        log,
    );
    let (access, workspace) = partner_with_workspace(&server, &data);
    let start = "mutation S($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"qount\", inputs: $i) { id } }";
    let mut ids = Vec::new();
    for _ in 0..2 {
        let started = post(
            &server.endpoint,
            json!({ "query": start, "variables": { "w": workspace, "i": { "apiKey": API_KEY, "securityToken": TOKEN, "baseUrl": "http://127.0.0.1:9" } } }),
            Some(&access),
        );
        ids.push(
            started["data"]["startProviderConnection"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let collected = post(
        &server.endpoint,
        json!({ "query": "mutation C($c: ID!) { collectProviderConnection(connectionId: $c) { status statusDetail } }", "variables": { "c": ids[0] } }),
        Some(&access),
    );
    assert_eq!(
        collected["data"]["collectProviderConnection"]["status"], "failed",
        "{collected}"
    );
    let disconnected = post(
        &server.endpoint,
        json!({ "query": "mutation D($c: ID!) { disconnectProviderConnection(connectionId: $c) { status } }", "variables": { "c": ids[1] } }),
        Some(&access),
    );
    assert_eq!(
        disconnected["data"]["disconnectProviderConnection"]["status"],
        "disconnected"
    );
    server.terminate();

    let mut files = vec![log_path];
    let mut folders = vec![data];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 3, "{files:?}");
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        for secret in [API_KEY, TOKEN] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret in the clear",
                file.display()
            );
        }
    }
}

/// The data dir, `secrets/` and every file the server creates there are its user's alone,
/// created that way (the process's creation mask), not changed afterwards.
#[cfg(unix)]
#[test]
fn everything_under_the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = serve(&data);
    let key = server.first_key.clone().expect("first key");
    // A write, so the WAL and its index exist too.
    token(&server.endpoint, &key);
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&data), 0o700, "the data dir");
    assert_eq!(mode(&data.join("secrets")), 0o700, "secrets/");
    let mut files = Vec::new();
    let mut folders = vec![data.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in [
        "taxbridge.db",
        "taxbridge.db-wal",
        "taxbridge.db-shm",
        "jwt-signing.key",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

#[test]
fn admin_commands_manage_keys_beside_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());

    let created = stdout(&taxbridge(
        dir.path(),
        &[
            "users",
            "create",
            "--email",
            "Jane@Smith-CPA.com",
            "--name",
            "Jane Doe",
        ],
    ));
    assert!(created.trim().starts_with("acc_"), "{created}");
    let key = stdout(&taxbridge(
        dir.path(),
        &[
            "keys",
            "create",
            "--email",
            "jane@smith-cpa.com",
            "--name",
            "Production Integration",
            "--expires-in-days",
            "30",
        ],
    ));
    let key = key.trim().to_owned();
    assert!(
        key.starts_with("tb_pat_") && !key.contains(' '),
        "the key alone on stdout: {key:?}"
    );

    let access = token(&server.endpoint, &key);
    let me = post(
        &server.endpoint,
        json!({ "query": "{ me { email name accountType } }" }),
        Some(&access),
    );
    assert_eq!(
        me["data"]["me"],
        json!({ "email": "jane@smith-cpa.com", "name": "Jane Doe", "accountType": "customer" })
    );

    let listing = stdout(&taxbridge(
        dir.path(),
        &["keys", "list", "--email", "jane@smith-cpa.com"],
    ));
    assert!(
        listing.contains("Production Integration") && listing.contains(&key[..11]),
        "{listing}"
    );
    assert!(!listing.contains(&key), "the secret is never listed");
    let key_id = listing
        .lines()
        .find(|l| l.contains("Production Integration"))
        .and_then(|l| l.split_whitespace().next())
        .expect("a key row")
        .to_owned();

    stdout(&taxbridge(dir.path(), &["keys", "revoke", &key_id]));
    let revoked = Instant::now();
    loop {
        let me = post(
            &server.endpoint,
            json!({ "query": "{ me { id } }" }),
            Some(&access),
        );
        if me["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "a key revoked with the CLI still worked after 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let listing = stdout(&taxbridge(
        dir.path(),
        &["keys", "list", "--email", "jane@smith-cpa.com"],
    ));
    assert!(listing.contains("revoked"), "{listing}");
    let again = taxbridge(dir.path(), &["keys", "revoke", &key_id]);
    assert!(!again.status.success(), "revoking twice is an error");
}

#[test]
fn partners_get_a_partner_key_and_usage_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());
    let key = stdout(&taxbridge(
        dir.path(),
        &[
            "partners",
            "create",
            "--name",
            "Qount",
            "--provider-key",
            "qount",
            "--email",
            "eng@qount.io",
        ],
    ));
    let key = key.trim();
    assert!(key.starts_with("tb_ptk_"), "{key}");
    let access = token(&server.endpoint, key);
    let me = post(
        &server.endpoint,
        json!({ "query": "{ me { accountType } }" }),
        Some(&access),
    );
    assert_eq!(me["data"]["me"]["accountType"], "partner");

    let duplicate = taxbridge(
        dir.path(),
        &[
            "partners",
            "create",
            "--name",
            "Q2",
            "--provider-key",
            "qount",
            "--email",
            "q2@qount.io",
        ],
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("provider key `qount`"));

    // Usage is flushed every 5 s by default, and on a clean shutdown.
    server.terminate();
    let usage = stdout(&taxbridge(dir.path(), &["usage", "--days", "1"]));
    assert!(usage.contains("loginViaPersonalApiToken"), "{usage}");
}

#[test]
fn bad_input_to_admin_commands_says_what_to_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = taxbridge(dir.path(), &["users", "create", "--email", "not-an-email"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a valid email"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let missing = taxbridge(
        dir.path(),
        &[
            "keys",
            "create",
            "--email",
            "nobody@example.com",
            "--name",
            "x",
        ],
    );
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("no account has the email nobody@example.com"));
}

#[test]
fn migrate_and_schema_work_without_a_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = stdout(&taxbridge(dir.path(), &["migrate"]));
    assert!(out.contains("up to date"), "{out}");
    let schema = stdout(&taxbridge(dir.path(), &["schema"]));
    assert_eq!(schema, include_str!("../../../schema.graphql"));
}

#[test]
fn serving_postgres_without_shared_secrets_names_the_setting_to_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--database-url",
            "postgres://taxbridge:hunter2@127.0.0.1:1/taxbridge",
            "serve",
        ])
        .env_remove("TAXBRIDGE_AUTH__JWT_SECRET")
        .env("TAXBRIDGE_SERVER__SINGLE_NODE", "true")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TAXBRIDGE_AUTH__JWT_SECRET"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// `taxbridge serve` or `worker` on PostgreSQL with `args`' settings: its stderr, after it
/// stops (the database at port 1 never answers).
fn start_on_postgres(command: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--database-url",
            "postgres://taxbridge:hunter2@127.0.0.1:1/taxbridge",
            command,
        ])
        .env_remove("TAXBRIDGE_AUTH__JWT_SECRET")
        .env_remove("TAXBRIDGE_BLOBS__URL")
        .env_remove("TAXBRIDGE_PUBLIC_BASE_URL")
        .env_remove("TAXBRIDGE_SERVER__SINGLE_NODE")
        .env_remove("TAXBRIDGE_ENCRYPTION__KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("hunter2"), "{err}");
    err
}

#[test]
fn a_fleet_node_refuses_settings_its_fleet_cannot_share() {
    // Local blobs: files another node could not serve.
    let err = start_on_postgres("serve", &[]);
    assert!(
        err.contains("blobs.url") && err.contains("TAXBRIDGE_BLOBS__URL"),
        "{err}"
    );
    let err = start_on_postgres("worker", &[]);
    assert!(err.contains("blobs.url"), "{err}");
    // No public address: links that name one node.
    let shared = [("TAXBRIDGE_BLOBS__URL", "s3://taxbridge/blobs")];
    let err = start_on_postgres("serve", &shared);
    assert!(err.contains("TAXBRIDGE_PUBLIC_BASE_URL"), "{err}");
    assert!(err.contains("server.single_node"), "{err}");
    // The worker uses neither the public address nor the token secret (it does decrypt
    // credentials, so it needs the encryption key): it gets as far as the database, which is
    // not there.
    let err = start_on_postgres(
        "worker",
        &[
            shared[0],
            (
                "TAXBRIDGE_ENCRYPTION__KEY",
                "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
            ),
        ],
    );
    assert!(!err.contains("public_base_url"), "{err}");
    assert!(!err.contains("jwt_secret"), "{err}");
    assert!(err.contains("database") || err.contains("connect"), "{err}");
}

/// The HTTP status of `GET url` (`000` when nothing answers).
fn status_of(url: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sigterm_drains_first_then_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = serve_with(
        dir.path(),
        &[("TAXBRIDGE_SERVER__DRAIN_SECONDS", "3")],
        Stdio::null(),
    );
    let key = server.first_key.clone().expect("first key");
    let readyz = server.endpoint.replace("/graphql", "/readyz");
    assert_eq!(status_of(&readyz), "200");

    let pid = server.child.id().to_string();
    let signalled = Instant::now();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    // Not ready at once, so a balancer stops sending requests...
    while status_of(&readyz) != "503" {
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "readyz still ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = Command::new("curl")
        .args(["-s", &readyz])
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&body.stdout).expect("JSON");
    assert_eq!(body["status"], "draining", "{body}");
    // ...while requests that still arrive are answered in full.
    let mut served = 0;
    while signalled.elapsed() < Duration::from_millis(2_000) {
        let response = login(&server.endpoint, &key);
        assert!(
            response["data"]["loginViaPersonalApiToken"]["accessToken"].is_string(),
            "during the drain: {response}"
        );
        served += 1;
    }
    assert!(served > 0);
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "still serving inside the drain"
    );
    // Then the listener closes and the process exits cleanly.
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let stopped_after = signalled.elapsed();
    assert!(stopped_after >= Duration::from_secs(3), "{stopped_after:?}");
    assert!(stopped_after < Duration::from_secs(15), "{stopped_after:?}");
    assert_eq!(status_of(&readyz), "000", "nothing listens after the drain");
}

#[test]
fn operators_create_customer_workspaces_with_a_first_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());
    let id = stdout(&taxbridge(
        dir.path(),
        &[
            "workspaces",
            "create",
            "--name",
            "Smith & Associates Tax Firm",
            "--admin-email",
            "boss@smith.com",
        ],
    ));
    assert!(id.trim().starts_with("wsp_"), "{id}");
    let again = taxbridge(
        dir.path(),
        &[
            "workspaces",
            "create",
            "--name",
            "Smith & Associates Tax Firm",
        ],
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("with slug `smith-associates-tax-firm-"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let key = stdout(&taxbridge(
        dir.path(),
        &[
            "keys",
            "create",
            "--email",
            "boss@smith.com",
            "--name",
            "boss",
        ],
    ));
    let access = token(&server.endpoint, key.trim());
    let me = post(
        &server.endpoint,
        json!({ "query": "{ me { workspaces { id slug workspaceType members { email role } } } }" }),
        Some(&access),
    );
    assert_eq!(
        me["data"]["me"]["workspaces"],
        json!([{ "id": id.trim(), "slug": "smith-associates-tax-firm", "workspaceType": "customer", "members": [{ "email": "boss@smith.com", "role": "admin" }] }])
    );
}
