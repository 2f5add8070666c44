//! A fake Cloudflare API v4 for tests: an in-memory server answering the endpoints autogit uses
//! the way Cloudflare documents them: `GET /zones?name=`, `GET/POST /zones/{id}/dns_records`
//! (with `page`, `per_page`, `name`, `type`, and `result_info`), `PATCH` and `DELETE
//! /zones/{id}/dns_records/{record}`, the `{"success", "errors", "messages", "result"}`
//! envelope, `Authorization: Bearer` tokens (an unknown token is 403 code 9109 "Invalid access
//! token"; a read-only token writing is 403 code 10000 "Authentication error"), "An identical
//! record already exists." (81058), a record not found (81044), and a switch to answer 429 with
//! `Retry-After`. `proxied` as the API treats it: a boolean or 400 code 9003, only on proxiable
//! types (A, AAAA, CNAME; a proxied TXT is 400 code 9004 "This record type cannot be proxied."),
//! and a proxied record's TTL is always 1 ("automatic"), whatever was sent.
//!
//! It is a fake because Cloudflare cannot run on the machines that test autogit; the code under
//! test is the production client (`autogit_drivers::dns::cloudflare`), unchanged, talking HTTP
//! to this server over loopback.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub const TOKEN: &str = "cf-test-token";
/// A valid token without DNS edit permission.
pub const READ_ONLY_TOKEN: &str = "cf-read-only-token";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FRecord {
    pub id: String,
    pub zone_id: String,
    pub kind: String,
    pub name: String,
    pub content: String,
    pub ttl: u64,
    pub proxied: bool,
}

#[derive(Debug)]
pub struct FakeState {
    /// (id, name)
    pub zones: Vec<(String, String)>,
    pub records: Vec<FRecord>,
    /// Largest `per_page` honoured (Cloudflare allows more; small here so tests span pages).
    pub max_per_page: usize,
    /// Answer this many requests with 429 before serving again.
    pub rate_limit: u32,
    pub retry_after: String,
    /// "METHOD path?query" of every request, in order.
    pub requests: Vec<String>,
    next_id: u64,
}

impl FakeState {
    pub fn add(&mut self, zone: &str, kind: &str, name: &str, content: &str, ttl: u64) -> String {
        let zone_id = self
            .zones
            .iter()
            .find(|(_, n)| n == zone)
            .map(|(id, _)| id.clone())
            .expect("zone");
        self.next_id += 1;
        let id = format!("rec{:04}", self.next_id);
        self.records.push(FRecord {
            id: id.clone(),
            zone_id,
            kind: kind.into(),
            name: name.into(),
            content: content.into(),
            ttl,
            proxied: false,
        });
        id
    }

    /// (type, name, content) of every record, sorted.
    pub fn all(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = self
            .records
            .iter()
            .map(|r| (r.kind.clone(), r.name.clone(), r.content.clone()))
            .collect();
        v.sort();
        v
    }

    pub fn writes(&self) -> usize {
        self.requests
            .iter()
            .filter(|r| !r.starts_with("GET"))
            .count()
    }
}

#[derive(Clone, Debug)]
pub struct Fake {
    /// Base URL, to use as CLOUDFLARE_API_URL.
    pub url: String,
    state: Arc<Mutex<FakeState>>,
}

