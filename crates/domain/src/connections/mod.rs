//! Provider connections (spec §5): a workspace's link to one provider's platform, started with
//! the firm's credentials, verified by a live call (collect), and listed on the workspace.
//!
//! Who may start one (spec §3): a member of the workspace, with any catalog provider; a partner,
//! on its own workspaces and only with its own provider key. An unknown provider key is
//! `Invalid` for every caller and checked first; `Forbidden` is only for another existing key.
//!
//! Inputs split in two: settings (`baseUrl`, `firmReferenceId`, and what the provider declares
//! not secret), kept as JSON and returned by the API; and secrets, sealed together with the
//! key ring and bound to the connection id and the origin of its base URL
//! ([`credentials_binding`]), so a row whose base URL was changed does not open. Secrets are
//! never returned, logged, or put in an error.
//!
//! Stored secrets go only to the origin they were entered for: a collect (or the connect
//! page's retry) that moves the base URL to another origin must give every stored secret
//! again in the same call, and then only the new ones are kept.

//!
//! The folder: [`model`] (a connection, its status, its errors), [`port`] (`ConnectionStore`),
//! [`credentials`] (what sealed secrets are bound to, and splitting inputs into settings and
//! secrets), [`service`] (`Connections`: start, reach, list, disconnect) and [`collect`]
//! (verifying with a live call, the connect page's one step, and opening a connection's way
//! into its platform for the worker and the pulls).

pub mod collect;
pub mod credentials;
pub mod model;
pub mod port;
pub mod service;

pub use credentials::{credentials_binding, open_bound, origin_of};
pub use model::*;
pub use port::*;
pub use service::*;

/// How long a collect may hold its connection: longer than the outbound call's own timeout.
pub const COLLECT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The most bytes a connection's `inputs` may have, as JSON.
pub const MAX_INPUT_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_status() {
        assert_eq!(ConnectionStatus::Pending.action(), Some("collect"));
        assert_eq!(ConnectionStatus::Failed.action(), Some("reconnect"));
        assert_eq!(ConnectionStatus::Active.action(), None);
        assert_eq!(ConnectionStatus::Disconnected.action(), None);
    }
}
