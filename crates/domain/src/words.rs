//! The domain's closed sets (statuses, roles, kinds) are stored and shown as one snake_case word
//! per variant. strum derives the pairs from the variant names; [`Word`] gives every such enum
//! the same three names for them, so no enum restates them.

use std::str::FromStr;

/// An enum whose variants are each one word, as stored and as the API shows it. Implemented by
/// an empty `impl Word for X {}` on an enum deriving strum's `IntoStaticStr`, `EnumString` and
/// `VariantArray` with `#[strum(serialize_all = "snake_case")]`.
pub trait Word:
    Copy + Into<&'static str> + FromStr + strum::VariantArray + Sized + 'static
{
    /// Every variant, in declaration order.
    const ALL: &'static [Self] = <Self as strum::VariantArray>::VARIANTS;

    /// The variant's word.
    fn as_str(self) -> &'static str {
        self.into()
    }

    /// The variant a word names; `None` for any other text (case matters).
    fn parse(raw: &str) -> Option<Self> {
        raw.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::Word;
    use crate::{
        accounts::AccountType,
        api_keys::KeyKind,
        connections::ConnectionStatus,
        imports::{ArtifactStatus, JobStatus, WorkStatus},
        tasks::TaskKind,
        uploads::UploadStatus,
        workspaces::{Role, WorkspaceType},
    };

    /// Each word parses back to its variant, words are distinct, and nothing else parses.
    fn round_trips<T: Word + PartialEq + std::fmt::Debug>(expected: &[&str]) {
        let words: Vec<_> = T::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(words, expected);
        for variant in T::ALL {
            assert_eq!(T::parse(variant.as_str()), Some(*variant));
            assert_eq!(T::parse(&variant.as_str().to_uppercase()), None);
        }
        assert_eq!(T::parse(""), None);
        assert_eq!(T::parse("unknown"), None);
    }

    /// The stored words, as the migrations' data and the API's answers have them.
    #[test]
    fn every_closed_set_keeps_its_stored_words() {
        round_trips::<JobStatus>(&["pending", "active", "completed", "failed", "cancelled"]);
        round_trips::<WorkStatus>(&[
            "pending",
            "importing",
            "ready",
            "needs_attention",
            "cancelled",
        ]);
        round_trips::<ArtifactStatus>(&["initial", "success", "error", "terminated"]);
        round_trips::<ConnectionStatus>(&["pending", "active", "failed", "disconnected"]);
        round_trips::<UploadStatus>(&["queued", "uploading", "completed", "failed"]);
        round_trips::<TaskKind>(&["download", "upload"]);
        round_trips::<KeyKind>(&["personal", "partner"]);
        round_trips::<AccountType>(&["customer", "partner"]);
        round_trips::<Role>(&["admin", "user"]);
        round_trips::<WorkspaceType>(&["partner", "customer"]);
    }
}
