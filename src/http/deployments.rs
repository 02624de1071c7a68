//! The seed's stream-deployment API under
//! `/v3/wml_instances/{instance_id}/published_models/{published_model_id}/deployments`.

use super::{ApiError, AppState, Authenticated};
use crate::control::record::{redact, CreateRequest, Desired, Origin};
use crate::control::View;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Path of a deployments collection.
#[derive(Deserialize)]
pub struct CollectionPath {
    instance_id: String,
    published_model_id: String,
}

/// Path of one deployment.
#[derive(Deserialize)]
pub struct ItemPath {
    instance_id: String,
    published_model_id: String,
    deployment_id: String,
}

/// The seed's `metadata`/`entity` shape, secrets redacted.
fn render(v: &View) -> Value {
    let r = &v.record;
    let base = format!(
        "/v3/wml_instances/{}/published_models/{}",
        r.instance_id, r.published_model_id
    );
    let reason = v.status.reason();
    json!({
        "metadata": {
            "guid": r.guid,
            "url": format!("{base}/deployments/{}", r.guid),
            "created_at": r.created_at,
            "modified_at": r.modified_at,
        },
        "entity": {
            "name": r.name,
            "description": r.description,
            "type": "stream",
            "status": v.status.as_str(),
            "status_details": {"reason": reason, "desired": r.desired},
            "model_type": "streamscore-linear",
            "published_model": {"guid": r.published_model_id, "name": r.published_model_id, "url": base},
            "deployed_version": v.model_version.as_ref().map(|ver| json!({"guid": ver, "url": format!("/pm/v1/model/{}", r.published_model_id)})),
            "input": {"connection": redact(&r.input.connection), "source": r.input.source},
            "output": {"connection": redact(&r.output.connection), "target": r.output.target},
            "counters": v.stats,
            "origin": r.origin,
            "delivery": r.delivery,
            "start_from": r.start_from,
            "subjects": r.subjects,
            "summary_topic": r.summary_topic,
        }
    })
}

/// A deployment exists under a path only if the path names its instance and model
/// (config-declared deployments answer under any).
fn belongs(v: &View, instance_id: &str, published_model_id: &str) -> bool {
    v.record.origin == Origin::Config
        || (v.record.instance_id == instance_id
            && v.record.published_model_id == published_model_id)
}

pub(super) async fn find(state: &AppState, p: &ItemPath) -> Result<View, ApiError> {
    let v = state.manager.get(&p.deployment_id).await?;
    if v.record.guid != p.deployment_id || !belongs(&v, &p.instance_id, &p.published_model_id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no deployment {:?} here", p.deployment_id),
        ));
    }
    Ok(v)
}

/// `POST`: creates and starts a deployment (status INITIALIZING, then RUNNING or FAILED).
/// The `X-Spark-Service-Instance` header of the seed is accepted and ignored.
pub async fn create(
    _: Authenticated,
    State(state): State<AppState>,
    Path(p): Path<CollectionPath>,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let view = state
        .manager
        .create(&p.instance_id, &p.published_model_id, req)
        .await?;
    let url = render(&view)["metadata"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, url)],
        Json(render(&view)),
    )
        .into_response())
}

/// `GET` collection.
pub async fn list(
    _: Authenticated,
    State(state): State<AppState>,
    Path(p): Path<CollectionPath>,
) -> Json<Value> {
    let resources: Vec<Value> = state
        .manager
        .list()
        .await
        .iter()
        .filter(|v| belongs(v, &p.instance_id, &p.published_model_id))
        .map(render)
        .collect();
    Json(json!({"count": resources.len(), "resources": resources}))
}

/// `GET` one.
pub async fn get_one(
    _: Authenticated,
    State(state): State<AppState>,
    Path(p): Path<ItemPath>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(render(&find(&state, &p).await?)))
}

/// One JSON Patch operation.
#[derive(Deserialize)]
pub struct PatchOp {
    op: String,
    path: String,
    value: Option<Value>,
}

/// `PATCH` with `[{"op": "replace", "path": "/status", "value": "STOPPED"|"RUNNING"}]` → 204.
pub async fn patch(
    _: Authenticated,
    State(state): State<AppState>,
    Path(p): Path<ItemPath>,
    body: Result<Json<Vec<PatchOp>>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(ops) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let [op] = ops.as_slice() else {
        return Err(ApiError::bad_request(
            "expected exactly one JSON Patch operation",
        ));
    };
    if op.op != "replace" || op.path != "/status" {
        return Err(ApiError::bad_request(
            "only {\"op\": \"replace\", \"path\": \"/status\"} is supported",
        ));
    }
    let desired = match op.value.as_ref().and_then(Value::as_str) {
        Some("RUNNING") => Desired::Running,
        Some("STOPPED") => Desired::Stopped,
        _ => {
            return Err(ApiError::bad_request(
                "value must be \"RUNNING\" or \"STOPPED\"",
            ))
        }
    };
    let v = find(&state, &p).await?;
    state.manager.set_desired(&v.record.guid, desired).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE` → 204.
pub async fn delete(
    _: Authenticated,
    State(state): State<AppState>,
    Path(p): Path<ItemPath>,
) -> Result<StatusCode, ApiError> {
    let v = find(&state, &p).await?;
    state.manager.delete(&v.record.guid).await?;
    Ok(StatusCode::NO_CONTENT)
}
