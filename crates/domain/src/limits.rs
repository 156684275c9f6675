//! Rate limits a fleet counts together. Each node keeps its own in-memory limiter (the API's
//! `rate_limits`) in front, as a shield; on PostgreSQL the same quotas are also counted in the
//! database, so N nodes behind a balancer allow one API key (or one address's failed logins)
//! what one node would, not N times it. On SQLite there is one node, and [`SharedLimits::none`]
//! counts nothing.
//!
//! The count is GCRA, as `governor` runs it in memory: each key keeps one number, the
//! theoretical arrival time (TAT) of its next event. An event at `now` is allowed when
//! `max(TAT, now) + interval - now <= burst × interval`, and then moves the TAT on by one
//! interval; a refused event changes nothing. One upsert does it (`LimitCells::take_cell`),
//! so concurrent nodes serialise on the key's row and never both take the last slot.

use crate::{store::StoreResult, time::Timestamp};
use async_trait::async_trait;
use std::{sync::Arc, time::Duration};

/// A quota: one event every `interval`, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub interval: Duration,
    pub burst: u32,
}

impl Rate {
    /// `per_second` events a second, sustained, and `burst` at once.
    pub fn per_second(per_second: u32, burst: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            burst: burst.max(1),
        }
    }

    /// `per_minute` events a minute, all of them at once if they come so.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            interval: Duration::from_secs(60) / per_minute.max(1),
            burst: per_minute.max(1),
        }
    }

    /// The interval in whole milliseconds (at least 1), as the cells store time.
    pub fn interval_millis(self) -> i64 {
        i64::try_from(self.interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// How far ahead of now a key's TAT may run: `burst` intervals.
    pub fn tolerance_millis(self) -> i64 {
        self.interval_millis().saturating_mul(i64::from(self.burst))
    }
}

/// The port: one row per key, holding its TAT in milliseconds.
#[async_trait]
pub trait LimitCells: Send + Sync + 'static {
    /// Counts one event against `key` at `now`: `None` when it is within `rate` (and counted),
    /// `Some(wait)` when it is over (and not counted).
    async fn take_cell(
        &self,
        key: &str,
        rate: Rate,
        now: Timestamp,
    ) -> StoreResult<Option<Duration>>;

    /// Whether one more event against `key` at `now` would be over `rate`, counting nothing:
    /// the wait, if so.
    async fn cell_wait(
        &self,
        key: &str,
        rate: Rate,
        now: Timestamp,
    ) -> StoreResult<Option<Duration>>;

    /// Deletes the cells whose TAT has passed (they are full again); how many went.
    async fn forget_full_cells(&self, now: Timestamp) -> StoreResult<u64>;
}

/// The fleet's count, or none. A database error allows the event (and is logged): the
/// node's own limiter still holds, and refusing every request because the count failed would
/// turn a slow database into an outage.
#[derive(Clone)]
pub struct SharedLimits {
    cells: Option<Arc<dyn LimitCells>>,
}

impl SharedLimits {
    /// One node alone: nothing is counted beyond its own limiter.
    pub fn none() -> Self {
        Self { cells: None }
    }

    /// Counted in `cells`, which every node of the fleet shares.
    pub fn over(cells: Arc<dyn LimitCells>) -> Self {
        Self { cells: Some(cells) }
    }

    /// Whether a fleet count is kept.
    pub fn is_shared(&self) -> bool {
        self.cells.is_some()
    }

    /// Counts one event against `key`; `Err(wait)` when the fleet is over `rate`.
    pub async fn take(&self, key: &str, rate: Rate) -> Result<(), Duration> {
        let Some(cells) = &self.cells else {
            return Ok(());
        };
        match cells.take_cell(key, rate, Timestamp::now()).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(wait),
            Err(err) => {
                tracing::warn!(error = %err, "could not count a shared rate limit; allowing");
                Ok(())
            }
        }
    }

    /// `Some(wait)` while one more event against `key` would be over `rate` fleet-wide.
    pub async fn wait(&self, key: &str, rate: Rate) -> Option<Duration> {
        let cells = self.cells.as_ref()?;
        match cells.cell_wait(key, rate, Timestamp::now()).await {
            Ok(wait) => wait,
            Err(err) => {
                tracing::warn!(error = %err, "could not read a shared rate limit; allowing");
                None
            }
        }
    }

    /// Deletes the keys that are full again, so the table holds only recent callers.
    pub async fn forget_full(&self) {
        if let Some(cells) = &self.cells {
            if let Err(err) = cells.forget_full_cells(Timestamp::now()).await {
                tracing::warn!(error = %err, "could not delete full rate limit cells");
            }
        }
    }
}

/// The wait until an event over `rate` would be allowed, for a key whose TAT is `tat`.
pub fn wait_at(tat_millis: i64, rate: Rate, now: Timestamp) -> Option<Duration> {
    let allowed_from = tat_millis + rate.interval_millis() - rate.tolerance_millis();
    let wait = allowed_from - now.as_millis();
    (wait > 0).then(|| Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_allows_its_burst_then_one_an_interval() {
        let rate = Rate::per_second(10, 3);
        assert_eq!(rate.interval_millis(), 100);
        assert_eq!(rate.tolerance_millis(), 300);
        let now = Timestamp::from_millis(1_000_000);
        // Three taken at `now`: the TAT ran 300 ms ahead; the fourth waits one interval.
        assert_eq!(
            wait_at(1_000_300, rate, now),
            Some(Duration::from_millis(100))
        );
        // Two taken: room for one more.
        assert_eq!(wait_at(1_000_200, rate, now), None);
        // A TAT in the past is a full bucket.
        assert_eq!(wait_at(999_000, rate, now), None);
        assert_eq!(Rate::per_minute(20).interval_millis(), 3_000);
        assert_eq!(Rate::per_minute(0).burst, 1);
    }

    /// Cells that answer as told: a wait, or the database out of reach.
    struct Told(Option<Option<Duration>>);

    #[async_trait]
    impl LimitCells for Told {
        async fn take_cell(&self, _: &str, _: Rate, _: Timestamp) -> StoreResult<Option<Duration>> {
            self.answer()
        }
        async fn cell_wait(&self, _: &str, _: Rate, _: Timestamp) -> StoreResult<Option<Duration>> {
            self.answer()
        }
        async fn forget_full_cells(&self, _: Timestamp) -> StoreResult<u64> {
            self.answer().map(|_| 0)
        }
    }

    impl Told {
        fn answer(&self) -> StoreResult<Option<Duration>> {
            self.0.ok_or_else(|| {
                crate::store::StoreError::Unavailable(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            })
        }
    }

    #[tokio::test]
    async fn the_fleets_count_refuses_over_its_rate_and_allows_when_the_database_fails() {
        let rate = Rate::per_second(1, 1);
        let over = SharedLimits::over(Arc::new(Told(Some(Some(Duration::from_millis(700))))));
        assert_eq!(over.take("k", rate).await, Err(Duration::from_millis(700)));
        assert_eq!(over.wait("k", rate).await, Some(Duration::from_millis(700)));
        let within = SharedLimits::over(Arc::new(Told(Some(None))));
        assert_eq!(within.take("k", rate).await, Ok(()));
        // Fail open: a count that cannot be made allows the event (the node's own limiter
        // still holds), rather than turning a database fault into refusals.
        let down = SharedLimits::over(Arc::new(Told(None)));
        assert!(down.is_shared());
        assert_eq!(down.take("k", rate).await, Ok(()));
        assert_eq!(down.wait("k", rate).await, None);
        down.forget_full().await;
        assert_eq!(SharedLimits::none().take("k", rate).await, Ok(()));
    }
}
