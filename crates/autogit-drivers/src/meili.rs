//! Pushing log lines to Meilisearch, for users whose log search outgrows the embedded store:
//! its documented document API, `POST /indexes/{uid}/documents?primaryKey=id` with a JSON array
//! (add or replace; the index is created by the first addition), `Authorization: Bearer <key>`
//! when a key is set. Meilisearch answers `202 Accepted` with a summarized task
//! (`{"taskUid": 0, "indexUid": "…", "status": "enqueued", "type": "documentAdditionOrUpdate",
//! "enqueuedAt": "…"}`) and indexes asynchronously; an error is a status with
//! `{"message", "code", "type", "link"}` (docs: meilisearch.com/docs/reference/errors).
//!
//! A document is one stored line (already scrubbed), keyed by its row in the store, so a
//! repeated push replaces instead of duplicating.

use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// The index the lines go to.
pub const INDEX: &str = "autogit-logs";

#[derive(Debug, thiserror::Error)]
pub enum MeiliError {
    #[error("Meilisearch at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// An answer with Meilisearch's error object (`code` such as `invalid_api_key`).
    #[error("Meilisearch at {url} answered {status} {code} ({kind}): {message} (see {link})")]
    Refused {
        url: String,
        status: u16,
        code: String,
        kind: String,
        message: String,
        link: String,
    },
    /// An answer that is not Meilisearch's (a proxy's page, another service on the port).
    #[error("Meilisearch at {url} answered {status}: {body}")]
    Unexpected {
        url: String,
        status: u16,
        body: String,
    },
}

/// One line as a document.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Document {
    /// The line's row in the store (the primary key).
    pub id: i64,
    /// Unix nanoseconds.
    pub at: i64,
    pub service: String,
    pub level: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// What Meilisearch said it will do.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_uid: u64,
    pub index_uid: Option<String>,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    message: String,
    code: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    link: String,
}

/// Adds (or replaces) `docs` in the index [`INDEX`] of the Meilisearch at `base`
/// (`http://meilisearch:7700`).
pub async fn push(
    client: &reqwest::Client,
    base: &str,
    key: Option<&SecretString>,
    docs: &[Document],
) -> Result<Task, MeiliError> {
    let url = format!(
        "{}/indexes/{INDEX}/documents?primaryKey=id",
        base.trim_end_matches('/')
    );
    let mut req = client
        .post(&url)
        .timeout(Duration::from_secs(30))
        .json(docs);
    if let Some(k) = key {
        req = req.bearer_auth(k.expose_secret());
    }
    let resp = crate::telemetry::Traced::traced(req)
        .send()
        .await
        .map_err(|e| MeiliError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status == 202 {
        return serde_json::from_str(&text).map_err(|e| MeiliError::Unexpected {
            url,
            status,
            body: format!(
                "not a task ({e}): {}",
                text.chars().take(200).collect::<String>()
            ),
        });
    }
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(e) => Err(MeiliError::Refused {
            url,
            status,
            code: e.code,
            kind: e.kind,
            message: e.message,
            link: e.link,
        }),
        Err(_) => Err(MeiliError::Unexpected {
            url,
            status,
            body: text.chars().take(300).collect(),
        }),
    }
}
