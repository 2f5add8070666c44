//! The TLS controller: the platform's certificate (`*.BASE_DOMAIN` and the apex by DNS-01
//! through the DNS provider of `.env`, or each routed service's name by HTTP-01), from the
//! ACME CA of `ACME_DIRECTORY`; renewal at two thirds of its lifetime (`core::tls`), retried
//! with backoff when it fails while the old certificate keeps serving; the ingress refreshed
//! after a renewal.

use crate::{Bus, Event, Settings, SharedClock};
use autogit_core::platform::DnsProvider as Kind;
use autogit_core::tls::{certificate_names, directory_url, renewal_due, retry_after};
use autogit_drivers::acme::{AcmeSettings, CertInfo, cert_paths, issue, read_cert};
use autogit_drivers::engine::ContainerEngine;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub struct TlsController {
    settings: Arc<Settings>,
    bus: Bus,
    clock: SharedClock,
    /// Failed renewals in a row, and when to try again (the daemon's backoff).
    failures: AtomicU32,
    retry_at: AtomicI64,
}

/// A certificate just issued, and whether the ingress took it.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub info: CertInfo,
    /// Why the ingress was not refreshed (the certificate is on disk all the same).
    pub ingress_error: Option<String>,
}

/// The certificate on disk and whether it is due.
#[derive(Debug, Clone)]
pub struct CertState {
    pub info: CertInfo,
    pub due: bool,
}

impl TlsController {
    pub fn new(settings: Arc<Settings>, bus: Bus, clock: SharedClock) -> Self {
        Self {
            settings,
            bus,
            clock,
            failures: AtomicU32::new(0),
            retry_at: AtomicI64::new(0),
        }
    }

    /// Whether TLS is configured (BASE_DOMAIN and ACME_EMAIL set): what the daemon checks.
    pub fn configured(&self) -> bool {
        self.settings.platform.base_domain.is_some() && self.settings.platform.acme_email.is_some()
    }

    /// The ACME settings and base domain from `.env`, or why TLS is not configured.
    pub fn acme_settings(&self) -> Result<(AcmeSettings, String), String> {
        let p = &self.settings.platform;
        let domain = p
            .base_domain
            .clone()
            .ok_or("BASE_DOMAIN is not set in .env: the certificate is for *.BASE_DOMAIN")?;
        Ok((
            AcmeSettings {
                directory: directory_url(&p.acme_directory).to_owned(),
                email: p.acme_email.clone(),
                ca_root: p.acme_ca_root.as_ref().map(PathBuf::from),
                dir: self.settings.data_dir.join("tls"),
                propagation_timeout: Duration::from_secs(180),
                order_timeout: Duration::from_secs(180),
                ttl: 60,
            },
            domain,
        ))
    }

    /// The names the certificate must cover: `*.BASE_DOMAIN` and the apex by DNS-01, or with
    /// ACME_CHALLENGE=http-01 each routed service's own name (HTTP-01 cannot prove a wildcard).
    pub fn wanted_names(&self, domain: &str) -> Result<Vec<String>, String> {
        if !self.settings.platform.acme_http01 {
            return Ok(certificate_names(domain));
        }
        let plan = crate::plan::quiet(&self.settings)?;
        Ok(plan
            .routed_subdomains()
            .iter()
            .map(|sub| format!("{sub}.{domain}"))
            .collect())
    }

    /// The certificate on disk and whether it is due; `Ok(None)` when there is none yet.
    pub fn current(&self) -> Result<Option<CertState>, String> {
        let (s, domain) = self.acme_settings()?;
        let wanted = self.wanted_names(&domain)?;
        let (chain, key) = cert_paths(&s.dir, &domain);
        let Ok(info) = read_cert(&chain, &key) else {
            return Ok(None);
        };
        let covers = wanted.iter().all(|n| info.names.contains(n));
        let due = renewal_due(
            info.not_before,
            info.not_after,
            self.clock.now() as i64,
            covers,
        );
        Ok(Some(CertState { info, due }))
    }

