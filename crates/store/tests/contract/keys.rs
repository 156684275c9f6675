//! API keys: lookups by hash and id, listing, revoking, last use.

use super::*;

taxbridge_testkit::per_database!(
    crate::open;
    keys_are_found_with_their_account_by_hash_and_by_id,
    an_account_lists_its_keys_oldest_first,
    revoking_a_key_happens_once,
    using_a_key_is_recorded_at_most_once_a_minute,
);

async fn keys_are_found_with_their_account_by_hash_and_by_id(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store
        .insert_account(&account, &ev())
        .await
        .expect("account");
    let key = key_for(&account, "Production Integration", Timestamp::now());
    store.insert_api_key(&key, &ev()).await.expect("key");

    let by_hash = store
        .grant_by_key_hash(&key.hash)
        .await
        .expect("by hash")
        .expect("found");
    assert_eq!(by_hash.key, key);
    assert_eq!(by_hash.account, account);
    let by_id = store
        .grant_by_key_id(&key.id)
        .await
        .expect("by id")
        .expect("found");
    assert_eq!(by_id, by_hash);

    assert_eq!(
        store
            .grant_by_key_hash(&KeyHash::of("tb_pat_nope"))
            .await
            .expect("miss"),
        None
    );
    assert_eq!(
        store
            .grant_by_key_id(&ApiKeyId::generate())
            .await
            .expect("miss"),
        None
    );
}

async fn an_account_lists_its_keys_oldest_first(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    let other = customer("john@smith-cpa.com");
    store
        .insert_account(&account, &ev())
        .await
        .expect("account");
    store.insert_account(&other, &ev()).await.expect("other");
    let t = Timestamp::from_millis(1_700_000_000_000);
    let newer = key_for(&account, "newer", t.plus_seconds(5));
    let older = key_for(&account, "older", t);
    store.insert_api_key(&newer, &ev()).await.expect("newer");
    store.insert_api_key(&older, &ev()).await.expect("older");
    store
        .insert_api_key(&key_for(&other, "not mine", t), &ev())
        .await
        .expect("other");
    let names: Vec<String> = store
        .api_keys_of(&account.id)
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["older", "newer"]);
}

async fn revoking_a_key_happens_once(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store
        .insert_account(&account, &ev())
        .await
        .expect("account");
    let key = key_for(&account, "ci", Timestamp::now());
    store.insert_api_key(&key, &ev()).await.expect("key");
    let at = Timestamp::from_millis(1_700_000_000_000);
    assert!(store
        .revoke_api_key(&key.id, at, &ev())
        .await
        .expect("revoke"));
    assert!(!store
        .revoke_api_key(&key.id, at.plus_seconds(1), &ev())
        .await
        .expect("again"));
    let grant = store
        .grant_by_key_id(&key.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(grant.key.revoked_at, Some(at));
    assert!(!store
        .revoke_api_key(&ApiKeyId::generate(), at, &ev())
        .await
        .expect("missing"));
}

async fn using_a_key_is_recorded_at_most_once_a_minute(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store
        .insert_account(&account, &ev())
        .await
        .expect("account");
    let key = key_for(&account, "ci", Timestamp::now());
    store.insert_api_key(&key, &ev()).await.expect("key");
    let t = Timestamp::from_millis(1_700_000_000_000);
    let last_used = |store: Arc<Store>, id: ApiKeyId| async move {
        store
            .grant_by_key_id(&id)
            .await
            .expect("read")
            .expect("exists")
            .key
            .last_used_at
    };
    store.touch_api_key(&key.id, t).await.expect("first use");
    assert_eq!(last_used(store.clone(), key.id.clone()).await, Some(t));
    store
        .touch_api_key(&key.id, t.plus_seconds(30))
        .await
        .expect("30 s later");
    assert_eq!(last_used(store.clone(), key.id.clone()).await, Some(t));
    store
        .touch_api_key(&key.id, t.plus_seconds(61))
        .await
        .expect("61 s later");
    assert_eq!(
        last_used(store.clone(), key.id.clone()).await,
        Some(t.plus_seconds(61))
    );
}
