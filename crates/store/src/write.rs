//! The SQLite write path: one writer thread that owns the only write connection and commits
//! writes in groups.
//!
//! SQLite takes one writer at a time, and every commit writes the WAL. A request that writes
//! one row (start a connection, create a key) used to pay a thread hop into sqlx's SQLite
//! driver per statement and a commit of its own, one after another: about 350 µs of a single
//! writer's time each. Here a write is a message to the writer thread, which takes every write
//! waiting in its queue, runs each as one statement of one transaction, commits once and then
//! answers them all. Under load one commit carries dozens of writes; alone, a write commits at
//! once. No write is answered before its commit.
//!
//! One failing write fails alone: SQLite undoes a statement that fails on a constraint and
//! keeps the transaction (its statement-level rollback), so no savepoint per write is needed.
//! One was, until a profile showed it: each copied every page its write touched into a
//! sub-journal, 5% of `startProviderConnection`'s CPU. Should SQLite roll the whole
//! transaction back instead (a full disk, an I/O error), every write of the group fails with it.
//!
//! A transaction ([`Session`]) has the writer to itself: the writer commits the group it
//! holds, begins, and runs the session's statements as they arrive until it commits or is
//! dropped (rollback). Reads inside a session see its writes; reads elsewhere run on
//! [`crate::read::SqliteReaders`] and never wait for the writer (WAL).
//!
//! Why not a crate: sqlx serialises commands per connection but does not group commits, and
//! the pooled rusqlite wrappers (r2d2, deadpool) hand out connections rather than queueing
//! statements; grouping is the whole point, and it is this one small module.

use crate::row::{backend, run_statement, Arg, FromColumns, OwnedArg};
use std::sync::mpsc;
use taxbridge_domain::audit::AuditEvent;
use taxbridge_domain::store::{StoreError, StoreResult};
use tokio::sync::oneshot;

/// Writes one group commit carries at most, so a burst still answers its first writers soon.
const MAX_GROUP: usize = 256;

/// A handle to the writer thread. Cloning shares the thread; it stops when the last handle
/// is dropped.
#[derive(Clone)]
pub(crate) struct SqliteWriter {
    queue: mpsc::Sender<Job>,
}

enum Job {
    /// One statement in autocommit terms: it is grouped with others into one commit, with
    /// the audit events that record it (see [`SqliteWriter::execute_recorded`]).
    Execute {
        sql: String,
        args: Vec<OwnedArg>,
        events: Vec<AuditEvent>,
        reply: oneshot::Sender<StoreResult<u64>>,
    },
    /// A transaction: the writer serves this session alone until it ends.
    Session(mpsc::Receiver<SessionCall>),
}

type Work = Box<dyn FnOnce(&rusqlite::Connection) + Send>;

enum SessionCall {
    Run(Work),
    Commit(oneshot::Sender<StoreResult<()>>),
}

impl SqliteWriter {
    /// Opens the write connection to the (already migrated) database at `path` and starts the
    /// writer thread.
    pub(crate) fn open(path: &std::path::Path) -> StoreResult<Self> {
        let conn = rusqlite::Connection::open(path).map_err(backend)?;
        // `temp_store = MEMORY` keeps statement journals in memory: by default SQLite spills
        // them to a temporary file past 64 KiB, a file write per page.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(backend)?;
        // Admin commands in another process write the same file: wait for them, don't fail.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        conn.set_prepared_statement_cache_capacity(128);
        let (queue, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || Writer { conn, jobs }.run())
            .map_err(backend)?;
        Ok(Self { queue })
    }

    /// Runs one write; the number of rows it changed, once it is committed.
    pub(crate) async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Execute {
            sql: sql.to_owned(),
            args: args.iter().map(OwnedArg::from).collect(),
            events: Vec::new(),
            reply,
        })?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs one write and, when it changed rows, records `events` in the same commit: a
    /// write that carries its audit events still shares its commit with the writes waiting
    /// beside it, and the group appends all its writes' events at once before it commits (one
    /// head read and a few multi-row statements per chain, however many writes).
    pub(crate) async fn execute_recorded(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        events: Vec<AuditEvent>,
    ) -> StoreResult<u64> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Execute {
            sql: sql.to_owned(),
            args: args.iter().map(OwnedArg::from).collect(),
            events,
            reply,
        })?;
        answer.await.map_err(|_| stopped())?
    }

    /// Starts a transaction; it rolls back when dropped without [`Session::commit`].
    pub(crate) fn begin(&self) -> StoreResult<Session> {
        let (calls, session) = mpsc::channel();
        self.send(Job::Session(session))?;
        Ok(Session { calls })
    }

    fn send(&self, job: Job) -> StoreResult<()> {
        self.queue.send(job).map_err(|_| stopped())
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the SQLite writer thread has stopped".into())
}

