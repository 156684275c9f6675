//! `GET /w/{slug}/activity`: a workspace's audit log for its admins and its owning partner,
//! newest first, filtered by action and actor, fifty events a page; and the table of events
//! Developer Settings shows for the user's keys. Everything shown is escaped text: a user agent
//! or a name a partner chose is never markup.

use crate::{layout, page, when, workspace_by_slug, OtherPage, PageError, SignedIn};
use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::StatusCode,
    response::Response,
};
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;
use taxbridge_api::ground::AppState;
use taxbridge_domain::audit::{Action, AuditEvent, AuditFilters, AuditPage};
use taxbridge_domain::words::Word;

/// Events a page shows.
const PER_PAGE: i32 = 50;

#[derive(Deserialize, Default)]
pub(crate) struct ActivityQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    page: u32,
}

pub(crate) async fn activity(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Path(slug): Path<String>,
    query: Result<Query<ActivityQuery>, QueryRejection>,
) -> Result<Response, OtherPage> {
    let access = workspace_by_slug(&state, &session, &slug).await?;
    let Ok(Query(query)) = query else {
        return Ok(PageError::Refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The page number is a whole number of 0 or more".into(),
        )
        .page());
    };
    let filters = AuditFilters {
        actions: (!query.action.is_empty()).then(|| vec![query.action.clone()]),
        actor_ids: (!query.actor.trim().is_empty()).then(|| vec![query.actor.trim().to_owned()]),
        ..AuditFilters::default()
    };
    let offset = i32::try_from(query.page)
        .ok()
        .and_then(|page| page.checked_mul(PER_PAGE))
        .unwrap_or(i32::MAX);
    let found = match AuditPage::parse(Some(PER_PAGE + 1), Some(offset), None) {
        Ok(page) => {
            state
                .services
                .audit
                .of_workspace(&access, &filters, page)
                .await
        }
        Err(invalid) => Err(invalid.into()),
    };
    let mut events = match found {
        Ok(events) => events,
        Err(err) => return Ok(PageError::of(err, "read the activity").page()),
    };
    let more = events.len() > PER_PAGE as usize;
    events.truncate(PER_PAGE as usize);
    let workspace = access.workspace();
    let link = |page: u32| {
        format!(
            "/w/{}/activity?action={}&actor={}&page={page}",
            workspace.slug,
            percent(&query.action),
            percent(query.actor.trim())
        )
    };
    let body = html! {
        h1 { "Activity" }
        p.hint { "Every change in " strong { (workspace.display_name) } " and every use of its stored credentials, newest first." }
        section.card {
            form.row method="get" action={ "/w/" (workspace.slug) "/activity" } {
                div {
                    label for="action" { "Action" }
                    select #action name="action" {
                        option value="" selected[query.action.is_empty()] { "All actions" }
                        @for action in Action::ALL {
                            option value=(action.as_str()) selected[query.action == action.as_str()] { (action.as_str()) }
                        }
                    }
                }
                div {
                    label for="actor" { "Actor id" }
                    input #actor name="actor" value=(query.actor) placeholder="acc_…, cli or worker" maxlength="100";
                }
                button type="submit" { "Filter" }
            }
            (events_table(&events))
            nav.pages {
                @if query.page > 0 { a href=(link(query.page - 1)) { "Newer" } }
                @if more { " " a href=(link(query.page + 1)) { "Older" } }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        layout("Activity", Some(&session), body),
    ))
}

/// Events as a table: when, what, who (with the key), about what, from where, details.
pub(crate) fn events_table(events: &[AuditEvent]) -> Markup {
    html! {
        @if events.is_empty() {
            p { "No events." }
        } @else {
            div.scroll { table.stack.events {
                thead { tr { th { "When" } th { "Action" } th { "Actor" } th { "About" } th { "From" } th { "Details" } } }
                tbody {
                    @for event in events {
                        tr {
                            td data-label="When" { (when(event.occurred_at)) }
                            td data-label="Action" { code { (event.action) } }
                            td data-label="Actor" {
                                (event.actor.name) br;
                                small { (<&str>::from(event.actor.kind)) " " code { (event.actor.id) }
                                    @if let Some(prefix) = &event.actor.api_key_prefix { " key " code { (prefix) "…" } } }
                            }
                            td data-label="About" {
                                @for target in &event.targets { small { (target.kind) " " code { (target.id) } } br; }
                            }
                            td data-label="From" {
                                (event.context.client_address.as_deref().unwrap_or("—"))
                                @if let Some(platform) = &event.context.source_platform { br; small { (platform) } }
                            }
                            td data-label="Details" {
                                @for (key, value) in &event.metadata {
                                    small { (key) ": " (value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())) } br;
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn percent(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
