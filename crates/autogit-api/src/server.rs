//! The server: the router generated from the operation table, and the one gate every
//! operation passes (request id, rate limit per address, authentication, role and scope, rate
//! limit per principal, parsing into the operation's types, a deadline, the audit record).
//! Handlers (`handlers`) only call controllers and map their results.

use crate::handlers::Handle;
use crate::op::{Access, Info, Operation, RequestBody, Verb};
use crate::problem::Problem;
use autogit_app::access::{AccessController, AuthError, Principal};
use autogit_app::audit::{AuditEntry, AuditLog};
use autogit_app::{Bus, Settings, SharedClock};
use autogit_guard_service::limits::RateLimiter;
use autogit_guard_service::server::{ClientAddr, ConnLimits};
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How the server is run. Defaults suit a server behind the ingress.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Largest request body (default 1 MiB); larger gets `413`.
    pub max_body_bytes: usize,
    /// Deadline of one request, body included (default 30 s); then `503`/`408`.
    pub request_timeout: Duration,
    /// Requests per second per client address before authentication (default 50, burst 100).
    pub rate_per_addr: (f64, f64),
    /// Requests per second per principal (default 100, burst 200).
    pub rate_per_principal: (f64, f64),
    /// Time for a request's headers to arrive (default 10 s).
    pub header_timeout: Duration,
    /// Open connections at most (default 1024).
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            rate_per_addr: (50.0, 100.0),
            rate_per_principal: (100.0, 200.0),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// What every handler can reach: the settings, the controllers' shared parts, the
/// authentication and audit controllers.
pub struct Api {
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
    pub bus: Bus,
    pub access: AccessController,
    pub audit: AuditLog,
    pub options: ServeOptions,
    /// The guard, built once (its automata are not cheap to build).
    pub guard: autogit_guard::Guard,
    /// The plan of the configuration the server started with.
    pub plan: autogit_core::plan::Plan,
    pub(crate) by_addr: Mutex<RateLimiter<IpAddr>>,
    /// The key of the dashboard sessions' CSRF tokens (random per server).
    pub(crate) csrf_key: [u8; 32],
    by_principal: Mutex<RateLimiter<String>>,
    /// autogit's metrics (`GET /metrics`): the state store's events at scrape time, the
    /// gate's requests, the guard's analyses.
    pub metrics: Arc<autogit_app::metrics::Metrics>,
    /// The server's connection to the state store (`handlers::with_store`).
    pub(crate) state: Mutex<Option<autogit_drivers::state::Store>>,
    /// The log store's searches (`GET /api/v1/search/logs`).
    pub logs: Arc<autogit_app::logs::LogController>,
    /// The dashboard's OIDC sign-in, when `OIDC_ISSUER` is set.
    pub oidc: Option<Arc<autogit_app::oidc::OidcLogin>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("settings", &self.settings)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(
        settings: Arc<Settings>,
        bus: Bus,
        access: AccessController,
        audit: AuditLog,
        options: ServeOptions,
    ) -> Result<Self, String> {
        let plan = autogit_app::plan::quiet(&settings)?;
        // The deployment's guard: thresholds from `guard calibrate` and the refitted model,
        // when there are; a broken local model runs stages 1–3 (logged by the controller).
        let (guard, _) = autogit_app::guard::GuardController::new(&settings.data_dir)
            .deployed_guard()
            .map_err(|e| e.to_string())?;
        let logs = Arc::new(autogit_app::logs::LogController::new(
            settings.clone(),
            bus.clock().clone(),
        ));
        let metrics = Arc::new(autogit_app::metrics::Metrics::new());
        let oidc = autogit_app::oidc::OidcLogin::from_settings(&settings, bus.clock().clone())
            .map_err(|e| e.to_string())?
            .map(Arc::new);
        let mut csrf_key = [0u8; 32];
        getrandom::fill(&mut csrf_key)
            .map_err(|e| format!("no randomness for the CSRF key: {e}"))?;
        Ok(Self {
            csrf_key,
            clock: bus.clock().clone(),
            by_addr: Mutex::new(RateLimiter::new(
                options.rate_per_addr.0,
                options.rate_per_addr.1,
            )),
            by_principal: Mutex::new(RateLimiter::new(
                options.rate_per_principal.0,
                options.rate_per_principal.1,
            )),
            settings,
            bus,
            access,
            audit,
            options,
            guard,
            plan,
            metrics,
            state: Mutex::new(None),
            oidc,
            logs,
        })
    }

