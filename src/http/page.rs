//! The live opinion page at `/`, its login, and its two assets (script and style sheet, built
//! into the binary: the page needs nothing from any other host).
//!
//! `GET /` answers the page to a request with a valid session cookie and the login form to
//! anyone else. `POST /login` checks the user's password through the same [`LoginGate`]
//! as the token route (bounded concurrency, failures limited per address) and sets the session
//! cookie: `HttpOnly` (no script can read it), `SameSite=Strict` (no other site can send it),
//! holding a signed token that expires like an API token. `POST /logout` clears it.
//!
//! [`LoginGate`]: super::throttle::LoginGate

use super::opinion::{session_cookie, SESSION_COOKIE};
use super::AppState;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::net::SocketAddr;

const PAGE: &str = include_str!("../../assets/opinion.html");
const LOGIN: &str = include_str!("../../assets/login.html");
const SCRIPT: &str = include_str!("../../assets/opinion.js");
const STYLE: &str = include_str!("../../assets/opinion.css");

/// Everything the page loads comes from this daemon; nothing inline, nothing framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html(body: &'static str, status: StatusCode) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// `GET /`: the page for a signed-in user, else the login form.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = session_cookie(&headers).is_some_and(|t| state.auth.verify(t).is_ok());
    if signed_in {
        html(PAGE, StatusCode::OK)
    } else {
        html(LOGIN, StatusCode::OK)
    }
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
}

/// `POST /login`: sets the session cookie and goes to the page, or back to the form.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let checked = state
        .login
        .check(client.ip(), form.user.clone(), form.password)
        .await;
    match checked {
        Ok(Ok(())) => {
            let token = state.auth.issue(&form.user);
            let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            let mut res = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Ok(Err(_)) => Redirect::to("/?failed=1").into_response(),
        Err(refusal) => super::identity::refusal(refusal),
    }
}

/// `POST /logout`: clears the session cookie.
pub async fn logout() -> Response {
    let mut res = Redirect::to("/").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "streamscore_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    res
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// `GET /assets/opinion.js`.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /assets/opinion.css`.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
