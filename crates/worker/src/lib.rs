//! The background worker: claims due tasks from the database with leases and runs them.
//!
//! One [`Worker`] per process (inside `serve`, or alone as `taxbridge worker`), any number of
//! processes per database. Each claim is a lease ([`LEASE`] by default) renewed every third of it while
//! the task runs; a task whose lease cannot be renewed (it lapsed and another worker took it)
//! is stopped, so it never records an outcome twice. On shutdown the worker stops claiming,
//! stops its running tasks and hands their leases back, so another worker starts them at once
//! rather than after the lease.
//!
//! Slots are shared among workspaces ([`Share`]): one workspace runs at most half of them, and
//! claims take turns between the workspaces with due tasks, so one tenant's slow files never
//! keep another's waiting.
//!
//! A task kind is a [`Handler`]: the download of push-import artifacts ([`download`]) and the
//! tus upload of files sent to a provider ([`upload`]). Handlers change state only through the
//! domain's services (`Imports`, `Uploads`), with the task they hold as their identity; the
//! queue itself (claim, renew, hand back, drop) is this module's, over the domain's `TaskStore`.
//!
//! Why the queue is ours rather than a job library's: the Rust queues that run on both SQLite
//! and PostgreSQL (apalis, for one) neither record a task's outcome in the same transaction as
//! the row it changes (an artifact's `success` and the end of its download task are one commit
//! here, so a crash never stores a file twice or loses one) nor share slots fairly between
//! tenants; and the claim has to be one SQL text that both databases run, beside the rest of
//! the store. What is ours is small: the claim, the lease and the per-workspace share.

pub mod download;
mod metrics;
pub mod upload;

pub use metrics::WorkerMetrics;

use async_trait::async_trait;
use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};
use taxbridge_domain::{
    tasks::{Owner, Share, Task, TaskKind, TaskStore, LEASE},
    time::Timestamp,
};
use tokio::{sync::Notify, task::JoinSet};

/// How often a claim may walk the queue past the tasks of workspaces that have no room, to find
/// another workspace's: how long, at most, such a task waits behind a flood.
const LOOK_PAST_EVERY: Duration = Duration::from_secs(1);

/// Claims after which a task that keeps being interrupted (its worker killed each time) is
/// recorded as failed rather than tried again.
pub const MAX_CLAIMS: u32 = 10;

/// How a task run ended, as the handler reports it.
#[derive(Debug)]
pub enum Outcome {
    /// The handler recorded the outcome and ended the task (in one transaction).
    Finished,
    /// Run it again later: the lease is handed back with this delay.
    RetryAfter(Duration, String),
    /// The task's subject no longer waits for it (gone, finished or cancelled): the task is
    /// dropped, if this worker still holds it.
    Gone,
}

/// One kind of task.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    fn kind(&self) -> TaskKind;
    /// Runs `task` for `owner`. Ending the task is the handler's: it records the outcome and
    /// deletes the task row in one transaction, only while `owner` holds the lease.
    async fn run(&self, task: &Task, owner: &Owner) -> Outcome;
}

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Tasks run at once by this process; one workspace's take at most half of them (at least
    /// one).
    pub concurrency: usize,
    /// How often to look for due tasks when nothing wakes the worker.
    pub poll_interval: Duration,
    /// How long a claim lasts unrenewed. Renewed every third of it.
    pub lease: Duration,
    /// How long this worker's liveness lasts unrenewed: how soon, after it dies, another
    /// worker hands its tasks back (long before their leases end). Renewed every second.
    pub liveness: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            poll_interval: Duration::from_millis(500),
            lease: LEASE,
            liveness: Duration::from_secs(5),
        }
    }
}

pub struct Worker {
    store: Arc<dyn TaskStore>,
    handlers: HashMap<TaskKind, Arc<dyn Handler>>,
    owner: Owner,
    settings: WorkerSettings,
    wake: Arc<Notify>,
}

