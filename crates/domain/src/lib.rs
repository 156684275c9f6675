//! Taxbridge's domain: what an account, an API key, an access token and a workspace are, the
//! rules that govern them, and the storage ports through which they are persisted.
//!
//! Layers point inward: the GraphQL/HTTP crate calls the services here, and the storage crate
//! implements the ports. Each feature module declares its own port beside its rules
//! ([`accounts::AccountStore`], [`api_keys::ApiKeyStore`], [`usage::UsageStore`],
//! [`workspaces::WorkspaceStore`]); [`store`] holds only what they share (the error type and
//! the health check) and imports no feature. Nothing in this crate knows about HTTP, GraphQL
//! or SQL, so the rules below hold whichever front door or database is in use.
//!
//! Errors: each service returns its own `thiserror` enum that says what happened
//! ([`identity::AuthError`], [`store::StoreError`]); the API layer alone decides how those
//! become `extensions.code` values.

pub mod accounts;
pub mod api_keys;
pub mod blobs;
pub mod connections;
pub mod crypto;
pub mod email;
pub mod health;
pub mod identity;
pub mod ids;
pub mod imports;
pub mod lists;
pub mod platform;
pub mod providers;
pub mod pulls;
pub mod rotation;
pub mod sign_in;
pub mod store;
pub mod tasks;
pub mod text;
pub mod time;
pub mod tokens;
pub mod ttl_map;
pub mod uploads;
pub mod usage;
pub mod web;
pub mod workspaces;
