//! A small typed client of the Kubernetes API over reqwest (rustls): what the Kubernetes
//! target needs and nothing more. Server-side apply (`PATCH` with
//! `application/apply-patch+yaml`, `fieldManager`, `force`), `GET`, list with its
//! `resourceVersion`, `DELETE`, and watch (`?watch=1`, one `WatchEvent` JSON per line).
//!
//! Chosen over kube-rs + k8s-openapi: those generate every API type of every Kubernetes
//! version (minutes of build on the 2-CPU machines that build autogit) for six calls whose
//! objects core already holds as JSON; the paths come from `core::kube_target::Resource`.
//! Errors keep the API's `Status` (its reason and message, each conflicting field and the
//! manager holding it).

pub mod config;

use autogit_core::kube_target::{APPLY_PATCH, status_message};
use config::Endpoint;
use secrecy::ExposeSecret;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot reach the Kubernetes API at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error(
        "the Kubernetes API at {server} refused the credentials of context `{context}` ({code}): {message}"
    )]
    Unauthorized {
        server: String,
        context: String,
        code: u16,
        message: String,
    },
    /// A server-side apply conflict: fields another manager owns with another value.
    #[error(
        "{what}: {message}; another field manager owns these fields. Re-run with --force-conflicts to take them over, or change them back"
    )]
    Conflict { what: String, message: String },
    #[error("{what}: {code} {reason}: {message}")]
    Api {
        what: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("{what}: the API answered something that is not a Kubernetes object: {reason}")]
    Decode { what: String, reason: String },
    #[error("the TLS settings of context `{context}`: {reason}")]
    Tls { context: String, reason: String },
}

/// One event of a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    Bookmark(String),
    /// An `ERROR` event (410 Gone: the resource version is too old; list again).
    Error {
        code: u16,
        message: String,
    },
}

#[derive(Clone, Debug)]
pub struct KubeClient {
    http: reqwest::Client,
    endpoint: Endpoint,
}

