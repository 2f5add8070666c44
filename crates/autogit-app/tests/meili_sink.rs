//! The log store's Meilisearch sink against a fake Meilisearch that answers as its API
//! documents (meilisearch.com/docs/reference/api/documents, …/reference/errors):
//! `POST /indexes/{uid}/documents?primaryKey=…` with a JSON array answers `202 Accepted` with a
//! summarized task object; without the bearer key `401 missing_authorization_header`, with
//! another key `403 invalid_api_key`, each as `{"message", "code", "type", "link"}`; a body
//! that is not an array `400 malformed_payload`. Meilisearch itself does not run here; the
//! client path is the production one.

mod support;

use autogit_app::logs::LogController;
use autogit_core::logs::enrich;
use autogit_drivers::logstore::{Line, LogStore};
use axum::http::{HeaderMap, StatusCode};
use std::sync::{Arc, Mutex};

const KEY: &str = "meili-master-key-0123456789";

#[derive(Default)]
struct Fake {
    /// Documents by primary key (add or replace), and the index they went to.
    docs: std::collections::BTreeMap<i64, serde_json::Value>,
    index: Option<String>,
    tasks: u64,
    /// Answer 503 to this many requests first.
    fail: usize,
}

fn error(status: StatusCode, message: &str, code: &str, kind: &str) -> (StatusCode, String) {
    (
        status,
        serde_json::json!({
            "message": message,
            "code": code,
            "type": kind,
            "link": format!("https://docs.meilisearch.com/errors#{code}"),
        })
        .to_string(),
    )
}

