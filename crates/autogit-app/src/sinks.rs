//! Subscribers of the bus that every shell starts: the structured log (through `tracing`),
//! the state store's event table, and the configured notifiers (signed webhooks). Each runs
//! as its own task and never slows a publisher.

use crate::bus::{Bus, next};
use crate::event::{Envelope, Event};
use autogit_core::config::Notify;
use autogit_drivers::notify::{Retry, Webhook, deliver_body};
use autogit_drivers::state::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// Logs every event as one `tracing` record (target `autogit::event`): level from its
/// severity, the summary as message, `kind`, `subject` and the whole event as JSON in
/// `event`. The binary chooses the format (JSON lines for the daemon).
pub fn log(bus: &Bus) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    tokio::spawn(async move {
        let mut lost = 0;
        while let Some(env) = next(&mut rx, &mut lost).await {
            log_one(&env);
        }
    })
}

pub fn log_one(env: &Envelope) {
    use crate::event::Severity::*;
    let e = &env.event;
    let json = serde_json::to_string(env).unwrap_or_default();
    let (kind, subject, msg) = (e.kind(), e.subject().unwrap_or(""), e.summary());
    match e.severity() {
        Info => tracing::info!(target: "autogit::event", kind, subject, event = %json, "{msg}"),
        Warning => tracing::warn!(target: "autogit::event", kind, subject, event = %json, "{msg}"),
        Error => tracing::error!(target: "autogit::event", kind, subject, event = %json, "{msg}"),
    }
}

/// Records events in the state store's `events` table (state changes are already recorded
/// as transitions by the runtime, and reconcile actions by its repairs).
pub fn store(bus: &Bus, db: PathBuf) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    tokio::spawn(async move {
        let mut lost = 0;
        let mut store: Option<Store> = None;
        while let Some(env) = next(&mut rx, &mut lost).await {
            if matches!(
                env.event,
                Event::ServiceStateChanged { .. } | Event::ReconcileAction { .. }
            ) {
                continue;
            }
            if store.is_none() {
                store = Store::open(&db).ok();
            }
            if let Some(s) = &store {
                let detail = serde_json::to_string(&env.event).unwrap_or_default();
                if s.event(env.at, env.event.subject(), env.event.kind(), &detail)
                    .is_err()
                {
                    // Reopened on the next event (the file may have been replaced).
                    store = None;
                }
            }
        }
    })
}

/// The webhooks of `health.notify`, with their signing secrets from the settings.
pub fn webhooks(settings: &crate::Settings) -> Vec<Webhook> {
    settings
        .config
        .health
        .notify
        .iter()
        .filter_map(|n| match n {
            Notify::Webhook { url, secret_env } => Some(Webhook {
                url: url.clone(),
                secret: secret_env.as_ref().and_then(|k| settings.value(k)),
            }),
            Notify::Log => None,
        })
        .collect()
}

/// Sends every event that [`Event::notifies`] to each webhook, signed
/// (`X-Autogit-Signature: sha256=…` over the body, `X-Autogit-Event: <kind>`), each delivery
/// in its own task with retries; a failed delivery is published as `webhook_failed`. The task
/// ends once the bus is closed and every delivery has finished.
pub fn notify(bus: &Bus, hooks: Vec<Webhook>, retry: Retry) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    let weak = bus.downgrade();
    tokio::spawn(async move {
        if hooks.is_empty() {
            return;
        }
        let client = autogit_drivers::health::client();
        let mut deliveries = tokio::task::JoinSet::new();
        let mut lost = 0;
        while let Some(env) = next(&mut rx, &mut lost).await {
            // Reap what finished, so a long-running daemon does not keep their results.
            while deliveries.try_join_next().is_some() {}
            if !env.event.notifies() {
                continue;
            }
            let Ok(body) = serde_json::to_vec(&*env) else {
                continue;
            };
            let body = Arc::new(body);
            for hook in &hooks {
                let (client, hook, body, weak) =
                    (client.clone(), hook.clone(), body.clone(), weak.clone());
                let kind = env.event.kind();
                deliveries.spawn(async move {
                    if let Err(error) = deliver_body(&client, &hook, kind, &body, retry).await {
                        weak.publish(Event::WebhookFailed {
                            url: hook.url.clone(),
                            about: kind.to_owned(),
                            error,
                        });
                    }
                });
            }
        }
        while deliveries.join_next().await.is_some() {}
    })
}

/// The sinks a one-shot command starts (it prints for itself): the state store and the
/// notifiers. [`Sinks::finish`] waits for them once the command's controllers are dropped.
#[derive(Debug)]
pub struct Sinks(Vec<tokio::task::JoinHandle<()>>);

impl Sinks {
    pub fn for_command(bus: &Bus, settings: &crate::Settings) -> Sinks {
        Sinks(vec![
            store(bus, settings.state_db()),
            notify(bus, webhooks(settings), Retry::default()),
        ])
    }

    /// Every sink of a long-running shell: log, store, notifiers.
    pub fn all(bus: &Bus, settings: &crate::Settings) -> Sinks {
        let mut s = Self::for_command(bus, settings);
        s.0.push(log(bus));
        s
    }

    /// Drops `bus` (the caller's last handle) and waits, at most `limit`, for the sinks to
    /// finish what they received (notifications still being delivered).
    pub async fn finish(self, bus: Bus, limit: std::time::Duration) {
        drop(bus);
        let _ = tokio::time::timeout(limit, async {
            for h in self.0 {
                let _ = h.await;
            }
        })
        .await;
    }
}
