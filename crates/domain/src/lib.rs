//! Taxbridge's domain: what an account, an API key and an access token are, the rules that
//! govern them, and the [`store::Store`] port through which they are persisted.
//!
//! Layers point inward: the GraphQL/HTTP crate calls the services here, and the storage crate
//! implements [`store::Store`]. Nothing in this crate knows about HTTP, GraphQL or SQL, so the
//! rules below hold whichever front door or database is in use.
//!
//! Errors: each service returns its own `thiserror` enum that says what happened
//! ([`identity::AuthError`], [`store::StoreError`]); the API layer alone decides how those
//! become `extensions.code` values.

pub mod accounts;
pub mod api_keys;
pub mod email;
pub mod identity;
pub mod ids;
pub mod lists;
pub mod store;
pub mod time;
pub mod tokens;
pub mod ttl_map;
pub mod usage;
pub mod workspaces;
