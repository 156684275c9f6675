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
);

const START: &str = "mutation StartProviderConnection($workspaceId: ID!, $providerKey: String!, $inputs: JSON) { startProviderConnection(workspaceId: $workspaceId, providerKey: $providerKey, inputs: $inputs) { id workspaceId providerKey status action displayName settings statusDetail createdAt provider { key name category } } }";

const SECRET: &str = "firm-specific-api-key-12345";

async fn start(app: &TestApp, token: &str, workspace: &str, key: &str, inputs: Value) -> Gql {
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
async fn partner_with_workspace(app: &TestApp, key: &str) -> (String, String) {
    let token = app.partner_token(key).await;
    let created = app.create_workspace(&token, &format!("{key} firm")).await;
    let id = created.assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (token, id)
}

fn started(response: &Gql) -> Value {
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
        .create_for_customer("Smith CPA", Some("jane@smith-cpa.com"))
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
        .create_for_customer("Smith CPA", Some("jane@smith-cpa.com"))
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
