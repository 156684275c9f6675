//! What a careless client and an attacker send, replayed on both databases: each answer is
//! typed (`extensions.code`, a message saying what to fix), tells nothing about other
//! tenants, costs the server little, and leaves it serving.

use crate::support::TestApp;
use serde_json::{json, Value};
use std::time::Duration;
use taxbridge_api::RateLimitSettings;
use taxbridge_testkit::Database;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

taxbridge_testkit::per_database!(
    crate::bad_input::strict;
    slow_and_idle_connections_are_closed_while_normal_clients_are_served,
    a_body_that_stalls_answers_408,
    documents_too_large_to_parse_cheaply_are_refused_before_parsing,
    transport_mistakes_answer_typed_json,
    the_graphql_over_http_media_types_are_negotiated,
    get_runs_queries_and_refuses_mutations,
    unknown_directives_fail_validation,
    a_kept_document_checks_new_variables_as_strictly_as_a_new_one,
    names_with_control_or_direction_characters_are_bad_user_input,
    deep_link_paths_over_two_kib_are_bad_user_input,
    a_crafted_name_blocks_no_slug_and_slugs_count_no_other_tenant,
    partners_and_the_operator_cannot_be_added_and_existing_names_are_not_shown,
    a_partner_reaches_another_partners_workspace_as_not_found,
    list_filters_over_five_hundred_values_are_bad_user_input,
    nested_lists_spread_over_aliases_are_too_complex,
    answers_over_the_size_cap_are_refused,
    wrong_api_keys_are_rate_limited_after_twenty_failures,
    requests_past_a_keys_quota_answer_429,
    large_bodies_are_read_only_for_uploads_and_stalls_free_their_slots,
);

/// A server with short connection deadlines and small quotas, so the limits show in seconds.
pub async fn strict(database: Database) -> Option<TestApp> {
    TestApp::spawn_with(database, |settings| {
        settings.limits.max_body_bytes = 4 * 1024 * 1024;
        settings.limits.max_response_bytes = 64 * 1024;
        settings.limits.header_read_timeout_seconds = 1;
        settings.limits.idle_timeout_seconds = 2;
        settings.limits.body_read_timeout_seconds = 1;
        settings.limits.max_connections = 1_000;
        settings.rate_limits = RateLimitSettings {
            failed_logins_per_minute: 20,
            requests_per_second: 2,
            request_burst: 30,
        };
    })
    .await
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Whether the server has closed `stream`: a read sees the end (or a reset) within 500 ms.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Sends raw bytes and reads what comes back until the server closes or 3 s pass.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr(app)).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn json_body(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn assert_healthy(app: &TestApp) {
    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    app.me(None).await;
}

async fn slow_and_idle_connections_are_closed_while_normal_clients_are_served(app: TestApp) {
    let mut idle = Vec::new();
    let mut slow = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(addr(&app)).await.expect("connect"));
        let mut stream = TcpStream::connect(addr(&app)).await.expect("connect");
        stream
            .write_all(b"POST /graphql HTTP/1.1\r\nHost: taxbridge\r\nContent-Type: appl")
            .await
            .expect("half a header");
        slow.push(stream);
    }
    // A kept-alive connection that made one request, then went quiet.
    let mut kept = TcpStream::connect(addr(&app)).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: taxbridge\r\n\r\n")
        .await
        .expect("request");
    let mut first = [0u8; 512];
    let n = kept.read(&mut first).await.expect("answer");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));

    // While 200 sockets hang on, a normal client is served at once.
    let (_, token) = app.customer_token("jane@smith-cpa.com").await;
    app.me(Some(&token)).await.assert_ok();

    // Past the header deadline (1 s) and the idle deadline (2 s), every one is closed.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    for (i, stream) in idle.iter_mut().chain(slow.iter_mut()).enumerate() {
        assert!(closed_by_server(stream).await, "socket {i} is still open");
    }
    assert!(
        closed_by_server(&mut kept).await,
        "the idle keep-alive is still open"
    );
    app.me(Some(&token)).await.assert_ok();
}

async fn a_body_that_stalls_answers_408(app: TestApp) {
    let answer = raw_exchange(
        &app,
        b"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"query\":",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        json_body(&answer)["errors"][0]["extensions"]["code"],
        "REQUEST_TIMEOUT"
    );
    assert_healthy(&app).await;
}

