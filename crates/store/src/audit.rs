//! The audit log's tables (`audit_heads`, `audit_events`, `audit_targets`), the append that
//! every recorded change runs inside its own transaction ([`record`]), and the
//! [`AuditStore`] port.
//!
//! An append locks the chain's head row (on PostgreSQL, `INSERT … ON CONFLICT DO UPDATE`
//! takes the row lock in the same statement that reads it; on SQLite a transaction has the
//! writer to itself), numbers its events after the head, links each to the one before and
//! moves the head. The head is always the last lock a transaction takes, so it adds no
//! lock-order cycle to the imports' order (task → artifacts → works → job → head).

use crate::{
    db::{Arg, Tx},
    read::{Columns, FromColumns},
    row::{run_statement, OwnedArg},
    Store,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use taxbridge_domain::{
    audit::{link_hash, AuditEvent, AuditFilters, AuditPage, AuditStore, ChainHead, StoredEvent},
    store::StoreResult,
    time::Timestamp,
};

const EVENT_COLUMNS: &str =
    "e.chain, e.seq, e.id, e.occurred_at, e.action, e.actor_id, e.body, e.prev_hash, e.hash";

struct EventRow(StoredEvent);

impl FromColumns for EventRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(EventRow(StoredEvent {
            chain: c.text()?,
            seq: c.int()?,
            id: c.text()?,
            occurred_at: c.int()?,
            action: c.text()?,
            actor_id: c.text()?,
            body: c.text()?,
            prev_hash: c.text()?,
            hash: c.text()?,
        }))
    }
}

#[derive(Default)]
struct HeadRow {
    seq: i64,
    hash: String,
}

impl FromColumns for HeadRow {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(HeadRow {
            seq: c.int()?,
            hash: c.text()?,
        })
    }
}

struct FullHead(ChainHead);

impl FromColumns for FullHead {
    fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
        Ok(FullHead(ChainHead {
            chain: c.text()?,
            seq: c.int()?,
            hash: c.text()?,
            base_seq: c.int()?,
            base_hash: c.text()?,
        }))
    }
}

/// Reads a chain's head, creating it if needed, and locks it until the transaction ends (on
/// PostgreSQL `ON CONFLICT DO UPDATE` takes the row lock; on SQLite the writer is alone).
const LOCK_HEAD: &str = "INSERT INTO audit_heads (chain, seq, hash, base_seq, base_hash) \
     VALUES ($1, 0, '', 0, '') ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq \
     RETURNING seq, hash";

/// One statement of an append, its binds owned.
type Statement = (String, Vec<OwnedArg>);

/// Events by chain, chains in name order (so two transactions that touch the same chains lock
/// their heads in the same order).
fn by_chain(events: &[AuditEvent]) -> BTreeMap<String, Vec<&AuditEvent>> {
    let mut chains: BTreeMap<String, Vec<&AuditEvent>> = BTreeMap::new();
    for event in events {
        chains.entry(event.chain()).or_default().push(event);
    }
    chains
}

/// Appends `events` to their chains inside `tx`: the async twin of [`record_on`], running the
/// same [`plan`].
pub(crate) async fn record(tx: &mut Tx, events: &[AuditEvent]) -> StoreResult<()> {
    for (chain, events) in by_chain(events) {
        let head: Option<HeadRow> = tx
            .fetch_optional(LOCK_HEAD, &[chain.as_str().into()])
            .await?;
        let head = head.unwrap_or_default();
        for (sql, args) in plan(&chain, head.seq, head.hash, &events) {
            let args: Vec<Arg<'_>> = args.iter().map(OwnedArg::as_arg).collect();
            tx.execute(&sql, &args).await?;
        }
    }
    Ok(())
}

/// [`record`] on the SQLite writer's connection, inside the transaction it holds: how a
/// recorded write joins the writer's group commit (see `write::SqliteWriter::execute_then`).
pub(crate) fn record_on(conn: &rusqlite::Connection, events: &[AuditEvent]) -> StoreResult<()> {
    for (chain, events) in by_chain(events) {
        let head: Vec<HeadRow> = run_statement(conn, LOCK_HEAD, &[chain.as_str().into()])?;
        let head = head.into_iter().next().unwrap_or_default();
        for (sql, args) in plan(&chain, head.seq, head.hash, &events) {
            let args: Vec<Arg<'_>> = args.iter().map(OwnedArg::as_arg).collect();
            run_statement::<Nothing>(conn, &sql, &args)?;
        }
    }
    Ok(())
}

