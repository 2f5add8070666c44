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

/// `events` and `rate_limit` on a webhook entry: other kinds never reach it; over the limit
/// events are dropped, and the first body of the next window carries `"suppressed": <n>`.
#[tokio::test]
async fn a_filtered_rate_limited_webhook_says_what_it_suppressed() {
    let (url, seen) = webhook().await;
    let d = tempfile::tempdir().unwrap();
    let config = format!(
        "health:\n  notify:\n    - type: webhook\n      url: {url}\n      secret_env: HOOK_SECRET\n      events: [mirror_failed]\n      rate_limit: {{max: 1, per: 1m}}\n"
    );
    let settings = support::settings(&config, "HOOK_SECRET=hook-secret\n", d.path());
    let (bus, clock) = support::bus_at(1_700_000_000);
    let sink = autogit_app::sinks::notify_with(
        &bus,
        autogit_app::sinks::webhooks_with_rules(&settings),
        Retry::default(),
    );
    let failed = |name: &str| Event::MirrorFailed {
        name: name.into(),
        source: "git://127.0.0.1/a.git".into(),
        error: "unreachable".into(),
    };
    bus.publish(failed("first"));
    bus.publish(Event::BackupFailed {
        error: "no space left".into(),
    });
    bus.publish(failed("dropped-1"));
    bus.publish(failed("dropped-2"));
    clock.advance(60);
    bus.publish(failed("next"));
    drop(bus);
    tokio::time::timeout(Duration::from_secs(20), sink)
        .await
        .unwrap()
        .unwrap();
    let seen = seen.lock().unwrap();
    let mut bodies: Vec<&serde_json::Value> = seen.iter().map(|(_, _, b)| b).collect();
    bodies.sort_by_key(|b| b["at"].as_u64());
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(bodies[0]["name"], "first");
    assert!(bodies[0].get("suppressed").is_none());
    assert_eq!(bodies[1]["name"], "next");
    assert_eq!(bodies[1]["suppressed"], 2);
}

/// A rate limit outlives the process: the window and the suppressed count are in the state
/// store, so a "restarted" daemon (new sinks, the same data dir, as `Sinks::all` and every
/// command's `Sinks::for_command` start them) does not hand out a fresh allowance.
#[tokio::test]
async fn a_rate_limit_survives_a_restart() {
    let (url, seen) = webhook().await;
    let d = tempfile::tempdir().unwrap();
    let config = format!(
        "health:\n  notify:\n    - type: webhook\n      url: {url}\n      secret_env: HOOK_SECRET\n      rate_limit: {{max: 2, per: 10m}}\n"
    );
    let settings = support::settings(&config, "HOOK_SECRET=hook-secret\n", d.path());
    let failed = |name: &str| Event::MirrorFailed {
        name: name.into(),
        source: "git://127.0.0.1/a.git".into(),
        error: "unreachable".into(),
    };
    // One run of the daemon: its sinks, these events, then the process is gone.
    let run = |at: u64, names: &'static [&'static str]| {
        let settings = settings.clone();
        async move {
            let (bus, _clock) = support::bus_at(at);
            let sinks = autogit_app::sinks::Sinks::for_command(&bus, &settings);
            for n in names {
                bus.publish(failed(n));
            }
            sinks.finish(bus, Duration::from_secs(20)).await;
        }
    };
    let t0 = 1_700_000_000;
    run(t0, &["a", "b", "c"]).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "2 of 3 in the first window");
    // Restarted a minute later: still the same window, already full.
    run(t0 + 60, &["d", "e"]).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the restart did not reset the limit"
    );
    // The next window: sent, with every event dropped before and after the restart counted.
    run(t0 + 600, &["f"]).await;
    let seen = seen.lock().unwrap();
    let names: Vec<&str> = seen
        .iter()
        .map(|(_, _, b)| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], "f");
    assert_eq!(seen[2].2["suppressed"], 3, "c, d and e");
}
