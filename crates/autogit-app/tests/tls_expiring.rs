//! `TLS_SOURCE=file` with a certificate about to expire: the daemon's renewal pass
//! (`TlsController::pass`) publishes `certificate_expiring` with the days left, once a day,
//! and a notifier whose `events` names that kind receives it (a real HTTP webhook on
//! loopback, through the sinks every shell starts). The certificate is a real short-lived one
//! made by the `openssl` CLI.

mod support;

use autogit_app::tls::TlsController;
use autogit_app::{Event, sinks::Sinks};
use axum::{Router, body::Bytes, routing::post};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

async fn webhook(path: &'static str, seen: Seen) -> String {
    let app = Router::new().route(
        path,
        post(move |body: Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

/// A self-signed ECDSA certificate for `*.example.test` and `example.test`, valid `days`.
fn openssl_cert(dir: &Path, days: u32) -> Option<(String, String)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:P-256")
        .args(["-nodes", "-subj", "/CN=example.test", "-days"])
        .arg(days.to_string())
        .args([
            "-addext",
            "subjectAltName=DNS:*.example.test,DNS:example.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            Some((cert.display().to_string(), key.display().to_string()))
        }
        Ok(o) => panic!("openssl req: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            support::skip(&format!("openssl is not installed ({e})"));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supplied_certificate_near_its_end_is_an_event_the_notifiers_filter_on() {
    let d = tempfile::tempdir().unwrap();
    let Some((cert, key)) = openssl_cert(d.path(), 3) else {
        return;
    };
    let (expiring, other): (Seen, Seen) = Default::default();
    let expiring_url = webhook("/tls", expiring.clone()).await;
    let other_url = webhook("/mirrors", other.clone()).await;
    let config = format!(
        "health:\n  notify:\n\
         \x20   - type: webhook\n      url: {expiring_url}\n      events: [certificate_expiring]\n\
         \x20   - type: webhook\n      url: {other_url}\n      events: [mirror_failed]\n"
    );
    let env = format!(
        "BASE_DOMAIN=example.test\nTLS_SOURCE=file\nTLS_CERT_FILE={cert}\nTLS_KEY_FILE={key}\n"
    );
    let settings = support::settings(&config, &env, d.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    // A minute on: never the very second openssl started the certificate (3 whole days left).
    let (bus, clock) = support::bus_at(now);
    let mut rx = bus.subscribe();
    let sinks = Sinks::for_command(&bus, &settings);
    let tls = TlsController::new(settings.clone(), bus.clone(), bus.clock().clone());
    // The first pass installs the pair; the second (an hour later) has nothing to install.
    // Both see it expiring; the event is published once for the day.
    tls.pass().await;
    clock.advance(3600);
    tls.pass().await;
    let events: Vec<Event> = support::drain(&mut rx);
    let told: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::CertificateExpiring { .. }))
        .collect();
    assert_eq!(told.len(), 1, "{events:#?}");
    let Event::CertificateExpiring {
        names,
        days_left,
        source,
        file,
        not_after,
    } = told[0]
    else {
        unreachable!()
    };
    assert_eq!(*names, ["*.example.test", "example.test"]);
    // openssl's -days 3 from a moment ago: 2 whole days and some hours left.
    assert_eq!(*days_left, 2, "{told:?}");
    assert!((*not_after - now as i64 - 3 * 86_400).abs() < 120);
    assert_eq!(source, "file");
    assert_eq!(*file, cert);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::CertificateRenewed { .. })),
        "the pair was installed: {events:#?}"
    );
    // A day later: one more, with a day less.
    clock.advance(86_400);
    tls.pass().await;
    let again: Vec<Event> = support::drain(&mut rx)
        .into_iter()
        .filter(|e| matches!(e, Event::CertificateExpiring { .. }))
        .collect();
    assert!(
        matches!(
            again.as_slice(),
            [Event::CertificateExpiring { days_left: 1, .. }]
        ),
        "{again:#?}"
    );
    drop(tls);
    sinks.finish(bus, Duration::from_secs(20)).await;
    let expiring = expiring.lock().unwrap();
    let days: Vec<i64> = expiring
        .iter()
        .map(|b| {
            assert_eq!(b["kind"], "certificate_expiring", "{b}");
            b["days_left"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(days, [2, 1], "{expiring:#?}");
    assert!(
        other.lock().unwrap().is_empty(),
        "the entry filtered to mirror_failed got nothing"
    );
}
