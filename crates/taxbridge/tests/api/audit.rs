//! The audit log end to end: every mutation records exactly its events, with the actor, the
//! key, the targets and the request's context; refused operations record nothing; only a
//! workspace's admins and its owning partner read its log; no event holds a secret; a changed
//! or deleted event is named by the verification; and two nodes writing into one workspace
//! form one unbroken chain.

use crate::support::{Gql, TestApp};
use serde_json::{json, Value};
use std::sync::Arc;
use taxbridge_domain::audit::{Audit, AuditStore};
use taxbridge_testkit::per_database;

per_database!(
    crate::support::TestApp::spawn;
    every_mutation_records_its_events_with_actor_key_and_context,
    refused_operations_record_nothing,
    only_admins_and_the_owning_partner_read_a_workspaces_log,
    no_event_holds_a_secret_or_a_token,
    a_changed_or_deleted_event_is_named_by_verify,
    the_retention_sweep_keeps_every_chain_verifiable,
    bad_list_arguments_are_refused_naming_the_field,
    export_streams_every_event_once_as_json_lines_or_csv,
);

mod fleet {
    use super::*;
    per_database!(
        crate::audit::spawn_unlimited;
        two_nodes_writing_into_one_workspace_form_one_chain,
    );
}

/// Nodes that let one key make the test's 200 mutations at once.
fn unlimited(settings: &mut taxbridge::settings::Settings) {
    settings.rate_limits.requests_per_second = 10_000;
    settings.rate_limits.request_burst = 10_000;
}

async fn spawn_unlimited(database: taxbridge_testkit::Database) -> Option<TestApp> {
    TestApp::spawn_with(database, unlimited).await
}

const SECRET_API_KEY: &str = "audit-test-secret-api-key-0123456789";
const PLATFORM: &str = "audit-suite";

const EVENTS: &str = "query($w: ID!, $f: AuditEventFilters, $l: Int) { me { workspaces(filters: {ids: [$w]}) { auditEvents(filters: $f, limit: $l, sortBy: {field: \"occurredAt\", order: ASC}) { id occurredAt action actor { type id name apiKeyId apiKeyPrefix } targets { type id } workspaceId context { clientAddress userAgent sourcePlatform requestId } metadata } } } }";

async fn gql(app: &TestApp, token: &str, query: &str, variables: Value) -> Gql {
    app.graphql(
        json!({ "query": query, "variables": variables }),
        Some(token),
        Some(PLATFORM),
    )
    .await
}

