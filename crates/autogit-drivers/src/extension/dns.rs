//! A `dns` extension as a [`DnsProvider`]: `dns.list` and `dns.apply` over its process.

use super::host::{Grant, Limits, Process, start};
use super::{ExtensionError, Found};
use crate::dns::{DnsProvider, DnsProviderError};
use autogit_core::dns::{Change, Record};
use autogit_core::extension::{self as proto, ProviderType};
use serde_json::json;
use tokio::sync::Mutex;

/// A started `dns` extension.
#[derive(Debug)]
pub struct ExtensionDns {
    name: String,
    version: String,
    zone: String,
    atomic: bool,
    process: Mutex<Option<Process>>,
}

impl ExtensionDns {
    /// Starts `found` for `zone` (see [`start`]: only what it declared reaches it).
    pub async fn start(
        found: &Found,
        grant: &Grant<'_>,
        zone: &str,
        default_ttl: u32,
        limits: Limits,
    ) -> Result<Self, ExtensionError> {
        let started = start(
            found,
            ProviderType::Dns,
            grant,
            json!({"zone": zone, "ttl": default_ttl}),
            limits,
        )
        .await?;
        let atomic = started
            .manifest
            .provider(ProviderType::Dns)
            .is_none_or(|p| p.atomic);
        Ok(Self {
            name: started.manifest.name.clone(),
            version: started.manifest.version.clone(),
            zone: zone.to_owned(),
            atomic,
            process: Mutex::new(Some(started.process)),
        })
    }

    async fn call(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, DnsProviderError> {
        let mut guard = self.process.lock().await;
        let Some(p) = guard.as_mut() else {
            return Err(ExtensionError::Dead {
                name: self.name.clone(),
            }
            .into());
        };
        p.call(method, params).await.map_err(|e| match e {
            ExtensionError::Remote { code, message, .. } if code == proto::code::ZONE_CHANGED => {
                DnsProviderError::ZoneChanged {
                    server: format!("extension `{}`", self.name),
                    zone: self.zone.clone(),
                    evidence: message,
                }
            }
            e => e.into(),
        })
    }
}

#[async_trait::async_trait]
impl DnsProvider for ExtensionDns {
    fn describe(&self) -> String {
        format!("extension {} {}", self.name, self.version)
    }

    fn atomic(&self) -> bool {
        self.atomic
    }

    async fn list(&self, names: &[String]) -> Result<Vec<Record>, DnsProviderError> {
        let result = self.call("dns.list", json!({ "names": names })).await?;
        proto::dns_list_result(result).map_err(|reason| {
            ExtensionError::Protocol {
                name: self.name.clone(),
                method: "dns.list".to_owned(),
                reason,
            }
            .into()
        })
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DnsProviderError> {
        self.call("dns.apply", proto::dns_apply_params(changes))
            .await
            .map(drop)
    }

    async fn close(&self) {
        if let Some(p) = self.process.lock().await.take() {
            p.shutdown().await;
        }
    }
}
