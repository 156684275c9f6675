//! The web pages in a real headless Chromium, against the real binary: a firm user follows a
//! deep link, signs in with the code a real SMTP receiver (maildev) got, picks a workspace,
//! connects tax software against the reference partner (a wrong key first, then the right
//! one), generates an API key in Developer Settings and uses it with the API, sees the import
//! it pushed on the dashboard and downloads a document from the work page, revokes the key
//! and sees the API refuse it. Every page is saved under `target/screenshots/`.

use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};
use taxbridge_testkit::browser::{
    browser, driver,
    fantoccini::{Client, Locator},
    screenshot,
};

mod common;

use common::{graphql, serve_with, BIN};

const ADMIN: &str = "jordan@smith-associates.example";
const PARTNER_KEY: &str = "ref-partner-key";

/// The reference partner binary, built beside this one.
fn reference_partner() -> PathBuf {
    let bin = Path::new(BIN)
        .parent()
        .expect("target dir")
        .join("reference-partner");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--quiet", "-p", "reference-partner"])
            .status()
            .expect("cargo build");
        assert!(built.success(), "the reference partner builds");
    }
    bin
}

struct Partner {
    child: Child,
    base: String,
}

impl Drop for Partner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_partner() -> Partner {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(reference_partner())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--api-key",
            PARTNER_KEY,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the reference partner starts");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Partner { child, base }
}

