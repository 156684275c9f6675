//! Push imports through the API: jobs, works and artifacts, their status machines, the limits
//! of each call, and what a duplicate or a late call is told. Downloads themselves are the
//! worker's (not run here): an artifact with a `url` stays `initial`.

use crate::support::{Gql, TestApp};
use serde_json::{json, Value};
use taxbridge_testkit::per_database;

per_database!(
    crate::imports::spawn;
    the_push_flow_runs_from_job_to_cancel,
    duplicate_external_ids_reject_the_whole_call_and_name_each,
    each_call_has_limits_that_name_the_field,
    jobs_need_an_active_connection,
);

/// As `serve` runs by default: a request body of up to 1 MiB, room for 1,000 works.
pub(crate) async fn spawn(database: taxbridge_testkit::Database) -> Option<TestApp> {
    TestApp::spawn_with(database, |settings| settings.max_body_bytes = 1024 * 1024).await
}

const CREATE_JOB: &str = "mutation CreateConnectionJob($connectionId: ID!, $jobName: String!) { createConnectionJob(connectionId: $connectionId, jobName: $jobName) { id connectionId workspaceId name status createdAt updatedAt } }";
const CREATE_WORKS: &str = "mutation CreateJobWorks($connectionJobId: ID!, $inputs: [CreateJobWorksInput!]!) { createJobWorks(connectionJobId: $connectionJobId, inputs: $inputs) { id workId connectionJobId workspaceId work { id name externalId status tag } } }";
const CREATE_ARTIFACTS: &str = "mutation CreateJobWorkArtifacts($jobWorkId: ID!, $inputs: [CreateJobWorkArtifactsInput!]!) { createJobWorkArtifacts(jobWorkId: $jobWorkId, inputs: $inputs) { id artifactId jobWorkId connectionJobId workArtifact { id externalId name type status uploadedUrl metadata } } }";
const TRIGGER: &str =
    "mutation($id: ID!) { triggerConnectionJob(connectionJobId: $id) { id status triggeredAt } }";
const CANCEL: &str =
    "mutation($id: ID!) { cancelConnectionJob(connectionJobId: $id) { id status completedAt } }";

/// A partner, its workspace and an active connection: (token, connection id).
async fn active_connection(app: &TestApp) -> (String, String) {
    let token = app.partner_token("qount").await;
    let ws = app
        .create_workspace(&token, "Import Firm")
        .await
        .assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let connection = app.active_connection_in(&token, &ws).await;
    (token, connection)
}

async fn call(app: &TestApp, token: &str, query: &str, variables: Value) -> Gql {
    app.graphql(
        json!({ "query": query, "variables": variables }),
        Some(token),
        None,
    )
    .await
}

async fn new_job(app: &TestApp, token: &str, connection: &str) -> String {
    call(
        app,
        token,
        CREATE_JOB,
        json!({ "connectionId": connection, "jobName": "2024 returns" }),
    )
    .await
    .assert_ok()["createConnectionJob"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn works(ids: &[&str]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({ "name": format!("Client {id} - 2024 Tax Return"), "externalId": id, "tag": "2024" }))
            .collect(),
    )
}

