//! Workspaces (one tax firm each), their members, and the one rule that decides who reaches
//! what (spec §3).
//!
//! Every operation on a workspace's data takes a [`WorkspaceAccess`], and the only way to get
//! one is [`Workspaces::reach`], which checks the caller against the workspace: a member (with
//! a role) or the partner that created it. A resolver that skipped the check would have no
//! access value to pass, so it would not compile. A workspace outside the caller's reach is
//! [`WorkspaceError::NotFound`], exactly like one that does not exist.
//!
//! A reach that was found is trusted for a short time (the same promise as a key revocation,
//! `auth.revocation_check_seconds`): it is one read per request on every workspace operation,
//! and on SQLite under writes it cost as much as the rest of `startProviderConnection`'s
//! reads. Workspaces never change once created and a role is never changed, so the only thing
//! that ends a reach is removing a member. On the node that removes one, the removed member's
//! reach ends at once; on other nodes, within the promise. A reach that was not found is never
//! kept, so a workspace is reachable as soon as a member is added.

//!
//! The folder: [`model`] (a workspace, its members, roles and errors), [`port`]
//! (`WorkspaceStore`), [`access`] (`WorkspaceAccess`, the proof of reach), [`links`] (slugs and
//! deep links) and [`service`] (`Workspaces`, which alone decides reach).

pub mod access;
pub mod links;
pub mod model;
pub mod port;
pub mod service;

pub use access::*;
pub use links::*;
pub use model::*;
pub use port::*;
pub use service::*;

pub const MAX_DISPLAY_NAME: usize = 200;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
pub const FIRM_SIZES: [&str; 5] = ["xs", "sm", "md", "lg", "xl"];
pub const MAX_EMAILS_PER_CALL: usize = 500;
/// The longest path a deep link may carry.
pub const MAX_DEEP_LINK_PATH: usize = 2 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs_follow_the_spec_example() {
        assert_eq!(
            slugify("Smith & Associates Tax Firm"),
            "smith-associates-tax-firm"
        );
        assert_eq!(
            slugify("  --Müller Steuerberatung GmbH--  "),
            "muller-steuerberatung-gmbh"
        );
        assert_eq!(slugify("!!!"), "workspace");
    }

    #[test]
    fn collisions_take_a_random_suffix() {
        let a = suffixed_slug("acme");
        let b = suffixed_slug("acme");
        assert_ne!(a, b);
        for slug in [a, b] {
            let suffix = slug.strip_prefix("acme-").expect("base kept");
            assert_eq!(suffix.len(), 6);
            assert!(suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        }
    }

    #[test]
    fn deep_links_encode_the_workspace_path() {
        let link = deep_link(
            "https://tb.example.com/",
            "smith-cpa",
            Some("/connect/tax-software"),
        )
        .expect("ok");
        assert_eq!(
            link,
            "https://tb.example.com/sign-in?deep_link=%2Fw%2Fsmith-cpa%2Fconnect%2Ftax-software"
        );
        assert_eq!(
            deep_link("http://h", "s", None).expect("ok"),
            "http://h/sign-in?deep_link=%2Fw%2Fs"
        );
    }

    #[test]
    fn deep_links_refuse_paths_that_leave_the_workspace() {
        for bad in [
            "connect",
            "//evil.com/x",
            "/../admin",
            "/x/../../y",
            "https://evil.com",
            "/a\\b",
            "/a b",
            &format!("/{}", "a".repeat(MAX_DEEP_LINK_PATH)),
        ] {
            assert!(deep_link("http://h", "s", Some(bad)).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn slugs_are_always_url_safe(name in "\\PC{0,120}") {
            let slug = slugify(&name);
            prop_assert!(!slug.is_empty() && slug.len() <= 80);
            prop_assert!(slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert!(!slug.starts_with('-') && !slug.ends_with('-') && !slug.contains("--"));
        }
    }
}
