//! Usage analytics: requests counted per day, API key, `source-platform` header and operation.
//!
//! Counting happens in memory on the request path (one short lock) and is flushed to the
//! store in batches, so a busy gateway writes one row per bucket every few seconds instead of
//! one per request. A failed flush puts its counts back, so nothing is lost to a blip.

use crate::{
    ids::ApiKeyId,
    store::{StoreError, StoreResult},
    time::Timestamp,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where usage counts are kept.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Adds counts to the usage table, summing with what is there.
    async fn add_usage(&self, counts: &[UsageCount]) -> StoreResult<()>;
    /// Every usage row of `since_day` (`YYYY-MM-DD`) and later, by day then key, platform and
    /// operation.
    async fn usage_since(&self, since_day: &str) -> StoreResult<Vec<UsageCount>>;
    /// The usage rows of these keys from `since_day` on, in the same order.
    async fn usage_of_keys(
        &self,
        keys: &[ApiKeyId],
        since_day: &str,
    ) -> StoreResult<Vec<UsageCount>>;
}

/// The platform recorded when a request sends no `source-platform` header.
pub const UNSPECIFIED_PLATFORM: &str = "(unspecified)";
/// Where counts go once [`MAX_PENDING_BUCKETS`] distinct buckets wait for a flush, so that a
/// caller inventing platform names cannot grow memory without bound.
pub const OVERFLOW_PLATFORM: &str = "(other)";
const MAX_PENDING_BUCKETS: usize = 10_000;
const MAX_PLATFORM_LEN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UsageCount {
    pub day: String,
    /// None for requests that no key was behind (a failed login, a missing token).
    pub api_key_id: Option<ApiKeyId>,
    pub source_platform: String,
    pub operation: String,
    pub count: u64,
}

/// (days since the epoch, key, platform, operation): the day stays a number on the hot path.
type Bucket = (i64, Option<ApiKeyId>, String, String);

const DAY_MS: i64 = 86_400_000;

pub struct UsageRecorder {
    store: Arc<dyn UsageStore>,
    pending: Mutex<HashMap<Bucket, u64>>,
}

/// The header's value as recorded: trimmed, printable ASCII, at most 64 characters.
pub fn normalise_platform(header: Option<&str>) -> String {
    let cleaned: String = header
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_PLATFORM_LEN)
        .collect();
    if cleaned.is_empty() {
        UNSPECIFIED_PLATFORM.to_owned()
    } else {
        cleaned
    }
}

impl UsageRecorder {
    pub fn new(store: Arc<dyn UsageStore>) -> Self {
        Self {
            store,
            pending: Mutex::default(),
        }
    }

    /// Counted usage from `day` (`YYYY-MM-DD`) on, for the operator's report.
    pub async fn since(&self, day: &str) -> StoreResult<Vec<UsageCount>> {
        self.store.usage_since(day).await
    }

