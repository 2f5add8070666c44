//! A fake GitHub REST API for the repository lister: `GET /users/{u}/repos` and
//! `GET /orgs/{o}/repos` with `Link` pagination (`per_page` capped by the fake), bearer-token
//! checks (401), refusals (403) and the rate limit (403 with `x-ratelimit-remaining: 0`).
//! Shared with the binary's tests through `#[path]`.
#![allow(dead_code)]

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
pub struct GhState {
    /// owner (user or org) → repositories as GitHub returns them.
    pub users: BTreeMap<String, Vec<Value>>,
    pub orgs: BTreeMap<String, Vec<Value>>,
    /// When set, requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The user the token belongs to (`GET /user`'s `login`).
    pub token_user: Option<String>,
    pub max_per_page: usize,
    /// Answer 403 (no access) to everything.
    pub forbidden: bool,
    /// Answer 403 with the rate-limit headers to everything.
    pub rate_limited: bool,
    /// The next N requests hit a secondary rate limit: 403 with `retry-after:
    /// <secondary_retry_after>`.
    pub secondary_limit: u32,
    pub secondary_retry_after: u64,
    /// Every request: path and query.
    pub requests: Vec<String>,
    /// Every Authorization header seen.
    pub auth_seen: Vec<String>,
}

impl GhState {
    /// Adds `n` repositories named `{prefix}{i}` to a user or an org, cloned from `clone_base`.
    pub fn add_repos(&mut self, org: bool, owner: &str, names: &[String], clone_base: &str) {
        let list = if org {
            self.orgs.entry(owner.to_owned()).or_default()
        } else {
            self.users.entry(owner.to_owned()).or_default()
        };
        // https://docs.github.com/en/rest/repos/repos#list-repositories-for-a-user: the
        // `minimal-repository` schema requires `html_url` but not `clone_url`.
        for n in names {
            list.push(json!({
                "id": list.len() + 1, "name": n, "full_name": format!("{owner}/{n}"),
                "clone_url": format!("{clone_base}/{n}.git"),
                "html_url": format!("{clone_base}/{n}"),
                "fork": n.contains("fork"), "archived": n.contains("old"),
                "private": n.contains("private"),
            }));
        }
    }
}

#[derive(Debug)]
pub struct FakeGitHub {
    pub url: String,
    state: Arc<Mutex<GhState>>,
}

impl FakeGitHub {
    pub async fn start() -> FakeGitHub {
        let state = Arc::new(Mutex::new(GhState {
            max_per_page: 100,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitHub { url, state }
    }

    /// Starts on its own thread and runtime, for tests that are not async (the binary's).
    pub fn start_blocking() -> FakeGitHub {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let f = FakeGitHub::start().await;
                tx.send(FakeGitHub {
                    url: f.url.clone(),
                    state: f.state.clone(),
                })
                .unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    }

    pub fn state(&self) -> MutexGuard<'_, GhState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn reply(status: u16, body: Value) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        serde_json::to_string(&body).unwrap(),
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

async fn handle(
    State(shared): State<Arc<Mutex<GhState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut st = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let pq = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    st.requests.push(pq);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(a) = &auth {
        st.auth_seen.push(a.clone());
    }
    if let Some(t) = &st.token
        && auth.as_deref() != Some(&format!("Bearer {t}"))
    {
        return reply(
            401,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        );
    }
    // https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit:
    // a secondary limit answers 403 (or 429) with `retry-after`; the primary one, 403 with
    // `x-ratelimit-remaining: 0` and `x-ratelimit-reset`.
    if st.secondary_limit > 0 {
        st.secondary_limit -= 1;
        let mut r = reply(
            403,
            json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                   "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}),
        );
        r.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&st.secondary_retry_after.to_string()).unwrap(),
        );
        return r;
    }
    if st.rate_limited {
        let mut r = reply(
            403,
            json!({"message": "API rate limit exceeded for 127.0.0.1."}),
        );
        let h = r.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from_static("60"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("1767225600"));
        return r;
    }
    if st.forbidden {
        return reply(
            403,
            json!({"message": "Resource not accessible by integration"}),
        );
    }
    let segs: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let q: BTreeMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let me = auth.as_ref().and(st.token_user.clone());
    let list = match (method, segs.as_slice()) {
        // https://docs.github.com/en/rest/users/users#get-the-authenticated-user
        (Method::GET, ["user"]) => {
            return match (me, &auth) {
                (Some(login), _) => reply(200, json!({"login": login, "id": 1, "type": "User"})),
                // A token that is no user's (a GitHub App installation token) may not read it.
                (None, Some(_)) => reply(
                    403,
                    json!({"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user"}),
                ),
                (None, None) => reply(
                    401,
                    json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"}),
                ),
            };
        }
        // https://docs.github.com/en/rest/repos/repos#list-repositories-for-the-authenticated-user:
        // private repositories included; `type` cannot be combined with `affiliation` or
        // `visibility` (422).
        (Method::GET, ["user", "repos"]) => {
            let Some(login) = me else {
                return reply(401, json!({"message": "Requires authentication"}));
            };
            if q.contains_key("type")
                && (q.contains_key("affiliation") || q.contains_key("visibility"))
            {
                return reply(
                    422,
                    json!({"message": "If you specify visibility or affiliation, you cannot specify type.", "errors": []}),
                );
            }
            st.users
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(&login))
                .map(|(_, l)| l.clone())
        }
        // https://docs.github.com/en/rest/repos/repos#list-repositories-for-a-user: "Lists
        // public repositories for the specified user."
        (Method::GET, ["users", u, "repos"]) => st.users.get(*u).map(|l| {
            l.iter()
                .filter(|r| r["private"] != json!(true))
                .cloned()
                .collect()
        }),
        (Method::GET, ["orgs", o, "repos"]) => st.orgs.get(*o).cloned(),
        _ => None,
    };
    let Some(list) = list else {
        return reply(404, json!({"message": "Not Found"}));
    };
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .min(st.max_per_page)
        .max(1);
    let page = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let pages = list.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = list
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let mut r = reply(200, Value::Array(items));
    let base = format!(
        "{}{}",
        "http://",
        headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1")
    );
    // GitHub's links keep the request's other parameters (`type`, `affiliation`, ...).
    let extra: String = q
        .iter()
        .filter(|(k, _)| k.as_str() != "page" && k.as_str() != "per_page")
        .map(|(k, v)| format!("&{k}={v}"))
        .collect();
    let link = |p: usize, rel: &str| {
        format!(
            "<{base}{}?per_page={per_page}&page={p}{extra}>; rel=\"{rel}\"",
            uri.path()
        )
    };
    let mut links = Vec::new();
    if page < pages {
        links.push(link(page + 1, "next"));
        links.push(link(pages, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    if !links.is_empty() {
        r.headers_mut()
            .insert("link", HeaderValue::from_str(&links.join(", ")).unwrap());
    }
    r
}