impl Fake {
    /// A server holding `zones` (names), each with an SOA-free, empty record list.
    pub async fn start(zones: &[&str]) -> Fake {
        let st = FakeState {
            zones: zones
                .iter()
                .enumerate()
                .map(|(i, z)| (format!("zone{:032x}", i + 1), (*z).to_owned()))
                .collect(),
            records: Vec::new(),
            max_per_page: 100,
            rate_limit: 0,
            retry_after: "1".into(),
            requests: Vec::new(),
            next_id: 0,
        };
        let state = Arc::new(Mutex::new(st));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/client/v4", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fake { url, state }
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Shared = Arc<Mutex<FakeState>>;

fn ok(result: Value, info: Option<Value>) -> Response {
    let mut body = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(i) = info {
        body["result_info"] = i;
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn fail(status: u16, code: u64, message: &str) -> Response {
    let body = json!({"success": false, "errors": [{"code": code, "message": message}],
        "messages": [], "result": null});
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn record_json(r: &FRecord, zone_name: &str) -> Value {
    json!({
        "id": r.id, "zone_id": r.zone_id, "zone_name": zone_name, "name": r.name,
        "type": r.kind, "content": r.content, "proxiable": r.kind != "TXT",
        "proxied": r.proxied, "ttl": r.ttl, "locked": false, "meta": {},
        "comment": null, "tags": [], "created_on": "2025-01-01T00:00:00Z",
        "modified_on": "2025-01-01T00:00:00Z",
    })
}

/// The `proxied` of a request body: `Ok(None)` when absent, an error answer when it is not a
/// boolean or the type cannot be proxied.
fn proxied_of(b: &Value, kind: &str) -> Result<Option<bool>, Response> {
    match b.get("proxied") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(p)) => {
            if *p && !matches!(kind, "A" | "AAAA" | "CNAME") {
                return Err(fail(400, 9004, "This record type cannot be proxied."));
            }
            Ok(Some(*p))
        }
        Some(_) => Err(fail(
            400,
            9003,
            "Invalid 'proxied' value, must be a boolean",
        )),
    }
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect()
}

/// `%XX` and `+` decoding of a query value.
pub fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn page(items: Vec<Value>, q: &BTreeMap<String, String>, max: usize) -> Response {
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(5.min(max), max);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let info = json!({"page": page, "per_page": per_page, "count": chunk.len(),
        "total_count": total, "total_pages": total_pages});
    ok(Value::Array(chunk), Some(info))
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    st.requests.push(format!(
        "{method} {}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    ));
    if st.rate_limit > 0 {
        st.rate_limit -= 1;
        let mut r = fail(
            429,
            971,
            "Please wait and consider throttling your request speed",
        );
        r.headers_mut()
            .insert("retry-after", st.retry_after.parse().unwrap());
        return r;
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let read_only = match token {
        None => return fail(400, 6003, "Invalid request headers"),
        Some(TOKEN) => false,
        Some(READ_ONLY_TOKEN) => true,
        Some(_) => return fail(403, 9109, "Invalid access token"),
    };
    let q = query_map(&uri);
    let path = uri.path().strip_prefix("/client/v4").unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let zone_name = |st: &FakeState, id: &str| {
        st.zones
            .iter()
            .find(|(z, _)| z == id)
            .map(|(_, n)| n.clone())
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["zones"]) => {
            let items: Vec<Value> = st
                .zones
                .iter()
                .filter(|(_, n)| q.get("name").is_none_or(|want| want == n))
                .map(|(id, n)| json!({"id": id, "name": n, "status": "active"}))
                .collect();
            page(items, &q, 50)
        }
        (m, ["zones", zid, "dns_records", rest @ ..]) => {
            let Some(zname) = zone_name(&st, zid) else {
                return fail(
                    404,
                    7003,
                    "Could not route to /zones, perhaps your object identifier is invalid?",
                );
            };
            if m != "GET" && read_only {
                return fail(403, 10000, "Authentication error");
            }
            let zid = (*zid).to_owned();
            match (m, rest) {
                ("GET", []) => {
                    let items: Vec<Value> = st
                        .records
                        .iter()
                        .filter(|r| r.zone_id == zid)
                        .filter(|r| q.get("name").is_none_or(|n| *n == r.name))
                        .filter(|r| q.get("type").is_none_or(|t| *t == r.kind))
                        .map(|r| record_json(r, &zname))
                        .collect();
                    let max = st.max_per_page;
                    page(items, &q, max)
                }
                ("POST", []) => {
                    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
                        return fail(400, 9207, "Request body is invalid.");
                    };
                    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    let (kind, name, content) = (s("type"), s("name"), s("content"));
                    if kind.is_empty() || name.is_empty() || content.is_empty() {
                        return fail(400, 9005, "Content for record is invalid.");
                    }
                    if !(name == zname || name.ends_with(&format!(".{zname}"))) {
                        return fail(400, 9007, "Record name is not in the zone.");
                    }
                    let ttl = b.get("ttl").and_then(Value::as_u64).unwrap_or(1);
                    if ttl != 1 && !(60..=86400).contains(&ttl) {
                        return fail(
                            400,
                            9021,
                            "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
                        );
                    }
                    let proxied = match proxied_of(&b, &kind) {
                        Ok(p) => p.unwrap_or(false),
                        Err(r) => return r,
                    };
                    if st.records.iter().any(|r| {
                        r.zone_id == zid && r.kind == kind && r.name == name && r.content == content
                    }) {
                        return fail(400, 81058, "An identical record already exists.");
                    }
                    let id = st.add(&zname, &kind, &name, &content, ttl);
                    let r = st.records.iter_mut().find(|r| r.id == id).unwrap();
                    if proxied {
                        r.proxied = true;
                        r.ttl = 1;
                    }
                    let r = r.clone();
                    ok(record_json(&r, &zname), None)
                }
                ("PATCH", [rid]) => {
                    let Ok(b) = serde_json::from_slice::<Value>(&body) else {
                        return fail(400, 9207, "Request body is invalid.");
                    };
                    let Some(r) = st
                        .records
                        .iter_mut()
                        .find(|r| r.zone_id == zid && r.id == *rid)
                    else {
                        return fail(404, 81044, "Record does not exist.");
                    };
                    let kind = b
                        .get("type")
                        .and_then(Value::as_str)
                        .map_or(r.kind.clone(), str::to_owned);
                    match proxied_of(&b, &kind) {
                        Ok(Some(p)) => r.proxied = p,
                        Ok(None) => {}
                        Err(resp) => return resp,
                    }
                    if let Some(c) = b.get("content").and_then(Value::as_str) {
                        r.content = c.to_owned();
                    }
                    if let Some(t) = b.get("ttl").and_then(Value::as_u64) {
                        r.ttl = t;
                    }
                    if let Some(n) = b.get("name").and_then(Value::as_str) {
                        r.name = n.to_owned();
                    }
                    if r.proxied {
                        r.ttl = 1;
                    }
                    let r = r.clone();
                    ok(record_json(&r, &zname), None)
                }
                ("DELETE", [rid]) => {
                    let before = st.records.len();
                    st.records.retain(|r| !(r.zone_id == zid && r.id == *rid));
                    if st.records.len() == before {
                        return fail(404, 81044, "Record does not exist.");
                    }
                    ok(json!({"id": rid}), None)
                }
                _ => fail(405, 10405, "Method not allowed for this endpoint"),
            }
        }
        _ => fail(400, 7000, "No route for that URI"),
    }
}
