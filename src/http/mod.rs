//! The HTTP API (axum): the seeds' model API and stream-deployment API, plus health probes.
//!
//! One file per API: [`models`] (`/pm/v1/model`), [`identity`] (`/v2/identity/token`),
//! [`deployments`] (`/v3/wml_instances/…/deployments`), [`health`] (`/health/live`,
//! `/health/ready`), [`metrics`] (`/metrics`), [`opinion`] (opinion JSON and live event
//! streams) and `page` (the live opinion page at `/`, its login and assets). Errors of the v3 API map to status
//! codes in one place, [`ApiError`]; the model API keeps the seeds' `200 {"flag": false}`.

mod deployments;
mod health;
mod identity;
mod metrics;
mod models;
pub mod opinion;
mod page;
pub mod throttle;

use crate::auth::{AuthError, Authenticator};
use crate::control::{ControlError, Manager};
use crate::metrics::Metrics;
use crate::store::ModelStore;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

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
    /// Bounds on password checks.
    pub login: Arc<throttle::LoginGate>,
    /// Model uploads read at once (each staged on disk, then held in memory while validated).
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// Largest accepted model upload, in bytes.
    pub max_model_bytes: usize,
    /// Live opinion streams open at once (see [`opinion::MAX_STREAMS`]).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the daemon shuts down: open event streams end.
    pub closing: tokio_util::sync::CancellationToken,
}

/// Requests served at once; more wait for a slot (within their timeout).
pub const MAX_CONCURRENT_REQUESTS: usize = 256;
/// Longest any request may take, except model uploads and downloads.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a model upload or download may take.
pub const MODEL_TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest JSON body of the deployments API.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;

/// Every route of the API, with its bounds: [`MAX_CONCURRENT_REQUESTS`] at once, a timeout per
/// request (408), and body limits per route.
pub fn router(state: AppState) -> Router {
    let v3 = "/v3/wml_instances/{instance_id}/published_models/{published_model_id}/deployments";
    let one = || {
        get(deployments::get_one)
            .patch(deployments::patch)
            .delete(deployments::delete)
    };
    let mut api = Router::new()
        .route(v3, get(deployments::list).post(deployments::create))
        .route(&format!("{v3}/{{deployment_id}}"), one())
        .route(
            &format!("{v3}/{{deployment_id}}/opinion"),
            get(opinion::get_opinion),
        );
    // The seed's PATCH and DELETE examples spell the path in French; serve it as written
    // (percent-encoded, either hex case).
    for models in ["mod%C3%A8les_publi%C3%A9s", "mod%c3%a8les_publi%c3%a9s"] {
        api = api.route(
            &format!("/v3/instances_wml/{{instance_id}}/{models}/{{published_model_id}}/deployments/{{deployment_id}}"),
            one(),
        );
    }
    let api = api
        .route("/v2/identity/token", get(identity::token))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(page::index))
        .route("/login", post(page::login))
        .route("/logout", post(page::logout))
        .route("/assets/opinion.js", get(page::script))
        .route("/assets/opinion.css", get(page::style))
        .route("/opinion/deployments", get(opinion::list))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(timeout(REQUEST_TIMEOUT));
    // Event streams outlive the request timeout: each ends by itself after
    // `opinion::STREAM_LIFETIME`, and at most `opinion::MAX_STREAMS` are open.
    let api = api.route("/opinion/stream/{deployment_id}", get(opinion::stream));
    Router::new()
        .route(
            "/pm/v1/model/{context_id}",
            put(models::put_model)
                .get(models::get_model)
                // The upload handler bounds the model itself (`http.max_model_bytes`).
                .layer::<_, Infallible>(DefaultBodyLimit::disable())
                .layer::<_, Infallible>(timeout(MODEL_TRANSFER_TIMEOUT)),
        )
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not answer that method",
            )
        })
        // `layer`, not `route_layer`: unmatched paths (404s, scans) are counted too, under
        // route="unmatched".
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        // One semaphore shared by every route (axum applies a layer per route).
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .with_state(state)
}

/// A per-route timeout answering 408.
fn timeout(d: Duration) -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, d)
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
        let mut res = (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 says how to authenticate (the token route says Basic instead).
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"streamscore\""),
            );
        }
        res
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
        let token = bearer_token(&parts.headers)
            .ok_or(AuthError::Missing("Authorization: Bearer token"))?;
        Ok(Authenticated(state.auth.verify(token)?))
    }
}

/// The token of an `Authorization: Bearer` header (the scheme is case-insensitive, RFC 9110).
pub(crate) fn bearer_token(headers: &header::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        })
}
