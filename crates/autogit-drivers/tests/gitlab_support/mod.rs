//! A fake GitLab for tests: an in-memory server that answers the REST v4 endpoints autogit
//! uses the way GitLab documents them: status codes (201 on create, 200 on get, 204 on
//! delete), pagination headers (`Link`, `X-Next-Page`, `X-Page`, `X-Per-Page`, `X-Total`,
//! `X-Total-Pages`), error bodies (`{"message": "401 Unauthorized"}`, `{"message": "404 User
//! Not Found"}`, `{"message": "Email has already been taken"}`, `{"message": {field:
//! [errors]}}`, `{"error": ...}`), `PRIVATE-TOKEN` authentication with admin checks and
//! scopes, and switches to inject 429 with `Retry-After`, transient 502s and any forced answer.
//!
//! It is a fake because GitLab itself cannot run on the machines that test autogit; the code
//! under test is the production client (`autogit_drivers::gitlab`), unchanged, talking HTTP
//! to this server over loopback.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The host GitLab writes into `Link` headers (its `external_url`): deliberately not the
/// address the client talks to, as behind a proxy.
pub const EXTERNAL: &str = "http://gitlab.example.test";

#[derive(Clone, Debug)]
pub struct FUser {
    pub id: u64,
    pub username: String,
    pub email: String,
    pub name: String,
    pub admin: bool,
    pub password_set: bool,
}

#[derive(Clone, Debug)]
pub struct FGroup {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub full_path: String,
    pub visibility: String,
    pub parent_id: Option<u64>,
    /// `default_branch_protection_defaults` as created (GitLab 17+).
    pub branch_protection: Option<Value>,
}

#[derive(Clone, Debug)]
pub struct FProject {
    pub id: u64,
    pub name: String,
    pub path: String,
    pub namespace_id: u64,
    pub path_with_namespace: String,
    pub visibility: String,
    pub archived: bool,
    pub fork: bool,
    /// Groups this project is shared with (`POST /projects/:id/share`); it still belongs to
    /// its own namespace.
    pub shared_with: Vec<u64>,
}

/// A CI job (`GET /projects/:id/jobs`).
#[derive(Clone, Debug)]
pub struct FJob {
    pub id: u64,
    pub project_id: u64,
    /// `pending`, `running`, `success`, ...
    pub status: String,
    pub tag_list: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct FPat {
    pub id: u64,
    pub user_id: u64,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub revoked: bool,
    pub token: String,
}

#[derive(Clone, Debug)]
pub struct FRunner {
    pub id: u64,
    pub runner_type: String,
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    /// `not_protected` (GitLab's default) or `ref_protected`.
    pub access_level: String,
    pub token: String,
    pub group_id: Option<u64>,
}

/// How listings announce the next page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// `Link` and the `X-*` headers, as GitLab normally answers.
    LinkAndHeaders,
    /// Only the `X-*` headers (no `Link`).
    XNextPageOnly,
}

/// The fake's whole state; tests read and change it through [`Fake::state`].
#[derive(Debug)]
pub struct FakeState {
    pub users: Vec<FUser>,
    pub groups: Vec<FGroup>,
    pub projects: Vec<FProject>,
    pub jobs: Vec<FJob>,
    /// (group id, user id, access level).
    pub members: Vec<(u64, u64, u32)>,
    pub pats: Vec<FPat>,
    pub runners: Vec<FRunner>,
    next_id: u64,
    /// Every request: (method, path and query).
    pub requests: Vec<(String, String)>,
    /// Every `PRIVATE-TOKEN` header value seen (to check what the client sent).
    pub tokens_seen: Vec<String>,
    /// The next N requests answer 502 Bad Gateway.
    pub fail_502: u32,
    /// The next N requests answer 429 with `Retry-After: <retry_after>`.
    pub rate_limit: u32,
    pub retry_after: String,
    /// The largest offset `/users` and `/projects` serve with offset pagination.
    pub max_offset: usize,
    /// Seconds until `RateLimit-Reset` when `retry_after` is empty.
    pub ratelimit_reset_in: u64,
    /// The next request answers this status and body instead.
    pub forced: Option<(u16, String)>,
    pub paging: Paging,
    /// A lower cap than GitLab's 100 on `per_page`, so tests see many pages with few items.
    pub max_per_page: usize,
    /// Today, for token expiry (`YYYY-MM-DD`).
    pub today: String,
    /// `/-/readiness` answers 503 with a failed `master_check`, as GitLab does while its
    /// Rails master is not ready.
    pub not_ready: bool,
    /// Renamed or moved projects: old full path → project id (GitLab keeps a redirect route).
    pub moved: Vec<(String, u64)>,
    /// The origin written into a moved project's `Location` (default: the origin the client
    /// used, from its `Host` header).
    pub redirect_origin: Option<String>,
}

