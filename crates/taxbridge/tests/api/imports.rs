//! Push imports through the API: jobs, works and artifacts, their status machines, the limits
//! of each call, what a duplicate or a late call is told, and the worker's downloads (the
//! test app runs a worker, as `serve` does) with the bytes served back.

use crate::support::{Gql, TestApp};
use serde_json::{json, Value};
use taxbridge_domain::audit::{Action, AuditEvent};
use taxbridge_testkit::per_database;

/// Records an artifact's outcome straight through the store, as the worker's service does.
async fn finish(
    store: &taxbridge_store::Store,
    id: &taxbridge_domain::ids::ArtifactId,
    outcome: &taxbridge_domain::imports::ArtifactOutcome,
) -> taxbridge_domain::store::StoreResult<bool> {
    use taxbridge_domain::imports::{ImportStore, JobEvents};
    let artifact = store.artifact_by_id(id).await?.expect("artifact");
    let events = JobEvents {
        done: AuditEvent::by_system(Action::ArtifactStored).in_workspace(&artifact.workspace_id),
        completed: AuditEvent::by_system(Action::JobCompleted).in_workspace(&artifact.workspace_id),
    };
    store
        .finish_artifact(
            &artifact,
            outcome,
            None,
            taxbridge_domain::time::Timestamp::now(),
            &events,
        )
        .await
}

per_database!(
    crate::imports::spawn;
    the_push_flow_runs_from_job_to_cancel,
    duplicate_external_ids_reject_the_whole_call_and_name_each,
    each_call_has_limits_that_name_the_field,
    jobs_need_an_active_connection,
    downloads_succeed_fail_recover_use_credentials_and_bytes_are_served,
    uploads_over_the_cap_are_refused_and_keep_nothing,
    a_stored_file_lost_from_storage_is_a_masked_500_that_quotes_the_request_id,
    a_stopped_worker_hands_its_tasks_back,
    a_dead_workers_tasks_are_taken_over_long_before_their_leases_end,
    artifacts_finished_side_by_side_settle_every_work_and_the_job,
    a_cancel_racing_the_last_artifacts_ends_in_one_consistent_state,
);

/// As `serve` runs by default: a request body of up to 1 MiB, room for 1,000 works.
pub(crate) async fn spawn(database: taxbridge_testkit::Database) -> Option<TestApp> {
    TestApp::spawn_with(database, |settings| {
        settings.limits.max_body_bytes = 1024 * 1024
    })
    .await
}

pub(crate) const CREATE_JOB: &str = "mutation CreateConnectionJob($connectionId: ID!, $jobName: String!) { createConnectionJob(connectionId: $connectionId, jobName: $jobName) { id connectionId workspaceId name status createdAt updatedAt } }";
pub(crate) const CREATE_WORKS: &str = "mutation CreateJobWorks($connectionJobId: ID!, $inputs: [CreateJobWorksInput!]!) { createJobWorks(connectionJobId: $connectionJobId, inputs: $inputs) { id workId connectionJobId workspaceId work { id name externalId status tag } } }";
pub(crate) const CREATE_ARTIFACTS: &str = "mutation CreateJobWorkArtifacts($jobWorkId: ID!, $inputs: [CreateJobWorkArtifactsInput!]!) { createJobWorkArtifacts(jobWorkId: $jobWorkId, inputs: $inputs) { id artifactId jobWorkId connectionJobId workArtifact { id externalId name type status uploadedUrl metadata } } }";
pub(crate) const TRIGGER: &str =
    "mutation($id: ID!) { triggerConnectionJob(connectionJobId: $id) { id status triggeredAt } }";
pub(crate) const CANCEL: &str =
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

pub(crate) async fn call(app: &TestApp, token: &str, query: &str, variables: Value) -> Gql {
    app.graphql(
        json!({ "query": query, "variables": variables }),
        Some(token),
        None,
    )
    .await
}

pub(crate) async fn new_job(app: &TestApp, token: &str, connection: &str) -> String {
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

pub(crate) fn works(ids: &[&str]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({ "name": format!("Client {id} - 2024 Tax Return"), "externalId": id, "tag": "2024" }))
            .collect(),
    )
}