    /// Appends to the audit log off the async workers (it fsyncs). A record that cannot be
    /// written is logged: the request's outcome does not change after the fact.
    pub async fn record(&self, entry: AuditEntry) {
        let audit = self.audit.clone();
        let action = entry.action.clone();
        match tokio::task::spawn_blocking(move || audit.append(entry)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(action, error = %e, "audit record not written"),
            Err(e) => tracing::error!(action, error = %e, "audit task failed"),
        }
    }
}

/// What the gate learned about a request, handed to the handler.
#[derive(Debug, Clone)]
pub struct Cx {
    pub request_id: String,
    pub client: IpAddr,
    pub principal: Option<Principal>,
    /// `If-Match`, for operations with ETags.
    pub if_match: Option<String>,
    /// The raw bearer value (only the token endpoint reads it: a key exchanged for a token).
    pub bearer: Option<secrecy::SecretString>,
}

impl Cx {
    /// The principal's subject, or `anonymous`.
    pub fn actor(&self) -> String {
        self.principal
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |p| p.subject.clone())
    }
}

/// A handler's answer: the body, and what the gate should add.
#[derive(Debug)]
pub struct Reply<T> {
    pub body: T,
    /// The resource's ETag (quoted), for operations with ETags.
    pub etag: Option<String>,
    /// For paged lists: the total before paging, and the page (offset, limit).
    pub page: Option<(usize, usize, usize)>,
    /// The audit record's target, when it is not the path.
    pub target: Option<String>,
}

impl<T> Reply<T> {
    pub fn new(body: T) -> Self {
        Self {
            body,
            etag: None,
            page: None,
            target: None,
        }
    }
}

/// The ETag of a representation: a strong validator over its JSON.
pub fn etag_of<T: Serialize>(value: &T) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(value).unwrap_or_default();
    let d = Sha256::digest(&json);
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Checks `If-Match` against the resource's current ETag (`*` matches anything).
pub fn check_if_match(cx: &Cx, current: &str) -> Result<(), Problem> {
    match cx.if_match.as_deref().map(str::trim) {
        None | Some("") => Ok(()),
        Some("*") => Ok(()),
        Some(m)
            if m.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == current) =>
        {
            Ok(())
        }
        Some(_) => Err(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition-failed",
            format!("the resource changed: its ETag is now {current}; read it again"),
        )),
    }
}

/// The request's id: a sane `X-Request-Id` from the client, or a new one.
pub fn request_id_of(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(|| format!("{:016x}", fastrand::u64(..)), ToOwned::to_owned)
}

/// `Authorization: Bearer X`; `Err` for another scheme or a value that is not visible ASCII.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authorization must be `Bearer <API key or token>`",
        )
    };
    let v = v.to_str().map_err(|_| bad())?;
    let (scheme, rest) = v.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("bearer") || rest.trim().is_empty() {
        return Err(bad());
    }
    Ok(Some(rest.trim()))
}

/// An authentication failure as the client sees it: 401 with a short reason; 429 while the
/// account is locked after repeated failures; 503 when the check itself could not run.
pub fn auth_problem(e: &AuthError) -> Problem {
    if let Some(after) = e.retry_after() {
        return Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "locked",
            "too many failed attempts; retry after the Retry-After delay",
        )
        .retry_after(Duration::from_secs(after));
    }
    if e.is_internal() {
        return Problem::unavailable("auth-unavailable", e.reason());
    }
    if matches!(e, AuthError::NoRole(_)) {
        return Problem::new(StatusCode::FORBIDDEN, "no-role", e.reason());
    }
    Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.reason())
}

fn field_problem(location: &str, text: String) -> Problem {
    // serde's messages name the field and what was expected; they never echo a secret
    // (the only secret fields, passwords, are strings: a wrong type names the type only).
    Problem::invalid(location, text)
}

fn json_problem(e: serde_json::Error) -> Problem {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => field_problem("body", e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => {
            Problem::bad_request(format!("the body is not valid JSON: {e}"))
        }
    }
}

