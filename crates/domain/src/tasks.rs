//! Background tasks: durable work claimed with leases (spec §6, §9).
//!
//! A task is one row in the database, named by its kind and subject (one download task per
//! artifact: `("download", art_…)`). Any node may claim due tasks; a claim is a lease that
//! expires, renewed while the task runs. A node that dies simply stops renewing, and its task
//! becomes due again when the lease lapses, for another node (or itself, restarted) to take.
//! A task ends in the same transaction that records its outcome, and only while its claimant
//! still holds the lease, so no outcome is recorded twice.

use crate::{ids::TaskId, store::StoreResult, time::Timestamp};
use async_trait::async_trait;

/// Longest a claim lasts without renewal. The worker renews at a third of it.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// What a task does: the worker finds the handler of each kind by this name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// Fetch an artifact's `url` into blob storage.
    Download,
    /// Send a file to a provider's tus endpoint (`uploadConnectionFile`).
    Upload,
}

impl TaskKind {
    pub const ALL: [TaskKind; 2] = [TaskKind::Download, TaskKind::Upload];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Download => "download",
            TaskKind::Upload => "upload",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// A claimed task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub kind: TaskKind,
    /// The id of what the task works on (an artifact id for a download).
    pub subject: String,
    /// Claims so far, this one included: more than one means an earlier claimant stopped.
    pub attempts: u32,
}

/// A task to be created alongside the rows it works on.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub id: TaskId,
    pub kind: TaskKind,
    pub subject: String,
    pub run_after: Timestamp,
}

impl NewTask {
    pub fn now(kind: TaskKind, subject: impl Into<String>) -> Self {
        Self {
            id: TaskId::generate(),
            kind,
            subject: subject.into(),
            run_after: Timestamp::now(),
        }
    }
}

/// The claimant of a lease: one per worker process, so a restarted process never mistakes
/// its predecessor's leases for its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner(pub String);

impl Owner {
    pub fn generate() -> Self {
        Self(format!("wkr_{}", uuid::Uuid::now_v7().simple()))
    }
}

#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Claims up to `limit` due tasks of `kinds` until `until`, oldest due first. On
    /// PostgreSQL concurrent claimants skip each other's rows (`FOR UPDATE SKIP LOCKED`).
    async fn claim_tasks(
        &self,
        owner: &Owner,
        kinds: &[TaskKind],
        now: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Task>>;

    /// Extends a lease; false when `owner` no longer holds it (it lapsed and was taken).
    async fn renew_task(&self, task: &TaskId, owner: &Owner, until: Timestamp)
        -> StoreResult<bool>;

    /// Hands a task back, due at `run_after`, recording why; false when the lease was lost.
    async fn retry_task(
        &self,
        task: &TaskId,
        owner: &Owner,
        run_after: Timestamp,
        error: &str,
    ) -> StoreResult<bool>;

    /// Hands back every task `owner` holds, due at once (a graceful shutdown).
    async fn release_tasks(&self, owner: &Owner, now: Timestamp) -> StoreResult<u64>;

    /// Deletes a task that has nothing left to do (its subject is gone or already final).
    async fn drop_task(&self, task: &TaskId, owner: &Owner) -> StoreResult<bool>;

    /// Tasks waiting or running, by kind: the queue depth the metrics report.
    async fn task_counts(&self) -> StoreResult<Vec<(TaskKind, u64)>>;
}
