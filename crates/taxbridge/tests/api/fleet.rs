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
