//! Taxbridge's only way out. Sign-in codes leave by SMTP to the operator's own mail server
//! ([`mail`]); every outbound HTTP call of the project (a partner platform's
//! `GET /v1/verify` and pulls, artifact downloads, tus uploads) goes through an [`Egress`],
//! and this is the only crate that depends on an HTTP client: the compiler holds that line.
//!
//! The policy ([`policy`]), applied to every request and every redirect:
//! - `http` and `https` only;
//! - the host is read as the WHATWG URL parser reads it, so every numeric spelling
//!   (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) is the address it means;
//! - a literal address is checked before anything is sent, and a refusal says why; a name is
//!   resolved by the policy's own resolver, which drops every refused address, and the
//!   connection goes to an address it returned (no second lookup for a DNS answer to change
//!   between check and use). A name with no address left answers the same whether it did not
//!   resolve or resolved only to refused addresses: the gateway is no probe of internal DNS;
//! - redirects are followed at most five times, each target checked the same way;
//! - connect and total timeouts, and a cap on the response body, read as it streams.
//!
//! The operator's `allow_cidrs` (for local demos and tests) come before the refusals.

pub mod mail;
pub mod partner;
pub mod policy;
pub mod tus;

use bytes::Bytes;
pub use partner::PartnerProtocol;
use policy::{Blocked, Policy};
use reqwest::{dns, redirect};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use url::Host;

pub use reqwest::{header, Method, StatusCode};
pub use url::Url;

/// How an [`Egress`] behaves.
#[derive(Clone, Debug)]
pub struct EgressSettings {
    /// Ranges that may be reached although the policy refuses them (e.g. `127.0.0.0/8`).
    pub allow_cidrs: Vec<ipnet::IpNet>,
    pub connect_timeout: Duration,
    /// The whole call, from connecting to the last byte of the body.
    pub total_timeout: Duration,
    /// Response bodies longer than this are refused as they stream in.
    pub max_response_bytes: usize,
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            allow_cidrs: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Why an outbound call did not return a response. Each says what an integrator can act on,
/// and none carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("`{url}` is not a URL the gateway can call: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the gateway calls only http and https URLs, not `{scheme}:`")]
    Scheme { scheme: String },
    #[error("`{host}` is {}, which the gateway does not call", why.describe())]
    Refused { host: String, why: Blocked },
    /// A name that does not resolve, or resolves only to refused addresses: one answer for
    /// both, so a caller cannot use the gateway to learn which internal names exist.
    #[error("`{host}` does not resolve to a public address, and the gateway calls only those")]
    NotPublic { host: String },
    #[error("the platform did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the platform could not be reached: {0}")]
    Connect(String),
    #[error("the platform redirected more than 5 times")]
    TooManyRedirects,
    #[error("the platform's answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the call failed: {0}")]
    Other(String),
}

/// A response read whole (within the size cap).
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: Bytes,
}

/// The HTTP client behind the egress policy.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    /// For streamed downloads: no limit on the whole call (a large file takes as long as it
    /// takes) but one on each read, and redirects followed by [`Egress::open`] itself.
    streaming: reqwest::Client,
    policy: Arc<Policy>,
    settings: Arc<EgressSettings>,
}

/// How long a streamed download may go without a byte before it is given up.
pub const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A response whose body is still to come: [`Egress::open`]'s answer.
pub struct Opened {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    /// The URL that answered, after redirects.
    pub url: Url,
    response: reqwest::Response,
    read_timeout: Duration,
}

impl Opened {
    /// The body, chunk by chunk; a stall longer than [`STREAM_READ_TIMEOUT`] or a reset ends
    /// it with an error.
    pub fn into_stream(
        self,
    ) -> impl futures_core::Stream<Item = Result<Bytes, EgressError>> + Send + 'static {
        let timeout = self.read_timeout;
        futures_util::stream::unfold(Some(self.response), move |response| async move {
            let mut response = response?;
            match response.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                Ok(None) => None,
                Err(err) if err.is_timeout() => Some((Err(EgressError::Timeout(timeout)), None)),
                Err(err) => Some((Err(EgressError::Connect(root_cause(&err))), None)),
            }
        })
    }
}

