//! The HTTP and GraphQL transport: error codes, limits, usage counting, operational routes.

use crate::support::TestApp;
use serde_json::json;
use std::time::{Duration, Instant};
use taxbridge_domain::{ids::ApiKeyId, store::StoreHealth, time::Timestamp, usage::UsageStore};

taxbridge_testkit::per_database!(
    crate::support::TestApp::spawn;
    a_query_that_does_not_parse_is_graphql_parse_failed,
    a_query_that_does_not_fit_the_schema_is_graphql_validation_failed,
    a_missing_variable_is_graphql_validation_failed,
    a_repeated_query_text_answers_each_request_for_itself,
    an_over_complex_or_over_deep_query_is_query_too_complex,
    a_body_that_is_not_a_graphql_request_is_a_400,
    a_body_over_the_limit_is_a_413,
    every_response_carries_a_request_id,
    requests_are_counted_per_day_key_platform_and_operation,
    a_database_failure_is_masked_and_points_into_the_log,
    health_readiness_and_metrics_answer,
    get_on_graphql_serves_graphiql,
);

async fn a_query_that_does_not_parse_is_graphql_parse_failed(app: TestApp) {
    let response = app
        .graphql(json!({ "query": "query Me { me { id name " }), None, None)
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.code(), "GRAPHQL_PARSE_FAILED", "{}", response.body);
}

async fn a_query_that_does_not_fit_the_schema_is_graphql_validation_failed(app: TestApp) {
    let response = app
        .graphql(json!({ "query": "{ me { id shoeSize } }" }), None, None)
        .await;
    assert_eq!(
        response.code(),
        "GRAPHQL_VALIDATION_FAILED",
        "{}",
        response.body
    );
    assert!(
        response.message().contains("shoeSize"),
        "{}",
        response.message()
    );
    let response = app
        .graphql(json!({ "query": "query A { me { id } } query B { me { name } }", "operationName": "C" }), None, None)
        .await;
    assert_eq!(
        response.code(),
        "GRAPHQL_VALIDATION_FAILED",
        "{}",
        response.body
    );
}

async fn a_missing_variable_is_graphql_validation_failed(app: TestApp) {
    let response = app
        .graphql(
            json!({ "query": "mutation L($apiKey: String!) { loginViaPersonalApiToken(token: $apiKey) { accessToken } }" }),
            None,
            None,
        )
        .await;
    assert_eq!(
        response.code(),
        "GRAPHQL_VALIDATION_FAILED",
        "{}",
        response.body
    );
}

/// Parsed documents are kept by query text; each request must still be validated and run
/// with its own variables and operation name, and `@skip` on one request must not stick.
async fn a_repeated_query_text_answers_each_request_for_itself(app: TestApp) {
    let token = app.partner_token("qount").await;
    for name in ["Alpha", "Bravo"] {
        app.create_workspace(&token, name).await.assert_ok();
    }
    let query = "query A($n: Int, $skip: Boolean!) { me { workspaces(limit: $n) { slug displayName @skip(if: $skip) } } } query B { me { name } }";
    let run = |operation: &str, variables: serde_json::Value| {
        app.graphql(
            json!({ "query": query, "operationName": operation, "variables": variables }),
            Some(&token),
            None,
        )
    };
    for _ in 0..2 {
        let one = run("A", json!({ "n": 1, "skip": true })).await;
        assert_eq!(
            one.assert_ok()["me"]["workspaces"],
            json!([{ "slug": "alpha" }])
        );
        let two = run("A", json!({ "n": 2, "skip": false })).await;
        assert_eq!(
            two.assert_ok()["me"]["workspaces"],
            json!([{ "slug": "alpha", "displayName": "Alpha" }, { "slug": "bravo", "displayName": "Bravo" }])
        );
        let name = run("B", json!({})).await;
        assert_eq!(name.assert_ok()["me"]["name"], "qount");
        let wrong = run("A", json!({ "n": "two", "skip": false })).await;
        assert_eq!(wrong.code(), "GRAPHQL_VALIDATION_FAILED", "{}", wrong.body);
        let unknown = run("C", json!({})).await;
        assert_eq!(
            unknown.code(),
            "GRAPHQL_VALIDATION_FAILED",
            "{}",
            unknown.body
        );
    }
}

