//! The egress policy and the tus client against hostile peers written here, on loopback: every
//! kind of credentialed call ends at a redirect to another origin (and the other origin hears
//! nothing), a tus server that never advances its offset ends the upload, a relative tus
//! `Location` is read against the URL that answered, and a body dripped below the floor rate is
//! given up.

mod common;
use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Router,
};
use bytes::Bytes;
use common::Memory;
use futures_util::StreamExt;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use taxbridge_domain::{
    ids::ConnectionId,
    platform::{PartnerPlatform, PlatformAccess, PlatformFailure, PullBudget, Puller, VerifyCall},
};
use taxbridge_outbound::{
    header,
    tus::{TusClient, TusError, TusUpload},
    Egress, EgressError, EgressSettings, MinRate, PartnerProtocol,
};

/// What a peer was sent: (method, path and query, headers).
type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap)>>>;

type Answer = Arc<dyn Fn(&Method, &str, u16) -> Response + Send + Sync>;

/// A peer on 127.0.0.1 that records every request and answers with `answer(method, path, its
/// own port)`: (its base URL, what it saw).
async fn peer(
    answer: impl Fn(&Method, &str, u16) -> Response + Send + Sync + 'static,
) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::default();
    let state = (seen.clone(), Arc::new(answer) as Answer, port);
    let app = Router::new().fallback(
        |State((seen, answer, port)): State<(Seen, Answer, u16)>,
         method: Method,
         uri: Uri,
         headers: HeaderMap| async move {
            let path = uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
            seen.lock()
                .expect("lock")
                .push((method.clone(), path.clone(), headers));
            answer(&method, &path, port)
        },
    );
    tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await });
    (format!("http://127.0.0.1:{port}"), seen)
}

fn egress() -> Egress {
    Egress::new(EgressSettings {
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        connect_timeout: Duration::from_secs(1),
        total_timeout: Duration::from_secs(3),
        ..EgressSettings::default()
    })
    .expect("egress")
}

fn redirect(status: StatusCode, to: String) -> Response {
    (status, [(header::LOCATION, to)]).into_response()
}

