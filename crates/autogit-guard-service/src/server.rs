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
use std::sync::{Arc, Mutex};

use autogit_guard::{Analysis, Guard, Verdict};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::ServiceError;
use crate::store::QuarantineStore;

/// Server options beyond the guard's own configuration.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Base URL of the inference API to proxy to (`http://127.0.0.1:11434`), if any.
    pub upstream: Option<String>,
    /// Largest request body accepted (default 8 MiB); larger bodies get `413`.
    pub max_body_bytes: usize,
    /// Also inspect `system`/`developer` messages (they normally come from the operator).
    pub scan_system: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            upstream: None,
            max_body_bytes: 8 << 20,
            scan_system: false,
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
}

impl ServerState {
    /// Build the state; `store` receives suspicious and blocked prompts.
    pub fn new(
        guard: Guard,
        store: Option<QuarantineStore>,
        options: ServeOptions,
    ) -> Result<Self, ServiceError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ServiceError::Http(e.to_string()))?;
        Ok(Self {
            guard,
            store: store.map(Mutex::new),
            options,
            client,
        })
    }
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
}

fn inspect(state: &ServerState, body: &[u8], content_type: Option<&str>) -> Inspection {
    let fields: Vec<(String, String)> = match serde_json::from_slice::<Value>(body) {
        Ok(v) => prompt_fields(&v, state.options.scan_system),
        Err(_) if content_type.is_some_and(|c| c.starts_with("text/")) => {
            vec![(
                "body".to_owned(),
                String::from_utf8_lossy(body).into_owned(),
            )]
        }
        Err(_) => Vec::new(),
    };
    let mut worst: Option<(String, String, Analysis)> = None;
    for (field, text) in fields {
        let a = state.guard.analyze(&text);
        if worst.as_ref().is_none_or(|w| a.risk_score > w.2.risk_score) {
            worst = Some((field, text, a));
        }
    }
    let Some((field, text, a)) = worst else {
        return Inspection {
            verdict: Verdict::Clean,
            risk_score: 0.0,
            field: None,
            rules: Vec::new(),
            quarantine_id: None,
        };
    };
    let mut rules: Vec<String> = a.detected_patterns.iter().map(|f| f.rule.clone()).collect();
    rules.dedup();
    let quarantine_id = match (&state.store, a.verdict) {
        (Some(store), Verdict::Suspicious | Verdict::Blocked) => match store.lock() {
            Ok(mut s) => match s.insert(&format!("api-request:{field}"), &text, &a) {
                Ok(r) => Some(r.id),
                Err(e) => {
                    eprintln!("autogit guard: could not write quarantine record: {e}");
                    None
                }
            },
            Err(_) => None,
        },
        _ => None,
    };
    Inspection {
        verdict: a.verdict,
        risk_score: (a.risk_score * 1000.0).round() / 1000.0,
        field: Some(field),
        rules,
        quarantine_id,
    }
}

async fn inspect_async(
    state: Arc<ServerState>,
    body: Bytes,
    content_type: Option<String>,
) -> Inspection {
    let fallback = Inspection {
        verdict: Verdict::Blocked,
        risk_score: 1.0,
        field: None,
        rules: vec!["internal_error".to_owned()],
        quarantine_id: None,
    };
    tokio::task::spawn_blocking(move || inspect(&state, &body, content_type.as_deref()))
        .await
        .unwrap_or(fallback)
}

fn blocked_response(i: &Inspection) -> Response {
    let field = i.field.as_deref().unwrap_or("request");
    let body = json!({
        "error": {
            "type": "prompt_injection_detected",
            "code": "autogit_guard_blocked",
            "message": format!(
                "Request blocked by autogit guard: possible prompt injection in {field} (risk {:.2}). \
                 If this is a false positive, ask an operator to review quarantine record {}.",
                i.risk_score,
                i.quarantine_id.as_deref().unwrap_or("(not stored)")
            ),
            "risk_score": i.risk_score,
            "field": i.field,
            "rules": i.rules,
            "quarantine_id": i.quarantine_id,
        }
    });
    let mut resp = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    decorate(resp.headers_mut(), i);
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
    (
        status,
        axum::Json(json!({ "error": { "type": kind, "message": message } })),
    )
        .into_response()
}

async fn read_body(
    state: &ServerState,
    req: Request,
) -> Result<(axum::http::request::Parts, Bytes), Response> {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, state.options.max_body_bytes).await {
        Ok(b) => Ok((parts, b)),
        Err(_) => Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "request body exceeds {} bytes",
                state.options.max_body_bytes
            ),
        )),
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn forward_auth(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let (parts, body) = match read_body(&state, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let i = inspect_async(state, body, content_type(&parts.headers)).await;
    if i.verdict == Verdict::Blocked {
        return blocked_response(&i);
    }
    let mut resp = StatusCode::OK.into_response();
    decorate(resp.headers_mut(), &i);
    resp
}

async fn check(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let (_, body) = match read_body(&state, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = match serde_json::from_slice::<Value>(&body) {
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
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
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

/// Headers that describe one hop and must not be forwarded.
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
    )
}

async fn proxy(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let Some(upstream) = state.options.upstream.clone() else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no upstream configured; use /guard/forward-auth or /guard/check".into(),
        );
    };
    let (parts, body) = match read_body(&state, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let i = inspect_async(
        Arc::clone(&state),
        body.clone(),
        content_type(&parts.headers),
    )
    .await;
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
    let upstream_resp = match state
        .client
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
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

/// The router (exposed for tests and embedding).
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/guard/check", post(check))
        .route("/guard/forward-auth", any(forward_auth))
        .fallback(proxy)
        .with_state(state)
}

/// Serve on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ServiceError::Http(e.to_string()))
}

/// Bind `listen` and serve until Ctrl-C (blocking; builds its own runtime).
pub fn run_blocking(listen: SocketAddr, state: ServerState) -> Result<(), ServiceError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServiceError::Http(e.to_string()))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServiceError::Http(format!("cannot listen on {listen}: {e}")))?;
        eprintln!(
            "autogit guard: listening on http://{}",
            listener
                .local_addr()
                .map_err(|e| ServiceError::Http(e.to_string()))?
        );
        serve(listener, Arc::new(state), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}
