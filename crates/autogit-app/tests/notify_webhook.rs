//! Notifications for every kind of failure, not only state changes: events published on the
//! bus reach a real HTTP webhook (an axum server on loopback), signed with HMAC-SHA256 over the
//! body; routine successes do not.

mod support;

use autogit_app::Event;
use autogit_drivers::notify::{Retry, Webhook, sign};
use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

async fn webhook() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                // The signature must be over exactly these bytes.
                assert_eq!(h("x-autogit-signature"), sign("hook-secret", &body));
                s.lock()
                    .unwrap()
                    .push((h("x-autogit-event"), h("x-autogit-signature"), v));
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn every_failure_kind_reaches_the_webhook_signed() {
    let (url, seen) = webhook().await;
    let (bus, _clock) = support::bus_at(1_700_000_000);
    let hooks = vec![Webhook {
        url,
        secret: Some("hook-secret".into()),
    }];
    let sink = autogit_app::sinks::notify(&bus, hooks, Retry::default());
    let failures = [
        Event::MirrorFailed {
            name: "a".into(),
            source: "git://127.0.0.1/a.git".into(),
            error: "unreachable".into(),
        },
        Event::CertificateRenewalFailed {
            error: "CA down".into(),
            failures: 1,
            retry_at: 1_700_000_300,
        },
        Event::BackupFailed {
            error: "no space left".into(),
        },
        Event::DnsSyncFailed {
            provider: "rfc2136".into(),
            error: "refused".into(),
        },
        Event::FlagRaised {
            service: "gitlab".into(),
            reason: "restart budget spent".into(),
        },
    ];
    for e in failures.iter().cloned() {
        bus.publish(e);
    }
    // Routine successes stay in the log and the store.
    bus.publish(Event::MirrorSynced {
        name: "a".into(),
        changed: 1,
        deleted: 0,
        lfs: false,
    });
    drop(bus);
    tokio::time::timeout(Duration::from_secs(20), sink)
        .await
        .unwrap()
        .unwrap();
    let seen = seen.lock().unwrap();
    let mut kinds: Vec<&str> = seen.iter().map(|(k, _, _)| k.as_str()).collect();
    kinds.sort();
    let mut want: Vec<&str> = failures.iter().map(Event::kind).collect();
    want.sort();
    assert_eq!(kinds, want);
    for (kind, _, body) in seen.iter() {
        assert_eq!(body["kind"], *kind);
        assert_eq!(body["at"], 1_700_000_000u64);
    }
}
