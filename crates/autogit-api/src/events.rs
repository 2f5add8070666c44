//! `GET /api/v1/events`: the application layer's typed events as server-sent events.
//!
//! The stream follows the state store (its `events` and `transitions` tables), not one
//! process's bus: the daemon, the CLI and this server all record there, so a client sees
//! every process's events, in order, once. Each SSE `id` is the store cursor; a client that
//! reconnects with `Last-Event-ID` resumes where it stopped. A comment line every 15 s keeps
//! proxies from closing an idle stream.

use crate::model::EventEnvelope;
use crate::op::Operation;
use crate::ops::Events;
use crate::server::Api;
use autogit_drivers::state::{FeedRow, Store};
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// How often the store is read for new rows.
const POLL: Duration = Duration::from_millis(500);

fn envelope(row: FeedRow) -> EventEnvelope {
    match row {
        FeedRow::Event {
            at,
            service,
            kind,
            detail,
        } => {
            let event: serde_json::Value =
                serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
            let parsed: Option<autogit_app::Event> = serde_json::from_value(event.clone()).ok();
            EventEnvelope {
                at: at.max(0) as u64,
                severity: parsed
                    .as_ref()
                    .map_or("info", |e| e.severity().as_str())
                    .to_owned(),
                summary: parsed.as_ref().map(|e| e.summary()).unwrap_or_default(),
                subject: service,
                kind,
                event,
            }
        }
        FeedRow::Transition(t) => {
            let event = autogit_app::Event::ServiceStateChanged {
                project: String::new(),
                service: t.service.clone(),
                from: t.from.clone(),
                to: t.to.clone(),
                reason: t.reason.clone(),
                flagged: false,
            };
            EventEnvelope {
                at: t.at.max(0) as u64,
                kind: event.kind().to_owned(),
                severity: event.severity().as_str().to_owned(),
                subject: Some(t.service.clone()),
                summary: event.summary(),
                event: serde_json::to_value(&event).unwrap_or_default(),
            }
        }
    }
}

fn parse_cursor(v: &str) -> Option<(i64, i64)> {
    let (e, t) = v.trim().split_once('-')?;
    Some((e.parse().ok()?, t.parse().ok()?))
}

/// The route of [`Events`]: the same gate as every operation, then the stream.
pub async fn stream(State(api): State<Arc<Api>>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let rid = crate::server::request_id_of(&parts.headers);
    if let Err(resp) = crate::server::authorize::<Events>(&api, &mut parts, &rid).await {
        return resp;
    }
    let db = api.settings.state_db();
    // From the client's cursor; else from now, or from the start of a store that does not
    // exist yet (its first rows are new).
    let cursor = parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_cursor)
        .or_else(|| (!db.exists()).then_some((0, 0)));
    let stream = futures_util::stream::unfold(
        (
            cursor,
            None::<Store>,
            std::collections::VecDeque::<(EventEnvelope, String)>::new(),
        ),
        move |(mut cursor, mut store, mut queue)| {
            let db = db.clone();
            async move {
                loop {
                    if let Some((env, id)) = queue.pop_front() {
                        let ev = SseEvent::default()
                            .event(env.kind.clone())
                            .id(id)
                            .json_data(&env)
                            .unwrap_or_default();
                        return Some((
                            Ok::<_, std::convert::Infallible>(ev),
                            (cursor, store, queue),
                        ));
                    }
                    if store.is_none() && db.exists() {
                        store = Store::open(&db).ok();
                    }
                    if let Some(s) = &store {
                        match s.feed_after(cursor, 200) {
                            Ok((rows, next)) => {
                                cursor = Some(next);
                                queue.extend(
                                    rows.into_iter()
                                        .map(|((e, t), r)| (envelope(r), format!("{e}-{t}"))),
                                );
                            }
                            Err(_) => store = None,
                        }
                    }
                    if queue.is_empty() {
                        tokio::time::sleep(POLL).await;
                    }
                }
            }
        },
    );
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// Keeps [`Events`]' JSON handler and its stream route one operation.
pub fn is_stream<O: Operation>() -> bool {
    O::INFO.id == Events::INFO.id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(parse_cursor("12-40"), Some((12, 40)));
        assert_eq!(parse_cursor("x"), None);
        assert_eq!(parse_cursor("1-"), None);
    }

    #[test]
    fn transitions_become_state_change_events() {
        let env = envelope(FeedRow::Transition(autogit_drivers::state::TransitionRow {
            service: "gitlab".into(),
            at: 5,
            from: Some("DEPLOYING".into()),
            to: "FAILED".into(),
            reason: "health".into(),
        }));
        assert_eq!(env.kind, "service_state_changed");
        assert_eq!(env.severity, "error");
        assert_eq!(env.subject.as_deref(), Some("gitlab"));
    }
}
