//! Provider connections over HTTP on both databases: the catalog, `startProviderConnection`
//! (who may use which key, what inputs are), credentials sealed at rest, listing with filters
//! and paging, disconnecting, and foreign ids answering as missing ones.

use crate::support::{Gql, TestApp};
use serde_json::{json, Value};

taxbridge_testkit::per_database!(
    crate::support::TestApp::spawn;
    the_seeds_start_gives_a_pending_connection_that_wants_collect,
    secrets_are_sealed_at_rest_and_never_answered,
    an_unknown_or_case_changed_key_is_bad_user_input_for_every_caller,
    a_partner_may_use_only_its_own_provider_key,
    a_firms_member_may_use_any_catalog_provider,
    inputs_must_be_an_object_of_at_most_16_kib,
    providers_lists_the_catalog_and_partners_by_category,
    connections_are_listed_with_filters_sorting_and_paging,
    foreign_workspaces_and_connections_answer_not_found,
    disconnecting_erases_the_credentials,
    plain_connection_pages_answer_as_resolved_ones,
);

const START: &str = "mutation StartProviderConnection($workspaceId: ID!, $providerKey: String!, $inputs: JSON) { startProviderConnection(workspaceId: $workspaceId, providerKey: $providerKey, inputs: $inputs) { id workspaceId providerKey status action displayName settings statusDetail createdAt provider { key name category } } }";

const SECRET: &str = "firm-specific-api-key-12345";

pub(crate) async fn start(
    app: &TestApp,
    token: &str,
    workspace: &str,
    key: &str,
    inputs: Value,
) -> Gql {
    app.graphql(
        json!({ "query": START, "variables": { "workspaceId": workspace, "providerKey": key, "inputs": inputs } }),
        Some(token),
        Some("my-sample-platform"),
    )
    .await
}

fn seed_inputs() -> Value {
    json!({ "apiKey": SECRET, "securityToken": "firm-security-token-abc", "baseUrl": "https://api.canopy.com" })
}

/// A partner `qount` with a workspace: (token, workspace id).
pub(crate) async fn partner_with_workspace(app: &TestApp, key: &str) -> (String, String) {
    let token = app.partner_token(key).await;
    let created = app.create_workspace(&token, &format!("{key} firm")).await;
    let id = created.assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (token, id)
}

pub(crate) fn started(response: &Gql) -> Value {
    response.assert_ok()["startProviderConnection"].clone()
}

