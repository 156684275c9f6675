//! The `tasks` table and the [`TaskStore`] port: the durable queue of background work.
//!
//! A task is due when `run_after` has passed. A claim sets `lease_owner` and moves
//! `run_after` to the lease's end, so a claimed task is not due again until its lease lapses
//! (a dead claimant simply stops renewing). A claim reads the oldest due tasks, picks among
//! them by workspace ([`Share`]), and updates only those; PostgreSQL claimants skip rows
//! another claimant is locking (`FOR UPDATE SKIP LOCKED`); SQLite has one writer, so a claim
//! is atomic anyway.

use crate::{
    db::{Arg, Tx},
    read::{Columns, FromColumns},
    Backend, Store,
};
use async_trait::async_trait;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    ids::TaskId,
    store::{StoreError, StoreResult},
    tasks::{NewTask, Owner, Share, Task, TaskKind, TaskStore},
    time::Timestamp,
};

/// Queues a task in the caller's transaction. A task of the same kind and subject that is
/// already queued stays as it is.
pub(crate) async fn insert(tx: &mut Tx, task: &NewTask) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO tasks (id, kind, subject, attempts, run_after, lease_owner, last_error, \
         created_at, workspace_id) VALUES ($1, $2, $3, 0, $4, NULL, NULL, $4, $5) \
         ON CONFLICT (kind, subject) DO NOTHING",
        &[
            task.id.as_str().into(),
            task.kind.as_str().into(),
            task.subject.as_str().into(),
            task.run_after.as_millis().into(),
            task.workspace.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Ends a task in the caller's transaction, only while `owner` holds its lease: false when
/// the lease lapsed and another worker holds the task (then its outcome counts, not ours).
pub(crate) async fn end(tx: &mut Tx, task: &TaskId, owner: &Owner) -> StoreResult<bool> {
    let ended = tx
        .execute(
            "DELETE FROM tasks WHERE id = $1 AND lease_owner = $2",
            &[task.as_str().into(), owner.0.as_str().into()],
        )
        .await?;
    Ok(ended == 1)
}

impl FromColumns for Task {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        let id = c.text()?;
        let kind = c.text()?;
        Ok(Task {
            kind: TaskKind::parse(&kind)
                .ok_or_else(|| crate::accounts::corrupt(format!("task {id} has kind `{kind}`")))?,
            id: TaskId::from_string(id),
            subject: c.text()?,
            attempts: u32::try_from(c.int()?).unwrap_or(u32::MAX),
            workspace: c.text()?,
        })
    }
}

struct Due(String, String);

impl FromColumns for Due {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(c.text()?, c.text()?))
    }
}

/// The oldest due tasks of `kinds` (id, workspace), at most `limit`, leaving out `skip`'s
/// workspaces.
async fn due_tasks(
    tx: &mut Tx,
    kinds: &[TaskKind],
    now: Timestamp,
    skip: &[&str],
    limit: u32,
) -> StoreResult<Vec<(String, String)>> {
    let mut args: Vec<Arg<'_>> = vec![now.as_millis().into()];
    let mut kind_marks = Vec::new();
    for kind in kinds {
        args.push(kind.as_str().into());
        kind_marks.push(format!("${}", args.len()));
    }
    let mut skip_marks = Vec::new();
    for workspace in skip {
        args.push((*workspace).into());
        skip_marks.push(format!("${}", args.len()));
    }
    let kind_marks = kind_marks.join(", ");
    let not_full = if skip_marks.is_empty() {
        String::new()
    } else {
        format!(" AND workspace_id NOT IN ({})", skip_marks.join(", "))
    };
    let sql = format!(
        "SELECT id, workspace_id FROM tasks WHERE run_after <= $1 AND kind IN ({kind_marks}){not_full} \
         ORDER BY run_after, id LIMIT {limit}"
    );
    let due: Vec<Due> = tx.fetch(&sql, &args).await?;
    Ok(due.into_iter().map(|Due(id, w)| (id, w)).collect())
}

struct Lapsed(#[allow(dead_code)] String);

impl FromColumns for Lapsed {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(c.text()?))
    }
}

struct KindCount(String, i64);

impl FromColumns for KindCount {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Self(c.text()?, c.int()?))
    }
}