impl KubeClient {
    pub fn new(endpoint: Endpoint) -> Result<Self, KubeError> {
        let tls = |reason: String| KubeError::Tls {
            context: endpoint.context.clone(),
            reason,
        };
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("autogit/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &endpoint.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| tls(format!("certificate-authority: {e}")))?;
            if certs.is_empty() {
                return Err(tls("certificate-authority holds no PEM certificate".into()));
            }
            // As kubectl: a cluster's own CA replaces the system's roots.
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if endpoint.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(pem) = &endpoint.identity_pem {
            let id = reqwest::Identity::from_pem(pem.expose_secret().as_bytes())
                .map_err(|e| tls(format!("client certificate: {e}")))?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| tls(e.to_string()))?;
        Ok(Self { http, endpoint })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn request(&self, method: reqwest::Method, path_and_query: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path_and_query}", self.endpoint.server));
        if let Some(t) = &self.endpoint.token {
            let mut v =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.expose_secret()))
                    .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
            v.set_sensitive(true);
            r = r.header(reqwest::header::AUTHORIZATION, v);
        }
        crate::telemetry::Traced::traced(r.header(reqwest::header::ACCEPT, "application/json"))
    }

    fn unreachable(&self, e: &reqwest::Error) -> KubeError {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            reason = format!("{reason}: {s}");
            src = s.source();
        }
        KubeError::Unreachable {
            server: self.endpoint.server.clone(),
            reason,
        }
    }

    async fn send(&self, what: &str, r: reqwest::RequestBuilder) -> Result<Value, KubeError> {
        let resp = r
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            if json.is_null() {
                return Err(KubeError::Decode {
                    what: what.to_owned(),
                    reason: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                });
            }
            return Ok(json);
        }
        Err(self.error(what, status.as_u16(), &json, &body))
    }

    fn error(&self, what: &str, code: u16, json: &Value, body: &[u8]) -> KubeError {
        let message = if json.is_object() {
            status_message(json)
        } else {
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
        };
        let reason = json
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match code {
            401 | 403 => KubeError::Unauthorized {
                server: self.endpoint.server.clone(),
                context: self.endpoint.context.clone(),
                code,
                message,
            },
            409 if reason == "Conflict" && json.pointer("/details/causes").is_some() => {
                KubeError::Conflict {
                    what: what.to_owned(),
                    message,
                }
            }
            _ => KubeError::Api {
                what: what.to_owned(),
                code,
                reason,
                message,
            },
        }
    }

    /// Server-side apply of `object` at `path` by `manager`; `force` takes over conflicting
    /// fields. Returns the object as the server holds it after the apply.
    pub async fn apply(
        &self,
        path: &str,
        object: &Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, KubeError> {
        let q = format!(
            "{path}?fieldManager={}{}",
            percent_encoding::utf8_percent_encode(manager, percent_encoding::NON_ALPHANUMERIC),
            if force { "&force=true" } else { "" }
        );
        let r = self
            .request(reqwest::Method::PATCH, &q)
            .header(reqwest::header::CONTENT_TYPE, APPLY_PATCH)
            .body(object.to_string());
        self.send(&format!("apply {path}"), r).await
    }

    /// The object at `path`, `None` when it does not exist.
    pub async fn get(&self, path: &str) -> Result<Option<Value>, KubeError> {
        match self
            .send(
                &format!("get {path}"),
                self.request(reqwest::Method::GET, path),
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(KubeError::Api { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The items of a collection matching `label_selector`, and the list's resource version
    /// (where a watch starts).
    pub async fn list(
        &self,
        collection: &str,
        label_selector: Option<&str>,
    ) -> Result<(Vec<Value>, String), KubeError> {
        let q = match label_selector {
            Some(s) => format!("{collection}?labelSelector={}", enc(s)),
            None => collection.to_owned(),
        };
        let list = self
            .send(
                &format!("list {collection}"),
                self.request(reqwest::Method::GET, &q),
            )
            .await?;
        let rv = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let items = match list.get("items") {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(KubeError::Decode {
                    what: format!("list {collection}"),
                    reason: "items is not a list".into(),
                });
            }
        };
        Ok((items, rv))
    }

    /// Deletes the object at `path`; one already gone is fine.
    pub async fn delete(&self, path: &str) -> Result<(), KubeError> {
        match self
            .send(
                &format!("delete {path}"),
                self.request(reqwest::Method::DELETE, path),
            )
            .await
        {
            Ok(_) | Err(KubeError::Api { code: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts a watch of `collection` from `resource_version`, for the object named `name`
    /// when given (`fieldSelector=metadata.name=`) and the objects matching `label_selector`,
    /// ended by the server after `timeout_secs`.
    pub async fn watch(
        &self,
        collection: &str,
        name: Option<&str>,
        label_selector: Option<&str>,
        resource_version: &str,
        timeout_secs: u64,
    ) -> Result<Watch, KubeError> {
        let mut q = format!(
            "{collection}?watch=1&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={timeout_secs}",
            enc(resource_version)
        );
        if let Some(l) = label_selector {
            q.push_str(&format!("&labelSelector={}", enc(l)));
        }
        if let Some(n) = name {
            q.push_str(&format!(
                "&fieldSelector={}",
                enc(&format!("metadata.name={n}"))
            ));
        }
        let what = format!("watch {collection}");
        let resp = self
            .request(reqwest::Method::GET, &q)
            .timeout(Duration::from_secs(timeout_secs + 30))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(self.error(&what, status.as_u16(), &json, &body));
        }
        Ok(Watch {
            resp,
            buf: Vec::new(),
            what,
        })
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A watch's stream of events (one JSON object per line).
#[derive(Debug)]
pub struct Watch {
    resp: reqwest::Response,
    buf: Vec<u8>,
    what: String,
}

/// The largest event line accepted (an object larger than this is not one autogit applies).
const MAX_EVENT: usize = 8 << 20;

impl Watch {
    /// The next event; `None` when the server ended the watch (its timeout).
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, KubeError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_event(&self.what, &line).map(Some);
            }
            if self.buf.len() > MAX_EVENT {
                return Err(KubeError::Decode {
                    what: self.what.clone(),
                    reason: format!("an event longer than {MAX_EVENT} bytes"),
                });
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                Ok(None) if self.buf.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                Ok(None) => {
                    let line = std::mem::take(&mut self.buf);
                    return parse_event(&self.what, &line).map(Some);
                }
                Err(e) => {
                    return Err(KubeError::Unreachable {
                        server: self.what.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
}

fn parse_event(what: &str, line: &[u8]) -> Result<WatchEvent, KubeError> {
    let bad = |reason: String| KubeError::Decode {
        what: what.to_owned(),
        reason,
    };
    let v: Value = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
    let object = v.get("object").cloned().unwrap_or(Value::Null);
    match v.get("type").and_then(Value::as_str) {
        Some("ADDED") => Ok(WatchEvent::Added(object)),
        Some("MODIFIED") => Ok(WatchEvent::Modified(object)),
        Some("DELETED") => Ok(WatchEvent::Deleted(object)),
        Some("BOOKMARK") => Ok(WatchEvent::Bookmark(
            object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        )),
        Some("ERROR") => Ok(WatchEvent::Error {
            code: object.get("code").and_then(Value::as_u64).unwrap_or(0) as u16,
            message: status_message(&object),
        }),
        other => Err(bad(format!("unknown event type {other:?}"))),
    }
}
