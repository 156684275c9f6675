//! Taxbridge's web pages (spec §8), server-rendered at the API's origin, on the same ground
//! as the API (`taxbridge_api::ground`: the shared state, the request id) and composed into
//! one router by the binary ([`routes`]):
//!
//! - [`sign_in`] serves `/sign-in` (email, then an emailed code), `/sign-out`.
//! - [`workspace`] serves `/w/redirect/…`, the dashboard `/w/{slug}`, a work `/w/{slug}/works/{id}`.
//! - [`connect`] serves `/w/{slug}/connect/tax-software`.
//! - [`developer`] serves `/settings/developer` (API keys and their usage).
//!
//! Templates are [`maud`] macros compiled into the binary, which escape every value they
//! insert. Forms are plain HTML POSTs, so any HTTP client can drive them. Before sign-in the
//! CSRF token is a cookie the form repeats (double submit); after it, the session's own
//! secret. A POST without the right one is 403. The session cookie is `HttpOnly`,
//! `SameSite=Lax`, and `Secure` when the public base URL is https. Every page sends the
//! security headers: a CSP that allows scripts and styles from this origin only (no inline
//! script), and no framing. A workspace or object out of the user's reach is 404, like the API.

mod activity;
mod connect;
mod developer;
mod sign_in;
mod workspace;

use axum::{
    body::Body,
    extract::{FromRequestParts, Path},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use http_body_util::{BodyExt, Limited};
use maud::{html, Markup, DOCTYPE};
use std::sync::Arc;
use taxbridge_api::{
    auth::{MaybeSession, Session},
    error::ApiError,
    ground::{security_headers, AppState},
};
use taxbridge_domain::{
    lists::{Page, SortField},
    time::Timestamp,
    workspaces::{WorkspaceAccess, WorkspaceFilters},
};

/// The pages' routes, for the binary to compose beside the API's.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/assets/{name}", get(asset))
        .route("/sign-in", get(sign_in::form).post(sign_in::send_code))
        .route("/sign-in/code", post(sign_in::check_code))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/w/redirect/", get(workspace::choose))
        .route("/w/redirect/{*rest}", get(workspace::choose))
        .route("/w/{slug}", get(workspace::dashboard))
        .route("/w/{slug}/works/{work_id}", get(workspace::work))
        .route("/w/{slug}/activity", get(activity::activity))
        .route(
            "/w/{slug}/connect/tax-software",
            get(connect::form).post(connect::connect),
        )
        .route("/settings/developer", get(developer::settings))
        .route("/settings/developer/keys", post(developer::generate))
        .route(
            "/settings/developer/keys/{id}/revoke",
            post(developer::revoke),
        )
}

pub(crate) const CSRF_COOKIE: &str = "tb_csrf";
/// The pages' policy: scripts and styles from this origin only, no inline script.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The one stylesheet and the one small script (a copy button), compiled in.
const STYLESHEET: &str = include_str!("../assets/site.css");
const SCRIPT: &str = include_str!("../assets/site.js");

