//! A fake Kubernetes API server for tests. No cluster can run on the machines that test autogit
//! (no kubelet, no container runtime for pods, no network beyond package registries), so the
//! production client (`autogit_drivers::kube::KubeClient`), unchanged, talks HTTP over loopback
//! to this in-process server, which answers as the API documents
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/>,
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/>):
//!
//! - paths `/api/v1/...` and `/apis/GROUP/VERSION/...`, namespaced (`namespaces/NS/PLURAL/NAME`)
//!   or cluster-scoped; `Authorization: Bearer` checked (401 `Status` otherwise);
//! - server-side apply: `PATCH` with `Content-Type: application/apply-patch+yaml` (415
//!   otherwise), `fieldManager` required (400), the body's apiVersion, kind and name must match
//!   the path (400); creates (201) or merges (200); tracks which manager owns which field; a
//!   field owned by another manager with a different value is a 409 `Status` with reason
//!   `Conflict` and one `FieldManagerConflict` cause per field, unless `force=true`, which moves
//!   the field to the applier; fields the manager applied before and leaves out now are removed
//!   when no other manager owns them; `metadata.managedFields` in `FieldsV1` form;
//!   `resourceVersion` bumps on every change, `generation` on every change of `spec`.
//!   Simplification, said here: lists are atomic (owned and compared whole), where the real
//!   server merges lists with a merge key (containers by name) element by element;
//! - `GET` of an object (404 `Status` `NotFound`), list (`{kind}List` with
//!   `metadata.resourceVersion`, `labelSelector` equality terms, `fieldSelector=metadata.name=`),
//!   `DELETE` (200, a `DELETED` event);
//! - watch: `?watch=1&resourceVersion=N` streams the `WatchEvent`s after N (one JSON per line),
//!   then new ones until `timeoutSeconds`; a version older than the log kept is an `ERROR`
//!   event with a 410 `Status` (`Expired`), as the API does after compaction.
//!
//! What a cluster's controllers do (a Deployment's pods becoming available) the test does by
//! hand (`Fake::roll_out`, `Fake::fail`), or `auto_rollout` does after each change of a
//! workload's generation.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

pub const TOKEN: &str = "fake-cluster-token";

#[derive(Clone, Debug)]
pub struct Stored {
    pub object: Value,
    /// manager → (operation, owned field paths).
    pub managers: BTreeMap<String, (String, BTreeSet<Vec<String>>)>,
}

#[derive(Debug)]
pub struct FakeState {
    pub objects: BTreeMap<String, Stored>,
    pub rv: u64,
    /// (resource version, collection path, type, object).
    pub log: Vec<(u64, String, String, Value)>,
    /// Versions older than this answer 410 to a watch.
    pub compacted_before: u64,
    /// Marks a workload rolled out shortly after each change of its generation.
    pub auto_rollout: bool,
    /// "METHOD path?query" of every request, in order.
    pub requests: Vec<String>,
    /// The W3C `traceparent` of every request that sent one, in order.
    pub traceparents: Vec<String>,
    /// Each apply: (path, field manager, force).
    pub applies: Vec<(String, String, bool)>,
    /// Served over TLS with a required client certificate: that certificate authenticates
    /// (as a cluster's `--client-ca-file` does), no bearer token is needed.
    pub client_cert_auth: bool,
    next_uid: u64,
}

#[derive(Clone)]
pub struct Fake {
    pub url: String,
    state: Arc<Mutex<FakeState>>,
    changed: Arc<tokio::sync::Notify>,
}

type Shared = (Arc<Mutex<FakeState>>, Arc<tokio::sync::Notify>);