/// A row nobody reads.
struct Nothing;

impl FromColumns for Nothing {
    fn from_columns(_: &mut dyn Columns) -> StoreResult<Self> {
        Ok(Nothing)
    }
}

/// The statements that append one chain's `events` after its head (`seq`, `hash`): the events
/// linked one to the next, their targets, and the head moved to the last. Every link is
/// computed here, so the rows go in a few multi-row statements rather than a round trip each.
fn plan(chain: &str, mut seq: i64, mut hash: String, events: &[&AuditEvent]) -> Vec<Statement> {
    let mut rows: Vec<Vec<OwnedArg>> = Vec::new();
    let mut targets: Vec<Vec<OwnedArg>> = Vec::new();
    let text = |value: &str| OwnedArg::Text(Some(value.to_owned()));
    for event in events {
        seq += 1;
        let body = event.body();
        let linked = link_hash(chain, seq, &hash, &body);
        targets.extend(
            indexed_ids(event)
                .into_iter()
                .map(|id| vec![text(id), text(event.id.as_str())]),
        );
        rows.push(vec![
            text(event.id.as_str()),
            text(chain),
            OwnedArg::Int(Some(seq)),
            OwnedArg::Int(Some(event.occurred_at.as_millis())),
            text(&event.action),
            text(&event.actor.id),
            OwnedArg::Text(Some(body)),
            text(&hash),
            text(&linked),
        ]);
        hash = linked;
    }
    let mut statements = Vec::new();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        statements.push((
            format!(
                "INSERT INTO audit_events (id, chain, seq, occurred_at, action, actor_id, body, \
                 prev_hash, hash) VALUES {}",
                placeholders(chunk.len(), 9)
            ),
            chunk.concat(),
        ));
    }
    for chunk in targets.chunks(ROWS_PER_STATEMENT) {
        statements.push((
            format!(
                "INSERT INTO audit_targets (target_id, event_id) VALUES {} ON CONFLICT DO NOTHING",
                placeholders(chunk.len(), 2)
            ),
            chunk.concat(),
        ));
    }
    statements.push((
        "UPDATE audit_heads SET seq = $2, hash = $3 WHERE chain = $1".to_owned(),
        vec![
            text(chain),
            OwnedArg::Int(Some(seq)),
            OwnedArg::Text(Some(hash)),
        ],
    ));
    statements
}

