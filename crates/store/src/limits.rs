//! Shared rate limit cells: the `rate_limit_cells` table and the [`LimitCells`] port on it.
//! One upsert per event decides and counts it (the GCRA rule in `taxbridge_domain::limits`),
//! so nodes taking from one key at once serialise on its row.

use crate::{
    read::{Columns, FromColumns},
    Store,
};
use async_trait::async_trait;
use std::time::Duration;
use taxbridge_domain::{
    limits::{wait_at, LimitCells, Rate},
    store::StoreResult,
    time::Timestamp,
};

struct Cell {
    tat: i64,
    allowed: i64,
}

impl FromColumns for Cell {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self {
            tat: c.int()?,
            allowed: c.int()?,
        })
    }
}

/// `max(tat, now)`, written so both databases run it (neither shares the other's GREATEST/MAX).
const FROM: &str = "(CASE WHEN rate_limit_cells.tat > $2 THEN rate_limit_cells.tat ELSE $2 END)";

#[async_trait]
impl LimitCells for Store {
    async fn take_cell(
        &self,
        key: &str,
        rate: Rate,
        now: Timestamp,
    ) -> StoreResult<Option<Duration>> {
        // $1 key, $2 now, $3 the interval, $4 the tolerance (burst × interval), all in ms.
        let sql = format!(
            "INSERT INTO rate_limit_cells (key, tat, allowed) VALUES ($1, $2 + $3, 1) \
             ON CONFLICT (key) DO UPDATE SET \
             allowed = CASE WHEN {FROM} + $3 - $2 <= $4 THEN 1 ELSE 0 END, \
             tat = CASE WHEN {FROM} + $3 - $2 <= $4 THEN {FROM} + $3 ELSE rate_limit_cells.tat END \
             RETURNING tat, allowed"
        );
        let cell: Option<Cell> = self
            .db
            .write_fetch_optional(
                &sql,
                &[
                    key.into(),
                    now.as_millis().into(),
                    rate.interval_millis().into(),
                    rate.tolerance_millis().into(),
                ],
            )
            .await?;
        Ok(match cell {
            Some(cell) if cell.allowed == 0 => {
                // Refused: at least a millisecond, however the clock rounds.
                Some(wait_at(cell.tat, rate, now).unwrap_or(Duration::from_millis(1)))
            }
            _ => None,
        })
    }

    async fn cell_wait(
        &self,
        key: &str,
        rate: Rate,
        now: Timestamp,
    ) -> StoreResult<Option<Duration>> {
        let cell: Option<Cell> = self
            .db
            .fetch_optional(
                "SELECT tat, allowed FROM rate_limit_cells WHERE key = $1",
                &[key.into()],
            )
            .await?;
        Ok(cell.and_then(|cell| wait_at(cell.tat, rate, now)))
    }

    async fn forget_full_cells(&self, now: Timestamp) -> StoreResult<u64> {
        self.db
            .execute(
                "DELETE FROM rate_limit_cells WHERE tat < $1",
                &[now.as_millis().into()],
            )
            .await
    }
}