/// A transaction on the writer thread.
pub(crate) struct Session {
    calls: mpsc::Sender<SessionCall>,
}

impl Session {
    /// Runs `work` on the writer's connection inside this transaction and returns its result.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        let call: Work = Box::new(move |conn| {
            let _ = reply.send(work(conn));
        });
        self.calls
            .send(SessionCall::Run(call))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub(crate) async fn execute(&self, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        let (sql, args) = owned(sql, args);
        self.run(move |conn| execute_on(conn, &sql, &args)).await
    }

    pub(crate) async fn fetch<T: FromColumns + Send + 'static>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<T>> {
        let (sql, args) = owned(sql, args);
        self.run(move |conn| {
            let args: Vec<Arg<'_>> = args.iter().map(OwnedArg::as_arg).collect();
            run_statement(conn, &sql, &args)
        })
        .await
    }

    pub(crate) async fn commit(self) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(SessionCall::Commit(reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn owned(sql: &str, args: &[Arg<'_>]) -> (String, Vec<OwnedArg>) {
    (sql.to_owned(), args.iter().map(OwnedArg::from).collect())
}

/// Runs a statement to its end and returns the rows it changed.
fn execute_on(conn: &rusqlite::Connection, sql: &str, args: &[OwnedArg]) -> StoreResult<u64> {
    let args: Vec<Arg<'_>> = args.iter().map(OwnedArg::as_arg).collect();
    run_statement::<Ignored>(conn, sql, &args)?;
    Ok(conn.changes())
}

/// A row nobody reads (`execute` of a statement that returns rows, such as `SELECT 1`).
struct Ignored;

impl FromColumns for Ignored {
    fn from_columns(_: &mut dyn crate::read::Columns) -> StoreResult<Self> {
        Ok(Ignored)
    }
}

struct Writer {
    conn: rusqlite::Connection,
    jobs: mpsc::Receiver<Job>,
}

impl Writer {
    fn run(self) {
        let mut next = self.jobs.recv().ok();
        while let Some(job) = next.take() {
            next = match job {
                Job::Execute {
                    sql,
                    args,
                    events,
                    reply,
                } => self.group(sql, args, events, reply),
                Job::Session(calls) => {
                    self.session(calls);
                    None
                }
            };
            if next.is_none() {
                next = self.jobs.recv().ok();
            }
        }
    }

    /// Runs the first write and every write already waiting behind it in one transaction,
    /// commits, and answers them. Returns a session that was waiting among them, if any (it
    /// runs after this commit).
    fn group(
        &self,
        sql: String,
        args: Vec<OwnedArg>,
        events: Vec<AuditEvent>,
        reply: oneshot::Sender<StoreResult<u64>>,
    ) -> Option<Job> {
        if let Err(err) = self.control("BEGIN IMMEDIATE") {
            let _ = reply.send(Err(backend(err)));
            return None;
        }
        let mut done: Vec<(oneshot::Sender<StoreResult<u64>>, StoreResult<u64>)> = Vec::new();
        let mut next = Some((sql, args, events, reply));
        let mut after = None;
        // The events of the writes that changed rows, appended just before the commit.
        let mut recorded: Vec<AuditEvent> = Vec::new();
        while let Some((sql, args, events, reply)) = next.take() {
            let result = execute_on(&self.conn, &sql, &args);
            if matches!(result, Ok(changed) if changed > 0) {
                recorded.extend(events);
            }
            if result.is_err() && self.conn.is_autocommit() {
                // SQLite rolled the whole transaction back (a full disk, an I/O error): the
                // writes before this one are lost with it, so they fail too.
                let message = "the write was rolled back with its transaction by a database error";
                for (reply, _) in done {
                    let _ = reply.send(Err(StoreError::Backend(message.into())));
                }
                let _ = reply.send(result);
                return None;
            }
            done.push((reply, result));
            if done.len() < MAX_GROUP {
                match self.jobs.try_recv() {
                    Ok(Job::Execute {
                        sql,
                        args,
                        events,
                        reply,
                    }) => next = Some((sql, args, events, reply)),
                    Ok(session) => after = Some(session),
                    Err(_) => {}
                }
            }
        }
        // The writes stood; their events go in the same transaction, or none of it commits:
        // a record fails only with the database itself (its rows are new).
        if let Err(err) = crate::audit::record_on(&self.conn, &recorded) {
            if !self.conn.is_autocommit() {
                let _ = self.control("ROLLBACK");
            }
            let message = format!("the write could not be recorded: {err}");
            for (reply, _) in done {
                let _ = reply.send(Err(StoreError::Backend(message.clone().into())));
            }
            return after;
        }
        match self.control("COMMIT") {
            Ok(()) => {
                for (reply, result) in done {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                let _ = self.control("ROLLBACK");
                let message = format!("the write could not be committed: {err}");
                for (reply, _) in done {
                    let _ = reply.send(Err(StoreError::Backend(message.clone().into())));
                }
            }
        }
        after
    }

    /// A transaction-control statement, prepared once: `execute_batch` would parse it again
    /// for every group.
    fn control(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Serves one transaction until it commits or its handle is dropped.
    fn session(&self, calls: mpsc::Receiver<SessionCall>) {
        if let Err(err) = self.control("BEGIN IMMEDIATE") {
            // Every call of the session answers with the failure to begin.
            let message = format!("the transaction could not begin: {err}");
            while let Ok(call) = calls.recv() {
                if let SessionCall::Commit(reply) = call {
                    let _ = reply.send(Err(StoreError::Backend(message.clone().into())));
                    return;
                }
                // A `Run` dropped unanswered reports the writer as stopped to its caller.
            }
            return;
        }
        while let Ok(call) = calls.recv() {
            match call {
                SessionCall::Run(work) => work(&self.conn),
                SessionCall::Commit(reply) => {
                    let result = self.control("COMMIT").map_err(backend);
                    if result.is_err() {
                        let _ = self.control("ROLLBACK");
                    }
                    let _ = reply.send(result);
                    return;
                }
            }
        }
        let _ = self.control("ROLLBACK");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{Columns, SqliteReaders};

    struct Name(String);

    impl FromColumns for Name {
        fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
            Ok(Self(c.text()?))
        }
    }

    fn database() -> (tempfile::TempDir, SqliteWriter, SqliteReaders) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("write.db");
        rusqlite::Connection::open(&path)
            .and_then(|c| {
                c.execute_batch(
                    "PRAGMA journal_mode = WAL; CREATE TABLE t (name TEXT NOT NULL UNIQUE)",
                )
            })
            .expect("schema");
        let writer = SqliteWriter::open(&path).expect("writer");
        let readers = SqliteReaders::open(&path).expect("readers");
        (dir, writer, readers)
    }

    fn names(readers: &SqliteReaders) -> Vec<String> {
        let rows: Vec<Name> = readers
            .fetch_all("SELECT name FROM t ORDER BY name", &[])
            .expect("read");
        rows.into_iter().map(|n| n.0).collect()
    }

    /// Recorded writes side by side: each write that changed rows has its event, in one
    /// unbroken chain; a write that changed nothing or failed records nothing; and a group
    /// whose events cannot be recorded commits none of its writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_and_their_events_commit_together() {
        use taxbridge_domain::audit::{Action, ChainCheck, ChainHead, StoredEvent};
        let (dir, writer, readers) = database();
        rusqlite::Connection::open(dir.path().join("write.db"))
            .and_then(|c| c.execute_batch(include_str!("../migrations/sqlite/0014_audit_log.sql")))
            .expect("audit tables");
        let event = |n: usize| {
            vec![AuditEvent::by_system(Action::JobCreated).target("job", format!("job_{n}"))]
        };
        let writes: Vec<_> = (0..40)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let sql = if n % 10 == 9 {
                        // A duplicate of the write before it, or a write that changes nothing.
                        format!("INSERT INTO t (name) VALUES ('n{}')", n - 1)
                    } else if n % 10 == 5 {
                        "DELETE FROM t WHERE name = 'none'".to_owned()
                    } else {
                        format!("INSERT INTO t (name) VALUES ('n{n}')")
                    };
                    writer.execute_recorded(&sql, &[], event(n)).await
                })
            })
            .collect();
        let mut results = Vec::new();
        for write in writes {
            results.push(write.await.expect("joined"));
        }
        let changed = results.iter().filter(|r| matches!(r, Ok(1))).count();
        assert_eq!(changed, 32, "{results:?}");
        let file = rusqlite::Connection::open(dir.path().join("write.db")).expect("open");
        let stored: Vec<StoredEvent> = file
            .prepare(
                "SELECT chain, seq, id, occurred_at, action, actor_id, body, prev_hash, hash \
                 FROM audit_events ORDER BY seq",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([], |r| {
                        Ok(StoredEvent {
                            chain: r.get(0)?,
                            seq: r.get(1)?,
                            id: r.get(2)?,
                            occurred_at: r.get(3)?,
                            action: r.get(4)?,
                            actor_id: r.get(5)?,
                            body: r.get(6)?,
                            prev_hash: r.get(7)?,
                            hash: r.get(8)?,
                        })
                    })?
                    .collect()
            })
            .expect("events");
        assert_eq!(stored.len(), 32);
        let (seq, hash): (i64, String) = file
            .query_row("SELECT seq, hash FROM audit_heads", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("head");
        let head = ChainHead {
            chain: "global".into(),
            seq,
            hash,
            base_seq: 0,
            base_hash: String::new(),
        };
        let mut check = ChainCheck::new(&head);
        for event in &stored {
            check.next(event).expect("linked");
        }
        check.finish(&head).expect("the head is the last event");

        // Two writes whose events share an id: the append fails, and neither write commits.
        let mut twice = event(100);
        twice[0].id = taxbridge_domain::ids::AuditEventId::from_string("evt_fixed");
        let (a, b) = tokio::join!(
            writer.execute_recorded("INSERT INTO t (name) VALUES ('x1')", &[], twice.clone()),
            writer.execute_recorded("INSERT INTO t (name) VALUES ('x2')", &[], twice.clone()),
        );
        assert!(a.is_err() || b.is_err());
        let names = names(&readers);
        assert!(
            !(names.contains(&"x1".to_owned()) && names.contains(&"x2".to_owned())),
            "{names:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_each_commit_and_a_failing_one_undoes_only_itself() {
        let (_dir, writer, readers) = database();
        // 200 writes at once, every tenth a duplicate of the write before it: whichever group
        // a duplicate lands in, only it fails, and every other write of that group stays.
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    let name = format!("n{:03}", if i % 10 == 9 { i - 1 } else { i });
                    writer
                        .execute("INSERT INTO t (name) VALUES ($1)", &[name.as_str().into()])
                        .await
                })
            })
            .collect();
        let mut conflicts = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(changed) => assert_eq!(changed, 1),
                Err(StoreError::Conflict { what }) => {
                    assert!(what.contains("UNIQUE constraint failed: t.name"), "{what}");
                    conflicts += 1;
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!(conflicts, 20);
        assert_eq!(names(&readers).len(), 180);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_statement_failing_halfway_leaves_none_of_its_rows_and_its_group_commits() {
        let (_dir, writer, readers) = database();
        writer
            .execute("INSERT INTO t (name) VALUES ('taken')", &[])
            .await
            .expect("first");
        // Many rounds, so the failing statement lands amid others of its group.
        for round in 0..20 {
            let tasks: Vec<_> = (0..10)
                .map(|i| {
                    let writer = writer.clone();
                    tokio::spawn(async move {
                        if i == 5 {
                            // Its first row is written before its second fails.
                            let sql = format!(
                                "INSERT INTO t (name) VALUES ('half-{round}'), ('taken'), ('after-{round}')"
                            );
                            writer.execute(&sql, &[]).await
                        } else {
                            let name = format!("r{round}-{i}");
                            writer
                                .execute("INSERT INTO t (name) VALUES ($1)", &[name.as_str().into()])
                                .await
                        }
                    })
                })
                .collect();
            for (i, task) in tasks.into_iter().enumerate() {
                let result = task.await.expect("task");
                assert_eq!(result.is_err(), i == 5, "{result:?}");
            }
        }
        let names = names(&readers);
        assert_eq!(names.len(), 1 + 20 * 9, "{names:?}");
        assert!(!names
            .iter()
            .any(|n| n.starts_with("half-") || n.starts_with("after-")));
    }

    #[tokio::test]
    async fn a_session_sees_its_writes_and_rolls_back_when_dropped() {
        let (_dir, writer, readers) = database();
        let session = writer.begin().expect("begin");
        session
            .execute("INSERT INTO t (name) VALUES ($1)", &["kept?".into()])
            .await
            .expect("insert");
        let inside: Vec<Name> = session
            .fetch("SELECT name FROM t", &[])
            .await
            .expect("read inside");
        assert_eq!(inside.len(), 1);
        assert!(
            names(&readers).is_empty(),
            "uncommitted rows are not read outside"
        );
        drop(session);
        // The next write queues behind the rollback, so once it is answered the rollback is done.
        writer
            .execute("INSERT INTO t (name) VALUES ($1)", &["after".into()])
            .await
            .expect("insert after");
        assert_eq!(names(&readers), vec!["after".to_owned()]);

        let session = writer.begin().expect("begin");
        session
            .execute("INSERT INTO t (name) VALUES ($1)", &["committed".into()])
            .await
            .expect("insert");
        session.commit().await.expect("commit");
        assert_eq!(
            names(&readers),
            vec!["after".to_owned(), "committed".to_owned()]
        );
    }
}
