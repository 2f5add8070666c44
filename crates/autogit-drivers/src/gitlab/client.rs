//! A GitLab REST v4 client (reqwest with rustls).
//!
//! - Authentication with the `PRIVATE-TOKEN` header; the token lives in a [`SecretString`] and
//!   never appears in `Debug`, errors or logs.
//! - Typed errors from GitLab's error bodies: `{"message": "..."}`, `{"message": {field:
//!   [errors]}}` and `{"error": ..., "error_description": ...}`.
//! - 429 waits for `Retry-After` (seconds or an HTTP date, capped); 502/503/504 and
//!   connection failures are retried with bounded exponential backoff for every method
//!   (the request did not reach Rails); 500 and timeouts only for GET and DELETE, so a POST
//!   that may have been applied is never repeated.
//! - Pagination follows `Link: <...>; rel="next"` and falls back to `X-Next-Page`, with
//!   `per_page=100`. A next link is re-based onto the client's own base URL (GitLab writes its
//!   `external_url` there), so the token never travels to another host.

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most pages followed in one listing (100 items each): a bound against a server that never
/// stops sending `next`.
pub const MAX_PAGES: usize = 1000;

/// Most redirects followed for one request (a renamed project answers one).
pub const MAX_REDIRECTS: usize = 5;

/// An error from GitLab or from talking to it. `path` is the API path (no host, no token).
#[derive(Debug, thiserror::Error)]
pub enum GitLabError {
    #[error(
        "refusing to send the token to {0} over plain http: only a loopback address may be reached without TLS; use an https URL"
    )]
    TokenOverHttp(String),
    #[error("{path}: 400 Bad Request: {message}")]
    BadRequest { path: String, message: String },
    #[error("{path}: 401 Unauthorized: {message} (is the token valid, unexpired and unrevoked?)")]
    Unauthorized { path: String, message: String },
    #[error("{path}: 403 Forbidden: {message} (the token lacks a scope or admin rights)")]
    Forbidden { path: String, message: String },
    #[error("{path}: 404 Not Found: {message}")]
    NotFound { path: String, message: String },
    #[error("{path}: 409 Conflict: {message}")]
    Conflict { path: String, message: String },
    /// 422, with GitLab's per-field errors when it sent them.
    #[error("{path}: 422 Unprocessable: {message}")]
    Unprocessable {
        path: String,
        message: String,
        fields: BTreeMap<String, Vec<String>>,
    },
    #[error(
        "{path}: GitLab's rate limit (429) still applies after {attempts} attempts{}; try again later, or raise the instance's rate limits",
        retry_after.map(|s| format!(" (it asks to wait {s} s more)")).unwrap_or_default()
    )]
    RateLimited {
        path: String,
        attempts: u32,
        /// What GitLab last asked to wait (`Retry-After` or `RateLimit-Reset`), in seconds.
        retry_after: Option<u64>,
    },
    #[error("{path}: GitLab answered {status} after {attempts} attempts: {message}")]
    Server {
        path: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("{path}: unexpected status {status}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    #[error("{path}: cannot reach GitLab after {attempts} attempts: {message}")]
    Transport {
        path: String,
        attempts: u32,
        message: String,
    },
    #[error("{path}: unexpected response: {message}")]
    Decode { path: String, message: String },
    #[error("invalid GitLab URL `{0}`")]
    Url(String),
    /// A redirect to another origin: not followed, so the token stays with this GitLab.
    #[error(
        "{path}: GitLab redirected to another host ({origin}); not followed, so the token is not sent there. Is gitlab.external_url (or the source's url) the instance's own address?"
    )]
    ForeignRedirect { path: String, origin: String },
}

