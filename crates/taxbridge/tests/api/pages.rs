//! The web pages over HTTP on both databases, driven as any HTTP client would (plain form
//! POSTs, cookies kept by hand): sign-in by emailed code from a deep link, the session cookie's
//! flags, CSRF, open redirects, session fixation, another firm's slug, sign-out; and the
//! pages behind sign-in: the dashboard, a work, connect tax software, Developer Settings,
//! each with another firm's objects and forged forms.

use crate::support::TestApp;
use serde_json::json;
use std::collections::HashMap;

taxbridge_testkit::per_database!(
    crate::support::TestApp::spawn;
    a_deep_link_sign_in_lands_on_the_workspace_and_sign_out_ends_it,
    forms_without_the_right_csrf_token_are_refused,
    deep_links_elsewhere_land_on_the_default,
    a_guessed_code_stops_working_after_five_tries,
    dashboards_and_works_show_only_the_firms_own_and_download_with_the_session,
    connecting_tax_software_checks_the_form_and_keeps_secrets_out_of_the_page,
    developer_settings_show_a_key_once_and_revoke_only_the_users_own,
    a_work_page_shows_an_error_only_for_a_document_in_error,
    the_activity_page_is_for_admins_and_records_every_page_form,
);

mod limits {
    taxbridge_testkit::per_database!(
        super::quick;
        slow_huge_and_malformed_forms_are_refused_with_a_page,
    );
    use super::*;
}

/// The app with a 1-second body deadline, so a stalled form shows in a second.
async fn quick(database: taxbridge_testkit::Database) -> Option<TestApp> {
    TestApp::spawn_with(database, |settings| {
        settings.limits.body_read_timeout_seconds = 1;
    })
    .await
}

