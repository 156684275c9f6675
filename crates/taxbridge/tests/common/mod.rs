//! Test support shared by the binary's test suites (each uses part of it).
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_taxbridge");

/// What [`loopback_server`] answers a request: status (e.g. `200 OK`), content type, body.
pub type Answer = (&'static str, &'static str, Vec<u8>);

/// A plain HTTP/1.1 server on loopback, a thread per connection, one request per connection:
/// `answer` gets the request path. Returns its base URL.
pub fn loopback_server(answer: fn(&str) -> Answer) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or_default();
                let (status, kind, body) = answer(path);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            });
        }
    });
    base
}

/// A running `taxbridge serve` on a free loopback port, killed when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:<port>/graphql`.
    pub endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data_dir: &Path) -> Server {
    serve_with(data_dir, &[])
}

pub fn serve_with(data_dir: &Path, env: &[(&str, String)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--listen", &listen])
        .env_remove("TAXBRIDGE_DATABASE_URL")
        .env("TAXBRIDGE_EGRESS__ALLOW_CIDRS", r#"["127.0.0.0/8"]"#)
        // Leases as in production (30 s); a dead worker's liveness lapses after 2 s, so a
        // restarted node takes its tasks over within seconds, not when their leases end.
        .env("TAXBRIDGE_WORKER__LEASE_SECONDS", "30")
        .env("TAXBRIDGE_WORKER__LIVENESS_SECONDS", "2")
        // Stopped tests exit at once; `cli.rs` tests the drain.
        .env("TAXBRIDGE_SERVER__DRAIN_SECONDS", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.starts_with("Taxbridge is serving") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Server {
        child,
        endpoint: format!("http://{listen}/graphql"),
    }
}

/// curl -s with these arguments: what it printed.
pub fn curl(args: &[&str]) -> Vec<u8> {
    Command::new("curl")
        .arg("-s")
        .args(args)
        .output()
        .expect("curl")
        .stdout
}

/// One GraphQL request with curl: the whole answer, `data` and `errors`.
pub fn graphql(
    endpoint: &str,
    token: Option<&str>,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![
        "-X",
        "POST",
        endpoint,
        "-H",
        "Content-Type: application/json",
        "-H",
        "source-platform: web-test",
        "-d",
        &body,
    ];
    if let Some(auth) = &auth {
        args.extend(["-H", auth]);
    }
    let out = curl(&args);
    serde_json::from_slice(&out)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out)))
}
