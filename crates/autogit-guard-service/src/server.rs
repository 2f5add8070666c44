//! `guard serve`: the HTTP face of the guard.
//!
//! - `GET /healthz` – liveness.
//! - `POST /guard/check` – `{"text": "..."}` in, the full analysis out.
//! - `ANY /guard/forward-auth` – Traefik `forwardAuth` target (with `forwardBody: true`):
//!   `200` lets the request through, `403` with a JSON error blocks it.
//! - anything else, when an upstream is configured – reverse proxy: the JSON body's prompt
//!   fields are inspected (OpenAI-style `messages[].content`, `prompt`, `input`; Ollama-style
//!   `prompt`, `system`, `messages`), a blocked request gets a `403` JSON error, everything
//!   else is forwarded and the upstream response – including streaming (SSE or NDJSON)
//!   responses – is passed back chunk by chunk, untouched.
//!
//! Suspicious and blocked prompts are written to the quarantine store when one is configured.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autogit_guard::{Analysis, Guard, Verdict};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

use crate::ServiceError;
use crate::body::{Body as ReadBody, Unreadable};
use crate::limits::{AuthToken, RateLimiter, check_exposure};
use crate::store::{QuarantineStore, Quota};

/// Server options beyond the guard's own configuration.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Base URL of the inference API to proxy to (`http://127.0.0.1:11434`), if any.
    pub upstream: Option<String>,
    /// Upstreams chosen by the request's `Host` (lower case, without the port): one guard in
    /// front of several services, as the ingress's `platform.guard_proxy` sends them. A
    /// request for a host not listed goes to `upstream`, or gets `404` without one.
    pub upstream_hosts: Vec<(String, String)>,
    /// More upstreams by host, from a file of `HOST=URL` lines that is read again whenever
    /// it is replaced (the compute controller's routes of inference services); after
    /// `upstream_hosts`, before `upstream`.
    pub upstream_file: Option<UpstreamFile>,
    /// Largest request body accepted (default 8 MiB); larger bodies get `413`.
    pub max_body_bytes: usize,
    /// Also inspect `system`/`developer` messages (they normally come from the operator).
    pub scan_system: bool,
    /// The shared secret every route but `/healthz` requires; `None`: no authentication
    /// (only on loopback, or with `insecure_no_auth`).
    pub auth_token: Option<AuthToken>,
    /// Serve without a token on a non-loopback address (something in front authenticates).
    pub insecure_no_auth: bool,
    /// Time for a request's headers to arrive (default 10 s); then the connection is closed.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive (default 30 s); then `408`.
    pub body_timeout: Duration,
    /// Open connections at most (default 1024); more get `503`.
    pub max_connections: usize,
    /// Request body bytes held in memory at once, over all requests (default 64 MiB); a
    /// request that would exceed it gets `503` with `Retry-After`.
    pub max_inflight_body_bytes: usize,
    /// Quarantine quota (default 10 000 records, 256 MiB); see [`Quota`].
    pub quarantine_quota: Option<Quota>,
    /// Requests per second per client address (default 10; 0 disables), every route but
    /// `/healthz`; more get `429` with `Retry-After`.
    pub rate_per_sec: f64,
    /// Requests a client may send at once before the rate applies (default 40).
    pub rate_burst: f64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            upstream: None,
            upstream_hosts: Vec::new(),
            upstream_file: None,
            max_body_bytes: 8 << 20,
            scan_system: false,
            auth_token: None,
            insecure_no_auth: false,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_inflight_body_bytes: 64 << 20,
            quarantine_quota: Some(Quota {
                max_items: 10_000,
                max_bytes: 256 << 20,
            }),
            rate_per_sec: 10.0,
            rate_burst: 40.0,
        }
    }
}

/// Shared server state.
#[derive(Debug)]
pub struct ServerState {
    guard: Guard,
    store: Option<Mutex<QuarantineStore>>,
    options: ServeOptions,
    client: reqwest::Client,
    body_budget: Arc<Semaphore>,
    limiter: Mutex<RateLimiter>,
    full_warned: AtomicBool,
}