/// A workspace's events, oldest first, as `token` reads them.
async fn events(app: &TestApp, token: &str, workspace: &str) -> Vec<Value> {
    let answer = gql(app, token, EVENTS, json!({ "w": workspace, "l": 500 })).await;
    answer.assert_ok()["me"]["workspaces"][0]["auditEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Events of the partner itself (not the worker's), oldest first.
async fn partner_events(app: &TestApp, token: &str, workspace: &str, me: &str) -> Vec<Value> {
    events(app, token, workspace)
        .await
        .into_iter()
        .filter(|e| e["actor"]["id"] == me)
        .collect()
}

fn id_of(answer: &Gql, field: &str) -> String {
    answer.assert_ok()[field]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn me_id(app: &TestApp, token: &str) -> String {
    app.me(Some(token)).await.assert_ok()["me"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn new_workspace(app: &TestApp, token: &str, name: &str) -> String {
    let answer = gql(
        app,
        token,
        "mutation($n: String!) { createWorkspace(input: {displayName: $n}) { id } }",
        json!({ "n": name }),
    )
    .await;
    id_of(&answer, "createWorkspace")
}

/// Runs `step`, then checks that exactly `actions` were recorded by the partner since, each
/// naming `target` among its targets (when given), the partner as actor with its key, and the
/// request's context.
async fn expect_events(
    app: &TestApp,
    token: &str,
    workspace: &str,
    me: &str,
    before: &mut usize,
    actions: &[&str],
    target: Option<&str>,
) -> Vec<Value> {
    let all = partner_events(app, token, workspace, me).await;
    let new: Vec<Value> = all[*before..].to_vec();
    *before = all.len();
    let got: Vec<&str> = new.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(got, actions, "{new:#?}");
    for event in &new {
        assert_eq!(event["actor"]["type"], "partner", "{event}");
        assert!(
            event["actor"]["apiKeyId"]
                .as_str()
                .is_some_and(|k| k.starts_with("key_")),
            "{event}"
        );
        assert!(
            event["actor"]["apiKeyPrefix"]
                .as_str()
                .is_some_and(|p| p.starts_with("tb_ptk_")),
            "{event}"
        );
        assert_eq!(event["workspaceId"], workspace, "{event}");
        assert_eq!(event["context"]["sourcePlatform"], PLATFORM, "{event}");
        assert_eq!(event["context"]["clientAddress"], "127.0.0.1", "{event}");
        assert!(
            event["context"]["userAgent"].is_string() || event["context"]["userAgent"].is_null()
        );
        assert!(
            event["context"]["requestId"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{event}"
        );
        if let Some(target) = target {
            assert!(
                event["targets"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|t| t["id"] == target)),
                "{target} not among the targets of {event}"
            );
        }
    }
    new
}

async fn every_mutation_records_its_events_with_actor_key_and_context(app: TestApp) {
    let token = app.partner_token("qount").await;
    let me = me_id(&app, &token).await;
    let ws = new_workspace(&app, &token, "Audit Firm").await;
    let mut seen = 0;
    let created = expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["workspace.created"],
        Some(&ws),
    )
    .await;
    assert_eq!(created[0]["metadata"]["slug"], "audit-firm");

    gql(&app, &token, "mutation($w: ID!) { addUsersToTheWorkspace(workspaceId: $w, userEmails: [\"amy@audit.com\", \"bob@audit.com\"]) { id } }", json!({ "w": ws })).await.assert_ok();
    let added = expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["member.added", "member.added"],
        None,
    )
    .await;
    let bob = added
        .iter()
        .find(|e| e["metadata"]["email"] == "bob@audit.com")
        .and_then(|e| e["targets"][0]["id"].as_str())
        .expect("bob's event names his account")
        .to_owned();
    // Adding the same people again changes nothing and records nothing.
    gql(&app, &token, "mutation($w: ID!) { addUsersToTheWorkspace(workspaceId: $w, userEmails: [\"amy@audit.com\"]) { id } }", json!({ "w": ws })).await.assert_ok();
    expect_events(&app, &token, &ws, &me, &mut seen, &[], None).await;

    gql(
        &app,
        &token,
        "mutation($w: ID!, $u: ID!) { removeUserFromTheWorkspace(workspaceId: $w, userId: $u) }",
        json!({ "w": ws, "u": bob }),
    )
    .await
    .assert_ok();
    expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["member.removed"],
        Some(&bob),
    )
    .await;

    // A base URL nothing answers on: the collect fails, and still records its verify call.
    let started = gql(&app, &token, "mutation($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"qount\", inputs: $i) { id } }", json!({ "w": ws, "i": { "apiKey": SECRET_API_KEY, "baseUrl": "https://platform.invalid" } })).await;
    let connection = id_of(&started, "startProviderConnection");
    expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["connection.started"],
        Some(&connection),
    )
    .await;

    gql(
        &app,
        &token,
        "mutation($c: ID!) { collectProviderConnection(connectionId: $c) { id status } }",
        json!({ "c": connection }),
    )
    .await
    .assert_ok();
    let collected = expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["credentials.used", "connection.collected"],
        Some(&connection),
    )
    .await;
    assert_eq!(collected[0]["metadata"]["purpose"], "verify");
    assert_eq!(collected[1]["metadata"]["status"], "failed");

    app.activate(&connection).await;
    let job = id_of(
        &gql(
            &app,
            &token,
            "mutation($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"2024\") { id } }",
            json!({ "c": connection }),
        )
        .await,
        "createConnectionJob",
    );
    expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["job.created"],
        Some(&job),
    )
    .await;

    let works = gql(&app, &token, "mutation($j: ID!) { createJobWorks(connectionJobId: $j, inputs: [{name: \"Jane\", externalId: \"c-1\"}, {name: \"Joe\", externalId: \"c-2\"}]) { id } }", json!({ "j": job })).await;
    let work = works.assert_ok()["createJobWorks"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let added = expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["job.works_added"],
        Some(&job),
    )
    .await;
    assert_eq!(added[0]["metadata"]["count"], 2);

    gql(&app, &token, "mutation($w: ID!) { createJobWorkArtifacts(jobWorkId: $w, inputs: [{name: \"w2.pdf\", type: \"w2\", externalId: \"a-1\"}]) { id } }", json!({ "w": work })).await.assert_ok();
    expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["job.artifacts_added"],
        Some(&work),
    )
    .await;

    gql(
        &app,
        &token,
        "mutation($j: ID!) { triggerConnectionJob(connectionJobId: $j) { id } }",
        json!({ "j": job }),
    )
    .await
    .assert_ok();
    expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["job.triggered"],
        Some(&job),
    )
    .await;

    gql(
        &app,
        &token,
        "mutation($j: ID!) { cancelConnectionJob(connectionJobId: $j) { id } }",
        json!({ "j": job }),
    )
    .await
    .assert_ok();
    expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["job.cancelled"],
        Some(&job),
    )
    .await;

    gql(&app, &token, "mutation($c: ID!) { uploadConnectionFile(connectionId: $c, clientKey: \"c-1\", file: {fileName: \"x.pdf\", tusdEndpoint: \"https://tus.invalid/files/\", contentBase64: \"eA==\"}) { success } }", json!({ "c": connection })).await.assert_ok();
    expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["upload.queued"],
        Some(&connection),
    )
    .await;

    gql(
        &app,
        &token,
        "mutation($c: ID!) { disconnectProviderConnection(connectionId: $c) { id } }",
        json!({ "c": connection }),
    )
    .await
    .assert_ok();
    expect_events(
        &app,
        &token,
        &ws,
        &me,
        &mut seen,
        &["connection.disconnected"],
        Some(&connection),
    )
    .await;

    // The worker's own events carry the system actor and no key: the upload to a host that
    // does not resolve fails.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let all = events(&app, &token, &ws).await;
        if let Some(failed) = all.iter().find(|e| e["action"] == "upload.failed") {
            assert_eq!(failed["actor"]["type"], "system");
            assert!(failed["actor"]["apiKeyId"].is_null());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no upload.failed: {all:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The partner's own events outside the workspace: its key, made by the operator.
    let mine = gql(
        &app,
        &token,
        "{ me { auditEvents { action actor { type } targets { type id } } } }",
        json!({}),
    )
    .await;
    let mine = mine.assert_ok()["me"]["auditEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        mine.iter()
            .any(|e| e["action"] == "api_key.created" && e["actor"]["type"] == "operator"),
        "{mine:#?}"
    );
    assert!(
        mine.iter().all(|e| e["action"] != "workspace.created"),
        "workspace events stay in the workspace"
    );
}

async fn refused_operations_record_nothing(app: TestApp) {
    let owner = app.partner_token("qount").await;
    let ws = new_workspace(&app, &owner, "Target Firm").await;
    let connection = app.active_connection_in(&owner, &ws).await;
    let job = id_of(
        &gql(
            &app,
            &owner,
            "mutation($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"2024\") { id } }",
            json!({ "c": connection }),
        )
        .await,
        "createConnectionJob",
    );
    let work = gql(&app, &owner, "mutation($j: ID!) { createJobWorks(connectionJobId: $j, inputs: [{name: \"Jane\", externalId: \"c-1\"}]) { id } }", json!({ "j": job })).await.assert_ok()["createJobWorks"][0]["id"].as_str().unwrap_or_default().to_owned();
    let (member, _) = app.customer_token("member@target.com").await;
    app.add_users(&owner, &ws, &["member@target.com"])
        .await
        .assert_ok();
    let outsider = app.partner_token("other").await;
    let before = app.store.chain_heads().await.expect("heads");

    // Every operation of the isolation registry, by an outsider: NOT_FOUND, nothing recorded.
    let ids = crate::workspaces::Ids {
        workspace: &ws,
        member: &member,
        connection: &connection,
        job: &job,
        job_work: &work,
    };
    for (name, body) in crate::workspaces::id_operations(&ids) {
        let answer = app.graphql(body, Some(&outsider), None).await;
        assert_eq!(answer.code(), "NOT_FOUND", "{name}: {}", answer.body);
    }
    // Bad input by the owner: refused, nothing recorded.
    for (query, variables) in [
        ("mutation { createWorkspace(input: {displayName: \"   \"}) { id } }", json!({})),
        ("mutation($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"\") { id } }", json!({ "c": connection })),
        ("mutation($w: ID!) { addUsersToTheWorkspace(workspaceId: $w, userEmails: [\"not-an-email\"]) { id } }", json!({ "w": ws })),
        ("mutation($w: ID!) { startProviderConnection(workspaceId: $w, providerKey: \"nope\") { id } }", json!({ "w": ws })),
    ] {
        let answer = gql(&app, &owner, query, variables).await;
        assert_eq!(answer.code(), "BAD_USER_INPUT", "{query}: {}", answer.body);
    }
    let after = app.store.chain_heads().await.expect("heads");
    assert_eq!(before, after, "a refused operation moved a chain's head");
}

async fn only_admins_and_the_owning_partner_read_a_workspaces_log(app: TestApp) {
    let owner = app.partner_token("qount").await;
    let ws = new_workspace(&app, &owner, "Private Firm").await;
    app.add_users(&owner, &ws, &["staff@private.com"])
        .await
        .assert_ok();
    assert!(!events(&app, &owner, &ws).await.is_empty());

    // A member with role `user`: FORBIDDEN, naming who may read it.
    let staff = app.token_of_existing("staff@private.com").await;
    let answer = gql(&app, &staff, EVENTS, json!({ "w": ws })).await;
    assert_eq!(answer.code(), "FORBIDDEN", "{}", answer.body);
    assert!(answer.message().contains("admin"), "{}", answer.message());

    // Another partner, and the partner of another workspace: the workspace is not theirs to
    // list at all, so no events either.
    let other = app.partner_token("other").await;
    let other_ws = new_workspace(&app, &other, "Other Firm").await;
    let answer = gql(&app, &other, EVENTS, json!({ "w": ws })).await;
    assert_eq!(
        answer.assert_ok()["me"]["workspaces"],
        json!([]),
        "{}",
        answer.body
    );
    let theirs = events(&app, &other, &other_ws).await;
    assert!(
        theirs.iter().all(|e| e["workspaceId"] == other_ws),
        "{theirs:#?}"
    );
    // Its own account's events hold nothing of the other partner's workspace.
    let mine = gql(
        &app,
        &other,
        "{ me { auditEvents(limit: 500) { action workspaceId targets { id } } } }",
        json!({}),
    )
    .await;
    let text = mine.assert_ok().to_string();
    assert!(!text.contains(&ws), "{text}");

    // A customer workspace's admin reads its log.
    let workspaces = taxbridge_domain::workspaces::Workspaces::new(app.store.clone());
    let (customer_ws, _) = workspaces
        .create_for_customer(
            "Direct Firm",
            Some("boss@direct.com"),
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("customer workspace");
    let boss = app.token_of_existing("boss@direct.com").await;
    let seen = events(&app, &boss, customer_ws.id.as_str()).await;
    let actions: Vec<&str> = seen.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["workspace.created", "member.added"], "{seen:#?}");
    assert_eq!(seen[0]["actor"]["type"], "operator");
}

async fn no_event_holds_a_secret_or_a_token(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ws = new_workspace(&app, &token, "Secret Firm").await;
    let started = gql(&app, &token, "mutation($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"qount\", inputs: $i) { id } }", json!({ "w": ws, "i": { "apiKey": SECRET_API_KEY, "securityToken": "audit-test-security-token-987", "baseUrl": "https://platform.invalid" } })).await;
    let connection = id_of(&started, "startProviderConnection");
    gql(&app, &token, "mutation($c: ID!, $i: JSON) { collectProviderConnection(connectionId: $c, inputs: $i) { id } }", json!({ "c": connection, "i": { "apiKey": "audit-test-second-secret-555" } })).await.assert_ok();
    let (_, key_secret, _) = app.customer_with_key("keys@secret.com").await;
    let customer_token = app.token_for(&key_secret).await;
    let every: Vec<String> = app
        .store
        .events_since(
            taxbridge_domain::time::Timestamp::from_millis(0),
            None,
            100_000,
        )
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.body)
        .collect();
    assert!(every.len() >= 6, "{every:#?}");
    for secret in [
        SECRET_API_KEY,
        "audit-test-security-token-987",
        "audit-test-second-secret-555",
        key_secret.as_str(),
        token.as_str(),
        customer_token.as_str(),
    ] {
        assert!(
            every.iter().all(|body| !body.contains(secret)),
            "an event holds `{secret}`"
        );
    }
}

