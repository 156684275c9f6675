//! `/sign-in` (email, then an emailed 6-digit code, then a session and the deep link) and
//! `/sign-out`. Unknown emails get the same page, and the same work, as known ones.

use crate::{
    forbidden, layout, page, random_token, read_form_twice, redirect, same_secret, secure,
    session_form, set_cookie, unavailable, OtherPage, CSRF_COOKIE,
};
use axum::{
    body::Body,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use maud::{html, Markup};
use serde::{de::IgnoredAny, Deserialize};
use std::{net::SocketAddr, sync::Arc};
use taxbridge_api::{
    auth::{cookie, MaybeSession, SESSION_COOKIE},
    ground::AppState,
};
use taxbridge_domain::{
    sign_in::{SignInError, SESSION_TTL_SECONDS},
    web::safe_landing,
};

#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    deep_link: Option<String>,
}

fn email_form(csrf: &str, deep_link: &str, alert: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in to Taxbridge" }
                @if let Some(alert) = alert { p.alert role="alert" { (alert) } }
                form method="post" action="/sign-in" {
                    label for="email" { "Email" }
                    input #email name="email" type="email" autocomplete="email" required autofocus;
                    input type="hidden" name="csrf_token" value=(csrf);
                    input type="hidden" name="deep_link" value=(deep_link);
                    button type="submit" { "Send me a code" }
                }
                p.hint { "We email you a 6-digit code; no password needed." }
            }
        },
    )
}

fn code_form(email: &str, csrf: &str, deep_link: &str, note: Markup) -> Markup {
    layout(
        "Enter your code",
        None,
        html! {
            section.card.narrow {
                h1 { "Enter your code" }
                (note)
                form method="post" action="/sign-in/code" {
                    input type="hidden" name="email" value=(email);
                    label for="code" { "6-digit code" }
                    input #code name="code" inputmode="numeric" autocomplete="one-time-code"
                        pattern="[0-9]{6}" maxlength="6" required autofocus;
                    input type="hidden" name="csrf_token" value=(csrf);
                    input type="hidden" name="deep_link" value=(deep_link);
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// `GET /sign-in?deep_link=…`: the email form, or straight on when already signed in.
pub(crate) async fn form(
    State(state): State<Arc<AppState>>,
    MaybeSession(session): MaybeSession,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Response {
    let landing = safe_landing(query.deep_link.as_deref());
    if session.is_some() {
        return redirect(&landing);
    }
    let csrf = cookie(&headers, CSRF_COOKIE)
        .filter(|c| c.len() == 43)
        .unwrap_or_else(random_token);
    let mut response = page(StatusCode::OK, email_form(&csrf, &landing, None));
    set_cookie(
        &mut response,
        &format!(
            "{CSRF_COOKIE}={csrf}; Path=/sign-in; HttpOnly; SameSite=Strict; Max-Age=3600{}",
            secure(&state)
        ),
    );
    response
}

/// The fields both sign-in forms send.
#[derive(Deserialize)]
pub(crate) struct SignInFields {
    email: String,
    csrf_token: String,
    deep_link: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CodeField {
    code: String,
}

/// What both sign-in forms check first: the CSRF token (403), then the attempt limits (429).
/// The form, `T` (its other fields), the normalised email and the landing path.
async fn admitted<T: serde::de::DeserializeOwned>(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(SignInFields, T, String, String), OtherPage> {
    let (form, rest): (SignInFields, T) = read_form_twice(state, body).await?;
    if !cookie(headers, CSRF_COOKIE).is_some_and(|kept| same_secret(&kept, &form.csrf_token)) {
        return Err(forbidden().into());
    }
    let email = form.email.trim().to_ascii_lowercase();
    if let Err(wait) = state.web_limits.attempt(peer.ip(), &email) {
        return Err(crate::too_many(wait).into());
    }
    let landing = safe_landing(form.deep_link.as_deref());
    Ok((form, rest, email, landing))
}

/// `POST /sign-in`: sends a code (if the email is an account's) and shows the code form; the
/// answer is the same for every email.
pub(crate) async fn send_code(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtherPage> {
    let (form, _, email, landing): (_, IgnoredAny, _, _) =
        admitted(&state, peer, &headers, body).await?;
    Ok(match state.services.sign_in.send_code(&email).await {
        Ok(()) => {
            let note = html! {
                p { "If " strong { (email) } " has a Taxbridge account, a 6-digit code is on its way. It works for 10 minutes." }
            };
            page(
                StatusCode::OK,
                code_form(&email, &form.csrf_token, &landing, note),
            )
        }
        Err(SignInError::BadEmail(_)) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            email_form(
                &form.csrf_token,
                &landing,
                Some("That is not an email address; check it and try again."),
            ),
        ),
        Err(err) => unavailable("send a code", &err),
    })
}

/// `POST /sign-in/code`: a right code begins a session (a new token: no session id chosen
/// before sign-in survives it) and goes on to the deep link.
pub(crate) async fn check_code(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OtherPage> {
    let (form, CodeField { code }, email, landing) = admitted(&state, peer, &headers, body).await?;
    let context = taxbridge_api::ground::audit_context(&headers, Some(peer.ip()));
    Ok(
        match state.services.sign_in.verify(&email, &code, &context).await {
            Ok(session) => {
                let mut response = redirect(&landing);
                set_cookie(
                &mut response,
                &format!(
                    "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL_SECONDS}{}",
                    session.token,
                    secure(&state)
                ),
            );
                set_cookie(
                    &mut response,
                    &format!("{CSRF_COOKIE}=; Path=/sign-in; HttpOnly; SameSite=Strict; Max-Age=0"),
                );
                response
            }
            Err(SignInError::WrongCode(left)) => {
                let note = html! { p.alert role="alert" { "That code is not right; " (left) " tries left." } };
                page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    code_form(&email, &form.csrf_token, &landing, note),
                )
            }
            Err(SignInError::NoCode | SignInError::BadEmail(_)) => page(
                StatusCode::UNPROCESSABLE_ENTITY,
                email_form(
                    &form.csrf_token,
                    &landing,
                    Some("That code has expired or was tried too often; ask for a new one."),
                ),
            ),
            Err(err) => unavailable("check the code", &err),
        },
    )
}

/// `POST /sign-out`: ends the session (with the session's own CSRF token).
pub(crate) async fn sign_out(
    State(state): State<Arc<AppState>>,
    session: MaybeSession,
    body: Body,
) -> Result<Response, OtherPage> {
    let (session, _): (_, IgnoredAny) = session_form(&state, session, "/w/redirect/", body).await?;
    let _ = state
        .services
        .sign_in
        .sign_out(&session.token, &session.account, session.caller.context())
        .await;
    let mut response = redirect("/sign-in");
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            secure(&state)
        ),
    );
    Ok(response)
}