/// Sends raw bytes and reads the answer until the server closes or 3 s pass.
async fn raw(app: &TestApp, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        stream.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn slow_huge_and_malformed_forms_are_refused_with_a_page(app: TestApp) {
    let stalled = raw(
        &app,
        b"POST /sign-in HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a",
    )
    .await;
    assert!(stalled.starts_with("HTTP/1.1 408"), "{stalled}");
    assert!(stalled.contains("did not arrive in time"), "{stalled}");
    let mut browser = Browser::new(&app);
    let huge = "x".repeat(20 * 1024);
    let refused = browser
        .post("/sign-in", &[("email", huge.as_str()), ("csrf_token", "x")])
        .await;
    assert_eq!(refused.status, 413);
    let malformed = browser.post("/sign-in", &[("emial", "a@b.example")]).await;
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.body.contains("missing a field"),
        "{}",
        malformed.body
    );
    assert!(malformed.headers["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .contains("frame-ancestors 'none'"));
}

/// A client that keeps cookies and does not follow redirects.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the hidden field `name` in the page.
    fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        self.body
            .split(&marker)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.base.clone(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie.join("; "))
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            if let Some((name, rest)) = set.split_once('=') {
                let value = rest.split(';').next().unwrap_or_default();
                if value.is_empty() || set.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Answer {
            status,
            headers,
            body: response.text().await.unwrap_or_default(),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }
}

/// A partner's firm with a connection and a member `jane@…`: (workspace slug, member email).
async fn firm(app: &TestApp, name: &str) -> (String, String) {
    let key = format!("p{}", name.len());
    let token = app.partner_token(&key).await;
    let created = app.create_workspace(&token, name).await;
    let workspace = created.assert_ok()["createWorkspace"].clone();
    let (id, slug) = (
        workspace["id"].as_str().unwrap_or_default().to_owned(),
        workspace["slug"].as_str().unwrap_or_default().to_owned(),
    );
    let email = format!("jane@{}.example", slug);
    app.add_users(&token, &id, &[&email]).await.assert_ok();
    app.graphql(
        json!({ "query": "mutation($w: ID!, $k: String!) { startProviderConnection(workspaceId: $w, providerKey: $k, inputs: {apiKey: \"k\"}) { id } }", "variables": { "w": id, "k": key } }),
        Some(&token),
        None,
    )
    .await
    .assert_ok();
    (slug, email)
}

/// The code last mailed to `email`, once there are more than `before` mails to it.
async fn mailed_after(app: &TestApp, email: &str, before: usize) -> String {
    for _ in 0..100 {
        let sent = app.outbox.0.lock().map(|s| s.clone()).unwrap_or_default();
        let to_email: Vec<&(String, String)> = sent.iter().filter(|(to, _)| to == email).collect();
        if to_email.len() > before {
            return to_email[to_email.len() - 1].1.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no code was mailed to {email}");
}

fn mails_to(app: &TestApp, email: &str) -> usize {
    app.outbox
        .0
        .lock()
        .map(|s| s.iter().filter(|(to, _)| to == email).count())
        .unwrap_or(0)
}

async fn mailed(app: &TestApp, email: &str) -> String {
    mailed_after(app, email, 0).await
}

/// Signs in from `/sign-in?deep_link=<deep_link>`: the answer to the right code.
async fn sign_in(app: &TestApp, browser: &mut Browser, email: &str, deep_link: &str) -> Answer {
    let form = browser
        .get(&format!("/sign-in?deep_link={}", urlencode(deep_link)))
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf_token");
    let landing = form.field("deep_link");
    let before = mails_to(app, email);
    let sent = browser
        .post(
            "/sign-in",
            &[
                ("email", email),
                ("csrf_token", &csrf),
                ("deep_link", &landing),
            ],
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let code = mailed_after(app, email, before).await;
    browser
        .post(
            "/sign-in/code",
            &[
                ("email", email),
                ("code", &code),
                ("csrf_token", &csrf),
                ("deep_link", &landing),
            ],
        )
        .await
}

fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn a_deep_link_sign_in_lands_on_the_workspace_and_sign_out_ends_it(app: TestApp) {
    let (slug, email) = firm(&app, "Smith CPA").await;
    let (other, _) = firm(&app, "Other Firm LLP").await;
    let mut browser = Browser::new(&app);
    // Before sign-in, the workspace sends the user to sign in and back.
    let before = browser.get(&format!("/w/{slug}")).await;
    assert_eq!(before.status, 303);
    assert_eq!(
        before.location(),
        format!("/sign-in?deep_link=%2Fw%2F{slug}")
    );

    let form = browser
        .get(&format!("/sign-in?deep_link=%2Fw%2F{slug}"))
        .await;
    assert!(form.headers["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .contains("frame-ancestors 'none'"));
    assert_eq!(form.headers["x-frame-options"], "DENY");
    let csrf = form.field("csrf_token");
    // A wrong code says how many tries are left; a session cookie planted before sign-in is
    // replaced, never adopted.
    browser
        .post(
            "/sign-in",
            &[
                ("email", &email),
                ("csrf_token", &csrf),
                ("deep_link", &format!("/w/{slug}")),
            ],
        )
        .await;
    let code = mailed(&app, &email).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let refused = browser
        .post(
            "/sign-in/code",
            &[
                ("email", &email),
                ("code", wrong),
                ("csrf_token", &csrf),
                ("deep_link", &format!("/w/{slug}")),
            ],
        )
        .await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("4 tries left"), "{}", refused.body);
    browser
        .cookies
        .insert("tb_session".into(), "planted-by-an-attacker".into());
    let signed = browser
        .post(
            "/sign-in/code",
            &[
                ("email", &email),
                ("code", &code),
                ("csrf_token", &csrf),
                ("deep_link", &format!("/w/{slug}")),
            ],
        )
        .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.location(), format!("/w/{slug}"));
    let cookie = signed.set_cookie("tb_session").expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert_ne!(browser.cookies["tb_session"], "planted-by-an-attacker");

    let dashboard = browser.get(&format!("/w/{slug}")).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    assert!(
        dashboard.body.contains("<h1>Smith CPA</h1>"),
        "{}",
        dashboard.body
    );
    assert!(dashboard.body.contains("pending") && dashboard.body.contains("collect"));
    // Another firm's slug answers as a missing one.
    let foreign = browser.get(&format!("/w/{other}")).await;
    assert_eq!(foreign.status, 404);
    assert_eq!(browser.get("/w/no-such-firm").await.status, 404);
    // One workspace: the redirect goes straight to it, with the rest of the path.
    let redirect = browser.get("/w/redirect/").await;
    assert_eq!(redirect.location(), format!("/w/{slug}"));
    // Signed in, the sign-in page goes on at once.
    assert_eq!(browser.get("/sign-in").await.location(), "/w/redirect/");

    // Sign-out needs the session's CSRF token.
    let session_csrf = dashboard.field("csrf_token");
    let forged = browser.post("/sign-out", &[("csrf_token", "nope")]).await;
    assert_eq!(forged.status, 403);
    let out = browser
        .post("/sign-out", &[("csrf_token", &session_csrf)])
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), "/sign-in");
    let after = browser.get(&format!("/w/{slug}")).await;
    assert_eq!(after.status, 303, "signed out");
}

async fn forms_without_the_right_csrf_token_are_refused(app: TestApp) {
    let (_, email) = firm(&app, "Csrf CPA").await;
    let mut browser = Browser::new(&app);
    // No cookie at all (a cross-site form), then a cookie with another token in the form.
    let none = browser
        .post("/sign-in", &[("email", &email), ("csrf_token", "x")])
        .await;
    assert_eq!(none.status, 403);
    let form = browser.get("/sign-in").await;
    let csrf = form.field("csrf_token");
    assert!(!csrf.is_empty());
    for wrong in ["", "x", &csrf[..csrf.len() - 1]] {
        let refused = browser
            .post("/sign-in", &[("email", &email), ("csrf_token", wrong)])
            .await;
        assert_eq!(refused.status, 403, "{wrong:?}");
        let refused = browser
            .post(
                "/sign-in/code",
                &[("email", &email), ("code", "123456"), ("csrf_token", wrong)],
            )
            .await;
        assert_eq!(refused.status, 403, "{wrong:?}");
    }
    assert!(
        app.outbox.0.lock().map(|s| s.is_empty()).unwrap_or(false),
        "no code was sent"
    );
    // Unknown emails get the very page a member gets.
    let known = browser
        .post("/sign-in", &[("email", &email), ("csrf_token", &csrf)])
        .await;
    let unknown = browser
        .post(
            "/sign-in",
            &[("email", "nobody@nowhere.example"), ("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(known.status, unknown.status);
    assert_eq!(
        known.body.replace(&email, "EMAIL"),
        unknown.body.replace("nobody@nowhere.example", "EMAIL")
    );
}

async fn deep_links_elsewhere_land_on_the_default(app: TestApp) {
    let (_, email) = firm(&app, "Redirect CPA").await;
    for (n, evil) in [
        "//evil.example",
        "https://evil.example/w/x",
        "/w/../settings",
        "%2F%2Fevil.example",
    ]
    .into_iter()
    .enumerate()
    {
        let mut browser = Browser::new(&app);
        // Each sign-in asks for a new code: wait past the per-email burst only if needed.
        let signed = sign_in(&app, &mut browser, &email, evil).await;
        assert_eq!(signed.status, 303, "{evil}: {}", signed.body);
        assert_eq!(signed.location(), "/w/redirect/", "{evil} (run {n})");
    }
    // The sign-in page judges every spelling before it goes in the form.
    let mut browser = Browser::new(&app);
    for evil in [
        "//evil.example",
        "//evil.example/w/x",
        "/\\evil.example",
        "/w/\\evil.example",
        "https://evil.example/w/x",
        "http:/w/x",
        "javascript:alert(1)",
        "/%2Fevil.example",
        "%252F%252Fevil.example",
        "/w/%2E%2E/settings",
        "/w/a/../../x",
        "/w//evil.example",
        "/w/x%0d%0aSet-Cookie:a=b",
        "/W/x",
        "/settings/developer",
        "/w/https://evil.example",
        "/w/%5Cevil",
    ] {
        let form = browser
            .get(&format!("/sign-in?deep_link={}", urlencode(evil)))
            .await;
        assert_eq!(form.status, 200, "{evil}");
        assert_eq!(form.field("deep_link"), "/w/redirect/", "{evil}");
    }
    // A form posted with its own deep link (not the page's) is judged the same way.
    let mut browser = Browser::new(&app);
    let csrf = browser.get("/sign-in").await.field("csrf_token");
    let before = mails_to(&app, &email);
    browser
        .post("/sign-in", &[("email", &email), ("csrf_token", &csrf)])
        .await;
    let code = mailed_after(&app, &email, before).await;
    let signed = browser
        .post(
            "/sign-in/code",
            &[
                ("email", &email),
                ("code", &code),
                ("csrf_token", &csrf),
                ("deep_link", "/\\evil.example"),
            ],
        )
        .await;
    assert_eq!(signed.location(), "/w/redirect/");
}

async fn a_guessed_code_stops_working_after_five_tries(app: TestApp) {
    let (_, email) = firm(&app, "Guess CPA").await;
    let mut browser = Browser::new(&app);
    let csrf = browser.get("/sign-in").await.field("csrf_token");
    browser
        .post("/sign-in", &[("email", &email), ("csrf_token", &csrf)])
        .await;
    let code = mailed(&app, &email).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let mut last = String::new();
    for left in (0..5).rev() {
        let refused = browser
            .post(
                "/sign-in/code",
                &[("email", &email), ("code", wrong), ("csrf_token", &csrf)],
            )
            .await;
        assert_eq!(refused.status, 422);
        last = refused.body;
        if left > 0 {
            assert!(last.contains(&format!("{left} tries left")), "{last}");
        }
    }
    assert!(last.contains("ask for a new one"), "{last}");
    // The right code no longer opens a session: a new one must be asked for.
    let late = browser
        .post(
            "/sign-in/code",
            &[("email", &email), ("code", &code), ("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(late.status, 422, "{}", late.body);
    assert!(late.set_cookie("tb_session").is_none());
    // And the attempts per email are limited: a burst, then 429 with how long to wait.
    let mut limited = None;
    for _ in 0..20 {
        let answer = browser
            .post("/sign-in", &[("email", &email), ("csrf_token", &csrf)])
            .await;
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("sign-in attempts are limited per email");
    assert!(limited.body.contains("seconds"), "{}", limited.body);
}

/// A partner's workspace with a member, an active connection of the partner's provider and
/// one import whose artifact has bytes: (slug, member email, partner token, connection id,
/// artifact id).
async fn firm_with_an_import(
    app: &TestApp,
    key: &str,
    name: &str,
) -> (String, String, String, String, String) {
    let token = app.partner_token(key).await;
    let workspace = app.create_workspace(&token, name).await.assert_ok()["createWorkspace"].clone();
    let id = workspace["id"].as_str().unwrap_or_default().to_owned();
    let slug = workspace["slug"].as_str().unwrap_or_default().to_owned();
    let email = format!("sam@{slug}.example");
    app.add_users(&token, &id, &[&email]).await.assert_ok();
    let connection = app
        .graphql(
            json!({ "query": "mutation($w: ID!, $k: String!) { startProviderConnection(workspaceId: $w, providerKey: $k, inputs: {apiKey: \"k\"}) { id } }", "variables": { "w": id, "k": key } }),
            Some(&token),
            None,
        )
        .await
        .assert_ok()["startProviderConnection"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.activate(&connection).await;
    let artifact =
        crate::imports::artifact_with_bytes(app, &token, &connection, b"%PDF-1.4 the firm's own")
            .await;
    (slug, email, token, connection, artifact)
}

/// Signs in `email` on a fresh client: the client, and the session's CSRF token.
async fn signed_in(app: &TestApp, email: &str) -> (Browser, String) {
    let mut browser = Browser::new(app);
    let signed = sign_in(app, &mut browser, email, "/w/redirect/").await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    let csrf = browser.get("/settings/developer").await.field("csrf_token");
    assert!(!csrf.is_empty());
    (browser, csrf)
}

/// The `Work` id the page links to first under `/w/<slug>/works/`.
fn first_work_link(body: &str, slug: &str) -> String {
    let marker = format!("href=\"/w/{slug}/works/");
    body.split(&marker)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

async fn dashboards_and_works_show_only_the_firms_own_and_download_with_the_session(app: TestApp) {
    let (slug, email, _, _, artifact) = firm_with_an_import(&app, "dashfirm", "Dash CPA").await;
    let (other, _, _, _, foreign_artifact) =
        firm_with_an_import(&app, "otherfirm", "Other Books").await;
    let (mut browser, _) = signed_in(&app, &email).await;

    let dashboard = browser.get(&format!("/w/{slug}")).await;
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);
    for shown in [
        "2024 returns",
        "1 work",
        "1 of 1 files done",
        "<progress",
        "active",
    ] {
        assert!(
            dashboard.body.contains(shown),
            "{shown}: {}",
            dashboard.body
        );
    }
    let work = first_work_link(&dashboard.body, &slug);
    assert!(!work.is_empty(), "{}", dashboard.body);
    let page = browser.get(&format!("/w/{slug}/works/{work}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("href=\"/files/artifacts/{artifact}\"")),
        "{}",
        page.body
    );
    // The download link works with the session cookie alone.
    let download = browser.get(&format!("/files/artifacts/{artifact}")).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body, "%PDF-1.4 the firm's own");

    // The other firm: its dashboard, its work (under either slug) and its file are not found.
    assert_eq!(browser.get(&format!("/w/{other}")).await.status, 404);
    let foreign_download = browser
        .get(&format!("/files/artifacts/{foreign_artifact}"))
        .await;
    assert_eq!(foreign_download.status, 404);
    let (mut theirs, _) = signed_in(&app, &format!("sam@{other}.example")).await;
    let their_work = first_work_link(&theirs.get(&format!("/w/{other}")).await.body, &other);
    assert!(!their_work.is_empty());
    for path in [
        format!("/w/{slug}/works/{their_work}"),
        format!("/w/{other}/works/{their_work}"),
        format!("/w/{slug}/works/no-such-work"),
    ] {
        let answer = browser.get(&path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(!answer.body.contains("Other Books"), "{path}");
    }
    // Without a session, pages send to sign-in and come back; files need a token.
    let mut anonymous = Browser::new(&app);
    let away = anonymous.get(&format!("/w/{slug}/works/{work}")).await;
    assert_eq!(away.status, 303);
    assert_eq!(
        away.location(),
        format!("/sign-in?deep_link=%2Fw%2F{slug}%2Fworks%2F{work}")
    );
    assert_eq!(
        anonymous
            .get(&format!("/files/artifacts/{artifact}"))
            .await
            .status,
        401
    );
}

async fn connecting_tax_software_checks_the_form_and_keeps_secrets_out_of_the_page(app: TestApp) {
    let (slug, email, _, _, _) = firm_with_an_import(&app, "connfirm", "Connect CPA").await;
    let (other, _, _, foreign_connection, _) =
        firm_with_an_import(&app, "elsefirm", "Else Books").await;
    let (mut browser, csrf) = signed_in(&app, &email).await;
    let path = format!("/w/{slug}/connect/tax-software");
    let form = browser.get(&path).await;
    assert_eq!(form.status, 200);
    for provider in ["Drake Tax", "UltraTax CS", "Lacerte"] {
        assert!(form.body.contains(provider), "{provider}");
    }
    assert!(
        form.body.contains("name=\"apiKey\" type=\"password\""),
        "{}",
        form.body
    );

    // A forged form, an unknown provider, another firm's workspace or connection.
    let secret = "s3cret-drake-key";
    let fields = |csrf: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("provider", "drake"),
            ("csrf_token", csrf),
            ("baseUrl", "http://127.0.0.1:9"),
            ("apiKey", "s3cret-drake-key"),
        ]
    };
    let huge = "x".repeat(20 * 1024);
    let refused = browser
        .post(&path, &[("provider", "drake"), ("apiKey", huge.as_str())])
        .await;
    assert_eq!(refused.status, 413, "a form over 16 KiB");
    let forged = browser.post(&path, &fields("wrong")).await;
    assert_eq!(forged.status, 403);
    let csrf: &'static str = Box::leak(csrf.into_boxed_str());
    let mut unknown = fields(csrf);
    unknown[0] = ("provider", "DRAKE");
    assert_eq!(browser.post(&path, &unknown).await.status, 422);
    let foreign = browser
        .post(&format!("/w/{other}/connect/tax-software"), &fields(csrf))
        .await;
    assert_eq!(foreign.status, 404);
    let mut retry_foreign = fields(csrf);
    let foreign_connection: &'static str = Box::leak(foreign_connection.into_boxed_str());
    retry_foreign.push(("connection_id", foreign_connection));
    assert_eq!(browser.post(&path, &retry_foreign).await.status, 404);

    // A platform that cannot be reached (a refused address): the connection fails, and the
    // page says so in words, offering to try again, without echoing the secret.
    let failed = browser.post(&path, &fields(csrf)).await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    assert!(failed.body.contains("did not connect"), "{}", failed.body);
    assert!(
        failed.body.contains("name=\"connection_id\""),
        "{}",
        failed.body
    );
    assert!(
        !failed.body.contains(secret),
        "the secret came back in the page"
    );
    let dashboard = browser.get(&format!("/w/{slug}")).await;
    assert!(dashboard.body.contains("Drake Tax") && dashboard.body.contains("reconnect"));
    assert!(!dashboard.body.contains(secret));

    // Trying again at another address with the secret left blank would send the stored one
    // there: refused, naming the field to enter again, and nothing stored changes.
    let retried: &'static str = Box::leak(
        failed
            .body
            .split("name=\"connection_id\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned()
            .into_boxed_str(),
    );
    assert!(retried.starts_with("con_"), "{}", failed.body);
    let elsewhere = browser
        .post(
            &path,
            &[
                ("provider", "drake"),
                ("csrf_token", csrf),
                ("connection_id", retried),
                ("baseUrl", "http://127.0.0.1:10"),
                ("apiKey", ""),
            ],
        )
        .await;
    assert_eq!(elsewhere.status, 422, "{}", elsewhere.body);
    assert!(elsewhere.body.contains("apiKey"), "{}", elsewhere.body);
    {
        use taxbridge_domain::{connections::ConnectionStore, ids::ConnectionId};
        let stored = app
            .store
            .connection_by_id(&ConnectionId::from_string(retried.to_owned()))
            .await
            .expect("read")
            .expect("row");
        assert_eq!(stored.settings["baseUrl"], "http://127.0.0.1:9");
        assert!(stored.credentials.is_some());
    }
}

async fn developer_settings_show_a_key_once_and_revoke_only_the_users_own(app: TestApp) {
    let (_, email) = firm(&app, "Keys CPA").await;
    let (_, other_email) = firm(&app, "Keys Other LLP").await;
    let (mut browser, csrf) = signed_in(&app, &email).await;
    let keys = "/settings/developer/keys";
    let forged = browser
        .post(
            keys,
            &[
                ("name", "CI"),
                ("expires_in_days", ""),
                ("csrf_token", "nope"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    for (name, days, says) in [
        ("", "", "1 to 100 characters"),
        ("CI", "0", "at least one day"),
        ("CI", "ten", "whole number of days"),
        ("CI", "99999", "whole number of days"),
    ] {
        let refused = browser
            .post(
                keys,
                &[
                    ("name", name),
                    ("expires_in_days", days),
                    ("csrf_token", &csrf),
                ],
            )
            .await;
        assert_eq!(refused.status, 422, "{name:?} {days:?}");
        assert!(refused.body.contains(says), "{says}: {}", refused.body);
    }
    let huge = "x".repeat(20 * 1024);
    let refused = browser
        .post(keys, &[("name", huge.as_str()), ("csrf_token", &csrf)])
        .await;
    assert_eq!(refused.status, 413, "a form over 16 KiB");
    let made = browser
        .post(
            keys,
            &[
                ("name", "Production <Integration>"),
                ("expires_in_days", "30"),
                ("csrf_token", &csrf),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(
        made.body.contains("Production &lt;Integration&gt;"),
        "names are escaped"
    );
    let secret = new_key(&made.body);
    assert!(secret.starts_with("tb_pat_"), "{}", made.body);
    let token = app.token_for(&secret).await;
    assert!(!token.is_empty());
    // Shown once: the page afterwards lists the key by prefix only.
    let listed = browser.get("/settings/developer").await;
    assert!(!listed.body.contains(&secret));
    assert!(listed.body.contains(&secret[..11]), "{}", listed.body);

    // Another user's key cannot be revoked by id; a forged revoke is refused.
    let (mut other, other_csrf) = signed_in(&app, &other_email).await;
    let their_page = other
        .post(
            keys,
            &[
                ("name", "Theirs"),
                ("expires_in_days", ""),
                ("csrf_token", &other_csrf),
            ],
        )
        .await;
    // Their key's use shows on their chart and nowhere on this user's page.
    let their_token = app.token_for(&new_key(&their_page.body)).await;
    app.graphql(
        json!({ "query": "{ me { id } }" }),
        Some(&their_token),
        Some("their-platform"),
    )
    .await;
    assert!(other
        .get("/settings/developer")
        .await
        .body
        .contains("their-platform"));
    let mine = browser.get("/settings/developer").await;
    assert!(!mine.body.contains("their-platform") && !mine.body.contains("Theirs"));
    let their_id = first_key_id(&other.get("/settings/developer").await.body);
    assert!(!their_id.is_empty());
    let theirs = browser
        .post(
            &format!("{keys}/{their_id}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(theirs.status, 404);
    let my_id = first_key_id(&listed.body);
    let forged = browser
        .post(
            &format!("{keys}/{my_id}/revoke"),
            &[("csrf_token", &other_csrf)],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(app.me(Some(&token)).await.code(), "", "still usable");
    let revoked = browser
        .post(&format!("{keys}/{my_id}/revoke"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(revoked.status, 303);
    assert_eq!(
        app.me(Some(&token)).await.code(),
        "UNAUTHENTICATED",
        "a revoked key's token is refused at once"
    );
    assert!(browser
        .get("/settings/developer")
        .await
        .body
        .contains("revoked"));

    // A script posting forms in a loop is held to a person's pace, per account.
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let answer = browser
            .post(
                &format!("{keys}/no-such-key/revoke"),
                &[("csrf_token", &csrf)],
            )
            .await;
        statuses.push(answer.status);
        if answer.status == 429 {
            assert!(answer.body.contains("Wait"), "{}", answer.body);
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(statuses[..statuses.len() - 1].iter().all(|s| *s == 404));
    let theirs = other
        .post(
            &format!("{keys}/no-such-key/revoke"),
            &[("csrf_token", &other_csrf)],
        )
        .await;
    assert_eq!(theirs.status, 404, "another account keeps its own pace");
}

/// The id in the first revoke form of a Developer Settings page.
fn first_key_id(body: &str) -> String {
    body.split("/settings/developer/keys/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// The secret a Developer Settings page shows once, after a key is generated.
fn new_key(body: &str) -> String {
    body.split("id=\"new-key\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_owned()
}

/// Partner-supplied files opened by link in a real browser, signed in: an HTML and an SVG file
/// are downloads, not pages of the gateway's origin, and a JS file loaded by a gateway page
/// (as an injected `<script src>` would) does not run. Each would set a mark in the origin's
/// `localStorage` if it ran there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_files_opened_by_link_run_no_script_on_the_gateways_origin() {
    use taxbridge_testkit::browser::{browser, driver, fantoccini::Locator};
    let Some(driver) = driver() else { return };
    let Some(app) = TestApp::spawn(taxbridge_testkit::Database::Sqlite).await else {
        return;
    };
    let (slug, email, token, connection, _) =
        firm_with_an_import(&app, "filefirm", "File CPA").await;
    let (_, work) = crate::imports::job_and_work(&app, &token, &connection, "client-9").await;
    let files = [
        ("page.html", "text/html", "<html><body><script>localStorage.setItem('ran', 'html')</script>hello</body></html>"),
        ("pic.svg", "image/svg+xml", "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>localStorage.setItem('ran', 'svg')</script></svg>"),
        ("tool.js", "text/javascript", "localStorage.setItem('ran', 'js')"),
    ];
    let inputs: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, _, _)| json!({ "name": name, "type": "document", "externalId": name }))
        .collect();
    let ids = crate::imports::create_artifacts(&app, &token, &work, json!(inputs)).await;
    for (id, (_, kind, body)) in ids.iter().zip(files) {
        let put = app
            .http
            .put(format!("{}/uploads/artifacts/{id}", app.base))
            .bearer_auth(&token)
            .header("content-type", kind)
            .body(body)
            .send()
            .await
            .expect("put");
        assert!(put.status().is_success(), "{}", put.status());
    }
    // Signed in as a person would: the email, then the mailed code.
    let client = browser(&driver).await;
    client
        .goto(&format!("{}/sign-in", app.base))
        .await
        .expect("open the gateway");
    let type_into = |css: &'static str, text: String| {
        let client = &client;
        async move {
            let field = client
                .wait()
                .at_most(std::time::Duration::from_secs(10))
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css}: {e}"));
            field.send_keys(&text).await.expect("type");
        }
    };
    let before = mails_to(&app, &email);
    type_into("#email", email.clone()).await;
    client
        .find(Locator::Css("form[action='/sign-in'] button"))
        .await
        .expect("send button")
        .click()
        .await
        .expect("send");
    let code = mailed_after(&app, &email, before).await;
    type_into("#code", code).await;
    client
        .find(Locator::Css("form[action='/sign-in/code'] button"))
        .await
        .expect("code button")
        .click()
        .await
        .expect("sign in");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let dashboard = format!("{}/w/{slug}", app.base);
    let ran = || async {
        client
            .execute("return localStorage.getItem('ran');", vec![])
            .await
            .expect("read the mark")
    };
    client.goto(&dashboard).await.expect("dashboard");
    assert_eq!(ran().await, serde_json::Value::Null);
    // What a link in a mail does: open the file's URL in the browser.
    for id in &ids[..2] {
        let opened = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.goto(&format!("{}/files/artifacts/{id}", app.base)),
        )
        .await;
        assert!(opened.is_ok(), "the browser hung on {id}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        client.goto(&dashboard).await.expect("dashboard");
        assert_eq!(ran().await, serde_json::Value::Null, "{id} ran");
    }
    // A gateway page that loads the JS file as a script (what `script-src 'self'` allowed).
    client
        .execute(
            "const s = document.createElement('script'); s.src = arguments[0]; document.body.appendChild(s);",
            vec![json!(format!("/files/artifacts/{}", ids[2]))],
        )
        .await
        .expect("inject");
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(ran().await, serde_json::Value::Null, "the JS file ran");
    // The page itself is still the signed-in dashboard: the session was there all along.
    let title: serde_json::Value = client
        .execute("return document.body.innerText;", vec![])
        .await
        .expect("text");
    assert!(
        title.as_str().is_some_and(|t| t.contains("File CPA")),
        "{title}"
    );
    let _ = client.close().await;
}

/// A document's `metadata.error` is the gateway's word only for a document in `error`: one
/// stored before callers were refused that key (written here straight to the store) shows no
/// error while it waits, and a failed one shows its own.
async fn a_work_page_shows_an_error_only_for_a_document_in_error(app: TestApp) {
    use taxbridge_domain::{
        ids::{ArtifactId, JobArtifactId},
        imports::{ArtifactStatus, ImportStore},
    };
    let (slug, email, _, _, artifact) = firm_with_an_import(&app, "errfirm", "Error CPA").await;
    let stored = app
        .store
        .artifact_by_id(&ArtifactId::from_string(artifact))
        .await
        .expect("read")
        .expect("artifact");
    let like = |external: &str, status: ArtifactStatus, message: &str| {
        let mut copy = stored.clone();
        copy.id = JobArtifactId::generate();
        copy.artifact_id = ArtifactId::generate();
        copy.external_id = external.to_owned();
        copy.name = format!("{external} scan");
        copy.status = status;
        copy.stored = None;
        copy.metadata = serde_json::Map::from_iter([(
            "error".to_owned(),
            json!({ "code": "HTTP_ERROR", "message": message }),
        )]);
        copy
    };
    let waiting = like(
        "spoofed",
        ArtifactStatus::Initial,
        "Spoofed: the gateway lost this file",
    );
    let failed = like(
        "failed",
        ArtifactStatus::Error,
        "the file's server answered HTTP 404",
    );
    app.store
        .insert_artifacts(
            &stored.job_id,
            &[waiting, failed],
            &[],
            &taxbridge_domain::audit::AuditEvent::by_system(
                taxbridge_domain::audit::Action::JobArtifactsAdded,
            ),
        )
        .await
        .expect("insert");
    let (mut browser, _) = signed_in(&app, &email).await;
    let page = browser
        .get(&format!("/w/{slug}/works/{}", stored.work_id))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("spoofed scan"), "{}", page.body);
    assert!(!page.body.contains("Spoofed"), "{}", page.body);
    assert!(
        page.body
            .contains("the file&#39;s server answered HTTP 404")
            || page.body.contains("the file's server answered HTTP 404"),
        "{}",
        page.body
    );
}

/// Global events (sign-ins, keys) of one account, oldest first, straight from the log.
async fn account_actions(app: &TestApp, account: &str) -> Vec<taxbridge_domain::audit::AuditEvent> {
    use taxbridge_domain::audit::AuditStore;
    let mut events: Vec<_> = app
        .store
        .events_about(&[account.to_owned()], 500)
        .await
        .expect("events")
        .iter()
        .map(|stored| stored.event().expect("readable"))
        .collect();
    events.reverse();
    events
}

async fn the_activity_page_is_for_admins_and_records_every_page_form(app: TestApp) {
    let workspaces = taxbridge_domain::workspaces::Workspaces::new(app.store.clone());
    let (ws, _) = workspaces
        .create_for_customer(
            "Activity CPA",
            Some("boss@activity.example"),
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("workspace");
    let slug = ws.slug.clone();
    let boss = app
        .identity
        .account_by_email("boss@activity.example")
        .await
        .expect("boss");

    // A wrong code, then the right one: one failed and one signed-in event, from this client.
    let mut browser = Browser::new(&app);
    let form = browser.get("/sign-in").await;
    let csrf = form.field("csrf_token");
    let landing = form.field("deep_link");
    let asked = browser
        .post(
            "/sign-in",
            &[
                ("email", "boss@activity.example"),
                ("csrf_token", &csrf),
                ("deep_link", &landing),
            ],
        )
        .await;
    assert_eq!(asked.status, 200);
    let code = mailed(&app, "boss@activity.example").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = browser
        .post(
            "/sign-in/code",
            &[
                ("email", "boss@activity.example"),
                ("code", wrong),
                ("csrf_token", &csrf),
                ("deep_link", &landing),
            ],
        )
        .await;
    assert_eq!(refused.status, 422);
    let signed = browser
        .post(
            "/sign-in/code",
            &[
                ("email", "boss@activity.example"),
                ("code", &code),
                ("csrf_token", &csrf),
                ("deep_link", &landing),
            ],
        )
        .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    let session_csrf = browser.get("/settings/developer").await.field("csrf_token");

    // A key made on Developer Settings, then used through the API to add a member.
    let made = browser
        .post(
            "/settings/developer/keys",
            &[
                ("name", "Audit CI"),
                ("expires_in_days", ""),
                ("csrf_token", &session_csrf),
            ],
        )
        .await;
    assert_eq!(made.status, 200, "{}", made.body);
    let secret = new_key(&made.body);
    let token = app.token_for(&secret).await;
    let hostile_agent = "<script>alert('agent')</script>";
    let added = app
        .http
        .post(&app.endpoint)
        .bearer_auth(&token)
        .header("user-agent", hostile_agent)
        .header("source-platform", "<b>bold</b>")
        .json(&json!({ "query": "mutation($w: ID!) { addUsersToTheWorkspace(workspaceId: $w, userEmails: [\"staff@activity.example\"]) { id } }", "variables": { "w": ws.id.as_str() } }))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 200);

    // The connect page's form (start and collect against a platform that does not answer),
    // then the key revoked on Developer Settings.
    let connected = browser
        .post(
            &format!("/w/{slug}/connect/tax-software"),
            &[
                ("provider", "drake"),
                ("csrf_token", &session_csrf),
                ("baseUrl", "http://127.0.0.1:9"),
                ("apiKey", "s3cret-drake-key"),
            ],
        )
        .await;
    assert_eq!(connected.status, 200, "{}", connected.body);
    let listed = browser.get("/settings/developer").await;
    let key_id = listed
        .body
        .split("action=\"/settings/developer/keys/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    assert!(key_id.starts_with("key_"), "{}", listed.body);
    let revoked = browser
        .post(
            &format!("/settings/developer/keys/{key_id}/revoke"),
            &[("csrf_token", &session_csrf)],
        )
        .await;
    assert_eq!(revoked.status, 303);

    let actions: Vec<String> = account_actions(&app, boss.id.as_str())
        .await
        .into_iter()
        .filter(|e| e.actor.id == boss.id.as_str())
        .map(|e| {
            assert_eq!(
                e.context.client_address.as_deref(),
                Some("127.0.0.1"),
                "{e:?}"
            );
            e.action
        })
        .collect();
    assert_eq!(
        actions,
        [
            "session.sign_in_failed",
            "session.signed_in",
            "api_key.created",
            "member.added",
            "connection.started",
            "credentials.used",
            "connection.collected",
            "api_key.revoked",
        ],
        "the account's own events, oldest first"
    );

    // The activity page: the workspace's events, newest first, with the key that acted,
    // every outside text escaped.
    let page = browser.get(&format!("/w/{slug}/activity")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let added_at = page
        .body
        .find("<code>member.added</code>")
        .expect("member.added shown");
    let created_at = page
        .body
        .find("<code>workspace.created</code>")
        .expect("workspace.created shown");
    assert!(added_at < created_at, "newest first");
    assert!(
        page.body.contains(&secret[..11]),
        "the key's prefix: {}",
        page.body
    );
    assert!(!page.body.contains("<b>bold</b>") && page.body.contains("&lt;b&gt;bold&lt;/b&gt;"));
    let dashboard = browser.get(&format!("/w/{slug}")).await;
    assert!(dashboard.body.contains(&format!("/w/{slug}/activity")));

    // Filters: one action; an unknown action or page is refused with a page.
    let only = browser
        .get(&format!(
            "/w/{slug}/activity?action=workspace.created&actor=&page=0"
        ))
        .await;
    assert_eq!(only.status, 200);
    assert!(only.body.contains("<code>workspace.created</code>"));
    assert!(!only.body.contains("<code>member.added</code>"));
    let actor = browser
        .get(&format!(
            "/w/{slug}/activity?action=&actor={}&page=0",
            boss.id
        ))
        .await;
    assert!(actor.body.contains("<code>member.added</code>"));
    assert!(
        !actor.body.contains("<code>workspace.created</code>"),
        "the operator's event is not the boss's"
    );
    for bad in ["action=api_key.stolen", "page=abc", "page=-1"] {
        let refused = browser.get(&format!("/w/{slug}/activity?{bad}")).await;
        assert_eq!(refused.status, 422, "{bad}: {}", refused.body);
    }

    // Developer Settings lists what the key did.
    let settings = browser.get("/settings/developer").await;
    assert!(settings.body.contains("Recent activity of your keys"));
    assert!(
        settings.body.contains("<code>member.added</code>"),
        "{}",
        settings.body
    );

    // A member with role `user` is refused the page; another firm's slug is not found.
    let (mut staff, _) = signed_in(&app, "staff@activity.example").await;
    let refused = staff.get(&format!("/w/{slug}/activity")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(!staff
        .get(&format!("/w/{slug}"))
        .await
        .body
        .contains(&format!("/w/{slug}/activity")));
    let (other_slug, other_email) = firm(&app, "Elsewhere LLP").await;
    let (mut other, _) = signed_in(&app, &other_email).await;
    assert_eq!(other.get(&format!("/w/{slug}/activity")).await.status, 404);
    assert_eq!(
        other.get(&format!("/w/{other_slug}/activity")).await.status,
        403,
        "a plain member there"
    );

    // Sign-out is recorded too.
    let out = browser
        .post("/sign-out", &[("csrf_token", &session_csrf)])
        .await;
    assert_eq!(out.status, 303);
    let last = account_actions(&app, boss.id.as_str()).await;
    assert_eq!(
        last.last().map(|e| e.action.as_str()),
        Some("session.signed_out")
    );
}
