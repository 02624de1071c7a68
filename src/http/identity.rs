//! `GET /v2/identity/token`: HTTP basic auth in, `{"token": …}` out. Password checks pass the
//! [`LoginGate`](super::throttle::LoginGate): bounded concurrency, a short queue, and failed
//! logins limited per client address.

use super::throttle::Refusal;
use super::{ApiError, AppState};
use crate::auth::AuthError;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;
use std::net::SocketAddr;

/// Issues a bearer token for a configured user.
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match issue(&state, client, &headers).await {
        Ok(token) => Json(json!({ "token": token })).into_response(),
        Err(e) => e,
    }
}

async fn issue(
    state: &AppState,
    client: SocketAddr,
    headers: &HeaderMap,
) -> Result<String, Response> {
    let refused = |e: AuthError| {
        let mut res = ApiError::from(e).into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"streamscore\""),
        );
        res
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..6)
                .filter(|s| s.eq_ignore_ascii_case("basic "))
                .map(|_| &v[6..])
        })
        .ok_or_else(|| refused(AuthError::Missing("HTTP basic authentication")))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| refused(AuthError::BadPassword))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| refused(AuthError::BadPassword))?;
    let (user, password) = (user.to_owned(), password.to_owned());
    let outcome = state
        .login
        .check(client.ip(), user.clone(), password)
        .await
        .map_err(refusal)?;
    outcome.map_err(refused)?;
    Ok(state.auth.issue(&user))
}

/// The answer to a login refused before its password was checked.
pub(super) fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Busy => {
            let mut res = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many logins in progress; retry in a moment",
            )
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            res
        }
        Refusal::TooManyFailures(wait) => {
            let secs = wait.as_secs().max(1);
            let mut res = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                format!("too many failed logins from this address; retry in {secs} s"),
            )
            .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
    }
}
