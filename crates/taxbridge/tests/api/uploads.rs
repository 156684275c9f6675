//! `uploadConnectionFile` over HTTP on both databases, sent by the worker beside the app to the
//! official tus server (`scripts/test-tus.sh`): inline bytes and a stored artifact's bytes
//! arrive byte-exact with their metadata, every bad input is refused at once and queues
//! nothing, a large body is admitted for this operation only, and a refused endpoint fails the
//! upload saying why.

use crate::support::{Gql, TestApp, UPLOAD_CHUNK_BYTES};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};
use sha2::Digest;
use taxbridge_testkit::tus_server;

taxbridge_testkit::per_database!(
    crate::imports::spawn;
    an_inline_file_reaches_the_tus_server_byte_exact,
    a_stored_artifact_is_sent_by_its_id,
    bad_uploads_are_refused_at_once_and_queue_nothing,
    a_large_body_is_admitted_only_for_an_upload,
    a_refused_endpoint_fails_the_upload_saying_why,
);

/// The doc's mutation, as an integrator sends it.
const UPLOAD: &str = "mutation UploadConnectionFile($connectionId: ID!, $clientKey: String!, $file: FileUploadInput!) {
  uploadConnectionFile(connectionId: $connectionId, clientKey: $clientKey, file: $file) {
    success
    message
    uploadId
  }
}";

const UPLOADS: &str = "query($w: ID!, $c: ID!) { me { workspaces(filters: {ids: [$w]}) { connections(filters: {ids: [$c]}) { uploads { id clientKey fileName status bytesSent totalBytes error createdAt updatedAt } } } } }";

/// A partner's workspace with an active connection: (token, workspace, connection).
async fn setup(app: &TestApp) -> (String, String, String) {
    let token = app.partner_token("qount").await;
    let workspace = app
        .create_workspace(&token, "Upload Firm")
        .await
        .assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let connection = app.active_connection_in(&token, &workspace).await;
    (token, workspace, connection)
}

async fn upload(
    app: &TestApp,
    token: &str,
    connection: &str,
    client_key: &str,
    file: Value,
) -> Gql {
    app.graphql(
        json!({ "query": UPLOAD, "variables": { "connectionId": connection, "clientKey": client_key, "file": file } }),
        Some(token),
        Some("my-sample-platform"),
    )
    .await
}

