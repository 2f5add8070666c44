//! The dashboard's OIDC sign-in (`docs/dashboard.md`, "OIDC"): `GET /login/oidc` starts it
//! (`autogit_app::oidc::OidcLogin::begin`) and sends the browser to the provider with the
//! login's `state` in a short-lived cookie; `GET /login/oidc/callback` checks that the
//! callback's `state` is this browser's, completes the login and opens the session as the
//! password sign-in does. The code, the verifier and the tokens are never logged.

use super::{
    SESSION_TTL, client_of, redirect, safe_next, session_cookie_header, with_dashboard_headers,
};
use crate::server::{Api, request_id_of};
use autogit_app::audit::AuditEntry;
use autogit_app::oidc::OidcLoginError;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;

/// The cookie binding a sign-in's `state` to the browser that started it. `SameSite=Lax`:
/// the provider's redirect back is a top-level cross-site navigation.
pub const STATE_COOKIE: &str = "__Host-autogit-oidc";

fn state_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, value)| *name == STATE_COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

fn state_cookie_header(state: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={state}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

fn page(api: &Api, status: StatusCode, message: &str) -> Response {
    with_dashboard_headers(
        (
            status,
            Html(
                super::pages::login(
                    "/",
                    Some(message),
                    &api.access.providers(),
                    api.oidc.is_some(),
                )
                .into_string(),
            ),
        )
            .into_response(),
    )
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct BeginQuery {
    next: Option<String>,
}

pub(super) async fn begin(State(api): State<Arc<Api>>, Query(q): Query<BeginQuery>) -> Response {
    let Some(oidc) = api.oidc.clone() else {
        return page(
            &api,
            StatusCode::NOT_FOUND,
            "OIDC sign-in is not configured (OIDC_ISSUER).",
        );
    };
    match oidc.begin(&safe_next(q.next.as_deref())).await {
        Ok(started) => {
            let mut r = redirect(&started.url);
            r.headers_mut().insert(
                header::SET_COOKIE,
                state_cookie_header(&started.state, autogit_core::oidc::PENDING_TTL),
            );
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "OIDC sign-in not started");
            page(
                &api,
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in with OIDC is unavailable right now (the provider could not be reached).",
            )
        }
    }
}

/// The callback's query. `error` is the provider's (RFC 6749 4.1.2.1).
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
}

pub(super) async fn callback(State(api): State<Arc<Api>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let rid = request_id_of(&parts.headers);
    let client = client_of(&parts.extensions);
    let Some(oidc) = api.oidc.clone() else {
        return page(
            &api,
            StatusCode::NOT_FOUND,
            "OIDC sign-in is not configured (OIDC_ISSUER).",
        );
    };
    let taken = api
        .by_addr
        .lock()
        .map_or(Ok(()), |mut l| l.take(client, Instant::now()));
    if taken.is_err() {
        return page(
            &api,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests from this address; wait a moment and try again.",
        );
    }
    let Ok(Query(q)) = Query::<CallbackQuery>::try_from_uri(&parts.uri) else {
        return page(
            &api,
            StatusCode::BAD_REQUEST,
            "The sign-in callback was not readable.",
        );
    };
    let audit = |actor: String, role, outcome: &str, status: StatusCode| AuditEntry {
        actor,
        role,
        action: "dashboard.login".into(),
        target: "/login/oidc/callback".into(),
        outcome: outcome.into(),
        status: Some(status.as_u16()),
        request_id: rid.clone(),
        source: Some(client.to_string()),
    };
    // The state must be the one this browser was given: a callback from another browser (a
    // login CSRF) or a replay is refused before the code is used.
    if q.state.is_empty() || state_cookie(&parts.headers) != Some(q.state.as_str()) {
        api.record(audit(
            "anonymous".into(),
            None,
            "denied",
            StatusCode::BAD_REQUEST,
        ))
        .await;
        return page(
            &api,
            StatusCode::BAD_REQUEST,
            "This sign-in did not start in this browser, or it expired; start it again.",
        );
    }
    if !q.error.is_empty() {
        let code: String = q
            .error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        api.record(audit(
            "anonymous".into(),
            None,
            "denied",
            StatusCode::UNAUTHORIZED,
        ))
        .await;
        return page(
            &api,
            StatusCode::UNAUTHORIZED,
            &format!("The provider did not sign you in ({code})."),
        );
    }
    let (principal, next) = match oidc.complete(&q.state, &q.code).await {
        Ok(done) => done,
        Err(e) => {
            let (status, message) = match &e {
                OidcLoginError::Unavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in with OIDC is unavailable right now (the provider could not be reached).",
                ),
                OidcLoginError::UnknownState => (
                    StatusCode::BAD_REQUEST,
                    "This sign-in is unknown or expired; start it again.",
                ),
                OidcLoginError::Denied(_) => (
                    StatusCode::UNAUTHORIZED,
                    "The provider's answer was not accepted.",
                ),
                OidcLoginError::NoRole(_) => (
                    StatusCode::FORBIDDEN,
                    "Signed in, but this account is in no group that has a role here; ask an administrator.",
                ),
            };
            tracing::warn!(error = %e, "OIDC sign-in refused");
            api.record(audit("anonymous".into(), None, "denied", status))
                .await;
            let mut r = page(&api, status, message);
            r.headers_mut()
                .append(header::SET_COOKIE, state_cookie_header("", 0));
            return r;
        }
    };
    let issued = match api.access.issue_token(&principal, Some(SESSION_TTL)) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard session not issued");
            return page(
                &api,
                StatusCode::SERVICE_UNAVAILABLE,
                "The session could not be opened.",
            );
        }
    };
    api.record(audit(
        principal.subject.clone(),
        Some(principal.role),
        "ok",
        StatusCode::OK,
    ))
    .await;
    use secrecy::ExposeSecret;
    let ttl = (issued.expires_at - api.clock.now() as i64).max(0) as u64;
    // A page rather than a redirect: the browser sends a SameSite=Strict cookie on a
    // navigation this page starts, not on a redirect chain the provider started.
    let next_attr = maud::html! { (next) }.into_string();
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url={next_attr}\"><title>Signed in · autogit</title></head>\
         <body><p>Signed in. <a href=\"{next_attr}\">Continue</a></p></body></html>"
    );
    let mut r = with_dashboard_headers((StatusCode::OK, Html(body)).into_response());
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        session_cookie_header(issued.token.expose_secret(), ttl),
    );
    h.append(header::SET_COOKIE, state_cookie_header("", 0));
    r
}