impl Egress {
    pub fn new(settings: EgressSettings) -> Result<Self, EgressError> {
        let policy = Arc::new(Policy::new(settings.allow_cidrs.clone()));
        let resolver = Arc::new(PolicyResolver {
            policy: policy.clone(),
        });
        let redirects = policy.clone();
        let client = reqwest::Client::builder()
            .dns_resolver(resolver)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.total_timeout)
            .redirect(redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error(EgressError::TooManyRedirects);
                }
                match check_url(&redirects, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(err) => attempt.error(err),
                }
            }))
            .user_agent(concat!("Taxbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| EgressError::Other(err.to_string()))?;
        let streaming = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .connect_timeout(settings.connect_timeout)
            .read_timeout(STREAM_READ_TIMEOUT)
            .redirect(redirect::Policy::none())
            .user_agent(concat!("Taxbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| EgressError::Other(err.to_string()))?;
        Ok(Self {
            client,
            streaming,
            policy,
            settings: Arc::new(settings),
        })
    }

    /// `GET url` for a streamed download: answers once the headers arrive, the body to be read
    /// from [`Opened::into_stream`] without a size cap of the policy's (the caller has its own).
    /// Redirects (at most 5) are followed here, each target checked like the first URL, and
    /// `headers_for` gives the headers for each URL, so credentials meant for one origin are
    /// never sent to another.
    pub async fn open(
        &self,
        url: &str,
        headers_for: &(dyn Fn(&Url) -> header::HeaderMap + Send + Sync),
    ) -> Result<Opened, EgressError> {
        let mut url = self.check(url)?;
        for _ in 0..=5 {
            let response = self
                .streaming
                .get(url.clone())
                .headers(headers_for(&url))
                .send()
                .await
                .map_err(|err| self.explain(err))?;
            let status = response.status();
            if status.is_redirection() {
                if let Some(location) = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    let next = url.join(location).map_err(|err| EgressError::BadUrl {
                        url: location.to_owned(),
                        reason: err.to_string(),
                    })?;
                    check_url(&self.policy, &next)?;
                    url = next;
                    continue;
                }
            }
            return Ok(Opened {
                status,
                headers: response.headers().clone(),
                url,
                response,
                read_timeout: STREAM_READ_TIMEOUT,
            });
        }
        Err(EgressError::TooManyRedirects)
    }

    /// Parses and checks a URL without calling it: for validating settings early.
    pub fn check(&self, url: &str) -> Result<Url, EgressError> {
        let parsed = Url::parse(url).map_err(|err| EgressError::BadUrl {
            url: url.to_owned(),
            reason: err.to_string(),
        })?;
        check_url(&self.policy, &parsed)?;
        Ok(parsed)
    }

    /// Sends one request and reads the whole response, within the policy and its limits.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: header::HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Fetched, EgressError> {
        let url = self.check(url)?;
        let mut request = self.client.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|err| self.explain(err))?;
        self.read_answer(response).await
    }

    /// Sends one request whose body of `length` bytes streams from `body`, on the streaming
    /// client: no limit on the whole call (a large body takes as long as it takes) but one on
    /// each read, and no redirects. The answer is read whole, within the size cap.
    pub async fn send_streamed<S>(
        &self,
        method: Method,
        url: &str,
        mut headers: header::HeaderMap,
        length: u64,
        body: S,
    ) -> Result<Fetched, EgressError>
    where
        S: futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let url = self.check(url)?;
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
        let response = self
            .streaming
            .request(method, url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|err| self.explain(err))?;
        self.read_answer(response).await
    }

    /// A response's body, read whole within the size cap.
    async fn read_answer(&self, mut response: reqwest::Response) -> Result<Fetched, EgressError> {
        let limit = self.settings.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(EgressError::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| self.explain(err))? {
            if body.len() + chunk.len() > limit {
                return Err(EgressError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            status: response.status(),
            headers: response.headers().clone(),
            body: body.into(),
        })
    }

    /// `GET url` with `headers`.
    pub async fn get(&self, url: &str, headers: header::HeaderMap) -> Result<Fetched, EgressError> {
        self.send(Method::GET, url, headers, None).await
    }

    /// Turns reqwest's error back into what happened: a refusal of ours (from the resolver
    /// or a redirect), a timeout, or a failure to connect.
    fn explain(&self, err: reqwest::Error) -> EgressError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(cause) = source {
            if let Some(ours) = cause.downcast_ref::<EgressError>() {
                return match ours {
                    EgressError::Refused { host, why } => EgressError::Refused {
                        host: host.clone(),
                        why: *why,
                    },
                    EgressError::NotPublic { host } => {
                        EgressError::NotPublic { host: host.clone() }
                    }
                    EgressError::TooManyRedirects => EgressError::TooManyRedirects,
                    other => EgressError::Other(other.to_string()),
                };
            }
            source = cause.source();
        }
        if err.is_timeout() {
            EgressError::Timeout(self.settings.total_timeout)
        } else if err.is_redirect() {
            EgressError::TooManyRedirects
        } else if err.is_connect() {
            EgressError::Connect(root_cause(&err))
        } else {
            EgressError::Other(root_cause(&err))
        }
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// The scheme and, for a literal address, the address. Names are checked by the resolver.
fn check_url(policy: &Policy, url: &Url) -> Result<(), EgressError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EgressError::Scheme {
            scheme: url.scheme().to_owned(),
        });
    }
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => v4.into(),
        Some(Host::Ipv6(v6)) => v6.into(),
        Some(Host::Domain(_)) => return Ok(()),
        None => {
            return Err(EgressError::BadUrl {
                url: url.to_string(),
                reason: "it has no host".into(),
            })
        }
    };
    policy.check(ip).map_err(|why| EgressError::Refused {
        host: url.host_str().unwrap_or_default().to_owned(),
        why,
    })
}

/// Resolves names with the system resolver and keeps only addresses the policy allows; reqwest
/// connects to one of those.
struct PolicyResolver {
    policy: Arc<Policy>,
}

impl dns::Resolve for PolicyResolver {
    fn resolve(&self, name: dns::Name) -> dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| {
                    Box::new(EgressError::NotPublic { host: host.clone() })
                        as Box<dyn std::error::Error + Send + Sync>
                })?
                .collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| policy.check(addr.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                let err = EgressError::NotPublic { host };
                return Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as dns::Addrs)
        })
    }
}