impl GitLabError {
    /// The HTTP status GitLab answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::BadRequest { .. } => Some(400),
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::Conflict { .. } => Some(409),
            Self::Unprocessable { .. } => Some(422),
            Self::RateLimited { .. } => Some(429),
            Self::Server { status, .. } | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// GitLab's message, when it sent one.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::BadRequest { message, .. }
            | Self::Unauthorized { message, .. }
            | Self::Forbidden { message, .. }
            | Self::NotFound { message, .. }
            | Self::Conflict { message, .. }
            | Self::Unprocessable { message, .. }
            | Self::Server { message, .. }
            | Self::Status { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Turns a GitLab error body into one message and its field errors.
///
/// `{"message": "404 User Not Found"}` → that text; `{"message": {"email": ["has already been
/// taken"]}}` → `email has already been taken`; `{"error": "invalid_token",
/// "error_description": "Token was revoked"}` → `invalid_token: Token was revoked`; anything
/// else → the body itself (shortened).
pub fn parse_error_body(body: &str) -> (String, BTreeMap<String, Vec<String>>) {
    let mut fields = BTreeMap::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return (shorten(body.trim()), fields);
    };
    if let Some(m) = v.get("message") {
        match m {
            serde_json::Value::String(s) => return (s.clone(), fields),
            serde_json::Value::Object(map) => {
                let mut parts = Vec::new();
                for (field, errs) in map {
                    let list: Vec<String> = match errs {
                        serde_json::Value::Array(a) => a
                            .iter()
                            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                            .collect(),
                        serde_json::Value::String(s) => vec![s.clone()],
                        other => vec![other.to_string()],
                    };
                    for e in &list {
                        parts.push(format!("{field} {e}"));
                    }
                    fields.insert(field.clone(), list);
                }
                return (parts.join("; "), fields);
            }
            serde_json::Value::Array(a) => {
                let parts: Vec<String> = a
                    .iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                    .collect();
                return (parts.join("; "), fields);
            }
            other => return (other.to_string(), fields),
        }
    }
    if let Some(e) = v.get("error") {
        let e = e.as_str().map_or_else(|| e.to_string(), str::to_owned);
        return match v.get("error_description").and_then(|d| d.as_str()) {
            Some(d) => (format!("{e}: {d}"), fields),
            None => (e, fields),
        };
    }
    (shorten(body.trim()), fields)
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 300 {
        let cut: String = s.chars().take(300).collect();
        format!("{cut}…")
    } else {
        s.to_owned()
    }
}

/// Retry and backoff bounds.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Tries in all (the first one included).
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub first_delay: Duration,
    /// Cap of one backoff delay.
    pub max_delay: Duration,
    /// Cap of one wait for `Retry-After`.
    pub max_retry_after: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct GitLabClient {
    http: reqwest::Client,
    /// `<base>/`: the instance root (health endpoints live here).
    root: Url,
    token: Option<SecretString>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for GitLabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabClient")
            .field("root", &self.root.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("retry", &self.retry)
            .finish()
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The next page's path and query (relative to the API root), if any.
    pub next: Option<String>,
}

/// Whether a request to `url` would cross the network in clear text: plain `http://` to a
/// host that is not a loopback address (`127.0.0.0/8`, `::1`, `localhost`). A token is never
/// sent that way (defence in depth behind `validate`'s `token-over-http`).
pub fn cleartext_to_remote(url: &Url) -> bool {
    use autogit_core::netaddr::{AddrClass, host_class};
    url.scheme() != "https" && host_class(url.host_str().unwrap_or("")) != Some(AddrClass::Loopback)
}

impl GitLabClient {
    /// A client for the instance at `base` (e.g. `http://127.0.0.1:8080`; a trailing `/` and a
    /// trailing `/api/v4` are accepted).
    pub fn new(base: &str, token: Option<SecretString>) -> Result<GitLabClient, GitLabError> {
        let trimmed = base.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/api/v4").unwrap_or(trimmed);
        let root = Url::parse(&format!("{trimmed}/")).map_err(|_| GitLabError::Url(base.into()))?;
        if !matches!(root.scheme(), "http" | "https") || !root.username().is_empty() {
            return Err(GitLabError::Url(base.into()));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("autogit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GitLabError::Url(e.to_string()))?;
        Ok(GitLabClient {
            http,
            root,
            token,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client with other retry bounds (tests use short delays).
    pub fn with_retry(mut self, retry: RetryPolicy) -> GitLabClient {
        self.retry = retry;
        self
    }

    /// The same client with another token.
    pub fn with_token(mut self, token: Option<SecretString>) -> GitLabClient {
        self.token = token;
        self
    }

    /// The instance root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    fn api_url(&self, path_and_query: &str) -> Result<Url, GitLabError> {
        let rel = path_and_query.trim_start_matches('/');
        self.root
            .join(&format!("api/v4/{rel}"))
            .map_err(|_| GitLabError::Url(path_and_query.into()))
    }

    /// Sends one request with retries; returns the successful response.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, GitLabError> {
        self.send_accepting(method, url, body, &[]).await
    }

    /// Like [`GitLabClient::send`], and a status in `answers` is returned as it came, not
    /// retried nor turned into an error (`/-/readiness` answers 503 when not ready).
    ///
    /// A GET or HEAD answered with a redirect (`301`, `302`, `307`, `308` and `Location`:
    /// GitLab's REST docs, `doc/api/rest/index.md`, "Redirects": a renamed project's old path
    /// redirects to its new one) is followed, at most [`MAX_REDIRECTS`] times, and only to this
    /// client's own origin: the token never goes to another host.
    async fn send_accepting(
        &self,
        method: Method,
        mut url: Url,
        body: Option<&serde_json::Value>,
        answers: &[u16],
    ) -> Result<reqwest::Response, GitLabError> {
        let mut redirects = 0;
        loop {
            let resp = self
                .send_once(method.clone(), url.clone(), body, answers)
                .await?;
            let code = resp.status();
            let status = code.as_u16();
            let path = display_path(&url);
            if !code.is_redirection() || answers.contains(&status) {
                return Ok(resp);
            }
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                let text = resp.text().await.unwrap_or_default();
                return Err(client_error(path, code, &text));
            }
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok());
            let text = resp.text().await.unwrap_or_default();
            let (message, _) = parse_error_body(&text);
            let Some(next) = location else {
                return Err(GitLabError::Status {
                    path,
                    status,
                    message: format!("{message} (no usable Location header)"),
                });
            };
            if next.origin() != self.root.origin() {
                return Err(GitLabError::ForeignRedirect {
                    path,
                    origin: next.origin().ascii_serialization(),
                });
            }
            if !matches!(method, Method::GET | Method::HEAD) {
                return Err(GitLabError::Status {
                    path,
                    status,
                    message: format!("{message}; moved to {}", display_path(&next)),
                });
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(GitLabError::Status {
                    path,
                    status,
                    message: format!("more than {MAX_REDIRECTS} redirects"),
                });
            }
            url = next;
        }
    }

    /// One request with retries: a success, a redirect or a status in `answers` comes back.
    async fn send_once(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        answers: &[u16],
    ) -> Result<reqwest::Response, GitLabError> {
        let path = display_path(&url);
        if self.token.is_some() && cleartext_to_remote(&url) {
            return Err(GitLabError::TokenOverHttp(
                url.origin().ascii_serialization(),
            ));
        }
        let idempotent = matches!(method, Method::GET | Method::DELETE | Method::HEAD);
        let mut delay = self.retry.first_delay;
        let attempts = self.retry.attempts.max(1);
        let mut last: Option<GitLabError> = None;
        for attempt in 1..=attempts {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .timeout(self.retry.timeout)
                .header("accept", "application/json");
            req = crate::telemetry::Traced::traced(req);
            if let Some(t) = &self.token {
                let mut v = HeaderValue::from_str(t.expose_secret()).map_err(|_| {
                    GitLabError::Url("the token is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                req = req.header("PRIVATE-TOKEN", v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let wait = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success()
                        || status.is_redirection()
                        || answers.contains(&status.as_u16())
                    {
                        return Ok(resp);
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let asked = retry_after(resp.headers());
                        let err = GitLabError::RateLimited {
                            path: path.clone(),
                            attempts: attempt,
                            retry_after: asked.map(|d| d.as_secs()),
                        };
                        // Longer than we would wait: say so now rather than retry too early.
                        if asked.is_some_and(|d| d > self.retry.max_retry_after) {
                            return Err(err);
                        }
                        last = Some(err);
                        asked.unwrap_or(delay)
                    } else if status.is_server_error() {
                        let gateway = matches!(status.as_u16(), 502..=504);
                        let text = resp.text().await.unwrap_or_default();
                        let (message, _) = parse_error_body(&text);
                        let err = GitLabError::Server {
                            path: path.clone(),
                            status: status.as_u16(),
                            attempts: attempt,
                            message,
                        };
                        if !(gateway || idempotent) {
                            return Err(err);
                        }
                        last = Some(err);
                        delay
                    } else {
                        let text = resp.text().await.unwrap_or_default();
                        return Err(client_error(path, status, &text));
                    }
                }
                Err(e) => {
                    // A refused connection never reached GitLab: safe to repeat for any method.
                    let retryable =
                        e.is_connect() || (idempotent && (e.is_timeout() || e.is_request()));
                    let err = GitLabError::Transport {
                        path: path.clone(),
                        attempts: attempt,
                        message: e.without_url().to_string(),
                    };
                    if !retryable {
                        return Err(err);
                    }
                    last = Some(err);
                    delay
                }
            };
            if attempt < attempts {
                tokio::time::sleep(wait).await;
                delay = delay.saturating_mul(2).min(self.retry.max_delay);
            }
        }
        Err(last.unwrap_or(GitLabError::Transport {
            path,
            attempts,
            message: "no attempt made".into(),
        }))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, GitLabError> {
        let url = self.api_url(path)?;
        let shown = display_path(&url);
        let resp = self.send(method, url, body).await?;
        let bytes = resp.bytes().await.map_err(|e| GitLabError::Decode {
            path: shown.clone(),
            message: e.without_url().to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| GitLabError::Decode {
            path: shown,
            message: e.to_string(),
        })
    }

    /// GET of one JSON object under `/api/v4`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, GitLabError> {
        self.json(Method::GET, path, None).await
    }

    /// POST of a JSON body under `/api/v4`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, GitLabError> {
        self.json(Method::POST, path, Some(body)).await
    }

    /// DELETE under `/api/v4` (GitLab answers 204).
    pub async fn delete(&self, path: &str) -> Result<(), GitLabError> {
        let url = self.api_url(path)?;
        self.send(Method::DELETE, url, None).await.map(drop)
    }

    /// One page of a listing; `path_and_query` is relative to `/api/v4`.
    pub async fn get_page<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<Page<T>, GitLabError> {
        let mut url = self.api_url(path_and_query)?;
        if !url.query_pairs().any(|(k, _)| k == "per_page") {
            url.query_pairs_mut().append_pair("per_page", "100");
        }
        let shown = display_path(&url);
        let resp = self.send(Method::GET, url.clone(), None).await?;
        let next = next_page(resp.headers(), &url, &self.root);
        let bytes = resp.bytes().await.map_err(|e| GitLabError::Decode {
            path: shown.clone(),
            message: e.without_url().to_string(),
        })?;
        let items = serde_json::from_slice(&bytes).map_err(|e| GitLabError::Decode {
            path: shown,
            message: e.to_string(),
        })?;
        Ok(Page { items, next })
    }

    /// Every item of a listing, following `Link` / `X-Next-Page` (at most [`MAX_PAGES`]).
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<Vec<T>, GitLabError> {
        let mut out = Vec::new();
        let mut next = Some(path_and_query.to_owned());
        let mut pages = 0;
        while let Some(p) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(GitLabError::Decode {
                    path: path_and_query.to_owned(),
                    message: format!("more than {MAX_PAGES} pages"),
                });
            }
            let page: Page<T> = self.get_page(&p).await?;
            out.extend(page.items);
            next = page.next;
        }
        Ok(out)
    }

    // ---- endpoints ------------------------------------------------------------------------

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version, GitLabError> {
        self.get("version").await
    }

    /// `GET /-/health`: GitLab answers `GitLab OK` (plain text) when the application is up.
    pub async fn health(&self) -> Result<String, GitLabError> {
        let url = self
            .root
            .join("-/health")
            .map_err(|_| GitLabError::Url("-/health".into()))?;
        let resp = self.send(Method::GET, url, None).await?;
        resp.text().await.map_err(|e| GitLabError::Decode {
            path: "/-/health".into(),
            message: e.without_url().to_string(),
        })
    }

    /// `GET /-/readiness`: JSON with a `status` and per-check results, as GitLab sent it,
    /// whether ready (200) or not (503: `{"status": "failed", "master_check": [{"status":
    /// "failed", "message": ...}]}`, `doc/administration/monitoring/health_check.md`). A 503
    /// with such a body is GitLab's answer, not a gateway failure: it is not retried.
    pub async fn readiness(&self) -> Result<serde_json::Value, GitLabError> {
        let url = self
            .root
            .join("-/readiness")
            .map_err(|_| GitLabError::Url("-/readiness".into()))?;
        let resp = self.send_accepting(Method::GET, url, None, &[503]).await?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| GitLabError::Decode {
            path: "/-/readiness".into(),
            message: e.without_url().to_string(),
        })?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) if v.get("status").is_some() => Ok(v),
            // A 503 from a proxy in front of GitLab (an HTML page): GitLab did not answer.
            _ if status == 503 => Err(GitLabError::Server {
                path: "/-/readiness".into(),
                status,
                attempts: 1,
                message: parse_error_body(&text).0,
            }),
            Ok(_) => Err(GitLabError::Decode {
                path: "/-/readiness".into(),
                message: "no `status` in the answer".into(),
            }),
            Err(e) => Err(GitLabError::Decode {
                path: "/-/readiness".into(),
                message: e.to_string(),
            }),
        }
    }

