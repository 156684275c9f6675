//! The store contract: every port method, exercised the same way against SQLite and
//! PostgreSQL. Each test below runs once per database (`sqlite::…` and `postgres::…`).

use std::sync::Arc;
use taxbridge_domain::sign_in::SignInStore;
use taxbridge_domain::{
    accounts::{Account, AccountStore},
    api_keys::{self, ApiKey, ApiKeyStore, KeyHash, KeyKind},
    email::Email,
    ids::{AccountId, ApiKeyId},
    store::{StoreError, StoreHealth},
    time::Timestamp,
    usage::{UsageCount, UsageStore},
};
use taxbridge_store::Store;
use taxbridge_testkit::{fresh_database, Database, TestDatabase, POSTGRES_ENV};

taxbridge_testkit::per_database!(
    crate::open;
    a_new_database_answers_pings_and_has_no_accounts,
    accounts_round_trip_by_id_and_by_email,
    accounts_are_found_by_a_list_of_emails,
    a_collect_lease_is_held_once_until_released_or_lapsed,
    a_second_account_with_the_same_email_is_a_conflict,
    a_second_partner_with_the_same_provider_key_is_a_conflict,
    accounts_can_be_disabled_and_enabled,
    keys_are_found_with_their_account_by_hash_and_by_id,
    an_account_lists_its_keys_oldest_first,
    revoking_a_key_happens_once,
    using_a_key_is_recorded_at_most_once_a_minute,
    usage_counts_add_up_across_flushes,
    a_sign_in_code_signs_in_once_and_wrong_tries_run_out,
    unknown_and_disabled_emails_get_codes_that_sign_no_one_in,
    sessions_end_on_sign_out_and_are_kept_only_as_hashes,
);

/// A freshly migrated store, and the database it lives in for as long as the test runs.
struct Opened {
    store: Arc<Store>,
    _db: TestDatabase,
}

impl std::ops::Deref for Opened {
    type Target = Arc<Store>;
    fn deref(&self) -> &Arc<Store> {
        &self.store
    }
}

async fn open(database: Database) -> Option<Opened> {
    let Some(db) = fresh_database(database).await.expect("test database") else {
        eprintln!("skipped: {POSTGRES_ENV} is not set");
        return None;
    };
    let store = Arc::new(taxbridge_store::connect(&db.url).await.expect("connect"));
    Some(Opened { store, _db: db })
}

fn customer(email: &str) -> Account {
    Account::new_customer(
        Email::parse(email).expect("email"),
        Some("Jane Doe".into()),
        Timestamp::now(),
    )
}

fn key_for(account: &Account, name: &str, created_at: Timestamp) -> ApiKey {
    let generated = api_keys::generate(KeyKind::Personal);
    ApiKey {
        id: ApiKeyId::generate(),
        account_id: account.id.clone(),
        name: name.into(),
        kind: KeyKind::Personal,
        hash: generated.hash,
        display_prefix: generated.display_prefix,
        created_at,
        last_used_at: None,
        expires_at: Some(created_at.plus_days(30)),
        revoked_at: None,
    }
}

async fn a_new_database_answers_pings_and_has_no_accounts(store: Opened) {
    store.ping().await.expect("ping");
    assert_eq!(store.count_accounts().await.expect("count"), 0);
}