impl FakeState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds a user; returns its id.
    pub fn add_user(&mut self, username: &str, admin: bool) -> u64 {
        let id = self.id();
        self.users.push(FUser {
            id,
            username: username.to_owned(),
            email: format!("{username}@example.test"),
            name: username.to_owned(),
            admin,
            password_set: true,
        });
        id
    }

    /// Adds a personal access token with a known value; returns its id.
    pub fn add_token(&mut self, user_id: u64, name: &str, token: &str, scopes: &[&str]) -> u64 {
        let id = self.id();
        self.pats.push(FPat {
            id,
            user_id,
            name: name.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: None,
            revoked: false,
            token: token.to_owned(),
        });
        id
    }

    /// Requests that change something (POST, PUT, DELETE).
    pub fn writes(&self) -> Vec<(String, String)> {
        self.requests
            .iter()
            .filter(|(m, _)| m != "GET" && m != "HEAD")
            .cloned()
            .collect()
    }

    fn user_json(u: &FUser) -> Value {
        json!({"id": u.id, "username": u.username, "name": u.name, "state": "active",
               "is_admin": u.admin, "bot": false, "web_url": format!("{EXTERNAL}/{}", u.username)})
    }

    fn group_json(g: &FGroup) -> Value {
        json!({"id": g.id, "name": g.name, "path": g.path, "full_path": g.full_path,
               "visibility": g.visibility, "parent_id": g.parent_id})
    }

    fn project_json(p: &FProject) -> Value {
        let mut v = json!({"id": p.id, "name": p.name, "path": p.path, "path_with_namespace": p.path_with_namespace,
               "namespace": {"id": p.namespace_id}, "visibility": p.visibility, "archived": p.archived,
               "http_url_to_repo": format!("{EXTERNAL}/{}.git", p.path_with_namespace)});
        if p.fork {
            v["forked_from_project"] = json!({"id": 1});
        }
        v
    }

    /// Adds a top-level group, without the API.
    pub fn add_group(&mut self, path: &str) -> u64 {
        let id = self.id();
        self.groups.push(FGroup {
            id,
            name: path.to_owned(),
            path: path.to_owned(),
            full_path: path.to_owned(),
            visibility: "private".to_owned(),
            parent_id: None,
            branch_protection: None,
        });
        id
    }

    /// Adds a project in a group (by full path) or a user's namespace, without the API.
    pub fn add_project(&mut self, namespace: &str, path: &str, archived: bool, fork: bool) {
        let ns = self
            .groups
            .iter()
            .find(|g| g.full_path == namespace)
            .map(|g| g.id)
            .or_else(|| {
                self.users
                    .iter()
                    .find(|u| u.username == namespace)
                    .map(|u| u.id)
            })
            .expect("a group or user");
        let id = self.id();
        self.projects.push(FProject {
            id,
            name: path.to_owned(),
            path: path.to_owned(),
            namespace_id: ns,
            path_with_namespace: format!("{namespace}/{path}"),
            visibility: "private".to_owned(),
            archived,
            fork,
            shared_with: Vec::new(),
        });
    }

    /// Makes a project public (listed and readable without a token); by full path.
    pub fn make_public(&mut self, full_path: &str) {
        let p = self
            .projects
            .iter_mut()
            .find(|p| p.path_with_namespace == full_path)
            .expect("a project");
        p.visibility = "public".to_owned();
    }

    /// Shares a project (by full path) with a group (by full path).
    pub fn share(&mut self, project: &str, group: &str) {
        let g = self
            .groups
            .iter()
            .find(|g| g.full_path == group)
            .expect("a group")
            .id;
        let p = self
            .projects
            .iter_mut()
            .find(|p| p.path_with_namespace == project)
            .expect("a project");
        p.shared_with.push(g);
    }

    /// Moves a project (by full path) to `new_path` in the same namespace; the old path
    /// redirects, as GitLab's redirect routes do.
    pub fn rename_project(&mut self, old: &str, new_path: &str) {
        let p = self
            .projects
            .iter_mut()
            .find(|p| p.path_with_namespace == old)
            .expect("a project");
        let ns = old.rsplit_once('/').map_or("", |(n, _)| n);
        p.path = new_path.to_owned();
        p.name = new_path.to_owned();
        p.path_with_namespace = format!("{ns}/{new_path}");
        let id = p.id;
        self.moved.push((old.to_owned(), id));
    }

    fn pat_json(&self, p: &FPat) -> Value {
        let expired = p
            .expires_at
            .as_deref()
            .is_some_and(|e| e <= self.today.as_str());
        json!({"id": p.id, "name": p.name, "revoked": p.revoked, "active": !p.revoked && !expired,
               "scopes": p.scopes, "user_id": p.user_id, "expires_at": p.expires_at,
               "created_at": "2025-01-01T00:00:00.000Z", "last_used_at": null})
    }
}

/// A running fake GitLab.
#[derive(Debug)]
pub struct Fake {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    /// Starts the server with `root` (id 1, admin) and nothing else.
    pub async fn start() -> Fake {
        let mut st = FakeState {
            users: Vec::new(),
            groups: Vec::new(),
            projects: Vec::new(),
            jobs: Vec::new(),
            members: Vec::new(),
            pats: Vec::new(),
            runners: Vec::new(),
            next_id: 0,
            requests: Vec::new(),
            tokens_seen: Vec::new(),
            fail_502: 0,
            rate_limit: 0,
            retry_after: "1".to_owned(),
            ratelimit_reset_in: 1,
            max_offset: 50_000,
            forced: None,
            paging: Paging::LinkAndHeaders,
            max_per_page: 100,
            today: "2025-11-25".to_owned(),
            not_ready: false,
            moved: Vec::new(),
            redirect_origin: None,
        };
        st.add_user("root", true);
        let state = Arc::new(Mutex::new(st));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake { url, state }
    }