/// The gate, then the handler: one function for every operation.
async fn call<O: Handle>(State(api): State<Arc<Api>>, req: Request) -> Response {
    let info = O::INFO;
    let (mut parts, body) = req.into_parts();
    let rid = request_id_of(&parts.headers);
    let client = parts
        .extensions
        .get::<ClientAddr>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    let started = Instant::now();
    // The root of the request's trace (exported when OTLP_ENDPOINT is set): the controller's
    // and the drivers' spans open inside it. Named `<METHOD> <route>` (OpenTelemetry's HTTP
    // convention). Health checks are not traced: one per check interval, nothing to see.
    let span = if info.id == "meta.health" {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "api.request",
            otel.name = %format!("{} {}", parts.method, info.path),
            otel.kind = "server",
            operation = info.id,
            http.request.method = %parts.method,
            http.route = info.path,
            request_id = %rid,
            http.response.status_code = tracing::field::Empty,
        )
    };
    // A caller's W3C `traceparent` makes the request part of its trace.
    if let Some(tp) = parts
        .headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        autogit_drivers::telemetry::continue_trace(&span, tp);
    }
    let result = gate::<O>(&api, &mut parts, body, &rid, client)
        .instrument(span.clone())
        .await;
    let (resp, audit) = match result {
        Ok(r) => r,
        Err((p, audit)) => (p.with_instance(&rid).into_response(), audit),
    };
    let mut resp = resp;
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(mut entry) = audit {
        entry.status = Some(resp.status().as_u16());
        if entry.outcome.is_empty() {
            entry.outcome = if resp.status().is_success() {
                "ok".into()
            } else {
                "error".into()
            };
        }
        api.record(entry).await;
    }
    api.metrics.api_request(
        info.id,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    let status = resp.status().as_u16();
    span.record("http.response.status_code", status);
    let ms = started.elapsed().as_millis() as u64;
    // With traces on, one line per request ties its request id to its trace id (the log
    // store keeps both as correlation ids); without, the line is for debugging only.
    match span.in_scope(autogit_drivers::telemetry::current_trace_id) {
        Some(trace_id) => tracing::info!(
            parent: &span,
            op = info.id,
            status,
            ms,
            request_id = %rid,
            trace_id = %trace_id,
            "request"
        ),
        None => tracing::debug!(op = info.id, status, ms, request_id = %rid, "request"),
    }
    resp
}

type GateResult = Result<(Response, Option<AuditEntry>), (Problem, Option<AuditEntry>)>;

async fn gate<O: Handle>(
    api: &Arc<Api>,
    parts: &mut axum::http::request::Parts,
    body: axum::body::Body,
    rid: &str,
    client: IpAddr,
) -> GateResult {
    let info = O::INFO;
    let target = parts.uri.path().to_owned();
    let entry = |actor: String, role, outcome: &str| AuditEntry {
        actor,
        role,
        action: info.id.to_owned(),
        target: target.clone(),
        outcome: outcome.to_owned(),
        status: None,
        request_id: rid.to_owned(),
        source: Some(client.to_string()),
    };
    let presented = bearer(&parts.headers).ok().flatten().map(ToOwned::to_owned);
    let principal = authorize_parts::<O>(api, parts, rid, client).await?;
    let audit = info.mutates().then(|| {
        entry(
            principal
                .as_ref()
                .map_or_else(|| "anonymous".into(), |p| p.subject.clone()),
            principal.as_ref().map(|p| p.role),
            "",
        )
    });
    let fail = |p: Problem| (p, audit.clone());
    // 3. The request, parsed into the operation's types.
    let path = Path::<O::Path>::from_request_parts(parts, api)
        .await
        .map_err(|e| fail(field_problem("path", e.body_text())))?
        .0;
    let query = Query::<O::Query>::from_request_parts(parts, api)
        .await
        .map_err(|e| fail(field_problem("query", e.body_text())))?
        .0;
    let deadline = api.options.request_timeout;
    let body: O::Body = if <O::Body as RequestBody>::present() {
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if !is_json {
            return Err(fail(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as `Content-Type: application/json`",
            )));
        }
        let bytes = match tokio::time::timeout(
            deadline,
            axum::body::to_bytes(body, api.options.max_body_bytes),
        )
        .await
        {
            Err(_) => {
                return Err(fail(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "the body did not arrive in time",
                )));
            }
            Ok(Err(_)) => {
                return Err(fail(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!(
                        "the body is larger than {} bytes, or was cut off",
                        api.options.max_body_bytes
                    ),
                )));
            }
            Ok(Ok(b)) => b,
        };
        // An object, not an array that serde would also read as a struct.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| fail(json_problem(e)))?;
        if !value.is_object() {
            return Err(fail(Problem::invalid("body", "must be a JSON object")));
        }
        serde_json::from_value(value).map_err(|e| fail(json_problem(e)))?
    } else {
        // No body is read: a GET with a body, or extra bytes, is not an error.
        serde_json::from_value(serde_json::json!({})).map_err(|e| fail(json_problem(e)))?
    };
    let cx = Cx {
        request_id: rid.to_owned(),
        client,
        principal,
        if_match: parts
            .headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(ToOwned::to_owned),
        bearer: presented.map(secrecy::SecretString::from),
    };
    // 4. The handler, under the deadline.
    let reply = match tokio::time::timeout(deadline, O::handle(api, &cx, path, query, body)).await {
        Err(_) => {
            return Err(fail(Problem::unavailable(
                "timeout",
                format!(
                    "the operation took longer than {} s; it may still complete: check the events",
                    deadline.as_secs()
                ),
            )));
        }
        Ok(Err(p)) => return Err(fail(p)),
        Ok(Ok(r)) => r,
    };
    let mut audit = audit;
    if let (Some(a), Some(t)) = (audit.as_mut(), reply.target.as_ref()) {
        a.target.clone_from(t);
    }
    Ok((render::<O>(parts, reply), audit))
}