/// A server that accepts connections and never answers: a download from it stays in flight.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}")
}

async fn the_push_flow_runs_from_job_to_cancel(app: TestApp) {
    let (token, connection) = active_connection(&app).await;
    let silent = silent_server().await;
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
            { "name": "W-2 Form 2024", "type": "w2", "url": format!("{silent}/w2.pdf"), "externalId": "a-1", "metadata": { "taxYear": 2024 } },
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

/// A partner, its workspace, and an active connection whose base URL is `base` and whose
/// apiKey is the file server's key: (token, workspace id, connection id).
async fn connection_to_files(app: &TestApp, base: &str) -> (String, String, String) {
    let token = app.partner_token("qount").await;
    let ws = app
        .create_workspace(&token, "Download Firm")
        .await
        .assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let connection = app
        .active_connection_with(
            &token,
            &ws,
            json!({ "apiKey": files::KEY, "baseUrl": base }),
        )
        .await;
    (token, ws, connection)
}

/// Polls the job until it is final; returns its last state.
async fn until_final(app: &TestApp, token: &str) -> Value {
    let query = json!({ "query": "{ me { workspaces { connections { connectionJobs { status completedAt progress { works artifacts artifactsInitial artifactsSucceeded artifactsFailed artifactsTerminated } } } } } }" });
    for _ in 0..300 {
        let answer = app.graphql(query.clone(), Some(token), None).await;
        let job = answer.assert_ok()["me"]["workspaces"][0]["connections"][0]["connectionJobs"][0]
            .clone();
        if job["status"] != "active" {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the job did not finish within 30 s");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn downloads_succeed_fail_recover_use_credentials_and_bytes_are_served(app: TestApp) {
    let (server, base) = files::start().await;
    let (token, ws, connection) = connection_to_files(&app, &base).await;
    let (job, work) = job_with_a_work_on(&app, &token, &connection).await;
    let artifact = |external_id: &str, url: Option<String>| json!({ "name": external_id, "type": "document", "externalId": external_id, "url": url, "metadata": { "source": "test" } });
    let created = call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": [
            artifact("ok", Some(format!("{base}/ok/w2.pdf"))),
            artifact("missing", Some(format!("{base}/gone/x.pdf"))),
            artifact("flaky", Some(format!("{base}/flaky/k1.pdf"))),
            artifact("private", Some(format!("{base}/private/p.pdf"))),
            artifact("refused", Some("http://10.1.2.3/internal.pdf".into())),
            artifact("put", None),
        ] }),
    )
    .await;
    let created = created.assert_ok()["createJobWorkArtifacts"].clone();
    let id_of = |external: &str| -> String {
        created
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|a| a["workArtifact"]["externalId"] == external)
            })
            .map(|a| a["artifactId"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    call(&app, &token, TRIGGER, json!({ "id": job }))
        .await
        .assert_ok();

    // The artifact without a url waits for its bytes.
    let put_id = id_of("put");
    let upload_url = format!("{}/uploads/artifacts/{put_id}", app.base);
    let body = b"%PDF-1.7 uploaded by the partner".to_vec();
    let unauthenticated = app
        .http
        .put(&upload_url)
        .body(body.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(unauthenticated.status(), 401);
    let put = app
        .http
        .put(&upload_url)
        .bearer_auth(&token)
        .header("content-type", "application/pdf")
        .body(body.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    let again = app
        .http
        .put(&upload_url)
        .bearer_auth(&token)
        .body(body.clone())
        .send()
        .await
        .expect("put again");
    assert_eq!(again.status(), 409);
    let on_url_artifact = app
        .http
        .put(format!("{}/uploads/artifacts/{}", app.base, id_of("ok")))
        .bearer_auth(&token)
        .body(body.clone())
        .send()
        .await
        .expect("put on a url artifact");
    assert_eq!(on_url_artifact.status(), 409);

    let finished = until_final(&app, &token).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(
        finished["progress"],
        json!({ "works": 1, "artifacts": 6, "artifactsInitial": 0, "artifactsSucceeded": 4, "artifactsFailed": 2, "artifactsTerminated": 0 })
    );
    let listed = app
        .graphql(
            json!({ "query": "{ me { workspaces { connections { jobWorks { work { status } jobWorkArtifacts { artifactId workArtifact { externalId status uploadedUrl metadata } } } } } } }" }),
            Some(&token),
            None,
        )
        .await;
    let work_view =
        listed.assert_ok()["me"]["workspaces"][0]["connections"][0]["jobWorks"][0].clone();
    assert_eq!(work_view["work"]["status"], "needs_attention");
    let by_external = |external: &str| -> Value {
        work_view["jobWorkArtifacts"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|a| a["workArtifact"]["externalId"] == external)
            })
            .map(|a| a["workArtifact"].clone())
            .unwrap_or_default()
    };
    let ok = by_external("ok");
    assert_eq!(ok["status"], "success");
    let expected = files::content("w2.pdf");
    assert_eq!(
        ok["metadata"],
        json!({ "source": "test", "size": expected.len(), "sha256": sha256_hex(&expected), "mimeType": "application/pdf" })
    );
    let missing = by_external("missing");
    assert_eq!(missing["status"], "error");
    assert_eq!(missing["metadata"]["error"]["code"], "HTTP_ERROR");
    assert_eq!(missing["metadata"]["error"]["httpStatus"], 404);
    assert_eq!(
        missing["metadata"]["source"], "test",
        "the caller's metadata is kept"
    );
    assert_eq!(server.hits("/gone/x.pdf"), 1, "a 404 is not retried");
    assert_eq!(by_external("flaky")["status"], "success");
    assert_eq!(server.hits("/flaky/k1.pdf"), 3, "503 twice, then the file");
    assert_eq!(
        by_external("private")["status"],
        "success",
        "the connection's key was sent"
    );
    let refused = by_external("refused");
    assert_eq!(
        refused["metadata"]["error"]["code"], "URL_REFUSED",
        "{refused}"
    );
    assert_eq!(by_external("put")["metadata"]["sha256"], sha256_hex(&body));

    // The bytes, from uploadedUrl: whole, by range, and only to callers who reach them.
    let url = ok["uploadedUrl"].as_str().unwrap_or_default();
    assert!(url.starts_with(crate::support::PUBLIC_BASE_URL), "{url}");
    let local = url.replace(crate::support::PUBLIC_BASE_URL, &app.base);
    let whole = app
        .http
        .get(&local)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "application/pdf");
    assert_eq!(
        whole.headers()["etag"],
        format!("\"{}\"", sha256_hex(&expected)).as_str()
    );
    assert_eq!(
        whole.headers()["content-length"],
        expected.len().to_string().as_str()
    );
    assert_eq!(whole.bytes().await.expect("body").to_vec(), expected);
    let part = app
        .http
        .get(&local)
        .bearer_auth(&token)
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", expected.len()).as_str()
    );
    assert_eq!(
        part.bytes().await.expect("body").to_vec(),
        expected[10..20].to_vec()
    );
    let beyond = app
        .http
        .get(&local)
        .bearer_auth(&token)
        .header("range", "bytes=999999-")
        .send()
        .await
        .expect("range");
    assert_eq!(beyond.status(), 416);
    assert_eq!(
        app.http.get(&local).send().await.expect("get").status(),
        401
    );
    let outsider = app.partner_token("other").await;
    let foreign = app
        .http
        .get(&local)
        .bearer_auth(&outsider)
        .send()
        .await
        .expect("get");
    assert_eq!(foreign.status(), 404);
    let foreign_body: Value = foreign.json().await.expect("json");
    let missing_body: Value = app
        .http
        .get(format!("{}/files/artifacts/art_does_not_exist", app.base))
        .bearer_auth(&outsider)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        foreign_body, missing_body,
        "a foreign artifact reads like a missing one"
    );

    // Prometheus: the queue is empty, and downloads are counted by outcome and failure code.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "taxbridge_task_queue_depth{kind=\"download\"} 0",
        "taxbridge_downloads_total{outcome=\"success\"} 3",
        "taxbridge_downloads_total{outcome=\"error\"} 2",
        "taxbridge_download_failures_total{code=\"URL_REFUSED\"} 1",
        "taxbridge_download_failures_total{code=\"HTTP_ERROR\"} 3",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
    let bytes = format!("taxbridge_download_bytes_total {}", 3 * expected.len());
    assert!(metrics.lines().any(|l| l == bytes), "no `{bytes}`");

    // Credentials went only where the connection's base URL is, and every request had them.
    let authorizations = server
        .authorizations
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    assert!(authorizations
        .iter()
        .all(|a| a.as_deref() == Some(&format!("Bearer {}", files::KEY))));

    // The audit log: the job's downloads are one use of the credentials (not one per file),
    // by the worker; each outcome is an event; the job completed once.
    use taxbridge_domain::audit::{AuditFilters, AuditPage, AuditStore};
    let logged: Vec<taxbridge_domain::audit::AuditEvent> = app
        .store
        .chain_events(
            &ws,
            &AuditFilters::default(),
            AuditPage::parse(Some(500), None, None).expect("page"),
        )
        .await
        .expect("events")
        .iter()
        .map(|e| e.event().expect("readable"))
        .collect();
    let of = |action: &str| {
        logged
            .iter()
            .filter(|e| e.action == action)
            .collect::<Vec<_>>()
    };
    let uses = of("credentials.used");
    assert_eq!(uses.len(), 1, "{uses:#?}");
    assert_eq!(uses[0].metadata["purpose"], "download");
    assert_eq!(uses[0].actor.id, "worker");
    assert!(uses[0].targets.iter().any(|t| t.id == job));
    assert_eq!(of("artifact.failed").len(), 2, "{logged:#?}");
    assert!(of("artifact.stored").len() >= 3, "{logged:#?}");
    assert!(of("artifact.stored")
        .iter()
        .all(|e| e.targets.iter().any(|t| t.id == job)));
    let completed = of("job.completed");
    assert!(completed.len() <= 1, "{completed:#?}");
    assert!(completed
        .iter()
        .all(|e| e.actor.kind == taxbridge_domain::audit::ActorType::System));
}