async fn uploads(app: &TestApp, token: &str, workspace: &str, connection: &str) -> Vec<Value> {
    let listed = app
        .graphql(
            json!({ "query": UPLOADS, "variables": { "w": workspace, "c": connection } }),
            Some(token),
            None,
        )
        .await;
    listed.assert_ok()["me"]["workspaces"][0]["connections"][0]["uploads"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the upload `id` is `completed` or `failed`; its row.
async fn until_final(
    app: &TestApp,
    token: &str,
    workspace: &str,
    connection: &str,
    id: &str,
) -> Value {
    for _ in 0..200 {
        let rows = uploads(app, token, workspace, connection).await;
        if let Some(row) = rows.iter().find(|r| r["id"] == id) {
            if row["status"] == "completed" || row["status"] == "failed" {
                return row.clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("upload {id} did not finish");
}

/// The bytes and metadata of the upload whose `clientKey` is `client_key`, as the tus file
/// store keeps them (`<id>` and `<id>.json`).
fn received(dir: &std::path::Path, client_key: &str) -> Option<(Vec<u8>, Value)> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let info: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            if info["metadata"]["clientKey"] == client_key {
                let bytes = std::fs::read(path.with_extension("")).ok()?;
                return Some((bytes, info["metadata"].clone()));
            }
        }
    }
    None
}

fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn an_inline_file_reaches_the_tus_server_byte_exact(app: TestApp) {
    let Some((endpoint, dir)) = tus_server() else {
        return;
    };
    let (token, workspace, connection) = setup(&app).await;
    let bytes = file(3 * UPLOAD_CHUNK_BYTES + 1234, 1);
    let client_key = unique("client");
    let answered = upload(
        &app,
        &token,
        &connection,
        &client_key,
        json!({ "fileName": "Return 2024.pdf", "contentType": "application/pdf", "tusdEndpoint": endpoint, "contentBase64": STANDARD.encode(&bytes) }),
    )
    .await;
    let result = answered.assert_ok()["uploadConnectionFile"].clone();
    assert_eq!(result["success"], true);
    assert!(result["message"]
        .as_str()
        .unwrap_or_default()
        .contains("queued"));
    let id = result["uploadId"].as_str().unwrap_or_default().to_owned();
    assert!(id.starts_with("upl_"), "{id}");

    let row = until_final(&app, &token, &workspace, &connection, &id).await;
    assert_eq!(row["status"], "completed", "{row}");
    assert_eq!(row["bytesSent"], bytes.len());
    assert_eq!(row["totalBytes"], bytes.len());
    assert_eq!(row["error"], Value::Null);
    assert_eq!(row["clientKey"], client_key);
    assert_eq!(row["fileName"], "Return 2024.pdf");

    let (stored, metadata) = received(&dir, &client_key).expect("the tus server has the file");
    assert_eq!(hex(&stored), hex(&bytes));
    assert_eq!(metadata["filename"], "Return 2024.pdf");
    assert_eq!(metadata["filetype"], "application/pdf");
    // The inline bytes were kept only until sent.
    assert_eq!(crate::imports::files_under(&app.blob_dir()), 0);
}

async fn a_stored_artifact_is_sent_by_its_id(app: TestApp) {
    let Some((endpoint, dir)) = tus_server() else {
        return;
    };
    let (token, workspace, connection) = setup(&app).await;
    let artifact =
        crate::imports::artifact_with_bytes(&app, &token, &connection, &file(700_000, 9)).await;
    let client_key = unique("client");
    let answered = upload(
        &app,
        &token,
        &connection,
        &client_key,
        json!({ "fileName": "scan.pdf", "tusdEndpoint": endpoint, "artifactId": artifact }),
    )
    .await;
    let id = answered.assert_ok()["uploadConnectionFile"]["uploadId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let row = until_final(&app, &token, &workspace, &connection, &id).await;
    assert_eq!(row["status"], "completed", "{row}");
    let (stored, metadata) = received(&dir, &client_key).expect("the tus server has the file");
    assert_eq!(hex(&stored), hex(&file(700_000, 9)));
    assert_eq!(metadata["filename"], "scan.pdf");
    assert_eq!(
        metadata.get("filetype"),
        None,
        "no contentType, no filetype"
    );
    // The artifact's own bytes stay.
    assert_eq!(crate::imports::files_under(&app.blob_dir()), 1);
}

async fn bad_uploads_are_refused_at_once_and_queue_nothing(app: TestApp) {
    let (token, workspace, connection) = setup(&app).await;
    let endpoint = "https://tus.platform.example/files/";
    let small = STANDARD.encode(b"hello");
    for (client_key, file, code, field) in [
        (
            "c-1",
            json!({ "fileName": "a.pdf", "tusdEndpoint": endpoint }),
            "BAD_USER_INPUT",
            "file",
        ),
        (
            "c-1",
            json!({ "fileName": "a.pdf", "tusdEndpoint": endpoint, "contentBase64": small, "artifactId": "art_x" }),
            "BAD_USER_INPUT",
            "file",
        ),
        (
            "c-1",
            json!({ "fileName": "a.pdf", "tusdEndpoint": endpoint, "contentBase64": "not base64!" }),
            "BAD_USER_INPUT",
            "file.contentBase64",
        ),
        (
            "c-1",
            json!({ "fileName": "a.pdf", "tusdEndpoint": "files/", "contentBase64": small }),
            "BAD_USER_INPUT",
            "file.tusdEndpoint",
        ),
        (
            "c-1",
            json!({ "fileName": "a.pdf", "tusdEndpoint": "ftp://tus.platform.example/", "contentBase64": small }),
            "BAD_USER_INPUT",
            "file.tusdEndpoint",
        ),
        (
            "c-1",
            json!({ "fileName": "a.pdf", "tusdEndpoint": "https://user:pw@tus.platform.example/", "contentBase64": small }),
            "BAD_USER_INPUT",
            "file.tusdEndpoint",
        ),
        (
            "c-1",
            json!({ "fileName": "", "tusdEndpoint": endpoint, "contentBase64": small }),
            "BAD_USER_INPUT",
            "file.fileName",
        ),
        (
            "c-1",
            json!({ "fileName": "a\u{0}.pdf", "tusdEndpoint": endpoint, "contentBase64": small }),
            "BAD_USER_INPUT",
            "file.fileName",
        ),
        (
            "",
            json!({ "fileName": "a.pdf", "tusdEndpoint": endpoint, "contentBase64": small }),
            "BAD_USER_INPUT",
            "clientKey",
        ),
        (
            "c-1",
            json!({ "fileName": "a.pdf", "tusdEndpoint": endpoint, "artifactId": "art_0000" }),
            "NOT_FOUND",
            "",
        ),
    ] {
        let refused = upload(&app, &token, &connection, client_key, file.clone()).await;
        assert_eq!(refused.code(), code, "{file}: {}", refused.body);
        if !field.is_empty() {
            assert_eq!(
                refused.body["errors"][0]["extensions"]["field"], field,
                "{file}"
            );
        }
    }
    // Another workspace's artifact answers as a missing one, even to a caller who reaches both.
    let other = app.create_workspace(&token, "Other Firm").await.assert_ok()["createWorkspace"]
        ["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let elsewhere = app.active_connection_in(&token, &other).await;
    let foreign = crate::imports::artifact_with_bytes(&app, &token, &elsewhere, b"x").await;
    let refused = upload(
        &app,
        &token,
        &connection,
        "c-1",
        json!({ "fileName": "a.pdf", "tusdEndpoint": endpoint, "artifactId": foreign }),
    )
    .await;
    assert_eq!(refused.code(), "NOT_FOUND", "{}", refused.body);
    // Unknown and foreign connections answer alike.
    let stranger = app.partner_token("other").await;
    for (who, id) in [(&token, "pcn_missing"), (&stranger, connection.as_str())] {
        let refused = upload(
            &app,
            who,
            id,
            "c-1",
            json!({ "fileName": "a.pdf", "tusdEndpoint": endpoint, "contentBase64": small }),
        )
        .await;
        assert_eq!(refused.code(), "NOT_FOUND");
    }
    // A connection that is not active sends nothing.
    let pending = app
        .graphql(
            json!({ "query": "mutation($w: ID!) { startProviderConnection(workspaceId: $w, providerKey: \"qount\", inputs: {apiKey: \"k\"}) { id } }", "variables": { "w": workspace } }),
            Some(&token),
            None,
        )
        .await
        .assert_ok()["startProviderConnection"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refused = upload(
        &app,
        &token,
        &pending,
        "c-1",
        json!({ "fileName": "a.pdf", "tusdEndpoint": endpoint, "contentBase64": small }),
    )
    .await;
    assert_eq!(refused.code(), "CONFLICT");
    assert!(
        refused.message().contains("pending"),
        "{}",
        refused.message()
    );
    assert!(uploads(&app, &token, &workspace, &connection)
        .await
        .is_empty());
    assert!(uploads(&app, &token, &workspace, &pending).await.is_empty());
}

async fn a_large_body_is_admitted_only_for_an_upload(app: TestApp) {
    let (token, workspace, connection) = setup(&app).await;
    let endpoint = "https://tus.platform.example/files/";
    // 10 MiB exactly is accepted (the worker will fail to reach the endpoint; that is not
    // what this test is about), one byte more is refused by name.
    let max = file(10 * 1024 * 1024, 3);
    let accepted = upload(&app, &token, &connection, "c-1", json!({ "fileName": "big.bin", "tusdEndpoint": endpoint, "contentBase64": STANDARD.encode(&max) })).await;
    assert_eq!(accepted.status, 200);
    assert_eq!(
        accepted.assert_ok()["uploadConnectionFile"]["success"],
        true
    );
    let listed = uploads(&app, &token, &workspace, &connection).await;
    assert_eq!(listed[0]["totalBytes"], max.len());
    let mut over = max;
    over.push(0);
    let refused = upload(&app, &token, &connection, "c-1", json!({ "fileName": "big.bin", "tusdEndpoint": endpoint, "contentBase64": STANDARD.encode(&over) })).await;
    assert_eq!(refused.code(), "BAD_USER_INPUT");
    assert_eq!(
        refused.body["errors"][0]["extensions"]["field"],
        "file.contentBase64"
    );
    drop(over);

    // The same size for any other operation, or without a token, is 413.
    let padding = "x".repeat(2 * 1024 * 1024);
    let body = json!({ "query": "query($p: String) { me { id } }", "variables": { "p": padding } });
    // With a token the body is read (it might be an upload), then refused once parsed.
    let response = app
        .http
        .post(&app.endpoint)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 413);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["errors"][0]["extensions"]["field"], "body");
    // Without one it is refused from its Content-Length, before a byte of it is read (so the
    // client's send may meet a closed connection: the headers alone show the answer).
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.to_string().len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"field\":\"body\""), "{answer}");
    // An upload beside another root field is no upload alone.
    let both = json!({ "query": format!("mutation($f: FileUploadInput!) {{ uploadConnectionFile(connectionId: \"{connection}\", clientKey: \"c\", file: $f) {{ success }} disconnectProviderConnection(connectionId: \"{connection}\") {{ id }} }}"),
        "variables": { "f": { "fileName": "a", "tusdEndpoint": endpoint, "contentBase64": STANDARD.encode(file(2 * 1024 * 1024, 1)) } } });
    let response = app
        .http
        .post(&app.endpoint)
        .bearer_auth(&token)
        .json(&both)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 413);
    assert_eq!(
        uploads(&app, &token, &workspace, &connection).await.len(),
        1
    );
}

async fn a_refused_endpoint_fails_the_upload_saying_why(app: TestApp) {
    let (token, workspace, connection) = setup(&app).await;
    // 127.0.0.2 is loopback and not on the test's allow-list (127.0.0.1/32).
    let answered = upload(&app, &token, &connection, "c-9", json!({ "fileName": "a.pdf", "tusdEndpoint": "http://127.0.0.2:9/files/", "contentBase64": STANDARD.encode(b"%PDF-1.7") })).await;
    let id = answered.assert_ok()["uploadConnectionFile"]["uploadId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let row = until_final(&app, &token, &workspace, &connection, &id).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["bytesSent"], 0);
    let error = row["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("127.0.0.2") && error.contains("does not call"),
        "{error}"
    );
}
