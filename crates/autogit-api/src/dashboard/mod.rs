//! The dashboard: server-rendered pages at `/`, over the same operations, roles and event
//! stream as the API (`/api/v1`), nothing private.
//!
//! - A page calls the operations' handlers ([`pages::View::get`]) as the signed-in
//!   principal, after the same role and scope check the API's gate makes; a button or a form
//!   calls the API itself from the browser (`assets/app.js`), so the API refuses what the
//!   role does not allow whether or not the button was shown.
//! - Sign-in takes an API key, or a user's name and password (`api-user add`, the auth
//!   providers), and exchanges it for a short-lived token (the API's JWT) kept in an
//!   `HttpOnly; Secure; SameSite=Strict` cookie named with the `__Host-` prefix (no
//!   `Domain`, so a sibling subdomain cannot set or read it).
//! - A request authenticated by that cookie that changes anything must carry the session's
//!   CSRF token (`X-CSRF-Token`, HMAC-SHA256 of the session under a per-server key) and must
//!   not come from another site (`Sec-Fetch-Site`, `Origin`); see [`check_csrf`].
//! - Live parts: the page script follows `/api/v1/events` and, on an event, fetches the
//!   page's `<main>` again (`X-Autogit-Fragment: main`) and swaps it in. No framework, no
//!   build step: the script and the stylesheet are compiled into the binary.

pub mod oidc;
pub mod pages;

use crate::op::Verb;
use crate::problem::Problem;
use crate::server::{Api, Cx, auth_problem, request_id_of};
use autogit_app::access::{AuthError, Principal};
use autogit_app::audit::AuditEntry;
use autogit_guard_service::server::ClientAddr;
use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The session cookie. `__Host-`: the browser keeps it only when it is `Secure`, has
/// `Path=/` and no `Domain`.
pub const COOKIE: &str = "__Host-autogit-session";
/// A session lasts at most this long (and never past the credential it came from).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The header a cookie-authenticated change carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header that asks for a page's `<main>` only (the live refresh).
pub const FRAGMENT_HEADER: &str = "x-autogit-fragment";

pub(crate) const APP_JS: &str = include_str!("assets/app.js");
pub(crate) const APP_CSS: &str = include_str!("assets/app.css");

/// The dashboard's Content-Security-Policy: its own script and stylesheet only, no inline
/// script, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The session token in the request's cookies.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

fn mac(key: &[u8; 32], session: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(b"autogit-csrf\0");
    m.update(session.as_bytes());
    m
}

/// The CSRF token of a session: hex HMAC-SHA256 under the server's key.
pub fn csrf_token(key: &[u8; 32], session: &str) -> String {
    mac(key, session)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Whether `presented` is the session's CSRF token (compared in constant time).
pub fn csrf_matches(key: &[u8; 32], session: &str, presented: &str) -> bool {
    hex_decode(presented).is_some_and(|tag| mac(key, session).verify_slice(&tag).is_ok())
}

/// Whether the request says it comes from another site: `Sec-Fetch-Site` other than
/// `same-origin`/`none` where the browser sends it (every current one does), else an
/// `Origin` whose host is not the `Host` asked for. (With `Referrer-Policy: no-referrer`
/// a browser sends `Origin: null` even for a same-origin form, so `Sec-Fetch-Site` decides
/// when present.)
fn cross_site(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or_default();
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        return origin == "null" || !origin_host.eq_ignore_ascii_case(host);
    }
    false
}

/// The check a request authenticated by the session cookie passes before it may change
/// anything: not from another site, and the session's CSRF token in `X-CSRF-Token`.
pub fn check_csrf(
    api: &Api,
    headers: &HeaderMap,
    session: &str,
    verb: Verb,
) -> Result<(), Problem> {
    if verb == Verb::Get {
        return Ok(());
    }
    let forbidden = |why: &str| Problem::new(StatusCode::FORBIDDEN, "csrf", why);
    if cross_site(headers) {
        return Err(forbidden(
            "a change made with the dashboard's session must come from the dashboard itself",
        ));
    }
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !csrf_matches(&api.csrf_key, session, presented) {
        return Err(forbidden(
            "the X-CSRF-Token header is missing or not this session's; reload the page",
        ));
    }
    Ok(())
}