fn credentials_seen(seen: &Seen) -> Vec<String> {
    seen.lock()
        .expect("lock")
        .iter()
        .flat_map(|(_, _, headers)| {
            ["authorization", "x-security-token"]
                .into_iter()
                .filter_map(|name| headers.get(name)?.to_str().ok().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn puller(base: &str) -> Puller {
    Puller {
        who: taxbridge_domain::audit::Who::system(),
        connection_id: ConnectionId::from_string("con_1".to_owned()),
        base_url: base.to_owned(),
        access: PlatformAccess {
            base_url: Some(base.to_owned()),
            api_key: Some("secret-api-key".into()),
            security_token: Some("secret-security-token".into()),
            workspace_id: "wsp_1".into(),
            firm_reference: None,
        },
    }
}

/// Verify and every pull, each redirected (307 and 302) to another origin: each call ends
/// saying so, and the other origin is never called. A redirect within the origin is followed,
/// credentials and all.
#[tokio::test]
async fn every_credentialed_call_ends_at_a_redirect_to_another_origin() {
    let (elsewhere, elsewhere_seen) = peer(|_, _, _| {
        axum::Json(serde_json::json!({ "firmId": "stolen", "clients": [], "files": [] }))
            .into_response()
    })
    .await;
    for status in [StatusCode::TEMPORARY_REDIRECT, StatusCode::FOUND] {
        let away = elsewhere.clone();
        let (platform, _) = peer(move |_, path, _| redirect(status, format!("{away}{path}"))).await;
        let protocol = PartnerProtocol::new(egress());
        let verified = protocol
            .verify(VerifyCall {
                base_url: &platform,
                api_key: Some("secret-api-key"),
                security_token: Some("secret-security-token"),
                workspace_id: "wsp_1",
                firm_reference: None,
            })
            .await
            .expect_err("ends at the redirect");
        assert!(
            verified.to_string().contains("another origin"),
            "{verified}"
        );
        let budget = PullBudget::new(1 << 20);
        let puller = puller(&platform);
        let outcomes: Vec<PlatformFailure> = vec![
            protocol
                .clients(&puller, &[], 10, &budget)
                .await
                .expect_err("clients"),
            protocol
                .client(&puller, "c-1", &budget)
                .await
                .expect_err("client"),
            protocol
                .files(&puller, "c-1", &[], 10, &budget)
                .await
                .expect_err("files"),
        ];
        for failure in outcomes {
            assert!(failure.to_string().contains("another origin"), "{failure}");
        }
    }
    assert!(
        elsewhere_seen.lock().expect("lock").is_empty(),
        "the other origin was called"
    );

    // Only the security token: still a credential, still kept to its origin.
    let (platform, _) = {
        let away = elsewhere.clone();
        peer(move |_, path, _| redirect(StatusCode::TEMPORARY_REDIRECT, format!("{away}{path}")))
            .await
    };
    let mut headers = header::HeaderMap::new();
    headers.insert("x-security-token", header::HeaderValue::from_static("t"));
    let err = egress()
        .get(&format!("{platform}/v1/verify"), headers)
        .await
        .expect_err("cross origin");
    assert!(matches!(err, EgressError::CrossOrigin { .. }), "{err}");
    assert!(elsewhere_seen.lock().expect("lock").is_empty());

    // A call without credentials may follow it; one within the origin keeps its credentials.
    let fetched = egress()
        .get(&format!("{platform}/v1/verify"), header::HeaderMap::new())
        .await
        .expect("plain call follows");
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(elsewhere_seen.lock().expect("lock").len(), 1);
    let (home, home_seen) = peer(|_, path, _| {
        if path.starts_with("/moved") {
            axum::Json(serde_json::json!({ "firmId": "f-1" })).into_response()
        } else {
            redirect(StatusCode::TEMPORARY_REDIRECT, format!("/moved{path}"))
        }
    })
    .await;
    let firm = PartnerProtocol::new(egress())
        .verify(VerifyCall {
            base_url: &home,
            api_key: Some("secret-api-key"),
            security_token: Some("secret-security-token"),
            workspace_id: "wsp_1",
            firm_reference: None,
        })
        .await
        .expect("same-origin redirect");
    assert_eq!(firm.firm_id, "f-1");
    assert_eq!(
        credentials_seen(&home_seen),
        [
            "Bearer secret-api-key",
            "secret-security-token",
            "Bearer secret-api-key",
            "secret-security-token"
        ]
    );
}

/// A platform that ignores `limit` and sends everything is cut at the limit; the bytes read are
/// charged to the budget, and a spent budget ends the next pull.
#[tokio::test]
async fn lists_are_cut_at_the_limit_and_charged_to_the_budget() {
    let (platform, _) = peer(|_, _, _| {
        let clients: Vec<serde_json::Value> = (0..5_000)
            .map(|n| serde_json::json!({ "id": format!("c-{n}"), "name": "x".repeat(100) }))
            .collect();
        axum::Json(serde_json::json!({ "clients": clients })).into_response()
    })
    .await;
    let protocol = PartnerProtocol::new(
        Egress::new(EgressSettings {
            allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
            max_response_bytes: 64 << 20,
            ..EgressSettings::default()
        })
        .expect("egress"),
    );
    let budget = PullBudget::new(1 << 20);
    let three = protocol
        .clients(&puller(&platform), &[], 3, &budget)
        .await
        .expect("three");
    assert_eq!(
        three.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["c-0", "c-1", "c-2"]
    );
    // 500 clients of ~130 bytes each: 65 KB of the 650 KB answer are needed.
    let page = protocol
        .clients(&puller(&platform), &[], 500, &budget)
        .await
        .expect("a page");
    assert_eq!(page.len(), 500);
    // The 1 MiB budget: a few pages more, then the pulls of this request stop.
    let mut spent = None;
    for _ in 0..40 {
        if let Err(failure) = protocol
            .clients(&puller(&platform), &[], 500, &budget)
            .await
        {
            spent = Some(failure);
            break;
        }
    }
    assert_eq!(spent, Some(PlatformFailure::OverBudget(1 << 20)));
}

fn upload_to(endpoint: &str) -> TusUpload {
    TusUpload {
        endpoint: endpoint.to_owned(),
        length: 1000,
        metadata: String::new(),
        chunk_size: 100,
        attempts: 4,
        first_retry: Duration::from_millis(10),
    }
}

/// A tus server that takes every chunk (204) but never moves its offset: the upload fails after
/// the usual attempts instead of sending forever.
#[tokio::test]
async fn a_tus_server_that_never_advances_ends_the_upload() {
    let patches = Arc::new(AtomicUsize::new(0));
    let counted = patches.clone();
    let (server, _) = peer(move |method, _, _| {
        let tus = [("tus-resumable", "1.0.0"), ("upload-offset", "0")];
        match *method {
            Method::POST => (StatusCode::CREATED, [(header::LOCATION, "/files/1")]).into_response(),
            Method::PATCH => {
                counted.fetch_add(1, Ordering::SeqCst);
                (StatusCode::NO_CONTENT, tus).into_response()
            }
            _ => (StatusCode::OK, tus).into_response(),
        }
    })
    .await;
    let client = TusClient::new(egress());
    let spec = upload_to(&format!("{server}/files"));
    let sending = client.upload(&spec, Arc::new(Memory(vec![7; 1000])), None, &|_, _| {});
    let outcome = tokio::time::timeout(Duration::from_secs(10), sending)
        .await
        .expect("the upload ends by itself");
    match outcome {
        Err(TusError::GaveUp(message)) => assert!(message.contains("did not advance"), "{message}"),
        other => panic!("not given up: {other:?}"),
    }
    assert!(
        patches.load(Ordering::SeqCst) <= 4,
        "{} PATCHes",
        patches.load(Ordering::SeqCst)
    );
}

/// `POST` redirected (307) to another server, which answers a relative `Location`: the upload
/// is that server's, and the bytes go there.
#[tokio::test]
async fn a_relative_location_is_read_against_the_url_that_answered() {
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    let (target, _) = peer(move |method, path, _| {
        let offset = counted.load(Ordering::SeqCst).to_string();
        match (method.as_str(), path) {
            ("POST", "/uploads/") => {
                (StatusCode::CREATED, [(header::LOCATION, "abc")]).into_response()
            }
            ("PATCH", "/uploads/abc") => {
                let now = counted.fetch_add(100, Ordering::SeqCst) + 100;
                (
                    StatusCode::NO_CONTENT,
                    [
                        ("tus-resumable", "1.0.0".to_owned()),
                        ("upload-offset", now.to_string()),
                    ],
                )
                    .into_response()
            }
            ("HEAD", "/uploads/abc") => (
                StatusCode::OK,
                [
                    ("tus-resumable", "1.0.0".to_owned()),
                    ("upload-offset", offset),
                ],
            )
                .into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    })
    .await;
    let to = format!("{target}/uploads/");
    let (front, front_seen) =
        peer(move |_, _, _| redirect(StatusCode::TEMPORARY_REDIRECT, to.clone())).await;
    let url = TusClient::new(egress())
        .upload(
            &upload_to(&format!("{front}/start")),
            Arc::new(Memory(vec![7; 1000])),
            None,
            &|_, _| {},
        )
        .await
        .expect("uploaded");
    assert_eq!(url.as_str(), format!("{target}/uploads/abc"));
    assert_eq!(received.load(Ordering::SeqCst), 1000);
    assert_eq!(
        front_seen.lock().expect("lock").len(),
        1,
        "only the POST went there"
    );
}

/// A file server that sends a byte now and then (never idle long enough for the read timeout)
/// is given up once a window passes below the floor rate.
#[tokio::test]
async fn a_dripped_body_is_given_up_below_the_floor_rate() {
    let (server, _) = peer(|_, _, _| {
        let drip = futures_util::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            (n < 600).then(|| (Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
        });
        Response::new(Body::from_stream(drip))
    })
    .await;
    let egress = Egress::new(EgressSettings {
        allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
        min_rate: MinRate {
            bytes_per_second: 1024,
            window: Duration::from_secs(1),
        },
        ..EgressSettings::default()
    })
    .expect("egress");
    let started = Instant::now();
    let opened = egress
        .open(&format!("{server}/file.pdf"), &|_| header::HeaderMap::new())
        .await
        .expect("headers");
    let mut body = std::pin::pin!(opened.into_stream());
    let mut failure = None;
    while let Some(chunk) = body.next().await {
        if let Err(err) = chunk {
            failure = Some(err);
            break;
        }
    }
    assert!(
        matches!(failure, Some(EgressError::TooSlow(1024))),
        "{failure:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
