//! The rules `Imports` applies to inputs and states: sizes, text, URLs, duplicates, and the
//! conflict a forbidden transition answers.

use super::model::*;
use crate::words::Word;
use crate::{store::StoreError, text::unprintable};
use std::collections::BTreeSet;

pub(super) fn capitalised(key: &str) -> String {
    let mut chars = key.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
pub(super) const MAX_NAME_CHARS: usize = 200;
pub(super) const MAX_EXTERNAL_ID_CHARS: usize = 200;
pub(super) const MAX_URL_BYTES: usize = 2_048;

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub(super) fn require_pending(job: &Job, doing: &str) -> Result<(), ImportError> {
    if job.status == JobStatus::Pending {
        Ok(())
    } else {
        Err(state_conflict(job, doing))
    }
}

pub(super) fn state_conflict(job: &Job, doing: &str) -> ImportError {
    ImportError::Conflict(format!(
        "The job is `{}`; {doing} only while it is `pending`{}.",
        job.status.as_str(),
        if job.status == JobStatus::Pending {
            ""
        } else {
            " (create a new job for more)"
        }
    ))
}

/// A conflict from the store after the checks passed: the job moved on, or another call took
/// an external id in between.
pub(super) fn lost_race(err: StoreError, job: &Job) -> ImportError {
    match err {
        StoreError::Conflict { what } if what.contains("not pending") => ImportError::Conflict(
            format!("The job `{}` is no longer `pending`; {what}", job.id),
        ),
        StoreError::Conflict { .. } => ImportError::Conflict(
            "Another call added the same externalId at the same time; list the works and retry with the ones missing.".into(),
        ),
        other => other.into(),
    }
}

pub(super) fn duplicate_ids(what: &str, within: &str, ids: BTreeSet<String>) -> ImportError {
    let named: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    ImportError::Conflict(format!(
        "externalId must be unique within the {within}; these {what}s already exist or repeat in the call: {}. Nothing was added.",
        named.join(", ")
    ))
}

/// Values that occur more than once in `values`.
pub(super) fn repeated(values: &[String]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    values
        .iter()
        .filter(|v| !seen.insert(v.as_str()))
        .cloned()
        .collect()
}

/// One call's `inputs`: at least one, at most `max`.
pub(super) fn check_count(count: usize, max: usize, what: &str) -> Result<(), ImportError> {
    if count == 0 || count > max {
        return Err(invalid(
            "inputs",
            format!("Send between 1 and {max} {what} per call (got {count})."),
        ));
    }
    Ok(())
}

pub(super) fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ImportError> {
    if value.trim().is_empty() {
        return Err(invalid(field, format!("{field} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(invalid(
            field,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    if let Some(what) = unprintable(value) {
        return Err(invalid(
            field,
            format!("{field} contains {what}; send printable text"),
        ));
    }
    Ok(())
}

pub(super) fn check_url(field: &str, url: &str) -> Result<(), ImportError> {
    if url.len() > MAX_URL_BYTES {
        return Err(invalid(
            field,
            format!("{field} is longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        Ok(parsed) => Err(invalid(
            field,
            format!(
                "{field} must be an http or https URL with a host, not `{}:`",
                parsed.scheme()
            ),
        )),
        Err(err) => Err(invalid(
            field,
            format!("{field} is not a URL ({err}); send an absolute http or https URL"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_their_spelling() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(
            WorkStatus::parse("needs_attention"),
            Some(WorkStatus::NeedsAttention)
        );
        assert_eq!(ArtifactStatus::parse("Initial"), None);
    }

    #[test]
    fn repeats_are_named_once_each() {
        let ids: Vec<String> = ["a", "b", "a", "c", "a", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            repeated(&ids).into_iter().collect::<Vec<_>>(),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }

    #[test]
    fn artifact_urls_must_be_absolute_http() {
        assert!(check_url("url", "https://files.example.com/w2.pdf").is_ok());
        for bad in ["file:///etc/passwd", "ftp://x/y", "not a url", "/relative"] {
            assert!(check_url("url", bad).is_err(), "{bad}");
        }
    }
}
