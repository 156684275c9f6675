//! `/settings/developer`: a user's API keys. Generate one (name, optional expiry in days; its
//! secret shown once, with a copy button), list them (name, prefix, created, last used,
//! expires), revoke one, and see their use by source platform and day as a small chart.

use crate::{
    badge, layout, not_found, page, redirect, sentence, session_form, unavailable, when, OtherPage,
    PageError, SignedIn,
};
use axum::{
    body::Body,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use maud::{html, Markup};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::{collections::BTreeMap, sync::Arc};
use taxbridge_api::{
    auth::{MaybeSession, Session},
    ground::AppState,
};
use taxbridge_domain::audit::Who;
use taxbridge_domain::{api_keys::ApiKey, time::Timestamp, usage::UsageCount};

const HERE: &str = "/settings/developer";
/// How many days the usage chart covers, today included.
const CHART_DAYS: i64 = 14;
/// Platforms drawn in their own colour; the rest are summed as "others".
const PALETTE: [&str; 5] = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2"];
const OTHERS_COLOUR: &str = "#94a3b8";

fn key_state(key: &ApiKey, now: Timestamp) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if !key.is_usable_at(now) {
        "expired"
    } else {
        "usable"
    }
}

/// Requests per day and platform: the chart's data.
struct Usage {
    days: Vec<String>,
    /// Platforms by total, largest first (at most [`PALETTE`]'s length, then "others").
    platforms: Vec<(String, u64)>,
    counts: BTreeMap<(String, String), u64>,
}

fn usage_of(rows: &[UsageCount], now: Timestamp) -> Usage {
    const DAY_MS: i64 = 86_400_000;
    let days: Vec<String> = (0..CHART_DAYS)
        .rev()
        .map(|back| Timestamp::from_millis(now.as_millis() - back * DAY_MS).day())
        .collect();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for row in rows {
        *totals.entry(&row.source_platform).or_default() += row.count;
    }
    let mut platforms: Vec<(String, u64)> =
        totals.into_iter().map(|(p, n)| (p.to_owned(), n)).collect();
    platforms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if platforms.len() > PALETTE.len() {
        let others: u64 = platforms[PALETTE.len()..].iter().map(|p| p.1).sum();
        platforms.truncate(PALETTE.len());
        platforms.push(("others".to_owned(), others));
    }
    let shown = |p: &str| {
        platforms
            .iter()
            .take(PALETTE.len())
            .any(|(name, _)| name == p)
    };
    let mut counts = BTreeMap::new();
    for row in rows {
        let platform = if shown(&row.source_platform) {
            row.source_platform.clone()
        } else {
            "others".to_owned()
        };
        *counts.entry((row.day.clone(), platform)).or_default() += row.count;
    }
    Usage {
        days,
        platforms,
        counts,
    }
}

fn colour(index: usize) -> &'static str {
    PALETTE.get(index).copied().unwrap_or(OTHERS_COLOUR)
}

/// One day's bar, bottom up: (top, height, platform index, count, platform) per platform
/// with requests that day, scaled so `peak` requests fill `height`.
fn stack<'a>(
    usage: &'a Usage,
    day: &str,
    peak: u64,
    height: u64,
) -> Vec<(u64, u64, usize, u64, &'a str)> {
    let mut top = height;
    let mut pieces = Vec::new();
    for (j, (platform, _)) in usage.platforms.iter().enumerate() {
        let n = usage
            .counts
            .get(&(day.to_owned(), platform.clone()))
            .copied()
            .unwrap_or(0);
        if n > 0 {
            let h = (n * height).div_ceil(peak).max(1);
            top = top.saturating_sub(h);
            pieces.push((top, h, j, n, platform.as_str()));
        }
    }
    pieces
}

