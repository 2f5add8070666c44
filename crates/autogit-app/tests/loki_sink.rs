//! The log store's Loki sink against a fake Loki that answers as Grafana documents its push
//! API (`POST /loki/api/v1/push`, JSON streams of `[<unix ns as a string>, <line>]`, 204 on
//! success). Loki itself does not run here; the client path is the production one.

mod support;

use autogit_app::logs::LogController;
use autogit_core::logs::enrich;
use autogit_drivers::logstore::{Line, LogStore};
use axum::http::{HeaderMap, StatusCode};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Fake {
    /// (labels, ns, line) of every accepted entry.
    got: Vec<(serde_json::Value, String, String)>,
    /// Answer 500 to this many pushes first (Loki down or overloaded).
    fail: usize,
}

async fn fake_loki(state: Arc<Mutex<Fake>>) -> String {
    let app = axum::Router::new().route(
        "/loki/api/v1/push",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let json = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
                    return (
                        StatusCode::BAD_REQUEST,
                        "error parsing push request".to_owned(),
                    );
                };
                let mut s = state.lock().unwrap();
                if s.fail > 0 {
                    s.fail -= 1;
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "ingester unavailable".into(),
                    );
                }
                let Some(streams) = v["streams"].as_array().filter(|_| json) else {
                    return (StatusCode::BAD_REQUEST, "missing streams".into());
                };
                for st in streams {
                    let labels = st["stream"].clone();
                    if !labels.is_object() {
                        return (StatusCode::BAD_REQUEST, "stream must be an object".into());
                    }
                    for e in st["values"].as_array().into_iter().flatten() {
                        let (Some(ns), Some(line)) = (e[0].as_str(), e[1].as_str()) else {
                            return (
                                StatusCode::BAD_REQUEST,
                                "values are [\"<ns>\", \"<line>\"]".into(),
                            );
                        };
                        if ns.parse::<i64>().is_err() {
                            return (
                                StatusCode::BAD_REQUEST,
                                "timestamp is not unix nanoseconds".into(),
                            );
                        }
                        s.got.push((labels.clone(), ns.to_owned(), line.to_owned()));
                    }
                }
                (StatusCode::NO_CONTENT, String::new())
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn lines_reach_loki_once_scrubbed_and_none_are_lost_while_it_is_down() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let url = fake_loki(fake.clone()).await;
    let data = tempfile::tempdir().unwrap();
    let settings = support::settings("", &format!("LOKI_URL={url}/\n"), data.path());
    let (_, clock) = support::bus_at(2_000);
    let logs = LogController::new(settings, Arc::new(clock));
    assert_eq!(logs.loki_url().as_deref(), Some(url.as_str()));
    let mut store = LogStore::open(&data.path().join("logs.db")).unwrap();
    let line = |at: i64, svc: &str, text: &str| Line {
        at_ns: at,
        service: svc.into(),
        enriched: enrich(text, &[]),
    };
    store
        .insert(&[
            line(
                1_000_000_000_001,
                "gitlab",
                "ERROR NoMethodError for eve@example.com",
            ),
            line(1_000_000_000_002, "gitaly", "level=info msg=ok"),
        ])
        .unwrap();
    let http = reqwest::Client::new();
    assert_eq!(logs.loki_pass(&http, &url).await.unwrap(), 2);
    assert_eq!(logs.loki_pass(&http, &url).await.unwrap(), 0, "sent once");
    {
        let f = fake.lock().unwrap();
        assert_eq!(f.got.len(), 2);
        let (labels, ns, text) = &f.got.iter().find(|g| g.0["service"] == "gitlab").unwrap();
        assert_eq!(
            labels,
            &serde_json::json!({"source": "autogit", "service": "gitlab", "level": "error"})
        );
        assert_eq!(ns, "1000000000001");
        assert!(
            text.contains("<email>") && !text.contains("eve@example.com"),
            "{text}"
        );
    }
    // Loki down: the pass fails, says so, and the lines wait.
    fake.lock().unwrap().fail = 1;
    store
        .insert(&[line(1_000_000_000_003, "gitlab", "WARN slow request")])
        .unwrap();
    let e = logs.loki_pass(&http, &url).await.unwrap_err().to_string();
    assert!(
        e.contains("500") && e.contains("ingester unavailable"),
        "{e}"
    );
    assert_eq!(logs.loki_pass(&http, &url).await.unwrap(), 1);
    assert_eq!(fake.lock().unwrap().got.len(), 3);
    // Nothing listening: an error naming the address; the line waits for the next pass.
    store
        .insert(&[line(1_000_000_000_004, "gitlab", "INFO later")])
        .unwrap();
    let e = logs
        .loki_pass(&http, "http://127.0.0.1:9")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("127.0.0.1:9/loki/api/v1/push"), "{e}");
    assert_eq!(logs.loki_pass(&http, &url).await.unwrap(), 1);
}

#[test]
fn a_bad_loki_url_is_refused_with_what_would_be_valid() {
    let mut sources = autogit_core::source::Sources::new();
    let mut diags = autogit_core::diag::Diagnostics::default();
    let (p, _) = autogit_core::platform::load_platform(
        Some((".env", "LOKI_URL=ftp://user:pw@loki\n")),
        &[],
        &mut sources,
        &mut diags,
    );
    assert!(p.loki_url.is_none());
    let text = format!("{diags:?}");
    assert!(
        text.contains("LOKI_URL") && text.contains("http://loki.lan:3100"),
        "{text}"
    );
}