async fn fake_meili(state: Arc<Mutex<Fake>>) -> String {
    let app = axum::Router::new().route(
        "/indexes/{uid}/documents",
        axum::routing::post(
            move |axum::extract::Path(uid): axum::extract::Path<String>,
                  axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >,
                  headers: HeaderMap,
                  body: String| {
                let state = state.clone();
                async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                    match auth {
                        None => {
                            return error(
                                StatusCode::UNAUTHORIZED,
                                "The Authorization header is missing. It must use the bearer authorization method.",
                                "missing_authorization_header",
                                "auth",
                            );
                        }
                        Some(a) if a != format!("Bearer {KEY}") => {
                            return error(
                                StatusCode::FORBIDDEN,
                                "The provided API key is invalid.",
                                "invalid_api_key",
                                "auth",
                            );
                        }
                        Some(_) => {}
                    }
                    let mut s = state.lock().unwrap();
                    if s.fail > 0 {
                        s.fail -= 1;
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Meilisearch is starting.",
                            "internal",
                            "internal",
                        );
                    }
                    let Ok(serde_json::Value::Array(docs)) = serde_json::from_str(&body) else {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "The json payload provided is malformed.",
                            "malformed_payload",
                            "invalid_request",
                        );
                    };
                    let pk = q.get("primaryKey").cloned().unwrap_or_default();
                    for d in docs {
                        let Some(id) = d[&pk].as_i64() else {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "Document doesn't have a primary key.",
                                "missing_document_id",
                                "invalid_request",
                            );
                        };
                        s.docs.insert(id, d);
                    }
                    s.index = Some(uid.clone());
                    let task = s.tasks;
                    s.tasks += 1;
                    (
                        StatusCode::ACCEPTED,
                        serde_json::json!({
                            "taskUid": task,
                            "indexUid": uid,
                            "status": "enqueued",
                            "type": "documentAdditionOrUpdate",
                            "enqueuedAt": "2026-12-07T05:00:00.000000Z",
                        })
                        .to_string(),
                    )
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn lines_reach_meilisearch_once_keyed_and_none_are_lost_while_it_refuses() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let url = fake_meili(fake.clone()).await;
    let data = tempfile::tempdir().unwrap();
    let line = |at: i64, svc: &str, text: &str| Line {
        at_ns: at,
        service: svc.into(),
        enriched: enrich(text, &[]),
    };
    let mut store = LogStore::open(&data.path().join("logs.db")).unwrap();
    store
        .insert(&[
            line(
                1_000_000_000_001,
                "gitlab",
                "ERROR NoMethodError for eve@example.com request_id=r-1",
            ),
            line(1_000_000_000_002, "gitaly", "level=info msg=ok"),
        ])
        .unwrap();
    let http = reqwest::Client::new();
    let (_, clock) = support::bus_at(2_000);

    // No key: Meilisearch's 401 with its code, and nothing moves.
    let settings = support::settings("", &format!("MEILISEARCH_URL={url}/\n"), data.path());
    let logs = LogController::new(settings, Arc::new(clock.clone()));
    assert_eq!(logs.meilisearch_url().as_deref(), Some(url.as_str()));
    let e = logs
        .meilisearch_pass(&http, &url)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("401")
            && e.contains("missing_authorization_header")
            && e.contains("docs.meilisearch.com"),
        "{e}"
    );
    // Another key: 403, and the key is in no error.
    let settings = support::settings(
        "",
        &format!("MEILISEARCH_URL={url}\nMEILI_MASTER_KEY=not-the-key-at-all\n"),
        data.path(),
    );
    let logs = LogController::new(settings, Arc::new(clock.clone()));
    let e = logs
        .meilisearch_pass(&http, &url)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("403") && e.contains("invalid_api_key"), "{e}");
    assert!(!e.contains("not-the-key-at-all"), "{e}");
    assert!(fake.lock().unwrap().docs.is_empty());

    let settings = support::settings(
        "",
        &format!("MEILISEARCH_URL={url}\nMEILI_MASTER_KEY={KEY}\n"),
        data.path(),
    );
    let logs = LogController::new(settings, Arc::new(clock));
    assert_eq!(logs.meilisearch_pass(&http, &url).await.unwrap(), 2);
    assert_eq!(
        logs.meilisearch_pass(&http, &url).await.unwrap(),
        0,
        "sent once"
    );
    {
        let f = fake.lock().unwrap();
        assert_eq!(f.index.as_deref(), Some("autogit-logs"));
        assert_eq!(f.docs.len(), 2);
        let d = f.docs.values().find(|d| d["service"] == "gitlab").unwrap();
        assert_eq!(d["level"], "error");
        assert_eq!(d["error_class"], "NoMethodError");
        assert_eq!(d["request_id"], "r-1");
        assert_eq!(d["at"], 1_000_000_000_001i64);
        let m = d["message"].as_str().unwrap();
        assert!(
            m.contains("<email>") && !m.contains("eve@example.com"),
            "{m}"
        );
    }
    // Meilisearch unavailable: the pass fails with its error; the line waits and goes once.
    fake.lock().unwrap().fail = 1;
    store
        .insert(&[line(1_000_000_000_003, "gitlab", "WARN slow request")])
        .unwrap();
    let e = logs
        .meilisearch_pass(&http, &url)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("503") && e.contains("Meilisearch is starting"),
        "{e}"
    );
    assert_eq!(logs.meilisearch_pass(&http, &url).await.unwrap(), 1);
    assert_eq!(fake.lock().unwrap().docs.len(), 3);
    assert_eq!(fake.lock().unwrap().tasks, 2);
    // Not Meilisearch on the port: an error naming the address; the next pass sends the line.
    store
        .insert(&[line(1_000_000_000_004, "gitlab", "INFO later")])
        .unwrap();
    let e = logs
        .meilisearch_pass(&http, "http://127.0.0.1:9")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("127.0.0.1:9/indexes/autogit-logs/documents"),
        "{e}"
    );
    assert_eq!(logs.meilisearch_pass(&http, &url).await.unwrap(), 1);
}

#[test]
fn a_bad_meilisearch_url_is_refused_with_what_would_be_valid() {
    let mut sources = autogit_core::source::Sources::new();
    let mut diags = autogit_core::diag::Diagnostics::default();
    let (p, _) = autogit_core::platform::load_platform(
        Some((".env", "MEILISEARCH_URL=search.lan:7700\n")),
        &[],
        &mut sources,
        &mut diags,
    );
    assert!(p.meilisearch_url.is_none());
    let text = format!("{diags:?}");
    assert!(
        text.contains("MEILISEARCH_URL") && text.contains("http://search.lan:7700"),
        "{text}"
    );
}
