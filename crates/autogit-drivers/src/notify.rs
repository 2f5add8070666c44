//! Webhook delivery, signed with HMAC-SHA256 (`X-Autogit-Signature: sha256=<hex>` over the
//! raw body, `X-Autogit-Event: <kind>`), retried with backoff, each try bounded by a timeout
//! (`deliver_body`; the application layer's notify sink calls it for every notifying event).
//! And the runtime's `Notifier`: its state changes go to a bounded channel the application
//! layer forwards to its event bus, so a slow consumer never blocks reconciliation (when the
//! queue is full, the newest change is dropped and counted).

use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde::Serialize;
use sha2::Sha256;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StateChange {
    pub project: String,
    pub service: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
    pub flagged: bool,
}

/// A webhook target. The secret is held only here and never printed (`Debug` hides it).
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Option<String>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable_key());
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn unreachable_key() -> Hmac<Sha256> {
    // new_from_slice never fails for HMAC; keep a defined fallback rather than panicking.
    <Hmac<Sha256> as Mac>::new_from_slice(b"").expect("HMAC accepts an empty key")
}

#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Delivers one state change to one webhook; returns the number of tries used.
pub async fn deliver(
    client: &reqwest::Client,
    hook: &Webhook,
    change: &StateChange,
    retry: Retry,
) -> Result<u32, String> {
    let body = serde_json::to_vec(change).map_err(|e| e.to_string())?;
    deliver_body(client, hook, "state_change", &body, retry).await
}

/// Delivers one JSON body to one webhook, signed, with `X-Autogit-Event: <kind>`; retried with
/// backoff on 408, 429, 5xx and transport errors. Returns the number of tries used.
pub async fn deliver_body(
    client: &reqwest::Client,
    hook: &Webhook,
    kind: &str,
    body: &[u8],
    retry: Retry,
) -> Result<u32, String> {
    let mut delay = retry.first_delay;
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        let mut req = client
            .post(&hook.url)
            .timeout(retry.timeout)
            .header("content-type", "application/json")
            .header("user-agent", concat!("autogit/", env!("CARGO_PKG_VERSION")))
            .header("x-autogit-event", kind);
        if let Some(secret) = &hook.secret {
            req = req.header("x-autogit-signature", sign(secret, body));
        }
        match req.body(body.to_vec()).send().await {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            // 4xx other than 408/429 will not get better by retrying.
            Ok(r) if r.status().is_client_error() && r.status() != 408 && r.status() != 429 => {
                return Err(format!("{} answered {}", hook.url, r.status()));
            }
            Ok(r) => last = format!("{} answered {}", hook.url, r.status()),
            Err(e) => last = format!("{}: {e}", hook.url),
        }
        if attempt < retry.attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
    Err(last)
}