/// Runs one statement on the app's database, as an attacker with database access would.
async fn tamper(app: &TestApp, sql: &str) {
    if app.database_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.database_url)
            .await
            .expect("open");
        sqlx::query(sql).execute(&pool).await.expect(sql);
    } else {
        let pool = sqlx::PgPool::connect(&app.database_url)
            .await
            .expect("open");
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
}

async fn a_changed_or_deleted_event_is_named_by_verify(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ws = new_workspace(&app, &token, "Tamper Firm").await;
    let emails: Vec<String> = (0..5).map(|n| format!("p{n}@tamper.com")).collect();
    for email in &emails {
        app.add_users(&token, &ws, &[email]).await.assert_ok();
    }
    let audit = Audit::new(app.store.clone());
    let clean = audit.verify().await.expect("verify");
    assert!(clean.breaks.is_empty(), "{:?}", clean.breaks);
    assert!(clean.events >= 6, "{clean:?}");

    let listed = events(&app, &token, &ws).await;
    let third = listed[3]["id"].as_str().unwrap_or_default().to_owned();
    // Someone with database access rewrites who was added.
    tamper(
        &app,
        &format!("UPDATE audit_events SET body = REPLACE(body, 'p2@tamper.com', 'eve@tamper.com') WHERE id = '{third}'"),
    )
    .await;
    let found = audit.verify().await.expect("verify");
    assert_eq!(found.breaks.len(), 1, "{:?}", found.breaks);
    assert_eq!(found.breaks[0].event_id.as_deref(), Some(third.as_str()));
    assert_eq!(found.breaks[0].chain, ws);
    assert!(
        found.breaks[0].reason.contains("hash"),
        "{:?}",
        found.breaks[0]
    );

    // The same, through the command line: it exits 1 naming the event.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_taxbridge"))
        .args(["--database-url", &app.database_url, "audit", "verify"])
        .output()
        .expect("run audit verify");
    let printed = String::from_utf8_lossy(&verify.stdout);
    assert!(!verify.status.success(), "{printed}");
    assert!(printed.contains(&third), "{printed}");

    // Put it back, then delete another event: the gap is named.
    tamper(
        &app,
        &format!("UPDATE audit_events SET body = REPLACE(body, 'eve@tamper.com', 'p2@tamper.com') WHERE id = '{third}'"),
    )
    .await;
    assert!(audit.verify().await.expect("verify").breaks.is_empty());
    let second = listed[2]["id"].as_str().unwrap_or_default().to_owned();
    tamper(
        &app,
        &format!("DELETE FROM audit_events WHERE id = '{second}'"),
    )
    .await;
    let found = audit.verify().await.expect("verify");
    assert_eq!(found.breaks.len(), 1, "{:?}", found.breaks);
    assert_eq!(found.breaks[0].event_id.as_deref(), Some(third.as_str()));
    assert!(
        found.breaks[0].reason.contains("missing"),
        "{:?}",
        found.breaks[0]
    );

    // `audit head` prints every chain's newest hash.
    let head = std::process::Command::new(env!("CARGO_BIN_EXE_taxbridge"))
        .args(["--database-url", &app.database_url, "audit", "head"])
        .output()
        .expect("run audit head");
    let printed = String::from_utf8_lossy(&head.stdout);
    let heads = app.store.chain_heads().await.expect("heads");
    for h in &heads {
        assert!(
            printed.contains(&format!("{}\t{}\t{}", h.chain, h.seq, h.hash)),
            "{printed}"
        );
    }
}

