//! The store contract: every port method, exercised the same way against SQLite and
//! PostgreSQL. Each test below runs once per database (`sqlite::…` and `postgres::…`).
//!
//! One module per feature, each with its own `per_database!` list: `accounts`, `keys`,
//! `connections`, `limits`, `sign_in`, `usage`, `workspaces`. What they share (a fresh store per test,
//! an account and a key to start from) is here.

mod accounts;
mod connections;
mod keys;
mod limits;
mod sign_in;
mod usage;
mod workspaces;

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

/// An event to record with a change (its content is not what these tests check).
fn ev() -> taxbridge_domain::audit::AuditEvent {
    taxbridge_domain::audit::AuditEvent::by_system(taxbridge_domain::audit::Action::AccountCreated)
}

use taxbridge_testkit::{fresh_database, Database, TestDatabase, POSTGRES_ENV};

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
