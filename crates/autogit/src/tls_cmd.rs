//! `autogit tls status` and `autogit tls renew`: the platform's wildcard certificate
//! (`*.BASE_DOMAIN` and the apex) from the ACME CA of `ACME_DIRECTORY`, by DNS-01 through the
//! DNS provider of `.env` (any but `manual`); the daemon renews it at two thirds of its lifetime
//! ([`renew_if_due`]). The work is in `autogit_drivers::acme`.

use crate::cli::Global;
use crate::ctx::{Loaded, data_dir, load_all};
use crate::exit;
use crate::ui::{Ui, fail};
use autogit_core::platform::DnsProvider as Kind;
use autogit_core::tls::{certificate_names, directory_url, renewal_due};
use autogit_drivers::acme::{AcmeSettings, CertInfo, cert_paths, issue, read_cert};
use autogit_drivers::dns::DnsProvider;
use clap::Subcommand;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Subcommand, Debug)]
pub enum TlsCommand {
    /// The certificate: names, validity, whether renewal is due
    Status,
    /// Get a certificate, or renew it when two thirds of its lifetime have passed
    Renew {
        /// Renew even when not due
        #[arg(long)]
        force: bool,
    },
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The ACME settings and base domain from `.env`, or why TLS is not configured.
pub fn settings(g: &Global, loaded: &Loaded) -> Result<(AcmeSettings, String), String> {
    let p = &loaded.platform;
    let domain = p
        .base_domain
        .clone()
        .ok_or("BASE_DOMAIN is not set in .env: the certificate is for *.BASE_DOMAIN")?;
    Ok((
        AcmeSettings {
            directory: directory_url(&p.acme_directory).to_owned(),
            email: p.acme_email.clone(),
            ca_root: p.acme_ca_root.as_ref().map(PathBuf::from),
            dir: data_dir(g).join("tls"),
            propagation_timeout: Duration::from_secs(180),
            order_timeout: Duration::from_secs(180),
            ttl: 60,
        },
        domain,
    ))
}

/// The certificate on disk and whether it is due, or `None` when there is none yet.
pub fn current(s: &AcmeSettings, domain: &str, wanted: &[String]) -> Option<(CertInfo, bool)> {
    let (chain, key) = cert_paths(&s.dir, domain);
    let info = read_cert(&chain, &key).ok()?;
    let covers = wanted.iter().all(|n| info.names.contains(n));
    let due = renewal_due(info.not_before, info.not_after, now(), covers);
    Some((info, due))
}

/// The names the certificate must cover: `*.BASE_DOMAIN` and the apex by DNS-01, or with
/// ACME_CHALLENGE=http-01 each routed service's own name (HTTP-01 cannot prove a wildcard).
pub fn wanted_names(g: &Global, loaded: &Loaded, domain: &str) -> Result<Vec<String>, String> {
    if !loaded.platform.acme_http01 {
        return Ok(certificate_names(domain));
    }
    let plan = quiet_plan(g, loaded)?;
    let mut names: Vec<String> = plan
        .local()
        .filter_map(|s| s.subdomain.as_ref().map(|sub| format!("{sub}.{domain}")))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The plan without printing diagnostics (the daemon and `tls` only need its facts).
fn quiet_plan(g: &Global, loaded: &Loaded) -> Result<autogit_core::plan::Plan, String> {
    let quiet = Ui {
        json: false,
        verbose: 0,
        quiet: true,
        color: false,
    };
    crate::commands::make_plan(&quiet, g, loaded)
        .ok_or_else(|| "the configuration has errors; run `autogit validate`".to_owned())
}

/// Renews when due (or `force`); `Ok(None)` when nothing was needed.
pub async fn renew_if_due(
    g: &Global,
    loaded: &Loaded,
    force: bool,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Option<CertInfo>, String> {
    let (s, domain) = settings(g, loaded)?;
    let wanted = wanted_names(g, loaded, &domain)?;
    if !force && let Some((_, false)) = current(&s, &domain, &wanted) {
        return Ok(None);
    }
    if loaded.platform.acme_http01 {
        if loaded.config.platform.ingress != autogit_core::config::IngressKind::Nginx {
            return Err(
                "ACME_CHALLENGE=http-01 with the Traefik ingress: Traefik obtains and renews these certificates itself (its `autogit` resolver in rendered/traefik/traefik.yml); autogit issues HTTP-01 certificates only for the nginx ingress"
                    .to_owned(),
            );
        }
        let webroot = data_dir(g).join("rendered/acme-http");
        return autogit_drivers::acme::issue_http01(&s, &domain, &wanted, &webroot, progress)
            .await
            .map(Some)
            .map_err(|e| e.to_string());
    }
    use crate::dns_cmd as dns;
    let d = domain.as_str();
    match loaded.platform.dns_provider {
        Kind::Rfc2136 => issue_via(&s, d, dns::rfc2136(loaded, d)?, progress).await,
        Kind::Cloudflare => issue_via(&s, d, dns::cloudflare(loaded, d)?, progress).await,
        Kind::Route53 => issue_via(&s, d, dns::route53(loaded, d)?, progress).await,
        Kind::Gcloud => issue_via(&s, d, dns::gcloud(loaded, d)?, progress).await,
        Kind::Dnsmasq => issue_via(&s, d, dns::dnsmasq(loaded)?, progress).await,
        other @ (Kind::Manual | Kind::None) => Err(format!(
            "DNS-01 needs a DNS provider autogit can update; DNS_PROVIDER={} cannot be used for certificates (rfc2136, cloudflare, route53, gcloud and dnsmasq can)",
            serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )),
    }
}

/// After a renewal: render again (the ingress configuration names the new certificate, and
/// `rendered/tls/` gets its files) and make a running nginx reload; Traefik reloads by itself
/// when its dynamic file changes. The first certificate also adds a mount to the ingress:
/// `autogit install` (or the next daemon start) recreates it.
pub async fn refresh_ingress(ui: &Ui, g: &Global, loaded: &Loaded) -> Result<(), String> {
    let plan = quiet_plan(g, loaded)?;
    let quiet = Ui {
        quiet: true,
        json: false,
        ..*ui
    };
    let rendered = data_dir(g).join("rendered");
    crate::commands::write_rendered(&quiet, g, &rendered, &plan, loaded)
        .map_err(|_| format!("cannot write {}", rendered.display()))?;
    if plan.service("nginx").is_none() {
        return Ok(());
    }
    use autogit_drivers::engine::ContainerEngine;
    let engine = autogit_drivers::engine::docker::Docker::connect(
        loaded
            .config
            .platform
            .socket
            .as_deref()
            .map(std::path::Path::new),
        &loaded.env,
    )
    .await
    .map_err(|e| e.to_string())?;
    let running = engine
        .list(&plan.project)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|o| o.service == "nginx" && o.state == autogit_drivers::engine::RunState::Running);
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

async fn issue_via<P: DnsProvider>(
    s: &AcmeSettings,
    domain: &str,
    dns: P,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Option<CertInfo>, String> {
    issue(s, domain, &dns, progress)
        .await
        .map(Some)
        .map_err(|e| e.to_string())
}

fn show(ui: &Ui, info: &CertInfo, due: bool) {
    let days = (info.not_after - now()) / 86_400;
    if ui.json {
        ui.print_json(&json!({
            "names": info.names, "not_before": info.not_before, "not_after": info.not_after,
            "days_left": days, "renewal_due": due,
            "fullchain": info.fullchain, "key": info.key,
        }));
    } else {
        let mut t = ui.table();
        t.set_header(vec!["NAMES", "EXPIRES IN", "RENEWAL", "FILES"]);
        t.add_row(vec![
            info.names.join(", "),
            format!("{days} days"),
            if due {
                "due".to_owned()
            } else {
                "not due".to_owned()
            },
            format!("{} (key {})", info.fullchain.display(), info.key.display()),
        ]);
        println!("{t}");
    }
}

pub fn run(ui: &Ui, g: &Global, cmd: TlsCommand) -> u8 {
    let loaded = load_all(g, &[]);
    let (s, domain) = match settings(g, &loaded) {
        Ok(x) => x,
        Err(e) => return fail(ui, e),
    };
    let wanted = match wanted_names(g, &loaded, &domain) {
        Ok(w) => w,
        Err(e) => return fail(ui, e),
    };
    match cmd {
        TlsCommand::Status => match current(&s, &domain, &wanted) {
            Some((info, due)) => {
                show(ui, &info, due);
                exit::OK
            }
            None => {
                if ui.json {
                    ui.print_json(&json!({ "certificate": null }));
                } else {
                    ui.note(&format!(
                        "no certificate for {domain} yet: `autogit tls renew` gets one"
                    ));
                }
                exit::OK
            }
        },
        TlsCommand::Renew { force } => {
            let quiet = ui.quiet;
            let progress = move |l: &str| {
                if !quiet {
                    eprintln!("{l}");
                }
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(ui, e),
            };
            match rt.block_on(renew_if_due(g, &loaded, force, &progress)) {
                Ok(Some(info)) => {
                    show(ui, &info, false);
                    if let Err(e) = rt.block_on(refresh_ingress(ui, g, &loaded)) {
                        ui.note(&format!("warning: the ingress was not updated: {e}"));
                    }
                    exit::OK
                }
                Ok(None) => {
                    if let Some((info, due)) = current(&s, &domain, &wanted) {
                        show(ui, &info, due);
                    }
                    ui.note("not due for renewal (two thirds of its lifetime have not passed); --force renews anyway");
                    exit::OK
                }
                Err(e) => fail(
                    ui,
                    format!(
                        "certificate for {domain}: {e}; the current certificate (if any) keeps serving"
                    ),
                ),
            }
        }
    }
}
