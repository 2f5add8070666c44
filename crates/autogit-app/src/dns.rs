//! The DNS controller: the records the platform needs (`core::dns`), the zone as the
//! provider of `DNS_PROVIDER` lists it (the provider registry, `crate::extensions`: a
//! built-in or an extension), the diff, and applying it. `autogit dns plan`/`dns sync` and the daemon's periodic sync call it.

use crate::{Bus, Event, Settings};
use autogit_core::dns::{Change, DnsPlan, DnsTarget, Record, RecordType, dns_plan};
use autogit_core::plan::Plan;
use autogit_core::platform::DnsProvider as Kind;
use autogit_drivers::dns::{DnsProvider, DnsProviderError, provider_name};
use std::sync::Arc;

/// Reads and updates of a sync when the zone keeps changing in between.
pub const SYNC_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The platform's DNS settings are missing or wrong (exit 3 in the CLI).
    #[error("{0}")]
    Config(String),
    /// DNS_PROVIDER=manual: autogit does not change DNS.
    #[error(
        "DNS_PROVIDER=manual: autogit does not change DNS; create the records `autogit dns plan` lists, or set DNS_PROVIDER to rfc2136, cloudflare, route53, gcloud or dnsmasq"
    )]
    Manual,
    /// A record asked for through the API is wrong (`field`: name, type, value, ttl).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// No such record among those added through the API.
    #[error("{0}")]
    NotFound(String),
    /// The provider failed; the text says whether anything was applied.
    #[error("{0}")]
    Provider(String),
}

/// What the zone holds against what the platform needs.
#[derive(Debug, Clone)]
pub struct DnsView {
    /// `DNS_PROVIDER` as spelled there.
    pub provider: String,
    /// The provider in words (`rfc2136 127.0.0.1:53`), or what `manual` means.
    pub target: String,
    pub zone: Option<String>,
    pub desired: Vec<Record>,
    pub plan: DnsPlan,
}

/// A record added through the API, as `<data>/dns/records.json` keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct ExtraRecord {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    value: String,
    ttl: u32,
}

/// The result of a sync: what was applied (possibly nothing) and what was left alone.
#[derive(Debug, Clone)]
pub struct Synced {
    pub view: DnsView,
    /// The zone changed under the sync and it read it again this many times.
    pub rereads: u32,
    /// What a person must still do (dnsmasq without a reload command).
    pub hint: Option<String>,
}

/// A resolver's answer about a zone's DNSSEC, or why there is none.
pub type DnssecAnswer = Result<autogit_drivers::dns::resolve::ZoneDnssec, String>;

#[derive(Debug)]
pub struct DnsController {
    settings: Arc<Settings>,
    bus: Bus,
}

impl DnsController {
    pub fn new(settings: Arc<Settings>, bus: Bus) -> Self {
        Self { settings, bus }
    }

    /// Whether the zone is DNSSEC-signed, as a resolver reports it: `RFC2136_SERVER` with
    /// `DNS_PROVIDER=rfc2136`, else the system's (`/etc/resolv.conf`). The zone, the resolver
    /// in words, and its answer.
    pub async fn dnssec(&self, timeout: std::time::Duration) -> (String, String, DnssecAnswer) {
        let p = &self.settings.platform;
        let zone = autogit_drivers::dns::factory::zone_of(p).unwrap_or_default();
        let server = if p.dns_provider == Kind::Rfc2136 {
            self.settings
                .setting("RFC2136_SERVER")
                .map(|s| (s.clone(), format!("{s} (RFC2136_SERVER)")))
        } else {
            autogit_drivers::dns::resolve::system_nameserver()
                .map(|s| (s.clone(), format!("{s} (system resolver)")))
        };
        let Some((server, resolver)) = server else {
            return (
                zone,
                "no resolver".to_owned(),
                Err("no resolver to ask (no nameserver in /etc/resolv.conf)".to_owned()),
            );
        };
        let r = autogit_drivers::dns::resolve::zone_dnssec(&server, &zone, timeout).await;
        (zone, resolver, r)
    }

    /// Whether autogit manages records here (a base domain and a provider it can update):
    /// what the daemon checks before syncing periodically.
    pub fn manages_records(&self) -> bool {
        self.settings.platform.base_domain.is_some()
            && !matches!(
                self.settings.platform.dns_provider,
                Kind::None | Kind::Manual
            )
    }

    fn desired(&self, plan: &Plan) -> Result<Vec<Record>, DnsError> {
        let p = &self.settings.platform;
        if p.dns_provider == Kind::None {
            return Err(DnsError::Config(format!(
                "DNS_PROVIDER is not set (or `none`): autogit manages no DNS records; set DNS_PROVIDER in .env to one of: {}",
                autogit_drivers::dns::factory::WORKING
            )));
        }
        let target = self.target(plan)?;
        Ok(autogit_core::dns::desired_records_with(
            &target,
            &plan.project,
            &self.extra_records()?,
        ))
    }