    /// The state, locked.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Shared = Arc<Mutex<FakeState>>;

fn msg(status: u16, message: Value) -> Response {
    reply(status, json!({ "message": message }))
}

fn reply(status: u16, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    axum::extract::Query::<BTreeMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// A listing with GitLab's pagination headers.
fn paginate(st: &FakeState, uri: &Uri, items: Vec<Value>) -> Response {
    let q = query(uri);
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100)
        .min(st.max_per_page);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let pages = total.div_ceil(per_page).max(1);
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut r = reply(200, Value::Array(body));
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        h.insert(k, HeaderValue::from_str(&v).expect("header"));
    };
    set(h, "x-page", page.to_string());
    set(h, "x-per-page", per_page.to_string());
    set(h, "x-total", total.to_string());
    set(h, "x-total-pages", pages.to_string());
    set(
        h,
        "x-next-page",
        if page < pages {
            (page + 1).to_string()
        } else {
            String::new()
        },
    );
    set(
        h,
        "x-prev-page",
        if page > 1 {
            (page - 1).to_string()
        } else {
            String::new()
        },
    );
    if st.paging == Paging::LinkAndHeaders {
        let link_to = |p: usize| {
            let mut pairs: Vec<String> = q
                .iter()
                .filter(|(k, _)| k.as_str() != "page")
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect();
            pairs.push(format!("page={p}"));
            format!("{EXTERNAL}{}?{}", uri.path(), pairs.join("&"))
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
        }
        if page < pages {
            links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        }
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(pages)));
        set(h, "link", links.join(", "));
    }
    r
}