async fn two_nodes_writing_into_one_workspace_form_one_chain(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ws = new_workspace(&app, &token, "Busy Firm").await;
    let connection = app.active_connection_in(&token, &ws).await;
    let second = Arc::new(app.another_node(unlimited).await);
    let first = Arc::new(app);
    let jobs = (0..200).map(|n| {
        let node = if n % 2 == 0 { first.clone() } else { second.clone() };
        let (token, connection) = (token.clone(), connection.clone());
        async move {
            gql(&node, &token, "mutation($c: ID!, $n: String!) { createConnectionJob(connectionId: $c, jobName: $n) { id } }", json!({ "c": connection, "n": format!("job {n}") })).await
        }
    });
    let answers = futures_util::future::join_all(jobs).await;
    for answer in &answers {
        answer.assert_ok();
    }
    let heads = first.store.chain_heads().await.expect("heads");
    let chain = heads
        .iter()
        .find(|h| h.chain == ws)
        .expect("the workspace's chain");
    // workspace.created, connection.started, then the 200 jobs: one link each, no gap.
    assert_eq!(chain.seq, 202, "{chain:?}");
    let found = Audit::new(first.store.clone())
        .verify()
        .await
        .expect("verify");
    assert!(found.breaks.is_empty(), "{:?}", found.breaks);
    let created = events(&first, &token, &ws)
        .await
        .into_iter()
        .filter(|e| e["action"] == "job.created")
        .count();
    assert_eq!(created, 200);
}

