//! Custody of what the gateway holds, against hostile peers written here, on both databases:
//! stored credentials go only to the origin they were entered for (and a row whose base URL was
//! changed behind the gateway's back does not open), credentialed calls end at a redirect to
//! another origin, platform lists are cut at the limit and share one byte budget per request,
//! stored files are served as downloads, callers cannot write the gateway's own metadata keys,
//! and one workspace's slow files neither stall another's nor outlive a cancel.

use crate::{
    connections::{collect, partner_with_workspace, start, started},
    imports::{call, job_and_work, CANCEL, CREATE_ARTIFACTS},
    support::{Gql, TestApp},
};
use serde_json::{json, Value};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

taxbridge_testkit::per_database!(
    crate::imports::spawn;
    stored_credentials_go_only_where_they_were_entered,
    credentialed_calls_end_at_a_redirect_to_another_origin,
    platform_lists_are_cut_at_the_limit_and_share_a_byte_budget,
    stored_files_are_served_as_downloads_never_pages,
    the_gateways_metadata_keys_are_refused,
    one_workspaces_slow_files_neither_stall_another_nor_outlive_a_cancel,
);

const KEY: &str = "firm-api-key-0001";
const TOKEN: &str = "firm-security-token-0001";

/// A hostile or honest peer on 127.0.0.1, answering `answer(path, its base URL)` and keeping
/// what it was sent.
mod peer {
    use axum::{
        extract::State,
        http::{HeaderMap, Uri},
        response::Response,
        Router,
    };
    use std::sync::{Arc, Mutex};

    pub type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;
    type Answer = Arc<dyn Fn(&str, &str) -> Response + Send + Sync>;

    pub struct Peer {
        pub base: String,
        pub seen: Seen,
    }

    impl Peer {
        pub fn requests(&self) -> Vec<(String, HeaderMap)> {
            self.seen.lock().map(|s| s.clone()).unwrap_or_default()
        }

