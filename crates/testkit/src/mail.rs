//! A real SMTP receiver with an HTTP API: npm `maildev`, started by
//! `scripts/test-maildev.sh` (which `scripts/test.sh` runs), named by
//! `TAXBRIDGE_TEST_SMTP_URL` and `TAXBRIDGE_TEST_MAILDEV_URL`. [`receiver`] is None (the test
//! skips) without them, except under CI, where that is a failure.

use serde_json::Value;
use std::{process::Command, time::Duration};

pub struct Receiver {
    /// What `[mail] smtp_url` is set to.
    pub smtp_url: String,
    /// maildev's HTTP API.
    pub api_url: String,
}

pub fn receiver() -> Option<Receiver> {
    match (
        std::env::var("TAXBRIDGE_TEST_SMTP_URL"),
        std::env::var("TAXBRIDGE_TEST_MAILDEV_URL"),
    ) {
        (Ok(smtp_url), Ok(api_url)) => Some(Receiver { smtp_url, api_url }),
        _ if std::env::var_os("CI").is_some() => {
            panic!("TAXBRIDGE_TEST_SMTP_URL must name an SMTP receiver when CI is set (scripts/test-maildev.sh)")
        }
        _ => {
            eprintln!("skipped: no SMTP receiver (eval \"$(scripts/test-maildev.sh start)\")");
            None
        }
    }
}

impl Receiver {
    /// Every message maildev holds (`GET /api/email`), oldest first.
    pub fn messages(&self) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-s", &format!("{}/api/email", self.api_url)])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The messages sent to `email`, oldest first.
    pub fn messages_to(&self, email: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|to| to.iter().any(|t| t["address"].as_str() == Some(email)))
            })
            .collect()
    }

    /// The 6-digit code of the newest message to `email` beyond the first `seen`, waiting up
    /// to ten seconds for it to arrive.
    pub async fn code_for(&self, email: &str, seen: usize) -> String {
        for _ in 0..100 {
            let messages = self.messages_to(email);
            if messages.len() > seen {
                let text = messages
                    .last()
                    .and_then(|m| m["text"].as_str())
                    .unwrap_or_default();
                return text
                    .split(|c: char| !c.is_ascii_digit())
                    .find(|word| word.len() == 6)
                    .unwrap_or_else(|| panic!("no 6-digit code in {text:?}"))
                    .to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no sign-in message reached {email} within 10 s");
    }
}