/// The gate's first half, shared by every route (the event stream too): rate limit per
/// address, authentication, role and scope, rate limit per principal. Denials are audited.
async fn authorize_parts<O: Operation>(
    api: &Arc<Api>,
    parts: &axum::http::request::Parts,
    rid: &str,
    client: IpAddr,
) -> Result<Option<Principal>, (Problem, Option<AuditEntry>)> {
    let info = O::INFO;
    let target = parts.uri.path().to_owned();
    let entry = |actor: String, role, outcome: &str| AuditEntry {
        actor,
        role,
        action: info.id.to_owned(),
        target: target.clone(),
        outcome: outcome.to_owned(),
        status: None,
        request_id: rid.to_owned(),
        source: Some(client.to_string()),
    };
    // 1. Rate limit per address, before any work.
    let taken = api
        .by_addr
        .lock()
        .map_or(Ok(()), |mut l| l.take(client, Instant::now()));
    if let Err(wait) = taken {
        return Err((
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!("too many requests from {client}; retry after the Retry-After delay"),
            )
            .retry_after(wait),
            None,
        ));
    }
    // 2. Authentication, role and scope: a bearer credential, else the dashboard's session
    //    cookie, which may change something only with its CSRF token from the same site.
    let mut presented =
        bearer(&parts.headers).map_err(|p| (p, Some(entry("anonymous".into(), None, "denied"))))?;
    if presented.is_none()
        && let Some(session) = crate::dashboard::session_cookie(&parts.headers)
    {
        crate::dashboard::check_csrf(api, &parts.headers, session, info.verb)
            .map_err(|p| (p, Some(entry("anonymous".into(), None, "denied"))))?;
        presented = Some(session);
    }
    let mut principal = None;
    if let Access::Role(required) = info.access {
        let Some(token) = presented else {
            return Err((
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "send `Authorization: Bearer <API key or token>` (create a key with `autogit api-key create`)",
                ),
                Some(entry("anonymous".into(), None, "denied")),
            ));
        };
        // A key's first use runs argon2 (tens of ms): off the async workers.
        let result = if api.access.needs_blocking(token) {
            let (access, token) = (api.access.clone(), token.to_owned());
            tokio::task::spawn_blocking(move || access.authenticate(&token))
                .await
                .unwrap_or_else(|e| Err(AuthError::Internal(e.to_string())))
        } else {
            api.access.authenticate(token)
        };
        let p = result.map_err(|e| {
            (
                auth_problem(&e),
                Some(entry("anonymous".into(), None, "denied")),
            )
        })?;
        if !p.permits(required, info.area) {
            let why = if p.role.allows(required) {
                format!("this key's scopes do not include `{}`", info.area)
            } else {
                format!(
                    "this needs the `{required}` role; the credentials have `{}`",
                    p.role
                )
            };
            return Err((
                Problem::new(StatusCode::FORBIDDEN, "forbidden", why),
                Some(entry(p.subject.clone(), Some(p.role), "denied")),
            ));
        }
        let taken = api
            .by_principal
            .lock()
            .map_or(Ok(()), |mut l| l.take(p.subject.clone(), Instant::now()));
        if let Err(wait) = taken {
            return Err((
                Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    format!(
                        "too many requests for {}; retry after the Retry-After delay",
                        p.subject
                    ),
                )
                .retry_after(wait),
                None,
            ));
        }
        principal = Some(p);
    }
    Ok(principal)
}

