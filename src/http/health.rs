//! Health probes: `/health/live` (the process answers) and `/health/ready` (every deployment
//! is running: a loaded model and input partitions assigned).
//!
//! A deployment stopped on request counts as not ready too: the instance is not doing all the
//! work it holds, which is what an operator (or an orchestrator routing to it) needs to see.
//! Delete a deployment that is not meant to run again.

use super::AppState;
use crate::control::record::Desired;
use crate::control::{Status, View};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

/// `GET /health/live`: 200 while the process serves HTTP.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

/// `GET /health/ready`: 200 when every deployment is RUNNING (model loaded, partitions
/// assigned); otherwise 503 naming each one that is not, and why.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let not_ready: Vec<Value> = state
        .manager
        .list()
        .await
        .iter()
        .filter_map(not_ready)
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "deployments": not_ready})),
        )
    }
}

/// Why a deployment keeps the daemon from being ready, if it does.
fn not_ready(v: &View) -> Option<Value> {
    let reason = match &v.status {
        Status::Running if v.model_version.is_some() => return None,
        Status::Running => "no model loaded".to_owned(),
        Status::Initializing => "starting: checking brokers and topics".to_owned(),
        Status::Stopped if v.record.desired == Desired::Stopped => "stopped by request".to_owned(),
        Status::Stopped => "stopped while meant to run".to_owned(),
        s => s.reason().unwrap_or("not running").to_owned(),
    };
    Some(json!({
        "id": v.record.guid,
        "name": v.record.name,
        "status": v.status.as_str(),
        "reason": reason,
    }))
}
