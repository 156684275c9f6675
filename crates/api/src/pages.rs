//! The web pages' first slice (spec §8): sign-in by emailed code, the session cookie, sign-out,
//! and the pages a deep link lands on (`/w/redirect/…` and a workspace's `/w/{slug}`).
//!
//! Forms are plain HTML POSTs (`email`, `code`, hidden `csrf_token` and `deep_link`), so any
//! HTTP client can drive them. Before sign-in the CSRF token is a cookie the form repeats
//! (double submit); after it, the session's own secret. A POST without the right one is 403.
//! The session cookie is `HttpOnly`, `SameSite=Lax`, and `Secure` when the public base URL is
//! https. Every page sends the security headers (a CSP without inline script, no framing).
//! Pages are small strings with every value escaped ([`esc`]); a template crate earns its
//! place when there are more of them.

use crate::{graphiql::security_headers, http::AppState};
use axum::{
    body::Body,
    extract::{ConnectInfo, Path, Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use std::{net::SocketAddr, sync::Arc};
use taxbridge_domain::{
    accounts::Account,
    lists::Page,
    sign_in::{SignInError, SESSION_TTL_SECONDS},
    web::safe_landing,
    workspaces::WorkspaceFilters,
};

const SESSION_COOKIE: &str = "tb_session";
const CSRF_COOKIE: &str = "tb_csrf";
/// The pages' policy: no script at all yet, styles from this origin.
const POLICY: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// HTML-escapes text for an element or a quoted attribute.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn secure(state: &AppState) -> &'static str {
    if state.services.public_base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Taxbridge</title></head><body><main>{body}</main></body></html>\n",
        esc(title)
    );
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    security_headers(&mut response, POLICY);
    response
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn forbidden() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Refused",
        "<h1>Refused</h1><p>This form was not sent from its page (its CSRF token is missing or wrong). Open the page again and send it from there.</p>",
    )
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<h1>Not found</h1><p>There is no such page, or it is not one you can reach.</p>",
    )
}

fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The signed-in account and its session's CSRF secret.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(Account, String)> {
    let token = cookie(headers, SESSION_COOKIE)?;
    state.services.sign_in.session(token).await.ok().flatten()
}

#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    deep_link: Option<String>,
}

fn email_form(csrf: &str, deep_link: &str, note: &str) -> String {
    format!(
        "<h1>Sign in to Taxbridge</h1>{note}\
         <form method=\"post\" action=\"/sign-in\">\
         <label for=\"email\">Email</label> \
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" required> \
         <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
         <input type=\"hidden\" name=\"deep_link\" value=\"{}\">\
         <button type=\"submit\">Send me a code</button></form>",
        esc(csrf),
        esc(deep_link)
    )
}

fn code_form(email: &str, csrf: &str, deep_link: &str, note: &str) -> String {
    format!(
        "<h1>Enter your code</h1>{note}\
         <form method=\"post\" action=\"/sign-in/code\">\
         <input type=\"hidden\" name=\"email\" value=\"{}\">\
         <label for=\"code\">6-digit code</label> \
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" required> \
         <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
         <input type=\"hidden\" name=\"deep_link\" value=\"{}\">\
         <button type=\"submit\">Sign in</button></form>",
        esc(email),
        esc(csrf),
        esc(deep_link)
    )
}

/// `GET /sign-in?deep_link=…`: the email form, or straight on when already signed in.
pub(crate) async fn sign_in_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Response {
    let landing = safe_landing(query.deep_link.as_deref());
    if signed_in(&state, &headers).await.is_some() {
        return redirect(&landing);
    }
    let csrf = cookie(&headers, CSRF_COOKIE)
        .filter(|c| c.len() == 43)
        .map_or_else(random_token, str::to_owned);
    let mut response = page(StatusCode::OK, "Sign in", &email_form(&csrf, &landing, ""));
    let set = format!(
        "{CSRF_COOKIE}={csrf}; Path=/sign-in; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        secure(&state)
    );
    if let Ok(value) = HeaderValue::from_str(&set) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
pub(crate) struct EmailForm {
    email: String,
    csrf_token: String,
    deep_link: Option<String>,
}

fn pre_session_csrf_ok(headers: &HeaderMap, sent: &str) -> bool {
    cookie(headers, CSRF_COOKIE).is_some_and(|kept| same_secret(kept, sent))
}

/// The most a page's form may send: a few short fields.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A form's fields, read within [`MAX_FORM_BYTES`] and the server's body deadline (so a slow
/// or endless body costs a connection for seconds, not for good); a clear page otherwise.
async fn read_form<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Body,
) -> Result<T, Box<Response>> {
    let refused = |status: StatusCode, text: &str| {
        Box::new(page(
            status,
            "Not sent",
            &format!("<h1>Not sent</h1><p>{text}</p>"),
        ))
    };
    let collected = tokio::time::timeout(
        state.body_read_timeout,
        Limited::new(body, MAX_FORM_BYTES).collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return Err(refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form sent more than a form of this page holds; open the page again and send it from there.",
            ))
        }
        Err(_) => {
            return Err(refused(
                StatusCode::REQUEST_TIMEOUT,
                "The form did not arrive in time; send it again.",
            ))
        }
    };
    serde_urlencoded::from_bytes(&bytes).map_err(|_| {
        refused(
            StatusCode::BAD_REQUEST,
            "The form is missing a field; open the page again and send it from there.",
        )
    })
}

