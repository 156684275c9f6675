//! Several nodes on one PostgreSQL database, as a fleet behind a balancer runs them: limits
//! are counted once for the fleet, not once per node. (SQLite is one node: these tests run on
//! PostgreSQL only, and CI makes them mandatory.)

use crate::support::TestApp;
use taxbridge::settings::{RateLimitSettings, Settings};
use taxbridge_testkit::Database;

const QUOTA: RateLimitSettings = RateLimitSettings {
    failed_logins_per_minute: 20,
    requests_per_second: 1,
    request_burst: 10,
};

fn quota(settings: &mut Settings) {
    settings.rate_limits = QUOTA;
}

/// Three nodes on one fresh PostgreSQL database.
async fn three_nodes() -> Option<[TestApp; 3]> {
    let first = TestApp::spawn_with(Database::Postgres, quota).await?;
    let second = first.another_node(quota).await;
    let third = first.another_node(quota).await;
    Some([first, second, third])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_through_three_nodes_gets_one_nodes_quota() {
    let Some(nodes) = three_nodes().await else {
        return;
    };
    let (_, token) = nodes[0].customer_token("jane@smith-cpa.com").await;
    let mut served = 0;
    let mut refused = 0;
    // Round robin, as a balancer spreads one client: 60 requests in well under a second.
    for n in 0..60 {
        let response = nodes[n % 3].me(Some(&token)).await;
        match response.status {
            200 => served += 1,
            429 => {
                assert_eq!(response.code(), "RATE_LIMITED", "{}", response.body);
                refused += 1;
            }
            other => panic!("status {other}: {}", response.body),
        }
    }
    // One node allows a burst of 10 (and one more a second): the fleet allows the same, where
    // three separate counts would have let about 30 through.
    assert!(
        (10..=12).contains(&served),
        "{served} served, {refused} refused"
    );
    // Another key has its own quota on every node.
    let (_, other) = nodes[1].customer_token("joe@smith-cpa.com").await;
    for node in &nodes {
        node.me(Some(&other)).await.assert_ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_spread_over_three_nodes_meet_one_quota() {
    let Some(nodes) = three_nodes().await else {
        return;
    };
    let mut codes = Vec::new();
    for n in 0..30 {
        let response = nodes[n % 3]
            .login(&format!("tb_pat_{n:03}guessing{n:020}"))
            .await;
        codes.push(response.code().to_owned());
    }
    // Each node saw 10 failures, under its own quota of 20: only the shared count refuses.
    assert!(
        codes[..20].iter().all(|code| code == "UNAUTHENTICATED"),
        "{codes:?}"
    );
    assert!(
        codes[21..].iter().all(|code| code == "RATE_LIMITED"),
        "{codes:?}"
    );
}

/// A failed login sent as a balancer forwards it, with `X-Forwarded-For: forwarded`: the code
/// it answers.
async fn failed_login_via(node: &TestApp, n: usize, forwarded: &str) -> String {
    let body = serde_json::json!({
        "query": "mutation L($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } }",
        "variables": { "k": format!("tb_pat_{n:03}guessing{n:020}") },
    });
    let answer: serde_json::Value = node
        .http
        .post(&node.endpoint)
        .header("X-Forwarded-For", forwarded)
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("a JSON body");
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Behind a balancer every request comes from the balancer's address: trusted, its
/// `X-Forwarded-For` says which client a failed login counts against, so one client's
/// guessing never locks the others out. Untrusted, the header is ignored, so a client cannot
/// dodge its count by writing one. (One node on SQLite: this is the node's own reading.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_balancer_failed_logins_count_by_the_forwarded_client() {
    let Some(node) = TestApp::spawn_with(Database::Sqlite, |settings| {
        quota(settings);
        settings.server.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await
    else {
        return;
    };
    for n in 0..20 {
        assert_eq!(
            failed_login_via(&node, n, "203.0.113.7").await,
            "UNAUTHENTICATED"
        );
    }
    // The count lets one more through as it refills (the fleet test above allows the same).
    failed_login_via(&node, 20, "203.0.113.7").await;
    assert_eq!(
        failed_login_via(&node, 30, "203.0.113.7").await,
        "RATE_LIMITED"
    );
    // Another client behind the same balancer is not locked out...
    assert_eq!(
        failed_login_via(&node, 21, "203.0.113.8").await,
        "UNAUTHENTICATED"
    );
    // ...and the limited one cannot pass itself off as someone else: only the entry the
    // balancer appended (the last) is believed.
    assert_eq!(
        failed_login_via(&node, 22, "198.51.100.1, 203.0.113.7").await,
        "RATE_LIMITED"
    );

    let Some(open) = TestApp::spawn_with(Database::Sqlite, quota).await else {
        return;
    };
    for n in 0..20 {
        let forwarded = format!("203.0.113.{n}");
        assert_eq!(
            failed_login_via(&open, n, &forwarded).await,
            "UNAUTHENTICATED"
        );
    }
    failed_login_via(&open, 20, "192.0.2.54").await;
    assert_eq!(
        failed_login_via(&open, 30, "192.0.2.55").await,
        "RATE_LIMITED",
        "without a trusted proxy, X-Forwarded-For must not change the count"
    );
}
