//! The test harness: a real Taxbridge server on port 0 with a fresh database, and a small
//! typed client whose calls read like the customer guide.
#![allow(dead_code)]

use secrecy::SecretSlice;
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};
use taxbridge_api::{
    ApiSettings, Application, ConnectionLimits, QueryLimits, RateLimitSettings, Services,
};
use taxbridge_domain::{
    connections::Connections,
    crypto::{KeyRing, Keys},
    identity::{reveal, Identity, IdentitySettings},
    imports::Imports,
    providers::Catalog,
    usage::UsageRecorder,
    workspaces::Workspaces,
};
use taxbridge_outbound::{Egress, EgressSettings, PartnerProtocol};
use taxbridge_worker::{
    download::{Download, DownloadSettings},
    Worker, WorkerMetrics, WorkerSettings,
};

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
    /// Where the app keeps artifacts' bytes (a local blob folder).
    pub blob_dir: tempfile::TempDir,
    _db: TestDatabase,
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

    pub async fn spawn_with(
        database: Database,
        tweak: impl FnOnce(&mut ApiSettings),
    ) -> Option<Self> {
        let db = fresh_database(database).await.expect("test database")?;
        let store = Arc::new(taxbridge_store::connect(&db.url).await.expect("connect"));
        let identity = Arc::new(Identity::new(
            store.clone(),
            &SecretSlice::from(SIGNING_SECRET.to_vec()),
            IdentitySettings::default(),
        ));
        let workspaces = Arc::new(Workspaces::new(store.clone()));
        let keys = KeyRing::new(&SecretSlice::from(vec![7u8; 32]), &[]).expect("key ring");
        let connections = Arc::new(Connections::new(
            store.clone(),
            workspaces.clone(),
            Arc::new(Catalog::built_in()),
            Arc::new(Keys::fixed(keys)),
            Arc::new(PartnerProtocol::new(
                Egress::new(EgressSettings {
                    allow_cidrs: vec!["127.0.0.1/32".parse().expect("cidr")],
                    connect_timeout: Duration::from_secs(1),
                    total_timeout: Duration::from_secs(2),
                    max_response_bytes: 64 * 1024,
                    ..EgressSettings::default()
                })
                .expect("egress"),
            )),
        ));
        let blob_dir = tempfile::tempdir().expect("blob dir");
        let blobs = taxbridge_blobs::Blobs::local(blob_dir.path()).expect("blobs");
        let egress = Egress::new(EgressSettings {
            allow_cidrs: vec!["127.0.0.1/32".parse().expect("cidr")],
            connect_timeout: Duration::from_secs(1),
            total_timeout: Duration::from_secs(2),
            max_response_bytes: 64 * 1024,
            ..EgressSettings::default()
        })
        .expect("egress");
        let imports = Arc::new(Imports::new(store.clone(), connections.clone()));
        let outbox = Arc::new(Outbox::default());
        let uploads = Arc::new(taxbridge_domain::uploads::Uploads::new(
            store.clone(),
            imports.clone(),
            connections.clone(),
        ));
        let upload = taxbridge_worker::upload::UploadHandler::new(
            store.clone(),
            store.clone(),
            blobs.clone(),
            taxbridge_outbound::tus::TusClient::new(egress.clone()),
            taxbridge_worker::upload::UploadSettings {
                chunk_bytes: UPLOAD_CHUNK_BYTES,
                attempts: 4,
                first_retry: Duration::from_millis(50),
                progress_every: Duration::from_millis(50),
            },
        );
        let worker_metrics = prometheus::Registry::new();
        // The worker runs beside the app, as in `serve`, with retries a test can wait for.
        let worker = Worker::new(
            store.clone(),
            vec![
                Arc::new(Download::new(
                    store.clone(),
                    store.clone(),
                    connections.clone(),
                    blobs.clone(),
                    egress.clone(),
                    DownloadSettings {
                        max_bytes: MAX_FILE_BYTES,
                        attempts: 5,
                        first_retry: Duration::from_millis(50),
                    },
                    WorkerMetrics::new(&worker_metrics),
                )),
                Arc::new(upload),
            ],
            WorkerSettings {
                concurrency: 4,
                poll_interval: Duration::from_millis(100),
                ..WorkerSettings::default()
            },
            imports.tasks_added(),
        );
        let (worker_stop, mut worker_stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(worker.run(async move {
            let _ = worker_stopped.wait_for(|s| *s).await;
        }));
        let services = Arc::new(Services {
            sign_in: Arc::new(taxbridge_domain::sign_in::SignIn::new(
                store.clone(),
                outbox.clone(),
                b"test-pepper",
            )),
            imports,
            uploads,
            blobs,
            max_upload_bytes: MAX_FILE_BYTES,
            pull_budget_bytes: taxbridge_domain::pulls::DEFAULT_PULL_BUDGET_BYTES,
            tasks: store.clone(),
            worker_metrics,
            connections,
            health: store.clone(),
            identity: identity.clone(),
            usage: Arc::new(UsageRecorder::new(store.clone())),
            workspaces,
            public_base_url: PUBLIC_BASE_URL.into(),
        });
        let mut settings = ApiSettings {
            listen: "127.0.0.1:0".into(),
            max_body_bytes: 64 * 1024,
            query_limits: QueryLimits::default(),
            connections: ConnectionLimits::default(),
            rate_limits: RateLimitSettings::default(),
            usage_flush_interval: Duration::from_millis(100),
        };
        tweak(&mut settings);
        let app = Application::build(settings, services).await.expect("build");
        let addr = app.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Some(Self {
            outbox,
            endpoint: format!("http://{addr}/graphql"),
            base: format!("http://{addr}"),
            database_url: db.url.clone(),
            identity,
            store,
            http: reqwest::Client::new(),
            _db: db,
            blob_dir,
            _shutdown: tx,
            worker_stop,
        })
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
            .create_customer(email, Some("Jane Doe".into()))
            .await
            .expect("customer");
        let (key, secret) = self
            .identity
            .create_key(&account, "Production Integration", None)
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
            .update_connection(&connection)
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
            .create_key(&account, "test", None)
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
