//! A `notify` extension: `notify.send` with one event.

use super::host::{Grant, Limits, Process, start};
use super::{ExtensionError, Found};
use autogit_core::chat::Message;
use autogit_core::extension::ProviderType;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// A started `notify` extension.
#[derive(Debug)]
pub struct ExtensionNotify {
    name: String,
    process: Mutex<Option<Process>>,
}

impl ExtensionNotify {
    /// Starts `found` as a `notify` provider (only what it declared reaches it).
    pub async fn start(
        found: &Found,
        grant: &Grant<'_>,
        limits: Limits,
    ) -> Result<Self, ExtensionError> {
        let started = start(found, ProviderType::Notify, grant, json!({}), limits).await?;
        Ok(Self {
            name: started.manifest.name.clone(),
            process: Mutex::new(Some(started.process)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `notify.send`: the event's kind, severity, subject and summary, and the whole event as
    /// autogit publishes it (`event`).
    pub async fn send(&self, msg: &Message, event: &Value) -> Result<(), ExtensionError> {
        let mut guard = self.process.lock().await;
        let Some(p) = guard.as_mut() else {
            return Err(ExtensionError::Dead {
                name: self.name.clone(),
            });
        };
        p.call(
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
        if let Some(p) = self.process.lock().await.take() {
            p.shutdown().await;
        }
    }
}