async fn accounts_round_trip_by_id_and_by_email(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store.insert_account(&account).await.expect("insert");
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
    store.insert_account(&jane).await.expect("jane");
    store.insert_account(&joe).await.expect("joe");
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

async fn a_collect_lease_is_held_once_until_released_or_lapsed(store: Opened) {
    use taxbridge_domain::{
        connections::{Connection, ConnectionStatus, ConnectionStore},
        ids::{ConnectionId, WorkspaceId},
        workspaces::{Workspace, WorkspaceStore, WorkspaceType},
    };
    let now = Timestamp::from_millis(1_700_000_000_000);
    let workspace = Workspace {
        id: WorkspaceId::generate(),
        slug: "lease-firm".into(),
        display_name: "Lease Firm".into(),
        status: "active".into(),
        workspace_type: WorkspaceType::Customer,
        firm_size: None,
        metadata: None,
        owner_partner_id: None,
        created_at: now,
        updated_at: now,
    };
    store.insert_workspace(&workspace).await.expect("workspace");
    let connection = Connection {
        id: ConnectionId::generate(),
        workspace_id: workspace.id.clone(),
        provider_key: "canopy".into(),
        category: "practice_management".into(),
        status: ConnectionStatus::Pending,
        display_name: None,
        settings: serde_json::Map::new(),
        credentials: Some("v1.k.n.c".into()),
        status_detail: None,
        last_verified_at: None,
        created_at: now,
        updated_at: now,
    };
    store
        .insert_connection(&connection)
        .await
        .expect("connection");
    let id = &connection.id;
    let until = now.plus_seconds(30);
    assert!(store
        .take_collect_lease(id, now, until)
        .await
        .expect("take"));
    assert!(!store
        .take_collect_lease(id, now, until)
        .await
        .expect("held"));
    store.release_collect_lease(id).await.expect("release");
    assert!(store
        .take_collect_lease(id, now, until)
        .await
        .expect("free again"));
    // A lease a dead node left lapses.
    assert!(store
        .take_collect_lease(id, now.plus_seconds(31), now.plus_seconds(61))
        .await
        .expect("lapsed"));
    // Credentials swap only from what they were.
    assert!(!store
        .swap_credentials(id, "v1.other", "v1.new")
        .await
        .expect("stale"));
    assert!(store
        .swap_credentials(id, "v1.k.n.c", "v1.new")
        .await
        .expect("swap"));
    let sealed = store.sealed_credentials(None, 10).await.expect("list");
    assert_eq!(sealed.len(), 1);
    assert_eq!((&sealed[0].id, sealed[0].sealed.as_str()), (id, "v1.new"));
}

async fn a_second_account_with_the_same_email_is_a_conflict(store: Opened) {
    store
        .insert_account(&customer("jane@smith-cpa.com"))
        .await
        .expect("first");
    let err = store
        .insert_account(&customer("jane@smith-cpa.com"))
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
    store.insert_account(&first).await.expect("first");
    match store.insert_account(&second).await.expect_err("second") {
        StoreError::Conflict { what } => assert!(what.contains("provider key `qount`"), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn accounts_can_be_disabled_and_enabled(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store.insert_account(&account).await.expect("insert");
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

async fn keys_are_found_with_their_account_by_hash_and_by_id(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store.insert_account(&account).await.expect("account");
    let key = key_for(&account, "Production Integration", Timestamp::now());
    store.insert_api_key(&key).await.expect("key");

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
    store.insert_account(&account).await.expect("account");
    store.insert_account(&other).await.expect("other");
    let t = Timestamp::from_millis(1_700_000_000_000);
    let newer = key_for(&account, "newer", t.plus_seconds(5));
    let older = key_for(&account, "older", t);
    store.insert_api_key(&newer).await.expect("newer");
    store.insert_api_key(&older).await.expect("older");
    store
        .insert_api_key(&key_for(&other, "not mine", t))
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
    store.insert_account(&account).await.expect("account");
    let key = key_for(&account, "ci", Timestamp::now());
    store.insert_api_key(&key).await.expect("key");
    let at = Timestamp::from_millis(1_700_000_000_000);
    assert!(store.revoke_api_key(&key.id, at).await.expect("revoke"));
    assert!(!store
        .revoke_api_key(&key.id, at.plus_seconds(1))
        .await
        .expect("again"));
    let grant = store
        .grant_by_key_id(&key.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(grant.key.revoked_at, Some(at));
    assert!(!store
        .revoke_api_key(&ApiKeyId::generate(), at)
        .await
        .expect("missing"));
}

async fn using_a_key_is_recorded_at_most_once_a_minute(store: Opened) {
    let account = customer("jane@smith-cpa.com");
    store.insert_account(&account).await.expect("account");
    let key = key_for(&account, "ci", Timestamp::now());
    store.insert_api_key(&key).await.expect("key");
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

mod workspaces {
    use super::*;
    use taxbridge_domain::{
        accounts::AccountType,
        ids::WorkspaceId,
        lists::{Page, SortField},
        workspaces::WorkspaceStore,
        workspaces::{Role, Workspace, WorkspaceFilters, WorkspaceKey, WorkspaceType},
    };

    taxbridge_testkit::per_database!(
        crate::open;
        workspaces_round_trip_and_slugs_are_unique,
        members_are_added_idempotently_in_order_and_removed,
        partners_list_what_they_created_and_customers_their_memberships,
        deep_pages_read_the_same_rows_as_shallow_ones,
    );

    fn page(limit: u32, offset: u64) -> Page {
        Page {
            limit,
            offset,
            sort: SortField::CreatedAt,
            descending: false,
        }
    }

    fn workspace(slug: &str, owner: Option<&Account>, created_at: i64) -> Workspace {
        let t = Timestamp::from_millis(created_at);
        Workspace {
            id: WorkspaceId::generate(),
            slug: slug.into(),
            display_name: slug.to_uppercase(),
            status: "active".into(),
            workspace_type: if owner.is_some() {
                WorkspaceType::Partner
            } else {
                WorkspaceType::Customer
            },
            firm_size: Some("sm".into()),
            metadata: Some(serde_json::json!({ "crmId": "A-17" })),
            owner_partner_id: owner.map(|o| o.id.clone()),
            created_at: t,
            updated_at: t,
        }
    }

    fn partner(key: &str) -> Account {
        Account::new_partner(
            Email::parse(&format!("eng@{key}.io")).expect("email"),
            key.into(),
            key.into(),
            Timestamp::now(),
        )
    }

    /// The slugs `account` lists, read both in full and as keys only, which must agree
    /// row for row.
    async fn listed(
        store: &Arc<Store>,
        account: &Account,
        filters: &WorkspaceFilters,
        page: Page,
    ) -> Vec<String> {
        let full = store
            .workspaces_reached_by(account, filters, page)
            .await
            .expect("full read");
        let keys = store
            .workspace_keys_reached_by(account, filters, page)
            .await
            .expect("keys read");
        let from_full: Vec<WorkspaceKey> = full
            .iter()
            .map(|w| WorkspaceKey {
                id: w.id.clone(),
                slug: w.slug.clone(),
            })
            .collect();
        assert_eq!(keys, from_full);
        full.into_iter().map(|w| w.slug).collect()
    }

    /// A page past the first thousand rows takes another road on SQLite (the blocking pool);
    /// it must answer exactly like a shallow one.
    async fn deep_pages_read_the_same_rows_as_shallow_ones(store: Opened) {
        let p = partner("deep");
        store.insert_account(&p).await.expect("partner");
        for i in 0..1_010 {
            store
                .insert_workspace(&workspace(&format!("firm-{i:04}"), Some(&p), i))
                .await
                .expect("insert");
        }
        let filters = WorkspaceFilters::default();
        let deep = store
            .workspaces_reached_by(&p, &filters, page(20, 1_001))
            .await
            .expect("deep page");
        let slugs: Vec<&str> = deep.iter().map(|w| w.slug.as_str()).collect();
        let expected: Vec<String> = (1_001..1_010).map(|i| format!("firm-{i:04}")).collect();
        assert_eq!(slugs, expected);
        // Offset 1,000 is the last one read in place on SQLite.
        let shallow = store
            .workspaces_reached_by(&p, &filters, page(20, 1_000))
            .await
            .expect("shallow page");
        assert_eq!(shallow.get(1..), Some(deep.as_slice()));
        assert_eq!(
            listed(&store, &p, &filters, page(20, 1_001)).await,
            expected
        );
        assert_eq!(
            deep.first().and_then(|w| w.metadata.clone()),
            Some(serde_json::json!({ "crmId": "A-17" }))
        );
    }

    async fn workspaces_round_trip_and_slugs_are_unique(store: Opened) {
        let p = partner("qount");
        store.insert_account(&p).await.expect("partner");
        let w = workspace("smith-cpa", Some(&p), 1_000);
        store.insert_workspace(&w).await.expect("insert");
        let (read, role) = store
            .workspace_with_role(&w.id, &p.id)
            .await
            .expect("read")
            .expect("found");
        assert_eq!(read, w);
        assert_eq!(role, None, "the owner is not a member");
        match store
            .insert_workspace(&workspace("smith-cpa", Some(&p), 2_000))
            .await
        {
            Err(StoreError::Conflict { what }) => assert!(what.contains("smith-cpa"), "{what}"),
            other => panic!("expected a slug conflict, got {other:?}"),
        }
        assert!(store
            .workspace_with_role(&WorkspaceId::generate(), &p.id)
            .await
            .expect("miss")
            .is_none());
    }

    async fn members_are_added_idempotently_in_order_and_removed(store: Opened) {
        let existing = customer("john@smith-cpa.com");
        store.insert_account(&existing).await.expect("account");
        let w = workspace("smith-cpa", None, 1);
        store.insert_workspace(&w).await.expect("workspace");
        let emails: Vec<Email> = ["jane@smith-cpa.com", "john@smith-cpa.com"]
            .iter()
            .map(|e| Email::parse(e).expect("email"))
            .collect();
        let now = Timestamp::now();
        let first = store
            .add_members(&w.id, &emails, Role::User, now)
            .await
            .expect("add");
        let again = store
            .add_members(&w.id, &emails, Role::Admin, now)
            .await
            .expect("add again");
        assert_eq!(first, again, "adding twice changes nothing, roles included");
        assert_eq!(first[0].account.email.as_str(), "jane@smith-cpa.com");
        assert_eq!(
            first[1].account.id, existing.id,
            "an existing account is reused"
        );
        assert_eq!(first[0].account.account_type, AccountType::Customer);
        assert_eq!(store.count_accounts().await.expect("count"), 2);
        assert_eq!(
            store
                .members_of(&w.id, page(50, 0))
                .await
                .expect("members")
                .len(),
            2
        );
        let (_, role) = store
            .workspace_with_role(&w.id, &existing.id)
            .await
            .expect("read")
            .expect("found");
        assert_eq!(role, Some(Role::User));

        assert!(store
            .remove_member(&w.id, &existing.id)
            .await
            .expect("remove"));
        assert!(!store
            .remove_member(&w.id, &existing.id)
            .await
            .expect("remove again"));
        let (_, role) = store
            .workspace_with_role(&w.id, &existing.id)
            .await
            .expect("read")
            .expect("found");
        assert_eq!(role, None);
    }

    async fn partners_list_what_they_created_and_customers_their_memberships(store: Opened) {
        let (qount, other) = (partner("qount"), partner("other"));
        store.insert_account(&qount).await.expect("qount");
        store.insert_account(&other).await.expect("other");
        let mine: Vec<Workspace> = (0..5)
            .map(|i| workspace(&format!("firm-{i}"), Some(&qount), 1_000 + i))
            .collect();
        for w in &mine {
            store.insert_workspace(w).await.expect("insert");
        }
        store
            .insert_workspace(&workspace("not-mine", Some(&other), 1))
            .await
            .expect("other's");
        let none = WorkspaceFilters::default();
        assert_eq!(
            listed(&store, &qount, &none, page(2, 0)).await,
            ["firm-0", "firm-1"]
        );
        assert_eq!(listed(&store, &qount, &none, page(2, 4)).await, ["firm-4"]);
        let newest_first = Page {
            descending: true,
            ..page(1, 0)
        };
        assert_eq!(
            listed(&store, &qount, &none, newest_first).await,
            ["firm-4"]
        );
        let by_slug = WorkspaceFilters {
            ids: None,
            slugs: Some(vec!["firm-3".into(), "not-mine".into()]),
        };
        assert_eq!(
            listed(&store, &qount, &by_slug, page(50, 0)).await,
            ["firm-3"]
        );
        let by_id = WorkspaceFilters {
            ids: Some(vec![mine[1].id.clone()]),
            slugs: None,
        };
        assert_eq!(
            listed(&store, &qount, &by_id, page(50, 0)).await,
            ["firm-1"]
        );
        let empty = WorkspaceFilters {
            ids: Some(vec![]),
            slugs: None,
        };
        assert!(listed(&store, &qount, &empty, page(50, 0)).await.is_empty());

        let jane = customer("jane@smith-cpa.com");
        store.insert_account(&jane).await.expect("jane");
        store
            .add_members(
                &mine[2].id,
                std::slice::from_ref(&jane.email),
                Role::User,
                Timestamp::now(),
            )
            .await
            .expect("add");
        assert_eq!(listed(&store, &jane, &none, page(50, 0)).await, ["firm-2"]);
    }
}

/// A mailer that keeps what it was asked to send (the sign-in service's port; the real SMTP
/// path is tested against an SMTP receiver with the pages).
#[derive(Default)]
struct Outbox(std::sync::Mutex<Vec<(String, String)>>);

#[async_trait::async_trait]
impl taxbridge_domain::sign_in::Mailer for Outbox {
    async fn send_sign_in_code(&self, to: &Email, code: &str) -> Result<(), String> {
        self.0
            .lock()
            .map_err(|e| e.to_string())?
            .push((to.to_string(), code.to_owned()));
        Ok(())
    }
}

fn sign_in(store: &Opened) -> (taxbridge_domain::sign_in::SignIn, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::default());
    (
        taxbridge_domain::sign_in::SignIn::new(store.store.clone(), outbox.clone(), b"pepper"),
        outbox,
    )
}

/// The code last mailed to `email` (the mail leaves on a task of its own).
async fn mailed(outbox: &Outbox, email: &str) -> String {
    for _ in 0..100 {
        let sent = outbox.0.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some((_, code)) = sent.iter().rev().find(|(to, _)| to == email) {
            return code.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no code was mailed to {email}");
}

async fn a_sign_in_code_signs_in_once_and_wrong_tries_run_out(store: Opened) {
    use taxbridge_domain::sign_in::{SignInError, CODE_TRIES};
    let account = customer("jane@smithcpa.com");
    store.insert_account(&account).await.expect("insert");
    let (service, outbox) = sign_in(&store);
    service.send_code("Jane@SmithCPA.com").await.expect("send");
    let code = mailed(&outbox, "jane@smithcpa.com").await;
    assert_eq!(code.len(), 6);
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert_eq!(
        service.verify("jane@smithcpa.com", wrong).await.err(),
        Some(SignInError::WrongCode(CODE_TRIES - 1))
    );
    let session = service
        .verify("jane@smithcpa.com", &code)
        .await
        .expect("signed in");
    assert_eq!(session.account.id, account.id);
    // Spent: the same code again is no code.
    assert_eq!(
        service.verify("jane@smithcpa.com", &code).await.err(),
        Some(SignInError::NoCode)
    );
    // Five wrong tries, then even the right code needs a new one.
    service.send_code("jane@smithcpa.com").await.expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let code = mailed(&outbox, "jane@smithcpa.com").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for left in (1..CODE_TRIES).rev() {
        assert_eq!(
            service.verify("jane@smithcpa.com", wrong).await.err(),
            Some(SignInError::WrongCode(left))
        );
    }
    assert_eq!(
        service.verify("jane@smithcpa.com", wrong).await.err(),
        Some(SignInError::NoCode)
    );
    assert_eq!(
        service.verify("jane@smithcpa.com", &code).await.err(),
        Some(SignInError::NoCode)
    );
    assert!(matches!(
        service.verify("not an email", "123456").await,
        Err(SignInError::BadEmail(_))
    ));
}

async fn unknown_and_disabled_emails_get_codes_that_sign_no_one_in(store: Opened) {
    use taxbridge_domain::sign_in::SignInError;
    let disabled = customer("gone@smithcpa.com");
    store.insert_account(&disabled).await.expect("insert");
    store
        .set_account_disabled(&disabled.id, Some(Timestamp::now()))
        .await
        .expect("disable");
    let (service, outbox) = sign_in(&store);
    // The same answer as for a known email, and a code row written all the same.
    service
        .send_code("nobody@smithcpa.com")
        .await
        .expect("same answer");
    service
        .send_code("gone@smithcpa.com")
        .await
        .expect("same answer");
    assert!(store
        .code_of("nobody@smithcpa.com")
        .await
        .expect("read")
        .is_some());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        outbox.0.lock().map(|s| s.is_empty()).unwrap_or(false),
        "no mail leaves"
    );
    for email in ["nobody@smithcpa.com", "gone@smithcpa.com"] {
        assert!(matches!(
            service.verify(email, "123456").await,
            Err(SignInError::WrongCode(_))
        ));
    }
}

async fn sessions_end_on_sign_out_and_are_kept_only_as_hashes(store: Opened) {
    let account = customer("sam@smithcpa.com");
    store.insert_account(&account).await.expect("insert");
    let (service, outbox) = sign_in(&store);
    service.send_code("sam@smithcpa.com").await.expect("send");
    let code = mailed(&outbox, "sam@smithcpa.com").await;
    let session = service
        .verify("sam@smithcpa.com", &code)
        .await
        .expect("signed in");
    let (who, csrf) = service
        .session(&session.token)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(who.id, account.id);
    assert_eq!(csrf, session.csrf);
    assert!(
        store
            .session_of(&session.token)
            .await
            .expect("read")
            .is_none(),
        "stored hashed"
    );
    assert!(service
        .session("forged-token")
        .await
        .expect("read")
        .is_none());
    service.sign_out(&session.token).await.expect("sign out");
    assert!(service
        .session(&session.token)
        .await
        .expect("read")
        .is_none());
    // An expired session is no session, and the sweep removes it.
    let stale = taxbridge_domain::sign_in::StoredSession {
        account_id: account.id.clone(),
        csrf: "c".into(),
        expires_at: Timestamp::from_millis(Timestamp::now().as_millis() - 1),
    };
    store
        .insert_session("stale-hash", &stale, Timestamp::now())
        .await
        .expect("insert");
    assert!(service.sweep().await.expect("sweep") >= 1);
    assert!(store
        .session_of("stale-hash")
        .await
        .expect("read")
        .is_none());
}
