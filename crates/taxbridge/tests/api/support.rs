//! The test harness: a real Taxbridge server on port 0 with a fresh database, and a small
//! typed client whose calls read like the customer guide.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::sync::Arc;
use taxbridge::{app::App, settings::Settings};
use taxbridge_domain::identity::{reveal, Identity};

/// The largest file a test app downloads or accepts.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
use taxbridge_store::Store;
use taxbridge_testkit::{fresh_database, Database, TestDatabase};

/// Bytes per tus `PATCH` in the tests: small, so a file takes several.
pub const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;
pub const PUBLIC_BASE_URL: &str = "https://taxbridge.test";
pub const SIGNING_SECRET: &[u8] = b"test-signing-secret-of-32-bytes!";

/// The test app's mailer: what it would have sent, by recipient. (The SMTP path is tested
/// against a real SMTP receiver.)
#[derive(Default)]
pub struct Outbox(pub std::sync::Mutex<Vec<(String, String)>>);

#[async_trait::async_trait]
impl taxbridge_domain::sign_in::Mailer for Outbox {
    async fn send_sign_in_code(
        &self,
        to: &taxbridge_domain::email::Email,
        code: &str,
    ) -> Result<(), String> {
        self.0
            .lock()
            .map_err(|e| e.to_string())?
            .push((to.to_string(), code.to_owned()));
        Ok(())
    }
}

pub struct TestApp {
    /// Sign-in codes the app mailed.
    pub outbox: Arc<Outbox>,
    pub endpoint: String,
    pub base: String,
    pub database_url: String,
    pub identity: Arc<Identity>,
    pub store: Arc<Store>,
    pub http: reqwest::Client,
    /// The app's data dir (artifacts' bytes are under `blobs/`).
    pub data_dir: tempfile::TempDir,
    /// The test database, dropped with the first node (the others only share it).
    _db: Option<TestDatabase>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    /// Send `true` to stop the app's worker (it hands its tasks back as it stops).
    pub worker_stop: tokio::sync::watch::Sender<bool>,
}

/// A GraphQL response: `data` and `errors` as the server sent them.
#[derive(Debug)]
pub struct Gql {
    pub status: u16,
    pub body: Value,
}

impl Gql {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The first error's `extensions.code`, or "" when there is none.
    pub fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }

    pub fn assert_ok(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        self.data()
    }
}

impl TestApp {
    pub async fn spawn(database: Database) -> Option<Self> {
        Self::spawn_with(database, |_| {}).await
    }

    /// The app `serve` builds ([`App::build`]), on a fresh database, with test settings that
    /// `tweak` may change, serving on port 0 with its worker beside it.
    pub async fn spawn_with(database: Database, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let db = fresh_database(database).await.expect("test database")?;
        let url = db.url.clone();
        Some(Self::serve(&url, Some(db), tweak).await)
    }

    /// Another node on this app's database, with its own data dir, as a fleet runs them.
    pub async fn another_node(&self, tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::serve(&self.database_url, None, tweak).await
    }

