//! GraphiQL in a real headless Chromium ([`taxbridge_testkit::browser`]). The web pages'
//! browser tests run the real binary, in `crates/taxbridge/tests/web.rs`.

use crate::support::TestApp;
use serde_json::{json, Value};
use std::time::Duration;
use taxbridge_testkit::browser::fantoccini::Locator;
use taxbridge_testkit::browser::{browser, driver, screenshot};

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
    // (A `data:` URL, such as a font the stylesheet inlines, is read from the page itself.)
    for url in loaded.iter().filter(|url| !url.starts_with("data:")) {
        assert!(url.starts_with(&app.base), "{url} is not the gateway's");
    }
    client.close().await.expect("close");
}
