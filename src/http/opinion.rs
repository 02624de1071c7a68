//! Opinion data over HTTP: `GET …/deployments/{id}/opinion` (JSON), and for the live page
//! `GET /opinion/deployments` (the deployments to pick from) and `GET /opinion/stream/{id}`
//! (server-sent events, one snapshot every [`STREAM_EVERY`]).
//!
//! Every route here is a read, and accepts either a bearer token or the page's session cookie
//! ([`Viewer`]). The cookie is never accepted by a route that changes anything, so a forged
//! cross-site request cannot act with it (it is also `SameSite=Strict`).

use super::{ApiError, AppState};
use crate::auth::AuthError;
use crate::control::View;
use crate::opinion::OpinionView;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::{Duration, Instant};

/// Name of the page's session cookie (HttpOnly, SameSite=Strict; holds a signed token).
pub const SESSION_COOKIE: &str = "streamscore_session";
/// Windows sent per subject when the request does not say.
pub const DEFAULT_WINDOWS: usize = 30;
/// Most windows per subject one request may ask for.
pub const MAX_WINDOWS: usize = 1_440;
/// Most windows per subject an event stream may ask for (it sends them every second).
pub const MAX_STREAM_WINDOWS: usize = 120;
/// Event streams open at once; more are refused with 503.
pub const MAX_STREAMS: usize = 16;
/// Time between two snapshots of an event stream.
pub const STREAM_EVERY: Duration = Duration::from_secs(1);
/// An event stream ends after this long (the browser reconnects, and the session is checked
/// again).
pub const STREAM_LIFETIME: Duration = Duration::from_secs(600);

/// Extractor: a bearer token or a session cookie of a configured user.
pub struct Viewer(
    /// The user.
    pub String,
);

/// The token in the `Authorization: Bearer` header or, failing that, the session cookie.
fn presented_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    super::bearer_token(headers).or_else(|| session_cookie(headers))
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

impl axum::extract::FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let token = presented_token(&parts.headers)
            .ok_or(AuthError::Missing("Authorization: Bearer token or session"))?;
        Ok(Viewer(state.auth.verify(token)?))
    }
}

/// Query of the opinion routes.
#[derive(Debug, Deserialize)]
pub struct WindowsQuery {
    /// Windows per subject (newest last).
    windows: Option<usize>,
}

impl WindowsQuery {
    fn count(&self, max: usize) -> Result<usize, ApiError> {
        match self.windows {
            None => Ok(DEFAULT_WINDOWS),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request(format!(
                "windows must be between 1 and {max}"
            ))),
        }
    }
}

/// One deployment's live state and opinion data.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Server time (ms since the epoch).
    pub now_ms: i64,
    /// Deployment id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Wire status.
    pub status: &'static str,
    /// Why, when FAILED or STALLED.
    pub reason: Option<String>,
    /// Model version serving now.
    pub model_version: Option<String>,
    /// Records delivered to the output since it started.
    pub scored: u64,
    /// Records dead-lettered since it started.
    pub dead_lettered: u64,
    /// Consumer lag (records).
    pub lag: i64,
    /// Windows, marks and recent tweets (absent until it first starts).
    pub opinion: Option<OpinionView>,
}

fn snapshot(v: &View, windows: usize) -> Snapshot {
    Snapshot {
        now_ms: crate::stream::now_ms(),
        id: v.record.guid.clone(),
        name: v.record.name.clone(),
        status: v.status.as_str(),
        reason: v.status.reason().map(str::to_owned),
        model_version: v.model_version.clone(),
        scored: v.stats.scored,
        dead_lettered: v.stats.dead_lettered,
        lag: v.lag,
        opinion: v.opinion.as_ref().map(|o| o.view(windows)),
    }
}

/// `GET /v3/…/deployments/{deployment_id}/opinion?windows=N`.
pub async fn get_opinion(
    _: Viewer,
    State(state): State<AppState>,
    Path(p): Path<super::deployments::ItemPath>,
    Query(q): Query<WindowsQuery>,
) -> Result<Json<Snapshot>, ApiError> {
    let n = q.count(MAX_WINDOWS)?;
    let v = super::deployments::find(&state, &p).await?;
    Ok(Json(snapshot(&v, n)))
}

/// A deployment the page can show.
#[derive(Debug, Serialize)]
pub struct Listed {
    id: String,
    name: String,
    status: &'static str,
}

/// `GET /opinion/deployments`: every deployment's id, name and status.
pub async fn list(_: Viewer, State(state): State<AppState>) -> Json<Vec<Listed>> {
    let all = state.manager.list().await;
    Json(
        all.iter()
            .map(|v| Listed {
                id: v.record.guid.clone(),
                name: v.record.name.clone(),
                status: v.status.as_str(),
            })
            .collect(),
    )
}

/// `GET /opinion/stream/{deployment_id}?windows=N`: a snapshot at once, then one every
/// [`STREAM_EVERY`], for at most [`STREAM_LIFETIME`].
pub async fn stream(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WindowsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let n = q.count(MAX_STREAM_WINDOWS)?;
    state.manager.get(&id).await?;
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{MAX_STREAMS} live streams are open already"),
        )
    })?;
    let ends = Instant::now() + STREAM_LIFETIME;
    let first = true;
    let events = futures::stream::unfold(
        (state, id, permit, first),
        move |(state, id, permit, first)| async move {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(STREAM_EVERY) => {}
                    _ = state.closing.cancelled() => return None,
                }
            }
            if Instant::now() >= ends {
                return None;
            }
            // A deleted deployment ends its stream.
            let v = state.manager.get(&id).await.ok()?;
            let data = serde_json::to_string(&snapshot(&v, n)).unwrap_or_default();
            let event = Event::default()
                .event("snapshot")
                .retry(Duration::from_secs(2))
                .data(data);
            Some((Ok(event), (state, id, permit, false)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
