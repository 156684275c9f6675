//! The operator's commands: accounts, partners, API keys and usage. They open the database
//! directly, so they work beside a running server (SQLite in WAL mode lets them share it).
//! Output meant for scripts (a new key) goes alone on stdout; everything else is a table.

use crate::settings::Settings;
use clap::Subcommand;
use rand::RngCore;
use secrecy::SecretSlice;
use std::sync::Arc;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    audit::Who,
    identity::{reveal, Identity, IdentitySettings},
    ids::ApiKeyId,
    time::Timestamp,
};
use taxbridge_store::Store;

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a customer account.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key for an account; prints the key alone on stdout, once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List an account's keys (never their secrets).
    List {
        #[arg(long)]
        email: String,
    },
    /// Revoke a key by id; its access tokens stop working within seconds on every node.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum PartnersCommand {
    /// Create a partner account with its provider key; prints the partner's API key alone on stdout.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        provider_key: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
pub enum WorkspacesCommand {
    /// Create a `customer` workspace for a firm that signs up directly; prints its id.
    Create {
        #[arg(long)]
        name: String,
        /// The firm's first admin; the account is created if it does not exist.
        #[arg(long)]
        admin_email: Option<String>,
    },
}

/// Admin commands never sign tokens, so they need no shared signing secret: a random one
/// keeps them from depending on a setting only `serve` needs.
async fn open(settings: &Settings) -> anyhow::Result<Identity> {
    Ok(identity_on(open_store(settings).await?))
}

pub(crate) async fn open_store(settings: &Settings) -> anyhow::Result<Arc<Store>> {
    Ok(Arc::new(
        taxbridge_store::connect(&settings.database_url()).await?,
    ))
}

fn identity_on(store: Arc<Store>) -> Identity {
    let mut unused = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut unused);
    Identity::new(
        store,
        &SecretSlice::from(unused),
        IdentitySettings::default(),
    )
}

pub async fn users(cmd: UsersCommand, settings: &Settings) -> anyhow::Result<()> {
    let identity = open(settings).await?;
    match cmd {
        UsersCommand::Create { email, name } => {
            let account = identity
                .create_customer(&email, name, &Who::operator())
                .await?;
            println!("{}", account.id);
            eprintln!(
                "Created customer account {} ({}).",
                account.email, account.id
            );
        }
    }
    Ok(())
}

pub async fn keys(cmd: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    let identity = open(settings).await?;
    match cmd {
        KeysCommand::Create {
            email,
            name,
            expires_in_days,
        } => {
            let account = identity.account_by_email(&email).await?;
            let (key, secret) = identity
                .create_key(&account, &name, expires_in_days, &Who::operator())
                .await?;
            println!("{}", reveal(&secret));
            eprintln!(
                "Created API key {} ({}) for {}. It is shown only this once.",
                key.id, key.name, account.email
            );
        }
        KeysCommand::List { email } => {
            let account = identity.account_by_email(&email).await?;
            let keys = identity.keys_of(&account.id).await?;
            println!(
                "{:<40} {:<24} {:<12} {:<25} {:<25} {:<25} STATUS",
                "ID", "NAME", "PREFIX", "CREATED", "LAST USED", "EXPIRES"
            );
            let now = Timestamp::now();
            let show = |t: Option<Timestamp>| t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
            for key in keys {
                let status = if key.revoked_at.is_some() {
                    "revoked"
                } else if !key.is_usable_at(now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<40} {:<24} {:<12} {:<25} {:<25} {:<25} {}",
                    key.id,
                    key.name,
                    key.display_prefix,
                    key.created_at.to_rfc3339(),
                    show(key.last_used_at),
                    show(key.expires_at),
                    status
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if identity
                .revoke_key(&ApiKeyId::from_string(id.clone()), &Who::operator())
                .await?
            {
                println!("Revoked API key {id}.");
            } else {
                anyhow::bail!(
                    "no active API key has the id {id} (see `taxbridge keys list --email …`)"
                );
            }
        }
    }
    Ok(())
}

pub async fn partners(cmd: PartnersCommand, settings: &Settings) -> anyhow::Result<()> {
    let identity = open(settings).await?;
    match cmd {
        PartnersCommand::Create {
            name,
            provider_key,
            email,
        } => {
            let (account, key, secret) = identity
                .create_partner(&name, &provider_key, &email, &Who::operator())
                .await?;
            println!("{}", reveal(&secret));
            eprintln!(
                "Created partner {} ({}) with provider key `{}` and API key {}. The key is shown only this once.",
                name, account.id, provider_key, key.id
            );
        }
    }
    Ok(())
}

pub async fn usage(days: u32, settings: &Settings) -> anyhow::Result<()> {
    let usage = taxbridge_domain::usage::UsageRecorder::new(open_store(settings).await?);
    let since = Timestamp::now()
        .plus_days(-i64::from(days.max(1) - 1))
        .day();
    let rows = usage.since(&since).await?;
    println!(
        "{:<10}  {:<36}  {:<24}  {:<32}  {:>8}",
        "DAY", "API KEY", "SOURCE PLATFORM", "OPERATION", "COUNT"
    );
    for row in rows {
        let key = row.api_key_id.as_ref().map_or("(none)", |k| k.as_str());
        println!(
            "{:<10}  {:<36}  {:<24}  {:<32}  {:>8}",
            row.day, key, row.source_platform, row.operation, row.count
        );
    }
    Ok(())
}

pub async fn workspaces(cmd: WorkspacesCommand, settings: &Settings) -> anyhow::Result<()> {
    let workspaces = taxbridge_domain::workspaces::Workspaces::new(open_store(settings).await?);
    match cmd {
        WorkspacesCommand::Create { name, admin_email } => {
            let (workspace, admin) = workspaces
                .create_for_customer(&name, admin_email.as_deref(), &Who::operator())
                .await?;
            println!("{}", workspace.id);
            eprintln!(
                "Created customer workspace `{}` ({}) with slug `{}`.",
                workspace.display_name, workspace.id, workspace.slug
            );
            if let Some(admin) = admin {
                eprintln!("{} is its {}.", admin.account.email, admin.role.as_str());
            }
        }
    }
    Ok(())
}
