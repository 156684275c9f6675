//! Who is calling, as axum extractors: [`Bearer`] for an access token
//! (`Authorization: Bearer …`), [`MaybeSession`] for the web pages' session cookie, and
//! [`BearerOrSession`] for the one route that takes either (a download link opened from a
//! page). Each turns the request into the domain's [`Caller`]; a handler that names one cannot
//! run for a caller it did not authenticate.

use crate::{
    error::{ApiError, ErrorCode},
    ground::{AppState, HttpError, RequestId},
};
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use std::sync::Arc;
use taxbridge_domain::{accounts::Account, identity::Caller};

/// The web pages' session cookie.
pub const SESSION_COOKIE: &str = "tb_session";

/// The token of an `Authorization: Bearer …` header, if the request has one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A caller with a valid access token; `401` (JSON, `WWW-Authenticate: Bearer`) otherwise.
pub struct Bearer(pub Caller);

impl FromRequestParts<Arc<AppState>> for Bearer {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let request_id = RequestId(crate::ground::request_id(&parts.headers));
        let token = bearer_token(&parts.headers).ok_or_else(|| {
            HttpError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                "Send the access token as `Authorization: Bearer <accessToken>`.",
            )
            .with_header(header::WWW_AUTHENTICATE, "Bearer")
        })?;
        let context = crate::ground::audit_context(
            &parts.headers,
            crate::ground::client_of(&parts.extensions),
        );
        match state.services.identity.authenticate(&token).await {
            Ok(caller) => Ok(Self(caller.with_context(context))),
            Err(err) => Err(HttpError::from_api(ApiError::from(err), &request_id)),
        }
    }
}

/// A user signed in to the web pages: the account, its session's CSRF secret, and the caller
/// the domain's services take.
pub struct Session {
    pub account: Account,
    pub csrf: String,
    pub caller: Caller,
    /// The session cookie's value (signing out ends it).
    pub token: String,
}

/// The signed-in user of a request, if its session cookie names a live session. Never a
/// refusal: a page decides what a visitor without a session sees.
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<Arc<AppState>> for MaybeSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(Self(None));
        };
        let found = match state.services.sign_in.session(&token).await {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(error = %err, "could not read a web session; answering as signed out");
                None
            }
        };
        Ok(Self(found.map(|(account, csrf)| Session {
            caller: Caller::signed_in(account.clone()).with_context(crate::ground::audit_context(
                &parts.headers,
                crate::ground::client_of(&parts.extensions),
            )),
            account,
            csrf,
            token,
        })))
    }
}

/// A token's caller, or without an `Authorization` header a signed-in user's: only reads take
/// this (a download link on a page carries the session cookie); writes take [`Bearer`].
pub struct BearerOrSession(pub Caller);

impl FromRequestParts<Arc<AppState>> for BearerOrSession {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if bearer_token(&parts.headers).is_none() {
            let MaybeSession(session) = MaybeSession::from_request_parts(parts, state)
                .await
                .unwrap_or(MaybeSession(None));
            if let Some(session) = session {
                return Ok(Self(session.caller));
            }
        }
        let Bearer(caller) = Bearer::from_request_parts(parts, state).await?;
        Ok(Self(caller))
    }
}
