//! Workspaces, members and who reaches what (spec §3, §4, §7, §8), on both databases.

use crate::support::TestApp;
use serde_json::{json, Value};
use std::collections::HashSet;
use taxbridge_domain::{accounts::AccountStore, workspaces::WorkspaceStore};

taxbridge_testkit::per_database!(
    crate::support::TestApp::spawn;
    the_partner_guide_flow_works_end_to_end,
    customers_cannot_create_workspaces,
    bad_workspace_input_names_the_field,
    adding_users_is_idempotent_ordered_and_all_or_nothing,
    a_removed_member_loses_the_workspace_at_once,
    a_member_removed_on_another_node_loses_the_workspace_within_the_promise,
    only_admins_and_the_owning_partner_manage_members,
    lists_page_sort_and_refuse_unknown_sort_fields,
    plain_list_selections_answer_as_resolved_ones,
    deep_links_refuse_paths_outside_the_workspace,
    foreign_ids_answer_not_found_and_change_nothing,
    fifty_parallel_creates_with_one_name_get_fifty_slugs,
    parallel_adds_with_overlapping_emails_create_nothing_twice,
);

async fn the_partner_guide_flow_works_end_to_end(app: TestApp) {
    let token = app.partner_token("qount").await;
    let first = app
        .create_workspace(&token, "Smith & Associates Tax Firm")
        .await;
    let first = first.assert_ok()["createWorkspace"].clone();
    assert_eq!(first["slug"], "smith-associates-tax-firm");
    assert_eq!(first["status"], "active");
    assert_eq!(first["workspaceType"], "partner");
    let second = app
        .create_workspace(&token, "Smith & Associates Tax Firm")
        .await
        .assert_ok()["createWorkspace"]
        .clone();
    // A taken slug gets a random suffix, never a counter that tells how many others exist.
    let second_slug = second["slug"].as_str().unwrap_or_default().to_owned();
    let suffix = second_slug
        .strip_prefix("smith-associates-tax-firm-")
        .unwrap_or_default();
    assert_eq!(suffix.len(), 6, "{second_slug}");
    assert!(suffix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));

    let members = app
        .add_users(
            &token,
            first["id"].as_str().unwrap_or_default(),
            &["Jane@Smith.com", "john@smith.com"],
        )
        .await;
    let members = members.assert_ok()["addUsersToTheWorkspace"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let emails: Vec<&str> = members.iter().filter_map(|m| m["email"].as_str()).collect();
    assert_eq!(emails, ["jane@smith.com", "john@smith.com"]);
    assert!(members.iter().all(|m| m["role"] == "user"));

    let listed = app
        .graphql(json!({ "query": "{ me { workspaces { id slug deepLink(path: \"/connect/tax-software\") members { email } } } }" }), Some(&token), None)
        .await;
    let listed = listed.assert_ok()["me"]["workspaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], first["id"]);
    assert_eq!(
        listed[0]["deepLink"],
        "https://taxbridge.test/sign-in?deep_link=%2Fw%2Fsmith-associates-tax-firm%2Fconnect%2Ftax-software"
    );
    assert_eq!(listed[0]["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(listed[1]["slug"], second_slug.as_str());

    // The added users reach the workspace with their own keys.
    let jane_token = app.token_of_existing("jane@smith.com").await;
    let hers = app.my_workspaces(&jane_token).await;
    assert_eq!(hers.len(), 1);
    assert_eq!(hers[0]["slug"], "smith-associates-tax-firm");
}

async fn customers_cannot_create_workspaces(app: TestApp) {
    let (_, token) = app.customer_token("jane@smith.com").await;
    let response = app.create_workspace(&token, "Jane's Firm").await;
    assert_eq!(response.code(), "FORBIDDEN", "{}", response.body);
    assert!(app.my_workspaces(&token).await.is_empty());
}

async fn bad_workspace_input_names_the_field(app: TestApp) {
    let token = app.partner_token("qount").await;
    let cases = [
        (json!({ "displayName": "   " }), "input.displayName"),
        (
            json!({ "displayName": "x".repeat(201) }),
            "input.displayName",
        ),
        (
            json!({ "displayName": "Firm", "metadata": [1, 2] }),
            "input.metadata",
        ),
        (
            json!({ "displayName": "Firm", "metadata": { "blob": "x".repeat(17 * 1024) } }),
            "input.metadata",
        ),
        (
            json!({ "displayName": "Firm", "firmSize": "xxl" }),
            "input.firmSize",
        ),
    ];
    for (input, field) in cases {
        let response = app
            .graphql(
                json!({ "query": "mutation C($input: CreateWorkspaceInput!) { createWorkspace(input: $input) { id } }", "variables": { "input": input } }),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(response.code(), "BAD_USER_INPUT", "{}", response.body);
        assert_eq!(response.body["errors"][0]["extensions"]["field"], field);
    }
    assert!(
        app.my_workspaces(&token).await.is_empty(),
        "nothing was created"
    );
    let ok = app
        .graphql(
            json!({ "query": "mutation { createWorkspace(input: {displayName: \"Firm\", firmSize: \"md\", metadata: {crmId: \"A-17\"}}) { firmSize metadata } }" }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        ok.assert_ok()["createWorkspace"],
        json!({ "firmSize": "md", "metadata": { "crmId": "A-17" } })
    );
}

async fn adding_users_is_idempotent_ordered_and_all_or_nothing(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ws = app.create_workspace(&token, "Firm").await.assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (existing_id, _) = app.customer_token("john@smith.com").await;

    let bad = app
        .add_users(&token, &ws, &["ok@smith.com", "not-an-email"])
        .await;
    assert_eq!(bad.code(), "BAD_USER_INPUT", "{}", bad.body);
    assert_eq!(
        bad.body["errors"][0]["extensions"]["field"],
        "userEmails[1]"
    );
    assert!(bad.message().contains("not-an-email"));
    assert!(
        app.identity.account_by_email("ok@smith.com").await.is_err(),
        "nobody was added"
    );

    let first = app
        .add_users(
            &token,
            &ws,
            &["zed@smith.com", "JOHN@smith.com ", "amy@smith.com"],
        )
        .await;
    let again = app
        .add_users(
            &token,
            &ws,
            &["zed@smith.com", "JOHN@smith.com ", "amy@smith.com"],
        )
        .await;
    assert_eq!(
        first.assert_ok(),
        again.assert_ok(),
        "adding twice is the same answer"
    );
    let members = first.assert_ok()["addUsersToTheWorkspace"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let emails: Vec<&str> = members.iter().filter_map(|m| m["email"].as_str()).collect();
    assert_eq!(emails, ["zed@smith.com", "john@smith.com", "amy@smith.com"]);
    assert_eq!(
        members[1]["id"], existing_id,
        "the existing account is reused"
    );

    let listed = app
        .graphql(json!({ "query": "query($ids: [ID!]) { me { workspaces(filters: {ids: $ids}) { members { email } } } }", "variables": { "ids": [ws] } }), Some(&token), None)
        .await;
    assert_eq!(
        listed.assert_ok()["me"]["workspaces"][0]["members"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

async fn a_removed_member_loses_the_workspace_at_once(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ws = app.create_workspace(&token, "Firm").await.assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (jane_id, jane) = app.customer_token("jane@smith.com").await;
    app.add_users(&token, &ws, &["jane@smith.com"])
        .await
        .assert_ok();
    assert_eq!(app.my_workspaces(&jane).await.len(), 1);
    // She reaches it (as a user, who may not add members), so this node holds her reach.
    assert_eq!(
        app.add_users(&jane, &ws, &["x@smith.com"]).await.code(),
        "FORBIDDEN"
    );

    let removed = app
        .graphql(
            json!({ "query": "mutation R($w: ID!, $u: ID!) { removeUserFromTheWorkspace(workspaceId: $w, userId: $u) }", "variables": { "w": ws, "u": jane_id } }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(removed.assert_ok()["removeUserFromTheWorkspace"], true);
    assert!(
        app.my_workspaces(&jane).await.is_empty(),
        "her token lost the workspace at once"
    );
    assert_eq!(
        app.add_users(&jane, &ws, &["x@smith.com"]).await.code(),
        "NOT_FOUND"
    );
}

/// Two nodes over one database: a member removed on one loses the workspace there at once,
/// and on the other within the promise it was given (`auth.revocation_check_seconds`).
async fn a_member_removed_on_another_node_loses_the_workspace_within_the_promise(app: TestApp) {
    use taxbridge_domain::workspaces::{WorkspaceError, Workspaces};
    let promise = std::time::Duration::from_millis(600);
    let here = Workspaces::trusting_reach_for(app.store.clone(), promise);
    let there = Workspaces::trusting_reach_for(app.store.clone(), promise);
    let (ws, _) = here
        .create_for_customer(
            "Two Node Firm",
            Some("boss@twonode.com"),
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("workspace");
    let boss = app
        .identity
        .account_by_email("boss@twonode.com")
        .await
        .expect("boss");
    let boss_access = here.reach_as(&boss, ws.id.as_str()).await.expect("boss");
    here.add_users(
        &boss_access,
        &["amy@twonode.com".to_owned()],
        &taxbridge_domain::audit::Who::operator(),
    )
    .await
    .expect("add");
    let amy = app
        .identity
        .account_by_email("amy@twonode.com")
        .await
        .expect("amy");
    for node in [&here, &there] {
        node.reach_as(&amy, ws.id.as_str())
            .await
            .expect("amy reaches it");
    }

    let removed_at = std::time::Instant::now();
    assert!(here
        .remove_user(
            &boss_access,
            amy.id.as_str(),
            &taxbridge_domain::audit::Who::operator()
        )
        .await
        .expect("remove"));
    assert!(
        matches!(
            here.reach_as(&amy, ws.id.as_str()).await,
            Err(WorkspaceError::NotFound)
        ),
        "the node that removed her drops her reach at once"
    );
    loop {
        match there.reach_as(&amy, ws.id.as_str()).await {
            Err(WorkspaceError::NotFound) => break,
            Ok(_) => assert!(
                removed_at.elapsed() < promise,
                "the other node still let her in {:?} after the removal",
                removed_at.elapsed()
            ),
            Err(other) => panic!("unexpected {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The boss, never removed, still reaches it on both.
    for node in [&here, &there] {
        node.reach_as(&boss, ws.id.as_str())
            .await
            .expect("boss still");
    }
}

async fn only_admins_and_the_owning_partner_manage_members(app: TestApp) {
    let workspaces = taxbridge_domain::workspaces::Workspaces::new(app.store.clone());
    let (ws, _) = workspaces
        .create_for_customer(
            "Direct Firm",
            Some("boss@firm.com"),
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("workspace");
    let boss_token = app.token_of_existing("boss@firm.com").await;
    let added = app
        .add_users(&boss_token, ws.id.as_str(), &["staff@firm.com"])
        .await;
    assert_eq!(
        added.assert_ok()["addUsersToTheWorkspace"][0]["role"],
        "user"
    );

    let staff_token = app.token_of_existing("staff@firm.com").await;
    assert_eq!(
        app.my_workspaces(&staff_token).await.len(),
        1,
        "a user reads the workspace"
    );
    let refused = app
        .add_users(&staff_token, ws.id.as_str(), &["friend@firm.com"])
        .await;
    assert_eq!(refused.code(), "FORBIDDEN", "{}", refused.body);
    // A partner that did not create it does not even see it.
    let partner = app.partner_token("qount").await;
    assert_eq!(
        app.add_users(&partner, ws.id.as_str(), &["x@firm.com"])
            .await
            .code(),
        "NOT_FOUND"
    );
}

async fn lists_page_sort_and_refuse_unknown_sort_fields(app: TestApp) {
    let token = app.partner_token("qount").await;
    for name in ["Charlie", "Alpha", "Bravo"] {
        app.create_workspace(&token, name).await.assert_ok();
    }
    let names = |response: &crate::support::Gql| -> Vec<String> {
        response.assert_ok()["me"]["workspaces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|w| w["displayName"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let q = |args: &str| json!({ "query": format!("{{ me {{ workspaces({args}) {{ displayName }} }} }}") });
    assert_eq!(
        names(&app.graphql(q("limit: 2"), Some(&token), None).await),
        ["Charlie", "Alpha"]
    );
    assert_eq!(
        names(
            &app.graphql(q("limit: 2, offset: 2"), Some(&token), None)
                .await
        ),
        ["Bravo"]
    );
    assert_eq!(
        names(
            &app.graphql(
                q("sortBy: {field: \"displayName\", order: ASC}"),
                Some(&token),
                None
            )
            .await
        ),
        ["Alpha", "Bravo", "Charlie"]
    );
    assert_eq!(
        names(
            &app.graphql(
                q("sortBy: {field: \"createdAt\", order: DESC}"),
                Some(&token),
                None
            )
            .await
        ),
        ["Bravo", "Alpha", "Charlie"]
    );
    assert_eq!(
        names(
            &app.graphql(q("filters: {slugs: [\"alpha\"]}"), Some(&token), None)
                .await
        ),
        ["Alpha"]
    );

    let bad = app
        .graphql(
            q("sortBy: {field: \"slug\", order: ASC}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(bad.code(), "BAD_USER_INPUT");
    assert_eq!(bad.body["errors"][0]["extensions"]["field"], "sortBy.field");
    assert!(
        bad.message().contains("createdAt, updatedAt, displayName"),
        "{}",
        bad.message()
    );
    let bad = app.graphql(q("limit: 501"), Some(&token), None).await;
    assert_eq!(bad.body["errors"][0]["extensions"]["field"], "limit");
}

/// `me.workspaces` builds objects directly when every selected field is a stored value, and
/// runs the field resolvers otherwise (`deepLink` here). Both must answer byte for byte alike:
/// same values, same key order, aliases, fragments, `__typename`, repeated keys.
async fn plain_list_selections_answer_as_resolved_ones(app: TestApp) {
    let token = app.partner_token("qount").await;
    app.graphql(
        json!({ "query": "mutation { createWorkspace(input: {displayName: \"Smith CPA\", firmSize: \"md\", metadata: {crmId: \"A-17\", tags: [\"vip\", 2]}}) { id } }" }),
        Some(&token),
        None,
    )
    .await
    .assert_ok();
    app.create_workspace(&token, "Jones Tax").await.assert_ok();
    // Whole workspaces built directly, then keys only (read as ids and slugs), each against
    // the same selection plus `deepLink`, which only the field resolvers answer.
    let whole = "__typename id slug displayName status workspaceType firmSize metadata \
                 createdAt updatedAt renamed: slug slug ...Extra ... on Workspace { status } \
                 ... { kind: workspaceType }";
    let keys = "id ...Extra __typename renamed: slug ... on Workspace { slug }";
    let raw = |selection: &'static str, extra: &'static str| {
        let body = json!({
            "query": format!("query Q($n: Int) {{ me {{ workspaces(limit: $n) {{ {selection}{extra} }} }} }} \
                              fragment Extra on Workspace {{ id again: id }}"),
            "variables": { "n": 10 },
        });
        let request = app.http.post(&app.endpoint).bearer_auth(&token).json(&body);
        async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 200);
            response.text().await.expect("a body")
        }
    };
    let mut answers = Vec::new();
    for selection in [whole, keys] {
        let plain = raw(selection, "").await;
        let resolved = raw(selection, " deepLink").await;
        assert!(resolved.contains("\"deepLink\":\"https://"), "{resolved}");
        let without_links = resolved
            .split(",\"deepLink\":\"")
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    &part[part.find('"').map_or(0, |end| end + 1)..]
                }
            })
            .collect::<String>();
        assert_eq!(plain, without_links);
        answers.push(plain);
    }
    let keys_only: Value = serde_json::from_str(&answers[1]).expect("JSON");
    assert_eq!(
        keys_only["data"]["me"]["workspaces"][1],
        json!({ "id": keys_only["data"]["me"]["workspaces"][1]["id"], "again": keys_only["data"]["me"]["workspaces"][1]["id"], "__typename": "Workspace", "renamed": "jones-tax", "slug": "jones-tax" })
    );
    let plain = &answers[0];
    let parsed: Value = serde_json::from_str(plain).expect("JSON");
    let first = &parsed["data"]["me"]["workspaces"][0];
    assert_eq!(first["__typename"], "Workspace");
    assert_eq!(first["renamed"], "smith-cpa");
    assert_eq!(first["again"], first["id"]);
    assert_eq!(first["kind"], "partner");
    assert_eq!(
        first["metadata"],
        json!({ "crmId": "A-17", "tags": ["vip", 2] })
    );
    assert_eq!(
        parsed["data"]["me"]["workspaces"].as_array().map(Vec::len),
        Some(2)
    );
}

async fn deep_links_refuse_paths_outside_the_workspace(app: TestApp) {
    let token = app.partner_token("qount").await;
    app.create_workspace(&token, "Firm").await.assert_ok();
    for path in [
        "connect",
        "//evil.example/x",
        "/../settings",
        "https://evil.example",
    ] {
        let response = app
            .graphql(json!({ "query": "query($p: String) { me { workspaces { deepLink(path: $p) } } }", "variables": { "p": path } }), Some(&token), None)
            .await;
        assert_eq!(
            response.code(),
            "BAD_USER_INPUT",
            "{path}: {}",
            response.body
        );
        assert_eq!(response.body["errors"][0]["extensions"]["field"], "path");
    }
    let plain = app
        .graphql(
            json!({ "query": "{ me { workspaces { deepLink } } }" }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        plain.assert_ok()["me"]["workspaces"][0]["deepLink"],
        "https://taxbridge.test/sign-in?deep_link=%2Fw%2Ffirm"
    );
}

/// Every operation that takes a workspace id, with the variables to send. The matrix below
/// runs each against each kind of outsider; a new operation with an `ID!` argument that is not
/// registered here fails `every_id_taking_operation_is_in_the_isolation_registry`.
pub(crate) struct Ids<'a> {
    pub workspace: &'a str,
    pub member: &'a str,
    pub connection: &'a str,
    pub job: &'a str,
    pub job_work: &'a str,
}

const MISSING: Ids<'static> = Ids {
    workspace: "wsp_does_not_exist",
    member: "acc_does_not_exist",
    connection: "con_does_not_exist",
    job: "job_does_not_exist",
    job_work: "jwk_does_not_exist",
};

pub(crate) fn id_operations(ids: &Ids<'_>) -> Vec<(&'static str, Value)> {
    let (workspace_id, member_id, connection_id) = (ids.workspace, ids.member, ids.connection);
    vec![
        (
            "createConnectionJob",
            json!({ "query": "mutation($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"stolen\") { id } }", "variables": { "c": connection_id } }),
        ),
        (
            "createJobWorks",
            json!({ "query": "mutation($j: ID!) { createJobWorks(connectionJobId: $j, inputs: [{name: \"x\", externalId: \"intruder\"}]) { id } }", "variables": { "j": ids.job } }),
        ),
        (
            "createJobWorkArtifacts",
            json!({ "query": "mutation($w: ID!) { createJobWorkArtifacts(jobWorkId: $w, inputs: [{name: \"x\", type: \"w2\", externalId: \"intruder\"}]) { id } }", "variables": { "w": ids.job_work } }),
        ),
        (
            "triggerConnectionJob",
            json!({ "query": "mutation($j: ID!) { triggerConnectionJob(connectionJobId: $j) { id } }", "variables": { "j": ids.job } }),
        ),
        (
            "cancelConnectionJob",
            json!({ "query": "mutation($j: ID!) { cancelConnectionJob(connectionJobId: $j) { id } }", "variables": { "j": ids.job } }),
        ),
        (
            "startProviderConnection",
            json!({ "query": "mutation($w: ID!) { startProviderConnection(workspaceId: $w, providerKey: \"canopy\", inputs: {apiKey: \"x\"}) { id } }", "variables": { "w": workspace_id } }),
        ),
        (
            "collectProviderConnection",
            json!({ "query": "mutation($c: ID!) { collectProviderConnection(connectionId: $c, inputs: {apiKey: \"stolen\"}) { id } }", "variables": { "c": connection_id } }),
        ),
        (
            "uploadConnectionFile",
            json!({ "query": "mutation($c: ID!) { uploadConnectionFile(connectionId: $c, clientKey: \"x\", file: {fileName: \"x.pdf\", tusdEndpoint: \"https://tus.example/files/\", contentBase64: \"eA==\"}) { success } }", "variables": { "c": connection_id } }),
        ),
        (
            "disconnectProviderConnection",
            json!({ "query": "mutation($c: ID!) { disconnectProviderConnection(connectionId: $c) { id } }", "variables": { "c": connection_id } }),
        ),
        (
            "addUsersToTheWorkspace",
            json!({ "query": "mutation($w: ID!) { addUsersToTheWorkspace(workspaceId: $w, userEmails: [\"intruder@evil.com\"]) { id } }", "variables": { "w": workspace_id } }),
        ),
        (
            "removeUserFromTheWorkspace",
            json!({ "query": "mutation($w: ID!, $u: ID!) { removeUserFromTheWorkspace(workspaceId: $w, userId: $u) }", "variables": { "w": workspace_id, "u": member_id } }),
        ),
    ]
}

#[test]
fn every_id_taking_operation_is_in_the_isolation_registry() {
    let sdl = taxbridge_api::sdl();
    let mutation = sdl
        .split("type Mutation {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .unwrap_or_default();
    let registered: HashSet<&str> = id_operations(&MISSING)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for line in mutation
        .lines()
        .map(str::trim)
        .filter(|l| l.contains(": ID!"))
    {
        let name = line.split('(').next().unwrap_or_default();
        assert!(
            registered.contains(name),
            "`{name}` takes an ID but is not in the isolation registry"
        );
    }
}

async fn foreign_ids_answer_not_found_and_change_nothing(app: TestApp) {
    let owner = app.partner_token("qount").await;
    let ws = app
        .create_workspace(&owner, "Target Firm")
        .await
        .assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (member_id, _) = app.customer_token("member@target.com").await;
    app.add_users(&owner, &ws, &["member@target.com", "gone@target.com"])
        .await
        .assert_ok();
    let (gone_id, gone) = app.customer_token("gone2@target.com").await;
    app.add_users(&owner, &ws, &["gone2@target.com"])
        .await
        .assert_ok();
    app.graphql(
        json!({ "query": "mutation($w: ID!, $u: ID!) { removeUserFromTheWorkspace(workspaceId: $w, userId: $u) }", "variables": { "w": ws, "u": gone_id } }),
        Some(&owner),
        None,
    )
    .await
    .assert_ok();

    let other_partner = app.partner_token("other").await;
    let other_firm_partner = app.partner_token("third").await;
    let other_ws = app
        .create_workspace(&other_firm_partner, "Other Firm")
        .await
        .assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, other_customer) = app.customer_token("staff@other.com").await;
    app.add_users(&other_firm_partner, &other_ws, &["staff@other.com"])
        .await
        .assert_ok();

    let connection = app.active_connection_in(&owner, &ws).await;
    let job = app
        .graphql(
            json!({ "query": "mutation($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"2024\") { id } }", "variables": { "c": connection } }),
            Some(&owner),
            None,
        )
        .await
        .assert_ok()["createConnectionJob"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let job_work = app
        .graphql(
            json!({ "query": "mutation($j: ID!) { createJobWorks(connectionJobId: $j, inputs: [{name: \"Jo\", externalId: \"c-1\"}]) { id } }", "variables": { "j": job } }),
            Some(&owner),
            None,
        )
        .await
        .assert_ok()["createJobWorks"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ids = Ids {
        workspace: &ws,
        member: &member_id,
        connection: &connection,
        job: &job,
        job_work: &job_work,
    };
    let members_before = member_count(&app, &ws).await;
    let outsiders = [
        ("another partner", &other_partner),
        ("a customer of another firm", &other_customer),
        ("a removed member", &gone),
    ];
    for (who, token) in outsiders {
        for (operation, request) in id_operations(&ids) {
            let response = app.graphql(request, Some(token), None).await;
            assert_eq!(
                response.code(),
                "NOT_FOUND",
                "{operation} by {who}: {}",
                response.body
            );
            let missing = app
                .graphql(
                    id_operations(&Ids {
                        member: &member_id,
                        ..MISSING
                    })
                    .into_iter()
                    .find(|(o, _)| *o == operation)
                    .map(|(_, r)| r)
                    .unwrap_or_default(),
                    Some(token),
                    None,
                )
                .await;
            assert_eq!(
                response.body["errors"][0]["message"], missing.body["errors"][0]["message"],
                "{operation}: a foreign id and a missing one read the same"
            );
        }
        let filtered = app
            .graphql(json!({ "query": "query($ids: [ID!]) { me { workspaces(filters: {ids: $ids}) { id } } }", "variables": { "ids": [ws] } }), Some(token), None)
            .await;
        assert_eq!(
            filtered.assert_ok()["me"]["workspaces"],
            json!([]),
            "{who} filtered by a foreign id sees nothing"
        );
    }
    let members_after = member_count(&app, &ws).await;
    assert_eq!(members_before, members_after, "nothing changed");
    let job_state = app
        .graphql(
            json!({ "query": "query($w: [ID!]) { me { workspaces(filters: {ids: $w}) { connections { connectionJobs { status progress { works artifacts } } } } } }", "variables": { "w": [ws] } }),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(
        job_state.assert_ok()["me"]["workspaces"][0]["connections"][0]["connectionJobs"],
        json!([{ "status": "pending", "progress": { "works": 1, "artifacts": 0 } }]),
        "the job was not triggered, cancelled or added to"
    );
    assert!(
        app.stored_credentials(&connection).await.is_some(),
        "the connection was not disconnected"
    );
    assert!(
        app.identity
            .account_by_email("intruder@evil.com")
            .await
            .is_err(),
        "no account was created"
    );
}

async fn member_count(app: &TestApp, workspace: &str) -> usize {
    let page = taxbridge_domain::lists::Page::parse(Some(500), None, None, "name").expect("page");
    let id = taxbridge_domain::ids::WorkspaceId::from_string(workspace);
    app.store
        .members_of(&id, page)
        .await
        .expect("members")
        .len()
}

async fn fifty_parallel_creates_with_one_name_get_fifty_slugs(app: TestApp) {
    let token = app.partner_token("qount").await;
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            app.create_workspace(&token, "Busy Firm").await
        }));
    }
    let mut slugs = HashSet::new();
    for task in tasks {
        let response = task.await.expect("task");
        slugs.insert(
            response.assert_ok()["createWorkspace"]["slug"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(slugs.len(), 50);
    assert!(slugs.contains("busy-firm"), "{slugs:?}");
    assert!(
        slugs
            .iter()
            .all(|s| s == "busy-firm" || s.len() == "busy-firm-".len() + 6),
        "{slugs:?}"
    );
}

async fn parallel_adds_with_overlapping_emails_create_nothing_twice(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ws = app.create_workspace(&token, "Firm").await.assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let accounts_before = app.store.count_accounts().await.expect("count");
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (app, token, ws) = (app.clone(), token.clone(), ws.clone());
        tasks.push(tokio::spawn(async move {
            let emails = [
                format!("u{}@firm.com", i % 5),
                format!("u{}@firm.com", (i + 1) % 5),
                "shared@firm.com".to_owned(),
            ];
            let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
            app.add_users(&token, &ws, &emails).await
        }));
    }
    for task in tasks {
        task.await.expect("task").assert_ok();
    }
    assert_eq!(
        app.store.count_accounts().await.expect("count"),
        accounts_before + 6
    );
    let members = app
        .store
        .members_of(
            &taxbridge_domain::ids::WorkspaceId::from_string(ws),
            taxbridge_domain::lists::Page::parse(Some(500), None, None, "name").expect("page"),
        )
        .await
        .expect("members");
    assert_eq!(members.len(), 6);
}