    async fn serve(
        database_url: &str,
        db: Option<TestDatabase>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let mut settings = test_settings(database_url, data_dir.path());
        tweak(&mut settings);
        let outbox = Arc::new(Outbox::default());
        let app = App::build_with_mailer(&settings, outbox.clone())
            .await
            .expect("build the app");
        // The worker runs beside the app, as in `serve`, with retries a test can wait for.
        let (worker_stop, mut worker_stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(app.worker(None).run(async move {
            let _ = worker_stopped.wait_for(|s| *s).await;
        }));
        let api = app.api().await.expect("bind");
        let addr = api.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(api.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            outbox,
            endpoint: format!("http://{addr}/graphql"),
            base: format!("http://{addr}"),
            database_url: database_url.to_owned(),
            identity: app.services.identity.clone(),
            store: app.store.clone(),
            http: reqwest::Client::new(),
            _db: db,
            data_dir,
            _shutdown: tx,
            worker_stop,
        }
    }

    /// Where the app keeps artifacts' bytes (a local blob folder).
    pub fn blob_dir(&self) -> std::path::PathBuf {
        self.data_dir.path().join("blobs")
    }

    /// Sends a GraphQL request with optional bearer token and source-platform header.
    pub async fn graphql(&self, body: Value, token: Option<&str>, platform: Option<&str>) -> Gql {
        let mut request = self.http.post(&self.endpoint).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(platform) = platform {
            request = request.header("source-platform", platform);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.json().await.expect("a JSON body");
        Gql { status, body }
    }

    /// The customer guide's step 2.
    pub async fn login(&self, api_key: &str) -> Gql {
        self.graphql(
            json!({
                "query": "mutation LoginViaPersonalApiToken($apiKey: String!) { loginViaPersonalApiToken(token: $apiKey) { accessToken expiresAt tokenType } }",
                "variables": { "apiKey": api_key }
            }),
            None,
            Some("tax-firm-a"),
        )
        .await
    }

    /// Logs in and returns the access token, failing the test if login fails.
    pub async fn token_for(&self, api_key: &str) -> String {
        let response = self.login(api_key).await;
        response.assert_ok()["loginViaPersonalApiToken"]["accessToken"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }

    /// The customer guide's step 3.
    pub async fn me(&self, token: Option<&str>) -> Gql {
        self.graphql(
            json!({ "query": "query Me { me { id name email accountType } }" }),
            token,
            Some("tax-firm-a"),
        )
        .await
    }

    /// A customer account with one API key; returns (account id, key secret, key id).
    pub async fn customer_with_key(&self, email: &str) -> (String, String, String) {
        let account = self
            .identity
            .create_customer(
                email,
                Some("Jane Doe".into()),
                &taxbridge_domain::audit::Who::operator(),
            )
            .await
            .expect("customer");
        let (key, secret) = self
            .identity
            .create_key(
                &account,
                "Production Integration",
                None,
                &taxbridge_domain::audit::Who::operator(),
            )
            .await
            .expect("key");
        (
            account.id.to_string(),
            reveal(&secret).to_owned(),
            key.id.to_string(),
        )
    }
}

impl TestApp {
    /// A connection's credentials as stored (sealed), if any.
    pub async fn stored_credentials(&self, connection_id: &str) -> Option<String> {
        use taxbridge_domain::connections::ConnectionStore;
        self.store
            .connection_by_id(&taxbridge_domain::ids::ConnectionId::from_string(
                connection_id,
            ))
            .await
            .expect("read")
            .and_then(|c| c.credentials)
    }

    /// A `qount` connection in `workspace`, started by `token`'s partner and marked active.
    pub async fn active_connection_in(&self, token: &str, workspace: &str) -> String {
        self.active_connection_with(token, workspace, json!({ "apiKey": "k" }))
            .await
    }

    /// Like [`Self::active_connection_in`], started with `inputs`.
    pub async fn active_connection_with(
        &self,
        token: &str,
        workspace: &str,
        inputs: Value,
    ) -> String {
        let connection = self
            .graphql(
                json!({ "query": "mutation($w: ID!, $i: JSON) { startProviderConnection(workspaceId: $w, providerKey: \"qount\", inputs: $i) { id } }", "variables": { "w": workspace, "i": inputs } }),
                Some(token),
                None,
            )
            .await
            .assert_ok()["startProviderConnection"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.activate(&connection).await;
        connection
    }

    /// Marks a connection `active` as a successful collect would (import tests start from an
    /// active connection; collect itself is tested in `connections::collect`).
    pub async fn activate(&self, connection_id: &str) {
        use taxbridge_domain::connections::{ConnectionStatus, ConnectionStore};
        let mut connection = self
            .store
            .connection_by_id(&taxbridge_domain::ids::ConnectionId::from_string(
                connection_id,
            ))
            .await
            .expect("read")
            .expect("the connection exists");
        connection.status = ConnectionStatus::Active;
        assert!(self
            .store
            .update_connection(&connection, &[])
            .await
            .expect("update"));
    }

    /// A partner account logged in; returns its access token.
    pub async fn partner_token(&self, provider_key: &str) -> String {
        let (_, _, secret) = self
            .identity
            .create_partner(
                provider_key,
                provider_key,
                &format!("eng@{provider_key}.io"),
                &taxbridge_domain::audit::Who::operator(),
            )
            .await
            .expect("partner");
        self.token_for(reveal(&secret)).await
    }

    /// A customer account logged in; returns (account id, access token).
    pub async fn customer_token(&self, email: &str) -> (String, String) {
        let (id, secret, _) = self.customer_with_key(email).await;
        (id, self.token_for(&secret).await)
    }

    /// A new API key for an existing account, logged in; returns the access token.
    pub async fn token_of_existing(&self, email: &str) -> String {
        let account = self
            .identity
            .account_by_email(email)
            .await
            .expect("the account exists");
        let (_, secret) = self
            .identity
            .create_key(
                &account,
                "test",
                None,
                &taxbridge_domain::audit::Who::operator(),
            )
            .await
            .expect("key");
        self.token_for(reveal(&secret)).await
    }

    pub async fn create_workspace(&self, token: &str, display_name: &str) -> Gql {
        self.graphql(
            json!({
                "query": "mutation C($input: CreateWorkspaceInput!) { createWorkspace(input: $input) { id slug displayName status workspaceType firmSize metadata createdAt } }",
                "variables": { "input": { "displayName": display_name } }
            }),
            Some(token),
            Some("qount"),
        )
        .await
    }

    pub async fn add_users(&self, token: &str, workspace_id: &str, emails: &[&str]) -> Gql {
        self.graphql(
            json!({
                "query": "mutation A($workspaceId: ID!, $userEmails: [String!]!) { addUsersToTheWorkspace(workspaceId: $workspaceId, userEmails: $userEmails) { id email name role } }",
                "variables": { "workspaceId": workspace_id, "userEmails": emails }
            }),
            Some(token),
            None,
        )
        .await
    }

    pub async fn my_workspaces(&self, token: &str) -> Vec<Value> {
        let response = self
            .graphql(
                json!({ "query": "{ me { workspaces(limit: 500) { id slug displayName } } }" }),
                Some(token),
                None,
            )
            .await;
        response.assert_ok()["me"]["workspaces"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// What a test app runs with: the defaults `serve` has, on `database_url`, with loopback calls
/// allowed (the partner platforms, file servers and tus servers of the tests listen there),
/// short outbound deadlines, 1 MiB files and quick retries.
pub fn test_settings(database_url: &str, data_dir: &std::path::Path) -> Settings {
    use base64::Engine;
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.to_path_buf(),
        database_url: Some(taxbridge::settings::SecretUrl::new(database_url)),
        public_base_url: Some(PUBLIC_BASE_URL.into()),
        ..Settings::default()
    };
    settings.auth.jwt_secret = Some(
        String::from_utf8(SIGNING_SECRET.to_vec())
            .expect("ascii")
            .into(),
    );
    settings.encryption.key = Some(
        base64::engine::general_purpose::STANDARD
            .encode([7u8; 32])
            .into(),
    );
    settings.limits.max_body_bytes = 64 * 1024;
    settings.usage.flush_interval_seconds = 1;
    settings.egress.allow_cidrs = vec!["127.0.0.1/32".into()];
    settings.egress.connect_timeout_seconds = 1;
    settings.egress.timeout_seconds = 2;
    settings.egress.max_response_bytes = 64 * 1024;
    settings.worker.concurrency = 4;
    settings.worker.max_file_bytes = MAX_FILE_BYTES;
    settings.worker.tus_chunk_bytes = UPLOAD_CHUNK_BYTES;
    settings.worker.attempts = 5;
    settings.worker.first_retry_millis = 50;
    settings.worker.poll_interval_millis = 100;
    settings.worker.progress_interval_millis = 50;
    settings
}