#[async_trait]
impl TaskStore for Store {
    async fn claim_tasks(
        &self,
        owner: &Owner,
        kinds: &[TaskKind],
        now: Timestamp,
        until: Timestamp,
        limit: u32,
        share: &Share,
    ) -> StoreResult<Vec<Task>> {
        if kinds.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // 1. As many of the oldest due tasks as the claim may take, read without locking them
        //    (locking every candidate cost PostgreSQL a row lock, and its WAL, per row read, per
        //    claim), and turns among their workspaces, each within its share. Tasks of other
        //    workspaces further back are found by step 2 once the first ones have no room.
        let candidates = limit;
        let mut tx = self.db.begin().await?;
        let due = due_tasks(&mut tx, kinds, now, &[], candidates).await?;
        let mut picked = share.pick(&due, limit as usize);
        // 2. All of them belong to workspaces with no room: look past those for others' tasks.
        let full = share.full();
        if picked.is_empty()
            && share.look_past_full
            && !full.is_empty()
            && due.len() == candidates as usize
        {
            let others = due_tasks(&mut tx, kinds, now, &full, candidates).await?;
            picked = share.pick(&others, limit as usize);
        }
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        // 3. Claim them, skipping (on PostgreSQL) rows another claimant holds right now; the
        //    `run_after` condition is checked again on the row as it is when updated, so a task
        //    another node claimed between the read and the update is left to it.
        let mut args: Vec<Arg<'_>> = vec![
            owner.0.as_str().into(),
            until.as_millis().into(),
            now.as_millis().into(),
        ];
        let id_marks: Vec<String> = picked
            .iter()
            .map(|id| {
                args.push(id.as_str().into());
                format!("${}", args.len())
            })
            .collect();
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let update = format!(
            "UPDATE tasks SET lease_owner = $1, run_after = $2, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM tasks WHERE id IN ({}) AND run_after <= $3{lock}) \
             AND run_after <= $3 \
             RETURNING id, kind, subject, attempts, workspace_id",
            id_marks.join(", ")
        );
        let claimed: Vec<Task> = tx.fetch(&update, &args).await?;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn renew_task(
        &self,
        task: &TaskId,
        owner: &Owner,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let changed = self
            .db
            .execute(
                "UPDATE tasks SET run_after = $3 WHERE id = $1 AND lease_owner = $2",
                &[
                    task.as_str().into(),
                    owner.0.as_str().into(),
                    until.as_millis().into(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn retry_task(
        &self,
        task: &TaskId,
        owner: &Owner,
        run_after: Timestamp,
        error: &str,
    ) -> StoreResult<bool> {
        let changed = self
            .db
            .execute(
                "UPDATE tasks SET run_after = $3, lease_owner = NULL, last_error = $4 \
                 WHERE id = $1 AND lease_owner = $2",
                &[
                    task.as_str().into(),
                    owner.0.as_str().into(),
                    run_after.as_millis().into(),
                    error.into(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_tasks(&self, owner: &Owner, now: Timestamp) -> StoreResult<u64> {
        self.db
            .execute(
                "UPDATE tasks SET run_after = $2, lease_owner = NULL WHERE lease_owner = $1",
                &[owner.0.as_str().into(), now.as_millis().into()],
            )
            .await
    }

    async fn heartbeat(&self, owner: &Owner, until: Timestamp) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO worker_liveness (owner, alive_until) VALUES ($1, $2) \
                 ON CONFLICT (owner) DO UPDATE SET alive_until = excluded.alive_until",
                &[owner.0.as_str().into(), until.as_millis().into()],
            )
            .await?;
        Ok(())
    }

    async fn take_over_lapsed(&self, now: Timestamp) -> StoreResult<u64> {
        // Asked every second by every worker: the common answer (no worker lapsed) reads the
        // small liveness table alone, not the task queue.
        let lapsed: Option<Lapsed> = self
            .db
            .fetch_optional(
                "SELECT owner FROM worker_liveness WHERE alive_until < $1 LIMIT 1",
                &[now.as_millis().into()],
            )
            .await?;
        if lapsed.is_none() {
            return Ok(0);
        }
        let mut tx = self.db.begin().await?;
        // A lapsed worker's tasks become due now; a task it already finished is gone, and one
        // another worker took since is not its any more.
        let handed_back = tx
            .execute(
                "UPDATE tasks SET run_after = $1, lease_owner = NULL \
                 WHERE lease_owner IN (SELECT owner FROM worker_liveness WHERE alive_until < $1)",
                &[now.as_millis().into()],
            )
            .await?;
        tx.execute(
            "DELETE FROM worker_liveness WHERE alive_until < $1",
            &[now.as_millis().into()],
        )
        .await?;
        tx.commit().await?;
        Ok(handed_back)
    }

    async fn retire(&self, owner: &Owner) -> StoreResult<()> {
        self.db
            .execute(
                "DELETE FROM worker_liveness WHERE owner = $1",
                &[owner.0.as_str().into()],
            )
            .await?;
        Ok(())
    }

    async fn tidy_queue(&self) -> StoreResult<()> {
        if self.db.backend() == Backend::Postgres {
            // SKIP_LOCKED: another node tidying right now is enough.
            self.db.execute("VACUUM (SKIP_LOCKED) tasks", &[]).await?;
        }
        Ok(())
    }

    async fn drop_task(&self, task: &TaskId, owner: &Owner) -> StoreResult<bool> {
        let changed = self
            .db
            .execute(
                "DELETE FROM tasks WHERE id = $1 AND lease_owner = $2",
                &[task.as_str().into(), owner.0.as_str().into()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn task_counts(&self) -> StoreResult<Vec<(TaskKind, u64)>> {
        let rows: Vec<KindCount> = self
            .db
            .fetch("SELECT kind, COUNT(*) FROM tasks GROUP BY kind", &[])
            .await?;
        rows.into_iter()
            .map(|KindCount(kind, count)| {
                TaskKind::parse(&kind)
                    .map(|k| (k, count.max(0) as u64))
                    .ok_or_else(|| StoreError::Backend(format!("unknown task kind {kind}").into()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    /// The lease rules on SQLite (the store contract suite runs imports on both databases).
    #[tokio::test]
    async fn a_claimed_task_is_held_until_its_lease_lapses_and_only_its_holder_ends_it() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("tasks.db").display());
        let store = crate::connect(&url).await.expect("store");
        let task = NewTask {
            id: TaskId::generate(),
            kind: TaskKind::Download,
            subject: "art_1".into(),
            workspace: "wsp_1".into(),
            run_after: at(1_000),
        };
        let mut tx = store.db.begin().await.expect("begin");
        insert(&mut tx, &task).await.expect("insert");
        // Queuing the same subject again keeps the one task.
        insert(
            &mut tx,
            &NewTask {
                id: TaskId::generate(),
                ..task.clone()
            },
        )
        .await
        .expect("insert again");
        tx.commit().await.expect("commit");
        let (a, b) = (Owner("wkr_a".into()), Owner("wkr_b".into()));
        let kinds = [TaskKind::Download];
        let share = Share {
            per_workspace: 10,
            ..Share::default()
        };

        assert!(store
            .claim_tasks(&a, &kinds, at(999), at(2_000), 10, &share)
            .await
            .expect("early")
            .is_empty());
        let claimed = store
            .claim_tasks(&a, &kinds, at(1_000), at(2_000), 10, &share)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            (claimed[0].id.clone(), claimed[0].attempts),
            (task.id.clone(), 1)
        );
        assert!(store
            .claim_tasks(&b, &kinds, at(1_500), at(9_000), 10, &share)
            .await
            .expect("held")
            .is_empty());

        assert!(!store
            .renew_task(&task.id, &b, at(5_000))
            .await
            .expect("renew b"));
        assert!(store
            .renew_task(&task.id, &a, at(3_000))
            .await
            .expect("renew a"));
        assert!(store
            .claim_tasks(&b, &kinds, at(2_500), at(9_000), 10, &share)
            .await
            .expect("renewed")
            .is_empty());

        // a stops renewing: after its lease b takes the task over, and a can no longer end it.
        let taken = store
            .claim_tasks(&b, &kinds, at(3_001), at(9_000), 10, &share)
            .await
            .expect("take over");
        assert_eq!(taken[0].attempts, 2);
        assert!(!store
            .retry_task(&task.id, &a, at(0), "late")
            .await
            .expect("retry a"));
        assert!(!store.drop_task(&task.id, &a).await.expect("drop a"));
        assert_eq!(
            store.task_counts().await.expect("counts"),
            vec![(TaskKind::Download, 1)]
        );

        // b hands it back (a graceful stop): due at once, for anyone.
        assert_eq!(
            store.release_tasks(&b, at(4_000)).await.expect("release"),
            1
        );
        let again = store
            .claim_tasks(&a, &kinds, at(4_000), at(9_000), 10, &share)
            .await
            .expect("again");
        assert_eq!(again.len(), 1);
        assert!(store.drop_task(&task.id, &a).await.expect("drop"));
        assert!(store.task_counts().await.expect("counts").is_empty());
    }
}
