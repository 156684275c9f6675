//! What a node on PostgreSQL must share with the rest of its fleet, checked before it starts.
//! On PostgreSQL, nodes behind one balancer answer for each other: a file stored by one is
//! served by another, and a link one node writes is followed through the balancer. So a node
//! that would keep files in its own folder, or write links naming itself, is refused at start,
//! naming the setting, instead of answering 500s or wrong links later. `server.single_node`
//! says a PostgreSQL node runs alone and lifts the refusal. SQLite is always one node.

use crate::settings::Settings;
use taxbridge_store::Backend;

/// The long-running process the settings are checked for: each needs only what it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// `taxbridge serve`: the API, the web pages and (unless `worker.concurrency` is 0) a worker.
    Serve,
    /// `taxbridge worker`: background tasks only. It stores files but writes no links and
    /// signs no tokens.
    Worker,
}

/// Refuses settings a fleet on PostgreSQL cannot run with, saying which setting to set.
pub fn check(settings: &Settings, process: Process) -> anyhow::Result<()> {
    let backend = Backend::of_url(&settings.database_url())?;
    if backend != Backend::Postgres || settings.server.single_node {
        return Ok(());
    }
    const ALONE: &str = "or, if this node runs alone, set server.single_node = true (TAXBRIDGE_SERVER__SINGLE_NODE=true)";
    if settings.blobs.url.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!(
            "blobs.url is not set, so files would be kept under this node's data directory where other nodes cannot read them. On PostgreSQL set blobs.url to a store every node shares, e.g. s3://bucket/prefix (TAXBRIDGE_BLOBS__URL), {ALONE}"
        );
    }
    if process == Process::Serve && settings.public_base_url.is_none() {
        anyhow::bail!(
            "public_base_url is not set, so deep links and upload URLs would name this node ({}) instead of the address users reach. On PostgreSQL set public_base_url to the balancer's address, e.g. https://taxbridge.example.com (TAXBRIDGE_PUBLIC_BASE_URL), {ALONE}",
            settings.listen
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SecretUrl;

    fn on_postgres() -> Settings {
        Settings {
            database_url: Some(SecretUrl::new("postgres://tb:secret@127.0.0.1/tb")),
            ..Settings::default()
        }
    }

    fn refusal(settings: &Settings, process: Process) -> String {
        check(settings, process)
            .map(|()| String::new())
            .unwrap_or_else(|err| err.to_string())
    }

    #[test]
    fn a_postgres_node_needs_shared_blobs_and_a_public_address() {
        let mut settings = on_postgres();
        let why = refusal(&settings, Process::Serve);
        assert!(
            why.contains("blobs.url") && why.contains("TAXBRIDGE_BLOBS__URL"),
            "{why}"
        );
        assert!(why.contains("server.single_node"), "{why}");
        assert!(
            !why.contains("secret"),
            "never the database password: {why}"
        );
        assert!(refusal(&settings, Process::Worker).contains("blobs.url"));

        settings.blobs.url = Some("s3://taxbridge/blobs".into());
        let why = refusal(&settings, Process::Serve);
        assert!(
            why.contains("public_base_url") && why.contains("TAXBRIDGE_PUBLIC_BASE_URL"),
            "{why}"
        );
        // The worker writes no links.
        check(&settings, Process::Worker).expect("a worker needs no public address");

        settings.public_base_url = Some("https://taxbridge.example.com".into());
        check(&settings, Process::Serve).expect("a fleet node");
    }

    #[test]
    fn one_node_alone_on_postgres_or_on_sqlite_is_not_refused() {
        let mut settings = on_postgres();
        settings.server.single_node = true;
        check(&settings, Process::Serve).expect("single node on PostgreSQL");
        check(&Settings::default(), Process::Serve).expect("SQLite");
        check(&Settings::default(), Process::Worker).expect("SQLite");
    }
}