async fn the_retention_sweep_keeps_every_chain_verifiable(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ws = new_workspace(&app, &token, "Old Firm").await;
    for n in 0..4 {
        app.add_users(&token, &ws, &[&format!("old{n}@old.com")])
            .await
            .assert_ok();
    }
    let listed = events(&app, &token, &ws).await;
    assert_eq!(listed.len(), 5);
    // The first three events happened long ago.
    for event in &listed[..3] {
        tamper(
            &app,
            &format!(
                "UPDATE audit_events SET occurred_at = 1000 WHERE id = '{}'",
                event["id"].as_str().unwrap_or_default()
            ),
        )
        .await;
    }
    let audit = Audit::new(app.store.clone());
    // Moving a time breaks the link (the body says otherwise)...
    assert_eq!(audit.verify().await.expect("verify").breaks.len(), 1);
    // ...but the sweep removes exactly those events, and the checkpoint it leaves makes the
    // rest verify again.
    assert_eq!(audit.sweep(1).await.expect("sweep"), 3);
    let left = events(&app, &token, &ws).await;
    assert_eq!(left.len(), 2);
    assert_eq!(left[0]["id"], listed[3]["id"]);
    let found = audit.verify().await.expect("verify");
    assert!(found.breaks.is_empty(), "{:?}", found.breaks);
    let head = app
        .store
        .chain_heads()
        .await
        .expect("heads")
        .into_iter()
        .find(|h| h.chain == ws)
        .expect("chain");
    assert_eq!((head.base_seq, head.seq), (3, 5));
}