/// A stacked bar per day, one colour per platform, with a legend and the same figures as a
/// table for screen readers and copying.
fn chart(usage: &Usage) -> Markup {
    const WIDTH: u64 = 560;
    const HEIGHT: u64 = 140;
    let per_day = |day: &str| -> u64 {
        usage
            .platforms
            .iter()
            .map(|(p, _)| {
                usage
                    .counts
                    .get(&(day.to_owned(), p.clone()))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    };
    let peak = usage
        .days
        .iter()
        .map(|d| per_day(d))
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = WIDTH / usage.days.len().max(1) as u64;
    html! {
        @if usage.platforms.is_empty() {
            p { "No requests with these keys in the last " (CHART_DAYS) " days. Requests count here by their "
                code { "source-platform" } " header." }
        } @else {
            figure.chart {
                svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 18) } role="img"
                    aria-label={ "Requests per day over the last " (CHART_DAYS) " days, by source platform" } {
                    @for (i, day) in usage.days.iter().enumerate() {
                        @let x = i as u64 * slot + 4;
                        @for (y, h, j, n, platform) in stack(usage, day, peak, HEIGHT) {
                            rect x=(x) y=(y) width=(slot - 8) height=(h) fill=(colour(j)) {
                                title { (day) ": " (n) " from " (platform) }
                            }
                        }
                        @if i % 2 == 0 {
                            text x=(x) y=(HEIGHT + 14) font-size="10" fill="#475569" { (day.get(5..).unwrap_or(day)) }
                        }
                    }
                }
                figcaption {
                    ul.legend {
                        @for (j, (platform, total)) in usage.platforms.iter().enumerate() {
                            li { svg.swatch viewBox="0 0 10 10" aria-hidden="true" { rect width="10" height="10" fill=(colour(j)) {} }
                                 " " (platform) " — " (total) }
                        }
                    }
                }
            }
            details {
                summary { "The figures as a table" }
                div.scroll { table {
                    thead { tr { th { "Day" } @for (p, _) in &usage.platforms { th { (p) } } } }
                    tbody {
                        @for day in &usage.days {
                            tr { td { (day) }
                                 @for (p, _) in &usage.platforms {
                                     td { (usage.counts.get(&(day.clone(), p.clone())).copied().unwrap_or(0)) } } }
                        }
                    }
                } }
            }
        }
    }
}