/// The principal of a request's session cookie, with the token itself.
pub(crate) async fn session_of(api: &Api, headers: &HeaderMap) -> Option<(Principal, String)> {
    let token = session_cookie(headers)?;
    // A session is always a token (never a key), so this never runs argon2.
    if api.access.needs_blocking(token) {
        return None;
    }
    let p = api.access.authenticate(token).ok()?;
    Some((p, token.to_owned()))
}

fn client_of(req_ext: &axum::http::Extensions) -> IpAddr {
    req_ext
        .get::<ClientAddr>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

fn with_dashboard_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

/// Where to go after signing in: a path on this site, never another origin.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn session_cookie_header(token: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    /// Set by the sign-in redirect: the browser did not send the cookie back.
    retry: Option<String>,
}

async fn login_page(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    if session_of(&api, &headers).await.is_some() {
        return redirect(&safe_next(q.next.as_deref()));
    }
    let message = q.retry.is_some().then_some(
        "Signed in, but the browser did not keep the session cookie. The dashboard needs \
         HTTPS (the ingress serves it at dash.<domain>) or http://localhost.",
    );
    let body = pages::login(
        &safe_next(q.next.as_deref()),
        message,
        &api.access.providers(),
        api.oidc.is_some(),
    );
    with_dashboard_headers(
        (
            if message.is_some() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            },
            Html(body.into_string()),
        )
            .into_response(),
    )
}

/// The sign-in form. Secrets are never echoed, logged or kept past the exchange.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    next: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

async fn login_submit(State(api): State<Arc<Api>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let rid = request_id_of(&parts.headers);
    let client = client_of(&parts.extensions);
    let fail = |status: StatusCode, message: &str, next: &str| {
        with_dashboard_headers(
            (
                status,
                Html(
                    pages::login(
                        next,
                        Some(message),
                        &api.access.providers(),
                        api.oidc.is_some(),
                    )
                    .into_string(),
                ),
            )
                .into_response(),
        )
    };
    if cross_site(&parts.headers) {
        return fail(
            StatusCode::FORBIDDEN,
            "Sign in from the dashboard's own page.",
            "/",
        );
    }
    let taken = api
        .by_addr
        .lock()
        .map_or(Ok(()), |mut l| l.take(client, Instant::now()));
    if taken.is_err() {
        return fail(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests from this address; wait a moment and try again.",
            "/",
        );
    }
    let req = Request::from_parts(parts, body);
    let Ok(Form(form)) = Form::<LoginForm>::from_request(req, &()).await else {
        return fail(
            StatusCode::BAD_REQUEST,
            "The sign-in form was not readable.",
            "/",
        );
    };
    let next = safe_next(Some(&form.next));
    let result: Result<Principal, AuthError> = if !form.key.trim().is_empty() {
        let (access, key) = (api.access.clone(), form.key.trim().to_owned());
        tokio::task::spawn_blocking(move || access.authenticate(&key))
            .await
            .unwrap_or_else(|e| Err(AuthError::Internal(e.to_string())))
    } else if !form.username.is_empty() && !form.password.is_empty() {
        let password = secrecy::SecretString::from(form.password.clone());
        let provider = (!form.provider.is_empty()).then_some(form.provider.as_str());
        api.access.login(provider, &form.username, &password).await
    } else {
        return fail(
            StatusCode::BAD_REQUEST,
            "Enter an API key, or a user name and a password.",
            &next,
        );
    };
    let audit = |actor: String, role, outcome: &str, status: StatusCode| AuditEntry {
        actor,
        role,
        action: "dashboard.login".into(),
        target: "/login".into(),
        outcome: outcome.into(),
        status: Some(status.as_u16()),
        request_id: rid.clone(),
        source: Some(client.to_string()),
    };
    let principal = match result {
        Ok(p) => p,
        Err(e) => {
            let problem = auth_problem(&e);
            let status = problem.status_code();
            api.record(audit("anonymous".into(), None, "denied", status))
                .await;
            let message = match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    "Too many failed attempts: this sign-in is locked for a while. Try again later."
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    "Sign-in is unavailable right now (the credential store or the directory could not be read)."
                }
                StatusCode::FORBIDDEN => {
                    "Signed in, but this account is in no group that has a role here; ask an administrator."
                }
                _ => "Those credentials were not accepted.",
            };
            return fail(status, message, &next);
        }
    };
    let issued = match api.access.issue_token(&principal, Some(SESSION_TTL)) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard session not issued");
            return fail(
                StatusCode::UNAUTHORIZED,
                "These credentials cannot open a session (expired?).",
                &next,
            );
        }
    };
    api.record(audit(
        principal.subject.clone(),
        Some(principal.role),
        "ok",
        StatusCode::SEE_OTHER,
    ))
    .await;
    use secrecy::ExposeSecret;
    let ttl = (issued.expires_at - api.clock.now() as i64).max(0) as u64;
    // Through the sign-in page, which checks that the cookie came back (`retry`).
    let q = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC);
    let mut resp = redirect(&format!("/login?retry=1&next={q}"));
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie_header(issued.token.expose_secret(), ttl),
    );
    resp
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(api): State<Arc<Api>>, req: Request) -> Response {
    let headers = req.headers().clone();
    if let Some((p, token)) = session_of(&api, &headers).await {
        let presented = Form::<LogoutForm>::from_request(req, &())
            .await
            .map(|Form(f)| f.csrf)
            .unwrap_or_default();
        if cross_site(&headers) || !csrf_matches(&api.csrf_key, &token, &presented) {
            return Problem::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "sign out from the dashboard's own page",
            )
            .into_response();
        }
        if let Some(id) = &p.token_id
            && let Err(e) = api.access.revoke_token(id)
        {
            tracing::warn!(error = %e, "dashboard session not revoked");
        }
    }
    let mut resp = redirect("/login");
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie_header("", 0));
    resp
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}