async fn the_seeds_start_gives_a_pending_connection_that_wants_collect(app: TestApp) {
    let (token, workspace) = partner_with_workspace(&app, "qount").await;
    let connection = started(&start(&app, &token, &workspace, "qount", seed_inputs()).await);
    assert!(connection["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("con_")));
    assert_eq!(connection["workspaceId"], workspace.as_str());
    assert_eq!(connection["providerKey"], "qount");
    assert_eq!(connection["status"], "pending");
    assert_eq!(connection["action"], "collect");
    assert_eq!(connection["displayName"], Value::Null);
    assert_eq!(
        connection["settings"],
        json!({ "baseUrl": "https://api.canopy.com" })
    );
    assert_eq!(connection["provider"]["key"], "qount");
    assert_eq!(connection["provider"]["category"], "practice_management");
    // No inputs at all is fine too.
    let bare = started(&start(&app, &token, &workspace, "qount", Value::Null).await);
    assert_eq!(bare["settings"], json!({}));
}

async fn secrets_are_sealed_at_rest_and_never_answered(app: TestApp) {
    let (token, workspace) = partner_with_workspace(&app, "qount").await;
    let response = start(&app, &token, &workspace, "qount", seed_inputs()).await;
    assert!(!response.body.to_string().contains(SECRET));
    let id = started(&response)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let stored = app
        .stored_credentials(&id)
        .await
        .expect("sealed credentials");
    assert!(stored.starts_with("v1."), "{stored}");
    assert!(!stored.contains(SECRET) && !stored.contains("firm-security-token"));
    let listed = app
        .graphql(
            json!({ "query": "{ me { workspaces { connections { id settings statusDetail } } } }" }),
            Some(&token),
            None,
        )
        .await;
    assert!(!listed.body.to_string().contains(SECRET), "{}", listed.body);
}

async fn an_unknown_or_case_changed_key_is_bad_user_input_for_every_caller(app: TestApp) {
    let (partner, workspace) = partner_with_workspace(&app, "qount").await;
    let (_, customer) = app.customer_token("jane@smith-cpa.com").await;
    for (token, key) in [
        (&partner, "Qount"),
        (&partner, "nope"),
        (&customer, "Canopy"),
        (&customer, "nope"),
    ] {
        let response = start(&app, token, &workspace, key, seed_inputs()).await;
        assert_eq!(
            response.code(),
            "BAD_USER_INPUT",
            "{key}: {}",
            response.body
        );
        assert_eq!(
            response.body["errors"][0]["extensions"]["field"],
            "providerKey"
        );
        assert!(
            response.message().contains(&format!("`{key}`")),
            "{}",
            response.message()
        );
    }
}

async fn a_partner_may_use_only_its_own_provider_key(app: TestApp) {
    let (token, workspace) = partner_with_workspace(&app, "qount").await;
    app.partner_token("other").await;
    for key in ["canopy", "other"] {
        let response = start(&app, &token, &workspace, key, seed_inputs()).await;
        assert_eq!(response.code(), "FORBIDDEN", "{key}");
        assert!(
            response.message().contains("`qount`"),
            "{}",
            response.message()
        );
    }
}

async fn a_firms_member_may_use_any_catalog_provider(app: TestApp) {
    let workspaces = taxbridge_domain::workspaces::Workspaces::new(app.store.clone());
    let (workspace, _) = workspaces
        .create_for_customer(
            "Smith CPA",
            Some("jane@smith-cpa.com"),
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("customer workspace");
    let token = app.token_of_existing("jane@smith-cpa.com").await;
    for key in ["canopy", "drake", "google_drive"] {
        let connection = started(
            &start(
                &app,
                &token,
                workspace.id.as_str(),
                key,
                json!({ "apiKey": "k" }),
            )
            .await,
        );
        assert_eq!(connection["providerKey"], key);
    }
}

async fn inputs_must_be_an_object_of_at_most_16_kib(app: TestApp) {
    let (token, workspace) = partner_with_workspace(&app, "qount").await;
    for inputs in [
        json!([1, 2]),
        json!("apiKey"),
        json!({ "apiKey": "x".repeat(17 * 1024) }),
    ] {
        let response = start(&app, &token, &workspace, "qount", inputs).await;
        assert_eq!(response.code(), "BAD_USER_INPUT", "{}", response.body);
        assert_eq!(response.body["errors"][0]["extensions"]["field"], "inputs");
    }
    let listed = app
        .graphql(
            json!({ "query": "{ me { workspaces { connections { id } } } }" }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        listed.assert_ok()["me"]["workspaces"][0]["connections"],
        json!([])
    );
}

async fn providers_lists_the_catalog_and_partners_by_category(app: TestApp) {
    let token = app.partner_token("qount").await;
    let all = app
        .graphql(
            json!({ "query": "{ providers { key name category } }" }),
            Some(&token),
            None,
        )
        .await;
    let keys: Vec<String> = all.assert_ok()["providers"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|p| p["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for key in [
        "canopy",
        "drake",
        "google_drive",
        "karbon",
        "lacerte",
        "qount",
        "sharepoint",
        "taxdome",
        "ultratax",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
    }
    let tax = app
        .graphql(
            json!({ "query": "{ providers(categories: [\"tax_software\"]) { key } }" }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        tax.assert_ok()["providers"],
        json!([{ "key": "drake" }, { "key": "lacerte" }, { "key": "ultratax" }])
    );
    let bad = app
        .graphql(
            json!({ "query": "{ providers(categories: [\"crm\"]) { key } }" }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(bad.code(), "BAD_USER_INPUT");
    let anonymous = app
        .graphql(json!({ "query": "{ providers { key } }" }), None, None)
        .await;
    assert_eq!(anonymous.code(), "UNAUTHENTICATED");
}

async fn connections_are_listed_with_filters_sorting_and_paging(app: TestApp) {
    let workspaces = taxbridge_domain::workspaces::Workspaces::new(app.store.clone());
    let (workspace, _) = workspaces
        .create_for_customer(
            "Smith CPA",
            Some("jane@smith-cpa.com"),
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("workspace");
    let token = app.token_of_existing("jane@smith-cpa.com").await;
    let mut ids = Vec::new();
    for key in ["canopy", "drake", "google_drive", "canopy"] {
        let connection = started(&start(&app, &token, workspace.id.as_str(), key, json!({})).await);
        ids.push(connection["id"].as_str().unwrap_or_default().to_owned());
    }
    let list = |args: &str| {
        let query = format!(
            "{{ me {{ workspaces {{ connections{args} {{ id providerKey status provider {{ name category }} }} }} }} }}"
        );
        let app = &app;
        let token = token.clone();
        async move {
            let response = app
                .graphql(json!({ "query": query }), Some(&token), None)
                .await;
            response.assert_ok()["me"]["workspaces"][0]["connections"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let id_list = |rows: Vec<Value>| -> Vec<String> {
        rows.iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(id_list(list("").await), ids);
    assert_eq!(id_list(list("(limit: 2, offset: 1)").await), ids[1..3]);
    let newest: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(
        id_list(list("(sortBy: {field: \"createdAt\", order: DESC})").await),
        newest
    );
    assert_eq!(
        id_list(list("(filters: {providerKeys: [\"canopy\"]})").await),
        [ids[0].clone(), ids[3].clone()]
    );
    assert_eq!(
        id_list(list("(filters: {categories: [\"tax_software\"]})").await),
        [ids[1].clone()]
    );
    assert_eq!(
        id_list(list(&format!("(filters: {{ids: [\"{}\"]}})", ids[2])).await),
        [ids[2].clone()]
    );
    assert_eq!(list("(filters: {statuses: [\"pending\"]})").await.len(), 4);
    assert!(list("(filters: {statuses: [\"active\"]})").await.is_empty());
    assert!(list("(filters: {providerKeys: []})").await.is_empty());
    let first = &list("").await[0];
    assert_eq!(
        first["provider"],
        json!({ "name": "Canopy", "category": "practice_management" })
    );
    for (args, field) in [
        ("(filters: {statuses: [\"Active\"]})", "filters.statuses"),
        ("(filters: {categories: [\"crm\"]})", "filters.categories"),
        (
            "(sortBy: {field: \"providerKey\", order: ASC})",
            "sortBy.field",
        ),
        ("(limit: 501)", "limit"),
    ] {
        let response = app
            .graphql(
                json!({ "query": format!("{{ me {{ workspaces {{ connections{args} {{ id }} }} }} }}") }),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(response.code(), "BAD_USER_INPUT", "{args}");
        assert_eq!(
            response.body["errors"][0]["extensions"]["field"], field,
            "{args}"
        );
    }
}

/// A page whose selection is all stored fields is built without per-field resolvers; it must
/// answer byte for byte as the resolvers do (here forced by also selecting `provider`).
async fn plain_connection_pages_answer_as_resolved_ones(app: TestApp) {
    let (token, workspace) = partner_with_workspace(&app, "qount").await;
    let inputs = json!({ "apiKey": SECRET, "baseUrl": "https://api.example.com", "firmReferenceId": "F-1", "region": { "eu": [1, 2] } });
    started(&start(&app, &token, &workspace, "qount", inputs).await);
    started(&start(&app, &token, &workspace, "qount", Value::Null).await);
    // Each body is sent twice: as it is (built directly), and asking `provider` too (which
    // only the resolvers answer); the two answers must be the same text but for `provider`.
    let both = |body: &dyn Fn(&str) -> Value, fields: &str| {
        let plain = body(fields);
        let resolved = body(&format!("{fields} provider {{ key }}"));
        let (app, token) = (&app, token.clone());
        async move {
            let text = |body: Value| {
                let request = app.http.post(&app.endpoint).bearer_auth(&token).json(&body);
                async move {
                    let response = request.send().await.expect("send");
                    response.text().await.expect("text")
                }
            };
            let (plain, resolved) = (text(plain).await, text(resolved).await);
            let provider = ",\"provider\":{\"key\":\"qount\"}";
            assert!(resolved.contains(provider), "{resolved}");
            assert_eq!(plain, resolved.replace(provider, ""));
            assert!(!plain.contains("\"errors\""), "{plain}");
            plain
        }
    };
    let page = |selection: &str| json!({ "query": format!("{{ me {{ workspaces {{ connections {{ {selection} }} }} }} }}") });
    let plain = both(
        &page,
        "id workspaceId providerKey status action displayName settings statusDetail \
         lastVerifiedAt createdAt updatedAt __typename again: id",
    )
    .await;
    assert!(
        plain.contains("\"__typename\":\"ProviderConnection\""),
        "{plain}"
    );

    // A mutation's answer, too. (Disconnecting twice changes only `updatedAt`, not selected.)
    let page: Value = serde_json::from_str(&plain).expect("JSON");
    let id = page["data"]["me"]["workspaces"][0]["connections"][0]["id"].clone();
    let disconnect = |selection: &str| {
        json!({
            "query": format!("mutation D($id: ID!) {{ disconnectProviderConnection(connectionId: $id) {{ {selection} }} }}"),
            "variables": { "id": id },
        })
    };
    let plain = both(
        &disconnect,
        "id workspaceId providerKey status action displayName settings statusDetail \
         lastVerifiedAt createdAt __typename again: id ... on ProviderConnection { status }",
    )
    .await;
    assert!(plain.contains("\"status\":\"disconnected\""), "{plain}");
    assert!(plain.contains("\"again\":\"con_"), "{plain}");
}

async fn foreign_workspaces_and_connections_answer_not_found(app: TestApp) {
    let (a, workspace) = partner_with_workspace(&app, "qount").await;
    let id = started(&start(&app, &a, &workspace, "qount", seed_inputs()).await)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let b = app.partner_token("other").await;
    let foreign = start(&app, &b, &workspace, "other", seed_inputs()).await;
    let missing = start(&app, &b, "wsp_missing", "other", seed_inputs()).await;
    assert_eq!(foreign.code(), "NOT_FOUND");
    assert_eq!(foreign.message(), missing.message());
    let disconnect =
        "mutation D($id: ID!) { disconnectProviderConnection(connectionId: $id) { id status } }";
    let foreign = app
        .graphql(
            json!({ "query": disconnect, "variables": { "id": id } }),
            Some(&b),
            None,
        )
        .await;
    let missing = app
        .graphql(
            json!({ "query": disconnect, "variables": { "id": "con_missing" } }),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(foreign.code(), "NOT_FOUND");
    assert_eq!(foreign.message(), missing.message());
    assert!(
        app.stored_credentials(&id).await.is_some(),
        "nothing was erased"
    );
}

async fn disconnecting_erases_the_credentials(app: TestApp) {
    let (token, workspace) = partner_with_workspace(&app, "qount").await;
    let id = started(&start(&app, &token, &workspace, "qount", seed_inputs()).await)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let response = app
        .graphql(
            json!({ "query": "mutation D($id: ID!) { disconnectProviderConnection(connectionId: $id) { id status action settings } }", "variables": { "id": id } }),
            Some(&token),
            None,
        )
        .await;
    let done = response.assert_ok()["disconnectProviderConnection"].clone();
    assert_eq!(done["status"], "disconnected");
    assert_eq!(done["action"], Value::Null);
    assert_eq!(
        done["settings"],
        json!({ "baseUrl": "https://api.canopy.com" })
    );
    assert_eq!(app.stored_credentials(&id).await, None);
}

/// An independent fake platform (not the reference partner): partner protocol v1's verify,
/// with a misbehaviour per path prefix, recording what it was sent.
mod fake {
    use axum::{
        extract::{Path, State},
        http::{HeaderMap, StatusCode},
        response::{IntoResponse, Response},
        routing::get,
        Router,
    };
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    };

    pub const GOOD_KEY: &str = "good-platform-key-0001";
    pub const GOOD_TOKEN: &str = "good-security-token";

    #[derive(Default)]
    pub struct Platform {
        pub seen: Mutex<Vec<HeaderMap>>,
        in_flight: AtomicUsize,
        pub most_at_once: AtomicUsize,
        port: AtomicUsize,
    }

    async fn verify(
        State(platform): State<Arc<Platform>>,
        Path(mode): Path<String>,
        headers: HeaderMap,
    ) -> Response {
        let now = platform.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        platform.most_at_once.fetch_max(now, Ordering::SeqCst);
        platform
            .seen
            .lock()
            .map(|mut s| s.push(headers.clone()))
            .ok();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let port = platform.port.load(Ordering::SeqCst);
        let answer = match mode.as_str() {
            "ok" => {
                let key = headers.get("authorization").and_then(|v| v.to_str().ok());
                let token = headers
                    .get("x-security-token")
                    .and_then(|v| v.to_str().ok());
                if key != Some(&format!("Bearer {GOOD_KEY}")) {
                    StatusCode::UNAUTHORIZED.into_response()
                } else if token != Some(GOOD_TOKEN) {
                    StatusCode::FORBIDDEN.into_response()
                } else {
                    axum::Json(
                        serde_json::json!({ "firmId": "f-1", "firmName": "Smith CPA (platform)" }),
                    )
                    .into_response()
                }
            }
            "error500" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            "hang" => {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                StatusCode::OK.into_response()
            }
            "huge" => "x".repeat(100 * 1024).into_response(),
            "notjson" => "hello".into_response(),
            "redirect" => (
                StatusCode::FOUND,
                [("location", format!("http://127.0.0.2:{port}/ok/v1/verify"))],
            )
                .into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        };
        platform.in_flight.fetch_sub(1, Ordering::SeqCst);
        answer
    }

    /// Starts the platform on 127.0.0.1 and 127.0.0.2 (same port); returns it and the port.
    pub async fn start() -> (Arc<Platform>, u16) {
        let platform = Arc::new(Platform::default());
        let first = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = first.local_addr().expect("addr").port();
        platform.port.store(usize::from(port), Ordering::SeqCst);
        let second = tokio::net::TcpListener::bind(("127.0.0.2", port))
            .await
            .ok();
        let router = Router::new()
            .route("/{mode}/v1/verify", get(verify))
            .with_state(platform.clone());
        let serving = router.clone();
        tokio::spawn(async move { axum::serve(first, serving).await });
        if let Some(second) = second {
            tokio::spawn(async move { axum::serve(second, router).await });
        }
        (platform, port)
    }
}

const COLLECT: &str = "mutation CollectProviderConnection($connectionId: ID!, $inputs: JSON) { collectProviderConnection(connectionId: $connectionId, inputs: $inputs) { id status action displayName settings statusDetail lastVerifiedAt } }";

pub(crate) async fn collect(app: &TestApp, token: &str, id: &str, inputs: Value) -> Gql {
    app.graphql(
        json!({ "query": COLLECT, "variables": { "connectionId": id, "inputs": inputs } }),
        Some(token),
        None,
    )
    .await
}

/// A new partner's connection with good credentials to the fake platform's `ok` mode:
/// (partner token, connection id).
async fn good_connection(app: &TestApp, port: u16) -> (String, String) {
    let partner = partner_with_workspace(app, "qount").await;
    let base = format!("http://127.0.0.1:{port}/ok");
    let id = connection_to(app, &partner, &base, fake::GOOD_KEY).await;
    (partner.0, id)
}

/// A qount connection to the fake platform at `base` on the partner's workspace.
async fn connection_to(app: &TestApp, partner: &(String, String), base: &str, key: &str) -> String {
    let (token, workspace) = partner;
    let inputs = json!({ "apiKey": key, "securityToken": fake::GOOD_TOKEN, "baseUrl": base });
    started(&start(app, token, workspace, "qount", inputs).await)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

mod collect {
    taxbridge_testkit::per_database!(
        crate::support::TestApp::spawn;
        collect_with_good_credentials_makes_the_connection_active,
    a_failed_collect_says_why_and_a_new_one_with_fixed_inputs_succeeds,
    collects_of_one_connection_never_interleave,
        a_disconnected_connection_cannot_be_collected,
    );
    use super::*;
}

async fn collect_with_good_credentials_makes_the_connection_active(app: TestApp) {
    let (platform, port) = fake::start().await;
    let base = format!("http://127.0.0.1:{port}/ok");
    let partner = partner_with_workspace(&app, "qount").await;
    let id = connection_to(&app, &partner, &base, fake::GOOD_KEY).await;
    let (token, workspace) = partner;
    let response = collect(&app, &token, &id, json!({ "firmReferenceId": "F-77" })).await;
    let done = response.assert_ok()["collectProviderConnection"].clone();
    assert_eq!(done["status"], "active", "{done}");
    assert_eq!(done["action"], Value::Null);
    assert_eq!(done["statusDetail"], Value::Null);
    assert_eq!(done["displayName"], "Smith CPA (platform)");
    assert!(done["lastVerifiedAt"].is_string());
    assert_eq!(
        done["settings"],
        json!({ "baseUrl": base, "firmReferenceId": "F-77" })
    );
    let seen = platform.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let sent = seen.last().expect("one call");
    let header = |name: &str| sent.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(
        header("authorization"),
        format!("Bearer {}", fake::GOOD_KEY)
    );
    assert_eq!(header("x-security-token"), fake::GOOD_TOKEN);
    assert_eq!(header("x-taxbridge-workspace"), workspace);
    assert_eq!(header("x-taxbridge-firm-reference"), "F-77");
}

async fn a_failed_collect_says_why_and_a_new_one_with_fixed_inputs_succeeds(app: TestApp) {
    let (_platform, port) = fake::start().await;
    let cases = [
        (
            format!("http://127.0.0.1:{port}/ok"),
            "wrong-key",
            "rejected the credentials (HTTP 401)",
        ),
        (
            format!("http://127.0.0.1:{port}/error500"),
            fake::GOOD_KEY,
            "HTTP 500",
        ),
        (
            format!("http://127.0.0.1:{port}/hang"),
            fake::GOOD_KEY,
            "did not answer",
        ),
        (
            format!("http://127.0.0.1:{port}/huge"),
            fake::GOOD_KEY,
            "larger than",
        ),
        (
            format!("http://127.0.0.1:{port}/notjson"),
            fake::GOOD_KEY,
            "not JSON",
        ),
        (
            format!("http://127.0.0.1:{port}/redirect"),
            fake::GOOD_KEY,
            "loopback",
        ),
        (
            format!("http://127.0.0.2:{port}/ok"),
            fake::GOOD_KEY,
            "loopback",
        ),
        (
            "file:///etc/passwd".to_owned(),
            fake::GOOD_KEY,
            "http and https",
        ),
    ];
    let partner = partner_with_workspace(&app, "qount").await;
    let token = partner.0.clone();
    for (base, key, says) in cases {
        let id = connection_to(&app, &partner, &base, key).await;
        let response = collect(&app, &token, &id, Value::Null).await;
        let done = response.assert_ok()["collectProviderConnection"].clone();
        assert_eq!(done["status"], "failed", "{base}: {done}");
        assert_eq!(done["action"], "reconnect");
        let detail = done["statusDetail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{base}: {detail}");
        assert!(!response.body.to_string().contains(key) || key == fake::GOOD_KEY);
        assert!(!response.body.to_string().contains(fake::GOOD_TOKEN));
    }
    // A wrong security token is rejected too; collecting again with the right one succeeds.
    let id = connection_to(
        &app,
        &partner,
        &format!("http://127.0.0.1:{port}/ok"),
        fake::GOOD_KEY,
    )
    .await;
    let wrong = collect(&app, &token, &id, json!({ "securityToken": "nope" })).await;
    assert_eq!(
        wrong.assert_ok()["collectProviderConnection"]["status"],
        "failed"
    );
    let fixed = collect(
        &app,
        &token,
        &id,
        json!({ "securityToken": fake::GOOD_TOKEN }),
    )
    .await;
    assert_eq!(
        fixed.assert_ok()["collectProviderConnection"]["status"],
        "active"
    );
}

async fn collects_of_one_connection_never_interleave(app: TestApp) {
    let (platform, port) = fake::start().await;
    let (token, id) = good_connection(&app, port).await;
    let app = std::sync::Arc::new(app);
    let mut calls = Vec::new();
    for _ in 0..5 {
        let (app, token, id) = (app.clone(), token.clone(), id.clone());
        calls.push(tokio::spawn(async move {
            collect(&app, &token, &id, Value::Null).await
        }));
    }
    for call in calls {
        let response = call.await.expect("task");
        assert_eq!(
            response.assert_ok()["collectProviderConnection"]["status"],
            "active"
        );
    }
    assert_eq!(
        platform
            .most_at_once
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "two verifications of one connection overlapped"
    );
    assert_eq!(platform.seen.lock().map(|s| s.len()).unwrap_or(0), 5);
}

async fn a_disconnected_connection_cannot_be_collected(app: TestApp) {
    let (_platform, port) = fake::start().await;
    let (token, id) = good_connection(&app, port).await;
    app.graphql(
        json!({ "query": "mutation D($id: ID!) { disconnectProviderConnection(connectionId: $id) { id } }", "variables": { "id": id } }),
        Some(&token),
        None,
    )
    .await
    .assert_ok();
    let response = collect(&app, &token, &id, Value::Null).await;
    assert_eq!(response.code(), "CONFLICT", "{}", response.body);
    assert!(response.message().contains("disconnected"));
}
