//! `health.notify`'s chat services and `notify` extensions: a failure published on the bus
//! reaches fakes of Slack's incoming webhooks, Discord's channel webhooks and ntfy's JSON
//! publishing (axum on loopback, answering as their docs say: Slack `200 ok`, Discord `204`,
//! ntfy `200` with the message as JSON, each checking the body's documented shape), and a
//! python3 extension written with the Python SDK. A refused delivery is published as
//! `webhook_failed` naming the target by its variable, never by its URL (the secret).

mod support;

use autogit_app::Event;
use autogit_drivers::notify::Retry;
use axum::{Json, Router, http::HeaderMap, http::StatusCode, routing::post};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// The `webhook_failed` events received until `n` came (30 s at most): the bus must stay
/// open meanwhile, since the sink publishes them on it.
async fn failures(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<autogit_app::Envelope>>,
    n: usize,
) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(env)) if matches!(env.event, Event::WebhookFailed { .. }) => {
                out.push(env.event.clone())
            }
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    out
}

/// Slack at `/services/T0/B0/good` (and 404 `no_service` for any other path, as for a
/// revoked webhook), Discord at `/api/webhooks/1/tok`, ntfy at `/` (bearer `tk_good`).
async fn fakes() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
    let app = Router::new()
        .route(
            "/services/T0/B0/good",
            post(move |Json(v): Json<Value>| async move {
                assert!(v["text"].is_string(), "{v}");
                s1.lock().unwrap().push(("slack".into(), v));
                (StatusCode::OK, "ok")
            }),
        )
        .route(
            "/services/{t}/{b}/{k}",
            post(|| async { (StatusCode::NOT_FOUND, "no_service") }),
        )
        .route(
            "/api/webhooks/1/tok",
            post(move |Json(v): Json<Value>| async move {
                assert!(v["content"].as_str().unwrap().chars().count() <= 2000);
                s2.lock().unwrap().push(("discord".into(), v));
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/",
            post(move |h: HeaderMap, Json(v): Json<Value>| async move {
                if h.get("authorization").and_then(|a| a.to_str().ok()) != Some("Bearer tk_good") {
                    return (
                        StatusCode::FORBIDDEN,
                        Json(json!({"code": 40301, "http": 403})),
                    );
                }
                s3.lock().unwrap().push(("ntfy".into(), v.clone()));
                (
                    StatusCode::OK,
                    Json(json!({"id": "x", "event": "message", "topic": v["topic"]})),
                )
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, seen)
}

/// A notify extension on the Python SDK: appends each message to `sent.jsonl` (in its
/// directory) and checks the token it was given.
const PAGER: &str = r#"#!/usr/bin/python3
import json, sys
sys.path.insert(0, SDK)
from autogit_extension import Extension, NotifyProvider, Setting, AuthError

class Pager(NotifyProvider):
    settings = [Setting("PAGER_TOKEN", secret=True, required=True)]
    def initialize(self, config, secrets, context):
        if secrets["PAGER_TOKEN"] != "pager-secret":
            raise AuthError("wrong token")
    def send(self, message):
        with open("sent.jsonl", "a") as f:
            f.write(json.dumps(message) + "\n")

Extension("pager", "0.3.0").notify(Pager()).run()
"#;

#[tokio::test]
async fn failures_reach_slack_discord_ntfy_and_a_notify_extension() {
    if !Path::new("/usr/bin/python3").exists() {
        assert!(std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none());
        eprintln!("skipping: no /usr/bin/python3");
        return;
    }
    let (base, seen) = fakes().await;
    let d = tempfile::tempdir().unwrap();
    let ext = d.path().join("ext");
    std::fs::create_dir(&ext).unwrap();
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python");
    let script = PAGER.replace("SDK", &format!("{:?}", sdk.display().to_string()));
    std::fs::write(ext.join("pager"), script).unwrap();
    std::fs::set_permissions(ext.join("pager"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let config = format!(
        "health:\n  notify:\n    - type: slack\n      url_env: SLACK_URL\n    - type: slack\n      url_env: SLACK_REVOKED_URL\n    - type: discord\n      url_env: DISCORD_URL\n    - type: ntfy\n      url: {base}\n      topic: autogit-alerts\n      token_env: NTFY_TOKEN\n    - type: extension\n      name: pager\n"
    );
    let env = format!(
        "SLACK_URL={base}/services/T0/B0/good\nSLACK_REVOKED_URL={base}/services/T0/B0/revoked-secret\n\
         DISCORD_URL={base}/api/webhooks/1/tok\nNTFY_TOKEN=tk_good\nPAGER_TOKEN=pager-secret\n\
         EXTENSIONS_ENABLED=pager\nEXTENSIONS_DIR={}\n",
        ext.display()
    );
    let settings = support::settings(&config, &env, d.path());
    let (bus, _clock) = support::bus_at(1_700_000_000);
    let mut rx = bus.subscribe();
    let retry = Retry {
        attempts: 2,
        first_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    };
    let sink = autogit_app::sinks::chat(&bus, settings, retry);
    bus.publish(Event::MirrorFailed {
        name: "docs".into(),
        source: "git://127.0.0.1/docs.git".into(),
        error: "<!channel> @everyone unreachable".into(),
    });
    // A routine success does not notify.
    bus.publish(Event::DnsSynced {
        provider: "rfc2136".into(),
        created: 1,
        updated: 0,
        deleted: 0,
        conflicts: 0,
    });
    let failed = failures(&mut rx, 1).await;
    drop(bus);
    tokio::time::timeout(Duration::from_secs(60), sink)
        .await
        .unwrap()
        .unwrap();

    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let services: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(services, ["discord", "ntfy", "slack"], "{seen:?}");
    let (discord, ntfy, slack) = (&seen[0].1, &seen[1].1, &seen[2].1);
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .contains("&lt;!channel&gt; @everyone unreachable"),
        "{slack}"
    );
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
    assert!(
        discord["content"]
            .as_str()
            .unwrap()
            .contains("mirror\\_failed")
    );
    assert_eq!(
        (&ntfy["topic"], &ntfy["priority"]),
        (&json!("autogit-alerts"), &json!(5))
    );

    let sent = std::fs::read_to_string(ext.join("sent.jsonl")).unwrap();
    let sent: Vec<Value> = sent
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (&sent[0]["kind"], &sent[0]["severity"], &sent[0]["subject"]),
        (&json!("mirror_failed"), &json!("error"), &json!("docs"))
    );
    assert_eq!(sent[0]["event"]["name"], "docs");

    // The revoked Slack webhook: one failure, named by its variable, not its URL.
    assert!(
        support::drain(&mut rx)
            .iter()
            .all(|e| !matches!(e, Event::WebhookFailed { .. })),
        "only one failure"
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
    let Event::WebhookFailed { url, about, error } = &failed[0] else {
        unreachable!()
    };
    assert_eq!(url, "slack (SLACK_REVOKED_URL)");
    assert_eq!(about, "mirror_failed");
    assert_eq!(error, "slack (SLACK_REVOKED_URL) answered 404 Not Found");
    let all = format!("{failed:?}");
    assert!(!all.contains("revoked-secret"), "{all}");
}

#[tokio::test]
async fn an_unreachable_service_and_a_missing_secret_are_reported_without_the_url() {
    let d = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback (discard); the Discord URL is not set.
    let config = "health:\n  notify:\n    - type: slack\n      url_env: SLACK_URL\n    - type: discord\n      url_env: DISCORD_URL\n";
    let env = "SLACK_URL=http://127.0.0.1:9/services/T0/B0/very-secret\n";
    let settings = support::settings(config, env, d.path());
    let (bus, _clock) = support::bus_at(1_700_000_000);
    let mut rx = bus.subscribe();
    let retry = Retry {
        attempts: 1,
        first_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
    };
    let sink = autogit_app::sinks::chat(&bus, settings, retry);
    bus.publish(Event::HostUnreachable {
        host: "gpu1".into(),
        error: "timeout".into(),
    });
    let failed = failures(&mut rx, 2).await;
    drop(bus);
    tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .unwrap()
        .unwrap();
    let failed: Vec<String> = failed
        .into_iter()
        .filter_map(|e| match e {
            Event::WebhookFailed { url, error, .. } => Some(format!("{url}: {error}")),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with("discord (DISCORD_URL): DISCORD_URL is not set")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with("slack (SLACK_URL): slack (SLACK_URL): error sending request")),
        "{failed:?}"
    );
    assert!(
        !failed.iter().any(|f| f.contains("very-secret")),
        "{failed:?}"
    );
}
