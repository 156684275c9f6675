//! Background tasks: durable work claimed with leases (spec §6, §9).
//!
//! A task is one row in the database, named by its kind and subject (one download task per
//! artifact: `("download", art_…)`). Any node may claim due tasks; a claim is a lease that
//! expires, renewed while the task runs. A node that dies simply stops renewing, and its task
//! becomes due again when the lease lapses, for another node (or itself, restarted) to take.
//! A task ends in the same transaction that records its outcome, and only while its claimant
//! still holds the lease, so no outcome is recorded twice.

use crate::words::Word;
use crate::{ids::TaskId, store::StoreResult, time::Timestamp};
use async_trait::async_trait;

/// Longest a claim lasts without renewal. The worker renews at a third of it.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// What a task does: the worker finds the handler of each kind by this name.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum TaskKind {
    /// Fetch an artifact's `url` into blob storage.
    Download,
    /// Send a file to a provider's tus endpoint (`uploadConnectionFile`).
    Upload,
}

impl Word for TaskKind {}

/// A claimed task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub kind: TaskKind,
    /// The id of what the task works on (an artifact id for a download).
    pub subject: String,
    /// Claims so far, this one included: more than one means an earlier claimant stopped.
    pub attempts: u32,
    /// The workspace the task works for: what a worker shares its slots by.
    pub workspace: String,
}

/// A task to be created alongside the rows it works on.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub id: TaskId,
    pub kind: TaskKind,
    pub subject: String,
    pub run_after: Timestamp,
    /// The workspace it works for ([`Task::workspace`]).
    pub workspace: String,
}

impl NewTask {
    pub fn now(kind: TaskKind, subject: impl Into<String>, workspace: impl Into<String>) -> Self {
        Self {
            id: TaskId::generate(),
            kind,
            subject: subject.into(),
            run_after: Timestamp::now(),
            workspace: workspace.into(),
        }
    }
}

/// How one worker shares its slots among workspaces: a workspace holds at most `per_workspace`
/// of them (half, so another workspace's tasks always find room), and claims take turns
/// between the workspaces that have due tasks.
#[derive(Clone, Debug, Default)]
pub struct Share {
    pub per_workspace: usize,
    /// The tasks this worker is running now, by workspace.
    pub held: std::collections::HashMap<String, usize>,
    /// Whether a claim that finds only full workspaces' tasks among the oldest due ones may
    /// look past them for other workspaces' tasks: a walk of the queue, so the worker allows
    /// it about once a second rather than at every wake-up.
    pub look_past_full: bool,
}

impl Share {
    /// Slots a workspace may still take.
    pub fn room(&self, workspace: &str) -> usize {
        self.per_workspace
            .saturating_sub(self.held.get(workspace).copied().unwrap_or(0))
    }

    /// Workspaces with no room left.
    pub fn full(&self) -> Vec<&str> {
        self.held
            .iter()
            .filter(|(_, held)| **held >= self.per_workspace)
            .map(|(workspace, _)| workspace.as_str())
            .collect()
    }

    /// Picks at most `limit` of `due` (id, workspace), oldest first, taking turns: each round
    /// gives every workspace with room its next task.
    pub fn pick(&self, due: &[(String, String)], limit: usize) -> Vec<String> {
        let mut order: Vec<&str> = Vec::new();
        let mut queues: std::collections::HashMap<&str, std::collections::VecDeque<&str>> =
            std::collections::HashMap::new();
        for (id, workspace) in due {
            let queue = queues.entry(workspace.as_str()).or_insert_with(|| {
                order.push(workspace.as_str());
                std::collections::VecDeque::new()
            });
            queue.push_back(id.as_str());
        }
        let mut room: std::collections::HashMap<&str, usize> =
            order.iter().map(|w| (*w, self.room(w))).collect();
        let mut picked = Vec::new();
        while picked.len() < limit {
            let before = picked.len();
            for workspace in &order {
                if picked.len() >= limit {
                    break;
                }
                let left = room.get_mut(workspace).map_or(0, |r| *r);
                if left == 0 {
                    continue;
                }
                if let Some(id) = queues.get_mut(workspace).and_then(|q| q.pop_front()) {
                    picked.push(id.to_owned());
                    if let Some(r) = room.get_mut(workspace) {
                        *r -= 1;
                    }
                }
            }
            if picked.len() == before {
                break;
            }
        }
        picked
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
    /// Claims up to `limit` due tasks of `kinds` until `until`, oldest due first, shared among
    /// workspaces as `share` says. On PostgreSQL concurrent claimants skip each other's rows
    /// (`FOR UPDATE SKIP LOCKED`).
    async fn claim_tasks(
        &self,
        owner: &Owner,
        kinds: &[TaskKind],
        now: Timestamp,
        until: Timestamp,
        limit: u32,
        share: &Share,
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

    /// Records that `owner` is alive until `until` (a worker renews this every second or so).
    async fn heartbeat(&self, owner: &Owner, until: Timestamp) -> StoreResult<()>;

    /// Hands back, due at `now`, the tasks held by workers whose liveness lapsed before `now`
    /// (a killed node's), long before their leases would end, and forgets those workers. How
    /// many tasks were handed back.
    async fn take_over_lapsed(&self, now: Timestamp) -> StoreResult<u64>;

    /// Forgets `owner`'s liveness: it stopped and handed its tasks back.
    async fn retire(&self, owner: &Owner) -> StoreResult<()>;

    /// Clears what a busy queue leaves behind: on PostgreSQL, the dead index entries that every
    /// claim would otherwise walk past (a vacuum of the task table; autovacuum looks only once a
    /// minute). Nothing on SQLite, which deletes in place.
    async fn tidy_queue(&self) -> StoreResult<()>;

    /// Deletes a task that has nothing left to do (its subject is gone or already final).
    async fn drop_task(&self, task: &TaskId, owner: &Owner) -> StoreResult<bool>;

    /// Tasks waiting or running, by kind: the queue depth the metrics report.
    async fn task_counts(&self) -> StoreResult<Vec<(TaskKind, u64)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(id, w)| ((*id).to_owned(), (*w).to_owned()))
            .collect()
    }

    #[test]
    fn claims_take_turns_and_no_workspace_takes_more_than_its_share() {
        let share = Share {
            per_workspace: 2,
            held: [("a".to_owned(), 1)].into_iter().collect(),
            look_past_full: true,
        };
        let waiting = due(&[
            ("a1", "a"),
            ("a2", "a"),
            ("a3", "a"),
            ("b1", "b"),
            ("b2", "b"),
            ("b3", "b"),
            ("c1", "c"),
        ]);
        // a has room for one more; b and c take turns after it.
        assert_eq!(share.pick(&waiting, 10), ["a1", "b1", "c1", "b2"]);
        assert_eq!(share.pick(&waiting, 2), ["a1", "b1"]);
        assert_eq!(share.full(), Vec::<&str>::new());
        let full = Share {
            per_workspace: 2,
            held: [("a".to_owned(), 2)].into_iter().collect(),
            look_past_full: true,
        };
        assert_eq!(full.full(), ["a"]);
        assert_eq!(full.pick(&waiting, 10), ["b1", "c1", "b2"]);
    }
}