impl ServerState {
    /// Build the state; `store` receives suspicious and blocked prompts (within the quota).
    pub fn new(
        guard: Guard,
        store: Option<QuarantineStore>,
        options: ServeOptions,
    ) -> Result<Self, ServiceError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ServiceError::Http(e.to_string()))?;
        let store = store.map(|mut s| {
            s.set_quota(options.quarantine_quota);
            Mutex::new(s)
        });
        let budget = options
            .max_inflight_body_bytes
            .max(options.max_body_bytes)
            .clamp(1, Semaphore::MAX_PERMITS);
        Ok(Self {
            guard,
            store,
            client,
            body_budget: Arc::new(Semaphore::new(budget)),
            limiter: Mutex::new(RateLimiter::new(options.rate_per_sec, options.rate_burst)),
            full_warned: AtomicBool::new(false),
            options,
        })
    }
}

/// The default upstream and the upstreams by host ([`ServeOptions::upstream`],
/// [`ServeOptions::upstream_hosts`]).
pub type Upstreams = (Option<String>, Vec<(String, String)>);

/// Parse `--upstream` values: `URL` (the default upstream, at most one) or `HOST=URL` (the
/// upstream for requests whose `Host` is HOST, any port). URLs are `http://` or `https://`
/// with a host and no query; a trailing `/` is dropped.
pub fn parse_upstreams(values: &[String]) -> Result<Upstreams, ServiceError> {
    let bad = |value: &str, message: &str| ServiceError::Upstream {
        value: value.to_owned(),
        message: message.to_owned(),
    };
    let mut default = None;
    let mut hosts: Vec<(String, String)> = Vec::new();
    for value in values {
        let (host, url) = match value.split_once('=') {
            Some((h, u)) if !h.contains('/') => (Some(h.trim().to_ascii_lowercase()), u.trim()),
            _ => (None, value.trim()),
        };
        let ok = reqwest::Url::parse(url).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.query().is_none()
        });
        if ok.is_none() {
            return Err(bad(
                value,
                "expected URL or HOST=URL with an http:// or https:// URL, e.g. http://127.0.0.1:11434 or ai.example.com=http://ollama:11434",
            ));
        }
        let url = url.trim_end_matches('/').to_owned();
        match host {
            Some(h) if h.is_empty() || h.contains(':') || h.contains(char::is_whitespace) => {
                return Err(bad(
                    value,
                    "HOST must be a host name without a port, e.g. ai.example.com",
                ));
            }
            Some(h) if hosts.iter().any(|(x, _)| *x == h) => {
                return Err(bad(value, "this host already has an upstream"));
            }
            Some(h) => hosts.push((h, url)),
            None if default.is_some() => {
                return Err(bad(
                    value,
                    "only one upstream without HOST= (the default) may be given",
                ));
            }
            None => default = Some(url),
        }
    }
    Ok((default, hosts))
}

/// A file of `HOST=URL` lines (`#` comments and blank lines allowed), read again when it
/// is replaced or changes (device, inode, size, modification time). A missing file has no
/// upstream; a line that is not `HOST=URL` is skipped and logged once per version.
#[derive(Clone, Debug)]
pub struct UpstreamFile {
    path: std::path::PathBuf,
    cache: Arc<Mutex<(Option<FileStamp>, HostUpstreams)>>,
}

/// Upstreams by host, as (host, URL).
type HostUpstreams = Vec<(String, String)>;

/// What says a file changed: (device, inode, size, modification time).
type FileStamp = (u64, u64, u64, Option<std::time::SystemTime>);

impl UpstreamFile {
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache: Arc::new(Mutex::new((None, Vec::new()))),
        }
    }

    /// The upstream URL for `host` (lower case, without a port) in the file as it is now.
    pub fn lookup(&self, host: &str) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino(), m.size(), m.modified().ok()));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0 != stamp || stamp.is_none() {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let mut hosts = Vec::new();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match parse_upstreams(&[line.to_owned()]) {
                    Ok((None, h)) => hosts.extend(h),
                    _ => eprintln!(
                        "autogit guard: {}:{}: not HOST=URL (e.g. llm.example.com=http://gpu1:32768); skipped",
                        self.path.display(),
                        n + 1
                    ),
                }
            }
            *cache = (stamp, hosts);
        }
        cache
            .1
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, u)| u.clone())
    }
}

