//! Usage counts across flushes.

use super::*;

taxbridge_testkit::per_database!(
    crate::open;
    usage_counts_add_up_across_flushes,
);

async fn usage_counts_add_up_across_flushes(store: Opened) {
    let key = ApiKeyId::generate();
    let count = |day: &str, key: Option<&ApiKeyId>, op: &str, n| UsageCount {
        day: day.into(),
        api_key_id: key.cloned(),
        source_platform: "tax-firm-a".into(),
        operation: op.into(),
        count: n,
    };
    store
        .add_usage(&[
            count("2024-01-14", Some(&key), "me", 2),
            count("2024-01-15", Some(&key), "me", 3),
        ])
        .await
        .expect("first flush");
    store
        .add_usage(&[
            count("2024-01-15", Some(&key), "me", 4),
            count("2024-01-15", None, "loginViaPersonalApiToken", 1),
        ])
        .await
        .expect("second flush");
    let rows = store.usage_since("2024-01-15").await.expect("read");
    assert_eq!(
        rows,
        vec![
            count("2024-01-15", None, "loginViaPersonalApiToken", 1),
            count("2024-01-15", Some(&key), "me", 7),
        ]
    );
}