fn settings_page(
    session: &Session,
    keys: &[ApiKey],
    usage: &Usage,
    created: Option<(&ApiKey, &SecretString)>,
    alert: Option<&str>,
    activity: &[taxbridge_domain::audit::AuditEvent],
) -> Markup {
    let now = Timestamp::now();
    let body = html! {
        h1 { "Developer Settings" }
        @if let Some((key, secret)) = created {
            section.card.outcome.good role="status" {
                h2 { "Your new key “" (key.name) "”" }
                p { "Copy it now: this is the only time Taxbridge shows it. Exchange it for an access token with "
                    code { "loginViaPersonalApiToken" } "." }
                div.secret {
                    code #new-key { (secret.expose_secret()) }
                    button.copy type="button" data-copy="new-key" { "Copy" }
                }
            }
        }
        section.card {
            h2 { "Generate an API key" }
            @if let Some(alert) = alert { p.alert role="alert" { (alert) } }
            form.row method="post" action="/settings/developer/keys" {
                div {
                    label for="name" { "Name" }
                    input #name name="name" required maxlength="100" placeholder="Production Integration";
                }
                div {
                    label for="expires_in_days" { "Expires after (days)" }
                    input #expires_in_days name="expires_in_days" inputmode="numeric" pattern="[0-9]*"
                        placeholder="blank for never";
                }
                input type="hidden" name="csrf_token" value=(session.csrf);
                button type="submit" { "Generate key" }
            }
        }
        section.card {
            h2 { "Your API keys" }
            @if keys.is_empty() {
                p { "You have no API keys yet." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Name" } th { "Prefix" } th { "Created" } th { "Last used" } th { "Expires" } th { "State" } th { span.visually-hidden { "Revoke" } } } }
                    tbody {
                        @for key in keys.iter().rev() {
                            @let state = key_state(key, now);
                            tr {
                                td data-label="Name" { (key.name) }
                                td data-label="Prefix" { code { (key.display_prefix) "…" } }
                                td data-label="Created" { (when(key.created_at)) }
                                td data-label="Last used" { (key.last_used_at.map(when).unwrap_or_else(|| "never".into())) }
                                td data-label="Expires" { (key.expires_at.map(when).unwrap_or_else(|| "never".into())) }
                                td data-label="State" { (badge(state)) }
                                td data-label="" {
                                    @if state == "usable" {
                                        form.inline method="post" action={ "/settings/developer/keys/" (key.id) "/revoke" } {
                                            input type="hidden" name="csrf_token" value=(session.csrf);
                                            button.danger type="submit" aria-label={ "Revoke " (key.name) } { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
        section.card {
            h2 { "Usage by source platform" }
            (chart(usage))
        }
        section.card {
            h2 { "Recent activity of your keys" }
            p.hint { "What your keys did, newest first: the audit log's events in every workspace." }
            (crate::activity::events_table(activity))
        }
    };
    layout("Developer Settings", Some(session), body)
}

/// The page for a signed-in user, with its keys and their usage read afresh.
async fn render(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    created: Option<(&ApiKey, &SecretString)>,
    alert: Option<&str>,
) -> Result<Response, OtherPage> {
    let keys = keys_of(state, session).await?;
    let ids: Vec<_> = keys.iter().map(|k| k.id.clone()).collect();
    let rows = if ids.is_empty() {
        Vec::new()
    } else {
        state
            .services
            .usage
            .usage_of_keys(&ids, CHART_DAYS)
            .await
            .map_err(|err| OtherPage::from(unavailable("read your keys' usage", &err)))?
    };
    let usage = usage_of(&rows, Timestamp::now());
    let activity = state
        .services
        .audit
        .of_keys(&session.caller, &keys, KEY_EVENTS_SHOWN)
        .await
        .map_err(|err| OtherPage::from(unavailable("read your keys' activity", &err)))?;
    Ok(page(
        status,
        settings_page(session, &keys, &usage, created, alert, &activity),
    ))
}

/// How many of the keys' recent events Developer Settings shows.
const KEY_EVENTS_SHOWN: u32 = 20;

async fn keys_of(state: &AppState, session: &Session) -> Result<Vec<ApiKey>, OtherPage> {
    state
        .services
        .identity
        .keys_of(&session.account.id)
        .await
        .map_err(|err| unavailable("list your keys", &err).into())
}

/// `GET /settings/developer`.
pub(crate) async fn settings(
    State(state): State<Arc<AppState>>,
    SignedIn(session): SignedIn,
) -> Result<Response, OtherPage> {
    render(&state, &session, StatusCode::OK, None, None).await
}

#[derive(Deserialize)]
pub(crate) struct NewKeyForm {
    name: String,
    #[serde(default)]
    expires_in_days: String,
}

/// `POST /settings/developer/keys`: generates a key and shows its secret, once.
pub(crate) async fn generate(
    State(state): State<Arc<AppState>>,
    session: MaybeSession,
    body: Body,
) -> Result<Response, OtherPage> {
    let (session, form): (_, NewKeyForm) = session_form(&state, session, HERE, body).await?;
    let refused = |alert: &str| {
        let alert = alert.to_owned();
        let (state, session) = (&state, &session);
        async move {
            render(
                state,
                session,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(&alert),
            )
            .await
        }
    };
    let days = form.expires_in_days.trim();
    let expires_in_days = match days.parse::<u32>() {
        _ if days.is_empty() => None,
        Ok(days) if days <= 3650 => Some(days),
        _ => {
            return refused("The expiry is a whole number of days from 1 to 3650; leave it blank for a key that does not expire.").await;
        }
    };
    let identity = &state.services.identity;
    match identity
        .create_key(
            &session.account,
            &form.name,
            expires_in_days,
            &Who::caller(&session.caller),
        )
        .await
    {
        Ok((key, secret)) => {
            tracing::info!(key = %key.id, account = %session.account.id, "web: API key generated");
            let created = Some((&key, &secret));
            render(&state, &session, StatusCode::OK, created, None).await
        }
        Err(err) => match PageError::of(err, "generate a key") {
            PageError::Refused(_, message) => refused(&sentence(&message)).await,
            other => Ok(other.page()),
        },
    }
}

/// `POST /settings/developer/keys/{id}/revoke`: revokes one of the user's own keys (another
/// account's id is 404, like a missing one); its tokens stop working at once.
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    session: MaybeSession,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, OtherPage> {
    let (session, _): (_, serde::de::IgnoredAny) =
        session_form(&state, session, HERE, body).await?;
    let keys = keys_of(&state, &session).await?;
    let Some(key) = keys.iter().find(|k| k.id.as_str() == id) else {
        return Ok(not_found());
    };
    let who = Who::caller(&session.caller);
    if let Err(err) = state.services.identity.revoke_key(&key.id, &who).await {
        return Err(unavailable("revoke the key", &err).into());
    }
    tracing::info!(key = %key.id, account = %session.account.id, "web: API key revoked");
    Ok(redirect(HERE))
}