/// The upstream for a request: by its `Host` (port and case ignored), in the options, then
/// in the upstream file, else the default.
fn upstream_for(options: &ServeOptions, headers: &HeaderMap) -> Option<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| {
            let h = h.trim();
            // `[v6]:port`, `name:port`, `name`.
            let h = if h.starts_with('[') {
                h.split_once(']')
                    .map_or(h, |(a, _)| a)
                    .trim_start_matches('[')
            } else {
                h.rsplit_once(':').map_or(h, |(a, _)| a)
            };
            h.trim_end_matches('.').to_ascii_lowercase()
        });
    host.and_then(|h| {
        options
            .upstream_hosts
            .iter()
            .find(|(x, _)| *x == h)
            .map(|(_, u)| u.clone())
            .or_else(|| options.upstream_file.as_ref().and_then(|f| f.lookup(&h)))
    })
    .or_else(|| options.upstream.clone())
}

/// The texts a request asks the model to read: `(field path, text)`.
pub fn prompt_fields(body: &Value, scan_system: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn push_content(out: &mut Vec<(String, String)>, path: String, content: &Value) {
        match content {
            Value::String(s) => out.push((path, s.clone())),
            Value::Array(parts) => {
                for (i, part) in parts.iter().enumerate() {
                    match part {
                        Value::String(s) => out.push((format!("{path}[{i}]"), s.clone())),
                        Value::Object(o) => {
                            for key in ["text", "content", "input_text"] {
                                if let Some(Value::String(s)) = o.get(key) {
                                    out.push((format!("{path}[{i}].{key}"), s.clone()));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    fn push_messages(
        out: &mut Vec<(String, String)>,
        name: &str,
        msgs: &[Value],
        scan_system: bool,
    ) {
        for (i, m) in msgs.iter().enumerate() {
            match m {
                Value::String(s) => out.push((format!("{name}[{i}]"), s.clone())),
                Value::Object(o) => {
                    let role = o.get("role").and_then(Value::as_str).unwrap_or("user");
                    if !scan_system && matches!(role, "system" | "developer") {
                        continue;
                    }
                    if let Some(c) = o.get("content") {
                        push_content(out, format!("{name}[{i}].content"), c);
                    }
                }
                _ => {}
            }
        }
    }
    let Value::Object(obj) = body else {
        return out;
    };
    if let Some(p) = obj.get("prompt") {
        push_content(&mut out, "prompt".into(), p);
    }
    if let Some(Value::Array(msgs)) = obj.get("messages") {
        push_messages(&mut out, "messages", msgs, scan_system);
    }
    match obj.get("input") {
        Some(Value::Array(items)) => push_messages(&mut out, "input", items, scan_system),
        Some(v @ Value::String(_)) => push_content(&mut out, "input".into(), v),
        _ => {}
    }
    if scan_system && let Some(s) = obj.get("system") {
        push_content(&mut out, "system".into(), s);
    }
    out
}

/// The outcome of inspecting one request body.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// Worst verdict over all prompt fields.
    pub verdict: Verdict,
    /// Highest risk.
    pub risk_score: f64,
    /// The field with the highest risk.
    pub field: Option<String>,
    /// Rules found in that field.
    pub rules: Vec<String>,
    /// Quarantine record, if one was written.
    pub quarantine_id: Option<String>,
    /// Why no quarantine record was written although one should have been.
    #[serde(skip)]
    pub not_stored: Option<&'static str>,
}

fn inspect(
    state: &ServerState,
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Inspection, Unreadable> {
    let fields: Vec<(String, String)> = match crate::body::read(body, content_type)? {
        ReadBody::Empty => Vec::new(),
        ReadBody::Json(v) => prompt_fields(&v, state.options.scan_system),
        ReadBody::Text(t) => vec![("body".to_owned(), t)],
    };
    let mut worst: Option<(String, String, Analysis)> = None;
    for (field, text) in fields {
        let a = state.guard.analyze(&text);
        if worst.as_ref().is_none_or(|w| a.risk_score > w.2.risk_score) {
            worst = Some((field, text, a));
        }
    }
    let Some((field, text, a)) = worst else {
        return Ok(Inspection {
            verdict: Verdict::Clean,
            risk_score: 0.0,
            field: None,
            rules: Vec::new(),
            quarantine_id: None,
            not_stored: None,
        });
    };
    let mut rules: Vec<String> = a.detected_patterns.iter().map(|f| f.rule.clone()).collect();
    rules.dedup();
    let mut not_stored = None;
    let quarantine_id = match (&state.store, a.verdict) {
        (Some(store), Verdict::Suspicious | Verdict::Blocked) => match store.lock() {
            Ok(mut s) => match s.insert(&format!("api-request:{field}"), &text, &a) {
                Ok(r) => {
                    state.full_warned.store(false, Ordering::Relaxed);
                    Some(r.id)
                }
                Err(e @ ServiceError::QuarantineFull { .. }) => {
                    // Said once per episode, not once per request.
                    if !state.full_warned.swap(true, Ordering::Relaxed) {
                        eprintln!("autogit guard: {e}");
                    }
                    not_stored = Some("quarantine full");
                    None
                }
                Err(e) => {
                    eprintln!("autogit guard: could not write quarantine record: {e}");
                    not_stored = Some("quarantine error");
                    None
                }
            },
            Err(_) => None,
        },
        _ => None,
    };
    Ok(Inspection {
        verdict: a.verdict,
        risk_score: (a.risk_score * 1000.0).round() / 1000.0,
        field: Some(field),
        rules,
        quarantine_id,
        not_stored,
    })
}

/// Bodies up to this size are inspected on the request's own task: at the guard's speed
/// (about 200 MB/s per core) that is well under 100 µs, less than handing the work to the
/// blocking pool and back costs on a busy machine (measured by `xtask bench ingress`).
/// Larger bodies go to the blocking pool so that they never stall other connections.
const INLINE_INSPECT_BYTES: usize = 16 * 1024;

async fn inspect_async(
    state: Arc<ServerState>,
    body: Bytes,
    content_type: Option<String>,
) -> Result<Inspection, Unreadable> {
    if body.len() <= INLINE_INSPECT_BYTES {
        return inspect(&state, &body, content_type.as_deref());
    }
    tokio::task::spawn_blocking(move || inspect(&state, &body, content_type.as_deref()))
        .await
        .unwrap_or_else(|e| Err(Unreadable(format!("the inspection failed ({e})"))))
}

/// An RFC 9457 problem document (`application/problem+json`), with an OpenAI-style `error`
/// member as well so that API clients show the reason.
fn problem(status: StatusCode, kind: &str, title: &str, detail: &str, extra: Value) -> Response {
    let mut body = json!({
        "type": format!("urn:autogit:guard:{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "error": { "type": kind.replace('-', "_"), "message": detail },
    });
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

fn retry_after(mut resp: Response, after: Duration) -> Response {
    let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn blocked_response(i: &Inspection) -> Response {
    let field = i.field.as_deref().unwrap_or("request");
    let stored = match (&i.quarantine_id, i.not_stored) {
        (Some(id), _) => id.clone(),
        (None, Some(why)) => format!("(not stored: {why})"),
        (None, None) => "(not stored)".to_owned(),
    };
    let message = format!(
        "Request blocked by autogit guard: possible prompt injection in {field} (risk {:.2}). \
         If this is a false positive, ask an operator to review quarantine record {stored}.",
        i.risk_score,
    );
    let mut resp = problem(
        StatusCode::FORBIDDEN,
        "prompt-injection",
        "Possible prompt injection",
        &message,
        json!({
            "error": {
                "type": "prompt_injection_detected",
                "code": "autogit_guard_blocked",
                "message": message,
                "risk_score": i.risk_score,
                "field": i.field,
                "rules": i.rules,
                "quarantine_id": i.quarantine_id,
            }
        }),
    );
    decorate(resp.headers_mut(), i);
    resp
}

/// The answer for a body the guard cannot read as the upstream would: blocked (fail closed).
fn unreadable_response(u: &Unreadable) -> Response {
    let mut resp = problem(
        StatusCode::BAD_REQUEST,
        "unreadable-body",
        "Request body cannot be inspected",
        &format!(
            "Request blocked by autogit guard: {u}. The guard only lets through bodies it reads exactly as the upstream will: strict JSON (UTF-8, no byte order mark, no duplicate or case-variant keys, no trailing commas, finite numbers) with text prompts."
        ),
        json!({ "code": "autogit_guard_unreadable", "reason": u.0 }),
    );
    resp.headers_mut().insert(
        "x-autogit-guard-verdict",
        HeaderValue::from_static("blocked"),
    );
    resp
}

fn decorate(headers: &mut HeaderMap, i: &Inspection) {
    let verdict = match i.verdict {
        Verdict::Clean => "clean",
        Verdict::Suspicious => "suspicious",
        Verdict::Blocked => "blocked",
    };
    headers.insert("x-autogit-guard-verdict", HeaderValue::from_static(verdict));
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", i.risk_score)) {
        headers.insert("x-autogit-guard-risk", v);
    }
}

fn error_response(status: StatusCode, kind: &str, message: String) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    problem(
        status,
        &kind.replace('_', "-"),
        title,
        &message,
        Value::Null,
    )
}

/// A request body and its share of the in-flight memory budget (released on drop).
struct ReadBodyOk {
    parts: axum::http::request::Parts,
    bytes: Bytes,
    _budget: Vec<OwnedSemaphorePermit>,
}

/// Reads the whole body within the body timeout, within `max_body_bytes`, charging the
/// in-flight budget as it goes (the declared length up front): over the budget is a 503.
async fn read_body(state: &ServerState, req: Request) -> Result<ReadBodyOk, Response> {
    let opts = &state.options;
    let (parts, mut body) = req.into_parts();
    let max = opts.max_body_bytes;
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("request body exceeds {max} bytes (--max-body-bytes)"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let busy = || {
        retry_after(
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "the guard is at its memory budget for request bodies ({} bytes in flight); try again shortly",
                    opts.max_inflight_body_bytes
                ),
            ),
            Duration::from_secs(1),
        )
    };
    let charge = |n: usize| -> Result<OwnedSemaphorePermit, Response> {
        let n = u32::try_from(n).map_err(|_| too_large())?;
        Arc::clone(&state.body_budget)
            .try_acquire_many_owned(n)
            .map_err(|_| busy())
    };
    let mut permits = Vec::new();
    let mut charged = 0usize;
    if let Some(n) = declared.filter(|n| *n > 0) {
        permits.push(charge(n)?);
        charged = n;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("could not read the request body: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let total = buf.len() + data.len();
            if total > max {
                return Err(too_large());
            }
            if total > charged {
                permits.push(charge(total - charged)?);
                charged = total;
            }
            buf.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(opts.body_timeout, read).await {
        Ok(Ok(())) => {}
        Ok(Err(r)) => return Err(r),
        Err(_) => {
            return Err(error_response(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {:?}",
                    opts.body_timeout
                ),
            ));
        }
    }
    Ok(ReadBodyOk {
        parts,
        bytes: Bytes::from(buf),
        _budget: permits,
    })
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn forward_auth(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let body = match read_body(&state, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ct = content_type(&body.parts.headers);
    let i = match inspect_async(state, body.bytes, ct).await {
        Ok(i) => i,
        Err(u) => return unreadable_response(&u),
    };
    if i.verdict == Verdict::Blocked {
        return blocked_response(&i);
    }
    let mut resp = StatusCode::OK.into_response();
    decorate(resp.headers_mut(), &i);
    resp
}

async fn check(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let body = match read_body(&state, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = match crate::body::parse_strict(&body.bytes) {
        Ok(v) => match v.get("text").and_then(Value::as_str) {
            Some(t) => t.to_owned(),
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "expected {\"text\": \"...\"}".into(),
                );
            }
        },
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "invalid_request", e.0),
    };
    match tokio::task::spawn_blocking(move || state.guard.analyze(&text)).await {
        Ok(a) => axum::Json(a).into_response(),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        ),
    }
}

/// Headers that describe one hop and must not be forwarded (the guard's own token among
/// them: `Proxy-Authorization` is hop-by-hop, `X-Autogit-Guard-Token` is the guard's).
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | TOKEN_HEADER
    )
}

async fn proxy(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let Some(upstream) = upstream_for(&state.options, req.headers()) else {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no upstream for host {host:?}; give --upstream URL or --upstream {host}=URL, or use /guard/forward-auth or /guard/check"
            ),
        );
    };
    let ReadBodyOk {
        parts,
        bytes: body,
        _budget: budget,
    } = match read_body(&state, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let i = match inspect_async(
        Arc::clone(&state),
        body.clone(),
        content_type(&parts.headers),
    )
    .await
    {
        Ok(i) => i,
        Err(u) => return unreadable_response(&u),
    };
    if i.verdict == Verdict::Blocked {
        return blocked_response(&i);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", upstream.trim_end_matches('/'), path);
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if !hop_by_hop(k.as_str()) {
            headers.append(k.clone(), v.clone());
        }
    }
    decorate(&mut headers, &i);
    let sent = state
        .client
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    // The body has been sent (or will not be): its budget is free again.
    drop(budget);
    let upstream_resp = match sent {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                e.to_string(),
            );
        }
    };
    let mut builder = Response::builder().status(upstream_resp.status());
    if let Some(h) = builder.headers_mut() {
        for (k, v) in upstream_resp.headers() {
            if !hop_by_hop(k.as_str()) || k == header::CONTENT_LENGTH {
                h.append(k.clone(), v.clone());
            }
        }
        decorate(h, &i);
    }
    builder
        .body(Body::from_stream(upstream_resp.bytes_stream()))
        .unwrap_or_else(|e| {
            error_response(StatusCode::BAD_GATEWAY, "upstream_response", e.to_string())
        })
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// The header carrying the guard's token (besides `Proxy-Authorization: Bearer`).
pub const TOKEN_HEADER: &str = "x-autogit-guard-token";

/// The client's address, put on every request by the connection loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

fn bearer(v: &HeaderValue) -> Option<&[u8]> {
    let v = v.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

/// Whether the request carries the token: `Proxy-Authorization: Bearer T` or
/// `X-Autogit-Guard-Token: T` anywhere; `Authorization: Bearer T` only on the guard's own
/// routes (through the proxy, `Authorization` is the upstream's and is passed on untouched).
fn authenticated(token: &AuthToken, headers: &HeaderMap, own_route: bool) -> bool {
    let mut ok = false;
    for v in headers.get_all(header::PROXY_AUTHORIZATION) {
        ok |= bearer(v).is_some_and(|t| token.matches(t));
    }
    for v in headers.get_all(TOKEN_HEADER) {
        ok |= token.matches(v.as_bytes().trim_ascii());
    }
    if own_route {
        for v in headers.get_all(header::AUTHORIZATION) {
            ok |= bearer(v).is_some_and(|t| token.matches(t));
        }
    }
    ok
}

/// Every route but `/healthz`: the per-client rate limit, then authentication.
async fn gate(
    State(state): State<Arc<ServerState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
    if let Some(ip) = client {
        let taken = match state.limiter.lock() {
            Ok(mut l) => l.take(ip, std::time::Instant::now()),
            Err(_) => Ok(()),
        };
        if let Err(wait) = taken {
            return retry_after(
                error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "more than {} requests per second from {ip}; slow down",
                        state.options.rate_per_sec
                    ),
                ),
                wait,
            );
        }
    }
    if let Some(token) = &state.options.auth_token {
        // Only the guard's own routes: anything else is proxied, `Authorization` included.
        let own = matches!(req.uri().path(), "/guard/check" | "/guard/forward-auth");
        if !authenticated(token, req.headers(), own) {
            let mut resp = error_response(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "this guard needs its token: send `Proxy-Authorization: Bearer <token>` or `X-Autogit-Guard-Token: <token>` (on /guard/* routes `Authorization: Bearer <token>` works too)".into(),
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"autogit-guard\""),
            );
            return resp;
        }
    }
    next.run(req).await
}

/// The router (exposed for tests and embedding).
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/guard/check", post(check))
        .route("/guard/forward-auth", any(forward_auth))
        .fallback(proxy)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            gate,
        ))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// The answer to a connection over the cap: written directly, then the connection closes.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = json!({
        "type": "urn:autogit:problem:busy",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the server is at its connection limit; try again shortly",
    })
    .to_string();
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Read the request head first (briefly, bounded): a client that gets its answer before
    // it has sent its request takes it for a protocol error.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(resp.as_bytes())).await;
}

