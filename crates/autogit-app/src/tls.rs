//! The TLS controller: the platform's certificate (`*.BASE_DOMAIN` and the apex by DNS-01
//! through the DNS provider of `.env`, or each routed service's name by HTTP-01), from the
//! ACME CA of `ACME_DIRECTORY`; renewal at two thirds of its lifetime (`core::tls`), retried
//! with backoff when it fails while the old certificate keeps serving; the ingress refreshed
//! after a renewal.
//!
//! `TLS_SOURCE` picks where the certificate comes from: `acme` (the above), `internal`
//! (autogit's own CA, [`autogit_drivers::tls_source`]; its key sealed in the secret store as
//! `tls-internal-ca-key`, its certificate at `<data>/tls/internal-ca.pem`) or `file`
//! (`TLS_CERT_FILE` and `TLS_KEY_FILE`, checked and copied in whenever they change). Every
//! source stores at the same paths, so the rest (ingress, status, diagnose, the daemon) is one.

use crate::{Bus, Event, Settings, SharedClock};
use autogit_core::platform::{DnsProvider as Kind, TlsSource};
use autogit_core::tls::{
    INTERNAL_CA_FILE, INTERNAL_CA_KEY_SECRET, certificate_names, directory_url, file_validity,
    first_uncovered, internal_ca_stale, renewal_due, retry_after,
};
use autogit_drivers::acme::{AcmeSettings, CertInfo, cert_paths, issue, read_cert};
use autogit_drivers::secrets::{ExposeSecret, SecretString};
use autogit_drivers::tls_source;
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
    /// The last `certificate_expiring` published: (the certificate's `not_after`, days left).
    /// One event a day for one certificate, however often the pass runs.
    expiring_told: std::sync::Mutex<Option<(i64, i64)>>,
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
            expiring_told: std::sync::Mutex::new(None),
        }
    }

    /// Where the certificate comes from (`TLS_SOURCE`).
    pub fn source(&self) -> TlsSource {
        self.settings.platform.tls_source
    }

    /// Whether TLS is configured (BASE_DOMAIN, and ACME_EMAIL for an ACME certificate): what
    /// the daemon checks.
    pub fn configured(&self) -> bool {
        let p = &self.settings.platform;
        p.base_domain.is_some() && (p.tls_source != TlsSource::Acme || p.acme_email.is_some())
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
    /// (`TLS_SOURCE=internal` and `file` always want the wildcard and the apex.)
    pub fn wanted_names(&self, domain: &str) -> Result<Vec<String>, String> {
        let p = &self.settings.platform;
        if !p.acme_http01 || p.tls_source != TlsSource::Acme {
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
        let now = self.clock.now() as i64;
        let due = if self.settings.platform.tls_source == TlsSource::File {
            // A user-supplied certificate is "due" when it must be replaced soon.
            first_uncovered(&info.names, &wanted).is_some()
                || file_validity(info.not_before, info.not_after, now) != Ok(None)
        } else {
            let covers = wanted.iter().all(|n| info.names.contains(n));
            renewal_due(info.not_before, info.not_after, now, covers)
        };
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
        let p = &self.settings.platform;
        if p.tls_source == TlsSource::File {
            return self.install_file(&s.dir, &domain, &wanted, force, progress);
        }
        if !force && let Some(CertState { due: false, .. }) = self.current()? {
            return Ok(None);
        }
        if p.tls_source == TlsSource::Internal {
            return self.issue_internal(&s.dir, &domain, &wanted, progress);
        }
        if p.tls_source == TlsSource::Extension {
            return self
                .issue_extension(&s.dir, &domain, &wanted, progress)
                .await;
        }
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

    /// The internal CA's certificate PEM, made first when there is none (or it is for another
    /// BASE_DOMAIN, or too close to its end to sign a certificate): its key is sealed in the
    /// secret store, its certificate written to `<data>/tls/internal-ca.pem`.
    pub fn internal_ca(&self) -> Result<String, String> {
        let (s, domain) = self.acme_settings()?;
        self.ensure_ca(&s.dir, &domain, &|_| {}).map(|(pem, _)| pem)
    }

    fn ensure_ca(
        &self,
        dir: &std::path::Path,
        domain: &str,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(String, SecretString), String> {
        let store = crate::secrets::store(&self.settings)?;
        let path = dir.join(INTERNAL_CA_FILE);
        let now = self.clock.now() as i64;
        let key = store
            .get(INTERNAL_CA_KEY_SECRET)
            .map_err(|e| e.to_string())?;
        if let (Some(key), Ok(pem)) = (&key, std::fs::read_to_string(&path))
            && let Ok(facts) = tls_source::ca_facts(&pem)
            && !internal_ca_stale(&facts.common_name, facts.not_after, domain, now)
            && tls_source::ca_key_matches(&pem, key.expose_secret())
        {
            return Ok((pem, key.clone()));
        }
        progress(&format!(
            "making the internal CA for {domain} (clients must trust {}: `autogit tls ca`)",
            path.display()
        ));
        let (pem, key) = tls_source::new_ca(domain, now)?;
        let key = SecretString::from(key.as_str().to_owned());
        // The key first: a CA certificate on disk always has its key in the store.
        store
            .put(INTERNAL_CA_KEY_SECRET, &key)
            .map_err(|e| e.to_string())?;
        autogit_drivers::fsx::ensure_private_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        autogit_drivers::fsx::write_atomic(&path, pem.as_bytes(), 0o644)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(path = %path.display(), "made the internal CA");
        Ok((pem, key))
    }

    fn issue_internal(
        &self,
        dir: &std::path::Path,
        domain: &str,
        wanted: &[String],
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Option<CertInfo>, String> {
        let (ca, ca_key) = self.ensure_ca(dir, domain, progress)?;
        let now = self.clock.now() as i64;
        let (chain, key) = tls_source::issue_leaf(&ca, ca_key.expose_secret(), wanted, now)?;
        progress(&format!(
            "issued {} from the internal CA",
            wanted.join(", ")
        ));
        install_pair(dir, domain, wanted, key.as_str(), &chain)
    }

    /// TLS_SOURCE=extension:NAME: `ssl.issue` with the names; the answer is checked like a
    /// user-supplied pair (the key is the leaf's, every name covered, valid now) before it is
    /// installed, so a wrong answer leaves the served certificate as it was.
    async fn issue_extension(
        &self,
        dir: &std::path::Path,
        domain: &str,
        wanted: &[String],
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Option<CertInfo>, String> {
        let name = self
            .settings
            .platform
            .tls_extension
            .clone()
            .ok_or("TLS_SOURCE=extension needs an extension name (extension:<name>)")?;
        let ext = crate::extensions::Registry::load(&self.settings)?
            .ssl_extension(&name, &self.settings)
            .await
            .map_err(|e| e.to_string())?;
        progress(&format!(
            "asking extension `{name}` for {}",
            wanted.join(", ")
        ));
        let issued = ext.issue(wanted).await;
        ext.close().await;
        let issued = issued.map_err(|e| e.to_string())?;
        let checked = tls_source::check_pair(
            issued.chain,
            issued.key,
            &format!("the chain from extension `{name}`"),
            &format!("the key from extension `{name}`"),
            wanted,
            self.clock.now() as i64,
        )?;
        install_pair(dir, domain, wanted, checked.key.as_str(), &checked.chain)
    }

    /// TLS_SOURCE=file: checks TLS_CERT_FILE and TLS_KEY_FILE and copies them in when they
    /// differ from what is served (or `force`); `Ok(None)` when they are already served. A
    /// refused pair leaves the served one as it was. Within the warning period it publishes
    /// `certificate_expiring` (once per certificate and day left): autogit cannot renew it.
    fn install_file(
        &self,
        dir: &std::path::Path,
        domain: &str,
        wanted: &[String],
        force: bool,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Option<CertInfo>, String> {
        let p = &self.settings.platform;
        let (Some(cert_file), Some(key_file)) = (&p.tls_cert_file, &p.tls_key_file) else {
            return Err("TLS_SOURCE=file needs TLS_CERT_FILE and TLS_KEY_FILE in .env".to_owned());
        };
        let now = self.clock.now() as i64;
        let supplied = tls_source::check_supplied(
            std::path::Path::new(cert_file),
            std::path::Path::new(key_file),
            wanted,
            now,
        )?;
        if let Some(days) = supplied.expires_soon {
            let warning = format!(
                "warning: TLS_CERT_FILE {cert_file} expires in {days} day(s): replace it (and TLS_KEY_FILE); the next `tls renew` or the daemon's pass installs the new pair"
            );
            tracing::warn!("{warning}");
            progress(&warning);
            let told = (supplied.not_after, days);
            let mut last = self.expiring_told.lock().unwrap_or_else(|e| e.into_inner());
            if *last != Some(told) {
                *last = Some(told);
                self.bus.publish(Event::CertificateExpiring {
                    names: supplied.names.clone(),
                    not_after: supplied.not_after,
                    days_left: days,
                    source: "file".to_owned(),
                    file: cert_file.clone(),
                });
            }
        }
        let (chain_path, key_path) = cert_paths(dir, domain);
        let same = std::fs::read(&chain_path).is_ok_and(|c| c == supplied.chain.as_bytes())
            && std::fs::read(&key_path).is_ok_and(|k| {
                secrecy::zeroize::Zeroizing::new(k).as_slice() == supplied.key.as_bytes()
            });
        if same && !force {
            return Ok(None);
        }
        progress(&format!(
            "installing {cert_file} (names {})",
            supplied.names.join(", ")
        ));
        install_pair(dir, domain, wanted, supplied.key.as_str(), &supplied.chain)
    }

    /// After a renewal: render again (the ingress configuration names the new certificate,
    /// and `rendered/tls/` gets its files) and make a running nginx reload; Traefik reloads by
    /// itself when its dynamic file changes.
    pub async fn refresh_ingress(&self) -> Result<(), String> {
        let plan = crate::plan::quiet(&self.settings)?;
        let rendered = self.settings.data_dir.join("rendered");
        crate::plan::write_rendered(&self.settings, &rendered, &plan)?;
        crate::platform::reload_nginx(&self.settings, &plan).await?;
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

/// A checked pair installed as the served certificate (`acme::store`: private directory,
/// atomic writes), for the internal CA, an `ssl` extension and a user-supplied pair alike.
fn install_pair(
    dir: &std::path::Path,
    domain: &str,
    wanted: &[String],
    key: &str,
    chain: &str,
) -> Result<Option<CertInfo>, String> {
    autogit_drivers::acme::store(dir, domain, wanted, key.to_owned(), chain)
        .map(Some)
        .map_err(|e| e.to_string())
}