/// A listing of a resource with keyset pagination (`/users`, `/projects`): with
/// `pagination=keyset&order_by=id`, pages after `id_after` announced by a `Link` rel="next"
/// only (doc/api/rest/index.md, "Keyset-based pagination"); with offset pagination, an
/// offset beyond `max_offset` answers 405 (doc/administration/instance_limits.md, "Max offset
/// allowed by the REST API for offset-based pagination", 50,000 by default).
fn paginate_large(st: &FakeState, uri: &Uri, mut items: Vec<Value>, kind: &str) -> Response {
    let q = query(uri);
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100)
        .min(st.max_per_page);
    if q.get("pagination").map(String::as_str) == Some("keyset") {
        let after: u64 = q.get("id_after").and_then(|v| v.parse().ok()).unwrap_or(0);
        items.sort_by_key(|v| v["id"].as_u64().unwrap_or(0));
        let rest: Vec<Value> = items
            .into_iter()
            .filter(|v| v["id"].as_u64().unwrap_or(0) > after)
            .collect();
        let more = rest.len() > per_page;
        let page: Vec<Value> = rest.into_iter().take(per_page).collect();
        let last = page.last().and_then(|v| v["id"].as_u64());
        let mut r = reply(200, Value::Array(page));
        if let (true, Some(last)) = (more, last) {
            let mut pairs: Vec<String> = q
                .iter()
                .filter(|(k, _)| k.as_str() != "id_after")
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect();
            pairs.push(format!("id_after={last}"));
            let link = format!(
                "<{EXTERNAL}{}?{}>; rel=\"next\"",
                uri.path(),
                pairs.join("&")
            );
            r.headers_mut()
                .insert("link", HeaderValue::from_str(&link).expect("header"));
        }
        return r;
    }
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    if (page - 1) * per_page >= st.max_offset {
        return reply(
            405,
            json!({"error": format!("Offset pagination has a maximum allowed offset of {} for requests that return objects of type {kind}. Remaining records can be retrieved using keyset pagination.", st.max_offset)}),
        );
    }
    paginate(st, uri, items)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn str_field<'a>(b: &'a Value, k: &str) -> Option<&'a str> {
    b.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let st = &mut *guard;
    let pq = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    st.requests.push((method.as_str().to_owned(), pq));
    let token = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(t) = &token {
        st.tokens_seen.push(t.clone());
    }
    if st.rate_limit > 0 {
        st.rate_limit -= 1;
        // doc/administration/settings/user_and_ip_rate_limits.md, "Response headers": 429
        // with `RateLimit-*` (`RateLimit-Reset` in unix time) and `Retry-After` (seconds).
        // An empty `retry_after` leaves `Retry-After` out.
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "Retry later\n").into_response();
        let h = r.headers_mut();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let wait: u64 = st.retry_after.parse().unwrap_or(st.ratelimit_reset_in);
        for (k, v) in [
            ("ratelimit-name", "throttle_authenticated_api".to_owned()),
            ("ratelimit-limit", "60".to_owned()),
            ("ratelimit-observed", "67".to_owned()),
            ("ratelimit-remaining", "0".to_owned()),
            ("ratelimit-reset", (now + wait).to_string()),
        ] {
            h.insert(k, HeaderValue::from_str(&v).expect("header"));
        }
        if !st.retry_after.is_empty() {
            h.insert(
                "retry-after",
                HeaderValue::from_str(&st.retry_after).expect("header"),
            );
        }
        return r;
    }
    if st.fail_502 > 0 {
        st.fail_502 -= 1;
        let mut r = (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/html"));
        return r;
    }
    if let Some((status, body)) = st.forced.take() {
        let mut r = (StatusCode::from_u16(status).expect("status"), body).into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        return r;
    }
    let path = uri.path().to_owned();
    // Health endpoints: no token (they are guarded by the monitoring whitelist instead).
    if path == "/-/health" {
        return (StatusCode::OK, "GitLab OK").into_response();
    }
    if path == "/-/readiness" {
        // doc/administration/monitoring/health_check.md, "Readiness": 503 and the failing
        // check's message while the instance cannot take traffic.
        if st.not_ready {
            return reply(
                503,
                json!({"status": "failed",
                       "master_check": [{"status": "failed", "message": "unexpected Master check result: false"}]}),
            );
        }
        return reply(
            200,
            json!({"status": "ok", "master_check": [{"status": "ok"}],
                   "db_check": [{"status": "ok"}], "redis_check": [{"status": "ok"}]}),
        );
    }
    let Some(api) = path.strip_prefix("/api/v4/") else {
        return msg(404, json!("404 Not Found"));
    };
    // doc/api/rest/index.md, "Redirects": a request for a moved project's old path answers
    // 301 with the new location in `Location`.
    if let Some(rest) = api.strip_prefix("projects/") {
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let id = percent_decode(id);
        if let Some((_, new_id)) = st.moved.iter().find(|(old, _)| *old == id) {
            let origin = st.redirect_origin.clone().unwrap_or_else(|| {
                let host = headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1");
                format!("http://{host}")
            });
            let tail = if tail.is_empty() {
                String::new()
            } else {
                format!("/{tail}")
            };
            let mut r = msg(301, json!("301 Moved Permanently"));
            r.headers_mut().insert(
                "location",
                HeaderValue::from_str(&format!("{origin}/api/v4/projects/{new_id}{tail}"))
                    .expect("header"),
            );
            return r;
        }
    }
    if token.is_none() && method == Method::GET {
        return anonymous(st, &uri, api);
    }
    // Authentication.
    let today = st.today.clone();
    let Some(pat) = token.as_deref().and_then(|t| {
        st.pats
            .iter()
            .find(|p| {
                p.token == t
                    && !p.revoked
                    && p.expires_at.as_deref().is_none_or(|e| e > today.as_str())
            })
            .cloned()
    }) else {
        return msg(401, json!("401 Unauthorized"));
    };
    let Some(me) = st.users.iter().find(|u| u.id == pat.user_id).cloned() else {
        return msg(401, json!("401 Unauthorized"));
    };
    let has = |s: &str| pat.scopes.iter().any(|x| x == s);
    let api_read = has("api") || has("read_api");
    let api_write = has("api");
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return reply(400, json!({"error": "body is not valid JSON"})),
        }
    };
    let segs: Vec<String> = api.split('/').map(percent_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let q = query(&uri);
    let forbidden = || msg(403, json!("403 Forbidden"));
    let scope_error = || {
        reply(
            403,
            json!({"error": "insufficient_scope",
                   "error_description": "The request requires higher privileges than provided by the access token.",
                   "scope": "api read_api"}),
        )
    };

    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["version"]) => {
            if !api_read {
                return scope_error();
            }
            reply(200, json!({"version": "18.5.4", "revision": "b1a2c3d4"}))
        }
        (Method::GET, ["users"]) => {
            if !api_read {
                return scope_error();
            }
            let items: Vec<Value> = st
                .users
                .iter()
                .filter(|u| {
                    q.get("username")
                        .is_none_or(|n| u.username.eq_ignore_ascii_case(n))
                })
                .map(FakeState::user_json)
                .collect();
            paginate_large(st, &uri, items, "User")
        }
        (Method::POST, ["users"]) => {
            if !api_write {
                return scope_error();
            }
            if !me.admin {
                return forbidden();
            }
            for k in ["username", "email", "name"] {
                if str_field(&body, k).is_none() {
                    return reply(400, json!({"error": format!("{k} is missing")}));
                }
            }
            let random = body.get("force_random_password") == Some(&json!(true))
                || body.get("reset_password") == Some(&json!(true));
            let password = str_field(&body, "password");
            if password.is_none() && !random {
                return reply(
                    400,
                    json!({"error": "password, reset_password, force_random_password are missing, exactly one parameter must be provided"}),
                );
            }
            if password.is_some_and(|p| p.len() < 8) {
                return msg(
                    400,
                    json!({"password": ["is too short (minimum is 8 characters)"]}),
                );
            }
            let username = str_field(&body, "username").unwrap_or_default().to_owned();
            let email = str_field(&body, "email").unwrap_or_default().to_owned();
            if st
                .users
                .iter()
                .any(|u| u.email.eq_ignore_ascii_case(&email))
            {
                return msg(409, json!("Email has already been taken"));
            }
            if st
                .users
                .iter()
                .any(|u| u.username.eq_ignore_ascii_case(&username))
            {
                return msg(409, json!("Username has already been taken"));
            }
            let id = st.id();
            let u = FUser {
                id,
                username,
                email,
                name: str_field(&body, "name").unwrap_or_default().to_owned(),
                admin: body.get("admin") == Some(&json!(true)),
                password_set: password.is_some(),
            };
            st.users.push(u.clone());
            reply(201, FakeState::user_json(&u))
        }
        (Method::GET, ["groups"]) => {
            if !api_read {
                return scope_error();
            }
            let items: Vec<Value> = st
                .groups
                .iter()
                .filter(|g| {
                    q.get("search").is_none_or(|s| {
                        g.full_path.contains(s.as_str()) || g.name.contains(s.as_str())
                    })
                })
                .map(FakeState::group_json)
                .collect();
            paginate(st, &uri, items)
        }
        (Method::GET, ["groups", id]) => {
            if !api_read {
                return scope_error();
            }
            match find_group(st, id) {
                Some(g) => reply(200, FakeState::group_json(&g)),
                None => msg(404, json!("404 Group Not Found")),
            }
        }
        (Method::POST, ["groups"]) => {
            if !api_write {
                return scope_error();
            }
            let (Some(name), Some(gpath)) = (str_field(&body, "name"), str_field(&body, "path"))
            else {
                return reply(400, json!({"error": "name is missing, path is missing"}));
            };
            let parent_id = body.get("parent_id").and_then(Value::as_u64);
            let full_path = match parent_id {
                Some(p) => match st.groups.iter().find(|g| g.id == p) {
                    Some(parent) => format!("{}/{gpath}", parent.full_path),
                    None => return msg(404, json!("404 Group Not Found")),
                },
                None => gpath.to_owned(),
            };
            if !gpath
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                return msg(
                    422,
                    json!({"path": ["can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', end in '.', '.git' or '.atom'."]}),
                );
            }
            if st.groups.iter().any(|g| g.full_path == full_path) {
                return msg(
                    400,
                    json!("Failed to save group {:path=>[\"has already been taken\"]}"),
                );
            }
            let id = st.id();
            let g = FGroup {
                id,
                name: name.to_owned(),
                path: gpath.to_owned(),
                full_path,
                visibility: str_field(&body, "visibility")
                    .unwrap_or("private")
                    .to_owned(),
                parent_id,
                branch_protection: body.get("default_branch_protection_defaults").cloned(),
            };
            st.groups.push(g.clone());
            // The creator becomes the group's owner, as in GitLab.
            st.members.push((id, me.id, 50));
            reply(201, FakeState::group_json(&g))
        }
        (Method::GET, ["groups", id, "projects"]) => {
            if !api_read {
                return scope_error();
            }
            let Some(g) = find_group(st, id) else {
                return msg(404, json!("404 Group Not Found"));
            };
            let sub = format!("{}/", g.full_path);
            let inside: Vec<u64> = st
                .groups
                .iter()
                .filter(|x| x.id == g.id || x.full_path.starts_with(&sub))
                .map(|x| x.id)
                .collect();
            // doc/api/groups.md, "List projects": `with_shared` defaults to true (projects
            // shared with the group are listed too); `archived` limits by archived status.
            let with_shared = q.get("with_shared").is_none_or(|v| v != "false");
            let items: Vec<Value> = st
                .projects
                .iter()
                .filter(|p| {
                    inside.contains(&p.namespace_id)
                        || (with_shared && p.shared_with.iter().any(|g| inside.contains(g)))
                })
                .filter(|p| archived_filter(&q, p))
                .map(FakeState::project_json)
                .collect();
            paginate(st, &uri, items)
        }
        (Method::GET, ["users", u, "projects"]) => {
            if !api_read {
                return scope_error();
            }
            let Some(user) = st.users.iter().find(|x| x.username == *u).cloned() else {
                return msg(404, json!("404 User Not Found"));
            };
            let items: Vec<Value> = st
                .projects
                .iter()
                .filter(|p| p.namespace_id == user.id)
                .filter(|p| archived_filter(&q, p))
                .map(FakeState::project_json)
                .collect();
            paginate(st, &uri, items)
        }
        (Method::GET, ["projects", id]) => {
            if !api_read {
                return scope_error();
            }
            let found = st
                .projects
                .iter()
                .find(|p| p.id.to_string() == *id || p.path_with_namespace == *id);
            match found {
                Some(p) => reply(200, FakeState::project_json(p)),
                None => msg(404, json!("404 Project Not Found")),
            }
        }
        (Method::GET, ["projects"]) => {
            // As an administrator: every project (`simple=true` shape is a subset).
            if !api_read {
                return scope_error();
            }
            let items = st.projects.iter().map(FakeState::project_json).collect();
            paginate_large(st, &uri, items, "Project")
        }
        (Method::GET, ["projects", id, "jobs"]) => {
            if !api_read {
                return scope_error();
            }
            let Some(project) = st
                .projects
                .iter()
                .find(|p| p.id.to_string() == *id || p.path_with_namespace == *id)
                .map(|p| p.id)
            else {
                return msg(404, json!("404 Project Not Found"));
            };
            // `scope[]=pending&scope[]=running` (repeated keys: read the raw query).
            let scopes: Vec<String> = uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| *k == "scope[]" || *k == "scope%5B%5D")
                .map(|(_, v)| v.to_owned())
                .collect();
            let items = st
                .jobs
                .iter()
                .filter(|j| j.project_id == project)
                .filter(|j| scopes.is_empty() || scopes.contains(&j.status))
                .map(|j| json!({"id": j.id, "status": j.status, "tag_list": j.tag_list, "name": format!("job-{}", j.id)}))
                .collect();
            paginate(st, &uri, items)
        }
        (Method::POST, ["projects"]) => {
            if !api_write {
                return scope_error();
            }
            let (Some(name), Some(ppath), Some(ns)) = (
                str_field(&body, "name"),
                str_field(&body, "path"),
                body.get("namespace_id").and_then(Value::as_u64),
            ) else {
                return reply(
                    400,
                    json!({"error": "name, path or namespace_id is missing"}),
                );
            };
            let Some(group) = st.groups.iter().find(|g| g.id == ns).cloned() else {
                return msg(404, json!("404 Namespace Not Found"));
            };
            if !st
                .members
                .iter()
                .any(|(g, u, level)| *g == ns && *u == me.id && *level >= 30)
                && !me.admin
            {
                return forbidden();
            }
            let full = format!("{}/{ppath}", group.full_path);
            if st.projects.iter().any(|p| p.path_with_namespace == full) {
                return msg(400, json!({"path": ["has already been taken"]}));
            }
            let id = st.id();
            let p = FProject {
                id,
                name: name.to_owned(),
                path: ppath.to_owned(),
                namespace_id: ns,
                path_with_namespace: full,
                visibility: str_field(&body, "visibility")
                    .unwrap_or("private")
                    .to_owned(),
                archived: false,
                fork: false,
                shared_with: Vec::new(),
            };
            st.projects.push(p.clone());
            reply(201, FakeState::project_json(&p))
        }
        (Method::GET, ["groups", id, "members"]) => {
            if !api_read {
                return scope_error();
            }
            let Some(g) = find_group(st, id) else {
                return msg(404, json!("404 Group Not Found"));
            };
            let items: Vec<Value> = st
                .members
                .iter()
                .filter(|(gid, _, _)| *gid == g.id)
                .filter_map(|(_, uid, level)| {
                    st.users.iter().find(|u| u.id == *uid).map(|u| {
                        json!({"id": u.id, "username": u.username, "name": u.name,
                               "state": "active", "access_level": level})
                    })
                })
                .collect();
            paginate(st, &uri, items)
        }
        (Method::POST, ["groups", id, "members"]) => {
            if !api_write {
                return scope_error();
            }
            let Some(g) = find_group(st, id) else {
                return msg(404, json!("404 Group Not Found"));
            };
            let uid = body.get("user_id").and_then(Value::as_u64);
            let level = body.get("access_level").and_then(Value::as_u64);
            let (Some(uid), Some(level)) = (uid, level) else {
                return reply(
                    400,
                    json!({"error": "user_id is missing, access_level is missing"}),
                );
            };
            if ![10, 15, 20, 30, 40, 50].contains(&level) {
                return reply(
                    400,
                    json!({"error": "access_level does not have a valid value"}),
                );
            }
            let Some(u) = st.users.iter().find(|u| u.id == uid).cloned() else {
                return msg(404, json!("404 User Not Found"));
            };
            if st
                .members
                .iter()
                .any(|(gid, m, _)| *gid == g.id && *m == uid)
            {
                return msg(409, json!("Member already exists"));
            }
            st.members.push((g.id, uid, level as u32));
            reply(
                201,
                json!({"id": u.id, "username": u.username, "name": u.name, "state": "active",
                       "access_level": level}),
            )
        }
        (Method::GET, ["personal_access_tokens", "self"]) => reply(200, st.pat_json(&pat)),
        (Method::GET, ["personal_access_tokens"]) => {
            if !api_read {
                return scope_error();
            }
            let user_id = q.get("user_id").and_then(|u| u.parse::<u64>().ok());
            if !me.admin && user_id.is_some_and(|u| u != me.id) {
                return msg(401, json!("401 Unauthorized"));
            }
            let items: Vec<Value> = st
                .pats
                .iter()
                .filter(|p| user_id.is_none_or(|u| p.user_id == u))
                .filter(|p| me.admin || p.user_id == me.id)
                .map(|p| st.pat_json(p))
                .collect();
            paginate(st, &uri, items)
        }
        (Method::POST, ["users", uid, "personal_access_tokens"]) => {
            if !api_write {
                return scope_error();
            }
            if !me.admin {
                return forbidden();
            }
            let Some(user) = uid
                .parse::<u64>()
                .ok()
                .and_then(|id| st.users.iter().find(|u| u.id == id).cloned())
            else {
                return msg(404, json!("404 User Not Found"));
            };
            let Some(name) = str_field(&body, "name") else {
                return reply(400, json!({"error": "name is missing"}));
            };
            let scopes: Vec<String> = body
                .get("scopes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if scopes.is_empty() {
                return reply(400, json!({"error": "scopes is missing"}));
            }
            let expires_at = str_field(&body, "expires_at").map(str::to_owned);
            if expires_at.as_deref().is_some_and(|e| e <= today.as_str()) {
                return msg(422, json!({"expires_at": ["must be in the future"]}));
            }
            let id = st.id();
            let p = FPat {
                id,
                user_id: user.id,
                name: name.to_owned(),
                scopes,
                expires_at,
                revoked: false,
                token: format!("glpat-fake{id:014}"),
            };
            st.pats.push(p.clone());
            let mut v = st.pat_json(&p);
            v["token"] = json!(p.token);
            reply(201, v)
        }
        (Method::POST, ["personal_access_tokens", id, "rotate"]) => {
            if !api_write {
                return scope_error();
            }
            let Some(old) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| st.pats.iter().find(|p| p.id == id).cloned())
            else {
                return msg(404, json!("404 Not Found"));
            };
            if !me.admin && old.user_id != me.id {
                return forbidden();
            }
            if old.revoked {
                return msg(400, json!("400 Bad request - Token already revoked"));
            }
            if let Some(p) = st.pats.iter_mut().find(|p| p.id == old.id) {
                p.revoked = true;
            }
            let new_id = st.id();
            let p = FPat {
                id: new_id,
                expires_at: str_field(&body, "expires_at")
                    .map(str::to_owned)
                    .or(old.expires_at.clone()),
                revoked: false,
                token: format!("glpat-rot{new_id:015}"),
                ..old
            };
            st.pats.push(p.clone());
            let mut v = st.pat_json(&p);
            v["token"] = json!(p.token);
            reply(200, v)
        }
        (Method::DELETE, ["personal_access_tokens", id]) => {
            if !api_write {
                return scope_error();
            }
            let id = id.parse::<u64>().unwrap_or(0);
            let owner = st.pats.iter().find(|p| p.id == id).map(|p| p.user_id);
            match owner {
                None => msg(404, json!("404 Not Found")),
                Some(o) if !me.admin && o != me.id => forbidden(),
                Some(_) => {
                    if let Some(p) = st.pats.iter_mut().find(|p| p.id == id) {
                        p.revoked = true;
                    }
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        }
        (Method::POST, ["user", "runners"]) => {
            if !(has("create_runner") || api_write) {
                return scope_error();
            }
            let runner_type = str_field(&body, "runner_type")
                .unwrap_or_default()
                .to_owned();
            let group_id = body.get("group_id").and_then(Value::as_u64);
            match runner_type.as_str() {
                "instance_type" if !me.admin => return forbidden(),
                "instance_type" | "project_type" => {}
                "group_type" => {
                    if group_id.is_none() {
                        return reply(400, json!({"error": "group_id is missing"}));
                    }
                    if !st.groups.iter().any(|g| Some(g.id) == group_id) {
                        return msg(404, json!("404 Group Not Found"));
                    }
                }
                "" => return reply(400, json!({"error": "runner_type is missing"})),
                _ => {
                    return reply(
                        400,
                        json!({"error": "runner_type does not have a valid value"}),
                    );
                }
            }
            let id = st.id();
            let tags = tag_list(&body).unwrap_or_default();
            let access_level = match access_level(&body) {
                Ok(a) => a.unwrap_or("not_protected").to_owned(),
                Err(bad) => return bad,
            };
            let r = FRunner {
                access_level,
                id,
                runner_type,
                description: str_field(&body, "description")
                    .unwrap_or_default()
                    .to_owned(),
                run_untagged: body
                    .get("run_untagged")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                tags,
                token: format!("glrt-fake{id:016}"),
                group_id,
            };
            st.runners.push(r.clone());
            reply(
                201,
                json!({"id": r.id, "token": r.token, "token_expires_at": null}),
            )
        }
        (Method::GET, ["runners", "all"]) => {
            if !api_read {
                return scope_error();
            }
            if !me.admin {
                return forbidden();
            }
            let items: Vec<Value> = st
                .runners
                .iter()
                .map(|r| {
                    json!({"id": r.id, "description": r.description, "ip_address": null,
                           "active": true, "paused": false, "is_shared": r.runner_type == "instance_type",
                           "runner_type": r.runner_type, "name": null, "online": false,
                           "status": "never_contacted"})
                })
                .collect();
            paginate(st, &uri, items)
        }
        (Method::DELETE, ["projects", id]) => {
            // GitLab answers 202 Accepted: deletion is scheduled (immediate here).
            if !api_write {
                return scope_error();
            }
            let before = st.projects.len();
            let id = (*id).to_owned();
            st.projects
                .retain(|p| p.id.to_string() != id && p.path_with_namespace != id);
            if st.projects.len() == before {
                msg(404, json!("404 Project Not Found"))
            } else {
                msg(202, json!("202 Accepted"))
            }
        }
        // doc/api/runners.md, "Update runner's details": admin, or a user who can manage it.
        (Method::PUT, ["runners", id]) => {
            if !api_write {
                return scope_error();
            }
            if !me.admin {
                return forbidden();
            }
            let id = id.parse::<u64>().unwrap_or(0);
            let access = match access_level(&body) {
                Ok(a) => a.map(str::to_owned),
                Err(bad) => return bad,
            };
            let tags = tag_list(&body);
            let untagged = body.get("run_untagged").and_then(Value::as_bool);
            let Some(r) = st.runners.iter_mut().find(|r| r.id == id) else {
                return msg(404, json!("404 Runner Not Found"));
            };
            if let Some(t) = tags {
                r.tags = t;
            }
            if let Some(u) = untagged {
                r.run_untagged = u;
            }
            if let Some(a) = access {
                r.access_level = a;
            }
            reply(
                200,
                json!({"id": r.id, "description": r.description, "tag_list": r.tags,
                       "run_untagged": r.run_untagged, "access_level": r.access_level,
                       "runner_type": r.runner_type, "active": true, "paused": false}),
            )
        }
        (Method::DELETE, ["runners", id]) => {
            if !api_write {
                return scope_error();
            }
            let id = id.parse::<u64>().unwrap_or(0);
            let before = st.runners.len();
            st.runners.retain(|r| r.id != id);
            if st.runners.len() == before {
                msg(404, json!("404 Runner Not Found"))
            } else {
                StatusCode::NO_CONTENT.into_response()
            }
        }
        _ => msg(404, json!("404 Not Found")),
    }
}