/// A job with one work on a fresh active connection: (token, job id, job work id).
async fn job_with_a_work(app: &TestApp) -> (String, String, String) {
    let (token, connection) = active_connection(app).await;
    let (job, work) = job_with_a_work_on(app, &token, &connection).await;
    (token, job, work)
}

/// Adds artifacts (`inputs`) to a job work: their artifact ids, in order.
pub(crate) async fn create_artifacts(
    app: &TestApp,
    token: &str,
    work: &str,
    inputs: Value,
) -> Vec<String> {
    let created = call(
        app,
        token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": inputs }),
    )
    .await;
    created.assert_ok()["createJobWorkArtifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["artifactId"].as_str().map(str::to_owned))
        .collect()
}

/// A new job on `connection` with one work of this external id: (job id, job work id).
pub(crate) async fn job_and_work(
    app: &TestApp,
    token: &str,
    connection: &str,
    external_id: &str,
) -> (String, String) {
    let job = new_job(app, token, connection).await;
    let work = call(
        app,
        token,
        CREATE_WORKS,
        json!({ "connectionJobId": job, "inputs": works(&[external_id]) }),
    )
    .await
    .assert_ok()["createJobWorks"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (job, work)
}

/// A new job on `connection` with one work: (job id, job work id).
pub(crate) async fn job_with_a_work_on(
    app: &TestApp,
    token: &str,
    connection: &str,
) -> (String, String) {
    job_and_work(app, token, connection, "client-1").await
}

async fn uploads_over_the_cap_are_refused_and_keep_nothing(app: TestApp) {
    let (token, _, work) = job_with_a_work(&app).await;
    let created = call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": [{ "name": "scan", "type": "document", "externalId": "scan" }] }),
    )
    .await;
    let artifact = created.assert_ok()["createJobWorkArtifacts"][0]["artifactId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = format!("{}/uploads/artifacts/{artifact}", app.base);
    let too_big = vec![7u8; crate::support::MAX_FILE_BYTES as usize + 1];
    let refused = app
        .http
        .put(&url)
        .bearer_auth(&token)
        .body(too_big)
        .send()
        .await
        .expect("put");
    assert_eq!(refused.status(), 413);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // Without a Content-Length the cap holds while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![1u8; 64 * 1024])).collect();
    let streamed = app
        .http
        .put(&url)
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("put");
    assert_eq!(streamed.status(), 413);
    let state = app
        .graphql(
            json!({ "query": "{ me { workspaces { connections { jobWorks { jobWorkArtifacts { workArtifact { status uploadedUrl } } } } } } }" }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        state.assert_ok()["me"]["workspaces"][0]["connections"][0]["jobWorks"][0]
            ["jobWorkArtifacts"],
        json!([{ "workArtifact": { "status": "initial", "uploadedUrl": null } }])
    );
    assert_eq!(
        files_under(&app.blob_dir()),
        0,
        "no blob, staged or complete, is left"
    );
    let unknown = app
        .http
        .put(format!("{}/uploads/artifacts/art_nope", app.base))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("put");
    assert_eq!(unknown.status(), 404);
}

/// The byte routes answer their failures as every non-GraphQL route does: JSON, with the
/// cause kept in the log and the request id given to quote.
async fn a_stored_file_lost_from_storage_is_a_masked_500_that_quotes_the_request_id(app: TestApp) {
    let (token, connection) = active_connection(&app).await;
    let artifact = artifact_with_bytes(&app, &token, &connection, b"a W-2, then lost").await;
    let url = format!("{}/files/artifacts/{artifact}", app.base);
    let served = app
        .http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(served.status(), 200);
    // The blob goes missing under the gateway (a wiped disk, a bucket emptied by hand).
    let blobs = app.blob_dir();
    std::fs::remove_dir_all(&blobs).expect("remove the blobs");
    std::fs::create_dir_all(&blobs).expect("an empty blob folder");
    let lost = app
        .http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(lost.status(), 500);
    let request_id = lost
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        !request_id.is_empty(),
        "every answer carries its request id"
    );
    let body: Value = lost.json().await.expect("a JSON body");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "INTERNAL_SERVER_ERROR");
    assert_eq!(error["extensions"]["requestId"], request_id.as_str());
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(&request_id), "{message}");
    for leak in ["blob", "object", "No such file", "not found", "art_"] {
        assert!(
            !message.contains(leak),
            "the message shows `{leak}`: {message}"
        );
    }
}

