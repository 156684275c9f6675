//! No ambient proxy: with `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` pointing at a listener,
//! no outbound call reaches it. A refused name stays refused (a proxy would have resolved it
//! out of the policy's sight), and an allowed address is called directly. Its own test binary:
//! the variables are the process's.

use std::time::Duration;
use taxbridge_outbound::{header, Egress, EgressError, EgressSettings};
use tokio::net::TcpListener;

#[tokio::test]
async fn proxy_variables_from_the_environment_are_ignored() {
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    for name in taxbridge_outbound::PROXY_VARIABLES {
        std::env::set_var(name, &proxy_url);
    }
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");
    let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target_port = target.local_addr().expect("addr").port();
    let strict = Egress::new(EgressSettings::default()).expect("egress");
    let mut credentials = header::HeaderMap::new();
    credentials.insert(
        header::AUTHORIZATION,
        header::HeaderValue::from_static("Bearer secret-api-key"),
    );
    for url in [
        format!("http://localhost:{target_port}/v1/verify"),
        format!("http://LOCALHOST:{target_port}/latest/meta-data/"),
        "https://localhost/v1/verify".to_owned(),
    ] {
        let err = strict
            .get(&url, credentials.clone())
            .await
            .expect_err("refused");
        assert!(matches!(err, EgressError::NotPublic { .. }), "{url}: {err}");
    }
    // An allow-listed address is called directly, not through the proxy.
    let allowed = Egress::new(EgressSettings {
        allow_cidrs: vec!["127.0.0.1/32".parse().expect("cidr")],
        total_timeout: Duration::from_millis(500),
        ..EgressSettings::default()
    })
    .expect("egress");
    let _ = allowed
        .get(&format!("http://127.0.0.1:{target_port}/"), credentials)
        .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), target.accept())
            .await
            .is_ok(),
        "the allowed address was called directly"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), proxy.accept())
            .await
            .is_err(),
        "a call went to the proxy"
    );
}
