//! Identifiers. Every id is a short type prefix and a UUIDv7 in hex: time-ordered (so
//! "created first" sorts first in an index) and self-describing in logs (`acc_…`, `key_…`).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Wraps an id read back from storage or received from a caller. Ids are opaque:
            /// a malformed one simply matches nothing.
            pub fn from_string(raw: impl Into<String>) -> Self {
                Self(raw.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An account: a firm's staff member (customer) or a software partner.
    AccountId,
    "acc_"
);
id_type!(
    /// An API key (the key's record, never its secret).
    ApiKeyId,
    "key_"
);
id_type!(
    /// A workspace: one tax firm.
    WorkspaceId,
    "wsp_"
);
id_type!(
    /// A provider connection: a workspace's link to one provider's platform.
    ConnectionId,
    "con_"
);
id_type!(
    /// An import batch of a connection (`ConnectionJob`).
    JobId,
    "job_"
);
id_type!(
    /// A work's place in its import job (`JobWork`).
    JobWorkId,
    "jwk_"
);
id_type!(
    /// A work: one tax preparation for one client.
    WorkId,
    "wrk_"
);
id_type!(
    /// An artifact's place in its import job (`JobArtifact`).
    JobArtifactId,
    "jar_"
);
id_type!(
    /// A work's file (`WorkArtifact`); the id `PUT /uploads/artifacts/{id}` and the byte URL use.
    ArtifactId,
    "art_"
);
id_type!(
    /// A background task.
    TaskId,
    "tsk_"
);
id_type!(
    /// A file sent to a provider's platform with `uploadConnectionFile`.
    UploadId,
    "upl_"
);
id_type!(
    /// One event of the audit log.
    AuditEventId,
    "evt_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_sort_by_creation() {
        let first = AccountId::generate();
        let second = AccountId::generate();
        assert!(first.as_str().starts_with("acc_"));
        assert_eq!(first.as_str().len(), 4 + 32);
        assert!(first < second);
    }
}
