//! Connections: the collect lease.

use super::*;

taxbridge_testkit::per_database!(
    crate::open;
    a_collect_lease_is_held_once_until_released_or_lapsed,
);

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
    store
        .insert_workspace(&workspace, &ev())
        .await
        .expect("workspace");
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
        .insert_connection(&connection, &ev())
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
