//! The HTTP API (axum): the seeds' model API and stream-deployment API, plus health probes.
//!
//! One file per API: [`models`] (`/pm/v1/model`), [`identity`] (`/v2/identity/token`),
//! [`deployments`] (`/v3/wml_instances/…/deployments`), [`health`] (`/health/live`,
//! `/health/ready`) and [`metrics`] (`/metrics`). Errors of the v3 API map to status
//! codes in one place, [`ApiError`]; the model API keeps the seeds' `200 {"flag": false}`.

mod deployments;
mod health;
mod identity;
mod metrics;
mod models;

use crate::auth::{AuthError, Authenticator};
use crate::control::{ControlError, Manager};
use crate::metrics::Metrics;
use crate::store::ModelStore;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    /// Credentials and tokens.
    pub auth: Arc<Authenticator>,
    /// Uploaded models.
    pub store: Arc<ModelStore>,
    /// Deployments.
    pub manager: Arc<Manager>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Largest accepted model upload, in bytes.
    pub max_model_bytes: usize,
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    let v3 = "/v3/wml_instances/{instance_id}/published_models/{published_model_id}/deployments";
    let deployments = Router::new()
        .route(v3, get(deployments::list).post(deployments::create))
        .route(
            &format!("{v3}/{{deployment_id}}"),
            get(deployments::get_one)
                .patch(deployments::patch)
                .delete(deployments::delete),
        );
    Router::new()
        .route(
            "/pm/v1/model/{context_id}",
            put(models::put_model)
                .get(models::get_model)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v2/identity/token", get(identity::token))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .merge(deployments)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// An error of the v3 API: a status code and a JSON body `{"code", "message"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with a status, a short code and a message for the client.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let (status, code) = match &e {
            ControlError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ControlError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ControlError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ControlError::Store(crate::store::StoreError::BadContextId(_)) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            ControlError::Store(_) | ControlError::Io { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "control plane error");
            return ApiError::new(status, code, "internal error; see the server log");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
    }
}

/// Extractor: the request carries a valid `Authorization: Bearer` token. Handlers that take
/// it are refused with 401 otherwise (after routing, so a wrong method is still a 405).
pub struct Authenticated(
    /// The user the token was issued to.
    pub String,
);

impl axum::extract::FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AuthError::Missing("Authorization: Bearer token"))?;
        Ok(Authenticated(state.auth.verify(token.trim())?))
    }
}
