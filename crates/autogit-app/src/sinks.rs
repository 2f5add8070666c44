//! Subscribers of the bus that every shell starts: the structured log (through `tracing`),
//! the state store's event table, and the configured notifiers (signed webhooks). Each runs
//! as its own task and never slows a publisher.

use crate::bus::{Bus, next};
use crate::event::{Envelope, Event};
use autogit_core::config::Notify;
use autogit_core::notify::{Decision, Limiter, Rule};
use autogit_drivers::notify::{Chat, Retry, Webhook, deliver_body, deliver_chat};
use autogit_drivers::smtp::{Email, deliver_email};
use autogit_drivers::state::Store;
use secrecy::{ExposeSecret, SecretString};
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

/// One notifier's filter and rate limiter (`events`, `min_severity`, `rate_limit` of its
/// `health.notify` entry): the decisions are `core::notify`'s, the state and the clock (the
/// event's time) are here. With a key and a [`Limits`] that has a store, the window lives in
/// the state store (`notify_limits`), so a restart does not reset it.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    rule: Rule,
    limiter: Limiter,
    key: Option<String>,
}

impl Gate {
    pub fn new(rule: Rule) -> Gate {
        Gate {
            rule,
            limiter: Limiter::default(),
            key: None,
        }
    }

    /// A gate whose window is kept under `key` (see [`limit_keys`]).
    pub fn keyed(rule: Rule, key: String) -> Gate {
        Gate {
            key: Some(key),
            ..Gate::new(rule)
        }
    }

    /// `Some(suppressed)` when the notifier gets this event (and how many it lost to the rate
    /// limit since its last message); `None` when filtered out or over the limit (counted).
    pub fn pass(&mut self, env: &Envelope, limits: &mut Limits) -> Option<u64> {
        if !self
            .rule
            .admits(env.event.kind(), env.event.severity().as_str())
        {
            return None;
        }
        let decision = match (&self.rule.rate_limit, &self.key) {
            (Some(limit), Some(key)) => limits.decide(key, limit, env.at, &mut self.limiter),
            (limit, _) => self.limiter.decide(limit.as_ref(), env.at),
        };
        match decision {
            Decision::Send { suppressed } => Some(suppressed),
            Decision::Drop => None,
        }
    }
}

/// Where rate-limited gates keep their windows: the state store, opened when first needed
/// (and again after an error); in memory when there is none or it fails (a notifier never
/// stops because the store did: it only forgets its window on the next restart).
#[derive(Debug, Default)]
pub struct Limits {
    db: Option<PathBuf>,
    store: Option<Store>,
    warned: bool,
}

impl Limits {
    /// Windows in the state database at `db`; `None`: in memory only.
    pub fn new(db: Option<PathBuf>) -> Limits {
        Limits {
            db,
            store: None,
            warned: false,
        }
    }

    fn decide(
        &mut self,
        key: &str,
        limit: &autogit_core::notify::RateLimit,
        now: u64,
        memory: &mut Limiter,
    ) -> Decision {
        if let Some(db) = &self.db {
            if self.store.is_none() {
                match Store::open(db) {
                    Ok(s) => self.store = Some(s),
                    Err(e) => self.warn(&e.to_string()),
                }
            }
            if let Some(s) = &self.store {
                match s.with_notify_limit(key, |l| {
                    let d = l.decide(Some(limit), now);
                    *memory = l.clone();
                    d
                }) {
                    Ok(d) => return d,
                    Err(e) => {
                        self.warn(&e.to_string());
                        self.store = None;
                    }
                }
            }
        }
        memory.decide(Some(limit), now)
    }

    fn warn(&mut self, why: &str) {
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(
                "notifier rate limits are kept in memory only (a restart resets them): {why}"
            );
        }
    }
}

/// A stable key for each rate-limit window: a digest of the entry as configured (type,
/// target, filters; names of variables, never their values) and its rule, and which of the
/// identical entries it is. Editing an entry starts it a fresh window; moving it does not.
pub fn limit_keys<'a>(entries: impl Iterator<Item = (String, &'a Rule)>) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut seen = std::collections::HashMap::<String, u32>::new();
    entries
        .map(|(what, rule)| {
            let text = format!(
                "{what}\n{}",
                serde_json::to_string(rule).unwrap_or_default()
            );
            let digest = Sha256::digest(text.as_bytes());
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            let n = seen.entry(hex.clone()).or_default();
            let key = format!("{hex}#{n}");
            *n += 1;
            key
        })
        .collect()
}

/// The webhooks of `health.notify`, with their signing secrets from the settings.
pub fn webhooks(settings: &crate::Settings) -> Vec<Webhook> {
    webhooks_with_rules(settings)
        .into_iter()
        .map(|(w, _)| w)
        .collect()
}

