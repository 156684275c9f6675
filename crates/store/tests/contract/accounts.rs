//! Accounts: round trips, lookups, uniqueness, disabling.

use super::*;

taxbridge_testkit::per_database!(
    crate::open;
    a_new_database_answers_pings_and_has_no_accounts,
    accounts_round_trip_by_id_and_by_email,
    accounts_are_found_by_a_list_of_emails,
    a_second_account_with_the_same_email_is_a_conflict,
    a_second_partner_with_the_same_provider_key_is_a_conflict,
    accounts_can_be_disabled_and_enabled,
);

async fn a_new_database_answers_pings_and_has_no_accounts(store: Opened) {
    store.ping().await.expect("ping");
    assert_eq!(store.count_accounts().await.expect("count"), 0);
}

async fn accounts_round_trip_by_id_and_by_email(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store.insert_account(&account, &ev()).await.expect("insert");
    assert_eq!(
        store.account_by_id(&account.id).await.expect("by id"),
        Some(account.clone())
    );
    assert_eq!(
        store
            .account_by_email(&account.email)
            .await
            .expect("by email"),
        Some(account)
    );
    assert_eq!(
        store
            .account_by_id(&AccountId::generate())
            .await
            .expect("missing"),
        None
    );
    assert_eq!(store.count_accounts().await.expect("count"), 1);
}

async fn accounts_are_found_by_a_list_of_emails(store: Opened) {
    let jane = customer("jane@smith-cpa.com");
    let joe = customer("joe@smith-cpa.com");
    store.insert_account(&jane, &ev()).await.expect("jane");
    store.insert_account(&joe, &ev()).await.expect("joe");
    let asked = [
        joe.email.clone(),
        Email::parse("nobody@smith-cpa.com").expect("email"),
        jane.email.clone(),
    ];
    let mut found = store.accounts_by_emails(&asked).await.expect("read");
    found.sort_by(|a, b| a.email.as_str().cmp(b.email.as_str()));
    assert_eq!(found, [jane, joe]);
    assert!(store
        .accounts_by_emails(&[])
        .await
        .expect("none")
        .is_empty());
}

async fn a_second_account_with_the_same_email_is_a_conflict(store: Opened) {
    store
        .insert_account(&customer("jane@smith-cpa.com"), &ev())
        .await
        .expect("first");
    let err = store
        .insert_account(&customer("jane@smith-cpa.com"), &ev())
        .await
        .expect_err("second");
    match err {
        StoreError::Conflict { what } => assert!(what.contains("jane@smith-cpa.com"), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.count_accounts().await.expect("count"), 1);
}

async fn a_second_partner_with_the_same_provider_key_is_a_conflict(store: Opened) {
    let email = |e: &str| Email::parse(e).expect("email");
    let first = Account::new_partner(
        email("eng@qount.io"),
        "Qount".into(),
        "qount".into(),
        Timestamp::now(),
    );
    let second = Account::new_partner(
        email("ops@qount.io"),
        "Qount 2".into(),
        "qount".into(),
        Timestamp::now(),
    );
    store.insert_account(&first, &ev()).await.expect("first");
    match store
        .insert_account(&second, &ev())
        .await
        .expect_err("second")
    {
        StoreError::Conflict { what } => assert!(what.contains("provider key `qount`"), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn accounts_can_be_disabled_and_enabled(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store.insert_account(&account, &ev()).await.expect("insert");
    let at = Timestamp::from_millis(1_700_000_000_000);
    assert!(store
        .set_account_disabled(&account.id, Some(at))
        .await
        .expect("disable"));
    let read = store
        .account_by_id(&account.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.disabled_at, Some(at));
    assert!(store
        .set_account_disabled(&account.id, None)
        .await
        .expect("enable"));
    let read = store
        .account_by_id(&account.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.disabled_at, None);
    assert!(!store
        .set_account_disabled(&AccountId::generate(), None)
        .await
        .expect("missing"));
}