    /// [`GitLabClient::readiness`] read: ready or not, and the checks that failed.
    pub async fn readiness_report(&self) -> Result<Readiness, GitLabError> {
        self.readiness().await.map(|v| Readiness::from_json(&v))
    }

    /// `GET /users?username=`: the user, or `None`.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, GitLabError> {
        let users: Vec<User> = self
            .get_all(&format!("users?username={}", enc(username)))
            .await?;
        Ok(users
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(username)))
    }

    /// `POST /users` (admin). The password is sent once and never kept by the client.
    /// The body is JSON, so a password never shows up in a URL or an access log.
    pub async fn create_user(&self, new: &NewUser<'_>) -> Result<User, GitLabError> {
        let mut body = serde_json::json!({
            "username": new.username,
            "email": new.email,
            "name": new.name,
            "admin": new.admin,
            "skip_confirmation": true,
        });
        match new.password {
            Some(p) => body["password"] = p.expose_secret().into(),
            None => body["force_random_password"] = true.into(),
        }
        self.post("users", &body).await
    }

    /// `GET /groups/:id` by full path (URL-encoded): the group, or `None` on 404.
    pub async fn group(&self, full_path: &str) -> Result<Option<Group>, GitLabError> {
        match self.get(&format!("groups/{}", enc(full_path))).await {
            Ok(g) => Ok(Some(g)),
            Err(GitLabError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /groups?search=`.
    pub async fn search_groups(&self, search: &str) -> Result<Vec<Group>, GitLabError> {
        self.get_all(&format!("groups?search={}", enc(search)))
            .await
    }

    /// `POST /groups`.
    pub async fn create_group(
        &self,
        name: &str,
        path: &str,
        visibility: &str,
        parent_id: Option<u64>,
    ) -> Result<Group, GitLabError> {
        let mut body = serde_json::json!({"name": name, "path": path, "visibility": visibility});
        if let Some(p) = parent_id {
            body["parent_id"] = p.into();
        }
        self.post("groups", &body).await
    }

    /// A group for mirrors: like [`GitLabClient::create_group`], with default-branch
    /// protection that lets maintainers push and force-push (GitLab 17+
    /// `default_branch_protection_defaults`). A mirror must accept the source's history,
    /// rewritten branches included; GitLab's default protection would reject force-pushes to
    /// the default branch of every mirrored project.
    pub async fn create_mirror_group(
        &self,
        path: &str,
        parent_id: Option<u64>,
    ) -> Result<Group, GitLabError> {
        let mut body = serde_json::json!({
            "name": path, "path": path, "visibility": "private",
            "default_branch_protection_defaults": {
                "allowed_to_push": [{"access_level": 40}],
                "allowed_to_merge": [{"access_level": 40}],
                "allow_force_push": true,
            },
        });
        if let Some(p) = parent_id {
            body["parent_id"] = p.into();
        }
        self.post("groups", &body).await
    }

    /// `GET /projects/:id` by full path (URL-encoded): the project, or `None` on 404.
    pub async fn project_by_path(&self, full_path: &str) -> Result<Option<Project>, GitLabError> {
        match self.get(&format!("projects/{}", enc(full_path))).await {
            Ok(p) => Ok(Some(p)),
            Err(GitLabError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Pending and running CI jobs of every project (as an administrator): GitLab has no
    /// instance-wide job listing, so this lists projects, then each project's jobs with
    /// `scope[]=pending&scope[]=running`. For on-demand runners. Projects are listed with
    /// keyset pagination (`doc/api/rest/index.md`), since offset pagination stops at 50,000.
    pub async fn active_jobs(&self) -> Result<Vec<CiJob>, GitLabError> {
        let projects: Vec<Project> = self
            .get_all("projects?simple=true&archived=false&pagination=keyset&order_by=id&sort=asc")
            .await?;
        let mut jobs = Vec::new();
        for p in projects {
            let mut j: Vec<CiJob> = self
                .get_all(&format!(
                    "projects/{}/jobs?scope%5B%5D=pending&scope%5B%5D=running",
                    p.id
                ))
                .await?;
            jobs.append(&mut j);
        }
        Ok(jobs)
    }

    /// `DELETE /projects/:id` (GitLab schedules the deletion and answers 202).
    pub async fn delete_project(&self, id: u64) -> Result<(), GitLabError> {
        self.delete(&format!("projects/{id}")).await
    }

    /// `GET /groups/:id/projects` with subgroups, every page: the projects that belong to the
    /// group. `with_shared=false`, since GitLab's default (`true`, `doc/api/groups.md`, "List
    /// projects") also lists projects of other namespaces merely shared with the group.
    pub async fn group_projects(&self, full_path: &str) -> Result<Vec<Project>, GitLabError> {
        self.get_all(&format!(
            "groups/{}/projects?include_subgroups=true&with_shared=false&order_by=id&sort=asc",
            enc(full_path)
        ))
        .await
    }

    /// `GET /users/:username/projects` (the projects in that user's namespace), every page.
    pub async fn user_projects(&self, username: &str) -> Result<Vec<Project>, GitLabError> {
        self.get_all(&format!(
            "users/{}/projects?order_by=id&sort=asc",
            enc(username)
        ))
        .await
    }

    /// The projects of a group (with subgroups, without projects only shared with it) or of a
    /// user's namespace, for mirroring, with their archive and fork status known, never
    /// guessed:
    ///
    /// - archived projects are left out by the API itself (`archived=false`) unless `want`
    ///   asks for them;
    /// - a listing without a token gets GitLab's simple view (`doc/api/projects.md`: "only
    ///   simple fields are returned" without authentication), which has neither `archived`
    ///   nor `forked_from_project`; when forks must be left out, each such project is read
    ///   with `GET /projects/:id` (a public project's full view), and one whose status still
    ///   cannot be told fails the listing with a message saying so.
    pub async fn account_projects(
        &self,
        account: Account<'_>,
        want: ListFilter,
    ) -> Result<Vec<Project>, GitLabError> {
        let archived = if want.archived { "" } else { "&archived=false" };
        let first = match account {
            Account::Group(g) => format!(
                "groups/{}/projects?include_subgroups=true&with_shared=false&order_by=id&sort=asc{archived}",
                enc(g)
            ),
            Account::User(u) => format!("users/{}/projects?order_by=id&sort=asc{archived}", enc(u)),
        };
        let raw: Vec<serde_json::Value> = self.get_all(&first).await?;
        let mut out = Vec::with_capacity(raw.len());
        for v in raw {
            let full_view = v.get("archived").is_some();
            let decode = |v: serde_json::Value| {
                serde_json::from_value::<Project>(v).map_err(|e| GitLabError::Decode {
                    path: first.clone(),
                    message: e.to_string(),
                })
            };
            let mut p = decode(v)?;
            if !full_view && !want.forks {
                let detail: serde_json::Value = self.get(&format!("projects/{}", p.id)).await?;
                if detail.get("archived").is_none() {
                    return Err(GitLabError::Decode {
                        path: format!("/api/v4/projects/{}", p.id),
                        message: format!(
                            "GitLab does not say whether {} is a fork (only simple fields are shown without a token); set the source's token_env (read_api) or `forks: true`",
                            p.path_with_namespace
                        ),
                    });
                }
                p = decode(detail)?;
            }
            if (p.archived && !want.archived) || (p.forked_from_project.is_some() && !want.forks) {
                continue;
            }
            out.push(p);
        }
        Ok(out)
    }

    /// `POST /projects` in the namespace `namespace_id`, empty (no README).
    pub async fn create_project(
        &self,
        name: &str,
        path: &str,
        namespace_id: u64,
        visibility: &str,
    ) -> Result<Project, GitLabError> {
        let body = serde_json::json!({
            "name": name, "path": path, "namespace_id": namespace_id,
            "visibility": visibility, "initialize_with_readme": false,
        });
        self.post("projects", &body).await
    }

    /// `GET /groups/:id/members` (direct members).
    pub async fn group_members(&self, group_id: u64) -> Result<Vec<Member>, GitLabError> {
        self.get_all(&format!("groups/{group_id}/members")).await
    }

    /// `POST /groups/:id/members`.
    pub async fn add_group_member(
        &self,
        group_id: u64,
        user_id: u64,
        access_level: u32,
    ) -> Result<Member, GitLabError> {
        self.post(
            &format!("groups/{group_id}/members"),
            &serde_json::json!({"user_id": user_id, "access_level": access_level}),
        )
        .await
    }

    /// `GET /personal_access_tokens?user_id=` (admin: any user's tokens).
    pub async fn personal_access_tokens(
        &self,
        user_id: u64,
    ) -> Result<Vec<PersonalAccessToken>, GitLabError> {
        self.get_all(&format!("personal_access_tokens?user_id={user_id}"))
            .await
    }

    /// `GET /personal_access_tokens/self`: the token the client authenticates with.
    pub async fn current_token(&self) -> Result<PersonalAccessToken, GitLabError> {
        self.get("personal_access_tokens/self").await
    }

    /// `POST /users/:id/personal_access_tokens` (admin creates a token for a user).
    pub async fn create_personal_access_token(
        &self,
        user_id: u64,
        name: &str,
        scopes: &[String],
        expires_at: &str,
    ) -> Result<NewToken, GitLabError> {
        self.post(
            &format!("users/{user_id}/personal_access_tokens"),
            &serde_json::json!({"name": name, "scopes": scopes, "expires_at": expires_at}),
        )
        .await
    }

    /// `POST /personal_access_tokens/:id/rotate`: revokes the token and returns its successor
    /// (new id, new value).
    pub async fn rotate_personal_access_token(
        &self,
        id: u64,
        expires_at: Option<&str>,
    ) -> Result<NewToken, GitLabError> {
        let body = match expires_at {
            Some(e) => serde_json::json!({"expires_at": e}),
            None => serde_json::json!({}),
        };
        self.post(&format!("personal_access_tokens/{id}/rotate"), &body)
            .await
    }

    /// `DELETE /personal_access_tokens/:id`: revokes a token.
    pub async fn revoke_personal_access_token(&self, id: u64) -> Result<(), GitLabError> {
        self.delete(&format!("personal_access_tokens/{id}")).await
    }

    /// `POST /user/runners` (GitLab ≥ 16, the only way from 17 on): creates a runner and
    /// returns its `glrt-` authentication token.
    pub async fn create_runner(&self, r: &NewRunner) -> Result<CreatedRunner, GitLabError> {
        let mut body = serde_json::json!({
            "runner_type": r.runner_type.as_str(),
            "description": r.description,
            "tag_list": r.tags.join(","),
            "run_untagged": r.run_untagged,
            "access_level": access_level(r.protected),
        });
        if let Some(g) = r.group_id {
            body["group_id"] = g.into();
        }
        if let Some(p) = r.project_id {
            body["project_id"] = p.into();
        }
        self.post("user/runners", &body).await
    }

    /// `PUT /runners/:id`: what jobs the runner takes (its tags, untagged jobs, protected
    /// refs only), set in place: its token stays valid.
    pub async fn update_runner_scope(
        &self,
        id: u64,
        tags: &[String],
        run_untagged: bool,
        protected: bool,
    ) -> Result<(), GitLabError> {
        let body = serde_json::json!({
            "tag_list": tags.join(","),
            "run_untagged": run_untagged,
            "access_level": access_level(protected),
        });
        self.json::<serde_json::Value>(Method::PUT, &format!("runners/{id}"), Some(&body))
            .await
            .map(drop)
    }

    /// `GET /runners/all` (admin).
    pub async fn all_runners(&self) -> Result<Vec<RunnerInfo>, GitLabError> {
        self.get_all("runners/all").await
    }

    /// `DELETE /runners/:id`.
    pub async fn delete_runner(&self, id: u64) -> Result<(), GitLabError> {
        self.delete(&format!("runners/{id}")).await
    }
}

/// Percent-encodes one path segment or query value (`/` included, as GitLab wants for ids
/// given as full paths).
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn display_path(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

fn client_error(path: String, status: StatusCode, body: &str) -> GitLabError {
    let (message, fields) = parse_error_body(body);
    match status.as_u16() {
        400 => GitLabError::BadRequest { path, message },
        401 => GitLabError::Unauthorized { path, message },
        403 => GitLabError::Forbidden { path, message },
        404 => GitLabError::NotFound { path, message },
        409 => GitLabError::Conflict { path, message },
        422 => GitLabError::Unprocessable {
            path,
            message,
            fields,
        },
        s => GitLabError::Status {
            path,
            status: s,
            message,
        },
    }
}

/// How long a 429 asks to wait: `Retry-After` (seconds or an HTTP date), else GitLab's
/// `RateLimit-Reset` (unix time) or `RateLimit-ResetTime` (an HTTP date)
/// (`doc/administration/settings/user_and_ip_rate_limits.md`, "Response headers").
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let until = |when: std::time::SystemTime| {
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    if let Some(v) = header("retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(when) = httpdate::parse_http_date(v) {
            return Some(until(when));
        }
    }
    if let Some(reset) = header("ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
        return Some(until(std::time::UNIX_EPOCH + Duration::from_secs(reset)));
    }
    header("ratelimit-resettime")
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .map(until)
}

/// The next page relative to `/api/v4`: the `Link` header's `rel="next"` (re-based onto our
/// root), else `X-Next-Page` applied to the current URL.
fn next_page(h: &HeaderMap, current: &Url, root: &Url) -> Option<String> {
    let api_prefix = format!("{}api/v4/", root.path());
    for link in h.get_all("link") {
        let Ok(text) = link.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if !is_next {
                continue;
            }
            let target = target.trim_start_matches('<').trim_end_matches('>');
            let Ok(u) = current.join(target) else {
                continue;
            };
            let rel = u.path().strip_prefix(&api_prefix)?;
            return Some(match u.query() {
                Some(q) => format!("{rel}?{q}"),
                None => rel.to_owned(),
            });
        }
    }
    let next = h.get("x-next-page")?.to_str().ok()?.trim();
    let n: u64 = next.parse().ok()?;
    let mut u = current.clone();
    let pairs: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        q.append_pair("page", &n.to_string());
    }
    let rel = u.path().strip_prefix(&api_prefix)?;
    Some(format!("{rel}?{}", u.query().unwrap_or_default()))
}

// ---- types --------------------------------------------------------------------------------

/// `GET /version`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Version {
    pub version: String,
    #[serde(default)]
    pub revision: String,
}

/// What `/-/readiness` says: ready or not, and each failing check with its message
/// (`master_check: unexpected Master check result: false`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub failing: Vec<String>,
}

impl Readiness {
    /// Reads GitLab's body: `status` is `ok` when ready; every `*_check` is a list of
    /// `{"status", "message"?}` results (health_check.md).
    pub fn from_json(v: &serde_json::Value) -> Readiness {
        let mut failing = Vec::new();
        if let Some(map) = v.as_object() {
            for (name, results) in map {
                let Some(list) = results.as_array() else {
                    continue;
                };
                for r in list {
                    if r.get("status").and_then(|s| s.as_str()) == Some("ok") {
                        continue;
                    }
                    failing.push(match r.get("message").and_then(|m| m.as_str()) {
                        Some(m) => format!("{name}: {m}"),
                        None => name.clone(),
                    });
                }
            }
        }
        let ready = v.get("status").and_then(|s| s.as_str()) == Some("ok");
        if !ready && failing.is_empty() {
            let top = v.get("message").and_then(|m| m.as_str());
            failing.push(top.unwrap_or("status is not ok").to_owned());
        }
        Readiness { ready, failing }
    }
}

/// A user as GitLab lists it (the fields autogit reads).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct User {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub is_admin: Option<bool>,
    #[serde(default)]
    pub bot: Option<bool>,
}

/// What `POST /users` needs.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    /// `None`: GitLab picks a random password nobody knows (service accounts).
    pub password: Option<&'a SecretString>,
    pub admin: bool,
}

/// A group.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub full_path: String,
    #[serde(default)]
    pub visibility: String,
    #[serde(default)]
    pub parent_id: Option<u64>,
}

/// A CI job, as `GET /projects/:id/jobs` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct CiJob {
    pub id: u64,
    /// `pending`, `running`, ...
    pub status: String,
    #[serde(default)]
    pub tag_list: Vec<String>,
}

/// A project (the fields autogit reads).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Project {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub path_with_namespace: String,
    #[serde(default)]
    pub http_url_to_repo: String,
    #[serde(default)]
    pub visibility: String,
    #[serde(default)]
    pub archived: bool,
    /// Present (as an object) when the project is a fork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from_project: Option<serde_json::Value>,
}

/// Whose projects [`GitLabClient::account_projects`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Account<'a> {
    /// A group's full path (its subgroups included).
    Group(&'a str),
    /// A user's namespace.
    User(&'a str),
}

/// Which projects a mirror listing wants besides the active, non-fork ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub archived: bool,
    pub forks: bool,
}

/// A group member.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Member {
    pub id: u64,
    pub username: String,
    pub access_level: u32,
}

/// A personal access token's metadata (no value).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct PersonalAccessToken {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub user_id: Option<u64>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A token just created or rotated: the only time GitLab shows its value.
#[derive(Deserialize)]
pub struct NewToken {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub user_id: Option<u64>,
    pub token: SecretString,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Runner scope for `POST /user/runners`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerType {
    Instance,
    Group,
    Project,
}

impl RunnerType {
    /// GitLab's name: `instance_type`, `group_type`, `project_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerType::Instance => "instance_type",
            RunnerType::Group => "group_type",
            RunnerType::Project => "project_type",
        }
    }
}