/// The ids an event is found by in `audit_targets`: its targets, its acting account (an
/// account finds its own doings, not only what was done to it) and its API key (a key's page
/// finds what the key did).
fn indexed_ids(event: &AuditEvent) -> Vec<&str> {
    let mut ids: Vec<&str> = event.targets.iter().map(|t| t.id.as_str()).collect();
    if !matches!(event.actor.kind, taxbridge_domain::audit::ActorType::System) {
        ids.push(event.actor.id.as_str());
    }
    if let Some(key) = &event.actor.api_key_id {
        ids.push(key.as_str());
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Rows one multi-row `INSERT` carries at most (9 binds each: far below either database's
/// limit on binds per statement).
const ROWS_PER_STATEMENT: usize = 500;

/// `($1, $2), ($3, $4)` for `rows` rows of `width` binds.
fn placeholders(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| {
            let marks: Vec<String> = (1..=width)
                .map(|col| format!("${}", row * width + col))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A bind of a built query: text or integer.
enum Bind {
    Text(String),
    Int(i64),
}

/// `AND <column> IN ($n, …)` for a filter; false when the filter is empty (matches nothing).
fn any_of(
    sql: &mut String,
    binds: &mut Vec<Bind>,
    column: &str,
    values: &Option<Vec<String>>,
) -> bool {
    let Some(values) = values else { return true };
    if values.is_empty() {
        return false;
    }
    let marks: Vec<String> = values
        .iter()
        .map(|value| {
            binds.push(Bind::Text(value.clone()));
            format!("${}", binds.len())
        })
        .collect();
    sql.push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
    true
}

/// The filters' conditions after a scope already in `sql`; false when nothing can match.
fn filtered(sql: &mut String, binds: &mut Vec<Bind>, filters: &AuditFilters) -> bool {
    if !any_of(sql, binds, "e.action", &filters.actions)
        || !any_of(sql, binds, "e.actor_id", &filters.actor_ids)
    {
        return false;
    }
    if let Some(targets) = &filters.target_ids {
        let mut inner = String::new();
        if !any_of(&mut inner, binds, "t.target_id", &Some(targets.clone())) {
            return false;
        }
        sql.push_str(&format!(
            " AND e.id IN (SELECT t.event_id FROM audit_targets t WHERE 1 = 1{inner})"
        ));
    }
    if let Some(since) = filters.since {
        binds.push(Bind::Int(since.as_millis()));
        sql.push_str(&format!(" AND e.occurred_at >= ${}", binds.len()));
    }
    if let Some(until) = filters.until {
        binds.push(Bind::Int(until.as_millis()));
        sql.push_str(&format!(" AND e.occurred_at < ${}", binds.len()));
    }
    true
}

fn args(binds: &[Bind]) -> Vec<Arg<'_>> {
    binds
        .iter()
        .map(|bind| match bind {
            Bind::Text(text) => text.as_str().into(),
            Bind::Int(int) => Arg::Int(Some(*int)),
        })
        .collect()
}

impl Store {
    async fn events_where(
        &self,
        scope: &str,
        scope_value: &str,
        order: &str,
        filters: &AuditFilters,
        page: AuditPage,
    ) -> StoreResult<Vec<StoredEvent>> {
        let mut binds = vec![Bind::Text(scope_value.to_owned())];
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM audit_events e WHERE {scope}");
        if !filtered(&mut sql, &mut binds, filters) {
            return Ok(Vec::new());
        }
        let dir = if page.oldest_first { "ASC" } else { "DESC" };
        sql.push_str(&format!(
            " ORDER BY {order} {dir} LIMIT {} OFFSET {}",
            page.limit, page.offset
        ));
        let rows: Vec<EventRow> = self.db.fetch(&sql, &args(&binds)).await?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }
}

#[async_trait]
impl AuditStore for Store {
    async fn append_events(&self, events: &[AuditEvent]) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        record(&mut tx, events).await?;
        tx.commit().await
    }

    async fn chain_events(
        &self,
        chain: &str,
        filters: &AuditFilters,
        page: AuditPage,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.events_where("e.chain = $1", chain, "e.seq", filters, page)
            .await
    }

    async fn account_events(
        &self,
        account: &str,
        filters: &AuditFilters,
        page: AuditPage,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.events_where(
            "e.chain = 'global' AND e.id IN \
             (SELECT a.event_id FROM audit_targets a WHERE a.target_id = $1)",
            account,
            "e.seq",
            filters,
            page,
        )
        .await
    }

    async fn events_about(&self, targets: &[String], limit: u32) -> StoreResult<Vec<StoredEvent>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut binds = Vec::new();
        let mut inner = String::new();
        any_of(
            &mut inner,
            &mut binds,
            "t.target_id",
            &Some(targets.to_vec()),
        );
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events e WHERE e.id IN \
             (SELECT t.event_id FROM audit_targets t WHERE 1 = 1{inner}) \
             ORDER BY e.occurred_at DESC, e.id DESC LIMIT {limit}"
        );
        let rows: Vec<EventRow> = self.db.fetch(&sql, &args(&binds)).await?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    async fn chain_heads(&self) -> StoreResult<Vec<ChainHead>> {
        let rows: Vec<FullHead> = self
            .db
            .fetch(
                "SELECT chain, seq, hash, base_seq, base_hash FROM audit_heads ORDER BY chain",
                &[],
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    async fn chain_after(
        &self,
        chain: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events e WHERE e.chain = $1 AND e.seq > $2 \
             ORDER BY e.seq LIMIT {limit}"
        );
        let rows: Vec<EventRow> = self
            .db
            .fetch(&sql, &[chain.into(), Arg::Int(Some(after_seq))])
            .await?;
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    async fn events_since(
        &self,
        since: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        let rows: Vec<EventRow> = match after {
            // Keyset paging on (occurred_at, id): each page costs the same however deep.
            Some(after) => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM audit_events e, \
                     (SELECT occurred_at AS at FROM audit_events WHERE id = $2) p \
                     WHERE e.occurred_at >= $1 \
                     AND (e.occurred_at > p.at OR (e.occurred_at = p.at AND e.id > $2)) \
                     ORDER BY e.occurred_at, e.id LIMIT {limit}"
                );
                self.db
                    .fetch(&sql, &[Arg::Int(Some(since.as_millis())), after.into()])
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM audit_events e WHERE e.occurred_at >= $1 \
                     ORDER BY e.occurred_at, e.id LIMIT {limit}"
                );
                self.db
                    .fetch(&sql, &[Arg::Int(Some(since.as_millis()))])
                    .await?
            }
        };
        Ok(rows.into_iter().map(|row| row.0).collect())
    }

    async fn sweep_events(&self, before: Timestamp, batch: u32) -> StoreResult<u64> {
        // One chain at a time, oldest events first, under the chain's head lock: the
        // checkpoint moves to the last removed event in the same transaction as the removal.
        // The chain is found through the time index, so a sweep with nothing to remove is
        // one indexed read however many chains there are.
        struct Chain(String);
        impl FromColumns for Chain {
            fn from_columns(c: &mut dyn Columns) -> StoreResult<Self> {
                Ok(Chain(c.text()?))
            }
        }
        let oldest: Option<Chain> = self
            .db
            .fetch_optional(
                "SELECT chain FROM audit_events WHERE occurred_at < $1 \
                 ORDER BY occurred_at LIMIT 1",
                &[Arg::Int(Some(before.as_millis()))],
            )
            .await?;
        if let Some(Chain(chain)) = oldest {
            let head = ChainHead {
                chain,
                seq: 0,
                hash: String::new(),
                base_seq: 0,
                base_hash: String::new(),
            };
            let mut tx = self.db.begin().await?;
            // Locks the head (a no-op update: the same in both databases).
            tx.execute(
                "UPDATE audit_heads SET seq = seq WHERE chain = $1",
                &[head.chain.as_str().into()],
            )
            .await?;
            // The chain's oldest events in order, as far as they are past the retention: the
            // checkpoint cuts the chain at one place, so nothing newer goes before it.
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM audit_events e WHERE e.chain = $1 \
                 ORDER BY e.seq LIMIT {batch}"
            );
            let first: Vec<EventRow> = tx.fetch(&sql, &[head.chain.as_str().into()]).await?;
            let old: Vec<&StoredEvent> = first
                .iter()
                .map(|row| &row.0)
                .take_while(|event| event.occurred_at < before.as_millis())
                .collect();
            let Some(last) = old.last() else {
                return Ok(0);
            };
            let (last_seq, last_hash) = (last.seq, last.hash.clone());
            for stored in &old {
                // An unreadable body (changed by hand) leaves its rows behind, found by nothing.
                let Ok(event) = stored.event() else { continue };
                for id in indexed_ids(&event) {
                    tx.execute(
                        "DELETE FROM audit_targets WHERE target_id = $1 AND event_id = $2",
                        &[id.into(), stored.id.as_str().into()],
                    )
                    .await?;
                }
            }
            let removed = tx
                .execute(
                    "DELETE FROM audit_events WHERE chain = $1 AND seq <= $2",
                    &[head.chain.as_str().into(), Arg::Int(Some(last_seq))],
                )
                .await?;
            tx.execute(
                "UPDATE audit_heads SET base_seq = $2, base_hash = $3 WHERE chain = $1",
                &[
                    head.chain.as_str().into(),
                    Arg::Int(Some(last_seq)),
                    last_hash.as_str().into(),
                ],
            )
            .await?;
            tx.commit().await?;
            return Ok(removed);
        }
        Ok(0)
    }
}