    /// Renews when due (or `force`); `Ok(None)` when nothing was needed. A new certificate is
    /// published (`certificate_renewed`) and the ingress refreshed; a failure is published
    /// (`certificate_renewal_failed`) with when the daemon tries again.
    #[tracing::instrument(name = "tls.renew", skip_all, fields(force))]
    pub async fn renew(
        &self,
        force: bool,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Option<Renewed>, String> {
        match self.renew_inner(force, progress).await {
            Ok(Some(info)) => {
                self.failures.store(0, Ordering::SeqCst);
                self.retry_at.store(0, Ordering::SeqCst);
                self.bus.publish(Event::CertificateRenewed {
                    names: info.names.clone(),
                    not_after: info.not_after,
                });
                let ingress_error = self.refresh_ingress().await.err();
                if let Some(error) = &ingress_error {
                    self.bus.publish(Event::IngressRefreshFailed {
                        error: error.clone(),
                    });
                }
                Ok(Some(Renewed {
                    info,
                    ingress_error,
                }))
            }
            Ok(None) => {
                self.failures.store(0, Ordering::SeqCst);
                Ok(None)
            }
            Err(error) => {
                let failures = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
                let now = self.clock.now() as i64;
                let not_after = self
                    .current()
                    .ok()
                    .flatten()
                    .map_or(now + 90 * 86_400, |c| c.info.not_after);
                let at = retry_after(failures, now, not_after);
                self.retry_at.store(at, Ordering::SeqCst);
                self.bus.publish(Event::CertificateRenewalFailed {
                    error: error.clone(),
                    failures,
                    retry_at: at,
                });
                Err(error)
            }
        }
    }

    async fn renew_inner(
        &self,
        force: bool,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Option<CertInfo>, String> {
        let (s, domain) = self.acme_settings()?;
        let wanted = self.wanted_names(&domain)?;
        if !force && let Some(CertState { due: false, .. }) = self.current()? {
            return Ok(None);
        }
        let p = &self.settings.platform;
        if p.acme_http01 {
            if self.settings.config.platform.ingress != autogit_core::config::IngressKind::Nginx {
                return Err(
                    "ACME_CHALLENGE=http-01 with the Traefik ingress: Traefik obtains and renews these certificates itself (its `autogit` resolver in rendered/traefik/traefik.yml); autogit issues HTTP-01 certificates only for the nginx ingress"
                        .to_owned(),
                );
            }
            let webroot = self.settings.data_dir.join("rendered/acme-http");
            return autogit_drivers::acme::issue_http01(&s, &domain, &wanted, &webroot, progress)
                .await
                .map(Some)
                .map_err(|e| e.to_string());
        }
        if matches!(p.dns_provider, Kind::Manual | Kind::None) {
            return Err(format!(
                "DNS-01 needs a DNS provider autogit can update; DNS_PROVIDER={} cannot be used for certificates (rfc2136, cloudflare, route53, gcloud and dnsmasq can)",
                autogit_drivers::dns::provider_name(p.dns_provider)
            ));
        }
        let dns = crate::extensions::Registry::load(&self.settings)?
            .dns_provider(&self.settings)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no DNS provider is configured")?;
        let issued = issue(&s, &domain, &dns, progress)
            .await
            .map(Some)
            .map_err(|e| e.to_string());
        dns.close().await;
        issued
    }

    /// After a renewal: render again (the ingress configuration names the new certificate,
    /// and `rendered/tls/` gets its files) and make a running nginx reload; Traefik reloads by
    /// itself when its dynamic file changes.
    pub async fn refresh_ingress(&self) -> Result<(), String> {
        let plan = crate::plan::quiet(&self.settings)?;
        let rendered = self.settings.data_dir.join("rendered");
        crate::plan::write_rendered(&self.settings, &rendered, &plan)?;
        if plan.service("nginx").is_none() {
            return Ok(());
        }
        let engine = autogit_drivers::engine::docker::Docker::connect(
            self.settings.socket(),
            &self.settings.env,
        )
        .await
        .map_err(|e| e.to_string())?;
        let running = engine
            .list(&plan.project)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|o| {
                o.service == "nginx" && o.state == autogit_drivers::engine::RunState::Running
            });
        if let Some(o) = running {
            let (code, out) = engine
                .exec(
                    &o.id,
                    &["nginx".to_owned(), "-s".to_owned(), "reload".to_owned()],
                )
                .await
                .map_err(|e| e.to_string())?;
            if code != 0 {
                return Err(format!("nginx -s reload failed: {}", out.trim()));
            }
        }
        Ok(())
    }

    /// The daemon's pass: renews when due, unless a failure's backoff is still running.
    /// Returns when to look again (unix seconds).
    pub async fn pass(&self) -> i64 {
        let now = self.clock.now() as i64;
        let retry_at = self.retry_at.load(Ordering::SeqCst);
        if now < retry_at {
            return retry_at;
        }
        match self.renew(false, &|_| {}).await {
            Err(_) => self.retry_at.load(Ordering::SeqCst),
            // Checked again within the hour: a due date or a change of names is noticed soon.
            Ok(_) => now + 3600,
        }
    }
}