        /// Every credential header value it was sent.
        pub fn credentials(&self) -> Vec<String> {
            self.requests()
                .iter()
                .flat_map(|(_, headers)| {
                    ["authorization", "x-security-token"]
                        .into_iter()
                        .filter_map(|name| headers.get(name)?.to_str().ok().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .collect()
        }
    }

    pub async fn start(answer: impl Fn(&str, &str) -> Response + Send + Sync + 'static) -> Peer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen: Seen = Arc::default();
        let state = (seen.clone(), Arc::new(answer) as Answer, base.clone());
        let app = Router::new().fallback(
            |State((seen, answer, base)): State<(Seen, Answer, String)>,
             uri: Uri,
             headers: HeaderMap| async move {
                let path = uri
                    .path_and_query()
                    .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
                if let Ok(mut seen) = seen.lock() {
                    seen.push((path.clone(), headers));
                }
                answer(&path, &base)
            },
        );
        tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await });
        Peer { base, seen }
    }
}

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

fn json_answer(value: Value) -> Response {
    axum::Json(value).into_response()
}

fn firm() -> Response {
    json_answer(json!({ "firmId": "f-1", "firmName": "Smith CPA" }))
}

fn moved(to: String) -> Response {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
}

/// A qount connection on the partner's workspace to `base` with the firm's credentials.
async fn connection_to(app: &TestApp, partner: &(String, String), base: &str) -> String {
    let inputs = json!({ "apiKey": KEY, "securityToken": TOKEN, "baseUrl": base });
    started(&start(app, &partner.0, &partner.1, "qount", inputs).await)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn collected(response: &Gql) -> Value {
    response.assert_ok()["collectProviderConnection"].clone()
}

async fn connection_state(app: &TestApp, token: &str, id: &str) -> Value {
    let answer = app
        .graphql(
            json!({ "query": "query($c: ID!) { me { workspaces { connections(filters: {ids: [$c]}) { status settings } } } }", "variables": { "c": id } }),
            Some(token),
            None,
        )
        .await;
    answer.assert_ok()["me"]["workspaces"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["connections"].as_array().cloned().unwrap_or_default())
        .next()
        .unwrap_or(Value::Null)
}

async fn stored_credentials_go_only_where_they_were_entered(app: TestApp) {
    let platform = peer::start(|path, _| {
        if path.ends_with("/v1/verify") {
            firm()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    })
    .await;
    let attacker = peer::start(|_, _| StatusCode::UNAUTHORIZED.into_response()).await;
    let partner = partner_with_workspace(&app, "qount").await;
    let token = partner.0.clone();
    let id = connection_to(&app, &partner, &platform.base).await;
    assert_eq!(
        collected(&collect(&app, &token, &id, Value::Null).await)["status"],
        "active"
    );

    // Re-pointed without the secrets, or with only some: refused, naming what to enter again.
    for (inputs, names) in [
        (
            json!({ "baseUrl": attacker.base }),
            vec!["`apiKey`", "`securityToken`"],
        ),
        (
            json!({ "baseUrl": format!("{}/v1", attacker.base), "apiKey": "mine" }),
            vec!["`securityToken`"],
        ),
        // Another port of the same host is another origin too.
        (
            json!({ "baseUrl": platform.base.replace("127.0.0.1", "localhost") }),
            vec!["`apiKey`"],
        ),
    ] {
        let refused = collect(&app, &token, &id, inputs.clone()).await;
        assert_eq!(
            refused.code(),
            "BAD_USER_INPUT",
            "{inputs}: {}",
            refused.body
        );
        for name in names {
            assert!(refused.message().contains(name), "{}", refused.message());
        }
        assert!(refused.body["errors"][0]["extensions"]["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("inputs.")));
    }
    assert!(
        attacker.requests().is_empty(),
        "the attacker heard something"
    );
    // Nothing stored was lost or changed by the refusals.
    let state = connection_state(&app, &token, &id).await;
    assert_eq!(state["status"], "active");
    assert_eq!(state["settings"]["baseUrl"], platform.base.as_str());
    assert_eq!(
        collected(&collect(&app, &token, &id, Value::Null).await)["status"],
        "active"
    );

    // With every secret given anew the move is the caller's own: only the new ones go there.
    let moved_collect = collect(
        &app,
        &token,
        &id,
        json!({ "baseUrl": attacker.base, "apiKey": "their-own-key", "securityToken": "their-own-token" }),
    )
    .await;
    assert_eq!(collected(&moved_collect)["status"], "failed");
    assert_eq!(
        attacker.credentials(),
        ["Bearer their-own-key", "their-own-token"]
    );

    // A row whose base URL was changed in the database does not open: no collect and no pull
    // sends its credentials to the new address.
    let second = connection_to(&app, &partner, &platform.base).await;
    assert_eq!(
        collected(&collect(&app, &token, &second, Value::Null).await)["status"],
        "active"
    );
    {
        use taxbridge_domain::{connections::ConnectionStore, ids::ConnectionId};
        let mut row = app
            .store
            .connection_by_id(&ConnectionId::from_string(second.clone()))
            .await
            .expect("read")
            .expect("row");
        row.settings
            .insert("baseUrl".into(), Value::String(attacker.base.clone()));
        app.store
            .update_connection(&row, &[])
            .await
            .expect("tamper");
    }
    let heard = attacker.requests().len();
    let after_tamper = collect(&app, &token, &second, Value::Null).await;
    assert!(
        after_tamper.body["errors"].is_array(),
        "{}",
        after_tamper.body
    );
    let pull = app
        .graphql(
            json!({ "query": "query($c: ID!) { me { workspaces { connections(filters: {ids: [$c]}) { clients { id } } } } }", "variables": { "c": second } }),
            Some(&token),
            None,
        )
        .await;
    assert!(pull.body["errors"].is_array(), "{}", pull.body);
    assert_eq!(
        attacker.requests().len(),
        heard,
        "a tampered row reached the attacker"
    );
    assert!(!attacker
        .credentials()
        .iter()
        .any(|c| c.contains(KEY) || c.contains(TOKEN)));
}

async fn credentialed_calls_end_at_a_redirect_to_another_origin(app: TestApp) {
    let elsewhere = peer::start(|path, _| {
        if path.ends_with(".pdf") {
            (
                [(header::CONTENT_TYPE, "application/pdf")],
                "%PDF-1.7 moved",
            )
                .into_response()
        } else {
            json_answer(json!({ "firmId": "stolen", "clients": [{"id": "c-9"}], "files": [] }))
        }
    })
    .await;
    let away = elsewhere.base.clone();
    let platform = peer::start(move |path, _| {
        let rest = |prefix: &str| path.strip_prefix(prefix).unwrap_or(path).to_owned();
        match path {
            p if p.starts_with("/away/") => moved(format!("{away}{}", rest("/away"))),
            p if p.starts_with("/home/") => moved(format!("/ok/{}", rest("/home/"))),
            p if p.starts_with("/ok/v1/verify") || p.starts_with("/pull/v1/verify") => firm(),
            "/pull/v1/clients" => json_answer(json!({ "clients": [{ "id": "c-1" }] })),
            p if p.starts_with("/pull/v1/") => moved(format!("{away}{}", rest("/pull"))),
            p if p.starts_with("/dl/") => moved(format!("{away}{}", rest("/dl"))),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    })
    .await;
    let partner = partner_with_workspace(&app, "qount").await;
    let token = partner.0.clone();

    // verify
    let away_id = connection_to(&app, &partner, &format!("{}/away", platform.base)).await;
    let failed = collected(&collect(&app, &token, &away_id, Value::Null).await);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["action"], "reconnect");
    assert!(
        failed["statusDetail"]
            .as_str()
            .is_some_and(|d| d.contains("another origin")),
        "{failed}"
    );
    // Within the origin a redirect is followed, credentials and all.
    let home_id = connection_to(&app, &partner, &format!("{}/home", platform.base)).await;
    assert_eq!(
        collected(&collect(&app, &token, &home_id, Value::Null).await)["status"],
        "active"
    );

    // the pulls: the list, one client, a client's files
    let pull_id = connection_to(&app, &partner, &format!("{}/pull", platform.base)).await;
    assert_eq!(
        collected(&collect(&app, &token, &pull_id, Value::Null).await)["status"],
        "active"
    );
    let pulled = app
        .graphql(
            json!({ "query": "query($c: ID!) { me { workspaces { connections(filters: {ids: [$c]}) { list: clients { id files { id } } one: clients(options: {id: \"c-2\"}) { id } } } } }", "variables": { "c": pull_id } }),
            Some(&token),
            None,
        )
        .await;
    let errors = pulled.body["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), 2, "{}", pulled.body);
    for error in &errors {
        assert_eq!(error["extensions"]["code"], "UPSTREAM_ERROR");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("another origin")),
            "{error}"
        );
    }
    let connection = &pulled.body["data"]["me"]["workspaces"][0]["connections"][0];
    assert_eq!(connection["list"][0]["id"], "c-1");
    assert_eq!(connection["list"][0]["files"], Value::Null);
    assert_eq!(connection["one"], Value::Null);
    assert!(
        elsewhere.requests().is_empty(),
        "a credentialed call reached another origin: {:?}",
        elsewhere.requests()
    );

    // A download may follow a file server's redirect elsewhere (as to a storage bucket), but
    // its credentials stay behind.
    let dl_base = format!("{}/dl", platform.base);
    let dl = app
        .active_connection_with(
            &token,
            &partner.1,
            json!({ "apiKey": KEY, "securityToken": TOKEN, "baseUrl": dl_base }),
        )
        .await;
    let (_, work) = job_and_work(&app, &token, &dl, "c-1").await;
    let artifact = call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": [{ "name": "W-2", "type": "w2", "externalId": "w2", "url": format!("{dl_base}/w2.pdf") }] }),
    )
    .await
    .assert_ok()["createJobWorkArtifacts"][0]["artifactId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let status = artifact_status(&app, &token, &artifact).await;
    assert_eq!(status, "success");
    let downloads: Vec<_> = elsewhere.requests();
    assert_eq!(downloads.len(), 1);
    assert!(elsewhere.credentials().is_empty(), "{downloads:?}");
    assert!(platform
        .requests()
        .iter()
        .any(|(path, headers)| path == "/dl/w2.pdf" && headers.get("authorization").is_some()));
}

/// Waits for an artifact to leave `initial` (read through its byte route, which names the
/// status of one with no file); its status.
async fn artifact_status(app: &TestApp, token: &str, artifact: &str) -> String {
    for _ in 0..100 {
        let answer = app
            .http
            .get(format!("{}/files/artifacts/{artifact}", app.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        if answer.status() == 200 {
            return "success".into();
        }
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        let message = body["errors"][0]["message"].as_str().unwrap_or("");
        if let Some(status) = ["error", "terminated"]
            .into_iter()
            .find(|s| message.contains(&format!("`{s}`")))
        {
            return status.into();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the artifact stayed initial");
}

async fn platform_lists_are_cut_at_the_limit_and_share_a_byte_budget(app: TestApp) {
    // A platform that ignores `limit`: 1,000 clients, and 25 files of 2 KB names per client.
    let platform = peer::start(|path, _| {
        let path = path.split('?').next().unwrap_or(path);
        if path.ends_with("/v1/verify") {
            firm()
        } else if path.ends_with("/files") {
            let files: Vec<Value> = (0..25)
                .map(|n| json!({ "id": format!("f-{n}"), "fileName": "n".repeat(2_000) }))
                .collect();
            json_answer(json!({ "files": files }))
        } else if path.ends_with("/v1/clients") {
            let clients: Vec<Value> = (0..1_000)
                .map(|n| json!({ "id": format!("c-{n}"), "name": format!("Client {n}") }))
                .collect();
            json_answer(json!({ "clients": clients }))
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    })
    .await;
    let partner = partner_with_workspace(&app, "qount").await;
    let token = partner.0.clone();
    let id = connection_to(&app, &partner, &platform.base).await;
    collected(&collect(&app, &token, &id, Value::Null).await);
    let pull = |selection: &str| json!({ "query": format!("query($c: ID!) {{ me {{ workspaces {{ connections(filters: {{ids: [$c]}}) {{ {selection} }} }} }} }}"), "variables": { "c": id } });
    let three = app
        .graphql(
            pull("clients(options: {limit: 3}) { id }"),
            Some(&token),
            None,
        )
        .await;
    let clients = three.assert_ok()["me"]["workspaces"][0]["connections"][0]["clients"].clone();
    assert_eq!(
        clients,
        json!([{ "id": "c-0" }, { "id": "c-1" }, { "id": "c-2" }])
    );
    let page = app
        .graphql(pull("clients { id }"), Some(&token), None)
        .await;
    assert_eq!(
        page.assert_ok()["me"]["workspaces"][0]["connections"][0]["clients"]
            .as_array()
            .map(Vec::len),
        Some(50),
        "without a limit, the protocol's default page (what the cost check priced)"
    );
    let most = app
        .graphql(
            pull("clients(options: {limit: 500}) { id }"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        most.assert_ok()["me"]["workspaces"][0]["connections"][0]["clients"]
            .as_array()
            .map(Vec::len),
        Some(500)
    );

    // 400 clients' files at ~50 KB each: past the request's 16 MiB the pulls stop.
    let many = app
        .graphql(
            pull("clients(options: {limit: 400}) { id files(options: {limit: 25}) { id } }"),
            Some(&token),
            None,
        )
        .await;
    let clients = many.body["data"]["me"]["workspaces"][0]["connections"][0]["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(clients.len(), 400, "{}", many.body);
    let served = clients.iter().filter(|c| c["files"].is_array()).count();
    let errors = many.body["errors"].as_array().cloned().unwrap_or_default();
    assert!((250..400).contains(&served), "{served} files lists served");
    // Each unserved list has its error (the answer lists 50 and counts the rest).
    assert!(!errors.is_empty());
    for error in &errors {
        let message = error["message"].as_str().unwrap_or("");
        if message.starts_with('…') {
            assert!(
                message.contains(&format!("{} more", 400 - served - 50)),
                "{message}"
            );
            continue;
        }
        assert_eq!(error["extensions"]["code"], "UPSTREAM_ERROR");
        assert!(message.contains("budget"), "{error}");
    }
    // The next request has a budget of its own.
    let again = app
        .graphql(
            pull("clients(options: {limit: 2}) { id files { id } }"),
            Some(&token),
            None,
        )
        .await;
    again.assert_ok();
}

async fn stored_files_are_served_as_downloads_never_pages(app: TestApp) {
    let files = peer::start(|path, _| {
        let (kind, body) = match path {
            "/pic.svg" => (
                "image/svg+xml",
                "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
            ),
            "/page.html" => ("text/html; charset=utf-8", "<script>alert(1)</script>"),
            _ => ("application/pdf", "%PDF-1.7 a return"),
        };
        ([(header::CONTENT_TYPE, kind)], body).into_response()
    })
    .await;
    let partner = partner_with_workspace(&app, "qount").await;
    let token = partner.0.clone();
    let connection = app
        .active_connection_with(
            &token,
            &partner.1,
            json!({ "apiKey": KEY, "baseUrl": files.base }),
        )
        .await;
    let (_, work) = job_and_work(&app, &token, &connection, "c-1").await;
    let inputs: Vec<Value> = [("pic.svg", "pic"), ("page.html", "page"), ("return.pdf", "return")]
        .iter()
        .map(|(file, name)| json!({ "name": format!("{name} \"2024\"/é"), "type": "document", "externalId": name, "url": format!("{}/{file}", files.base) }))
        .chain(std::iter::once(json!({ "name": "script.js", "type": "document", "externalId": "js" })))
        .collect();
    let ids = crate::imports::create_artifacts(&app, &token, &work, json!(inputs)).await;
    assert_eq!(ids.len(), 4);
    let put = app
        .http
        .put(format!("{}/uploads/artifacts/{}", app.base, ids[3]))
        .bearer_auth(&token)
        .header("content-type", "text/javascript")
        .body("document.title = 'ran'")
        .send()
        .await
        .expect("put");
    assert!(put.status().is_success());
    for (id, served) in ids.iter().zip([
        "application/octet-stream",
        "application/octet-stream",
        "application/pdf",
        "application/octet-stream",
    ]) {
        if artifact_status(&app, &token, id).await != "success" {
            panic!("{id} did not arrive");
        }
        let answer = app
            .http
            .get(format!("{}/files/artifacts/{id}", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        assert_eq!(answer.status(), 200);
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(header("content-type"), served, "{id}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(
            header("content-security-policy"),
            "sandbox; default-src 'none'"
        );
        let disposition = header("content-disposition");
        assert!(
            disposition.starts_with("attachment; filename=\""),
            "{disposition}"
        );
        assert!(
            disposition.contains("filename*=UTF-8''") && disposition.matches('"').count() == 2,
            "{disposition}"
        );
    }
}

async fn the_gateways_metadata_keys_are_refused(app: TestApp) {
    let partner = partner_with_workspace(&app, "qount").await;
    let token = partner.0.clone();
    let connection = app
        .active_connection_with(&token, &partner.1, json!({ "apiKey": KEY }))
        .await;
    let (_, work) = job_and_work(&app, &token, &connection, "c-1").await;
    for key in ["error", "size", "sha256", "mimeType"] {
        let refused = call(
            &app,
            &token,
            CREATE_ARTIFACTS,
            json!({ "jobWorkId": work, "inputs": [
                { "name": "ok", "type": "w2", "externalId": format!("ok-{key}") },
                { "name": "spoof", "type": "w2", "externalId": key, "metadata": { "taxYear": 2024, key: { "message": "The gateway lost this file" } } },
            ] }),
        )
        .await;
        assert_eq!(refused.code(), "BAD_USER_INPUT", "{key}: {}", refused.body);
        assert_eq!(
            refused.body["errors"][0]["extensions"]["field"],
            format!("inputs[1].metadata.{key}")
        );
        assert!(refused.message().contains(&format!("`{key}`")));
    }
    // Nothing of the refused calls was kept; other keys are the caller's to use.
    let fine = call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": [{ "name": "ok", "type": "w2", "externalId": "ok-error", "metadata": { "partnerError": "x", "errors": [] } }] }),
    )
    .await;
    assert_eq!(
        fine.assert_ok()["createJobWorkArtifacts"][0]["workArtifact"]["metadata"],
        json!({ "partnerError": "x", "errors": [] })
    );
}

/// Streams opened by a drip-feeding file server, and how many are open now.
#[derive(Default)]
struct Drips {
    open: AtomicUsize,
    most: AtomicUsize,
}

struct OpenStream(Arc<Drips>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn one_workspaces_slow_files_neither_stall_another_nor_outlive_a_cancel(app: TestApp) {
    let drips = Arc::new(Drips::default());
    let counting = drips.clone();
    let files = peer::start(move |path, _| {
        if !path.starts_with("/drip/") {
            return ([(header::CONTENT_TYPE, "application/pdf")], "%PDF fast").into_response();
        }
        let now = counting.open.fetch_add(1, Ordering::SeqCst) + 1;
        counting.most.fetch_max(now, Ordering::SeqCst);
        let guard = OpenStream(counting.clone());
        // A byte every half second for a minute: never idle long enough to time out.
        let body = futures_util::stream::unfold((0u32, guard), |(n, guard)| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            (n < 120).then(|| {
                (
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")),
                    (n + 1, guard),
                )
            })
        });
        Response::new(axum::body::Body::from_stream(body))
    })
    .await;
    let token = app.partner_token("qount").await;
    let workspace = |name: &'static str| {
        let (app, token) = (&app, token.clone());
        async move {
            app.create_workspace(&token, name).await.assert_ok()["createWorkspace"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let (slow_ws, fast_ws) = (
        workspace("Slow Files LLC").await,
        workspace("Fast Files LLC").await,
    );
    let inputs = json!({ "apiKey": KEY, "baseUrl": files.base });
    let slow = app
        .active_connection_with(&token, &slow_ws, inputs.clone())
        .await;
    let fast = app.active_connection_with(&token, &fast_ws, inputs).await;
    let (slow_job, work) = job_and_work(&app, &token, &slow, "c-1").await;
    let drip_inputs: Vec<Value> = (0..8)
        .map(|n| json!({ "name": format!("slow {n}"), "type": "document", "externalId": format!("slow-{n}"), "url": format!("{}/drip/{n}", files.base) }))
        .collect();
    call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": drip_inputs }),
    )
    .await
    .assert_ok();
    let started = Instant::now();
    while drips.open.load(Ordering::SeqCst) < 2 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The worker has 4 slots: the slow workspace holds at most half.
    assert_eq!(drips.most.load(Ordering::SeqCst), 2);

    // Another workspace's small file is not kept waiting behind them.
    let (_, fast_work) = job_and_work(&app, &token, &fast, "c-2").await;
    let queued = Instant::now();
    let artifact = call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": fast_work, "inputs": [{ "name": "fast", "type": "document", "externalId": "fast", "url": format!("{}/fast.pdf", files.base) }] }),
    )
    .await
    .assert_ok()["createJobWorkArtifacts"][0]["artifactId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(artifact_status(&app, &token, &artifact).await, "success");
    assert!(
        queued.elapsed() < Duration::from_secs(3),
        "{:?}",
        queued.elapsed()
    );
    assert!(
        drips.open.load(Ordering::SeqCst) >= 1,
        "the slow files are still dripping"
    );

    // Cancelling the slow job stops its running downloads within 2 s.
    call(&app, &token, CANCEL, json!({ "id": slow_job }))
        .await
        .assert_ok();
    let cancelled = Instant::now();
    while drips.open.load(Ordering::SeqCst) > 0 && cancelled.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(drips.open.load(Ordering::SeqCst), 0);
    assert!(
        cancelled.elapsed() < Duration::from_secs(2),
        "{:?}",
        cancelled.elapsed()
    );
}