impl Fake {
    pub async fn start() -> Fake {
        let state = Arc::new(Mutex::new(FakeState {
            objects: BTreeMap::new(),
            rv: 100,
            log: Vec::new(),
            compacted_before: 0,
            auto_rollout: false,
            requests: Vec::new(),
            traceparents: Vec::new(),
            applies: Vec::new(),
            client_cert_auth: false,
            next_uid: 0,
        }));
        let changed = Arc::new(tokio::sync::Notify::new());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state((state.clone(), changed.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let fake = Fake {
            url,
            state,
            changed,
        };
        let f = fake.clone();
        tokio::spawn(async move { f.controller().await });
        fake
    }

    /// The API as a router on the same state, for a test that serves it over TLS itself
    /// (set `client_cert_auth` then: the client certificate authenticates).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .with_state((self.state.clone(), self.changed.clone()))
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A kubeconfig naming this server as context `fake` (and a second context `other` with a
    /// wrong token).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: admin\n- name: other\n  context:\n    cluster: fake\n    user: stranger\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\n- name: stranger\n  user:\n    token: not-the-token\n",
            url = self.url
        )
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state().objects.get(path).map(|s| s.object.clone())
    }

    /// Sets a workload's status as its controller would once every replica runs the current
    /// template and is available.
    pub fn roll_out(&self, path: &str) {
        let mut st = self.state();
        roll_out(&mut st, path);
        drop(st);
        self.changed.notify_waiters();
    }

    /// Its pods fail: none available (the Deployment's `Available` condition false).
    pub fn fail(&self, path: &str) {
        let mut st = self.state();
        if let Some(s) = st.objects.get_mut(path) {
            let o = &mut s.object;
            o["status"]["availableReplicas"] = json!(0);
            o["status"]["readyReplicas"] = json!(0);
            o["status"]["conditions"] = json!([{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]);
            bump(&mut st, path, "MODIFIED");
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Another client changes `fields` (a JSON merge of `patch`) with an update (not an
    /// apply), owning them as `manager`: `kubectl scale`, `kubectl edit`.
    pub fn update_by(&self, manager: &str, path: &str, patch: &Value) {
        let mut st = self.state();
        if let Some(s) = st.objects.get_mut(path) {
            let fields = leaves(patch);
            merge(&mut s.object, patch);
            for (m, (_, owned)) in s.managers.iter_mut() {
                if m != manager {
                    owned.retain(|f| !fields.contains(f));
                }
            }
            s.managers
                .entry(manager.to_owned())
                .or_insert_with(|| ("Update".into(), BTreeSet::new()))
                .1
                .extend(fields);
            if patch.get("spec").is_some() {
                let g = s
                    .object
                    .pointer("/metadata/generation")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                s.object["metadata"]["generation"] = json!(g + 1);
            }
            bump(&mut st, path, "MODIFIED");
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// With `auto_rollout`: rolls out, 50 ms later, every workload whose generation is ahead
    /// of its status.
    async fn controller(&self) {
        loop {
            let notified = self.changed.notified();
            let due: Vec<String> = {
                let st = self.state();
                if st.auto_rollout {
                    st.objects
                        .iter()
                        .filter(|(p, s)| is_workload(p) && behind(&s.object))
                        .map(|(p, _)| p.clone())
                        .collect()
                } else {
                    Vec::new()
                }
            };
            if !due.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                for p in due {
                    self.roll_out(&p);
                }
                continue;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
        }
    }
}

fn is_workload(path: &str) -> bool {
    path.contains("/deployments/") || path.contains("/statefulsets/")
}

fn behind(o: &Value) -> bool {
    let g = o
        .pointer("/metadata/generation")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let seen = o
        .pointer("/status/observedGeneration")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    seen < g
}

fn roll_out(st: &mut FakeState, path: &str) {
    let Some(s) = st.objects.get_mut(path) else {
        return;
    };
    let o = &mut s.object;
    let g = o
        .pointer("/metadata/generation")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let n = o
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let rev = format!(
        "{}-{g}",
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    o["status"] = json!({
        "observedGeneration": g, "replicas": n, "updatedReplicas": n, "readyReplicas": n,
        "availableReplicas": n, "currentRevision": rev, "updateRevision": rev,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        ]
    });
    bump(st, path, "MODIFIED");
}

fn collection_of(path: &str) -> String {
    path.rsplit_once('/').map_or(path, |(c, _)| c).to_owned()
}

fn bump(st: &mut FakeState, path: &str, kind: &str) {
    st.rv += 1;
    let rv = st.rv;
    let obj = if let Some(s) = st.objects.get_mut(path) {
        s.object["metadata"]["resourceVersion"] = json!(rv.to_string());
        s.object.clone()
    } else {
        return;
    };
    st.log.push((rv, collection_of(path), kind.to_owned(), obj));
}

/// The field paths of a value's leaves (lists are leaves: atomic here).
fn leaves(v: &Value) -> BTreeSet<Vec<String>> {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, x) in m {
                    at.push(k.clone());
                    walk(x, at, out);
                    at.pop();
                }
            }
            _ => {
                out.insert(at.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    let mut at = Vec::new();
    walk(v, &mut at, &mut out);
    // What identifies the object is not a managed field.
    out.retain(|p| {
        !matches!(
            p.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            ["apiVersion"] | ["kind"] | ["metadata", "name"] | ["metadata", "namespace"]
        )
    });
    out
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k) {
            Some(x) => cur = x,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(x) if x.is_object() && v.is_object() => merge(x, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn field_name(p: &[String]) -> String {
    p.iter().map(|k| format!(".{k}")).collect()
}

fn fields_v1(paths: &BTreeSet<Vec<String>>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for k in p {
            cur = cur
                .entry(format!("f:{k}"))
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("object");
        }
    }
    Value::Object(root)
}

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        body["details"] = d;
    }
    (
        StatusCode::from_u16(code).expect("status"),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(code: u16, v: &Value) -> Response {
    (
        StatusCode::from_u16(code).expect("status"),
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// (api version, plural, namespace, name) of a path.
fn parse_path(path: &str) -> Option<(String, String, Option<String>, Option<String>)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (api, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    match rest {
        [plural] => Some((api, (*plural).into(), None, None)),
        [plural, name] => Some((api, (*plural).into(), None, Some((*name).into()))),
        ["namespaces", ns, plural] => Some((api, (*plural).into(), Some((*ns).into()), None)),
        ["namespaces", ns, plural, name] => Some((
            api,
            (*plural).into(),
            Some((*ns).into()),
            Some((*name).into()),
        )),
        _ => None,
    }
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn matches(o: &Value, q: &BTreeMap<String, String>) -> bool {
    if let Some(sel) = q.get("labelSelector") {
        for term in sel.split(',').filter(|t| !t.is_empty()) {
            let (k, v) = term.split_once('=').unwrap_or((term, ""));
            let have = o
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str);
            if have != Some(v) {
                return false;
            }
        }
    }
    if let Some(name) = q
        .get("fieldSelector")
        .and_then(|sel| sel.strip_prefix("metadata.name="))
        && o.pointer("/metadata/name").and_then(Value::as_str) != Some(name)
    {
        return false;
    }
    true
}

async fn handle(
    State((state, changed)): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let q = query(&uri);
    {
        let mut st = state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.requests.push(format!("{method} {uri}"));
        if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            st.traceparents.push(tp.to_owned());
        }
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let cert_auth = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .client_cert_auth;
    if !cert_auth && auth != format!("Bearer {TOKEN}") {
        return status(401, "Unauthorized", "Unauthorized", None);
    }
    let Some((api, plural, ns, name)) = parse_path(&path) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        );
    };
    let not_found = |name: &str| {
        let group = api.split_once('/').map_or("", |(g, _)| g);
        let what = if group.is_empty() {
            plural.clone()
        } else {
            format!("{plural}.{group}")
        };
        status(
            404,
            "NotFound",
            &format!("{what} \"{name}\" not found"),
            Some(json!({"name": name, "group": group, "kind": plural})),
        )
    };
    match (method, name) {
        (Method::PATCH, Some(name)) => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ct != "application/apply-patch+yaml" {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {ct}"
                    ),
                    None,
                );
            }
            let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()).cloned() else {
                return status(
                    400,
                    "BadRequest",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    None,
                );
            };
            let force = q.get("force").is_some_and(|f| f == "true");
            let Ok(applied) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "error decoding YAML: not JSON", None);
            };
            let body_name = applied.pointer("/metadata/name").and_then(Value::as_str);
            let body_api = applied.get("apiVersion").and_then(Value::as_str);
            if body_name != Some(name.as_str())
                || body_api != Some(api.as_str())
                || applied.get("kind").and_then(Value::as_str).is_none()
            {
                return status(
                    400,
                    "BadRequest",
                    &format!(
                        "the name, apiVersion or kind of the object does not match the request (object {body_api:?} {body_name:?}, path {api} {name})"
                    ),
                    None,
                );
            }
            if let (Some(ns), Some(bns)) = (
                &ns,
                applied
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str),
            ) && ns != bns
            {
                return status(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                    None,
                );
            }
            let mut st = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st.applies.push((path.clone(), manager.clone(), force));
            let fields = leaves(&applied);
            let code;
            if let Some(cur) = st.objects.get(&path).cloned() {
                let mut conflicts = Vec::new();
                for f in &fields {
                    for (m, (op, owned)) in &cur.managers {
                        if *m != manager
                            && owned.contains(f)
                            && at(&cur.object, f) != at(&applied, f)
                        {
                            conflicts.push((m.clone(), op.clone(), f.clone()));
                        }
                    }
                }
                if !conflicts.is_empty() && !force {
                    let n = conflicts.len();
                    let causes: Vec<Value> = conflicts
                        .iter()
                        .map(|(m, _, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": field_name(f)}))
                        .collect();
                    let listed: Vec<String> = conflicts
                        .iter()
                        .map(|(m, _, f)| format!("conflict with \"{m}\": {}", field_name(f)))
                        .collect();
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Apply failed with {n} conflict{}: {}",
                            if n == 1 { "" } else { "s" },
                            listed.join("\n")
                        ),
                        Some(json!({"causes": causes})),
                    );
                }
                let mut s = cur.clone();
                for (m, (_, owned)) in s.managers.iter_mut() {
                    if *m != manager {
                        owned.retain(|f| !fields.contains(f));
                    }
                }
                // Fields this manager applied before and leaves out now, no one else owns.
                let before = s
                    .managers
                    .get(&manager)
                    .map(|(_, o)| o.clone())
                    .unwrap_or_default();
                for f in before.difference(&fields) {
                    if !s
                        .managers
                        .iter()
                        .any(|(m, (_, o))| *m != manager && o.contains(f))
                    {
                        remove_at(&mut s.object, f);
                    }
                }
                let old_spec = s.object.get("spec").cloned();
                merge(&mut s.object, &applied);
                s.managers.insert(manager.clone(), ("Apply".into(), fields));
                s.managers.retain(|_, (_, o)| !o.is_empty());
                if s.object.get("spec").cloned() != old_spec {
                    let g = s
                        .object
                        .pointer("/metadata/generation")
                        .and_then(Value::as_u64)
                        .unwrap_or(1);
                    s.object["metadata"]["generation"] = json!(g + 1);
                }
                let changed_obj = s.object != cur.object || s.managers.len() != cur.managers.len();
                st.objects.insert(path.clone(), s);
                if changed_obj {
                    bump(&mut st, &path, "MODIFIED");
                }
                code = 200;
            } else {
                st.next_uid += 1;
                let mut o = applied.clone();
                o["metadata"]["uid"] =
                    json!(format!("00000000-0000-0000-0000-{:012}", st.next_uid));
                o["metadata"]["generation"] = json!(1);
                o["metadata"]["creationTimestamp"] = json!("2026-12-07T05:00:00Z");
                let mut managers = BTreeMap::new();
                managers.insert(manager.clone(), ("Apply".to_owned(), fields));
                st.objects.insert(
                    path.clone(),
                    Stored {
                        object: o,
                        managers,
                    },
                );
                bump(&mut st, &path, "ADDED");
                code = 201;
            }
            let s = st.objects.get(&path).cloned().expect("stored");
            drop(st);
            changed.notify_waiters();
            let mut out = s.object.clone();
            out["metadata"]["managedFields"] = Value::Array(
                s.managers
                    .iter()
                    .map(|(m, (op, owned))| json!({"manager": m, "operation": op, "apiVersion": api, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(owned)}))
                    .collect(),
            );
            ok(code, &out)
        }
        (Method::GET, Some(name)) => {
            let st = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match st.objects.get(&path) {
                Some(s) => ok(200, &s.object),
                None => not_found(&name),
            }
        }
        (Method::DELETE, Some(name)) => {
            let mut st = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !st.objects.contains_key(&path) {
                return not_found(&name);
            }
            bump(&mut st, &path, "DELETED");
            st.objects.remove(&path);
            drop(st);
            changed.notify_waiters();
            ok(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name}}),
            )
        }
        (Method::GET, None) if q.get("watch").is_some_and(|w| w == "1" || w == "true") => {
            let from: u64 = q
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let timeout: u64 = q
                .get("timeoutSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(60);
            {
                let st = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if from < st.compacted_before {
                    let ev = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("too old resource version: {from} ({})", st.compacted_before), "reason": "Expired", "code": 410}});
                    return ok(200, &ev);
                }
            }
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
            let coll = path.clone();
            tokio::spawn(async move {
                let deadline =
                    tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
                let mut last = from;
                loop {
                    let notified = changed.notified();
                    let events: Vec<(u64, String, Value)> = {
                        let st = state
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        st.log
                            .iter()
                            .filter(|(rv, c, _, o)| *rv > last && *c == coll && matches(o, &q))
                            .map(|(rv, _, t, o)| (*rv, t.clone(), o.clone()))
                            .collect()
                    };
                    for (rv, t, o) in events {
                        last = rv;
                        let line = format!("{}\n", json!({"type": t, "object": o}));
                        if tx.send(Ok(Bytes::from(line))).await.is_err() {
                            return;
                        }
                    }
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(deadline) => return,
                        () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    }
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .expect("response")
        }
        (Method::GET, None) => {
            let st = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(p, s)| collection_of(p) == path && matches(&s.object, &q))
                .map(|(_, s)| s.object.clone())
                .collect();
            let kind = items
                .first()
                .and_then(|o| o.get("kind"))
                .and_then(Value::as_str)
                .map_or_else(|| "List".to_owned(), |k| format!("{k}List"));
            let _ = ns;
            ok(
                200,
                &json!({"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            )
        }
        _ => status(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            None,
        ),
    }
}