/// [`authorize_parts`] for a route outside [`call`]: the denial as a response, audited.
pub async fn authorize<O: Operation>(
    api: &Arc<Api>,
    parts: &mut axum::http::request::Parts,
    rid: &str,
) -> Result<Option<Principal>, Response> {
    let client = parts
        .extensions
        .get::<ClientAddr>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    match authorize_parts::<O>(api, parts, rid, client).await {
        Ok(p) => Ok(p),
        Err((p, audit)) => {
            let mut resp = p.with_instance(rid).into_response();
            if let Ok(v) = HeaderValue::from_str(rid) {
                resp.headers_mut()
                    .insert(HeaderName::from_static("x-request-id"), v);
            }
            if let Some(mut a) = audit {
                a.status = Some(resp.status().as_u16());
                api.record(a).await;
            }
            Err(resp)
        }
    }
}

fn render<O: Operation>(parts: &axum::http::request::Parts, reply: Reply<O::Response>) -> Response {
    let info: Info = O::INFO;
    let etag = reply
        .etag
        .or_else(|| (info.etag && info.verb == Verb::Get).then(|| etag_of(&reply.body)));
    if info.verb == Verb::Get
        && let (Some(tag), Some(inm)) = (
            &etag,
            parts
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok()),
        )
        && inm
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == tag)
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(tag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    let status = StatusCode::from_u16(info.success).unwrap_or(StatusCode::OK);
    let mut resp = (status, axum::Json(reply.body)).into_response();
    let h = resp.headers_mut();
    if let Some(tag) = etag
        && let Ok(v) = HeaderValue::from_str(&tag)
    {
        h.insert(header::ETAG, v);
    }
    if let Some((total, offset, limit)) = reply.page {
        h.insert(
            HeaderName::from_static("x-total-count"),
            HeaderValue::from(total),
        );
        if offset + limit < total {
            let next = format!(
                "<{}?offset={}&limit={}>; rel=\"next\"",
                info.path,
                offset + limit,
                limit
            );
            if let Ok(v) = HeaderValue::from_str(&next) {
                h.insert(header::LINK, v);
            }
        }
    }
    resp
}

/// Security headers on every answer; no CORS headers (closed: the dashboard is same-origin).
async fn secure_headers(req: Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    // The dashboard's pages set their own (their script and stylesheet); the rest load nothing.
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn not_found(req: Request) -> Response {
    Problem::not_found(format!(
        "no operation at {}; the operations are listed at /api/v1/openapi.json",
        req.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!(
            "{} is not an operation on {}",
            req.method(),
            req.uri().path()
        ),
    )
    .into_response()
}

async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(crate::openapi::json).clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

type Routes = std::collections::BTreeMap<&'static str, axum::routing::MethodRouter<Arc<Api>>>;

/// Adds operation `O` to the method router of its path.
fn route<O: Handle>(routes: &mut Routes) {
    let info = O::INFO;
    let mr = routes.remove(info.path).unwrap_or_default();
    let mr = if crate::events::is_stream::<O>() {
        mr.get(crate::events::stream)
    } else if crate::metrics::is_scrape::<O>() {
        mr.get(crate::metrics::scrape)
    } else {
        let h = call::<O>;
        match info.verb {
            Verb::Get => mr.get(h),
            Verb::Post => mr.post(h),
            Verb::Delete => mr.delete(h),
        }
    };
    routes.insert(info.path, mr);
}

/// The router: every operation of the table, the OpenAPI document, problem+json for
/// everything else (unknown paths, other methods), security headers everywhere.
pub fn router(api: Arc<Api>) -> Router {
    let mut routes = Routes::new();
    macro_rules! add_all {
        ($($op:ident),*) => { $( route::<crate::ops::$op>(&mut routes); )* };
    }
    crate::for_each_operation!(add_all);
    let mut r: Router<Arc<Api>> = Router::new();
    for (path, mr) in routes {
        r = r.route(path, mr.fallback(method_not_allowed));
    }
    r.route(
        "/api/v1/openapi.json",
        axum::routing::get(openapi_json).fallback(method_not_allowed),
    )
    .merge(crate::dashboard::routes())
    .fallback(not_found)
    .layer(axum::middleware::from_fn(secure_headers))
    .with_state(api)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = ConnLimits {
        header_timeout: api.options.header_timeout,
        max_connections: api.options.max_connections,
        name: "autogit serve",
    };
    autogit_guard_service::server::serve_app(listener, router(api), &limits, shutdown).await;
}

/// The address a listener reports, for the log line.
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
