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
//! - redirects are followed at most five times, each target checked the same way; a call
//!   that carries credentials ([`credentials`] decides which headers are) follows them only
//!   within the origin it was sent to, and a redirect elsewhere ends it
//!   ([`EgressError::CrossOrigin`]);
//! - no ambient proxy: `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` are ignored, since a proxy
//!   would resolve names where the policy cannot see them;
//! - connect and total timeouts, a cap on the response body, read as it streams, and a
//!   minimum average rate for streamed bodies ([`MinRate`]).
//!
//! The operator's `allow_cidrs` (for local demos and tests) come before the refusals.

pub mod listing;
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
    /// The slowest a streamed body (a download, a tus `PATCH`) may move on average.
    pub min_rate: MinRate,
}

/// A floor on a streamed transfer's average rate: at least `bytes_per_second` over every
/// `window`, so a peer that drips a byte now and then (never idle long enough for the read
/// timeout) still cannot hold a worker for long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_second: u64,
    pub window: Duration,
}

impl Default for MinRate {
    fn default() -> Self {
        Self {
            bytes_per_second: 16 * 1024,
            window: Duration::from_secs(60),
        }
    }
}

impl MinRate {
    /// The longest a body of `len` bytes may take to send: a window, plus the time the floor
    /// rate needs for it.
    pub fn deadline_for(&self, len: u64) -> Duration {
        self.window + Duration::from_secs_f64(len as f64 / self.bytes_per_second.max(1) as f64)
    }
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            allow_cidrs: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            max_response_bytes: 4 * 1024 * 1024,
            min_rate: MinRate::default(),
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
    /// A call carrying credentials was redirected to another origin: it ends there, and the
    /// credentials are not sent on.
    #[error("the server redirected to another origin ({to}); the gateway sends credentials only to the origin they were given for, so the call ended there")]
    CrossOrigin { to: String },
    #[error("the transfer was slower than {0} bytes a second on average")]
    TooSlow(u64),
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
    /// The URL that answered, after redirects: what a relative `Location` is resolved against.
    pub url: Url,
}

/// Which headers carry credentials: the one place that decides. A call with any of them
/// follows redirects only within its origin. A value marked sensitive counts, whatever its
/// name, so a caller that adds a secret of a new kind marks it and is covered.
pub mod credentials {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

    /// Header names that always carry credentials.
    pub const NAMES: [&str; 5] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-security-token",
        "x-api-key",
    ];

    pub fn is_credential(name: &HeaderName, value: &HeaderValue) -> bool {
        value.is_sensitive() || NAMES.contains(&name.as_str())
    }

    /// Whether a request with these headers carries credentials.
    pub fn carried(headers: &HeaderMap) -> bool {
        headers
            .iter()
            .any(|(name, value)| is_credential(name, value))
    }
}

/// The origin (scheme, host, port) of a URL, for deciding where credentials may go.
pub fn origin_of(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_ascii_lowercase),
        url.port_or_known_default(),
    )
}

/// The origin of a URL as text (`https://host:443`), or `None` for a URL that does not parse
/// or has no host: what stored credentials are bound to.
pub fn origin_text(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    let (scheme, host, port) = origin_of(&url);
    Some(format!("{scheme}://{}:{}", host?, port.unwrap_or(0)))
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

/// The environment variables a proxy is usually named in; no outbound client reads them.
pub const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// Redirects one call follows at most.
const MAX_REDIRECTS: usize = 5;

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
    min_rate: MinRate,
}

impl Opened {
    /// The body, chunk by chunk; a stall longer than [`STREAM_READ_TIMEOUT`] or a reset ends
    /// it with an error.
    pub fn into_stream(
        self,
    ) -> impl futures_core::Stream<Item = Result<Bytes, EgressError>> + Send + 'static {
        let timeout = self.read_timeout;
        let floor = RateFloor::new(self.min_rate);
        futures_util::stream::unfold(Some((self.response, floor)), move |state| async move {
            let (mut response, mut floor) = state?;
            match response.chunk().await {
                Ok(Some(chunk)) => match floor.add(chunk.len()) {
                    Ok(()) => Some((Ok(chunk), Some((response, floor)))),
                    Err(err) => Some((Err(err), None)),
                },
                Ok(None) => None,
                Err(err) if err.is_timeout() => Some((Err(EgressError::Timeout(timeout)), None)),
                Err(err) => Some((Err(EgressError::Connect(root_cause(&err))), None)),
            }
        })
    }
}

/// Checks a transfer against its [`MinRate`], window by window, as bytes arrive.
pub struct RateFloor {
    rate: MinRate,
    window_start: std::time::Instant,
    in_window: u64,
}

impl RateFloor {
    pub fn new(rate: MinRate) -> Self {
        Self {
            rate,
            window_start: std::time::Instant::now(),
            in_window: 0,
        }
    }

    /// Counts `bytes` just moved; an error once a whole window went by below the floor.
    pub fn add(&mut self, bytes: usize) -> Result<(), EgressError> {
        self.in_window += bytes as u64;
        let elapsed = self.window_start.elapsed();
        if elapsed >= self.rate.window {
            let needed = (self.rate.bytes_per_second as f64 * elapsed.as_secs_f64()) as u64;
            if self.in_window < needed {
                return Err(EgressError::TooSlow(self.rate.bytes_per_second));
            }
            self.window_start = std::time::Instant::now();
            self.in_window = 0;
        }
        Ok(())
    }
}

