//! What the operational routes read: whether the database answers (`/readyz`) and how deep the
//! task queue is (`/metrics`). Every node sees the same queue, so the depth is read at scrape
//! time rather than counted in memory.

use crate::words::Word;
use crate::{
    store::{StoreHealth, StoreResult},
    tasks::{TaskKind, TaskStore},
};
use std::sync::Arc;

pub struct Health {
    store: Arc<dyn StoreHealth>,
    tasks: Arc<dyn TaskStore>,
}

impl Health {
    pub fn new<S: StoreHealth + TaskStore>(store: Arc<S>) -> Self {
        Self {
            store: store.clone(),
            tasks: store,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Succeeds when the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.store.ping().await
    }

    /// Tasks waiting or running, by kind (every kind, zero included).
    pub async fn queue_depth(&self) -> StoreResult<Vec<(TaskKind, u64)>> {
        let counts = self.tasks.task_counts().await?;
        Ok(TaskKind::ALL
            .iter()
            .map(|&kind| {
                let count = counts
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or(0, |(_, n)| *n);
                (kind, count)
            })
            .collect())
    }
}
