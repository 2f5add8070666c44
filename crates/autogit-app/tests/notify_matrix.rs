//! `health.notify`'s `{type: matrix}`: a failure published on the bus reaches a fake Matrix
//! homeserver. No homeserver runs here (Synapse and Conduit are not packaged for this
//! machine), so the fake below answers the client-server API's
//! `PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}` as the spec documents
//! it: `200 {"event_id": ...}`, `401 {"errcode": "M_UNKNOWN_TOKEN", ...}` for a wrong access
//! token; a transaction id it has seen is answered with the first event's id and no second
//! message (idempotency). Its first answer is a 502, so the retry must reuse the transaction id.

mod support;

use autogit_app::Event;
use autogit_drivers::notify::Retry;
use axum::extract::{Path, State};
use axum::{Json, Router, http::HeaderMap, http::StatusCode, routing::put};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Homeserver {
    /// (room, txn id, body) of each message stored.
    messages: Vec<(String, String, Value)>,
    /// Every PUT's txn id, in order.
    tries: Vec<String>,
    events: HashMap<String, String>,
}

type Hs = Arc<Mutex<Homeserver>>;

async fn send(
    State(hs): State<Hs>,
    Path((room, event_type, txn)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut hs = hs.lock().unwrap();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer syt_good") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed.", "soft_logout": false}),
            ),
        );
    }
    assert_eq!(event_type, "m.room.message");
    hs.tries.push(txn.clone());
    if hs.tries.len() == 1 {
        return (StatusCode::BAD_GATEWAY, Json(json!({})));
    }
    if let Some(id) = hs.events.get(&txn) {
        return (StatusCode::OK, Json(json!({"event_id": id})));
    }
    let id = format!("$event{}", hs.events.len());
    hs.events.insert(txn.clone(), id.clone());
    hs.messages.push((room, txn, body));
    (StatusCode::OK, Json(json!({"event_id": id})))
}

#[tokio::test]
async fn a_failure_is_a_notice_in_the_room_sent_once_and_a_bad_token_is_named_by_its_variable() {
    let hs: Hs = Arc::default();
    let app = Router::new()
        .route(
            "/_matrix/client/v3/rooms/{room}/send/{event_type}/{txn}",
            put(send),
        )
        .with_state(hs.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let d = tempfile::tempdir().unwrap();
    let config = format!(
        "health:\n  notify:\n    - type: matrix\n      homeserver: {base}/\n      room: '!ops:example.org'\n      token_env: MATRIX_TOKEN\n    - type: matrix\n      homeserver: {base}\n      room: '!ops:example.org'\n      token_env: MATRIX_OLD_TOKEN\n"
    );
    let env = "MATRIX_TOKEN=syt_good\nMATRIX_OLD_TOKEN=syt_revoked_secret\n";
    let settings = support::settings(&config, env, d.path());
    let (bus, _clock) = support::bus_at(1_700_000_000);
    let mut rx = bus.subscribe();
    let retry = Retry {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    };
    let sink = autogit_app::sinks::chat(&bus, settings, retry);
    bus.publish(Event::MirrorFailed {
        name: "docs".into(),
        source: "git://127.0.0.1/docs.git".into(),
        error: "@room unreachable".into(),
    });
    let mut failed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while failed.is_empty() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(env)) if matches!(env.event, Event::WebhookFailed { .. }) => {
                failed.push(env.event.clone())
            }
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    drop(bus);
    tokio::time::timeout(Duration::from_secs(60), sink)
        .await
        .unwrap()
        .unwrap();

    let hs = hs.lock().unwrap();
    assert_eq!(hs.messages.len(), 1, "sent once");
    let (room, txn, body) = &hs.messages[0];
    assert_eq!(room, "!ops:example.org");
    assert_eq!(
        hs.tries.iter().filter(|t| *t == txn).count(),
        2,
        "the retry after the 502 reused the transaction id: {:?}",
        hs.tries
    );
    assert_eq!(body["msgtype"], "m.notice");
    assert_eq!(body["m.mentions"], json!({}));
    assert!(
        body["body"]
            .as_str()
            .unwrap()
            .contains("mirror_failed (docs)\ndocs: mirror failed: @room unreachable"),
        "{body}"
    );
    // The revoked token: one failure, named by its variable, never the token.
    assert_eq!(failed.len(), 1, "{failed:?}");
    let text = format!("{:?}", failed[0]);
    assert!(
        text.contains("MATRIX_OLD_TOKEN") && text.contains("401"),
        "{text}"
    );
    assert!(!text.contains("syt_revoked_secret"), "{text}");
}

#[test]
fn a_room_alias_or_a_missing_token_variable_is_a_config_error() {
    use autogit_core::load::{LoadInput, load};
    for (entry, want) in [
        (
            "{type: matrix, homeserver: 'https://m.org', room: '#ops:m.org', token_env: T}",
            "room id",
        ),
        (
            "{type: matrix, homeserver: 'https://m.org', room: '!ops:m.org'}",
            "token_env",
        ),
        ("{type: matrx}", "matrix"),
    ] {
        let yml = format!("health:\n  notify:\n    - {entry}\n");
        let loaded = load(&LoadInput {
            file: Some(("autogit.yml", &yml)),
            ..Default::default()
        });
        assert!(loaded.diagnostics.has_errors(), "{entry}");
        let text = format!("{:?}", loaded.diagnostics);
        assert!(text.contains(want), "{entry}: {text}");
    }
}