/// A chat service to notify. The URL of a Slack or Discord webhook is its credential: it is
/// held as a secret, never printed (`label` names the variable it came from instead).
#[derive(Clone)]
pub enum Chat {
    Slack {
        url: SecretString,
        label: String,
    },
    Discord {
        url: SecretString,
        label: String,
    },
    /// ntfy's JSON publishing to the server's root URL.
    Ntfy {
        url: String,
        topic: String,
        token: Option<SecretString>,
    },
    /// A Matrix room, as the user of the access token (`label`: its variable).
    Matrix {
        homeserver: String,
        room: String,
        token: SecretString,
        label: String,
    },
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Chat {
    /// How messages name it (never a secret).
    pub fn label(&self) -> String {
        match self {
            Chat::Slack { label, .. } => format!("slack ({label})"),
            Chat::Discord { label, .. } => format!("discord ({label})"),
            Chat::Ntfy { url, topic, .. } => {
                format!("ntfy {}/{topic}", url.trim_end_matches('/'))
            }
            Chat::Matrix { room, label, .. } => format!("matrix {room} ({label})"),
        }
    }
}

/// Posts one event to a chat service in the shape its webhook API documents
/// (`core::chat`), with the retries of [`deliver_body`]. Errors name the service by its
/// label: a reqwest error is stripped of the URL, which for Slack and Discord is the secret.
pub async fn deliver_chat(
    client: &reqwest::Client,
    chat: &Chat,
    msg: &autogit_core::chat::Message,
    retry: Retry,
) -> Result<u32, String> {
    use autogit_core::chat;
    use secrecy::ExposeSecret;
    let (url, body, bearer) = match chat {
        Chat::Slack { url, .. } => (url.expose_secret().to_owned(), chat::slack_body(msg), None),
        Chat::Discord { url, .. } => (
            url.expose_secret().to_owned(),
            chat::discord_body(msg),
            None,
        ),
        Chat::Ntfy { url, topic, token } => (
            format!("{}/", url.trim_end_matches('/')),
            chat::ntfy_body(msg, topic),
            token.as_ref().map(|t| t.expose_secret().to_owned()),
        ),
        // One transaction id for every try: the homeserver sends the message once however
        // often the PUT is repeated (client-server API, transaction identifiers).
        Chat::Matrix {
            homeserver,
            room,
            token,
            ..
        } => {
            let txn: String = crate::auth::random::<16>()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let room =
                percent_encoding::utf8_percent_encode(room, percent_encoding::NON_ALPHANUMERIC);
            (
                format!(
                    "{}/_matrix/client/v3/rooms/{room}/send/m.room.message/autogit-{txn}",
                    homeserver.trim_end_matches('/')
                ),
                chat::matrix_body(msg),
                Some(token.expose_secret().to_owned()),
            )
        }
    };
    let put = matches!(chat, Chat::Matrix { .. });
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let label = chat.label();
    let mut delay = retry.first_delay;
    let mut last = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        let mut req = if put {
            client.put(&url)
        } else {
            client.post(&url)
        }
        .timeout(retry.timeout)
        .header("content-type", "application/json")
        .header("user-agent", concat!("autogit/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &bearer {
            req = req.bearer_auth(t);
        }
        match req.body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => return Ok(attempt),
            Ok(r) if r.status().is_client_error() && r.status() != 408 && r.status() != 429 => {
                return Err(format!("{label} answered {}", r.status()));
            }
            Ok(r) => last = format!("{label} answered {}", r.status()),
            Err(e) => last = format!("{label}: {}", e.without_url()),
        }
        if attempt < retry.attempts {
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
    Err(last)
}

/// The notifier handle the runtime uses: `send` never waits.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: Option<mpsc::Sender<StateChange>>,
    pub dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// A notifier whose changes go to the returned receiver, for a caller that routes them
    /// itself (the application layer's event bus). `send` still never waits: when the
    /// receiver lags by `capacity`, changes are dropped and counted.
    pub fn channel(capacity: usize) -> (Notifier, mpsc::Receiver<StateChange>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Notifier {
                tx: Some(tx),
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// A notifier that drops everything (tests, `--quiet` one-shots).
    pub fn none() -> Notifier {
        Notifier {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn send(&self, change: StateChange) {
        if let Some(tx) = &self.tx
            && tx.try_send(change).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let h = Webhook {
            url: "http://x".into(),
            secret: Some("hunter2".into()),
        };
        assert!(!format!("{h:?}").contains("hunter2"));
    }

    /// A server that fails twice with 503, then accepts; it records the signature it saw.
    #[tokio::test]
    async fn retries_then_delivers_signed() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..3 {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap();
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let status = if i < 2 {
                    "503 Service Unavailable"
                } else {
                    "204 No Content"
                };
                s.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
            }
            seen
        });
        let change = StateChange {
            project: "p".into(),
            service: "web".into(),
            from: Some("HEALTHY".into()),
            to: "FAILED".into(),
            reason: "container stopped".into(),
            at: 1,
            flagged: false,
        };
        let hook = Webhook {
            url,
            secret: Some("s3cret".into()),
        };
        let retry = Retry {
            attempts: 4,
            first_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
        };
        let tries = deliver(&crate::health::client(), &hook, &change, retry)
            .await
            .unwrap();
        assert_eq!(tries, 3);
        let seen = server.await.unwrap();
        let last = seen.last().unwrap();
        let body = serde_json::to_vec(&change).unwrap();
        assert!(
            last.to_ascii_lowercase()
                .contains(&format!("x-autogit-signature: {}", sign("s3cret", &body))),
            "{last}"
        );
        assert!(!last.contains("s3cret"), "the secret itself is never sent");
    }

    /// A webhook that never answers fills the queue; `send` still returns at once and counts
    /// what it had to drop, so a reconcile pass is never held up by notifications.
    #[tokio::test]
    async fn a_stuck_webhook_never_blocks_send() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        // Accept connections and never answer.
        let _server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        // The receiver (the application layer's forwarder) is stuck behind a webhook that
        // never answers: the runtime's `send` must still return at once.
        let (n, mut rx) = Notifier::channel(256);
        let hook = Webhook { url, secret: None };
        let _stuck = tokio::spawn(async move {
            while let Some(change) = rx.recv().await {
                let retry = Retry {
                    attempts: 1,
                    first_delay: Duration::from_secs(1),
                    timeout: Duration::from_secs(60),
                };
                let _ = deliver(&crate::health::client(), &hook, &change, retry).await;
            }
        });
        let change = StateChange {
            project: "p".into(),
            service: "s".into(),
            from: None,
            to: "HEALTHY".into(),
            reason: "r".into(),
            at: 1,
            flagged: false,
        };
        for _ in 0..2000 {
            n.send(change.clone());
        }
        assert!(
            n.dropped.load(Ordering::Relaxed) > 0,
            "a full queue drops instead of waiting"
        );
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_dead_hosts_give_up() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        });
        let change = StateChange {
            project: "p".into(),
            service: "s".into(),
            from: None,
            to: "HEALTHY".into(),
            reason: "r".into(),
            at: 1,
            flagged: false,
        };
        let retry = Retry {
            attempts: 3,
            first_delay: Duration::from_millis(5),
            timeout: Duration::from_millis(500),
        };
        let e = deliver(
            &crate::health::client(),
            &Webhook { url, secret: None },
            &change,
            retry,
        )
        .await
        .unwrap_err();
        assert!(e.contains("404"));
        let e = deliver(
            &crate::health::client(),
            &Webhook {
                url: "http://127.0.0.1:1/x".into(),
                secret: None,
            },
            &change,
            retry,
        )
        .await
        .unwrap_err();
        assert!(!e.is_empty());
    }
}
