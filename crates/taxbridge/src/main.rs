//! `taxbridge`: one binary that serves the gateway and administers it. Every command reads the
//! same settings (defaults < `--config` TOML < `TAXBRIDGE_*` env < flags) and works on the
//! same database as a running server.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use taxbridge::{
    admin, jobs, keyring, serve,
    settings::{Overrides, Settings},
};

/// mimalloc rather than the system allocator: a GraphQL response is many small allocations
/// freed on whichever worker thread finishes the request, and glibc's per-arena locks turned
/// that into futex waits under load (seen in `perf` on the workspace page benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "taxbridge",
    version,
    about = "Taxbridge: a self-hostable gateway for tax firms and their software partners"
)]
struct Cli {
    /// A TOML settings file (see config/example.toml).
    #[arg(long, global = true, env = "TAXBRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the SQLite database and generated secrets live [default: ./taxbridge-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…` [default: sqlite://<data-dir>/taxbridge.db].
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway. On an empty database, creates the owner account and prints its API key.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run background tasks (artifact downloads) without serving the API: for deployments
    /// that scale workers apart from the gateway. `serve` runs them too unless
    /// `worker.concurrency` is 0.
    Worker,
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Print the GraphQL schema the server serves (SDL).
    Schema,
    /// Manage customer accounts.
    #[command(subcommand)]
    Users(admin::UsersCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Manage partner accounts.
    #[command(subcommand)]
    Partners(admin::PartnersCommand),
    /// Manage workspaces.
    #[command(subcommand)]
    Workspaces(admin::WorkspacesCommand),
    /// Manage the keys that encrypt stored provider credentials.
    #[command(subcommand)]
    Encryption(EncryptionCommand),
    /// Read, verify and export the audit log.
    #[command(subcommand)]
    Audit(taxbridge::audit::AuditCommand),
    /// Watch push imports.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Print request counts per day, API key, source-platform and operation.
    Usage {
        /// How many days back, today included.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
}

#[derive(Subcommand)]
enum EncryptionCommand {
    /// Make a new key the primary one (on one box; with `encryption.key` set, the configured
    /// key) and re-encrypt every stored credential under it. Safe while `serve` runs.
    Rotate,
    /// Drop from the key ring every older key that no stored credential uses (after rotate).
    Retire,
    /// Print the primary key's id and how many credentials each key seals.
    Status,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    private_files();
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        print!("{}", taxbridge_api::sdl());
        return std::process::ExitCode::SUCCESS;
    }
    let listen = match &cli.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        data_dir: cli.data_dir,
        database_url: cli.database_url,
        listen,
    };
    let result = match Settings::load(cli.config.as_deref(), overrides) {
        Ok(settings) => run(cli.command, settings).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Everything Taxbridge writes under its data dir (the database and its WAL, secrets, blobs)
/// is for its own user alone: files are created 0600 and folders 0700, by the process's
/// creation mask rather than a chmod afterwards, so no other user can open one even for an
/// instant.
fn private_files() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => serve::run(settings).await,
        Command::Worker => serve::run_worker(settings).await,
        Command::Migrate => {
            let url = settings.database_url();
            taxbridge_store::connect(&url).await?;
            println!(
                "The database at {} is up to date.",
                taxbridge_store::redact_url(&url)
            );
            Ok(())
        }
        Command::Schema => Ok(()),
        Command::Users(cmd) => admin::users(cmd, &settings).await,
        Command::Encryption(EncryptionCommand::Rotate) => keyring::rotate(&settings).await,
        Command::Encryption(EncryptionCommand::Retire) => keyring::retire(&settings).await,
        Command::Encryption(EncryptionCommand::Status) => keyring::status(&settings).await,
        Command::Keys(cmd) => admin::keys(cmd, &settings).await,
        Command::Partners(cmd) => admin::partners(cmd, &settings).await,
        Command::Workspaces(cmd) => admin::workspaces(cmd, &settings).await,
        Command::Usage { days } => admin::usage(days, &settings).await,
        Command::Jobs(cmd) => jobs::run(cmd, &settings).await,
        Command::Audit(cmd) => taxbridge::audit::run(cmd, &settings).await,
    }
}
