//! An `ssl` extension: `ssl.issue` with the names the certificate must cover, answered with a
//! PEM chain (the leaf first) and the leaf's PEM key. The caller checks both before anything is
//! installed (`tls_source::check_pair`); the key never reaches a log or an error.

use super::host::{Grant, Limits, Session};
use super::{ExtensionError, Found};
use autogit_core::extension::ProviderType;
use secrecy::zeroize::Zeroizing;
use serde_json::json;

/// A started `ssl` extension.
#[derive(Debug)]
pub struct ExtensionSsl(Session);

/// What `ssl.issue` answered (not yet checked).
pub struct Issued {
    pub chain: String,
    pub key: Zeroizing<String>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("chain_bytes", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ExtensionSsl {
    /// Starts `found` as an `ssl` provider (only what it declared reaches it).
    pub async fn start(
        found: &Found,
        grant: &Grant<'_>,
        limits: Limits,
    ) -> Result<Self, ExtensionError> {
        Session::start(found, ProviderType::Ssl, grant, limits)
            .await
            .map(Self)
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// `ssl.issue` for `names`: `{"chain": "...", "key": "..."}`.
    pub async fn issue(&self, names: &[String]) -> Result<Issued, ExtensionError> {
        let mut v = self.0.call("ssl.issue", json!({ "names": names })).await?;
        let bad = |reason: &str| ExtensionError::Protocol {
            name: self.name().to_owned(),
            method: "ssl.issue".to_owned(),
            reason: reason.to_owned(),
        };
        let key = match v.get_mut("key").map(serde_json::Value::take) {
            Some(serde_json::Value::String(k)) => Zeroizing::new(k),
            _ => return Err(bad("the answer has no `key` string (the PEM private key)")),
        };
        let chain = match v.get("chain") {
            Some(serde_json::Value::String(c)) => c.clone(),
            _ => return Err(bad("the answer has no `chain` string (PEM certificates)")),
        };
        Ok(Issued { chain, key })
    }

    /// Sends `shutdown` and waits for it to exit.
    pub async fn close(&self) {
        self.0.shutdown().await;
    }
}
