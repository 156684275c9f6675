//! What the operational routes read: whether this node is ready for requests (`/readyz`: the
//! database and the blob store answer, and the node is not draining) and how deep the task
//! queue is (`/metrics`). Every node sees the same queue, so the depth is read at scrape time
//! rather than counted in memory.

use crate::words::Word;
use crate::{
    blobs::BlobStore,
    store::{StoreHealth, StoreResult},
    tasks::{TaskKind, TaskStore},
};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// How long one answer of the blob store stands for readiness: a balancer checking every
/// second costs the store one request per node every few seconds, not one per check.
const BLOB_CHECK_TTL: Duration = Duration::from_secs(5);

pub struct Health {
    store: Arc<dyn StoreHealth>,
    tasks: Arc<dyn TaskStore>,
    blobs: Arc<dyn BlobStore>,
    draining: AtomicBool,
    last_blob_check: Mutex<Option<(Instant, Result<(), String>)>>,
}

/// Why a node is not ready, in the words `/readyz` answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The process is shutting down: requests are still served, but no new ones should come.
    Draining,
    /// The database did not answer.
    Database(String),
    /// The blob store did not answer.
    Blobs(String),
}

impl NotReady {
    /// A short reason for the answer's body (the error itself goes to the log).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Draining => "the node is shutting down",
            Self::Database(_) => "the database did not answer",
            Self::Blobs(_) => "the blob store did not answer",
        }
    }
}

impl Health {
    pub fn new<S: StoreHealth + TaskStore>(store: Arc<S>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            store: store.clone(),
            tasks: store,
            blobs,
            draining: AtomicBool::new(false),
            last_blob_check: Mutex::new(None),
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

    /// From now on [`ready`](Self::ready) says [`NotReady::Draining`]: the first step of a
    /// graceful shutdown, so a balancer stops sending requests before the listener closes.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether this node should get requests: not draining, the database answers, and the
    /// blob store answered within the last few seconds.
    pub async fn ready(&self) -> Result<(), NotReady> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(NotReady::Draining);
        }
        self.ping()
            .await
            .map_err(|err| NotReady::Database(err.to_string()))?;
        self.blobs_answer().await.map_err(NotReady::Blobs)
    }

    async fn blobs_answer(&self) -> Result<(), String> {
        let fresh = |checked: &Option<(Instant, Result<(), String>)>| {
            checked
                .as_ref()
                .filter(|(at, _)| at.elapsed() < BLOB_CHECK_TTL)
                .map(|(_, answer)| answer.clone())
        };
        if let Some(answer) = fresh(&self.lock_blob_check()) {
            return answer;
        }
        let answer = self.blobs.check().await;
        *self.lock_blob_check() = Some((Instant::now(), answer.clone()));
        answer
    }

    fn lock_blob_check(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Result<(), String>)>> {
        // A poisoned lock holds only a cached answer: take it as it is.
        self.last_blob_check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