/// Limits of the connection loop ([`serve_app`]).
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// Time for a request's headers to arrive; then the connection is closed.
    pub header_timeout: Duration,
    /// Open connections at most; more get `503`.
    pub max_connections: usize,
    /// Who is speaking in log lines (`autogit guard`).
    pub name: &'static str,
}

/// Serve on an already bound listener until `shutdown` resolves. Refuses a non-loopback
/// listener without a token (unless `insecure_no_auth`). Connections beyond
/// `max_connections` get a 503; a request whose headers have not arrived within
/// `header_timeout` has its connection closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let local = listener
        .local_addr()
        .map_err(|e| ServiceError::Http(e.to_string()))?;
    check_exposure(
        local,
        state.options.auth_token.is_some(),
        state.options.insecure_no_auth,
    )?;
    let limits = ConnLimits {
        header_timeout: state.options.header_timeout,
        max_connections: state.options.max_connections,
        name: "autogit guard",
    };
    serve_app(listener, router(state), &limits, shutdown).await;
    Ok(())
}

/// The connection loop of autogit's HTTP servers (the guard, the API): HTTP/1.1 with
/// keep-alive, the client's address on every request as [`ClientAddr`], a header read
/// timeout, a connection cap (over it, a few connections at a time get a `503` problem, the
/// others are closed), and a graceful shutdown (10 s for requests in flight).
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Over the cap, a few connections at a time get a 503; the others are closed at once.
    let refusals = Arc::new(Semaphore::new(64));
    let mut last_accept_error: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: keep
                    // serving the ones there are (and say so at most once a minute).
                    if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        eprintln!("{}: accept: {e}", limits.name);
                        last_accept_error = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if let Ok(r) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_busy(stream).await;
                    drop(r);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = hyper::service::service_fn(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                let mut app = app.clone();
                async move { app.call(req.map(Body::new)).await }
            },
        );
        let conn = graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// Bind `listen` and serve until Ctrl-C (blocking; builds its own runtime).