impl Worker {
    /// A worker over `store`; `wake` is notified when this process queues a task.
    pub fn new(
        store: Arc<dyn TaskStore>,
        handlers: Vec<Arc<dyn Handler>>,
        settings: WorkerSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            handlers: handlers.into_iter().map(|h| (h.kind(), h)).collect(),
            owner: Owner::generate(),
            settings,
            wake,
        }
    }

    /// Runs until `shutdown` completes, then hands back what it holds.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let kinds: Vec<TaskKind> = self.handlers.keys().copied().collect();
        let concurrency = self.settings.concurrency.max(1);
        let lease = self.settings.lease.max(Duration::from_secs(1));
        let mut running: JoinSet<String> = JoinSet::new();
        let mut share = Share {
            per_workspace: (concurrency / 2).max(1),
            held: HashMap::new(),
            look_past_full: true,
        };
        let mut looked_past = std::time::Instant::now();
        let ended = |share: &mut Share, joined: Option<Result<String, tokio::task::JoinError>>| {
            if let Some(Ok(workspace)) = joined {
                if let Some(held) = share.held.get_mut(&workspace) {
                    *held = held.saturating_sub(1);
                    if *held == 0 {
                        share.held.remove(&workspace);
                    }
                }
            }
        };
        tracing::info!(owner = %self.owner.0, concurrency, "worker started");
        let mut shutdown = std::pin::pin!(shutdown);
        // Alive before the first claim, so no task is ever held by a worker without liveness.
        let mut last_heartbeat = None;
        let mut claimed_since_tidy = 0;
        loop {
            if last_heartbeat.is_none_or(|at: std::time::Instant| at.elapsed() >= HEARTBEAT_EVERY) {
                last_heartbeat = Some(std::time::Instant::now());
                self.keep_alive_and_take_over().await;
                if claimed_since_tidy >= TIDY_EVERY {
                    claimed_since_tidy = 0;
                    if let Err(err) = self.store.tidy_queue().await {
                        tracing::warn!(error = %err, "could not tidy the task queue");
                    }
                }
            }
            while let Some(joined) = running.try_join_next() {
                ended(&mut share, Some(joined));
            }
            let free = concurrency.saturating_sub(running.len());
            let mut claimed = 0;
            // Walking the queue past full workspaces' tasks: about once a second at most.
            share.look_past_full = looked_past.elapsed() >= LOOK_PAST_EVERY;
            if share.look_past_full {
                looked_past = std::time::Instant::now();
            }
            if free > 0 {
                let now = Timestamp::now();
                let until = Timestamp::from_millis(now.as_millis() + lease.as_millis() as i64);
                match self
                    .store
                    .claim_tasks(&self.owner, &kinds, now, until, free as u32, &share)
                    .await
                {
                    Ok(tasks) => {
                        claimed = tasks.len();
                        claimed_since_tidy += claimed;
                        for task in tasks {
                            if let Some(handler) = self.handlers.get(&task.kind) {
                                *share.held.entry(task.workspace.clone()).or_default() += 1;
                                running.spawn(run_one(
                                    self.store.clone(),
                                    handler.clone(),
                                    self.owner.clone(),
                                    task,
                                    lease,
                                ));
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "could not claim tasks"),
                }
            }
            // Claim again at once while a claim filled every free slot (more may be due);
            // otherwise wait for a wake-up, a finished task, the poll interval, or the end. A
            // claim that took fewer found nothing more that fits the share.
            if claimed > 0 && claimed == free && running.len() < concurrency {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    ended(&mut share, Some(joined));
                }
                () = tokio::time::sleep(self.settings.poll_interval.min(HEARTBEAT_EVERY)) => {}
            }
        }
        running.abort_all();
        while running.join_next().await.is_some() {}
        match self
            .store
            .release_tasks(&self.owner, Timestamp::now())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(tasks = n, "handed unfinished tasks back"),
            Err(err) => {
                tracing::warn!(error = %err, "could not hand tasks back; their leases will lapse")
            }
        }
        if let Err(err) = self.store.retire(&self.owner).await {
            tracing::warn!(error = %err, "could not remove this worker's liveness row");
        }
    }

    /// Renews this worker's liveness, then hands back the tasks of workers whose liveness
    /// lapsed (a node killed or cut off): they are due again now, not when their leases end. A
    /// worker that was only slow and lapses loses its tasks' leases; its renewals then fail
    /// and it stops them, so no outcome is recorded twice.
    async fn keep_alive_and_take_over(&self) {
        let now = Timestamp::now();
        let until =
            Timestamp::from_millis(now.as_millis() + self.settings.liveness.as_millis() as i64);
        if let Err(err) = self.store.heartbeat(&self.owner, until).await {
            tracing::warn!(error = %err, "could not renew this worker's liveness");
            return;
        }
        match self.store.take_over_lapsed(now).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    tasks = n,
                    "took over the tasks of a worker whose liveness lapsed"
                );
                self.wake.notify_one();
            }
            Err(err) => tracing::warn!(error = %err, "could not take over lapsed workers' tasks"),
        }
    }
}

/// How often a worker renews its liveness and looks for lapsed workers.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Claims after which a worker tidies the queue (at its next heartbeat): each claim and each
/// finish leaves a dead entry at the front of the due index on PostgreSQL, and a claim walks
/// all of them, so an import of 30,000 files slowed down as it went (measured in
/// `bench/imports.sh`).
const TIDY_EVERY: usize = 1_000;

/// Runs one claimed task, renewing its lease until it ends; stops it if the lease is lost.
/// Answers the task's workspace, whose slot it frees.
async fn run_one(
    store: Arc<dyn TaskStore>,
    handler: Arc<dyn Handler>,
    owner: Owner,
    task: Task,
    lease: Duration,
) -> String {
    run_leased(store, handler, owner, &task, lease).await;
    task.workspace
}

async fn run_leased(
    store: Arc<dyn TaskStore>,
    handler: Arc<dyn Handler>,
    owner: Owner,
    task: &Task,
    lease: Duration,
) {
    let renewing = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            let until =
                Timestamp::from_millis(Timestamp::now().as_millis() + lease.as_millis() as i64);
            match store.renew_task(&task.id, &owner, until).await {
                Ok(true) => {}
                Ok(false) => return,
                // A database hiccup: keep trying until the lease would lapse anyway.
                Err(err) => {
                    tracing::warn!(task = %task.id, error = %err, "could not renew a lease")
                }
            }
        }
    };
    let outcome = tokio::select! {
        outcome = handler.run(task, &owner) => outcome,
        () = renewing => {
            tracing::warn!(task = %task.id, "lease lost; another worker has the task");
            return;
        }
    };
    match outcome {
        Outcome::Finished => {}
        Outcome::RetryAfter(delay, error) => {
            let at =
                Timestamp::from_millis(Timestamp::now().as_millis() + delay.as_millis() as i64);
            if let Err(err) = store.retry_task(&task.id, &owner, at, &error).await {
                tracing::warn!(task = %task.id, error = %err, "could not hand a task back");
            }
        }
        Outcome::Gone => {
            if let Err(err) = store.drop_task(&task.id, &owner).await {
                tracing::warn!(task = %task.id, error = %err, "could not drop a task whose subject is gone");
            }
        }
    }
}