/// What `POST /user/runners` needs.
#[derive(Clone, Debug)]
pub struct NewRunner {
    pub runner_type: RunnerType,
    /// Required for [`RunnerType::Group`].
    pub group_id: Option<u64>,
    /// Required for [`RunnerType::Project`].
    pub project_id: Option<u64>,
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    /// Only jobs of protected branches and tags (`access_level: ref_protected`).
    pub protected: bool,
}

/// GitLab's `access_level` of a runner.
pub fn access_level(protected: bool) -> &'static str {
    if protected {
        "ref_protected"
    } else {
        "not_protected"
    }
}

/// `POST /user/runners`'s answer: id and the `glrt-` authentication token.
#[derive(Deserialize)]
pub struct CreatedRunner {
    pub id: u64,
    pub token: SecretString,
    #[serde(default)]
    pub token_expires_at: Option<String>,
}

impl std::fmt::Debug for CreatedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedRunner")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("token_expires_at", &self.token_expires_at)
            .finish()
    }
}

/// A runner from `GET /runners/all`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct RunnerInfo {
    pub id: u64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub runner_type: Option<String>,
    #[serde(default)]
    pub online: Option<bool>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub paused: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_every_shape() {
        assert_eq!(
            parse_error_body(r#"{"message":"404 User Not Found"}"#).0,
            "404 User Not Found"
        );
        let (m, f) = parse_error_body(
            r#"{"message":{"email":["has already been taken"],"username":["is too short","is invalid"]}}"#,
        );
        assert_eq!(
            m,
            "email has already been taken; username is too short; username is invalid"
        );
        assert_eq!(f["username"].len(), 2);
        assert_eq!(
            parse_error_body(
                r#"{"error":"invalid_token","error_description":"Token was revoked"}"#
            )
            .0,
            "invalid_token: Token was revoked"
        );
        assert_eq!(
            parse_error_body(r#"{"error":"name is missing"}"#).0,
            "name is missing"
        );
        assert_eq!(
            parse_error_body("<html>bad gateway</html>").0,
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn next_page_from_link_is_rebased_onto_our_root() {
        let root = Url::parse("http://127.0.0.1:8080/").unwrap();
        let cur = Url::parse("http://127.0.0.1:8080/api/v4/users?per_page=100").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://evil.example/api/v4/users?page=2&per_page=100>; rel=\"next\", <https://gitlab.example/api/v4/users?page=1&per_page=100>; rel=\"first\"",
            ),
        );
        assert_eq!(
            next_page(&h, &cur, &root).as_deref(),
            Some("users?page=2&per_page=100")
        );
        let mut h = HeaderMap::new();
        h.insert("x-next-page", HeaderValue::from_static("3"));
        assert_eq!(
            next_page(&h, &cur, &root).as_deref(),
            Some("users?per_page=100&page=3")
        );
        let mut h = HeaderMap::new();
        h.insert("x-next-page", HeaderValue::from_static(""));
        assert_eq!(next_page(&h, &cur, &root), None);
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        // Without Retry-After: GitLab's RateLimit-Reset (unix time), then RateLimit-ResetTime.
        let mut h = HeaderMap::new();
        let soon = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        h.insert(
            "ratelimit-reset",
            HeaderValue::from_str(&soon.to_string()).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let mut h = HeaderMap::new();
        h.insert(
            "ratelimit-resettime",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn debug_hides_the_token() {
        let c = GitLabClient::new(
            "http://127.0.0.1:1/api/v4/",
            Some(SecretString::from("glpat-sekrit".to_owned())),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("sekrit"));
        assert_eq!(c.root().as_str(), "http://127.0.0.1:1/");
        assert!(GitLabClient::new("ftp://x", None).is_err());
        assert!(GitLabClient::new("http://u:p@x", None).is_err());
    }

    #[test]
    fn which_urls_are_cleartext_to_a_remote_host() {
        for (url, remote) in [
            ("http://127.0.0.1:8080/", false),
            ("http://127.9.9.9/", false),
            ("http://[::1]:80/", false),
            ("http://localhost:3000/", false),
            ("http://gitlab.localhost:8080/", false),
            ("https://gitlab.example.com/", false),
            ("http://gitlab.example.com/", true),
            ("http://10.0.0.5/", true),
            ("http://169.254.169.254/", true),
            ("http://[::ffff:10.0.0.1]/", true),
        ] {
            assert_eq!(
                cleartext_to_remote(&Url::parse(url).unwrap()),
                remote,
                "{url}"
            );
        }
    }
}