/// A new job and work on `connection` with one artifact whose bytes were sent with `PUT`:
/// the artifact id.
pub(crate) async fn artifact_with_bytes(
    app: &TestApp,
    token: &str,
    connection: &str,
    bytes: &[u8],
) -> String {
    let (_, work) = job_with_a_work_on(app, token, connection).await;
    let created = call(
        app,
        token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": [{ "name": "scan", "type": "document", "externalId": "scan" }] }),
    )
    .await;
    let artifact = created.assert_ok()["createJobWorkArtifacts"][0]["artifactId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let put = app
        .http
        .put(format!("{}/uploads/artifacts/{artifact}", app.base))
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("put");
    assert!(put.status().is_success(), "{}", put.status());
    artifact
}

/// Files (not folders) anywhere under `dir`.
pub(crate) fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

async fn a_stopped_worker_hands_its_tasks_back(app: TestApp) {
    use taxbridge_domain::tasks::{Owner, Share, TaskKind, TaskStore};
    use taxbridge_domain::time::Timestamp;
    let silent = silent_server().await;
    let (token, _, work) = job_with_a_work(&app).await;
    call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": [{ "name": "w2", "type": "w2", "externalId": "w2", "url": format!("{silent}/w2.pdf") }] }),
    )
    .await
    .assert_ok();
    let other = Owner("wkr_other".into());
    let kinds = [TaskKind::Download];
    let far = Timestamp::from_millis(Timestamp::now().as_millis() + 60_000);
    let share = Share {
        per_workspace: 10,
        ..Share::default()
    };
    // The app's worker holds the task (its download hangs): nobody else can claim it...
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let held = app
        .store
        .claim_tasks(&other, &kinds, Timestamp::now(), far, 10, &share)
        .await
        .expect("claim");
    assert!(held.is_empty(), "the running worker holds its lease");
    // ...until the worker stops: then the task is due at once, not after the lease.
    let _ = app.worker_stop.send(true);
    let mut taken = Vec::new();
    for _ in 0..50 {
        taken = app
            .store
            .claim_tasks(&other, &kinds, Timestamp::now(), far, 10, &share)
            .await
            .expect("claim");
        if !taken.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(taken.len(), 1, "the stopped worker handed its task back");
    assert_eq!(taken[0].attempts, 2);
}

async fn a_dead_workers_tasks_are_taken_over_long_before_their_leases_end(app: TestApp) {
    use taxbridge_domain::tasks::{Owner, Share, TaskKind, TaskStore};
    use taxbridge_domain::time::Timestamp;
    // The app's own worker steps aside: this test plays the workers.
    let _ = app.worker_stop.send(true);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let silent = silent_server().await;
    let (token, _, work) = job_with_a_work(&app).await;
    let inputs: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|n| json!({ "name": n, "type": "w2", "externalId": n, "url": format!("{silent}/{n}.pdf") }))
        .collect();
    call(
        &app,
        &token,
        CREATE_ARTIFACTS,
        json!({ "jobWorkId": work, "inputs": inputs }),
    )
    .await
    .assert_ok();
    let kinds = [TaskKind::Download];
    let share = Share {
        per_workspace: 10,
        ..Share::default()
    };
    let at = |ms: i64| Timestamp::from_millis(Timestamp::now().as_millis() + ms);
    let lease = at(60_000);
    // Three workers each hold one task on a 60 s lease: one that will die (alive for 300 ms),
    // one alive for long, and one from before liveness existed (no row).
    let (dying, living, old) = (
        Owner("wkr_dying".into()),
        Owner("wkr_living".into()),
        Owner("wkr_old".into()),
    );
    app.store
        .heartbeat(&dying, at(300))
        .await
        .expect("heartbeat");
    app.store
        .heartbeat(&living, at(60_000))
        .await
        .expect("heartbeat");
    for owner in [&dying, &living, &old] {
        let held = app
            .store
            .claim_tasks(owner, &kinds, Timestamp::now(), lease, 1, &share)
            .await
            .expect("claim");
        assert_eq!(held.len(), 1);
    }
    assert_eq!(
        app.store
            .take_over_lapsed(Timestamp::now())
            .await
            .expect("look"),
        0
    );
    // The dying worker stops renewing; once its liveness lapses, its task alone is due again.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        app.store
            .take_over_lapsed(Timestamp::now())
            .await
            .expect("take over"),
        1
    );
    let survivor = Owner("wkr_survivor".into());
    let taken = app
        .store
        .claim_tasks(&survivor, &kinds, Timestamp::now(), lease, 10, &share)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1, "only the lapsed worker's task");
    assert_eq!(taken[0].attempts, 2);
    // The lapsed worker is forgotten; asking again hands back nothing more.
    assert_eq!(
        app.store
            .take_over_lapsed(Timestamp::now())
            .await
            .expect("look"),
        0
    );
    // A worker that stops retires its liveness: nothing is left to take over.
    app.store.retire(&living).await.expect("retire");
}