async fn an_over_complex_or_over_deep_query_is_query_too_complex(app: TestApp) {
    // Each alias asks for 500 workspaces: a list counts its limit times its items' fields.
    let aliases: String = (0..25)
        .map(|i| format!("f{i}: me {{ workspaces(limit: 500) {{ id slug }} }} "))
        .collect();
    let mut deep = "name".to_owned();
    for _ in 0..14 {
        deep = format!("ofType {{ {deep} }}");
    }
    let too_complex = format!("{{ {aliases} }}");
    let too_deep = format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}");
    // Twice each: the second time the document is found parsed, and is refused all the same.
    for query in [&too_complex, &too_complex, &too_deep, &too_deep] {
        let response = app.graphql(json!({ "query": query }), None, None).await;
        assert_eq!(
            response.code(),
            "QUERY_TOO_COMPLEX",
            "{}",
            response.message()
        );
    }
}

async fn a_body_that_is_not_a_graphql_request_is_a_400(app: TestApp) {
    for body in ["nonsense", "[1, 2]", "{\"variables\": {}}"] {
        let response = app
            .http
            .post(&app.endpoint)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 400, "{body}");
        let json: serde_json::Value = response.json().await.expect("a JSON error");
        assert_eq!(
            json["errors"][0]["extensions"]["code"],
            "GRAPHQL_PARSE_FAILED"
        );
        assert!(
            json["errors"][0]["message"]
                .as_str()
                .unwrap_or("")
                .contains("\"query\""),
            "{json}"
        );
    }
}