async fn the_push_flow_runs_from_job_to_cancel(app: TestApp) {
    let (token, connection) = active_connection(&app).await;
    let created = call(
        &app,
        &token,
        CREATE_JOB,
        json!({ "connectionId": connection, "jobName": "2024 returns" }),
    )
    .await;
    let job = created.assert_ok()["createConnectionJob"].clone();
    assert_eq!(job["status"], "pending");
    assert_eq!(job["connectionId"], connection.as_str());
    let job_id = job["id"].as_str().unwrap_or_default();

    let added = call(
        &app,
        &token,
        CREATE_WORKS,
        json!({ "connectionJobId": job_id, "inputs": works(&["c-1", "c-2"]) }),
    )
    .await;
    let added = added.assert_ok()["createJobWorks"].clone();
    assert_eq!(added.as_array().map(Vec::len), Some(2));
    assert_eq!(added[0]["connectionJobId"], job_id);
    assert_eq!(added[0]["work"]["status"], "pending");
    assert_eq!(added[0]["work"]["externalId"], "c-1");
    assert_ne!(
        added[0]["id"], added[0]["workId"],
        "a JobWork and its Work have ids of their own"
    );
    let first_work = added[0]["id"].as_str().unwrap_or_default();

    let artifacts = call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": first_work, "inputs": [
            { "name": "W-2 Form 2024", "type": "w2", "url": "https://files.example.com/w2.pdf", "externalId": "a-1", "metadata": { "taxYear": 2024 } },
            { "name": "Receipt", "type": "receipt", "externalId": "a-2" }
        ] }),
    )
    .await;
    let artifacts = artifacts.assert_ok()["createJobWorkArtifacts"].clone();
    assert_eq!(artifacts[0]["workArtifact"]["status"], "initial");
    assert_eq!(artifacts[0]["workArtifact"]["uploadedUrl"], Value::Null);
    assert_eq!(
        artifacts[0]["workArtifact"]["metadata"],
        json!({ "taxYear": 2024 })
    );
    assert_eq!(
        artifacts[0]["workArtifact"]["id"],
        artifacts[0]["artifactId"]
    );
    assert_eq!(artifacts[1]["workArtifact"]["metadata"], json!({}));

    let listed = app
        .graphql(
            json!({ "query": "{ me { workspaces { connections { connectionJobs { id status progress { works artifacts artifactsInitial artifactsSucceeded } } jobWorks(sortBy: {field: \"name\", order: DESC}) { work { externalId } jobWorkArtifacts { workArtifact { externalId status } } } } } } }" }),
            Some(&token),
            None,
        )
        .await;
    let connection_view = listed.assert_ok()["me"]["workspaces"][0]["connections"][0].clone();
    assert_eq!(
        connection_view["connectionJobs"][0]["progress"],
        json!({ "works": 2, "artifacts": 2, "artifactsInitial": 2, "artifactsSucceeded": 0 })
    );
    assert_eq!(
        connection_view["jobWorks"][0]["work"]["externalId"], "c-2",
        "sorted by name, descending"
    );
    assert_eq!(
        connection_view["jobWorks"][1]["jobWorkArtifacts"],
        json!([
            { "workArtifact": { "externalId": "a-1", "status": "initial" } },
            { "workArtifact": { "externalId": "a-2", "status": "initial" } }
        ])
    );

    let triggered = call(&app, &token, TRIGGER, json!({ "id": job_id })).await;
    assert_eq!(
        triggered.assert_ok()["triggerConnectionJob"]["status"],
        "active"
    );
    assert!(triggered.data()["triggerConnectionJob"]["triggeredAt"].is_string());

    // The second work has no artifacts: it is ready at once; the first waits for its files.
    let statuses = app
        .graphql(
            json!({ "query": "{ me { workspaces { connections { jobWorks { work { externalId status } } } } } }" }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        statuses.assert_ok()["me"]["workspaces"][0]["connections"][0]["jobWorks"],
        json!([
            { "work": { "externalId": "c-1", "status": "importing" } },
            { "work": { "externalId": "c-2", "status": "ready" } }
        ])
    );

    let again = call(&app, &token, TRIGGER, json!({ "id": job_id })).await;
    assert_eq!(again.code(), "CONFLICT", "{}", again.body);
    assert!(again.message().contains("`active`"), "{}", again.message());
    let late = call(
        &app,
        &token,
        CREATE_WORKS,
        json!({ "connectionJobId": job_id, "inputs": works(&["c-3"]) }),
    )
    .await;
    assert_eq!(late.code(), "CONFLICT", "{}", late.body);
    assert!(
        late.message().contains("The job is `active`"),
        "{}",
        late.message()
    );

    let cancelled = call(&app, &token, CANCEL, json!({ "id": job_id })).await;
    assert_eq!(
        cancelled.assert_ok()["cancelConnectionJob"]["status"],
        "cancelled"
    );
    let after = app
        .graphql(
            json!({ "query": "{ me { workspaces { connections { connectionJobs { progress { artifactsInitial artifactsTerminated } } jobWorks { work { status } } } } } }" }),
            Some(&token),
            None,
        )
        .await;
    let after = after.assert_ok()["me"]["workspaces"][0]["connections"][0].clone();
    assert_eq!(
        after["connectionJobs"][0]["progress"],
        json!({ "artifactsInitial": 0, "artifactsTerminated": 2 })
    );
    assert_eq!(
        after["jobWorks"],
        json!([{ "work": { "status": "cancelled" } }, { "work": { "status": "ready" } }]),
        "an unfinished work is cancelled, a finished one stays"
    );
    let twice = call(&app, &token, CANCEL, json!({ "id": job_id })).await;
    assert_eq!(twice.code(), "CONFLICT", "{}", twice.body);
    assert!(
        twice.message().contains("`cancelled`"),
        "{}",
        twice.message()
    );
}