/// A file server for downloads: `/ok/{name}` answers 64 KiB (a PDF by its type), `/missing`
/// 404, `/flaky/{name}` 503 twice then the file, `/private/{name}` the file only with the
/// connection's key. It counts the requests of each path and keeps what `Authorization` each
/// carried.
pub(crate) mod files {
    use axum::{
        extract::{Path, State},
        http::{HeaderMap, StatusCode},
        response::{IntoResponse, Response},
        routing::get,
        Router,
    };
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };

    pub const KEY: &str = "file-key-123";

    #[derive(Default)]
    pub struct Server {
        pub hits: Mutex<HashMap<String, usize>>,
        pub authorizations: Mutex<Vec<Option<String>>>,
    }

    /// The bytes `/ok/{name}` and the others serve for `name`.
    pub fn content(name: &str) -> Vec<u8> {
        (0..64 * 1024)
            .map(|i: usize| (i.wrapping_mul(31) ^ name.len()) as u8)
            .collect()
    }

    impl Server {
        pub fn hits(&self, path: &str) -> usize {
            self.hits
                .lock()
                .map_or(0, |h| h.get(path).copied().unwrap_or(0))
        }
    }

    async fn serve(
        State(server): State<Arc<Server>>,
        Path((mode, name)): Path<(String, String)>,
        headers: HeaderMap,
    ) -> Response {
        let path = format!("/{mode}/{name}");
        let hits = {
            let mut all = server.hits.lock().expect("hits");
            let n = all.entry(path).or_default();
            *n += 1;
            *n
        };
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Ok(mut seen) = server.authorizations.lock() {
            seen.push(authorization.clone());
        }
        let file = || ([("content-type", "application/pdf")], content(&name)).into_response();
        match mode.as_str() {
            "ok" => file(),
            "flaky" if hits <= 2 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            "flaky" => file(),
            "private" if authorization.as_deref() == Some(&format!("Bearer {KEY}")) => file(),
            "private" => StatusCode::UNAUTHORIZED.into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    /// Starts the server on loopback; returns it and its base URL.
    pub async fn start() -> (Arc<Server>, String) {
        let server = Arc::new(Server::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = Router::new()
            .route("/{mode}/{name}", get(serve))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (server, base)
    }
}

/// A triggered job of `works` works with three artifacts each (no URLs, so no worker touches
/// them): (job id, artifact ids by work).
async fn job_of_bare_artifacts(
    app: &TestApp,
    token: &str,
    connection: &str,
    round: u64,
    works_count: usize,
) -> (String, Vec<Vec<String>>) {
    let job = new_job(app, token, connection).await;
    let ids: Vec<String> = (0..works_count)
        .map(|i| format!("r{round}-w-{i}"))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let created = call(
        app,
        token,
        CREATE_WORKS,
        json!({ "connectionJobId": job, "inputs": works(&refs) }),
    )
    .await;
    let mut artifacts = Vec::new();
    for work in created.assert_ok()["createJobWorks"]
        .as_array()
        .expect("works")
    {
        let inputs: Vec<Value> = (0..3)
            .map(|k| json!({ "name": format!("doc {k}"), "type": "document", "externalId": format!("d-{k}") }))
            .collect();
        let made = call(
            app,
            token,
            CREATE_ARTIFACTS,
            json!({ "jobWorkId": work["id"], "inputs": inputs }),
        )
        .await;
        artifacts.push(
            made.assert_ok()["createJobWorkArtifacts"]
                .as_array()
                .expect("artifacts")
                .iter()
                .map(|a| a["artifactId"].as_str().unwrap_or_default().to_owned())
                .collect(),
        );
    }
    call(app, token, TRIGGER, json!({ "id": job }))
        .await
        .assert_ok();
    (job, artifacts)
}

fn stored(n: usize) -> taxbridge_domain::imports::ArtifactOutcome {
    taxbridge_domain::imports::ArtifactOutcome::Success(taxbridge_domain::imports::StoredBytes {
        blob_key: format!("test/{n}"),
        size: 1,
        sha256: "00".repeat(32),
        mime_type: "application/pdf".into(),
    })
}

/// Statuses of the job and its works, by external id.
async fn job_state(app: &TestApp, token: &str, job: &str) -> (String, Vec<(String, String)>) {
    let answer = call(
        app,
        token,
        "query($j: [ID!]) { me { workspaces { connections { connectionJobs(filters: {ids: $j}) { status } jobWorks(limit: 100) { connectionJobId work { externalId status } } } } } }",
        json!({ "j": [job] }),
    )
    .await;
    let connection = answer.assert_ok()["me"]["workspaces"][0]["connections"][0].clone();
    let status = connection["connectionJobs"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut works: Vec<(String, String)> = connection["jobWorks"]
        .as_array()
        .expect("works")
        .iter()
        .filter(|w| w["connectionJobId"] == job)
        .map(|w| {
            (
                w["work"]["externalId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                w["work"]["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    works.sort();
    (status, works)
}

/// Finishing artifacts of one job no longer takes turns on the job's row: only a finish that
/// settles a work does. Every outcome recorded at once (PostgreSQL runs them on many
/// connections) must still leave each work and the job settled exactly as the rule says.
async fn artifacts_finished_side_by_side_settle_every_work_and_the_job(app: TestApp) {
    use taxbridge_domain::ids::ArtifactId;
    let (token, connection) = active_connection(&app).await;
    for round in 0..5 {
        let (job, artifacts) = job_of_bare_artifacts(&app, &token, &connection, round, 12).await;
        let all: Vec<(usize, usize, String)> = artifacts
            .iter()
            .enumerate()
            .flat_map(|(w, ids)| {
                ids.iter()
                    .enumerate()
                    .map(move |(k, id)| (w, k, id.clone()))
            })
            .collect();
        // Work 0's second file fails; everything else arrives.
        let finishing = all.iter().map(|(w, k, id)| {
            let store = app.store.clone();
            let outcome = if (*w, *k) == (0, 1) {
                taxbridge_domain::imports::ArtifactOutcome::Error {
                    code: "HTTP_ERROR".into(),
                    message: "the file's server answered HTTP 404".into(),
                    http_status: Some(404),
                }
            } else {
                stored(w * 3 + k)
            };
            let id = ArtifactId::from_string(id.clone());
            async move { finish(&store, &id, &outcome).await }
        });
        let results = futures_util::future::join_all(finishing).await;
        for result in &results {
            assert!(matches!(result, Ok(true)), "round {round}: {result:?}");
        }
        let (status, works) = job_state(&app, &token, &job).await;
        assert_eq!(status, "completed", "round {round}");
        for (external, work_status) in works {
            let expected = if external.ends_with("-w-0") {
                "needs_attention"
            } else {
                "ready"
            };
            assert_eq!(work_status, expected, "round {round}: {external}");
        }
    }
}

/// A cancel while the job's last artifacts finish: whichever wins, the job ends `cancelled` or
/// `completed`, every work agrees with its artifacts, and neither side fails (the lock order
/// leaves no deadlock for the database to break).
async fn a_cancel_racing_the_last_artifacts_ends_in_one_consistent_state(app: TestApp) {
    use taxbridge_domain::{
        ids::{ArtifactId, JobId},
        imports::ImportStore,
        time::Timestamp,
    };
    let (token, connection) = active_connection(&app).await;
    for round in 0..4 {
        let (job, artifacts) = job_of_bare_artifacts(&app, &token, &connection, round, 8).await;
        let finishing = artifacts.iter().flatten().enumerate().map(|(n, id)| {
            let store = app.store.clone();
            let id = ArtifactId::from_string(id.clone());
            async move { finish(&store, &id, &stored(n)).await.map(|_| ()) }
        });
        let store = app.store.clone();
        let job_id = JobId::from_string(job.clone());
        let cancelling = async move {
            // Into the middle of the finishes, a little later each round.
            tokio::time::sleep(std::time::Duration::from_millis(round * 2)).await;
            store
                .cancel_job(
                    &job_id,
                    Timestamp::now(),
                    &AuditEvent::by_system(Action::JobCancelled),
                )
                .await
                .map(|_| ())
        };
        let (finished, cancelled) =
            tokio::join!(futures_util::future::join_all(finishing), cancelling);
        assert!(
            cancelled.is_ok(),
            "round {round}: cancel failed: {cancelled:?}"
        );
        for result in &finished {
            assert!(result.is_ok(), "round {round}: a finish failed: {result:?}");
        }
        let (status, works) = job_state(&app, &token, &job).await;
        match status.as_str() {
            "completed" => {
                for (external, work_status) in &works {
                    assert_eq!(work_status, "ready", "round {round}: {external}");
                }
            }
            "cancelled" => {
                for (external, work_status) in &works {
                    assert!(
                        work_status == "ready" || work_status == "cancelled",
                        "round {round}: {external} is {work_status}"
                    );
                }
            }
            other => panic!("round {round}: the job is {other}"),
        }
    }
}