    fn target(&self, plan: &Plan) -> Result<DnsTarget, DnsError> {
        let p = &self.settings.platform;
        DnsTarget::from_plan(plan, p, p.dns_ttl).map_err(|e| DnsError::Config(e.to_string()))
    }

    /// The records autogit wants in the zone: the platform's, those added through the API,
    /// and their ownership records.
    pub fn desired_records(&self, plan: &Plan) -> Result<Vec<Record>, DnsError> {
        self.desired(plan)
    }

    /// Where records added through the API are kept (`<data>/dns/records.json`).
    fn extra_path(&self) -> std::path::PathBuf {
        self.settings.data_dir.join("dns").join("records.json")
    }

    /// Records added through the API.
    pub fn extra_records(&self) -> Result<Vec<Record>, DnsError> {
        let path = self.extra_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(DnsError::Config(format!("{}: {e}", path.display()))),
        };
        let rows: Vec<ExtraRecord> = serde_json::from_str(&text)
            .map_err(|e| DnsError::Config(format!("{}: {e}", path.display())))?;
        Ok(rows
            .into_iter()
            .map(|r| Record::new(&r.name, RecordType::from_name(&r.kind), r.value, r.ttl))
            .collect())
    }

    fn write_extra(&self, records: &[Record]) -> Result<(), DnsError> {
        let rows: Vec<ExtraRecord> = records
            .iter()
            .map(|r| ExtraRecord {
                name: r.name.clone(),
                kind: r.kind.as_str().to_owned(),
                value: r.value.clone(),
                ttl: r.ttl,
            })
            .collect();
        let path = self.extra_path();
        let dir = path.parent().expect("the records file is in a directory");
        autogit_drivers::fsx::create_private_dir(dir)
            .map_err(|e| DnsError::Config(format!("{}: {e}", dir.display())))?;
        let json = serde_json::to_vec_pretty(&rows).expect("records serialize");
        autogit_drivers::fsx::write_atomic(&path, &json, 0o600)
            .map_err(|e| DnsError::Config(e.to_string()))
    }

    /// Adds a record (checked by `core::dns::check_extra`), then syncs the zone. On a failed
    /// sync the record stays wanted: the next sync (the daemon's, or another call) applies it.
    #[tracing::instrument(name = "dns.add_record", skip_all, fields(provider = %self.name()))]
    pub async fn add_record(
        &self,
        plan: &Plan,
        name: &str,
        kind: &str,
        value: &str,
        ttl: u32,
    ) -> Result<Record, DnsError> {
        if self.changes_nothing() {
            return Err(DnsError::Manual);
        }
        let target = self.target(plan)?;
        let record = autogit_core::dns::check_extra(&target, name, kind, value, ttl)
            .map_err(|(field, message)| DnsError::Invalid { field, message })?;
        let mut extra = self.extra_records()?;
        extra.retain(|r| {
            !(r.name == record.name && r.kind == record.kind && r.value == record.value)
        });
        extra.push(record.clone());
        self.write_extra(&extra)?;
        self.sync(plan).await?;
        Ok(record)
    }

    /// Removes a record added through the API (every value of that name and type), then syncs.
    #[tracing::instrument(name = "dns.remove_record", skip_all, fields(provider = %self.name()))]
    pub async fn remove_record(
        &self,
        plan: &Plan,
        name: &str,
        kind: &str,
    ) -> Result<Vec<Record>, DnsError> {
        if self.changes_nothing() {
            return Err(DnsError::Manual);
        }
        let name = autogit_core::dns::canonical_name(name);
        let kind = RecordType::from_name(kind);
        let mut extra = self.extra_records()?;
        let (gone, kept): (Vec<Record>, Vec<Record>) = extra
            .drain(..)
            .partition(|r| r.name == name && r.kind == kind);
        if gone.is_empty() {
            return Err(DnsError::NotFound(format!(
                "no {kind} record `{name}` was added through the API; the platform's own records follow its services"
            )));
        }
        self.write_extra(&kept)?;
        self.sync(plan).await?;
        Ok(gone)
    }

    /// `manual` (or `none`): autogit changes no records.
    fn changes_nothing(&self) -> bool {
        matches!(
            self.settings.platform.dns_provider,
            Kind::None | Kind::Manual
        )
    }

    /// The provider `DNS_PROVIDER` names, from the registry (a built-in, or an extension of
    /// that name); `None` for `manual` and `none`.
    async fn provider(&self) -> Result<Option<Box<dyn DnsProvider>>, DnsError> {
        if self.changes_nothing() {
            return Ok(None);
        }
        let registry =
            crate::extensions::Registry::load(&self.settings).map_err(DnsError::Config)?;
        Ok(registry
            .dns_provider(&self.settings)
            .await?
            .map(|p| Box::new(autogit_drivers::dns::Traced(p)) as Box<dyn DnsProvider>))
    }

    fn name(&self) -> String {
        let p = &self.settings.platform;
        match (&p.dns_provider, &p.dns_extension) {
            (Kind::Extension, Some(name)) => name.clone(),
            (kind, _) => provider_name(*kind),
        }
    }

    /// The plan against the zone; for `manual`, the records to create by hand.
    #[tracing::instrument(name = "dns.plan", skip_all, fields(provider = %self.name()))]
    pub async fn plan(&self, plan: &Plan) -> Result<DnsView, DnsError> {
        let desired = self.desired(plan)?;
        let zone = autogit_drivers::dns::zone_of(&self.settings.platform);
        match self.provider().await? {
            None => Ok(DnsView {
                provider: self.name(),
                target:
                    "manual: create these records at your DNS host (autogit cannot read the zone)"
                        .to_owned(),
                zone,
                plan: dns_plan(&desired, &[], &plan.project),
                desired,
            }),
            Some(p) => {
                let observed = p.list(&[]).await;
                p.close().await;
                let observed = observed.map_err(|e| DnsError::Provider(e.to_string()))?;
                Ok(DnsView {
                    provider: self.name(),
                    target: p.describe(),
                    zone,
                    plan: dns_plan(&desired, &observed, &plan.project),
                    desired,
                })
            }
        }
    }

    /// Applies the plan: only records autogit owns change; a zone changed by someone else in
    /// between is read again (up to [`SYNC_ATTEMPTS`]); what was applied is read back. Every
    /// outcome is published (`dns_synced` or `dns_sync_failed`).
    #[tracing::instrument(name = "dns.sync", skip_all, fields(provider = %self.name()))]
    pub async fn sync(&self, plan: &Plan) -> Result<Synced, DnsError> {
        let result = self.sync_inner(plan).await;
        match &result {
            Ok(s) => {
                let n =
                    |f: fn(&Change) -> bool| s.view.plan.changes.iter().filter(|c| f(c)).count();
                self.bus.publish(Event::DnsSynced {
                    provider: self.name(),
                    created: n(|c| matches!(c, Change::Create { .. })),
                    updated: n(|c| matches!(c, Change::Update { .. })),
                    deleted: n(|c| matches!(c, Change::Delete { .. })),
                    conflicts: s.view.plan.conflicts.len(),
                });
            }
            Err(e) => self.bus.publish(Event::DnsSyncFailed {
                provider: self.name(),
                error: e.to_string(),
            }),
        }
        result
    }

    async fn sync_inner(&self, plan: &Plan) -> Result<Synced, DnsError> {
        let desired = self.desired(plan)?;
        let Some(p) = self.provider().await? else {
            return Err(DnsError::Manual);
        };
        let result = self.sync_with(&p, plan, desired).await;
        p.close().await;
        result
    }

    async fn sync_with(
        &self,
        p: &dyn DnsProvider,
        plan: &Plan,
        desired: Vec<Record>,
    ) -> Result<Synced, DnsError> {
        let project = &plan.project;
        let observe = || async {
            p.list(&[])
                .await
                .map(|observed| dns_plan(&desired, &observed, project))
                .map_err(|e| DnsError::Provider(e.to_string()))
        };
        let mut attempt = 0;
        let applied = loop {
            attempt += 1;
            let dplan = observe().await?;
            if dplan.changes.is_empty() {
                break dplan;
            }
            match p.apply(&dplan.changes).await {
                Ok(()) => break dplan,
                // Someone else changed the zone after we read it: read and plan again.
                Err(DnsProviderError::ZoneChanged { .. }) if attempt < SYNC_ATTEMPTS => {}
                Err(e) => {
                    // An error answer from an atomic backend means it applied nothing (one
                    // update, all or nothing); without an answer nobody knows; a backend that
                    // takes one request per change applied those before the error.
                    let outcome = if e.outcome_unknown() {
                        "; the update may or may not have been applied: run `autogit dns plan` to see"
                    } else if matches!(e, DnsProviderError::ZoneChanged { .. }) {
                        ""
                    } else if !p.atomic() {
                        "; changes before the failing one were applied: run `autogit dns plan` to see what is left"
                    } else {
                        "; nothing was applied"
                    };
                    return Err(DnsError::Provider(format!("{e}{outcome}")));
                }
            }
        };
        if !applied.changes.is_empty() {
            // Read back: what was applied must be what the zone now holds.
            match observe().await {
                Ok(after) if after.changes.is_empty() => {}
                Ok(after) => {
                    return Err(DnsError::Provider(format!(
                        "{} accepted the update but the zone still differs; still to do:\n{after}",
                        p.describe(),
                    )));
                }
                Err(e) => {
                    return Err(DnsError::Provider(format!(
                        "the update was sent, but reading the zone back failed: {e}"
                    )));
                }
            }
        }
        let hint = (!applied.changes.is_empty())
            .then(|| p.after_sync_hint())
            .flatten();
        Ok(Synced {
            view: DnsView {
                provider: self.name(),
                target: p.describe(),
                zone: autogit_drivers::dns::zone_of(&self.settings.platform),
                desired,
                plan: applied,
            },
            rereads: attempt - 1,
            hint,
        })
    }
}