/// `GET /assets/site.css` and `/assets/site.js`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let (media, body) = match name.as_str() {
        "site.css" => ("text/css; charset=utf-8", STYLESHEET),
        "site.js" => ("text/javascript; charset=utf-8", SCRIPT),
        _ => return not_found(),
    };
    (
        [
            (header::CONTENT_TYPE, media),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A page answered instead of the one asked for (a redirect to sign-in, 403, 404, a form
/// refused): handlers return `Result<Response, OtherPage>` and stop at the first with `?`.
pub(crate) struct OtherPage(Box<Response>);

impl From<Response> for OtherPage {
    fn from(response: Response) -> Self {
        OtherPage(Box::new(response))
    }
}

impl IntoResponse for OtherPage {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// Whether a form carried `session`'s CSRF token.
pub(crate) fn csrf_ok(session: &Session, sent: &str) -> bool {
    same_secret(&session.csrf, sent)
}

/// `; Secure` when the public base URL is https.
pub(crate) fn secure(state: &AppState) -> &'static str {
    if state.services.public_base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

pub(crate) fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A page's signed-in user; without a live session the page answers a redirect to sign-in
/// that comes back to the page asked for.
pub(crate) struct SignedIn(pub Session);

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = OtherPage;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let MaybeSession(session) = MaybeSession::from_request_parts(parts, state)
            .await
            .unwrap_or(MaybeSession(None));
        match session {
            Some(session) => Ok(Self(session)),
            None => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map_or(parts.uri.path(), |p| p.as_str());
                Err(to_sign_in(here))
            }
        }
    }
}

/// A redirect to sign-in that comes back to `here`.
pub(crate) fn to_sign_in(here: &str) -> OtherPage {
    redirect(&format!("/sign-in?deep_link={}", url_encode(here))).into()
}

/// The workspace with this slug, if the user reaches it; a 404 page otherwise (the same for
/// a missing workspace and another firm's).
pub(crate) async fn workspace_by_slug(
    state: &AppState,
    session: &Session,
    slug: &str,
) -> Result<WorkspaceAccess, OtherPage> {
    let filters = WorkspaceFilters {
        ids: None,
        slugs: Some(vec![slug.to_owned()]),
    };
    let one = Page {
        limit: 1,
        offset: 0,
        sort: SortField::Name,
        descending: false,
    };
    let workspaces = &state.services.workspaces;
    let found = workspaces
        .list_for(&session.account, &filters, one)
        .await
        .ok()
        .and_then(|found| found.into_iter().next());
    let Some(workspace) = found else {
        return Err(not_found().into());
    };
    workspaces
        .reach_as(&session.account, workspace.id.as_str())
        .await
        .map_err(|_| not_found().into())
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf_token: String,
}

/// A signed-in user's form POST from the page `here`: the fields, read within limits, once the
/// session is there (sign-in first, back to `here`, otherwise), the form carries its CSRF
/// token (403 otherwise) and the account is within its pace of form posts (429 otherwise).
pub(crate) async fn session_form<T: serde::de::DeserializeOwned>(
    state: &AppState,
    MaybeSession(session): MaybeSession,
    here: &str,
    body: Body,
) -> Result<(Session, T), OtherPage> {
    let (form, csrf): (T, CsrfField) = read_form_twice(state, body).await?;
    let Some(session) = session else {
        return Err(to_sign_in(here));
    };
    if !csrf_ok(&session, &csrf.csrf_token) {
        return Err(forbidden().into());
    }
    if let Err(wait) = state.web_limits.form_post(session.account.id.as_str()) {
        return Err(too_many(wait).into());
    }
    Ok((session, form))
}

/// Every page's frame: the header with the user's links, then `body`.
pub(crate) fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Taxbridge" }
                link rel="stylesheet" href="/assets/site.css";
                script src="/assets/site.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/w/redirect/" { "Taxbridge" }
                    @if let Some(session) = session {
                        nav aria-label="Account" {
                            a href="/w/redirect/" { "Workspaces" }
                            a href="/settings/developer" { "Developer Settings" }
                            form.inline method="post" action="/sign-out" {
                                input type="hidden" name="csrf_token" value=(session.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page response with the security headers; never cached (pages hold per-user data).
pub(crate) fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response();
    security_headers(&mut response, POLICY);
    response
}

/// A short page that says one thing: a heading and a sentence.
pub(crate) fn notice(status: StatusCode, title: &str, text: &str) -> Response {
    page(
        status,
        layout(title, None, html! { h1 { (title) } p { (text) } }),
    )
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// 429: too many tries; wait this many seconds.
pub(crate) fn too_many(wait: u64) -> Response {
    notice(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many tries",
        &format!("Wait {wait} seconds, then try again."),
    )
}

pub(crate) fn forbidden() -> Response {
    notice(
        StatusCode::FORBIDDEN,
        "Refused",
        "This form was not sent from its page (its CSRF token is missing or wrong). Open the page again and send it from there.",
    )
}

pub(crate) fn not_found() -> Response {
    notice(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page, or it is not one you can reach.",
    )
}

/// How a page answers a domain error: the one mapping every page uses, through the API's own
/// classification ([`ApiError`]'s `From` impls), so a page and the GraphQL endpoint never
/// disagree about what an error is.
pub(crate) enum PageError {
    /// Missing or out of reach: the 404 page.
    NotFound,
    /// The user's to fix or not allowed: the page again, with this status and message.
    Refused(StatusCode, String),
    /// Taxbridge's or a platform's failure, logged: the 503 page.
    Unavailable(Response),
}

impl PageError {
    /// `err`, met while trying to `doing` (for the 503 page: "connect the software").
    pub(crate) fn of(err: impl Into<ApiError>, doing: &str) -> Self {
        match err.into() {
            ApiError::NotFound(_) => Self::NotFound,
            ApiError::Forbidden(message) | ApiError::Unauthenticated(message) => {
                Self::Refused(StatusCode::FORBIDDEN, message)
            }
            ApiError::BadUserInput { message, .. } | ApiError::Conflict(message) => {
                Self::Refused(StatusCode::UNPROCESSABLE_ENTITY, message)
            }
            ApiError::RateLimited {
                retry_after_seconds,
            } => Self::Unavailable(too_many(retry_after_seconds)),
            ApiError::Upstream(message) => Self::Unavailable(unavailable(doing, &message)),
            ApiError::Unavailable => {
                Self::Unavailable(unavailable(doing, &"the database cannot be reached"))
            }
            ApiError::Internal(cause) => Self::Unavailable(unavailable(doing, &cause)),
        }
    }

    /// The page for this error, where the page has no form to show it on.
    pub(crate) fn page(self) -> Response {
        match self {
            Self::NotFound => not_found(),
            Self::Refused(status, message) => notice(status, "Refused", &sentence(&message)),
            Self::Unavailable(response) => response,
        }
    }
}

/// `result.or_unavailable("list the connections")?`: a store failure as the 503 page, logged.
pub(crate) trait OrUnavailable<T> {
    fn or_unavailable(self, doing: &str) -> Result<T, OtherPage>;
}

impl<T, E: std::fmt::Display> OrUnavailable<T> for Result<T, E> {
    fn or_unavailable(self, doing: &str) -> Result<T, OtherPage> {
        self.map_err(|err| unavailable(doing, &err).into())
    }
}

pub(crate) fn unavailable(doing: &str, err: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %err, "web: could not {doing}");
    notice(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        &format!("Taxbridge could not {doing} just now; try again in a minute."),
    )
}

pub(crate) fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The most a page's form may send: a few short fields.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A form's fields as two views (say, what a handler asks for and the CSRF token), read
/// once, within [`MAX_FORM_BYTES`] and the server's body deadline (so a slow
/// or endless body costs a connection for seconds, not for good); a clear page otherwise.
pub(crate) async fn read_form_twice<A, B>(state: &AppState, body: Body) -> Result<(A, B), OtherPage>
where
    A: serde::de::DeserializeOwned,
    B: serde::de::DeserializeOwned,
{
    let bytes = form_bytes(state, body).await?;
    Ok((parse_form(&bytes)?, parse_form(&bytes)?))
}

async fn form_bytes(state: &AppState, body: Body) -> Result<bytes::Bytes, OtherPage> {
    let refused =
        |status: StatusCode, text: &str| OtherPage::from(notice(status, "Not sent", text));
    let collected = tokio::time::timeout(
        state.body_read_timeout,
        Limited::new(body, MAX_FORM_BYTES).collect(),
    )
    .await;
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form sent more than a form of this page holds; open the page again and send it from there.",
        )),
        Err(_) => Err(refused(
            StatusCode::REQUEST_TIMEOUT,
            "The form did not arrive in time; send it again.",
        )),
    }
}

fn parse_form<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, OtherPage> {
    serde_urlencoded::from_bytes(bytes).map_err(|_| {
        OtherPage::from(notice(
            StatusCode::BAD_REQUEST,
            "Not sent",
            "The form is missing a field; open the page again and send it from there.",
        ))
    })
}

pub(crate) use taxbridge_domain::web::url_encode;

/// A time as a page shows it: `2026-11-26 04:16 UTC`.
pub(crate) fn when(at: Timestamp) -> String {
    let text = at.to_string();
    match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(minute)) => format!("{day} {minute} UTC"),
        _ => text,
    }
}

/// A byte count in words: `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A detail as a sentence: capitalised, with a full stop.
pub(crate) fn sentence(text: &str) -> String {
    let mut chars = text.trim().chars();
    let mut out: String = chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A status as a small labelled badge, coloured by how it stands.
pub(crate) fn badge(status: &str) -> Markup {
    let tone = match status {
        "active" | "completed" | "ready" | "success" | "usable" => "good",
        "failed" | "error" | "needs_attention" | "revoked" | "expired" => "bad",
        "pending" | "importing" | "initial" | "uploading" => "busy",
        _ => "quiet",
    };
    html! { span class={ "badge " (tone) } { (status.replace('_', " ")) } }
}