    pub fn record(&self, at: Timestamp, key: Option<&ApiKeyId>, platform: &str, operation: &str) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let platform = if pending.len() >= MAX_PENDING_BUCKETS {
            OVERFLOW_PLATFORM
        } else {
            platform
        };
        let bucket = (
            at.as_millis().div_euclid(DAY_MS),
            key.cloned(),
            platform.to_owned(),
            operation.to_owned(),
        );
        *pending.entry(bucket).or_insert(0) += 1;
    }

    fn drain(&self) -> Vec<UsageCount> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        pending
            .drain()
            .map(
                |((day, api_key_id, source_platform, operation), count)| UsageCount {
                    day: Timestamp::from_millis(day * DAY_MS).day(),
                    api_key_id,
                    source_platform,
                    operation,
                    count,
                },
            )
            .collect()
    }

    fn restore(&self, counts: Vec<UsageCount>) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for c in counts {
            let day = Timestamp::parse_rfc3339(&format!("{}T00:00:00Z", c.day))
                .map_or(0, |t| t.as_millis().div_euclid(DAY_MS));
            let bucket = (day, c.api_key_id, c.source_platform, c.operation);
            *pending.entry(bucket).or_insert(0) += c.count;
        }
    }

    /// What these keys were used for over the last `days` days (today included), counted up
    /// to this moment: what is still in memory is written first.
    pub async fn usage_of_keys(
        &self,
        keys: &[ApiKeyId],
        days: i64,
    ) -> Result<Vec<UsageCount>, StoreError> {
        if let Err(err) = self.flush().await {
            tracing::warn!(error = %err, "usage: could not write the latest counts before reading");
        }
        let since = Timestamp::from_millis(Timestamp::now().as_millis() - (days - 1) * DAY_MS);
        self.store.usage_of_keys(keys, &since.day()).await
    }

    /// Writes everything counted so far; on failure the counts wait for the next flush.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let counts = self.drain();
        if counts.is_empty() {
            return Ok(0);
        }
        match self.store.add_usage(&counts).await {
            Ok(()) => Ok(counts.len()),
            Err(err) => {
                self.restore(counts);
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that refuses every write: these tests only count in memory.
    struct NoStore;

    #[async_trait]
    impl UsageStore for NoStore {
        async fn add_usage(&self, _: &[UsageCount]) -> StoreResult<()> {
            Err(StoreError::Backend("no store in unit tests".into()))
        }
        async fn usage_since(&self, _: &str) -> StoreResult<Vec<UsageCount>> {
            Ok(Vec::new())
        }
        async fn usage_of_keys(&self, _: &[ApiKeyId], _: &str) -> StoreResult<Vec<UsageCount>> {
            Ok(Vec::new())
        }
    }

    fn recorder() -> UsageRecorder {
        UsageRecorder::new(Arc::new(NoStore))
    }

    #[test]
    fn platform_names_are_trimmed_cleaned_and_capped() {
        assert_eq!(normalise_platform(None), UNSPECIFIED_PLATFORM);
        assert_eq!(normalise_platform(Some("   ")), UNSPECIFIED_PLATFORM);
        assert_eq!(normalise_platform(Some(" tax-firm-a ")), "tax-firm-a");
        assert_eq!(normalise_platform(Some("a\u{7}b")), "ab");
        assert_eq!(normalise_platform(Some(&"x".repeat(500))).len(), 64);
    }

    #[test]
    fn counts_accumulate_per_bucket_until_drained() {
        let recorder = recorder();
        let at = Timestamp::from_millis(1_705_314_600_000);
        let key = ApiKeyId::generate();
        for _ in 0..3 {
            recorder.record(at, Some(&key), "tax-firm-a", "me");
        }
        recorder.record(at, None, "tax-firm-a", "loginViaPersonalApiToken");
        let mut counts = recorder.drain();
        counts.sort_by_key(|c| c.count);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[1].count, 3);
        assert_eq!(counts[1].day, "2024-01-15");
        assert!(recorder.drain().is_empty());
    }

    #[test]
    fn counts_put_back_after_a_failed_flush_keep_their_day() {
        let recorder = recorder();
        let at = Timestamp::from_millis(1_705_314_600_000);
        recorder.record(at, None, "tax-firm-a", "me");
        recorder.record(at, None, "tax-firm-a", "me");
        let drained = recorder.drain();
        recorder.restore(drained.clone());
        recorder.record(at, None, "tax-firm-a", "me");
        let again = recorder.drain();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].day, "2024-01-15");
        assert_eq!(again[0].count, 3);
    }

    #[test]
    fn new_buckets_past_the_cap_fold_into_the_overflow_platform() {
        let recorder = recorder();
        let at = Timestamp::from_millis(0);
        for i in 0..MAX_PENDING_BUCKETS + 5 {
            recorder.record(at, None, &format!("p{i}"), "me");
        }
        let counts = recorder.drain();
        let overflow: u64 = counts
            .iter()
            .filter(|c| c.source_platform == OVERFLOW_PLATFORM)
            .map(|c| c.count)
            .sum();
        assert_eq!(overflow, 5);
    }
}