pub fn run_blocking(listen: SocketAddr, state: ServerState) -> Result<(), ServiceError> {
    check_exposure(
        listen,
        state.options.auth_token.is_some(),
        state.options.insecure_no_auth,
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServiceError::Http(e.to_string()))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServiceError::Http(format!("cannot listen on {listen}: {e}")))?;
        eprintln!(
            "autogit guard: listening on http://{}{}",
            listener
                .local_addr()
                .map_err(|e| ServiceError::Http(e.to_string()))?,
            if state.options.auth_token.is_some() {
                " (token required)"
            } else {
                " (no authentication)"
            }
        );
        serve(listener, Arc::new(state), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}

#[cfg(test)]
mod upstream_file_tests {
    use super::*;

    fn request(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    /// The file's upstreams follow it as it is replaced (same size, other URL), come after
    /// the `--upstream HOST=URL` ones and before the default; bad lines are skipped.
    #[test]
    fn upstreams_from_a_file_follow_its_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upstreams");
        let replace = |text: &str| {
            let tmp = dir.path().join("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        let options = ServeOptions {
            upstream: Some("http://default:1".into()),
            upstream_hosts: vec![("a.test".into(), "http://static:1".into())],
            upstream_file: Some(UpstreamFile::new(&path)),
            ..ServeOptions::default()
        };
        let get = |h: &str| upstream_for(&options, &request(h));
        assert_eq!(get("llm.test").as_deref(), Some("http://default:1"));
        replace("# routes\nllm.test=http://gpu1:32768\nnot a line\na.test=http://file:1\n");
        assert_eq!(get("LLM.test:443").as_deref(), Some("http://gpu1:32768"));
        assert_eq!(get("a.test").as_deref(), Some("http://static:1"));
        replace("llm.test=http://gpu1:32769\n");
        assert_eq!(get("llm.test").as_deref(), Some("http://gpu1:32769"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(get("llm.test").as_deref(), Some("http://default:1"));
    }
}
