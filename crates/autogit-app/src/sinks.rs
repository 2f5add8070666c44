//! Subscribers of the bus that every shell starts: the structured log (through `tracing`),
//! the state store's event table, and the configured notifiers (signed webhooks). Each runs
//! as its own task and never slows a publisher.

use crate::bus::{Bus, next};
use crate::event::{Envelope, Event};
use autogit_core::config::Notify;
use autogit_drivers::notify::{Chat, Retry, Webhook, deliver_body, deliver_chat};
use autogit_drivers::state::Store;
use secrecy::SecretString;
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
            _ => None,
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

/// What one event says, for a chat service or a `notify` extension.
pub fn message(event: &Event) -> autogit_core::chat::Message {
    autogit_core::chat::Message {
        kind: event.kind().to_owned(),
        severity: event.severity().as_str().to_owned(),
        subject: event.subject().map(str::to_owned),
        summary: event.summary(),
    }
}

/// A chat target of `health.notify`, its secrets read now (the variable, or `<NAME>_FILE`);
/// `Err((label, why))` when one is missing. `None` for the other notifier types.
fn chat_target(settings: &crate::Settings, n: &Notify) -> Option<Result<Chat, (String, String)>> {
    let secret = |label: String, key: &str| match settings.secret(key) {
        Ok(Some(v)) => Ok(SecretString::from(v)),
        Ok(None) => Err((
            label,
            format!("{key} is not set (in .env, the environment, or {key}_FILE)"),
        )),
        Err(e) => Err((label, e)),
    };
    Some(match n {
        Notify::Slack { url_env } => {
            secret(format!("slack ({url_env})"), url_env).map(|url| Chat::Slack {
                url,
                label: url_env.clone(),
            })
        }
        Notify::Discord { url_env } => {
            secret(format!("discord ({url_env})"), url_env).map(|url| Chat::Discord {
                url,
                label: url_env.clone(),
            })
        }
        Notify::Ntfy {
            url,
            topic,
            token_env,
        } => {
            let token = match token_env {
                Some(k) => match secret(format!("ntfy {url}/{topic}"), k) {
                    Ok(t) => Some(t),
                    Err(e) => return Some(Err(e)),
                },
                None => None,
            };
            Ok(Chat::Ntfy {
                url: url.clone(),
                topic: topic.clone(),
                token,
            })
        }
        Notify::Matrix {
            homeserver,
            room,
            token_env,
        } => secret(format!("matrix {room} ({token_env})"), token_env).map(|token| Chat::Matrix {
            homeserver: homeserver.clone(),
            room: room.clone(),
            token,
            label: token_env.clone(),
        }),
        Notify::Log | Notify::Webhook { .. } | Notify::Extension { .. } => return None,
    })
}

/// Sends every event that [`Event::notifies`] to the chat services of `health.notify`
/// (`slack`, `discord`, `ntfy`: `drivers::notify::deliver_chat`) and to its `notify`
/// extensions (`{type: extension, name}`: started for the event, `notify.send`, `shutdown`),
/// each delivery in its own task. A failure is published as `webhook_failed` whose `url` is
/// the target's label (`slack (SLACK_WEBHOOK_URL)`, `extension pager`), never a Slack or
/// Discord URL, which is the secret.
pub fn chat(
    bus: &Bus,
    settings: Arc<crate::Settings>,
    retry: Retry,
) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    let weak = bus.downgrade();
    tokio::spawn(async move {
        let extensions: Vec<String> = settings
            .config
            .health
            .notify
            .iter()
            .filter_map(|n| match n {
                Notify::Extension { name } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let any_chat = settings
            .config
            .health
            .notify
            .iter()
            .any(|n| chat_target(&settings, n).is_some());
        if extensions.is_empty() && !any_chat {
            return;
        }
        let client = autogit_drivers::health::client();
        let mut deliveries = tokio::task::JoinSet::new();
        let mut lost = 0;
        while let Some(env) = next(&mut rx, &mut lost).await {
            while deliveries.try_join_next().is_some() {}
            if !env.event.notifies() {
                continue;
            }
            let msg = Arc::new(message(&env.event));
            let kind = env.event.kind();
            let fail = |weak: &crate::bus::WeakBus, label: String, error: String| {
                weak.publish(Event::WebhookFailed {
                    url: label,
                    about: kind.to_owned(),
                    error,
                })
            };
            for n in &settings.config.health.notify {
                match chat_target(&settings, n) {
                    None => {}
                    Some(Err((label, why))) => fail(&weak, label, why),
                    Some(Ok(target)) => {
                        let (client, msg, weak) = (client.clone(), msg.clone(), weak.clone());
                        deliveries.spawn(async move {
                            if let Err(e) = deliver_chat(&client, &target, &msg, retry).await {
                                fail(&weak, target.label(), e);
                            }
                        });
                    }
                }
            }
            let event = serde_json::to_value(&*env).unwrap_or_default();
            for name in &extensions {
                let (settings, msg, weak, event, name) = (
                    settings.clone(),
                    msg.clone(),
                    weak.clone(),
                    event.clone(),
                    name.clone(),
                );
                deliveries.spawn(async move {
                    let sent = async {
                        let registry = crate::extensions::Registry::load(&settings)?;
                        let ext = registry
                            .notify_extension(&name, &settings)
                            .await
                            .map_err(|e| e.to_string())?;
                        let sent = ext.send(&msg, &event).await.map_err(|e| e.to_string());
                        ext.close().await;
                        sent
                    };
                    if let Err(e) = sent.await {
                        fail(&weak, format!("extension {name}"), e);
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
            chat(bus, Arc::new(settings.clone()), Retry::default()),
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