/// What both sign-in forms check first: the CSRF token (403), then the attempt limits (429).
/// The normalised email and the landing path, or the refusal to answer.
fn admit(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    csrf_token: &str,
    email: &str,
    deep_link: Option<&str>,
) -> Result<(String, String), Box<Response>> {
    if !pre_session_csrf_ok(headers, csrf_token) {
        return Err(Box::new(forbidden()));
    }
    let email = email.trim().to_ascii_lowercase();
    if let Err(wait) = state.sign_in_limits.attempt(peer.ip(), &email) {
        return Err(Box::new(page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many tries",
            &format!("<h1>Too many tries</h1><p>Wait {wait} seconds, then try again.</p>"),
        )));
    }
    Ok((email, safe_landing(deep_link)))
}

/// `POST /sign-in`: sends a code (if the email is an account's) and shows the code form; the
/// answer is the same for every email.
pub(crate) async fn send_code(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form: EmailForm = match read_form(&state, body).await {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let (email, landing) = match admit(
        &state,
        peer,
        &headers,
        &form.csrf_token,
        &form.email,
        form.deep_link.as_deref(),
    ) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    match state.services.sign_in.send_code(&email).await {
        Ok(()) => page(
            StatusCode::OK,
            "Enter your code",
            &code_form(
                &email,
                &form.csrf_token,
                &landing,
                &format!(
                    "<p>If {} has a Taxbridge account, a 6-digit code is on its way. It works for 10 minutes.</p>",
                    esc(&email)
                ),
            ),
        ),
        Err(SignInError::BadEmail(_)) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sign in",
            &email_form(
                &form.csrf_token,
                &landing,
                "<p role=\"alert\">That is not an email address; check it and try again.</p>",
            ),
        ),
        Err(err) => {
            tracing::error!(error = %err, "sign-in: could not send a code");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<h1>Try again</h1><p>Taxbridge could not send a code just now; try again in a minute.</p>",
            )
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    email: String,
    code: String,
    csrf_token: String,
    deep_link: Option<String>,
}

/// `POST /sign-in/code`: a right code begins a session (a new token: no session id chosen
/// before sign-in survives it) and goes on to the deep link.
pub(crate) async fn check_code(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form: CodeForm = match read_form(&state, body).await {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let (email, landing) = match admit(
        &state,
        peer,
        &headers,
        &form.csrf_token,
        &form.email,
        form.deep_link.as_deref(),
    ) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    match state.services.sign_in.verify(&email, &form.code).await {
        Ok(session) => {
            let mut response = redirect(&landing);
            let cookies = [
                format!(
                    "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL_SECONDS}{}",
                    session.token,
                    secure(&state)
                ),
                format!("{CSRF_COOKIE}=; Path=/sign-in; HttpOnly; SameSite=Strict; Max-Age=0"),
            ];
            for set in cookies {
                if let Ok(value) = HeaderValue::from_str(&set) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(SignInError::WrongCode(left)) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your code",
            &code_form(
                &email,
                &form.csrf_token,
                &landing,
                &format!("<p role=\"alert\">That code is not right; {left} tries left.</p>"),
            ),
        ),
        Err(SignInError::NoCode | SignInError::BadEmail(_)) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sign in",
            &email_form(
                &form.csrf_token,
                &landing,
                "<p role=\"alert\">That code has expired or was tried too often; ask for a new one.</p>",
            ),
        ),
        Err(err) => {
            tracing::error!(error = %err, "sign-in: could not check a code");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<h1>Try again</h1><p>Taxbridge could not check the code just now; try again in a minute.</p>",
            )
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct SignOutForm {
    csrf_token: String,
}

/// `POST /sign-out`: ends the session (with the session's own CSRF token).
pub(crate) async fn sign_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form: SignOutForm = match read_form(&state, body).await {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let Some((_, csrf)) = signed_in(&state, &headers).await else {
        return redirect("/sign-in");
    };
    if !same_secret(&csrf, &form.csrf_token) {
        return forbidden();
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let _ = state.services.sign_in.sign_out(token).await;
    }
    let mut response = redirect("/sign-in");
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        secure(&state)
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn sign_out_form(csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/sign-out\"><input type=\"hidden\" name=\"csrf_token\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
        esc(csrf)
    )
}

/// `GET /w/redirect/{*rest}`: the signed-in user's workspace with `rest`, or a chooser.
pub(crate) async fn workspace_redirect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    rest: Option<Path<String>>,
) -> Response {
    let rest = rest.map(|Path(r)| r).unwrap_or_default();
    let here = format!("/w/redirect/{rest}");
    let Some((account, csrf)) = signed_in(&state, &headers).await else {
        return redirect(&format!("/sign-in?deep_link={}", url_encode(&here)));
    };
    let page_of = Page::parse(Some(50), None, None, "displayName").unwrap_or(Page {
        limit: 50,
        offset: 0,
        sort: taxbridge_domain::lists::SortField::Name,
        descending: false,
    });
    let workspaces = match state
        .services
        .workspaces
        .list_for(&account, &WorkspaceFilters::default(), page_of)
        .await
    {
        Ok(found) => found,
        Err(err) => {
            tracing::error!(error = %err, "web: could not list workspaces");
            return not_found();
        }
    };
    let suffix = if rest.is_empty() {
        String::new()
    } else {
        format!("/{rest}")
    };
    if let [only] = workspaces.as_slice() {
        return redirect(&safe_landing(Some(&format!("/w/{}{suffix}", only.slug))));
    }
    let items: String = workspaces
        .iter()
        .map(|w| {
            format!(
                "<li><a href=\"{}\">{}</a></li>",
                esc(&safe_landing(Some(&format!("/w/{}{suffix}", w.slug)))),
                esc(&w.display_name)
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Choose a workspace",
        &format!(
            "<h1>Choose a workspace</h1><ul>{items}</ul>{}{}",
            if workspaces.is_empty() {
                "<p>You are not a member of any workspace yet.</p>"
            } else {
                ""
            },
            sign_out_form(&csrf)
        ),
    )
}

/// `GET /w/{slug}`: the workspace's dashboard (its connections so far); 404 for a workspace
/// out of reach, like the API.
pub(crate) async fn workspace_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> Response {
    let Some((account, csrf)) = signed_in(&state, &headers).await else {
        return redirect(&format!(
            "/sign-in?deep_link={}",
            url_encode(&format!("/w/{slug}"))
        ));
    };
    let filters = WorkspaceFilters {
        ids: None,
        slugs: Some(vec![slug.clone()]),
    };
    let page_of = Page {
        limit: 1,
        offset: 0,
        sort: taxbridge_domain::lists::SortField::Name,
        descending: false,
    };
    let services = &state.services;
    let Ok(found) = services
        .workspaces
        .list_for(&account, &filters, page_of)
        .await
    else {
        return not_found();
    };
    let Some(workspace) = found.into_iter().next() else {
        return not_found();
    };
    let Ok(access) = services
        .workspaces
        .reach_as(&account, workspace.id.as_str())
        .await
    else {
        return not_found();
    };
    let connections = services
        .connections
        .list(
            &access,
            &Default::default(),
            Page {
                limit: 50,
                offset: 0,
                sort: taxbridge_domain::lists::SortField::Name,
                descending: false,
            },
        )
        .await
        .unwrap_or_default();
    let rows: String = connections
        .iter()
        .map(|view| {
            let c = &view.connection;
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&view.provider.name),
                esc(c.display_name.as_deref().unwrap_or("")),
                esc(c.status.as_str()),
                esc(c.status.action().unwrap_or("")),
            )
        })
        .collect();
    page(
        StatusCode::OK,
        &workspace.display_name,
        &format!(
            "<h1>{}</h1><h2>Connections</h2><table><thead><tr><th>Provider</th><th>Name</th><th>Status</th><th>Next step</th></tr></thead><tbody>{rows}</tbody></table>{}",
            esc(&workspace.display_name),
            sign_out_form(&csrf)
        ),
    )
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
