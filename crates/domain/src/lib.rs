//! Taxbridge's domain: what accounts, API keys, access tokens, workspaces, provider
//! connections, imports, uploads and pulls are, the rules that govern them, and the services
//! that are the one door to their state. Every read and write goes through a service method
//! that takes who is acting (a [`identity::Caller`], the task a worker holds, or the operator's
//! command line) and checks reach there; no crate above this one names a storage port.
//!
//! Layers point inward: the GraphQL/HTTP crates and the worker call the services here, the
//! storage crate implements the storage ports, `taxbridge-blobs` the [`blobs::BlobStore`] port,
//! and the outbound crate the [`platform::PartnerPlatform`] port. Each feature module declares
//! its own port beside its rules ([`accounts::AccountStore`], [`connections::ConnectionStore`],
//! [`imports::ImportStore`], …); [`store`] holds only what they share (the error type and the
//! health check) and imports no feature. Nothing in this crate knows about HTTP, GraphQL or
//! SQL, so the rules below hold whichever front door or database is in use.
//!
//! Errors: each service returns its own `thiserror` enum that says what happened
//! ([`identity::AuthError`], [`imports::ImportError`], [`store::StoreError`]); the API layer
//! alone decides how those become `extensions.code` values.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod blobs;
pub mod connections;
pub mod crypto;
pub mod email;
pub mod health;
pub mod identity;
pub mod ids;
pub mod imports;
pub mod limits;
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
pub mod words;
pub mod workspaces;
