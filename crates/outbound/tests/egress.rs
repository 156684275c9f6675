//! The egress policy against real sockets on loopback: every spelling of a local address is
//! refused without a connection being made (a listener on the port sees nothing), redirects
//! are re-checked, and with the operator's allow-list loopback is reached, within timeouts and
//! a body cap. Private and metadata ranges are tested without sending anything
//! (`policy::tests`): no test of this crate ever opens a connection off this machine.

use std::time::Duration;
use taxbridge_outbound::{header::HeaderMap, Egress, EgressError, EgressSettings};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

fn egress(allow: &[&str]) -> Egress {
    Egress::new(EgressSettings {
        allow_cidrs: allow.iter().map(|c| c.parse().expect("cidr")).collect(),
        connect_timeout: Duration::from_secs(1),
        total_timeout: Duration::from_secs(1),
        max_response_bytes: 1024,
        ..EgressSettings::default()
    })
    .expect("client")
}

/// Serves `answer` to every connection on `listener`, after reading the request head.
fn serve(listener: TcpListener, answer: &'static [u8]) {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if !answer.is_empty() {
                    let _ = stream.write_all(answer).await;
                } else {
                    // Say nothing, and hold the connection open.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
}

async fn nothing_reached(listener: &TcpListener) -> bool {
    tokio::time::timeout(Duration::from_millis(200), listener.accept())
        .await
        .is_err()
}

#[tokio::test]
async fn every_spelling_of_a_local_address_is_refused_without_a_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Where IPv6 is up, the same port on ::1 watches the IPv6 spellings.
    let listener6 = TcpListener::bind(("::1", port)).await.ok();
    let urls = [
        format!("http://127.0.0.1:{port}/v1/verify"),
        format!("http://localhost:{port}/"),
        format!("http://LOCALHOST:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://017700000001:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://127.0.1:{port}/"),
        format!("http://127.000.000.001:{port}/"),
        format!("http://%31%32%37.0.0.1:{port}/"),
        format!("http://127.0.0.2:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::ffff:7f00:1]:{port}/"),
        format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/"),
        format!("http://[::127.0.0.1]:{port}/"),
        format!("http://[64:ff9b::7f00:1]:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        format!("http://0:{port}/"),
        format!("http://[::]:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        format!("http://user:secret@127.0.0.1:{port}/"),
    ];
    let client = egress(&[]);
    for url in &urls {
        match client.get(url, HeaderMap::new()).await {
            // A literal address says why; a name says only that it is not public.
            Err(EgressError::Refused { .. }) => {}
            Err(EgressError::NotPublic { host }) if host.eq_ignore_ascii_case("localhost") => {}
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
    // A name that resolves only to refused addresses reads like one that does not resolve.
    let local = client
        .get(&format!("http://localhost:{port}/"), HeaderMap::new())
        .await
        .expect_err("refused")
        .to_string();
    assert_eq!(
        local,
        EgressError::NotPublic {
            host: "localhost".into()
        }
        .to_string()
    );
    for url in [
        "file:///etc/passwd".to_owned(),
        format!("gopher://127.0.0.1:{port}/"),
        format!("ftp://127.0.0.1:{port}/"),
        format!("ws://127.0.0.1:{port}/"),
    ] {
        match client.get(&url, HeaderMap::new()).await {
            Err(EgressError::Scheme { .. }) => {}
            other => panic!("{url}: expected a scheme refusal, got {other:?}"),
        }
    }
    assert!(
        nothing_reached(&listener).await,
        "a refused URL was connected to"
    );
    if let Some(listener6) = &listener6 {
        assert!(
            nothing_reached(listener6).await,
            "a refused URL was connected to on ::1"
        );
    }
    // The refusal says why, and never repeats the credentials of the URL.
    let err = client
        .get(
            &format!("http://user:secret@127.0.0.1:{port}/"),
            HeaderMap::new(),
        )
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("loopback"), "{message}");
    assert!(!message.contains("secret"), "{message}");
}

#[tokio::test]
async fn with_loopback_allow_listed_it_is_reached() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    serve(
        listener,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 39\r\nConnection: close\r\n\r\n{\"firmId\":\"f-1\",\"firmName\":\"Smith CPA\"}",
    );
    let client = egress(&["127.0.0.0/8", "::1/128"]);
    for host in ["127.0.0.1", "localhost"] {
        let fetched = client
            .get(&format!("http://{host}:{port}/v1/verify"), HeaderMap::new())
            .await
            .unwrap_or_else(|err| panic!("{host}: {err}"));
        assert_eq!(fetched.status, 200);
        assert!(fetched.body.starts_with(b"{\"firmId\""));
    }
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_not_followed() {
    let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = target.local_addr().expect("addr").port();
    // The allowed origin is 127.0.0.2; it redirects to 127.0.0.1 and to `localhost`.
    let origin = TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let origin_port = origin.local_addr().expect("addr").port();
    let answer: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    serve(origin, answer);
    let client = egress(&["127.0.0.2/32"]);
    match client
        .get(
            &format!("http://127.0.0.2:{origin_port}/"),
            HeaderMap::new(),
        )
        .await
    {
        Err(EgressError::Refused { .. }) => {}
        other => panic!("expected the redirect to be refused, got {other:?}"),
    }
    assert!(nothing_reached(&target).await, "the redirect was followed");
}

#[tokio::test]
async fn a_platform_that_hangs_times_out_and_a_huge_answer_is_cut() {
    let hang = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_port = hang.local_addr().expect("addr").port();
    serve(hang, b"");
    let huge = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let huge_port = huge.local_addr().expect("addr").port();
    let body: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
            "x".repeat(0x800)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    serve(huge, body);
    let client = egress(&["127.0.0.0/8"]);
    let started = std::time::Instant::now();
    match client
        .get(&format!("http://127.0.0.1:{hang_port}/"), HeaderMap::new())
        .await
    {
        Err(EgressError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    match client
        .get(&format!("http://127.0.0.1:{huge_port}/"), HeaderMap::new())
        .await
    {
        Err(EgressError::TooLarge(1024)) => {}
        other => panic!("expected the body to be cut, got {other:?}"),
    }
}
