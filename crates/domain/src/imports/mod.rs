//! Push imports (spec §6): a partner hands a firm clients (works) and their files (artifacts)
//! in an import batch (a connection job), and a durable worker downloads the files.
//!
//! The status machines:
//! - job: `pending` (open for works) → `active` (triggered) → `completed` when every
//!   artifact is final; `pending`/`active` → `cancelled`.
//! - work: `pending` → `importing` at trigger → `ready` (every artifact succeeded) or
//!   `needs_attention` (one failed); unfinished works → `cancelled` with their job.
//! - artifact: `initial` → `success` | `error`; `initial` → `terminated` on cancel.
//!
//! A transition the state forbids is `Conflict`, saying the current state. Who may act: any
//! caller who reaches the connection's workspace ([`Connections::reach`]); anything else is
//! `NotFound`, the same as a missing id.

//!
//! The folder: [`model`] (what a job, a work and an artifact are, and the errors), [`port`]
//! (`ImportStore`, what the store keeps), [`service`] (`Imports`, the one door: every method
//! takes who is acting and checks reach), `bytes` (storing bytes and recording outcomes, for
//! the worker and the byte routes) and `checks` (the input and state rules the service
//! applies).

mod bytes;
mod checks;
pub mod model;
pub mod port;
pub mod service;

pub use bytes::*;
pub use model::*;
pub use port::*;
pub use service::*;

pub const MAX_WORKS_PER_CALL: usize = 1_000;
pub const MAX_ARTIFACTS_PER_CALL: usize = 100;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Metadata keys the gateway writes itself (on success, or `error` on failure): a caller's
/// metadata may not hold them, so nothing a caller sends reads as the gateway's own word.
pub const RESERVED_METADATA_KEYS: [&str; 4] = ["error", "size", "sha256", "mimeType"];
