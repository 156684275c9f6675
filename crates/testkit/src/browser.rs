//! A real headless Chromium (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/test.sh`), driven over WebDriver with fantoccini. [`driver`] is None (the test
//! skips) when no `chromedriver` is on the PATH, except under CI (`CI` set), where that is a
//! failure. [`screenshot`] saves a page under `target/screenshots/`.

pub use fantoccini;
use fantoccini::{Client, ClientBuilder};
use serde_json::json;
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A chromedriver of our own on a free port, stopped when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn driver() -> Option<Driver> {
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

/// A headless Chromium session with a fresh profile and a desktop-sized window.
pub async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"] }),
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

/// Where screenshots go: `target/screenshots/` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
}

/// Saves the page as it looks now, as `target/screenshots/<name>.png`, the whole page tall.
pub async fn screenshot(client: &Client, name: &str) {
    let dir = screenshot_dir();
    let _ = std::fs::create_dir_all(&dir);
    // Fit the window to the page, so the picture shows all of it.
    let size = client.get_window_size().await.ok();
    let height = client
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .ok()
        .and_then(|h| h.as_u64());
    if let (Some((width, _)), Some(height)) = (size, height) {
        let _ = client
            .set_window_size(width as u32, (height as u32 + 140).min(4000))
            .await;
    }
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
    if let Some((width, height)) = size {
        let _ = client.set_window_size(width as u32, height as u32).await;
    }
}