/// A body over the usual limit is read only when it may be an `uploadConnectionFile` (a
/// declared length within the upload limit) from a caller whose token verifies before a slot
/// is taken or a byte read, at most four at a time and two per key; bodies that then stall
/// answer 408 or 503 and give their slots back.
async fn large_bodies_are_read_only_for_uploads_and_stalls_free_their_slots(app: TestApp) {
    let large = 8 * 1024 * 1024; // over this server's 4 MiB, within the upload limit
    let (_, token) = app.customer_token("jane@smith-cpa.com").await;
    for (request, status) in [
        (format!("POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {large}\r\n\r\n{{"), "413"),
        (format!("POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{{", 64 * 1024 * 1024), "413"),
    ] {
        let answer = raw_exchange(&app, request.as_bytes()).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{answer}");
    }
    let stalled = |token: &str| {
        format!("POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {large}\r\n\r\n{{\"query\":")
    };
    // Junk tokens take no slot: sixteen slow senders with one are refused at once, unread.
    let started = std::time::Instant::now();
    let junk = futures_util::future::join_all(
        (0..16).map(|_| async { raw_exchange(&app, stalled("not-a-token").as_bytes()).await }),
    )
    .await;
    for answer in &junk {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert_eq!(
            json_body(answer)["errors"][0]["extensions"]["code"],
            "UNAUTHENTICATED"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "junk tokens were refused without waiting for their bodies"
    );
    // One key holds at most two slots: a third large body of the same key is refused.
    let mine = futures_util::future::join_all(
        (0..3).map(|_| async { raw_exchange(&app, stalled(&token).as_bytes()).await }),
    )
    .await;
    let timed_out = mine
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 408"))
        .count();
    let limited = mine
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 429"))
        .count();
    assert_eq!((timed_out, limited), (2, 1), "{mine:?}");
    // Three keys, two stalled bodies each: four slots in all, the rest wait and give up.
    let mut tokens = vec![token.clone()];
    for email in ["omar@smith-cpa.com", "li@smith-cpa.com"] {
        tokens.push(app.customer_token(email).await.1);
    }
    let requests: Vec<String> = tokens
        .iter()
        .flat_map(|t| [stalled(t), stalled(t)])
        .collect();
    let app = &app;
    let answers = futures_util::future::join_all(
        requests
            .iter()
            .map(|request| raw_exchange(app, request.as_bytes())),
    )
    .await;
    for answer in &answers {
        assert!(
            answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
    }
    assert!(
        answers
            .iter()
            .filter(|a| a.starts_with("HTTP/1.1 408"))
            .count()
            >= 4
    );
    // The slots are back: a stalled large body is read (and times out) again.
    let again = raw_exchange(app, stalled(&token).as_bytes()).await;
    assert!(again.starts_with("HTTP/1.1 408"), "{again}");
    assert_healthy(app).await;
}

async fn documents_too_large_to_parse_cheaply_are_refused_before_parsing(app: TestApp) {
    // 900 KB of fields: over the 64 KiB document limit.
    let huge = format!("{{{}}}", " a".repeat(450_000));
    // 60 KB: under the size limit, but 30,000 tokens.
    let many = format!("{{{}}}", " a".repeat(30_000));
    for (query, says) in [(&huge, "bytes"), (&many, "tokens")] {
        let response = app.graphql(json!({ "query": query }), None, None).await;
        assert_eq!(response.code(), "QUERY_TOO_COMPLEX", "{}", response.body);
        assert!(response.message().contains(says), "{}", response.message());
    }
    assert_healthy(&app).await;
}

async fn transport_mistakes_answer_typed_json(app: TestApp) {
    let http = &app.http;
    let cases = [
        (http.get(format!("{}/nope", app.base)), 404, "NOT_FOUND"),
        (http.delete(&app.endpoint), 405, "METHOD_NOT_ALLOWED"),
        (
            http.post(format!("{}/healthz", app.base)),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            http.post(&app.endpoint)
                .header("Content-Type", "text/plain")
                .body(r#"{"query":"{ __typename }"}"#),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            http.post(&app.endpoint)
                .header("Content-Type", "multipart/form-data; boundary=x")
                .body("--x\r\n\r\n{ __typename }\r\n--x--"),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            http.post(&app.endpoint)
                .body(r#"{"query":"{ __typename }"}"#),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            http.post(&app.endpoint)
                .header("Content-Type", "application/json; charset=latin1")
                .body(r#"{"query":"{ __typename }"}"#),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            http.post(&app.endpoint)
                .header("Accept", "text/html")
                .json(&json!({ "query": "{ __typename }" })),
            406,
            "NOT_ACCEPTABLE",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.expect("send");
        assert_eq!(response.status(), status, "{code}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
        assert!(body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Heads longer than any client sends: typed 414 and 431.
    let long_uri = app
        .http
        .get(format!("{}/graphql?query={}", app.base, "a".repeat(20_000)))
        .send()
        .await
        .expect("send");
    assert_eq!(long_uri.status(), 414);
    let body: Value = long_uri.json().await.expect("JSON");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    let mut many = app.http.get(format!("{}/healthz", app.base));
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let many = many.send().await.expect("send");
    assert_eq!(many.status(), 431);
    let body: Value = many.json().await.expect("JSON");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    // A chunked body that breaks off is malformed (400), not "too large" (413).
    let answer = raw_exchange(
        &app,
        b"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        json_body(&answer)["errors"][0]["extensions"]["code"],
        "BAD_REQUEST"
    );
    assert_healthy(&app).await;
}

async fn the_graphql_over_http_media_types_are_negotiated(app: TestApp) {
    let send = |accept: &'static str, query: &'static str| {
        app.http
            .post(&app.endpoint)
            .header("Accept", accept)
            .json(&json!({ "query": query }))
            .send()
    };
    let ok = send("application/graphql-response+json", "{ __typename }")
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("application/graphql-response+json")));
    for bad in ["{ __typename", "{ nope }"] {
        let refused = send("application/graphql-response+json", bad)
            .await
            .expect("send");
        assert_eq!(refused.status(), 400, "{bad}");
        let body: Value = refused.json().await.expect("JSON");
        assert!(body.get("data").is_none(), "{body}");
        assert!(body["errors"][0]["extensions"]["code"].is_string());
    }
    // The docs' clients send application/json (or nothing) and get 200 with the errors.
    let docs = send("application/json", "{ nope }").await.expect("send");
    assert_eq!(docs.status(), 200);
    assert!(docs.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("application/json")));
}

async fn get_runs_queries_and_refuses_mutations(app: TestApp) {
    let query = app
        .http
        .get(&app.endpoint)
        .query(&[("query", "{ __typename }")])
        .send()
        .await
        .expect("send");
    assert_eq!(query.status(), 200);
    let body: Value = query.json().await.expect("JSON");
    assert_eq!(body["data"]["__typename"], "Query");
    let mutation = app
        .http
        .get(&app.endpoint)
        .query(&[(
            "query",
            "mutation { loginViaPersonalApiToken(token: \"x\") { accessToken } }",
        )])
        .send()
        .await
        .expect("send");
    assert_eq!(mutation.status(), 405);
    let body: Value = mutation.json().await.expect("JSON");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "METHOD_NOT_ALLOWED"
    );
    let page = app.http.get(&app.endpoint).send().await.expect("send");
    assert!(page.text().await.unwrap_or_default().contains("GraphiQL"));
}

async fn unknown_directives_fail_validation(app: TestApp) {
    let response = app
        .graphql(json!({ "query": "{ __typename @foo }" }), None, None)
        .await;
    assert_eq!(
        response.code(),
        "GRAPHQL_VALIDATION_FAILED",
        "{}",
        response.body
    );
    assert!(
        response.message().contains("@foo"),
        "{}",
        response.message()
    );
}

async fn names_with_control_or_direction_characters_are_bad_user_input(app: TestApp) {
    let token = app.partner_token("qount").await;
    for name in ["Smith\u{0}CPA", "Smith \u{202E}APC", "Tab\tFirm"] {
        let response = app.create_workspace(&token, name).await;
        assert_eq!(
            response.code(),
            "BAD_USER_INPUT",
            "{name:?}: {}",
            response.body
        );
        assert_eq!(
            response.body["errors"][0]["extensions"]["field"],
            "input.displayName"
        );
    }
    assert!(
        app.my_workspaces(&token).await.is_empty(),
        "nothing was stored"
    );
}

async fn deep_link_paths_over_two_kib_are_bad_user_input(app: TestApp) {
    let token = app.partner_token("qount").await;
    app.create_workspace(&token, "Smith CPA").await.assert_ok();
    let path = format!("/{}", "a".repeat(100 * 1024));
    let response = app
        .graphql(
            json!({
                "query": "query($p: String) { me { workspaces { deepLink(path: $p) } } }",
                "variables": { "p": path }
            }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.code(), "BAD_USER_INPUT", "{}", response.body);
    assert!(
        response.message().contains("2048"),
        "{}",
        response.message()
    );
}

fn slug_of(response: &crate::support::Gql) -> String {
    response.assert_ok()["createWorkspace"]["slug"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn a_crafted_name_blocks_no_slug_and_slugs_count_no_other_tenant(app: TestApp) {
    let a = app.partner_token("qount").await;
    let b = app.partner_token("other").await;
    assert_eq!(
        slug_of(&app.create_workspace(&a, "Zeta Tax").await),
        "zeta-tax"
    );
    app.create_workspace(&a, "Zeta Tax 18446744073709551615")
        .await
        .assert_ok();
    for name in ["Zeta Tax", "ZETA  tax", "zeta-tax"] {
        let slug = slug_of(&app.create_workspace(&b, name).await);
        let suffix = slug.strip_prefix("zeta-tax-").unwrap_or_default();
        assert_eq!(suffix.len(), 6, "{slug}");
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{slug}"
        );
    }
    app.create_workspace(&a, "Acme Client One")
        .await
        .assert_ok();
    let b_slug = slug_of(&app.create_workspace(&b, "Acme Client One").await);
    assert_ne!(
        b_slug, "acme-client-one-2",
        "a counter tells how many others exist"
    );
}

async fn partners_and_the_operator_cannot_be_added_and_existing_names_are_not_shown(app: TestApp) {
    let a = app.partner_token("qount").await;
    app.partner_token("other").await;
    let workspace = app.create_workspace(&a, "Smith CPA").await;
    let id = workspace.assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for outsider in ["eng@other.io", "owner@taxbridge.local"] {
        let response = app.add_users(&a, &id, &["new@smith.com", outsider]).await;
        assert_eq!(response.code(), "BAD_USER_INPUT", "{}", response.body);
        assert!(
            response.message().contains(outsider),
            "{}",
            response.message()
        );
        assert_eq!(
            response.body["errors"][0]["extensions"]["field"],
            "userEmails[1]"
        );
    }
    // An existing customer (named "Jane Doe" elsewhere) is added, and her name not shown.
    app.customer_with_key("jane@smith-cpa.com").await;
    let added = app
        .add_users(&a, &id, &["jane@smith-cpa.com", "new@smith.com"])
        .await;
    let added = added.assert_ok()["addUsersToTheWorkspace"].clone();
    assert_eq!(added[0]["email"], "jane@smith-cpa.com");
    assert_eq!(added[0]["name"], Value::Null);
    assert_eq!(added[1]["email"], "new@smith.com");
}

async fn a_partner_reaches_another_partners_workspace_as_not_found(app: TestApp) {
    let a = app.partner_token("qount").await;
    let b = app.partner_token("other").await;
    let id = app.create_workspace(&a, "Smith CPA").await.assert_ok()["createWorkspace"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let missing = app.add_users(&b, "wsp_does_not_exist", &["x@y.com"]).await;
    let foreign = app.add_users(&b, &id, &["x@y.com"]).await;
    assert_eq!(foreign.code(), "NOT_FOUND");
    assert_eq!(
        foreign.body["errors"][0]["message"],
        missing.body["errors"][0]["message"]
    );
}

async fn list_filters_over_five_hundred_values_are_bad_user_input(app: TestApp) {
    let token = app.partner_token("qount").await;
    let ids: Vec<String> = (0..40_000).map(|i| format!("wsp_{i}")).collect();
    let slugs: Vec<String> = (0..100_000).map(|i| format!("s{i}")).collect();
    for (filters, field) in [
        (json!({ "ids": ids }), "filters.ids"),
        (json!({ "slugs": slugs }), "filters.slugs"),
        (json!({ "ids": &ids[..501] }), "filters.ids"),
    ] {
        let response = app
            .graphql(
                json!({
                    "query": "query($f: WorkspaceFilters) { me { workspaces(filters: $f) { id } } }",
                    "variables": { "f": filters }
                }),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(response.code(), "BAD_USER_INPUT", "{}", response.message());
        assert_eq!(response.body["errors"][0]["extensions"]["field"], field);
    }
    let fine = app
        .graphql(
            json!({
                "query": "query($f: WorkspaceFilters) { me { workspaces(filters: $f) { id } } }",
                "variables": { "f": { "ids": &ids[..500] } }
            }),
            Some(&token),
            None,
        )
        .await;
    fine.assert_ok();
}

async fn nested_lists_spread_over_aliases_are_too_complex(app: TestApp) {
    let (_, token) = app.customer_token("jane@smith-cpa.com").await;
    let aliases: String = (0..499)
        .map(|i| {
            format!("a{i}: me {{ workspaces(limit: 500) {{ members(limit: 500) {{ id }} }} }} ")
        })
        .collect();
    let response = app
        .graphql(
            json!({ "query": format!("{{ {aliases} }}") }),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        response.code(),
        "QUERY_TOO_COMPLEX",
        "{}",
        response.message()
    );
}

async fn answers_over_the_size_cap_are_refused(app: TestApp) {
    let aliases: String = (0..40)
        .map(|i| {
            format!(
                "s{i}: __schema {{ types {{ name description fields {{ name description }} }} }} "
            )
        })
        .collect();
    let response = app
        .graphql(json!({ "query": format!("{{ {aliases} }}") }), None, None)
        .await;
    assert_eq!(
        response.code(),
        "QUERY_TOO_COMPLEX",
        "{}",
        response.message()
    );
    assert!(
        response.message().contains("65536"),
        "{}",
        response.message()
    );
    let small = app
        .graphql(
            json!({ "query": "{ __schema { queryType { name } } }" }),
            None,
            None,
        )
        .await;
    small.assert_ok();
}

async fn wrong_api_keys_are_rate_limited_after_twenty_failures(app: TestApp) {
    for i in 0..20 {
        let response = app.login(&format!("tb_pat_wrong{i:032}")).await;
        assert_eq!(response.code(), "UNAUTHENTICATED", "attempt {i}");
    }
    // Malformed keys count too; the 21st failure goes over the quota.
    app.login("not a key at all").await;
    let response = app
        .http
        .post(&app.endpoint)
        .json(&json!({
            "query": "mutation L($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } }",
            "variables": { "k": "tb_pat_another_guess" }
        }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    let body: Value = response.json().await.expect("JSON");
    let ext = &body["errors"][0]["extensions"];
    assert_eq!(ext["code"], "RATE_LIMITED");
    assert!(ext["retryAfterSeconds"]
        .as_u64()
        .is_some_and(|s| s >= 1 && s == retry));
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    assert!(
        metrics.contains("taxbridge_rate_limited_total{limit=\"failed_logins_per_address\"}"),
        "{metrics}"
    );
}

async fn requests_past_a_keys_quota_answer_429(app: TestApp) {
    let (_, token) = app.customer_token("jane@smith-cpa.com").await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(app.me(Some(&token)).await.status);
    }
    assert!(statuses[..20].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // Another key is not held back by this one's quota.
    let (_, other) = app.customer_token("joe@smith-cpa.com").await;
    app.me(Some(&other)).await.assert_ok();
}

/// A document that validated once is kept, and later requests with it skip the rules that do
/// not depend on variables. Bad variable values still answer exactly as they do the first
/// time the document is seen.
async fn a_kept_document_checks_new_variables_as_strictly_as_a_new_one(app: TestApp) {
    let token = app.partner_token("keptdoc").await;
    let query = "query W($n: Int, $s: SortBy, $f: WorkspaceFilters) { me { workspaces(limit: $n, sortBy: $s, filters: $f) { id } } }";
    let bad = [
        json!({ "n": "ten", "s": { "field": "createdAt", "order": "DESC" }, "f": {} }),
        json!({ "n": 5, "s": { "field": "createdAt", "order": "SIDEWAYS" }, "f": {} }),
        json!({ "n": 5, "s": { "order": "DESC" }, "f": {} }),
        json!({ "n": 5, "s": { "field": "createdAt", "order": "DESC" }, "f": { "ids": [null] } }),
        json!({ "n": 5, "s": { "field": "createdAt", "order": "DESC" }, "f": { "idz": ["a"] } }),
    ];
    let ask = |variables: &Value| {
        app.graphql(
            json!({ "query": query, "variables": variables }),
            Some(&token),
            None,
        )
    };
    let mut first_answers = Vec::new();
    for variables in &bad {
        let answer = ask(variables).await;
        assert_eq!(
            answer.code(),
            "GRAPHQL_VALIDATION_FAILED",
            "{}",
            answer.body
        );
        first_answers.push(answer);
    }
    // Now the document validates, and is kept.
    for _ in 0..2 {
        let good = ask(&json!({ "n": 5, "s": { "field": "createdAt", "order": "DESC" }, "f": { "ids": ["wsp_x"] } })).await;
        assert_eq!(good.assert_ok()["me"]["workspaces"], json!([]));
    }
    for (variables, first) in bad.iter().zip(&first_answers) {
        let again = ask(variables).await;
        assert_eq!(
            (again.status, &again.body),
            (first.status, &first.body),
            "{variables}"
        );
    }
    // A null or missing variable, allowed here, still runs (on the strict path).
    let omitted = ask(&json!({ "n": null })).await;
    assert!(omitted.assert_ok()["me"]["workspaces"].is_array());
}
