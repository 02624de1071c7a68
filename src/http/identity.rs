//! `GET /v2/identity/token`: HTTP basic auth in, `{"token": …}` out.

use super::{ApiError, AppState};
use crate::auth::AuthError;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

/// Issues a bearer token for a configured user.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or(AuthError::Missing("HTTP basic authentication"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(AuthError::BadPassword)?;
    let (user, password) = decoded.split_once(':').ok_or(AuthError::BadPassword)?;
    let (user, password) = (user.to_owned(), password.to_owned());
    // Argon2 verification is deliberately slow: keep it off the async threads.
    let auth = state.auth.clone();
    let checked =
        tokio::task::spawn_blocking(move || auth.check_password(&user, &password).map(|()| user))
            .await
            .map_err(|_| AuthError::BadPassword)?;
    let user = checked?;
    Ok(Json(json!({"token": state.auth.issue(&user)})))
}
