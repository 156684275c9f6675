//! Workspaces and members: round trips, unique slugs, membership, lists and deep pages.

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
    store.insert_account(&p, &ev()).await.expect("partner");
    for i in 0..1_010 {
        store
            .insert_workspace(&workspace(&format!("firm-{i:04}"), Some(&p), i), &ev())
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
    store.insert_account(&p, &ev()).await.expect("partner");
    let w = workspace("smith-cpa", Some(&p), 1_000);
    store.insert_workspace(&w, &ev()).await.expect("insert");
    let (read, role) = store
        .workspace_with_role(&w.id, &p.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(read, w);
    assert_eq!(role, None, "the owner is not a member");
    match store
        .insert_workspace(&workspace("smith-cpa", Some(&p), 2_000), &ev())
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
    store
        .insert_account(&existing, &ev())
        .await
        .expect("account");
    let w = workspace("smith-cpa", None, 1);
    store.insert_workspace(&w, &ev()).await.expect("workspace");
    let emails: Vec<Email> = ["jane@smith-cpa.com", "john@smith-cpa.com"]
        .iter()
        .map(|e| Email::parse(e).expect("email"))
        .collect();
    let now = Timestamp::now();
    let first = store
        .add_members(&w.id, &emails, Role::User, now, &ev())
        .await
        .expect("add");
    let again = store
        .add_members(&w.id, &emails, Role::Admin, now, &ev())
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
        .remove_member(&w.id, &existing.id, &ev())
        .await
        .expect("remove"));
    assert!(!store
        .remove_member(&w.id, &existing.id, &ev())
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
    store.insert_account(&qount, &ev()).await.expect("qount");
    store.insert_account(&other, &ev()).await.expect("other");
    let mine: Vec<Workspace> = (0..5)
        .map(|i| workspace(&format!("firm-{i}"), Some(&qount), 1_000 + i))
        .collect();
    for w in &mine {
        store.insert_workspace(w, &ev()).await.expect("insert");
    }
    store
        .insert_workspace(&workspace("not-mine", Some(&other), 1), &ev())
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
    store.insert_account(&jane, &ev()).await.expect("jane");
    store
        .add_members(
            &mine[2].id,
            std::slice::from_ref(&jane.email),
            Role::User,
            Timestamp::now(),
            &ev(),
        )
        .await
        .expect("add");
    assert_eq!(listed(&store, &jane, &none, page(50, 0)).await, ["firm-2"]);
}
