//! `/w/{slug}/connect/tax-software`: a firm user picks drake, ultratax or lacerte, enters the
//! fields the catalog declares for it, and the page starts and collects the connection (the
//! same two steps as the API), then says how it went in words. A failed try can be sent
//! again with corrected fields: it collects the same connection rather than starting another.

use crate::{
    badge, layout, page, sentence, session_form, unavailable, workspace_by_slug, OtherPage,
    PageError, SignedIn,
};
use axum::{
    body::Body,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use maud::{html, Markup};
use std::{collections::HashMap, sync::Arc};
use taxbridge_api::{
    auth::{MaybeSession, Session},
    ground::AppState,
};
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    connections::{ConnectionStatus, ConnectionView},
    providers::Provider,
    workspaces::WorkspaceAccess,
};

const CATEGORY: &str = "tax_software";

/// What the page says above the forms: how the last try went.
enum LastTry<'a> {
    None,
    Connected(&'a ConnectionView),
    Failed(&'a ConnectionView),
    Refused(String),
}

fn label_of(field: &str) -> String {
    match field {
        "baseUrl" => "Server address (baseUrl)".to_owned(),
        "apiKey" => "API key".to_owned(),
        "accountNumber" => "Account number".to_owned(),
        "securityToken" => "Security token".to_owned(),
        other => other.to_owned(),
    }
}

fn provider_form(
    slug: &str,
    csrf: &str,
    provider: &Provider,
    retry: Option<&ConnectionView>,
    open: bool,
) -> Markup {
    let retry = retry.filter(|v| v.provider.key == provider.key);
    let base_url = retry
        .and_then(|v| v.connection.settings.get("baseUrl"))
        .and_then(|v| v.as_str())
        .or(provider.base_url.as_deref())
        .unwrap_or("");
    html! {
        details.card open[open || retry.is_some()] {
            summary { h2 { (provider.name) } }
            form method="post" action={ "/w/" (slug) "/connect/tax-software" } {
                input type="hidden" name="provider" value=(provider.key);
                input type="hidden" name="csrf_token" value=(csrf);
                @if let Some(view) = retry {
                    input type="hidden" name="connection_id" value=(view.connection.id);
                }
                @let id = |field: &str| format!("{}-{field}", provider.key);
                label for=(id("baseUrl")) { (label_of("baseUrl")) }
                input id=(id("baseUrl")) name="baseUrl" type="url" value=(base_url) required
                    placeholder="https://" autocomplete="url";
                @for field in &provider.inputs {
                    @if field.name != "baseUrl" {
                        label for=(id(&field.name)) { (label_of(&field.name)) }
                        @if field.secret {
                            input id=(id(&field.name)) name=(field.name) type="password"
                                autocomplete="off" required;
                        } @else {
                            input id=(id(&field.name)) name=(field.name) type="text"
                                value=(retry.and_then(|v| v.connection.settings.get(&field.name)).and_then(|v| v.as_str()).unwrap_or(""));
                        }
                    }
                }
                button type="submit" { "Connect " (provider.name) }
            }
        }
    }
}

fn connect_page(
    session: &Session,
    access: &WorkspaceAccess,
    providers: &[Provider],
    outcome: LastTry<'_>,
) -> Markup {
    let slug = &access.workspace().slug;
    let retry = match &outcome {
        LastTry::Failed(view) => Some(*view),
        _ => None,
    };
    let body = html! {
        p.crumbs { a href={ "/w/" (slug) } { (access.workspace().display_name) } " › connect tax software" }
        h1 { "Connect tax software" }
        @match &outcome {
            LastTry::None => {
                p { "Pick your tax software and enter what it gives you for API access. Taxbridge checks the details with one call to it before saving the connection as active; secrets are stored encrypted and never shown again." }
            }
            LastTry::Connected(view) => {
                div.outcome.good role="status" {
                    h2 { (view.provider.name) " is connected " (badge(view.connection.status.as_str())) }
                    p { "Taxbridge reached it"
                        @if let Some(name) = &view.connection.display_name { " as " strong { (name) } }
                        ". It now shows on the workspace's dashboard." }
                    p { a.button href={ "/w/" (slug) } { "Back to the dashboard" } }
                }
            }
            LastTry::Failed(view) => {
                div.outcome.bad role="alert" {
                    h2 { (view.provider.name) " did not connect " (badge(view.connection.status.as_str())) }
                    p { (sentence(view.connection.status_detail.as_deref().unwrap_or("the check of the details failed"))) }
                    p { "Check the details below and send them again; the secret fields need entering again." }
                }
            }
            LastTry::Refused(message) => {
                div.outcome.bad role="alert" { h2 { "Not connected" } p { (message) } }
            }
        }
        @for provider in providers {
            (provider_form(slug, &session.csrf, provider, retry, providers.len() == 1))
        }
    };
    layout("Connect tax software", Some(session), body)
}

async fn tax_software(state: &AppState) -> Result<Vec<Provider>, OtherPage> {
    state
        .services
        .connections
        .providers(Some(&[CATEGORY.to_owned()]))
        .await
        .map_err(|err| unavailable("read the provider catalog", &err).into())
}

/// `GET /w/{slug}/connect/tax-software`.
pub(crate) async fn form(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Path(slug): Path<String>,
) -> Result<Response, OtherPage> {
    let access = workspace_by_slug(&state, &session, &slug).await?;
    let providers = tax_software(&state).await?;
    Ok(page(
        StatusCode::OK,
        connect_page(&session, &access, &providers, LastTry::None),
    ))
}

/// `POST /w/{slug}/connect/tax-software`: `provider`, `csrf_token`, the provider's declared
/// fields and `baseUrl`; `connection_id` to try a failed connection again.
pub(crate) async fn connect(
    State(state): State<Arc<AppState>>,
    session: MaybeSession,
    Path(slug): Path<String>,
    body: Body,
) -> Result<Response, OtherPage> {
    let here = format!("/w/{slug}/connect/tax-software");
    let (session, form): (_, HashMap<String, String>) =
        session_form(&state, session, &here, body).await?;
    let access = workspace_by_slug(&state, &session, &slug).await?;
    let providers = tax_software(&state).await?;
    let refused = |status: StatusCode, message: String| {
        page(
            status,
            connect_page(&session, &access, &providers, LastTry::Refused(message)),
        )
    };
    let key = form.get("provider").map_or("", String::as_str);
    let Some(provider) = providers.iter().find(|p| p.key == key) else {
        return Ok(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Pick one of the tax software providers below.".into(),
        ));
    };
    // Only the fields the provider declares, and baseUrl; blank fields are left out.
    let mut inputs = serde_json::Map::new();
    let declared = provider.inputs.iter().map(|f| f.name.as_str());
    for name in std::iter::once("baseUrl").chain(declared) {
        if let Some(value) = form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            inputs.insert(name.to_owned(), value.into());
        }
    }
    let retry = form
        .get("connection_id")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    let collected = state
        .services
        .connections
        .connect(&session.caller, &access, key, inputs.into(), retry)
        .await;
    Ok(match collected {
        Ok(view) if view.connection.status == ConnectionStatus::Active => page(
            StatusCode::OK,
            connect_page(&session, &access, &providers, LastTry::Connected(&view)),
        ),
        Ok(view) => page(
            StatusCode::OK,
            connect_page(&session, &access, &providers, LastTry::Failed(&view)),
        ),
        Err(err) => match PageError::of(err, "connect the software") {
            PageError::Refused(status, message) => refused(status, message),
            other => other.page(),
        },
    })
}
