//! The web pages in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `scripts/test.sh`), driven over WebDriver with fantoccini. Skipped when no
//! `chromedriver` is on the PATH, except under CI (`CI` set), where that is a failure.
//! Screenshots of each page go to `target/screenshots/`.

use crate::support::TestApp;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A chromedriver of our own on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Option<Driver> {
    let found = Command::new("chromedriver")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver must be installed when CI is set (scripts/test.sh installs chromium-driver)"
        );
        eprintln!("skipped: no chromedriver (apt-get install chromium chromium-driver)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("chromedriver")
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

/// A headless Chromium session with a fresh profile.
async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860"] }),
    );
    for _ in 0..50 {
        // chromedriver listens on loopback over plain HTTP: no TLS connector is needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        if let Ok(client) = ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not accept a session at {}", driver.url);
}

async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
}

/// GraphiQL, loaded with no network but the gateway's, runs `{ me { id } }` with a pasted
/// access token and shows the caller's id; every file it loaded came from the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_me_offline_with_a_pasted_token() {
    let Some(driver) = driver() else { return };
    let Some(app) = TestApp::spawn(taxbridge_testkit::Database::Sqlite).await else {
        return;
    };
    let token = app.partner_token("qount").await;
    let me = app.me(Some(&token)).await;
    let id = me.assert_ok()["me"]["id"].as_str().expect("id").to_owned();

    let client = browser(&driver).await;
    client.goto(&app.endpoint).await.expect("open GraphiQL");
    // What a person does by typing: the query, and the token in the Headers tab. GraphiQL
    // keeps both in localStorage; set them there and load the page again.
    client
        .execute(
            "localStorage.setItem('graphiql:query', arguments[0]); \
             localStorage.setItem('graphiql:headers', arguments[1]);",
            vec![
                json!("{ me { id } }"),
                json!(json!({ "Authorization": format!("Bearer {token}") }).to_string()),
            ],
        )
        .await
        .expect("set the editors");
    client.refresh().await.expect("reload");
    let run = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".graphiql-execute-button"))
        .await
        .expect("GraphiQL rendered (not stuck at Loading)");
    run.click().await.expect("run the query");
    let mut shown = String::new();
    for _ in 0..100 {
        if let Ok(result) = client.find(Locator::Css(".result-window")).await {
            shown = result.text().await.unwrap_or_default();
            if shown.contains(&id) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(&client, "graphiql").await;
    assert!(shown.contains(&id), "the result shows {shown:?}, not {id}");
    // Every script, stylesheet and request of the page went to the gateway.
    let loaded: Value = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .expect("resources");
    let loaded: Vec<String> = serde_json::from_value(loaded).unwrap_or_default();
    assert!(loaded.len() >= 5, "{loaded:?}");
    for url in &loaded {
        assert!(url.starts_with(&app.base), "{url} is not the gateway's");
    }
    client.close().await.expect("close");
}