async fn bad_list_arguments_are_refused_naming_the_field(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ws = new_workspace(&app, &token, "Args Firm").await;
    for (variables, field) in [
        (
            json!({ "w": ws, "f": { "actions": ["api_key.stolen"] } }),
            "filters.actions",
        ),
        (json!({ "w": ws, "l": 0 }), "limit"),
        (json!({ "w": ws, "l": 501 }), "limit"),
    ] {
        let answer = gql(&app, &token, EVENTS, variables).await;
        assert_eq!(answer.code(), "BAD_USER_INPUT", "{}", answer.body);
        assert_eq!(answer.body["errors"][0]["extensions"]["field"], field);
    }
    let many: Vec<String> = (0..501).map(|n| format!("acc_{n}")).collect();
    let answer = gql(
        &app,
        &token,
        EVENTS,
        json!({ "w": ws, "f": { "actorIds": many } }),
    )
    .await;
    assert_eq!(answer.code(), "BAD_USER_INPUT", "{}", answer.body);
    let answer = gql(&app, &token, "query($w: ID!) { me { workspaces(filters: {ids: [$w]}) { auditEvents(sortBy: {field: \"action\", order: ASC}) { id } } } }", json!({ "w": ws })).await;
    assert_eq!(answer.code(), "BAD_USER_INPUT", "{}", answer.body);
    // Filters narrow: one action, one target.
    let only = gql(
        &app,
        &token,
        EVENTS,
        json!({ "w": ws, "f": { "actions": ["workspace.created"], "targetIds": [ws] } }),
    )
    .await;
    let only = only.assert_ok()["me"]["workspaces"][0]["auditEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(only.len(), 1);
    let none = gql(
        &app,
        &token,
        EVENTS,
        json!({ "w": ws, "f": { "actions": [] } }),
    )
    .await;
    assert_eq!(
        none.assert_ok()["me"]["workspaces"][0]["auditEvents"],
        json!([])
    );
}

async fn export_streams_every_event_once_as_json_lines_or_csv(app: TestApp) {
    use taxbridge::audit::{export, Format};
    use taxbridge_domain::audit::{Action, AuditEvent};
    use taxbridge_domain::time::Timestamp;
    // More than one page of the walk (1,000), all at one instant: the keyset paging must
    // neither skip nor repeat events that tie on their time.
    let now = Timestamp::now();
    let many: Vec<AuditEvent> = (0..1_234)
        .map(|n| {
            let mut event = AuditEvent::by_operator(Action::ApiKeyCreated)
                .target("api_key", format!("key_{n}"))
                .with("note", "comma, \"quote\" and\nnewline");
            event.occurred_at = now;
            event
        })
        .collect();
    let audit = Audit::new(app.store.clone());
    audit.record(&many).await.expect("record");

    let mut lines = Vec::new();
    export(&audit, Timestamp::from_millis(0), Format::Jsonl, &mut lines)
        .await
        .expect("export");
    let text = String::from_utf8(lines).expect("utf-8");
    let ids: Vec<String> = text
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("one JSON object a line");
            event["id"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event exported twice");
    for event in &many {
        assert!(
            unique.contains(&event.id.to_string()),
            "{} missing",
            event.id
        );
    }
    // `since` leaves out what came before.
    let mut later = Vec::new();
    export(&audit, now.plus_seconds(1), Format::Jsonl, &mut later)
        .await
        .expect("export");
    assert!(later.is_empty());

    let mut csv = Vec::new();
    export(&audit, Timestamp::from_millis(0), Format::Csv, &mut csv)
        .await
        .expect("export");
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let headers = reader.headers().expect("headers").clone();
    assert_eq!(&headers[0], "id");
    assert_eq!(&headers[2], "action");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a row")).collect();
    assert_eq!(rows.len(), ids.len());
    let row = rows
        .iter()
        .find(|r| &r[0] == many[7].id.as_str())
        .expect("the event's row");
    assert_eq!(&row[3], "operator");
    assert!(row[14].contains("newline"), "{row:?}");

    // And through the command line, as a SIEM feed would run it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_taxbridge"))
        .args([
            "--database-url",
            &app.database_url,
            "audit",
            "export",
            "--since",
            "1970-01-01T00:00:00Z",
            "--format",
            "jsonl",
        ])
        .output()
        .expect("run audit export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        ids.len()
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_taxbridge"))
        .args([
            "--database-url",
            &app.database_url,
            "audit",
            "export",
            "--since",
            "yesterday",
        ])
        .output()
        .expect("run audit export");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}
