//! The pages a deep link lands on: `/w/redirect/…` (the user's workspace, or a chooser), the
//! dashboard `/w/{slug}` (connections, import jobs with progress, recent works) and one work
//! `/w/{slug}/works/{workId}` (its artifacts, with download links).

use crate::{
    badge, bytes, layout, not_found, page, redirect, when, workspace_by_slug, OrUnavailable,
    OtherPage, PageError, SignedIn,
};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use maud::{html, Markup};
use std::{collections::HashMap, sync::Arc};
use taxbridge_api::ground::AppState;
use taxbridge_domain::words::Word;
use taxbridge_domain::{
    connections::ConnectionView,
    imports::{ArtifactStatus, Job, JobProgress, JobWork},
    lists::{Page, SortField},
    web::safe_landing,
    workspaces::{Reach, Role, WorkspaceAccess, WorkspaceFilters},
};

/// How many connections, jobs and works the dashboard shows.
const CONNECTIONS_SHOWN: u32 = 100;
const RECENT_SHOWN: u32 = 20;

/// `GET /w/redirect/{*rest}`: the signed-in user's workspace with `rest`, or a chooser.
pub(crate) async fn choose(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    rest: Option<Path<String>>,
) -> Result<Response, OtherPage> {
    let rest = rest.map(|Path(r)| r).unwrap_or_default();
    let first = Page {
        limit: 50,
        offset: 0,
        sort: SortField::Name,
        descending: false,
    };
    let workspaces = state
        .services
        .workspaces
        .list_for(&session.account, &WorkspaceFilters::default(), first)
        .await
        .or_unavailable("list your workspaces")?;
    let suffix = if rest.is_empty() {
        String::new()
    } else {
        format!("/{rest}")
    };
    if let [only] = workspaces.as_slice() {
        return Ok(redirect(&safe_landing(Some(&format!(
            "/w/{}{suffix}",
            only.slug
        )))));
    }
    let body = html! {
        h1 { "Choose a workspace" }
        @if workspaces.is_empty() {
            p { "You are not a member of any workspace yet. Ask a workspace's admin to add "
                strong { (session.account.email) } "." }
        } @else {
            ul.choices {
                @for w in &workspaces {
                    li { a href=(safe_landing(Some(&format!("/w/{}{suffix}", w.slug)))) { (w.display_name) } }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        layout("Choose a workspace", Some(&session), body),
    ))
}

/// `GET /w/{slug}`: the workspace's dashboard.
pub(crate) async fn dashboard(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Path(slug): Path<String>,
) -> Result<Response, OtherPage> {
    let access = workspace_by_slug(&state, &session, &slug).await?;
    let services = &state.services;
    let connections = services
        .connections
        .list(
            &access,
            &Default::default(),
            Page {
                limit: CONNECTIONS_SHOWN,
                offset: 0,
                sort: SortField::CreatedAt,
                descending: false,
            },
        )
        .await
        .or_unavailable("list the connections")?;
    let (jobs, works) = services
        .imports
        .recent_in(&access, RECENT_SHOWN)
        .await
        .or_unavailable("list the imports")?;
    let body = dashboard_body(&access, &connections, &jobs, &works);
    Ok(page(
        StatusCode::OK,
        layout(&access.workspace().display_name, Some(&session), body),
    ))
}

/// `1 work`, `2 works`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn dashboard_body(
    access: &WorkspaceAccess,
    connections: &[ConnectionView],
    jobs: &[(Job, JobProgress)],
    works: &[JobWork],
) -> Markup {
    let workspace = access.workspace();
    let providers: HashMap<&str, &str> = connections
        .iter()
        .map(|v| (v.connection.id.as_str(), v.provider.name.as_str()))
        .collect();
    let provider_of = |id: &str| providers.get(id).copied().unwrap_or("a connection");
    let reads_activity = !matches!(access.reach(), Reach::Member(Role::User));
    html! {
        h1 { (workspace.display_name) }
        p.hint { "Workspace " code { (workspace.slug) }
            @if reads_activity {
                " · " a href={ "/w/" (workspace.slug) "/activity" } { "Activity" }
            }
        }
        section.card {
            div.heading {
                h2 { "Connections" }
                a.button href={ "/w/" (workspace.slug) "/connect/tax-software" } { "Connect tax software" }
            }
            @if connections.is_empty() {
                p { "No software is connected yet." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Provider" } th { "Name" } th { "Status" } th { "Next step" } th { "Last verified" } } }
                    tbody {
                        @for view in connections {
                            @let c = &view.connection;
                            tr {
                                td data-label="Provider" { (view.provider.name) br; small { (view.provider.category.replace('_', " ")) } }
                                td data-label="Name" { (c.display_name.as_deref().unwrap_or("—")) }
                                td data-label="Status" { (badge(c.status.as_str())) }
                                td data-label="Next step" { (c.status.action().unwrap_or("—"))
                                     @if let Some(detail) = &c.status_detail { br; small { (detail) } } }
                                td data-label="Last verified" { (c.last_verified_at.map(when).unwrap_or_else(|| "—".into())) }
                            }
                        }
                    }
                } }
            }
        }
        section.card {
            h2 { "Import jobs" }
            @if jobs.is_empty() {
                p { "No imports yet. A partner pushes clients and their documents in import jobs; they appear here as they run." }
            } @else {
                ul.jobs {
                    @for (job, progress) in jobs {
                        @let done = progress.succeeded + progress.failed + progress.terminated;
                        li {
                            div.heading {
                                strong { (job.name) }
                                (badge(job.status.as_str()))
                            }
                            label {
                                small { (provider_of(job.connection_id.as_str())) " · " (plural(progress.works, "work", "works")) " · "
                                    (done) " of " (progress.artifacts) " files done"
                                    @if progress.failed > 0 { ", " (progress.failed) " failed" }
                                    " · " (bytes(progress.bytes)) }
                                progress max=(progress.artifacts.max(1)) value=(done) { (done) " of " (progress.artifacts) }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Recent works" }
            @if works.is_empty() {
                p { "No works yet." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Work" } th { "Client reference" } th { "Status" } th { "Updated" } } }
                    tbody {
                        @for work in works {
                            tr {
                                td data-label="Work" { a href={ "/w/" (workspace.slug) "/works/" (work.work_id) } { (work.name) }
                                     @if let Some(tag) = &work.tag { " " small.tag { (tag) } } }
                                td data-label="Client reference" { (work.external_id) }
                                td data-label="Status" { (badge(work.status.as_str())) }
                                td data-label="Updated" { (when(work.updated_at)) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// `GET /w/{slug}/works/{workId}`: one tax preparation, its artifacts and their downloads.
pub(crate) async fn work(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
    Path((slug, work_id)): Path<(String, String)>,
) -> Result<Response, OtherPage> {
    let access = workspace_by_slug(&state, &session, &slug).await?;
    let (work, artifacts) = match state.services.imports.work(&session.caller, &work_id).await {
        // A work of another of the user's workspaces is not under this slug.
        Ok(found) if found.0.workspace_id == access.workspace().id => found,
        Ok(_) => return Ok(not_found()),
        Err(err) => return Ok(PageError::of(err, "read the work").page()),
    };
    let workspace = access.workspace();
    let body = html! {
        p.crumbs { a href={ "/w/" (workspace.slug) } { (workspace.display_name) } " › work" }
        h1 { (work.name) " " (badge(work.status.as_str())) }
        dl.facts {
            dt { "Work id" } dd { code { (work.work_id) } }
            dt { "Client reference" } dd { (work.external_id) }
            @if let Some(tag) = &work.tag { dt { "Tag" } dd { (tag) } }
            dt { "Import job" } dd { code { (work.job_id) } }
            dt { "Created" } dd { (when(work.created_at)) }
            dt { "Updated" } dd { (when(work.updated_at)) }
        }
        section.card {
            h2 { "Documents" }
            @if artifacts.is_empty() {
                p { "This work has no documents yet." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Name" } th { "Type" } th { "Status" } th { "Size" } th { "File" } } }
                    tbody {
                        @for a in &artifacts {
                            tr {
                                td data-label="Name" { (a.name) }
                                td data-label="Type" { (a.artifact_type) }
                                td data-label="Status" { (badge(a.status.as_str()))
                                     @if let Some(message) = gateway_error(a) {
                                         br; small { (message) } } }
                                td data-label="Size" { (a.stored.as_ref().map(|s| bytes(s.size)).unwrap_or_else(|| "—".into())) }
                                td data-label="File" {
                                    @if a.status == ArtifactStatus::Success {
                                        a href={ "/files/artifacts/" (a.artifact_id) } download { "Download" }
                                    } @else { "—" }
                                }
                            }
                        }
                    }
                } }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        layout(&work.name, Some(&session), body),
    ))
}

/// The gateway's own error for a document: only for one in `error`, whose `metadata.error` the
/// gateway wrote (callers may not send that key).
fn gateway_error(artifact: &taxbridge_domain::imports::Artifact) -> Option<&str> {
    if artifact.status != taxbridge_domain::imports::ArtifactStatus::Error {
        return None;
    }
    artifact
        .metadata
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
}