async fn duplicate_external_ids_reject_the_whole_call_and_name_each(app: TestApp) {
    let (token, connection) = active_connection(&app).await;
    let first = new_job(&app, &token, &connection).await;
    call(
        &app,
        &token,
        CREATE_WORKS,
        json!({ "connectionJobId": first, "inputs": works(&["taken"]) }),
    )
    .await
    .assert_ok();
    // Another job of the same connection: external ids are unique across all its jobs.
    let second = new_job(&app, &token, &connection).await;
    let rejected = call(
        &app,
        &token,
        CREATE_WORKS,
        json!({ "connectionJobId": second, "inputs": works(&["fresh", "twice", "twice", "taken"]) }),
    )
    .await;
    assert_eq!(rejected.code(), "CONFLICT", "{}", rejected.body);
    assert!(
        rejected.message().contains("`taken`") && rejected.message().contains("`twice`"),
        "{}",
        rejected.message()
    );
    assert!(
        !rejected.message().contains("`fresh`"),
        "{}",
        rejected.message()
    );
    let listed = app
        .graphql(
            json!({ "query": "query($ids: [ID!]) { me { workspaces { connections { jobWorks(filters: {connectionJobIds: $ids}) { id } } } } }", "variables": { "ids": [second] } }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        listed.assert_ok()["me"]["workspaces"][0]["connections"][0]["jobWorks"],
        json!([]),
        "nothing of the rejected call was added"
    );

    let work = call(
        &app,
        &token,
        CREATE_WORKS,
        json!({ "connectionJobId": second, "inputs": works(&["fresh"]) }),
    )
    .await
    .assert_ok()["createJobWorks"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let artifact = json!({ "name": "W-2", "type": "w2", "externalId": "same" });
    let repeated = call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": [artifact, artifact] }),
    )
    .await;
    assert_eq!(repeated.code(), "CONFLICT", "{}", repeated.body);
    assert!(
        repeated.message().contains("`same`"),
        "{}",
        repeated.message()
    );
}

async fn each_call_has_limits_that_name_the_field(app: TestApp) {
    let (token, connection) = active_connection(&app).await;
    let job = new_job(&app, &token, &connection).await;
    let ids: Vec<String> = (0..1_001).map(|i| format!("c-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let too_many = call(
        &app,
        &token,
        CREATE_WORKS,
        json!({ "connectionJobId": job, "inputs": works(&refs) }),
    )
    .await;
    assert_eq!(too_many.code(), "BAD_USER_INPUT", "{}", too_many.body);
    assert!(
        too_many.message().contains("1000"),
        "{}",
        too_many.message()
    );

    let blank = call(
        &app,
        &token,
        CREATE_WORKS,
        json!({ "connectionJobId": job, "inputs": [{ "name": " ", "externalId": "x" }] }),
    )
    .await;
    assert_eq!(blank.code(), "BAD_USER_INPUT");
    assert_eq!(
        blank.body["errors"][0]["extensions"]["field"],
        "inputs[0].name"
    );

    let work = call(
        &app,
        &token,
        CREATE_WORKS,
        json!({ "connectionJobId": job, "inputs": works(&["ok"]) }),
    )
    .await
    .assert_ok()["createJobWorks"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cases = [
        (
            json!({ "name": "a", "type": "w2", "externalId": "1", "url": "file:///etc/passwd" }),
            "inputs[0].url",
        ),
        (
            json!({ "name": "a", "type": "w2", "externalId": "1", "url": "not a url" }),
            "inputs[0].url",
        ),
        (
            json!({ "name": "a", "type": "w2", "externalId": "1", "metadata": [1, 2] }),
            "inputs[0].metadata",
        ),
        (
            json!({ "name": "a", "type": "w2", "externalId": "1", "metadata": { "big": "x".repeat(17 * 1024) } }),
            "inputs[0].metadata",
        ),
    ];
    for (input, field) in cases {
        let refused = call(
            &app,
            &token,
            CREATE_ARTIFACTS,
            json!({ "jobWorkId": work, "inputs": [input] }),
        )
        .await;
        assert_eq!(refused.code(), "BAD_USER_INPUT", "{}", refused.body);
        assert_eq!(
            refused.body["errors"][0]["extensions"]["field"], field,
            "{}",
            refused.body
        );
    }
    let many: Vec<Value> = (0..101)
        .map(|i| json!({ "name": "a", "type": "w2", "externalId": format!("e-{i}") }))
        .collect();
    let refused = call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": many }),
    )
    .await;
    assert_eq!(refused.code(), "BAD_USER_INPUT", "{}", refused.body);
    assert!(refused.message().contains("100"), "{}", refused.message());
}

async fn jobs_need_an_active_connection(app: TestApp) {
    let (token, connection) = active_connection(&app).await;
    app.graphql(
        json!({ "query": "mutation($c: ID!) { disconnectProviderConnection(connectionId: $c) { id } }", "variables": { "c": connection } }),
        Some(&token),
        None,
    )
    .await
    .assert_ok();
    let refused = call(
        &app,
        &token,
        CREATE_JOB,
        json!({ "connectionId": connection, "jobName": "late" }),
    )
    .await;
    assert_eq!(refused.code(), "CONFLICT", "{}", refused.body);
    assert!(
        refused.message().contains("`disconnected`"),
        "{}",
        refused.message()
    );
}