impl Egress {
    pub fn new(settings: EgressSettings) -> Result<Self, EgressError> {
        let policy = Arc::new(Policy::new(settings.allow_cidrs.clone()));
        let resolver = Arc::new(PolicyResolver {
            policy: policy.clone(),
        });
        // Redirects are followed by [`Egress::send`] itself, which decides per hop whether the
        // request's credentials may go on. No client reads proxy settings from the
        // environment: a proxy would resolve names out of the policy's sight.
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(resolver)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.total_timeout)
            .redirect(redirect::Policy::none())
            .user_agent(concat!("Taxbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| EgressError::Other(err.to_string()))?;
        let streaming = reqwest::Client::builder()
            .no_proxy()
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
        for _ in 0..=MAX_REDIRECTS {
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
                min_rate: self.settings.min_rate,
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

    /// The floor on streamed transfers' rate.
    pub fn min_rate(&self) -> MinRate {
        self.settings.min_rate
    }

    /// Sends one request and reads the whole response, within the policy and its limits and
    /// the total timeout. Redirects (at most 5) are followed here, each target checked like
    /// the first URL; a request that carries credentials ([`credentials::carried`]) follows
    /// them only within its own origin, and a redirect elsewhere is
    /// [`EgressError::CrossOrigin`]. 303 (and 301/302 after a `POST`) go on as `GET` without
    /// the body, as browsers do; 307 and 308 keep the method and body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: header::HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Fetched, EgressError> {
        let total = self.settings.total_timeout;
        let call = async {
            let (response, url) = self.follow(method, url, headers, body).await?;
            self.read_answer(response, url).await
        };
        tokio::time::timeout(total, call)
            .await
            .unwrap_or(Err(EgressError::Timeout(total)))
    }

    /// `GET url` whose answer is read by the caller as it streams ([`Opened::into_stream`]),
    /// with redirects followed as [`Self::send`] follows them. Each read must come within the
    /// total timeout; the caller bounds the whole (a pull stops reading once it has its items).
    pub async fn get_streamed(
        &self,
        url: &str,
        headers: header::HeaderMap,
    ) -> Result<Opened, EgressError> {
        let total = self.settings.total_timeout;
        let (response, url) =
            tokio::time::timeout(total, self.follow(Method::GET, url, headers, None))
                .await
                .unwrap_or(Err(EgressError::Timeout(total)))?;
        Ok(Opened {
            status: response.status(),
            headers: response.headers().clone(),
            url,
            response,
            read_timeout: total,
            min_rate: self.settings.min_rate,
        })
    }

    /// The most bytes a whole answer may have.
    pub fn max_response_bytes(&self) -> usize {
        self.settings.max_response_bytes
    }

    /// Sends a request and follows its redirects (see [`Self::send`]): the final response,
    /// its body unread, and the URL that gave it.
    async fn follow(
        &self,
        mut method: Method,
        url: &str,
        headers: header::HeaderMap,
        mut body: Option<Bytes>,
    ) -> Result<(reqwest::Response, Url), EgressError> {
        let mut url = self.check(url)?;
        let first = origin_of(&url);
        let credentialed = credentials::carried(&headers);
        for hop in 0..=MAX_REDIRECTS {
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let response = request.send().await.map_err(|err| self.explain(err))?;
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .filter(|_| {
                    matches!(
                        status,
                        StatusCode::MOVED_PERMANENTLY
                            | StatusCode::FOUND
                            | StatusCode::SEE_OTHER
                            | StatusCode::TEMPORARY_REDIRECT
                            | StatusCode::PERMANENT_REDIRECT
                    )
                });
            let Some(location) = location else {
                return Ok((response, url));
            };
            if hop == MAX_REDIRECTS {
                return Err(EgressError::TooManyRedirects);
            }
            let next = url.join(location).map_err(|err| EgressError::BadUrl {
                url: location.to_owned(),
                reason: err.to_string(),
            })?;
            check_url(&self.policy, &next)?;
            if credentialed && origin_of(&next) != first {
                let (scheme, host, port) = origin_of(&next);
                return Err(EgressError::CrossOrigin {
                    to: format!(
                        "{scheme}://{}{}",
                        host.unwrap_or_default(),
                        port.map(|p| format!(":{p}")).unwrap_or_default()
                    ),
                });
            }
            let to_get = status == StatusCode::SEE_OTHER
                || (method == Method::POST
                    && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND));
            if to_get && method != Method::HEAD {
                method = Method::GET;
                body = None;
            }
            url = next;
        }
        Err(EgressError::TooManyRedirects)
    }

    /// Sends one request whose body of `length` bytes streams from `body`, on the streaming
    /// client: no redirects, one limit on each read, and one on the whole call that grows with
    /// the body ([`MinRate::deadline_for`]): a peer that reads too slowly cannot hold the
    /// sender. The answer is read whole, within the size cap.
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
        let rate = self.settings.min_rate;
        let sending = async {
            let response = self
                .streaming
                .request(method, url.clone())
                .headers(headers)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .map_err(|err| self.explain(err))?;
            self.read_answer(response, url).await
        };
        tokio::time::timeout(rate.deadline_for(length), sending)
            .await
            .unwrap_or(Err(EgressError::TooSlow(rate.bytes_per_second)))
    }

    /// A response's body, read whole within the size cap.
    async fn read_answer(
        &self,
        mut response: reqwest::Response,
        url: Url,
    ) -> Result<Fetched, EgressError> {
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
            url,
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
