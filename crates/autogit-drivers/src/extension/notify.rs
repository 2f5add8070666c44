//! A `notify` extension: `notify.send` with one event.

use super::host::{Grant, Limits, Session};
use super::{ExtensionError, Found};
use autogit_core::chat::Message;
use autogit_core::extension::ProviderType;
use serde_json::{Value, json};

/// A started `notify` extension.
#[derive(Debug)]
pub struct ExtensionNotify(Session);

impl ExtensionNotify {
    /// Starts `found` as a `notify` provider (only what it declared reaches it).
    pub async fn start(
        found: &Found,
        grant: &Grant<'_>,
        limits: Limits,
    ) -> Result<Self, ExtensionError> {
        Session::start(found, ProviderType::Notify, grant, limits)
            .await
            .map(Self)
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// `notify.send`: the event's kind, severity, subject and summary, and the whole event as
    /// autogit publishes it (`event`).
    pub async fn send(&self, msg: &Message, event: &Value) -> Result<(), ExtensionError> {
        self.0
            .call(
                "notify.send",
                json!({
                    "kind": msg.kind,
                    "severity": msg.severity,
                    "subject": msg.subject,
                    "summary": msg.summary,
                    "event": event,
                }),
            )
            .await
            .map(drop)
    }

    /// Sends `shutdown` and waits for it to exit.
    pub async fn close(&self) {
        self.0.shutdown().await;
    }
}
