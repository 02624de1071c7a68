//! `GET /metrics` (Prometheus text format) and the middleware that counts HTTP requests by
//! route template.

use super::AppState;
use crate::metrics::DeploymentState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// `GET /metrics`: every metric, with deployment states read now.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let deployments: Vec<DeploymentState> = state
        .manager
        .list()
        .await
        .into_iter()
        .map(|v| DeploymentState {
            status: v.status.as_str(),
            model: v
                .model_version
                .map(|version| (v.record.published_model_id.clone(), version)),
            opinion: v.opinion.as_ref().map(|o| o.latest_closed()),
            id: v.record.guid,
        })
        .collect();
    let text = state.metrics.encode(&deployments);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Counts each request by method, route template (never the raw path: ids stay out of
/// labels) and status, and times it.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(req).await;
    let method = match method.as_str() {
        m @ ("GET" | "PUT" | "POST" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    };
    state.metrics.http_request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