/// A runner's `tag_list`: a comma-separated string or an array (`None` when absent).
fn tag_list(body: &Value) -> Option<Vec<String>> {
    match body.get("tag_list")? {
        Value::String(s) => Some(
            s.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        ),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => Some(Vec::new()),
    }
}

/// A runner's `access_level`: `not_protected` or `ref_protected`, else GitLab's 400.
fn access_level(body: &Value) -> Result<Option<&str>, Response> {
    match body.get("access_level").map(|v| v.as_str()) {
        None => Ok(None),
        Some(Some(a @ ("not_protected" | "ref_protected"))) => Ok(Some(a)),
        Some(_) => Err(reply(
            400,
            json!({"error": "access_level does not have a valid value"}),
        )),
    }
}

/// The `archived` parameter of project listings (doc/api/projects.md, doc/api/groups.md):
/// absent lists both.
fn archived_filter(q: &BTreeMap<String, String>, p: &FProject) -> bool {
    match q.get("archived").map(String::as_str) {
        Some("true") => p.archived,
        Some("false") => !p.archived,
        _ => true,
    }
}

/// GETs without a token: public resources only. Listings show the simple view
/// (doc/api/projects.md, "List all projects": without authentication "only simple fields
/// are returned": no `archived`, no `forked_from_project`); one project, the full view
/// (doc/api/projects.md, "Get a single project": "can be accessed without authentication if
/// the project is publicly accessible").
fn anonymous(st: &FakeState, uri: &Uri, api: &str) -> Response {
    let segs: Vec<String> = api.split('/').map(percent_decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let q = query(uri);
    let public = |p: &&FProject| p.visibility == "public";
    let simple = |p: &FProject| {
        json!({"id": p.id, "name": p.name, "path": p.path, "path_with_namespace": p.path_with_namespace,
               "namespace": {"id": p.namespace_id},
               "http_url_to_repo": format!("{EXTERNAL}/{}.git", p.path_with_namespace)})
    };
    match segs.as_slice() {
        ["groups", id, "projects"] => {
            let Some(g) = find_group(st, id) else {
                return msg(404, json!("404 Group Not Found"));
            };
            let sub = format!("{}/", g.full_path);
            let inside: Vec<u64> = st
                .groups
                .iter()
                .filter(|x| x.id == g.id || x.full_path.starts_with(&sub))
                .map(|x| x.id)
                .collect();
            let with_shared = q.get("with_shared").is_none_or(|v| v != "false");
            let items = st
                .projects
                .iter()
                .filter(public)
                .filter(|p| {
                    inside.contains(&p.namespace_id)
                        || (with_shared && p.shared_with.iter().any(|g| inside.contains(g)))
                })
                .filter(|p| archived_filter(&q, p))
                .map(simple)
                .collect();
            paginate(st, uri, items)
        }
        ["users", u, "projects"] => {
            let Some(user) = st.users.iter().find(|x| x.username == *u) else {
                return msg(404, json!("404 User Not Found"));
            };
            let items = st
                .projects
                .iter()
                .filter(public)
                .filter(|p| p.namespace_id == user.id)
                .filter(|p| archived_filter(&q, p))
                .map(simple)
                .collect();
            paginate(st, uri, items)
        }
        ["projects", id] => match st
            .projects
            .iter()
            .filter(public)
            .find(|p| p.id.to_string() == *id || p.path_with_namespace == *id)
        {
            Some(p) => reply(200, FakeState::project_json(p)),
            None => msg(404, json!("404 Project Not Found")),
        },
        _ => msg(401, json!("401 Unauthorized")),
    }
}

fn find_group(st: &FakeState, id: &str) -> Option<FGroup> {
    match id.parse::<u64>() {
        Ok(n) => st.groups.iter().find(|g| g.id == n).cloned(),
        Err(_) => st.groups.iter().find(|g| g.full_path == id).cloned(),
    }
}