/// A short, stable version of the assets, for their URLs (`?v=`): a new binary's assets are
/// fetched again, the same binary's are cached for good.
pub fn assets_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        use sha2::Digest;
        let d = Sha256::new()
            .chain_update(APP_JS)
            .chain_update(APP_CSS)
            .finalize();
        d.iter().take(6).map(|b| format!("{b:02x}")).collect()
    })
}

/// One page: the signed-in principal or a redirect to the sign-in page; then the whole page,
/// or its `<main>` only for the live refresh.
async fn page(State(api): State<Arc<Api>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let Some((principal, token)) = session_of(&api, &parts.headers).await else {
        if parts.headers.contains_key(FRAGMENT_HEADER) {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the session has ended; sign in again",
            )
            .into_response();
        }
        let next = parts
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned());
        let q: String =
            percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        return redirect(&format!("/login?next={q}"));
    };
    let cx = Cx {
        request_id: request_id_of(&parts.headers),
        client: client_of(&parts.extensions),
        principal: Some(principal.clone()),
        if_match: None,
        bearer: None,
    };
    let view = pages::View {
        csrf: csrf_token(&api.csrf_key, &token),
        now: api.clock.now(),
        api: api.clone(),
        cx,
        principal,
        query: parts.uri.query().unwrap_or_default().to_owned(),
    };
    let Some((title, main)) = pages::render(&view, &path).await else {
        return with_dashboard_headers(
            (
                StatusCode::NOT_FOUND,
                Html(
                    pages::layout(&view, "Not found", &path, pages::not_found(&path)).into_string(),
                ),
            )
                .into_response(),
        );
    };
    let body = if parts.headers.contains_key(FRAGMENT_HEADER) {
        main.into_string()
    } else {
        pages::layout(&view, &title, &path, main).into_string()
    };
    with_dashboard_headers(Html(body).into_response())
}

/// The dashboard's routes, merged into the API's router.
pub fn routes() -> Router<Arc<Api>> {
    use axum::routing::{get, post};
    let mut r = Router::new()
        .route("/login", get(login_page).post(login_submit))
        .route("/login/oidc", get(oidc::begin))
        .route("/login/oidc/callback", get(oidc::callback))
        .route("/logout", post(logout))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        );
    for p in pages::PATHS {
        r = r.route(p, get(page));
    }
    r
}

use axum::extract::FromRequest;
