//! The pull pattern over HTTP on both databases: `clients(options)` and `files(options)` read
//! live from a fake platform (not the reference partner), options as query parameters, one
//! client by id, bad options refused before any call, each upstream failure nulling only its
//! own field, rejected credentials failing the connection, and the pulls of one request run
//! concurrently within a bound.

use crate::connections::{collect, partner_with_workspace, start, started};
use crate::support::{Gql, TestApp};
use serde_json::{json, Value};

taxbridge_testkit::per_database!(
    crate::support::TestApp::spawn;
    clients_and_their_files_are_read_live_with_options_as_parameters,
    bad_options_are_refused_before_any_call,
    each_upstream_failure_nulls_only_its_own_field,
    rejected_credentials_fail_the_connection,
    only_an_active_connection_pulls,
    the_pulls_of_one_request_run_concurrently_within_a_bound,
);

const KEY: &str = "pull-platform-key";
const TOKEN: &str = "pull-security-token";

/// Partner protocol v1 with a misbehaviour per path prefix for the pulls (verify always
/// answers, so any mode's connection can be collected), recording every pull.
mod fake {
    use axum::{
        extract::{Path, RawQuery, State},
        http::{HeaderMap, StatusCode},
        response::{IntoResponse, Response},
        routing::get,
        Json, Router,
    };
    use serde_json::json;
    use std::sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    };

    #[derive(Default)]
    pub struct Platform {
        /// (path, query, headers) of every pull.
        pub seen: Mutex<Vec<(String, String, HeaderMap)>>,
        pub revoked: AtomicBool,
        in_flight: AtomicUsize,
        pub most_at_once: AtomicUsize,
    }

    impl Platform {
        pub fn pulls(&self) -> usize {
            self.seen.lock().map(|s| s.len()).unwrap_or(0)
        }
    }

    fn authorised(platform: &Platform, headers: &HeaderMap) -> bool {
        let key = headers.get("authorization").and_then(|v| v.to_str().ok());
        let token = headers
            .get("x-security-token")
            .and_then(|v| v.to_str().ok());
        !platform.revoked.load(Ordering::SeqCst)
            && key == Some(&format!("Bearer {}", super::KEY))
            && token == Some(super::TOKEN)
    }

    async fn verify(State(platform): State<Arc<Platform>>, headers: HeaderMap) -> Response {
        if !authorised(&platform, &headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        Json(json!({ "firmId": "f-9", "firmName": "Pull Firm" })).into_response()
    }

    fn client(n: usize) -> serde_json::Value {
        json!({
            "id": format!("c-{n}"), "name": format!("Client {n}"), "email": format!("c{n}@example.com"),
            "phone": null, "type": "business", "lastModified": "2024-03-01T08:00:00Z",
        })
    }

    async fn pull(
        platform: &Platform,
        mode: &str,
        path: String,
        query: Option<String>,
        headers: HeaderMap,
        answer: impl FnOnce() -> Response,
    ) -> Response {
        let now = platform.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        platform.most_at_once.fetch_max(now, Ordering::SeqCst);
        platform
            .seen
            .lock()
            .map(|mut s| s.push((path, query.unwrap_or_default(), headers.clone())))
            .ok();
        let response = if !authorised(platform, &headers) {
            StatusCode::UNAUTHORIZED.into_response()
        } else {
            match mode {
                "ok" => answer(),
                "slow" => {
                    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
                    answer()
                }
                "error500" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                "hang" => {
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                    StatusCode::OK.into_response()
                }
                "huge" => {
                    format!("{{\"clients\": [\"{}\"]}}", "x".repeat(100 * 1024)).into_response()
                }
                "notjson" => "<html>maintenance</html>".into_response(),
                "nolist" => Json(json!({ "items": [] })).into_response(),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        };
        platform.in_flight.fetch_sub(1, Ordering::SeqCst);
        response
    }

    async fn clients(
        State(platform): State<Arc<Platform>>,
        Path(mode): Path<String>,
        RawQuery(query): RawQuery,
        headers: HeaderMap,
    ) -> Response {
        let limit = query
            .as_deref()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("limit=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(50);
        pull(&platform, &mode, "/clients".into(), query, headers, || {
            Json(json!({ "clients": (1..=limit).map(client).collect::<Vec<_>>() })).into_response()
        })
        .await
    }

    async fn one(
        State(platform): State<Arc<Platform>>,
        Path((mode, id)): Path<(String, String)>,
        headers: HeaderMap,
    ) -> Response {
        let path = format!("/clients/{id}");
        pull(&platform, &mode, path, None, headers, || {
            if id == "missing" {
                StatusCode::NOT_FOUND.into_response()
            } else {
                let mut c = client(1);
                c["id"] = json!(id);
                Json(c).into_response()
            }
        })
        .await
    }

    async fn files(
        State(platform): State<Arc<Platform>>,
        Path((mode, id)): Path<(String, String)>,
        RawQuery(query): RawQuery,
        headers: HeaderMap,
    ) -> Response {
        let path = format!("/clients/{id}/files");
        pull(&platform, &mode, path, query, headers, || {
            Json(json!({ "files": [
                { "id": format!("{id}-f1"), "fileName": "w2.pdf", "fileSize": 2048, "mimeType": "application/pdf",
                  "downloadUrl": format!("https://files.example/{id}/w2.pdf"), "dateCreated": "2024-02-01T09:00:00.000Z" },
                { "id": 77, "fileName": "1099.pdf" }
            ] }))
            .into_response()
        })
        .await
    }

    pub async fn start() -> (Arc<Platform>, u16) {
        let platform = Arc::new(Platform::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let router = Router::new()
            .route("/{mode}/v1/verify", get(verify))
            .route("/{mode}/v1/clients", get(clients))
            .route("/{mode}/v1/clients/{id}", get(one))
            .route("/{mode}/v1/clients/{id}/files", get(files))
            .with_state(platform.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (platform, port)
    }
}

/// An active connection of `partner`'s workspace to the fake platform's `mode`.
async fn active(app: &TestApp, partner: &(String, String), port: u16, mode: &str) -> String {
    let inputs = json!({ "apiKey": KEY, "securityToken": TOKEN, "baseUrl": format!("http://127.0.0.1:{port}/{mode}"), "firmReferenceId": "F-9" });
    let id = started(&start(app, &partner.0, &partner.1, "qount", inputs).await)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let collected = collect(app, &partner.0, &id, json!(null)).await;
    assert_eq!(
        collected.assert_ok()["collectProviderConnection"]["status"],
        "active"
    );
    id
}

const CLIENTS: &str = "query ConnectionClients($workspaceId: ID!, $connectionId: ID!, $options: JSON) { me { workspaces(filters: {ids: [$workspaceId]}) { connections(filters: {ids: [$connectionId]}) { id status clients(options: $options) { id name email phone type lastModified } } } } }";

async fn clients(
    app: &TestApp,
    partner: &(String, String),
    connection: &str,
    options: Value,
) -> Gql {
    app.graphql(
        json!({ "query": CLIENTS, "variables": { "workspaceId": partner.1, "connectionId": connection, "options": options } }),
        Some(&partner.0),
        None,
    )
    .await
}

fn first_connection(response: &Gql) -> &Value {
    &response.data()["me"]["workspaces"][0]["connections"][0]
}

async fn clients_and_their_files_are_read_live_with_options_as_parameters(app: TestApp) {
    let (platform, port) = fake::start().await;
    let partner = partner_with_workspace(&app, "qount").await;
    let id = active(&app, &partner, port, "ok").await;

    let listed = clients(
        &app,
        &partner,
        &id,
        json!({ "limit": 3, "type": "business", "active": true }),
    )
    .await;
    let rows = first_connection(&listed).clone();
    listed.assert_ok();
    assert_eq!(rows["clients"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        rows["clients"][0],
        json!({ "id": "c-1", "name": "Client 1", "email": "c1@example.com", "phone": null, "type": "business", "lastModified": "2024-03-01T08:00:00.000Z" })
    );
    {
        let seen = platform.seen.lock().expect("seen");
        let (path, query, headers) = seen.last().expect("a pull");
        assert_eq!(path, "/clients");
        let mut params: Vec<&str> = query.split('&').collect();
        params.sort_unstable();
        assert_eq!(params, ["active=true", "limit=3", "type=business"]);
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        assert_eq!(header("authorization"), format!("Bearer {KEY}"));
        assert_eq!(header("x-security-token"), TOKEN);
        assert_eq!(header("x-taxbridge-workspace"), partner.1);
        assert_eq!(header("x-taxbridge-firm-reference"), "F-9");
    }

    // One client by id, its id escaped as one path segment; a missing one is an empty list.
    let one = clients(&app, &partner, &id, json!({ "id": "a b/c" })).await;
    one.assert_ok();
    assert_eq!(first_connection(&one)["clients"][0]["id"], "a b/c");
    assert_eq!(
        platform
            .seen
            .lock()
            .expect("seen")
            .last()
            .map(|s| s.0.clone()),
        Some("/clients/a b/c".to_owned()),
        "axum decodes the one segment it was sent"
    );
    let missing = clients(&app, &partner, &id, json!({ "id": "missing" })).await;
    missing.assert_ok();
    assert_eq!(first_connection(&missing)["clients"], json!([]));

    // Files under each client, with their own options.
    let with_files = app
        .graphql(
            json!({ "query": "query Files($w: ID!, $c: ID!) { me { workspaces(filters: {ids: [$w]}) { connections(filters: {ids: [$c]}) { clients(options: {limit: 2}) { id files(options: {limit: 10}) { id fileName fileSize mimeType downloadUrl dateCreated } } } } } }",
                    "variables": { "w": partner.1, "c": id } }),
            Some(&partner.0),
            None,
        )
        .await;
    with_files.assert_ok();
    let listed = &first_connection(&with_files)["clients"];
    assert_eq!(listed[1]["id"], "c-2");
    assert_eq!(
        listed[1]["files"],
        json!([
            { "id": "c-2-f1", "fileName": "w2.pdf", "fileSize": 2048, "mimeType": "application/pdf",
              "downloadUrl": "https://files.example/c-2/w2.pdf", "dateCreated": "2024-02-01T09:00:00.000Z" },
            { "id": "77", "fileName": "1099.pdf", "fileSize": null, "mimeType": null, "downloadUrl": null, "dateCreated": null }
        ])
    );
    let seen = platform.seen.lock().expect("seen");
    assert!(seen
        .iter()
        .any(|(path, query, _)| path == "/clients/c-1/files" && query == "limit=10"));
}

async fn bad_options_are_refused_before_any_call(app: TestApp) {
    let (platform, port) = fake::start().await;
    let partner = partner_with_workspace(&app, "qount").await;
    let id = active(&app, &partner, port, "ok").await;
    for (options, field) in [
        (json!({ "limit": 501 }), "options.limit"),
        (json!({ "limit": -5 }), "options.limit"),
        (json!({ "offset": "soon" }), "options.offset"),
        (
            json!({ "filter": { "type": "business" } }),
            "options.filter",
        ),
        (json!({ "ids": ["c-1", "c-2"] }), "options.ids"),
        (json!(["limit", 5]), "options"),
    ] {
        let refused = clients(&app, &partner, &id, options.clone()).await;
        assert_eq!(
            refused.code(),
            "BAD_USER_INPUT",
            "{options}: {}",
            refused.body
        );
        assert_eq!(
            refused.body["errors"][0]["extensions"]["field"], field,
            "{options}"
        );
        assert_eq!(
            refused.body["errors"][0]["path"],
            json!(["me", "workspaces", 0, "connections", 0, "clients"])
        );
        // The field is null; the connection around it still answers.
        assert_eq!(first_connection(&refused)["clients"], Value::Null);
        assert_eq!(first_connection(&refused)["status"], "active");
    }
    assert!(clients(&app, &partner, &id, json!({ "limit": 500 }))
        .await
        .body["errors"]
        .is_null());
    assert_eq!(
        platform.pulls(),
        1,
        "only the good request reached the platform"
    );
}

async fn each_upstream_failure_nulls_only_its_own_field(app: TestApp) {
    let (_platform, port) = fake::start().await;
    let partner = partner_with_workspace(&app, "qount").await;
    let causes = [
        ("error500", "HTTP 500"),
        ("hang", "did not answer within"),
        ("huge", "larger than"),
        ("notjson", "not JSON"),
        ("nolist", "no `clients` list"),
    ];
    let good = active(&app, &partner, port, "ok").await;
    let mut ids = vec![good.clone()];
    for (mode, _) in causes {
        ids.push(active(&app, &partner, port, mode).await);
    }
    let response = app
        .graphql(
            json!({ "query": "query($w: ID!) { me { workspaces(filters: {ids: [$w]}) { connections(limit: 10) { id status clients(options: {limit: 2}) { id } } } } }",
                    "variables": { "w": partner.1 } }),
            Some(&partner.0),
            None,
        )
        .await;
    assert_eq!(response.status, 200);
    let rows = response.data()["me"]["workspaces"][0]["connections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        row(&good)["clients"],
        json!([{ "id": "c-1" }, { "id": "c-2" }])
    );
    let errors = response.body["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(errors.len(), causes.len(), "{}", response.body);
    for ((_, cause), id) in causes.iter().zip(&ids[1..]) {
        assert_eq!(row(id)["clients"], Value::Null, "{cause}");
        assert_eq!(
            row(id)["status"],
            "active",
            "a platform's failure is not the credentials'"
        );
        let index = rows
            .iter()
            .position(|r| r["id"] == id.as_str())
            .expect("listed");
        let error = errors
            .iter()
            .find(|e| e["path"] == json!(["me", "workspaces", 0, "connections", index, "clients"]))
            .unwrap_or_else(|| panic!("no error for {cause}: {}", response.body));
        assert_eq!(error["extensions"]["code"], "UPSTREAM_ERROR");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(cause), "{cause}: {message}");
        assert!(!message.contains(KEY) && !message.contains(TOKEN));
    }
}

async fn rejected_credentials_fail_the_connection(app: TestApp) {
    let (platform, port) = fake::start().await;
    let partner = partner_with_workspace(&app, "qount").await;
    let id = active(&app, &partner, port, "ok").await;
    platform
        .revoked
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = clients(&app, &partner, &id, json!(null)).await;
    assert_eq!(refused.code(), "UPSTREAM_ERROR");
    assert!(
        refused
            .message()
            .contains("rejected the credentials (HTTP 401)"),
        "{}",
        refused.message()
    );
    let after = app
        .graphql(
            json!({ "query": "query($w: ID!) { me { workspaces(filters: {ids: [$w]}) { connections { id status action statusDetail } } } }", "variables": { "w": partner.1 } }),
            Some(&partner.0),
            None,
        )
        .await;
    let row = &after.assert_ok()["me"]["workspaces"][0]["connections"][0];
    assert_eq!(row["status"], "failed");
    assert_eq!(row["action"], "reconnect");
    assert!(row["statusDetail"]
        .as_str()
        .unwrap_or_default()
        .contains("apiKey"));
    // Failed, it no longer pulls, and says what to do.
    let next = clients(&app, &partner, &id, json!(null)).await;
    assert_eq!(next.code(), "CONFLICT");
    assert!(next.message().contains("reconnect"), "{}", next.message());

    // The audit log: the pull used the stored credentials (recorded before the call, by the
    // partner's key), and the rejection failed the connection in the partner's name.
    use taxbridge_domain::audit::{AuditFilters, AuditPage, AuditStore};
    let logged: Vec<taxbridge_domain::audit::AuditEvent> = app
        .store
        .chain_events(
            &partner.1,
            &AuditFilters::default(),
            AuditPage::parse(Some(500), None, None).expect("page"),
        )
        .await
        .expect("events")
        .iter()
        .map(|e| e.event().expect("readable"))
        .collect();
    let pulls: Vec<_> = logged
        .iter()
        .filter(|e| e.action == "credentials.used" && e.metadata["purpose"] == "pull")
        .collect();
    assert_eq!(pulls.len(), 1, "one pull request, one use: {logged:#?}");
    assert!(pulls[0].actor.api_key_id.is_some());
    assert!(pulls[0].targets.iter().any(|t| t.id == id));
    let failed = logged
        .iter()
        .find(|e| e.action == "connection.collected" && e.metadata["status"] == "failed")
        .expect("the rejection is recorded");
    assert!(failed.metadata["cause"]
        .as_str()
        .is_some_and(|c| c.contains("rejected")));
}

async fn only_an_active_connection_pulls(app: TestApp) {
    let (platform, port) = fake::start().await;
    let partner = partner_with_workspace(&app, "qount").await;
    let inputs = json!({ "apiKey": KEY, "securityToken": TOKEN, "baseUrl": format!("http://127.0.0.1:{port}/ok") });
    let pending = started(&start(&app, &partner.0, &partner.1, "qount", inputs).await)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refused = clients(&app, &partner, &pending, json!(null)).await;
    assert_eq!(refused.code(), "CONFLICT");
    assert!(
        refused.message().contains("pending"),
        "{}",
        refused.message()
    );
    assert_eq!(first_connection(&refused)["clients"], Value::Null);
    let gone = active(&app, &partner, port, "ok").await;
    app.graphql(
        json!({ "query": "mutation($c: ID!) { disconnectProviderConnection(connectionId: $c) { status } }", "variables": { "c": gone } }),
        Some(&partner.0),
        None,
    )
    .await
    .assert_ok();
    assert_eq!(
        clients(&app, &partner, &gone, json!(null)).await.code(),
        "CONFLICT"
    );
    assert_eq!(platform.pulls(), 0);
}

async fn the_pulls_of_one_request_run_concurrently_within_a_bound(app: TestApp) {
    let (platform, port) = fake::start().await;
    let partner = partner_with_workspace(&app, "qount").await;
    let id = active(&app, &partner, port, "slow").await;
    let response = app
        .graphql(
            json!({ "query": "query($w: ID!, $c: ID!) { me { workspaces(filters: {ids: [$w]}) { connections(filters: {ids: [$c]}) { clients(options: {limit: 24}) { id files(options: {limit: 2}) { id } } } } } }",
                    "variables": { "w": partner.1, "c": id } }),
            Some(&partner.0),
            None,
        )
        .await;
    response.assert_ok();
    let listed = first_connection(&response)["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 24);
    assert!(listed
        .iter()
        .all(|c| c["files"].as_array().map(Vec::len) == Some(2)));
    assert_eq!(platform.pulls(), 25);
    let most = platform
        .most_at_once
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=8).contains(&most), "{most} pulls at once");
}
