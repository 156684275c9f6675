//! `taxbridge audit …`: the operator's view of the audit log. `verify` walks every hash chain
//! and names the first event that does not match; `head` prints each chain's newest hash (keep
//! them outside the database: a later `verify` that still reaches them proves nothing before
//! them changed); `list` prints a chain's recent events; `export` streams events as JSON lines
//! or CSV for a SIEM, a page at a time, so a million events export in constant memory;
//! `sweep` applies the retention setting now.

use crate::settings::Settings;
use std::io::Write;
use taxbridge_domain::{
    audit::{Audit, AuditEvent, AuditFilters, AuditPage, StoredEvent, GLOBAL_CHAIN, WALK_PAGE},
    time::Timestamp,
};

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Walk every chain from its checkpoint to its head; exits 1 naming the first event of
    /// each broken chain.
    Verify,
    /// Print each chain's head: chain, number of its newest event, its hash.
    Head,
    /// Print a chain's events, newest first.
    List {
        /// A workspace id (`wsp_…`), or `global` for events outside any workspace.
        #[arg(long, default_value = GLOBAL_CHAIN)]
        chain: String,
        /// Only this action (repeat for several), e.g. `credentials.used`.
        #[arg(long)]
        action: Vec<String>,
        /// Only this actor's events (an account id, `cli` or `worker`).
        #[arg(long)]
        actor: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// Stream every event since an instant, oldest first.
    Export {
        /// RFC 3339, e.g. 2026-01-01T00:00:00Z.
        #[arg(long)]
        since: String,
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
    /// Remove events older than the retention (`audit.retention_days`, or `--days`) now.
    Sweep {
        #[arg(long)]
        days: Option<u32>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
pub enum Format {
    Jsonl,
    Csv,
}

pub async fn run(cmd: AuditCommand, settings: &Settings) -> anyhow::Result<()> {
    let audit = Audit::new(crate::admin::open_store(settings).await?);
    match cmd {
        AuditCommand::Verify => verify(&audit).await,
        AuditCommand::Head => {
            let mut out = std::io::stdout().lock();
            for head in audit.heads().await? {
                writeln!(out, "{}\t{}\t{}", head.chain, head.seq, head.hash)?;
            }
            Ok(())
        }
        AuditCommand::List {
            chain,
            action,
            actor,
            limit,
        } => {
            let filters = AuditFilters {
                actions: (!action.is_empty()).then_some(action),
                actor_ids: (!actor.is_empty()).then_some(actor),
                ..AuditFilters::default()
            };
            let page = AuditPage::parse(Some(limit), None, None)?;
            let mut out = std::io::stdout().lock();
            for event in audit.list(&chain, &filters, page).await? {
                let targets: Vec<String> = event
                    .targets
                    .iter()
                    .map(|t| format!("{}:{}", t.kind, t.id))
                    .collect();
                writeln!(
                    out,
                    "{}  {:<24} {:<8} {:<40} {}",
                    event.occurred_at.to_rfc3339(),
                    event.action,
                    <&str>::from(event.actor.kind),
                    event.actor.id,
                    targets.join(" ")
                )?;
            }
            Ok(())
        }
        AuditCommand::Export { since, format } => {
            let since = Timestamp::parse_rfc3339(&since).ok_or_else(|| {
                anyhow::anyhow!(
                    "--since `{since}` is not an RFC 3339 instant such as 2026-01-01T00:00:00Z"
                )
            })?;
            export(&audit, since, format, std::io::stdout().lock()).await
        }
        AuditCommand::Sweep { days } => {
            let days = days.unwrap_or(settings.audit.retention_days).max(1);
            let removed = audit.sweep(days).await?;
            println!("Removed {removed} events older than {days} days.");
            Ok(())
        }
    }
}

async fn verify(audit: &Audit) -> anyhow::Result<()> {
    let found = audit.verify().await?;
    if found.breaks.is_empty() {
        println!(
            "ok: {} chains, {} events, every link matches.",
            found.chains, found.events
        );
        return Ok(());
    }
    for at in &found.breaks {
        println!(
            "BROKEN chain {} at event {}{}: {}",
            at.chain,
            at.seq,
            at.event_id
                .as_deref()
                .map(|id| format!(" ({id})"))
                .unwrap_or_default(),
            at.reason
        );
    }
    anyhow::bail!(
        "{} of {} chains do not verify",
        found.breaks.len(),
        found.chains
    )
}

/// The CSV columns of an export, one event a row.
const CSV_COLUMNS: [&str; 15] = [
    "id",
    "occurredAt",
    "action",
    "actorType",
    "actorId",
    "actorName",
    "apiKeyId",
    "apiKeyPrefix",
    "workspaceId",
    "targets",
    "clientAddress",
    "userAgent",
    "sourcePlatform",
    "requestId",
    "metadata",
];

/// Writes every event since `since` to `out`, a page at a time: memory stays that of one
/// page whatever the log holds. JSON lines are each event's stored body, byte for byte.
pub async fn export(
    audit: &Audit,
    since: Timestamp,
    format: Format,
    out: impl Write,
) -> anyhow::Result<()> {
    match format {
        Format::Jsonl => {
            let mut out = std::io::BufWriter::new(out);
            walk(audit, since, |stored| {
                out.write_all(stored.body.as_bytes())?;
                out.write_all(b"\n")?;
                Ok(())
            })
            .await?;
            out.flush()?;
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer.write_record(CSV_COLUMNS)?;
            walk(audit, since, |stored| {
                writer.write_record(csv_row(&stored.event()?))?;
                Ok(())
            })
            .await?;
            writer.flush()?;
        }
    }
    Ok(())
}

/// Every event since `since`, oldest first, a page at a time (keyset paging: each page costs
/// the same however deep).
async fn walk(
    audit: &Audit,
    since: Timestamp,
    mut each: impl FnMut(&StoredEvent) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after: Option<String> = None;
    loop {
        let page = audit.export_page(since, after.as_deref()).await?;
        for stored in &page {
            each(stored)?;
        }
        match page.last() {
            Some(last) if page.len() == WALK_PAGE as usize => after = Some(last.id.clone()),
            _ => return Ok(()),
        }
    }
}

fn csv_row(e: &AuditEvent) -> [String; 15] {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        e.id.to_string(),
        e.occurred_at.to_rfc3339(),
        e.action.clone(),
        <&str>::from(e.actor.kind).to_owned(),
        e.actor.id.clone(),
        e.actor.name.clone(),
        text(&e.actor.api_key_id),
        text(&e.actor.api_key_prefix),
        e.workspace_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        e.targets
            .iter()
            .map(|t| format!("{}:{}", t.kind, t.id))
            .collect::<Vec<_>>()
            .join(" "),
        text(&e.context.client_address),
        text(&e.context.user_agent),
        text(&e.context.source_platform),
        text(&e.context.request_id),
        serde_json::to_string(&e.metadata).unwrap_or_default(),
    ]
}