/// The webhooks of `health.notify`, each with its filter and rate limit.
pub fn webhooks_with_rules(settings: &crate::Settings) -> Vec<(Webhook, Rule)> {
    settings
        .config
        .health
        .notify
        .entries()
        .filter_map(|(n, rule)| match n {
            Notify::Webhook { url, secret_env } => Some((
                Webhook {
                    url: url.clone(),
                    secret: secret_env.as_ref().and_then(|k| settings.value(k)),
                },
                rule.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// Sends every event that [`Event::notifies`] to each webhook, signed
/// (`X-Autogit-Signature: sha256=…` over the body, `X-Autogit-Event: <kind>`), each delivery
/// in its own task with retries; a failed delivery is published as `webhook_failed`. The task
/// ends once the bus is closed and every delivery has finished.
pub fn notify(bus: &Bus, hooks: Vec<Webhook>, retry: Retry) -> tokio::task::JoinHandle<()> {
    notify_with(
        bus,
        hooks.into_iter().map(|h| (h, Rule::default())).collect(),
        retry,
    )
}

/// [`notify`], each webhook behind its filter and rate limit; after suppressed events the
/// next body carries `"suppressed": <count>`. The rate-limit windows are in memory: see
/// [`notify_kept`].
pub fn notify_with(
    bus: &Bus,
    hooks: Vec<(Webhook, Rule)>,
    retry: Retry,
) -> tokio::task::JoinHandle<()> {
    notify_kept(bus, hooks, retry, None)
}

/// [`notify_with`], the rate-limit windows kept in the state database `db` (when given), so
/// a restart does not reset them.
pub fn notify_kept(
    bus: &Bus,
    hooks: Vec<(Webhook, Rule)>,
    retry: Retry,
    db: Option<PathBuf>,
) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    let weak = bus.downgrade();
    tokio::spawn(async move {
        if hooks.is_empty() {
            return;
        }
        let keys = limit_keys(hooks.iter().map(|(h, r)| (format!("webhook {}", h.url), r)));
        let mut gates: Vec<Gate> = hooks
            .iter()
            .zip(keys)
            .map(|((_, r), k)| Gate::keyed(r.clone(), k))
            .collect();
        let mut limits = Limits::new(db);
        let client = autogit_drivers::health::client();
        let mut deliveries = tokio::task::JoinSet::new();
        let mut lost = 0;
        while let Some(env) = next(&mut rx, &mut lost).await {
            // Reap what finished, so a long-running daemon does not keep their results.
            while deliveries.try_join_next().is_some() {}
            if !env.event.notifies() {
                continue;
            }
            let Ok(value) = serde_json::to_value(&*env) else {
                continue;
            };
            for ((hook, _), gate) in hooks.iter().zip(&mut gates) {
                let Some(suppressed) = gate.pass(&env, &mut limits) else {
                    continue;
                };
                let mut value = value.clone();
                if suppressed > 0
                    && let Some(o) = value.as_object_mut()
                {
                    o.insert("suppressed".into(), suppressed.into());
                }
                let Ok(body) = serde_json::to_vec(&value) else {
                    continue;
                };
                let (client, hook, weak) = (client.clone(), hook.clone(), weak.clone());
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
    message_after(event, 0)
}

/// [`message`], saying how many events the rate limit suppressed before it
/// (`… (3 more events suppressed by the rate limit)`).
pub fn message_after(event: &Event, suppressed: u64) -> autogit_core::chat::Message {
    let mut summary = event.summary();
    if suppressed > 0 {
        summary = format!(
            "{summary} ({})",
            autogit_core::notify::suppressed_note(suppressed)
        );
    }
    autogit_core::chat::Message {
        kind: event.kind().to_owned(),
        severity: event.severity().as_str().to_owned(),
        subject: event.subject().map(str::to_owned),
        summary,
    }
}

/// A message target of `health.notify` other than a webhook or an extension.
enum Target {
    Chat(Chat),
    Email(Email),
}

impl Target {
    fn label(&self) -> String {
        match self {
            Target::Chat(c) => c.label(),
            Target::Email(e) => e.label(),
        }
    }
}

/// A chat target of `health.notify`, its secrets read now (the variable, or `<NAME>_FILE`);
/// `Err((label, why))` when one is missing. `None` for the other notifier types.
fn chat_target(settings: &crate::Settings, n: &Notify) -> Option<Result<Target, (String, String)>> {
    let secret = |label: String, key: &str| match settings.secret(key) {
        Ok(Some(v)) => Ok(SecretString::from(v)),
        Ok(None) => Err((
            label,
            format!("{key} is not set (in .env, the environment, or {key}_FILE)"),
        )),
        Err(e) => Err((label, e)),
    };
    Some(
        match n {
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
            } => secret(format!("matrix {room} ({token_env})"), token_env).map(|token| {
                Chat::Matrix {
                    homeserver: homeserver.clone(),
                    room: room.clone(),
                    token,
                    label: token_env.clone(),
                }
            }),
            Notify::Email {
                host,
                port,
                tls,
                from,
                to,
                username_env,
                password_env,
                ca_file,
            } => {
                let label = match password_env {
                    Some(p) => format!("email {host}:{port} ({p})"),
                    None => format!("email {host}:{port}"),
                };
                let login = match (username_env, password_env) {
                    (Some(u), Some(p)) => {
                        let user = match secret(label.clone(), u) {
                            Ok(v) => v,
                            Err(e) => return Some(Err(e)),
                        };
                        let password = match secret(label.clone(), p) {
                            Ok(v) => v,
                            Err(e) => return Some(Err(e)),
                        };
                        Some((user.expose_secret().to_owned(), password, p.clone()))
                    }
                    _ => None,
                };
                let ca_pem = match ca_file {
                    Some(f) => match std::fs::read(f) {
                        Ok(b) => Some(b),
                        Err(e) => return Some(Err((label, format!("ca_file {f}: {e}")))),
                    },
                    None => None,
                };
                return Some(Ok(Target::Email(Email {
                    host: host.clone(),
                    port: *port,
                    tls: *tls,
                    from: from.clone(),
                    to: to.clone(),
                    login,
                    ca_pem,
                })));
            }
            Notify::Log | Notify::Webhook { .. } | Notify::Extension { .. } => return None,
        }
        .map(Target::Chat),
    )
}

/// Sends every event that [`Event::notifies`] to the chat services of `health.notify`
/// (`slack`, `discord`, `ntfy`, `matrix`: `drivers::notify::deliver_chat`), its e-mail
/// targets (`email`: `drivers::smtp::deliver_email`) and to its `notify` extensions (`{type: extension, name}`: started for the event, `notify.send`, `shutdown`),
/// each delivery in its own task. A failure is published as `webhook_failed` whose `url` is
/// the target's label (`slack (SLACK_WEBHOOK_URL)`, `extension pager`), never a Slack or
/// Discord URL, which is the secret. Each entry is behind its [`Gate`] (filter, rate limit).
pub fn chat(
    bus: &Bus,
    settings: Arc<crate::Settings>,
    retry: Retry,
) -> tokio::task::JoinHandle<()> {
    let mut rx = bus.subscribe();
    let weak = bus.downgrade();
    tokio::spawn(async move {
        let notify = &settings.config.health.notify;
        // One gate per entry this sink sends to (by its index in health.notify).
        let keys = limit_keys(
            notify
                .entries()
                .map(|(n, rule)| (serde_json::to_string(n).unwrap_or_default(), rule)),
        );
        let mut gates: Vec<Option<Gate>> = notify
            .entries()
            .zip(keys)
            .map(|((n, rule), key)| {
                let mine =
                    matches!(n, Notify::Extension { .. }) || chat_target(&settings, n).is_some();
                mine.then(|| Gate::keyed(rule.clone(), key))
            })
            .collect();
        let mut limits = Limits::new(Some(settings.state_db()));
        if gates.iter().all(Option::is_none) {
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
            let kind = env.event.kind();
            let at = env.at;
            let fail = |weak: &crate::bus::WeakBus, label: String, error: String| {
                weak.publish(Event::WebhookFailed {
                    url: label,
                    about: kind.to_owned(),
                    error,
                })
            };
            let event = serde_json::to_value(&*env).unwrap_or_default();
            for (n, gate) in notify.iter().zip(&mut gates) {
                let Some(gate) = gate else { continue };
                let Some(suppressed) = gate.pass(&env, &mut limits) else {
                    continue;
                };
                let msg = Arc::new(message_after(&env.event, suppressed));
                if let Notify::Extension { name } = n {
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
                    continue;
                }
                match chat_target(&settings, n) {
                    None => {}
                    Some(Err((label, why))) => fail(&weak, label, why),
                    Some(Ok(target)) => {
                        let (client, weak) = (client.clone(), weak.clone());
                        deliveries.spawn(async move {
                            let sent = match &target {
                                Target::Chat(c) => deliver_chat(&client, c, &msg, retry).await,
                                Target::Email(e) => deliver_email(e, &msg, at, retry).await,
                            };
                            if let Err(e) = sent {
                                fail(&weak, target.label(), e);
                            }
                        });
                    }
                }
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
            notify_kept(
                bus,
                webhooks_with_rules(settings),
                Retry::default(),
                Some(settings.state_db()),
            ),
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