async fn a_body_over_the_limit_is_a_413(app: TestApp) {
    let padding = "x".repeat(70 * 1024);
    let response = app
        .http
        .post(&app.endpoint)
        .json(&json!({ "query": "{ me { id } }", "variables": { "padding": padding } }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    let json: serde_json::Value = response.json().await.expect("a JSON error");
    assert_eq!(json["errors"][0]["extensions"]["field"], "body");
}

async fn every_response_carries_a_request_id(app: TestApp) {
    let response = app
        .http
        .post(&app.endpoint)
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .expect("send");
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(id.len(), 36, "a UUID request id, got {id:?}");
}

async fn requests_are_counted_per_day_key_platform_and_operation(app: TestApp) {
    let (_, secret, key_id) = app.customer_with_key("jane@smith-cpa.com").await;
    let token = app.token_for(&secret).await; // login, platform tax-firm-a
    for _ in 0..3 {
        app.graphql(
            json!({ "query": "query Me { me { id } }" }),
            Some(&token),
            Some("tax-firm-a"),
        )
        .await
        .assert_ok();
    }
    app.graphql(
        json!({ "query": "{ me { id } }" }),
        Some(&token),
        Some("qount"),
    )
    .await
    .assert_ok();
    app.graphql(json!({ "query": "{ me { id } }" }), Some(&token), None)
        .await
        .assert_ok();

    let today = Timestamp::now().day();
    let key = ApiKeyId::from_string(key_id);
    let expected = [
        ("(unspecified)", "me", 1),
        ("qount", "me", 1),
        ("tax-firm-a", "loginViaPersonalApiToken", 1),
        ("tax-firm-a", "me", 3),
    ];
    let started = Instant::now();
    loop {
        let rows = app.store.usage_since(&today).await.expect("usage");
        let mine: Vec<(&str, &str, u64)> = rows
            .iter()
            .filter(|r| r.api_key_id.as_ref() == Some(&key))
            .map(|r| (r.source_platform.as_str(), r.operation.as_str(), r.count))
            .collect();
        if mine == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "usage never reached {expected:?}: {mine:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_database_failure_is_masked_and_points_into_the_log(app: TestApp) {
    // Break the database under the running server: the login query will fail.
    let (_, secret, _) = app.customer_with_key("jane@smith-cpa.com").await;
    let saboteur = taxbridge_testkit::drop_table(&app.database_url, "api_keys").await;
    saboteur.expect("drop table");
    let response = app.login(&secret).await;
    assert_eq!(
        response.code(),
        "INTERNAL_SERVER_ERROR",
        "{}",
        response.body
    );
    let request_id = response.body["errors"][0]["extensions"]["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(request_id.len(), 36, "{}", response.body);
    let message = response.message();
    assert!(message.contains(&request_id), "{message}");
    assert!(
        !message.contains("api_keys") && !message.to_lowercase().contains("sql"),
        "leaked: {message}"
    );
}

async fn health_readiness_and_metrics_answer(app: TestApp) {
    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], app.store.backend());

    app.me(None).await;
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("taxbridge_http_requests_total{route=\"/graphql\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("taxbridge_graphql_errors_total{code=\"UNAUTHENTICATED\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("taxbridge_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

/// GraphiQL comes whole from the gateway: the page, and every script and stylesheet it names,
/// from this origin, under a policy that allows no other.
async fn get_on_graphql_serves_graphiql(app: TestApp) {
    let page = app.http.get(&app.endpoint).send().await.expect("get");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.expect("html");
    let assets: Vec<String> = html
        .split(['"', '\''])
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_owned)
        .collect();
    assert_eq!(assets.len(), 6, "{html}");
    for asset in &assets {
        let got = app
            .http
            .get(format!("{}{asset}", app.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(got.status(), 200, "{asset}");
        let kind = got.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            (asset.ends_with(".js") && kind.starts_with("text/javascript"))
                || (asset.ends_with(".css") && kind.starts_with("text/css")),
            "{asset}: {kind}"
        );
        assert_eq!(got.headers()["x-content-type-options"], "nosniff");
        assert!(!got.bytes().await.expect("body").is_empty());
    }
    let init = app
        .http
        .get(format!("{}{}", app.base, assets[5]))
        .send()
        .await
        .expect("init")
        .text()
        .await
        .expect("text");
    assert!(init.contains("/graphql"), "{init}");
    let missing = app
        .http
        .get(format!("{}/assets/graphiql/3.9.0/secrets.toml", app.base))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404);
}

mod blob_store_down {
    taxbridge_testkit::per_database!(
        crate::support::TestApp::spawn;
        readyz_is_unavailable_while_the_blob_store_does_not_answer,
    );
    use super::*;
}

/// An S3 endpoint that answers every request 503 and counts the connections it gets.
async fn failing_s3() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let asked = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (endpoint, asked)
}

async fn readyz_is_unavailable_while_the_blob_store_does_not_answer(app: TestApp) {
    use std::sync::atomic::Ordering;
    let (endpoint, asked) = failing_s3().await;
    // A node on the same database whose blob store fails.
    let node = app
        .another_node(|settings| {
            settings.blobs.url = Some("s3://taxbridge/blobs".into());
            settings.blobs.endpoint = Some(endpoint.clone());
            settings.blobs.access_key_id = Some("readiness-key".into());
            settings.blobs.secret_access_key = Some("readiness-secret-value".to_owned().into());
        })
        .await;
    let readyz = |base: String| {
        let http = node.http.clone();
        async move {
            let response = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .expect("readyz");
            let status = response.status().as_u16();
            (status, response.text().await.expect("text"))
        }
    };
    let (status, body) = readyz(node.base.clone()).await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["reason"], "the blob store did not answer", "{body}");
    assert!(
        !body.to_string().contains("readiness-secret-value"),
        "{body}"
    );
    assert!(asked.load(Ordering::SeqCst) >= 1, "the store was asked");
    // The answer stands for a few seconds: the next check does not ask the store again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = asked.load(Ordering::SeqCst);
    let (status, _) = readyz(node.base.clone()).await;
    assert_eq!(status, 503);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        before,
        "answered from the last check"
    );
    // The process itself is up, and a node whose store answers is ready.
    let health = node
        .http
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(readyz(app.base.clone()).await.0, 200);
}