fn cli(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("TAXBRIDGE_DATABASE_URL")
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn open(client: &Client, url: &str) {
    client
        .goto(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
}

async fn fill(client: &Client, css: &str, text: &str) {
    let field = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The page's main text; empty while a page is loading.
async fn text(client: &Client) -> String {
    match client.find(Locator::Css("main")).await {
        Ok(main) => main.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn path(client: &Client) -> String {
    client.current_url().await.expect("url").path().to_owned()
}

/// Waits until the page's main text contains `wanted`; the text.
async fn until_text(client: &Client, wanted: &str) -> String {
    let mut seen = String::new();
    for _ in 0..100 {
        seen = text(client).await;
        if seen.contains(wanted) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never said {wanted:?}; it says {seen:?}");
}

fn login(endpoint: &str, key: &str) -> Value {
    graphql(
        endpoint,
        None,
        "mutation L($k: String!) { loginViaPersonalApiToken(token: $k) { accessToken } }",
        json!({ "k": key }),
    )
}

/// Pushes one import with a work of two documents from the reference partner, as a firm's
/// own integration would with the key from Developer Settings; waits for it to finish.
fn push_import(endpoint: &str, token: &str, connection: &str, partner: &str) -> String {
    let ok = |answer: Value| {
        assert!(answer.get("errors").is_none(), "{answer}");
        answer["data"].clone()
    };
    let job = ok(graphql(
        endpoint,
        Some(token),
        "mutation J($c: ID!) { createConnectionJob(connectionId: $c, jobName: \"2025 returns\") { id } }",
        json!({ "c": connection }),
    ))["createConnectionJob"]["id"]
        .as_str()
        .expect("job")
        .to_owned();
    let works = ok(graphql(
        endpoint,
        Some(token),
        "mutation W($j: ID!, $i: [CreateJobWorksInput!]!) { createJobWorks(connectionJobId: $j, inputs: $i) { id work { id } } }",
        json!({ "j": job, "i": [{ "name": "Ada Lovelace — 2025 Form 1040", "externalId": "client-0001" }] }),
    ));
    let work = &works["createJobWorks"][0];
    let files: Vec<Value> = (1..=2)
        .map(|n| json!({ "name": format!("W-2 #{n}"), "type": "document", "externalId": format!("client-0001-file-{n}"), "url": format!("{partner}/files/client-0001-file-{n}") }))
        .collect();
    ok(graphql(
        endpoint,
        Some(token),
        "mutation A($w: ID!, $i: [CreateJobWorkArtifactsInput!]!) { createJobWorkArtifacts(jobWorkId: $w, inputs: $i) { id } }",
        json!({ "w": work["id"], "i": files }),
    ));
    ok(graphql(
        endpoint,
        Some(token),
        "mutation T($j: ID!) { triggerConnectionJob(connectionJobId: $j) { id } }",
        json!({ "j": job }),
    ));
    for _ in 0..200 {
        let state = ok(graphql(
            endpoint,
            Some(token),
            "query S($j: ID!) { me { workspaces { connections { connectionJobs(filters: {ids: [$j]}) { status } } } } }",
            json!({ "j": job }),
        ));
        if state.to_string().contains("\"completed\"") {
            return work["work"]["id"].as_str().expect("work id").to_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the import did not complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firm_user_signs_in_by_deep_link_connects_tax_software_and_manages_keys() {
    let Some(driver) = driver() else { return };
    let Some(mail) = taxbridge_testkit::mail::receiver() else {
        return;
    };
    let partner = start_partner();
    let data = tempfile::tempdir().expect("data dir");
    let server = serve_with(
        data.path(),
        &[
            ("TAXBRIDGE_MAIL__SMTP_URL", mail.smtp_url.clone()),
            (
                "TAXBRIDGE_MAIL__FROM",
                "Taxbridge <sign-in@taxbridge.test>".into(),
            ),
        ],
    );
    let endpoint = server.endpoint.clone();
    let base = endpoint.trim_end_matches("/graphql").to_owned();
    cli(
        data.path(),
        &[
            "workspaces",
            "create",
            "--name",
            "Smith & Associates",
            "--admin-email",
            ADMIN,
        ],
    );
    cli(
        data.path(),
        &[
            "workspaces",
            "create",
            "--name",
            "Smith Archive",
            "--admin-email",
            ADMIN,
        ],
    );
    cli(
        data.path(),
        &[
            "workspaces",
            "create",
            "--name",
            "Another Firm",
            "--admin-email",
            "someone@another.example",
        ],
    );

    let client = browser(&driver).await;

    // The deep link the API builds for "connect tax software", before sign-in.
    open(&client, &format!("{base}/w/redirect/connect/tax-software")).await;
    assert_eq!(path(&client).await, "/sign-in");
    screenshot(&client, "sign-in").await;
    let seen = mail.messages_to(ADMIN).len();
    fill(&client, "#email", ADMIN).await;
    click(&client, "form[action='/sign-in'] button").await;
    until_text(&client, "a 6-digit code is on its way").await;
    screenshot(&client, "sign-in-code").await;

    // The code from the real SMTP receiver; a wrong one first.
    let code = mail.code_for(ADMIN, seen).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    fill(&client, "#code", wrong).await;
    click(&client, "form[action='/sign-in/code'] button").await;
    until_text(&client, "4 tries left").await;
    fill(&client, "#code", &code).await;
    click(&client, "form[action='/sign-in/code'] button").await;

    // Two workspaces: the chooser, whose links keep the deep link's rest.
    until_text(&client, "Choose a workspace").await;
    screenshot(&client, "workspace-chooser").await;
    click(&client, "ul.choices a").await;
    until_text(&client, "Connect tax software").await;
    let connect_path = path(&client).await;
    assert!(
        connect_path.ends_with("/connect/tax-software"),
        "{connect_path}"
    );
    let slug = connect_path.split('/').nth(2).expect("slug").to_owned();
    screenshot(&client, "connect-tax-software").await;

    // Drake with a wrong key: the connection fails, and the page says why and what to do.
    let drake = "form:has(input[value='drake'])";
    click(&client, "details:has(input[value='drake']) summary").await;
    fill(
        &client,
        &format!("{drake} input[name='baseUrl']"),
        &partner.base,
    )
    .await;
    fill(
        &client,
        &format!("{drake} input[name='apiKey']"),
        "not-the-key",
    )
    .await;
    fill(
        &client,
        &format!("{drake} input[name='accountNumber']"),
        "ACC-1001",
    )
    .await;
    click(&client, &format!("{drake} button")).await;
    let failed = until_text(&client, "did not connect").await;
    assert!(failed.contains("rejected the credentials"), "{failed}");
    screenshot(&client, "connect-failed").await;
    // The same connection, collected again with the right key.
    fill(
        &client,
        &format!("{drake} input[name='apiKey']"),
        PARTNER_KEY,
    )
    .await;
    click(&client, &format!("{drake} button")).await;
    let active = until_text(&client, "is connected").await;
    assert!(active.contains("Smith & Associates Tax Firm"), "{active}");
    screenshot(&client, "connect-active").await;

    // Developer Settings: a key, shown once, that works with the API.
    open(&client, &format!("{base}/settings/developer")).await;
    fill(&client, "#name", "Browser key").await;
    fill(&client, "#expires_in_days", "30").await;
    click(&client, "form[action='/settings/developer/keys'] button").await;
    until_text(&client, "only time Taxbridge shows it").await;
    let key = client
        .find(Locator::Css("#new-key"))
        .await
        .expect("the new key")
        .text()
        .await
        .expect("its text");
    // The copy button (the pages' one script) answers; headless Chromium may refuse the
    // clipboard, when the button asks for a manual copy instead.
    click(&client, "button.copy").await;
    let mut label = String::new();
    for _ in 0..50 {
        label = client
            .find(Locator::Css("button.copy"))
            .await
            .expect("the copy button")
            .text()
            .await
            .unwrap_or_default();
        if label != "Copy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(label == "Copied" || label == "Select and copy", "{label}");
    let logged_in = login(&endpoint, &key);
    let token = logged_in["data"]["loginViaPersonalApiToken"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("the key logs in: {logged_in}"))
        .to_owned();
    let me = graphql(
        &endpoint,
        Some(&token),
        "{ me { email workspaces { slug connections { id status provider { key } } } } }",
        json!({}),
    );
    assert_eq!(me["data"]["me"]["email"], ADMIN, "{me}");
    let workspace = me["data"]["me"]["workspaces"]
        .as_array()
        .and_then(|all| all.iter().find(|w| w["slug"] == slug.as_str()))
        .unwrap_or_else(|| panic!("{me}"));
    let connections = workspace["connections"].as_array().expect("connections");
    assert_eq!(
        connections.len(),
        1,
        "one connection, retried in place: {me}"
    );
    assert_eq!(connections[0]["status"], "active");
    let connection = connections[0]["id"].as_str().expect("id").to_owned();
    screenshot(&client, "developer-settings-new-key").await;

    // An import pushed with that key shows on the dashboard, its work on the work page.
    let work = push_import(&endpoint, &token, &connection, &partner.base);
    open(&client, &format!("{base}/w/{slug}")).await;
    let dashboard = until_text(&client, "2025 returns").await;
    assert!(
        dashboard.contains("Drake Tax") && dashboard.contains("active"),
        "{dashboard}"
    );
    assert!(dashboard.contains("2 of 2 files done"), "{dashboard}");
    let progress: Value = client
        .execute(
            "const p = document.querySelector('progress'); return [p.value, p.max];",
            vec![],
        )
        .await
        .expect("progress");
    assert_eq!(progress, json!([2, 2]));
    screenshot(&client, "dashboard").await;
    click(&client, &format!("a[href='/w/{slug}/works/{work}']")).await;
    let work_page = until_text(&client, "Documents").await;
    assert!(
        work_page.contains("W-2 #1") && work_page.contains("W-2 #2"),
        "{work_page}"
    );
    screenshot(&client, "work").await;
    // Its download link serves the bytes to the signed-in browser.
    let href: Value = client
        .execute(
            "return document.querySelector('a[download]').getAttribute('href');",
            vec![],
        )
        .await
        .expect("href");
    // (The page's CSP forbids scripts to fetch, so the browser's session cookie goes to curl.)
    let cookies = client.get_all_cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|c| c.name() == "tb_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    let href = href.as_str().expect("a download link");
    let bytes = common::curl(&[
        "-f",
        "-H",
        &format!("Cookie: tb_session={}", session.value()),
        &format!("{base}{href}"),
    ]);
    assert!(
        bytes.starts_with(b"%PDF-1.4"),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        common::curl(&["-f", &format!("{base}{href}")]).is_empty(),
        "not without a session"
    );

    // At a phone's width nothing runs off the side.
    client.set_window_size(390, 844).await.expect("phone size");
    open(&client, &format!("{base}/w/{slug}")).await;
    let fits: Value = client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .expect("widths");
    assert_eq!(
        fits,
        json!(true),
        "the dashboard scrolls sideways at 390 px"
    );
    screenshot(&client, "dashboard-phone").await;
    client
        .set_window_size(1280, 900)
        .await
        .expect("desktop size");

    // Another firm's workspace is not found, like a missing one.
    open(&client, &format!("{base}/w/another-firm")).await;
    until_text(&client, "not one you can reach").await;
    screenshot(&client, "not-found").await;

    // Revoke the key: its token and the key itself stop working at once.
    open(&client, &format!("{base}/settings/developer")).await;
    click(&client, "button[aria-label='Revoke Browser key']").await;
    let settings = until_text(&client, "revoked").await;
    assert!(settings.contains("Usage by source platform"), "{settings}");
    assert!(
        settings.contains("web-test"),
        "the chart names the platform: {settings}"
    );
    screenshot(&client, "developer-settings").await;
    let refused = graphql(&endpoint, Some(&token), "{ me { id } }", json!({}));
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    let refused = login(&endpoint, &key);
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );

    // Sign out: the pages ask for sign-in again.
    click(&client, "form[action='/sign-out'] button").await;
    open(&client, &format!("{base}/w/{slug}")).await;
    assert_eq!(path(&client).await, "/sign-in");
    client.close().await.expect("close");
    drop(server);
}
