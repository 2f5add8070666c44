//! `autogit diagnose`: gathers the facts every check needs through the drivers and the other
//! controllers (the engine, port probes, the state store, the TLS controller's certificate,
//! a resolver, GitLab's endpoints and token, runner hosts over SSH, backups, mirrors) and has
//! `core::diagnose` judge them. Groups are gathered concurrently, each under a timeout, so one
//! hanging probe (a filtered port, an engine that accepts and never answers, an SSH host
//! that is down) costs its own check, never the others. `fix` applies the safe fixes through
//! the controllers that own them; `bundle` writes the redacted support bundle.

use crate::{Bus, Settings, SharedClock};
use autogit_core::diagnose::{self as d, Check, SafeFix, Status};
use autogit_core::plan::{Plan, Protocol};
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::engine::{ContainerEngine, EngineInfo, Health, Observed, RunState};
use autogit_drivers::state::Store;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The public resolver asked besides the configured one (`AUTOGIT_PUBLIC_RESOLVER`).
pub const PUBLIC_RESOLVER: &str = "1.1.1.1";
/// How long the public resolver is given: an offline site should not wait long for it.
pub const PUBLIC_RESOLVER_TIMEOUT: Duration = Duration::from_secs(3);

/// Per-check timeout unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// GitLab's background migrations are read with `gitlab-rails runner`, which boots Rails
/// (tens of seconds on a real GitLab): their check gets at least this long.
pub const MIGRATIONS_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("cannot write the bundle {path}: {message}")]
    Bundle { path: String, message: String },
}

/// What one applied safe fix did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FixOutcome {
    pub fix: SafeFix,
    pub ok: bool,
    pub detail: String,
}

/// What went into a bundle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleReport {
    pub path: String,
    pub files: Vec<String>,
    pub bytes: u64,
    /// How many distinct secret values were searched for and redacted.
    pub secrets_redacted: usize,
}

#[derive(Debug)]
pub struct DiagnoseController {
    settings: Arc<Settings>,
    bus: Bus,
    clock: SharedClock,
    timeout: Duration,
}

/// The engine as gathered once for every group that needs it.
struct EngineView {
    engine: Result<(Docker, EngineInfo), String>,
    /// When the engine was asked (for its clock).
    asked_at: i64,
}

impl DiagnoseController {
    pub fn new(settings: Arc<Settings>, bus: Bus, clock: SharedClock) -> Self {
        Self {
            settings,
            bus,
            clock,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The per-check timeout.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `f` under the timeout; when it does not finish, one failed check `id` instead.
    async fn bounded(
        &self,
        id: &str,
        title: &str,
        limit: Duration,
        f: impl Future<Output = Vec<Check>>,
    ) -> Vec<Check> {
        match tokio::time::timeout(limit, f).await {
            Ok(c) => c,
            Err(_) => vec![Check::timed_out(id, title, limit.as_secs().max(1))],
        }
    }

    /// Every check (or those `only` selects: ids or groups), sorted by group.
    pub async fn run(&self, only: &[String]) -> Vec<Check> {
        let want = |g: &str| d::group_selected(only, g);
        let t = self.timeout;
        let engine = if ["engine", "port", "service", "flag", "gitlab", "clock"]
            .iter()
            .any(|g| want(g))
        {
            self.engine_view().await
        } else {
            EngineView {
                engine: Err("not asked".to_owned()),
                asked_at: 0,
            }
        };
        let plan = crate::plan::quiet(&self.settings);
        let groups = tokio::join!(
            async {
                if want("engine") {
                    self.engine_checks(&engine)
                } else {
                    Vec::new()
                }
            },
            async {
                if want("port") || want("service") || want("flag") {
                    self.bounded(
                        "service",
                        "services",
                        t,
                        self.service_checks(&engine, &plan),
                    )
                    .await
                } else {
                    Vec::new()
                }
            },
            async {
                if want("tls") {
                    self.bounded("tls.certificate", "TLS certificate", t, async {
                        self.tls_checks()
                    })
                    .await
                } else {
                    Vec::new()
                }
            },
            async {
                if want("dns") {
                    self.bounded("dns", "DNS", t * 2, self.dns_checks(&plan))
                        .await
                } else {
                    Vec::new()
                }
            },
            async {
                if want("gitlab") {
                    self.gitlab_checks(&engine, &plan).await
                } else {
                    Vec::new()
                }
            },
            async {
                if want("runner") || want("clock") {
                    self.bounded("runner", "runner hosts", t * 3, self.runner_checks())
                        .await
                } else {
                    Vec::new()
                }
            },
            async {
                if want("backup") {
                    self.backup_checks(&plan)
                } else {
                    Vec::new()
                }
            },
            async {
                if want("mirror") {
                    self.mirror_checks()
                } else {
                    Vec::new()
                }
            },
        );
        let mut checks: Vec<Check> = [
            groups.0, groups.1, groups.2, groups.3, groups.4, groups.5, groups.6, groups.7,
        ]
        .into_iter()
        .flatten()
        .collect();
        if want("clock") {
            checks.push(self.engine_clock(&engine));
        }
        checks.retain(|c| d::selected(only, &c.id));
        d::sort(&mut checks);
        checks
    }

    async fn engine_view(&self) -> EngineView {
        let asked_at = self.clock.now() as i64;
        let s = &self.settings;
        let engine = match tokio::time::timeout(self.timeout, async {
            let e = Docker::connect(s.socket(), &s.env)
                .await
                .map_err(|e| e.to_string())?;
            let i = e.info().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((e, i))
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the engine did not answer within {}s",
                self.timeout.as_secs()
            )),
        };
        EngineView { engine, asked_at }
    }

    fn engine_checks(&self, v: &EngineView) -> Vec<Check> {
        let facts = v.engine.as_ref().map(|(_, i)| d::EngineFacts {
            kind: i.kind.clone(),
            version: i.version.clone(),
            api_version: i.api_version.clone(),
            rootless: i.rootless,
            socket: i.socket.display().to_string(),
            storage_driver: i.storage_driver.clone(),
        });
        let mut out = vec![d::judge_engine(facts.as_ref().map_err(|e| e.as_str()))];
        let disk = |id: &str, what: &str, p: &Path| {
            let r = autogit_drivers::fsx::disk_usage(p)
                .map(|u| d::DiskFacts {
                    path: p.display().to_string(),
                    free_bytes: u.free_bytes,
                    total_bytes: u.total_bytes,
                    free_inodes: u.free_inodes,
                    total_inodes: u.total_inodes,
                })
                .map_err(|e| e.to_string());
            d::judge_disk(id, what, r.as_ref().map_err(String::as_str))
        };
        out.push(disk(
            "engine.disk",
            "autogit's data dir",
            &self.settings.data_dir,
        ));
        // The engine's own storage, when it is on this machine (not a VM's).
        if let Ok((_, i)) = &v.engine
            && let Some(root) = i.root_dir.as_deref().filter(|r| r.exists())
        {
            out.push(disk(
                "engine.storage",
                "the engine's images and volumes",
                root,
            ));
        }
        out
    }

    fn engine_clock(&self, v: &EngineView) -> Check {
        let skew = match &v.engine {
            Ok((_, i)) => i
                .system_time
                .map(|t| t - v.asked_at)
                .ok_or_else(|| "the engine does not report its clock".to_owned()),
            Err(e) => Err(e.clone()),
        };
        d::judge_clock("engine", skew.as_ref().map(|s| *s).map_err(String::as_str))
    }

    async fn service_checks(&self, v: &EngineView, plan: &Result<Plan, String>) -> Vec<Check> {
        let db = self.settings.state_db();
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                return vec![
                    Check::new("service", "services", Status::Fail, e.clone())
                        .fix("`autogit validate` shows what is wrong in the configuration"),
                ];
            }
        };
        if !db.exists() {
            return vec![
                Check::new(
                    "service",
                    "services",
                    Status::Skip,
                    format!("nothing installed yet (no {})", db.display()),
                )
                .fix("`autogit install`"),
            ];
        }
        let rows = match Store::open(&db).and_then(|s| s.services()) {
            Ok(r) => r,
            Err(e) => {
                return vec![Check::new(
                    "service",
                    "state database",
                    Status::Fail,
                    e.to_string(),
                )];
            }
        };
        let (observed, engine_down): (Vec<Observed>, bool) = match &v.engine {
            Ok((e, _)) => match e.list(&plan.project).await {
                Ok(o) => (o, false),
                Err(_) => (Vec::new(), true),
            },
            Err(_) => (Vec::new(), true),
        };
        let mut out = Vec::new();
        for r in rows.iter().filter(|r| r.flagged) {
            out.push(d::judge_flag(
                &r.service,
                r.flag_reason.as_deref().unwrap_or("no reason recorded"),
            ));
        }
        let mut ports = Vec::new();
        for spec in plan.local() {
            let o = observed.iter().find(|o| o.service == spec.name);
            let row = rows.iter().find(|r| r.service == spec.name);
            let running = o.is_some_and(|o| o.state == RunState::Running);
            if spec.on_demand && !running {
                out.push(Check::new(
                    format!("service.{}", spec.name),
                    format!("service {}", spec.name),
                    Status::Ok,
                    "on demand: stopped until jobs wait",
                ));
                continue;
            }
            out.push(d::judge_service(&d::ServiceFacts {
                service: spec.name.clone(),
                recorded: row.map(|r| r.state.clone()),
                flagged: row.is_some_and(|r| r.flagged),
                container: o.map(container_facts),
                engine_down,
            }));
            for p in spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                ports.push((spec.name.clone(), p.clone(), running));
            }
        }
        let probes = ports.into_iter().map(|(service, p, running)| async move {
            // A port published on one address answers there only (`::1` included).
            let host = match p
                .bind
                .as_deref()
                .and_then(|b| b.parse::<std::net::IpAddr>().ok())
            {
                Some(ip) if !ip.is_unspecified() => ip,
                _ => std::net::IpAddr::from([127, 0, 0, 1]),
            };
            let addr = std::net::SocketAddr::from((host, p.host)).to_string();
            let answers =
                autogit_drivers::health::tcp(&addr, Duration::from_secs(2).min(self.timeout))
                    .await
                    .passed();
            let bind_error = if running {
                None
            } else {
                let host = p.bind.clone().unwrap_or_else(|| "0.0.0.0".to_owned());
                std::net::TcpListener::bind((host.as_str(), p.host))
                    .err()
                    .map(|e| e.to_string())
            };
            let setting = if service == "gitlab" {
                format!("gitlab.ports.{}", p.name)
            } else {
                format!("PORT_{} in .env", service.to_ascii_uppercase())
            };
            d::judge_port(&d::PortFacts {
                service,
                name: p.name.clone(),
                port: p.host,
                container_running: running,
                answers,
                bind_error,
                setting,
            })
        });
        if !engine_down {
            out.extend(join_all(probes).await);
        }
        out
    }

    fn tls_checks(&self) -> Vec<Check> {
        let cert = self.tls_check();
        if cert.status == Status::Skip {
            return vec![cert];
        }
        let tls = crate::tls::TlsController::new(
            self.settings.clone(),
            self.bus.clone(),
            self.clock.clone(),
        );
        let chain = tls.current().ok().flatten().map(|c| {
            autogit_drivers::acme::read_chain(&c.info.fullchain)
                .map(|v| {
                    v.into_iter()
                        .map(|c| d::ChainLink {
                            subject: c.subject,
                            issuer: c.issuer,
                            not_after: c.not_after,
                        })
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        });
        let chain = match &chain {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v.as_slice())),
            Some(Err(e)) => Err(e.as_str()),
        };
        vec![cert, d::judge_chain(chain, self.clock.now() as i64)]
    }

    fn tls_check(&self) -> Check {
        let tls = crate::tls::TlsController::new(
            self.settings.clone(),
            self.bus.clone(),
            self.clock.clone(),
        );
        let now = self.clock.now() as i64;
        if !tls.configured() {
            return d::judge_certificate(
                Err(
                    "TLS is not configured (BASE_DOMAIN, and ACME_EMAIL unless TLS_SOURCE is internal, file or extension:<name>, in .env)",
                ),
                Ok(None),
                &[],
                now,
            );
        }
        let wanted = tls
            .acme_settings()
            .and_then(|(_, domain)| tls.wanted_names(&domain))
            .unwrap_or_default();
        let cur = tls.current().map(|c| {
            c.map(|c| d::CertFacts {
                names: c.info.names,
                not_before: c.info.not_before,
                not_after: c.info.not_after,
            })
        });
        let cert = cur.as_ref().map(Option::as_ref).map_err(String::as_str);
        if tls.source() == autogit_core::platform::TlsSource::File {
            return d::judge_supplied_certificate(cert, &wanted, now);
        }
        d::judge_certificate(Ok(()), cert, &wanted, now)
    }

    async fn dns_checks(&self, plan: &Result<Plan, String>) -> Vec<Check> {
        let p = &self.settings.platform;
        if p.base_domain.is_none() {
            return vec![Check::new(
                "dns",
                "DNS",
                Status::Skip,
                "BASE_DOMAIN is not set in .env: the services have no names",
            )];
        }
        let (dnssec, mut names) = tokio::join!(self.dnssec_check(), self.name_checks(plan));
        names.push(dnssec);
        names
    }

    /// Whether the zone is signed, asked of `RFC2136_SERVER` (rfc2136) or the system's
    /// resolver (`/etc/resolv.conf`).
    async fn dnssec_check(&self) -> Check {
        let dns = crate::dns::DnsController::new(self.settings.clone(), self.bus.clone());
        let (zone, resolver, r) = dns.dnssec(self.timeout).await;
        let r = r.map(|z| d::DnssecFacts {
            zone,
            resolver,
            exists: z.exists,
            dnskey: z.dnskey,
            rrsig: z.rrsig,
            ds: z.ds,
        });
        d::judge_dnssec(r.as_ref().map_err(String::as_str))
    }

    /// Each name the platform needs, resolved.
    async fn name_checks(&self, plan: &Result<Plan, String>) -> Vec<Check> {
        let p = &self.settings.platform;
        let Ok(plan) = plan else {
            return Vec::new();
        };
        let dns = crate::dns::DnsController::new(self.settings.clone(), self.bus.clone());
        let records = match dns.desired_records(plan) {
            Ok(r) => r,
            Err(e) => return vec![Check::new("dns", "DNS", Status::Skip, e.to_string())],
        };
        use autogit_core::dns::RecordType;
        // What each record name should hold; a wildcard stands for every service's name,
        // so the names a client asks for are checked, each against the record covering it.
        let mut desired: std::collections::BTreeMap<(String, bool), Vec<String>> =
            std::collections::BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| matches!(r.kind, RecordType::A | RecordType::Aaaa))
        {
            desired
                .entry((r.name.clone(), r.kind == RecordType::Aaaa))
                .or_default()
                .push(r.value.clone());
        }
        let domain = autogit_core::dns::canonical_name(p.base_domain.as_deref().unwrap_or(""));
        let mut hosts: Vec<String> = plan
            .local()
            .flat_map(|s| s.hosts())
            .map(|sub| format!("{sub}.{domain}"))
            .collect();
        hosts.extend(
            desired
                .keys()
                .map(|(n, _)| n.clone())
                .filter(|n| !n.starts_with("*.")),
        );
        hosts.sort();
        hosts.dedup();
        // Proxied names resolve to Cloudflare's edge, not the ingress: judged apart.
        let proxied: std::collections::BTreeSet<&str> = records
            .iter()
            .filter(|r| r.proxied)
            .map(|r| r.name.as_str())
            .collect();
        hosts.retain(|h| !proxied.contains(h.as_str()));
        let mut names: std::collections::BTreeMap<(String, bool), Vec<String>> =
            std::collections::BTreeMap::new();
        for h in hosts {
            for v6 in [false, true] {
                let wildcard = h
                    .split_once('.')
                    .map(|(_, parent)| format!("*.{parent}"))
                    .unwrap_or_default();
                if let Some(want) = desired
                    .get(&(h.clone(), v6))
                    .or_else(|| desired.get(&(wildcard, v6)))
                {
                    names.insert((h.clone(), v6), want.clone());
                }
            }
        }
        let server = (p.dns_provider == autogit_core::platform::DnsProvider::Rfc2136)
            .then(|| self.settings.setting("RFC2136_SERVER"))
            .flatten();
        let managed = dns.manages_records();
        let t = self.timeout;
        let public = self.public_resolver();
        let pt = t.min(PUBLIC_RESOLVER_TIMEOUT);
        let probes = names.into_iter().map(|((name, v6), want)| {
            let (server, public) = (server.clone(), public.clone());
            async move {
                let configured = async {
                    match &server {
                        Some(s) => (
                            format!("{s} (RFC2136_SERVER)"),
                            autogit_drivers::dns::resolve::query_addresses(s, &name, v6, t).await,
                        ),
                        None => (
                            "system resolver".to_owned(),
                            autogit_drivers::dns::resolve::system_addresses(&name, v6, t).await,
                        ),
                    }
                };
                // What the rest of the world sees, unless the ingress is site-internal.
                let outside = async {
                    match &public {
                        Some(p) if !d::site_internal(&want) => Some((
                            format!("{p} (public)"),
                            autogit_drivers::dns::resolve::query_addresses(p, &name, v6, pt).await,
                        )),
                        _ => None,
                    }
                };
                let ((resolver, answer), outside) = tokio::join!(configured, outside);
                let mut out = vec![d::judge_dns(&d::DnsFacts {
                    name: name.clone(),
                    want: want.clone(),
                    resolver,
                    answer,
                    managed,
                })];
                if let Some((resolver, answer)) = outside {
                    out.push(d::judge_public_dns(&d::DnsFacts {
                        name,
                        want,
                        resolver,
                        answer,
                        managed,
                    }));
                }
                out
            }
        });
        let mut checks: Vec<Check> = join_all(probes).await.into_iter().flatten().collect();
        checks.extend(self.proxied_checks(plan, &domain).await);
        checks
    }

    /// Each subdomain CLOUDFLARE_PROXIED names: an HTTP service's, resolving to Cloudflare.
    async fn proxied_checks(&self, plan: &Plan, domain: &str) -> Vec<Check> {
        let t = self.timeout;
        let probes = self.settings.platform.cloudflare_proxied.iter().map(|sub| {
            let name = format!("{sub}.{domain}");
            // Routed over HTTP(S), and not GitLab's name (which also carries SSH).
            let http_service = plan.local().any(|s| {
                s.internal_port.is_some()
                    && s.role != autogit_core::plan::Role::Gitlab
                    && s.hosts().iter().any(|h| h == sub)
            });
            async move {
                let answer = if http_service {
                    autogit_drivers::dns::resolve::system_addresses(&name, false, t).await
                } else {
                    Ok(Vec::new())
                };
                d::judge_proxied(&d::ProxiedFacts {
                    subdomain: sub.clone(),
                    name,
                    http_service,
                    resolver: "system resolver".to_owned(),
                    answer,
                })
            }
        });
        join_all(probes).await
    }

    /// The public resolver the DNS checks also ask: `AUTOGIT_PUBLIC_RESOLVER` from the
    /// environment (`none` turns it off), else 1.1.1.1.
    fn public_resolver(&self) -> Option<String> {
        let v = self
            .settings
            .env
            .iter()
            .find(|(k, _)| k == "AUTOGIT_PUBLIC_RESOLVER")
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| PUBLIC_RESOLVER.to_owned());
        (!v.is_empty() && v != "none").then_some(v)
    }

    async fn gitlab_checks(&self, v: &EngineView, plan: &Result<Plan, String>) -> Vec<Check> {
        let has_gitlab = plan
            .as_ref()
            .is_ok_and(|p| p.local().any(|s| s.name == "gitlab"));
        if !has_gitlab || !self.settings.state_db().exists() {
            return vec![Check::new(
                "gitlab",
                "GitLab",
                Status::Skip,
                "GitLab is not installed here",
            )];
        }
        // A stopped GitLab is `service.gitlab`'s failure; its endpoints would only repeat it.
        if let Ok((engine, _)) = &v.engine
            && let Ok(Ok(observed)) = tokio::time::timeout(
                self.timeout,
                engine.list(&self.settings.config.platform.project),
            )
            .await
            && !observed
                .iter()
                .any(|o| o.service == "gitlab" && o.state == RunState::Running)
        {
            return vec![Check::new(
                "gitlab",
                "GitLab",
                Status::Skip,
                "GitLab's container is not running (see service.gitlab)",
            )];
        }
        let base = self.settings.gitlab_local_url();
        let client = autogit_drivers::health::client();
        let t = self.timeout;
        let endpoint = |name: &'static str| {
            let (client, url) = (client.clone(), format!("{base}/-/{name}"));
            async move {
                let r = match client.get(&url).timeout(t).send().await {
                    Ok(resp) => {
                        let code = resp.status().as_u16();
                        let body = resp.text().await.unwrap_or_default();
                        Ok((code, body.chars().take(4096).collect::<String>()))
                    }
                    Err(e) => Err(format!("GET {url}: {}", root_cause(&e))),
                };
                d::judge_gitlab_endpoint(
                    name,
                    r.as_ref()
                        .map(|(c, b)| (*c, b.as_str()))
                        .map_err(String::as_str),
                )
            }
        };
        let (h, r, l, m, tok) = tokio::join!(
            self.bounded("gitlab.health", "GitLab /-/health", t, async {
                vec![endpoint("health").await]
            }),
            self.bounded("gitlab.readiness", "GitLab /-/readiness", t, async {
                vec![endpoint("readiness").await]
            }),
            self.bounded("gitlab.liveness", "GitLab /-/liveness", t, async {
                vec![endpoint("liveness").await]
            }),
            self.bounded(
                "gitlab.migrations",
                "GitLab background migrations",
                t.max(MIGRATIONS_TIMEOUT),
                self.migrations(v)
            ),
            self.bounded("gitlab.token", "GitLab admin token", t, self.token()),
        );
        let reg = match plan.as_ref().ok().filter(|p| p.registry) {
            Some(p) => {
                self.bounded("gitlab.registry", "container registry", t, self.registry(p))
                    .await
            }
            None => Vec::new(),
        };
        [h, r, l, m, tok, reg].into_iter().flatten().collect()
    }

    /// GitLab's container registry through the ingress on this host (its published HTTPS
    /// port), as `docker login` would meet it.
    async fn registry(&self, plan: &Plan) -> Vec<Check> {
        let Some(domain) = plan.base_domain.as_deref() else {
            return Vec::new();
        };
        let url = autogit_core::registry::url(domain);
        let pin = plan
            .local()
            .filter(|s| s.role == autogit_core::plan::Role::Ingress)
            .flat_map(|s| s.ports.iter())
            .find(|p| p.container == 443)
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p.host)));
        let r = autogit_drivers::health::registry_v2(&url, pin, self.timeout)
            .await
            .map(|(status, api_version, authenticate)| d::RegistryAnswer {
                status,
                api_version,
                authenticate,
            });
        vec![d::judge_registry(&url, r.as_ref().map_err(String::as_str))]
    }

    async fn migrations(&self, v: &EngineView) -> Vec<Check> {
        let Ok((engine, _)) = &v.engine else {
            return vec![d::judge_migrations(Err("the engine did not answer"))];
        };
        let project = &self.settings.config.platform.project;
        let id = match engine.list(project).await {
            Ok(o) => o
                .into_iter()
                .find(|o| o.service == "gitlab" && o.state == RunState::Running)
                .map(|o| o.id),
            Err(e) => return vec![d::judge_migrations(Err(&e.to_string()))],
        };
        let Some(id) = id else {
            return vec![d::judge_migrations(Err(
                "GitLab's container is not running",
            ))];
        };
        let argv: Vec<String> = [
            autogit_drivers::gitlab::bootstrap::GITLAB_RAILS,
            "runner",
            autogit_core::upgrade::MIGRATIONS_SCRIPT,
        ]
        .map(str::to_owned)
        .to_vec();
        let r = match engine.exec(&id, &argv).await {
            Ok((0, out)) => autogit_core::upgrade::parse_migrations(&out)
                .ok_or_else(|| "gitlab-rails answered something else".to_owned()),
            Ok((code, _)) => Err(format!("gitlab-rails runner exited {code}")),
            Err(e) => Err(e.to_string()),
        };
        vec![d::judge_migrations(
            r.as_ref().map(|x| *x).map_err(String::as_str),
        )]
    }

    /// A client with the stored admin token; `Ok(None)` when none is stored (or no secret
    /// store exists: looking must not create one, or its key).
    fn admin_client(
        &self,
    ) -> Result<Option<autogit_drivers::gitlab::client::GitLabClient>, String> {
        if !self.settings.data_dir.join("secrets").is_dir() {
            return Ok(None);
        }
        let gl = crate::gitlab::GitLabController::new(self.settings.clone(), None);
        let store = gl.store()?;
        let Some(token) = store
            .get(autogit_drivers::gitlab::bootstrap::ADMIN_TOKEN)
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        autogit_drivers::gitlab::client::GitLabClient::new(gl.url(), Some(token))
            .map(|c| Some(c.with_retry(crate::gitlab::quick_retry())))
            .map_err(|e| e.to_string())
    }

    async fn token(&self) -> Vec<Check> {
        let now = self.clock.now() as i64;
        let client = match self.admin_client() {
            Ok(Some(c)) => c,
            Ok(None) => return vec![d::judge_admin_token(Ok(None), now)],
            Err(e) => return vec![d::judge_admin_token(Err(&e), now)],
        };
        let r = client
            .current_token()
            .await
            .map(|t| d::TokenFacts {
                active: t.active,
                revoked: t.revoked,
                expires_at: t.expires_at,
            })
            .map_err(|e| e.to_string());
        vec![d::judge_admin_token(
            r.as_ref().map(Some).map_err(String::as_str),
            now,
        )]
    }

    async fn runner_checks(&self) -> Vec<Check> {
        let rc = crate::runners::RunnerController::new(
            self.settings.clone(),
            self.bus.clone(),
            self.clock.clone(),
        );
        if !rc.any() {
            return vec![Check::new(
                "runner",
                "runner hosts",
                Status::Skip,
                "no runner on another host is configured",
            )];
        }
        let runners = rc.runners();
        let mut out = Vec::new();
        // Probed directly, not through `probe_all`: looking records and publishes nothing
        // (and creates no state database before `install`).
        let probes = rc
            .configured_hosts()
            .into_iter()
            .map(|(host, user, names)| {
                let rc = &rc;
                async move {
                    let r = if host == "auto" {
                        Err(
                            "not discovered yet (`host: auto`): `autogit runner discover`"
                                .to_owned(),
                        )
                    } else {
                        match rc.remote_as(&host, user.as_deref()).await {
                            Ok(h) => autogit_drivers::remote::inventory::probe(&h)
                                .await
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e),
                        }
                    };
                    (host, names, r)
                }
            });
        let healths = join_all(probes).await;
        let mut clocks = Vec::new();
        for (host, names, r) in &healths {
            let wants_gpu = runners.iter().any(|x| &x.host == host && x.gpu.is_some());
            let inv = r.as_ref().ok();
            let reachable = r.is_ok();
            out.push(d::judge_runner_host(&d::RunnerHostFacts {
                host: host.clone(),
                runners: names.clone(),
                reachable,
                error: r.as_ref().err().cloned(),
                engine: inv.and_then(|i| i.engine.as_ref()).map(|e| {
                    let kind = match e.kind {
                        autogit_core::inventory::EngineKind::Docker => "docker",
                        autogit_core::inventory::EngineKind::Podman => "podman",
                    };
                    format!("{kind} {}", e.version)
                }),
                gpus: inv.map_or(0, |i| i.gpus.len()),
                wants_gpu,
                problems: inv.map(|i| i.problems.clone()).unwrap_or_default(),
            }));
            // `local` is this machine: no second clock.
            if reachable && host != "local" {
                clocks.push(host.clone());
            }
        }
        let reads = clocks.into_iter().map(|host| {
            let rc = &rc;
            async move {
                let skew = async {
                    use autogit_drivers::remote::RemoteExec;
                    let remote = rc.remote(&host).await?;
                    let before = self.clock.now() as i64;
                    let o = remote
                        .run(&["date".to_owned(), "+%s".to_owned()])
                        .await
                        .map_err(|e| e.to_string())?;
                    let after = self.clock.now() as i64;
                    let theirs: i64 = o
                        .stdout
                        .trim()
                        .parse()
                        .map_err(|_| format!("`date +%s` answered {:?}", o.stdout.trim()))?;
                    Ok::<i64, String>(theirs - (before + after) / 2)
                }
                .await;
                d::judge_clock(&host, skew.as_ref().map(|s| *s).map_err(String::as_str))
            }
        });
        out.extend(join_all(reads).await);
        out.extend(self.registration_checks(&runners).await);
        out
    }

    /// Each configured runner's registration, as recorded and as GitLab reports it.
    async fn registration_checks(&self, runners: &[autogit_core::config::Runner]) -> Vec<Check> {
        let db = self.settings.state_db();
        let rows = if db.exists() {
            Store::open(&db)
                .and_then(|s| s.registrations())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let registered = rows.iter().any(|r| r.state == "registered");
        let gitlab = match self.admin_client() {
            Ok(Some(c)) if registered => Some(
                match tokio::time::timeout(self.timeout, c.all_runners()).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {}s", self.timeout.as_secs())),
                },
            ),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        let on_demand =
            self.settings.config.runners.mode == autogit_core::config::RunnerMode::OnDemand;
        runners
            .iter()
            .map(|r| {
                let row = rows.iter().find(|x| x.name == r.name);
                let id = row.map(|x| x.runner_id);
                d::judge_runner_registration(&d::RunnerRegistrationFacts {
                    name: r.name.clone(),
                    state: row.map(|x| x.state.clone()),
                    runner_id: id,
                    gitlab: gitlab.as_ref().map(|g| {
                        g.as_ref()
                            .map(|all| {
                                all.iter().find(|x| Some(x.id as i64) == id).map(|x| {
                                    d::RunnerInGitLab {
                                        online: x.online.unwrap_or(false),
                                        status: x.status.clone(),
                                        paused: x.paused.unwrap_or(false),
                                    }
                                })
                            })
                            .map_err(Clone::clone)
                    }),
                    on_demand,
                })
            })
            .collect()
    }

    fn backup_checks(&self, plan: &Result<Plan, String>) -> Vec<Check> {
        if !plan
            .as_ref()
            .is_ok_and(|p| p.local().any(|s| s.name == "gitlab"))
            || !self.settings.state_db().exists()
        {
            return Vec::new();
        }
        let newest = std::fs::read_dir(self.settings.backup_dir())
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| autogit_core::backup::is_archive_name(&e.file_name().to_string_lossy()))
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .max();
        let now = self.clock.now() as i64;
        let last_test = crate::backup::last_restore_test(&self.settings);
        vec![
            d::judge_backup(newest, &self.settings.config.backup.schedule, now),
            d::judge_restore_test(last_test.as_ref(), newest, now),
        ]
    }

    fn mirror_checks(&self) -> Vec<Check> {
        let mc = crate::mirror::MirrorController::new(
            self.settings.clone(),
            self.bus.clone(),
            self.clock.clone(),
        );
        let src = &self.settings.config.mirroring.sources;
        if src.github.is_empty() && src.gitlab.is_empty() && src.git.is_empty() {
            return Vec::new();
        }
        // Runs are recorded in the state store; listing would create it.
        if !self.settings.state_db().exists() {
            return vec![
                Check::new(
                    "mirror",
                    "mirrors",
                    Status::Skip,
                    "no state database yet: no mirror has run",
                )
                .fix("`autogit mirror sync` (or `autogit install`, then the daemon's schedule)"),
            ];
        }
        let rows = match mc.list() {
            Ok(r) => r,
            Err(e) => {
                return vec![Check::new("mirror", "mirrors", Status::Warn, e.to_string())];
            }
        };
        let streaks = Store::open(&self.settings.state_db())
            .and_then(|s| s.mirror_failure_streaks())
            .unwrap_or_default();
        let now = self.clock.now() as i64;
        rows.iter()
            .map(|r| {
                d::judge_mirror(
                    &d::MirrorFacts {
                        name: r.name.clone(),
                        problem: r.problem.clone(),
                        last_success: r.last_success,
                        last_error_at: r.last_error_at,
                        last_error: r.last_error.clone(),
                        failures: streaks.get(&r.name).copied().unwrap_or(0),
                    },
                    now,
                )
            })
            .collect()
    }

    /// Applies each safe fix the checks ask for, through its controller.
    pub async fn fix(&self, checks: &[Check]) -> Vec<FixOutcome> {
        let mut out = Vec::new();
        for f in d::safe_fixes(checks) {
            let r = match f {
                SafeFix::Reconcile => self.reconcile().await,
                SafeFix::RenewCertificate => {
                    let tls = crate::tls::TlsController::new(
                        self.settings.clone(),
                        self.bus.clone(),
                        self.clock.clone(),
                    );
                    match tls.renew(false, &|_| {}).await {
                        Ok(Some(r)) => Ok(format!(
                            "issued a certificate for {}{}",
                            r.info.names.join(", "),
                            r.ingress_error
                                .map(|e| format!(" (the ingress was not refreshed: {e})"))
                                .unwrap_or_default()
                        )),
                        Ok(None) => Ok("the certificate is not due".to_owned()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            out.push(match r {
                Ok(detail) => FixOutcome {
                    fix: f,
                    ok: true,
                    detail,
                },
                Err(detail) => FixOutcome {
                    fix: f,
                    ok: false,
                    detail,
                },
            });
        }
        out
    }

    /// One reconcile pass, as `autogit reconcile` runs it.
    async fn reconcile(&self) -> Result<String, String> {
        let s = &self.settings;
        let plan = crate::plan::quiet(s)?;
        let data = crate::platform::data_dir(s)?;
        crate::plan::write_rendered(s, &data.join("rendered"), &plan)?;
        let engine = Docker::connect(s.socket(), &s.env)
            .await
            .map_err(|e| e.to_string())?;
        let platform =
            crate::platform::PlatformController::open(s.clone(), self.bus.clone(), engine, plan)?;
        let report = platform.reconcile_once().await.map_err(|e| e.to_string())?;
        platform.settle().await;
        if let Some((svc, e)) = report.errors.first() {
            return Err(format!("{svc}: {e}"));
        }
        Ok(format!(
            "reconciled: {} action(s)",
            report
                .actions
                .iter()
                .filter(|a| !matches!(a, autogit_core::reconcile::Action::Transition { .. }))
                .count()
        ))
    }

    /// Every secret value this machine knows: the `.env` values of every key that is not
    /// plainly a setting, the environment's variables that the configuration or the plan
    /// name as secrets or that are named like one, the secrets read from `_FILE`s, and the
    /// secret store's values.
    pub fn known_secrets(&self) -> Vec<String> {
        let s = &self.settings;
        let mut v: Vec<String> = s
            .values
            .iter()
            .filter(|(k, _)| !d::plain_env_key(k))
            .map(|(_, v)| v.clone())
            .collect();
        let secretish = |k: &str| {
            let k = k.to_ascii_uppercase();
            [
                "TOKEN",
                "PASSWORD",
                "SECRET",
                "KEY",
                "PASSPHRASE",
                "CREDENTIAL",
            ]
            .iter()
            .any(|w| k.contains(w))
        };
        let mut named: Vec<String> = Vec::new();
        if let Ok(plan) = crate::plan::quiet(s) {
            named.extend(plan.services.iter().flat_map(|x| x.secret_env.clone()));
        }
        let src = &s.config.mirroring.sources;
        named.extend(src.github.iter().filter_map(|m| m.token_env.clone()));
        named.extend(src.gitlab.iter().filter_map(|m| m.token_env.clone()));
        named.extend(src.git.iter().filter_map(|m| m.token_env.clone()));
        // Every notifier's secret, whatever its variable is called: a Slack or Discord URL
        // (its credential is in the path), an ntfy or Matrix token, an SMTP password, a
        // webhook's signing secret.
        for n in &s.config.health.notify {
            use autogit_core::config::Notify as N;
            match n {
                N::Slack { url_env } | N::Discord { url_env } => named.push(url_env.clone()),
                N::Matrix { token_env, .. } => named.push(token_env.clone()),
                N::Ntfy {
                    token_env: Some(k), ..
                }
                | N::Email {
                    password_env: Some(k),
                    ..
                }
                | N::Webhook {
                    secret_env: Some(k),
                    ..
                } => named.push(k.clone()),
                _ => {}
            }
        }
        named.extend(
            autogit_core::platform::FILE_VARIANTS
                .iter()
                .map(|k| (*k).to_owned()),
        );
        v.extend(
            s.env
                .iter()
                .filter(|(k, _)| secretish(k) || named.contains(k))
                .map(|(_, v)| v.clone()),
        );
        for k in &named {
            if let Ok(Some(x)) = s.secret(k) {
                v.push(x);
            }
        }
        // Webhook URLs may carry their credentials in the path.
        for n in &s.config.health.notify {
            if let autogit_core::config::Notify::Webhook { url, .. } = n {
                v.push(url.clone());
            }
        }
        // Only a store that exists: looking must not create one (or its key).
        if s.data_dir.join("secrets").is_dir()
            && let Ok(store) = autogit_drivers::secrets::SecretStore::open(&s.data_dir)
            && let Ok(names) = store.names()
        {
            use secrecy::ExposeSecret;
            for n in names {
                if let Ok(Some(x)) = store.get(&n) {
                    v.push(x.expose_secret().to_owned());
                }
            }
        }
        v.retain(|x| x.len() >= 6);
        v.sort();
        v.dedup();
        v
    }

    /// The support bundle: configuration and `.env` (secrets redacted), the plan, the state
    /// history, recent logs of each container and the check results, as a `.tar.gz` written
    /// atomically (0600). Every text passes `core::diagnose::redact_text` with every known
    /// secret.
    pub async fn bundle(
        &self,
        path: &Path,
        checks: &[Check],
    ) -> Result<BundleReport, DiagnoseError> {
        let s = &self.settings;
        let secrets = self.known_secrets();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let red = |t: &str| d::redact_text(t, &refs).into_bytes();
        let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let now = self.clock.now();
        files.push((
            "README.txt".into(),
            format!(
                "autogit diagnose bundle, {}\nautogit {}\n\nchecks.json: the checks; config/: autogit.yml and .env (every value but plain settings replaced by <redacted>); plan.json; state/: services, transitions, events; logs/: the last lines of each container.\nEvery file was scrubbed like the log store (tokens, keys, JWTs, credentials in URLs, secret fields) and every known secret value was replaced, also in base64 and hex.\n",
                autogit_core::civil::rfc3339_utc(now),
                env!("CARGO_PKG_VERSION")
            )
            .into_bytes(),
        ));
        files.push((
            "checks.json".into(),
            red(&json(&serde_json::json!({
                "worst": d::worst(checks),
                "checks": checks,
            }))),
        ));
        if let Some(p) = &s.config_path
            && let Ok(t) = std::fs::read_to_string(p)
        {
            files.push(("config/autogit.yml".into(), red(&t)));
        }
        if let Some(p) = &s.env_path
            && let Ok(t) = std::fs::read_to_string(p)
        {
            files.push((
                "config/env".into(),
                d::redact_dotenv(&t, &refs).into_bytes(),
            ));
        }
        match crate::plan::quiet(s) {
            Ok(plan) => files.push((
                "plan.json".into(),
                red(&json(&serde_json::to_value(&plan).unwrap_or_default())),
            )),
            Err(e) => files.push(("plan-error.txt".into(), red(&e))),
        }
        if s.state_db().exists()
            && let Ok(store) = Store::open(&s.state_db())
        {
            if let Ok(rows) = store.services() {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({"service": r.service, "state": r.state, "since": r.since,
                            "reason": r.reason, "restarts": r.restarts, "flagged": r.flagged,
                            "flag_reason": r.flag_reason})
                    })
                    .collect();
                files.push(("state/services.json".into(), red(&json(&v.into()))));
            }
            if let Ok(t) = store.transitions(None, 1000) {
                files.push((
                    "state/transitions.json".into(),
                    red(&json(&serde_json::to_value(&t).unwrap_or_default())),
                ));
            }
            // The last 1000 events (`None` would start at the end; transitions are above).
            if let Ok((_, (e_end, t_end))) = store.feed_after(None, 0)
                && let Ok((rows, _)) = store.feed_after(Some(((e_end - 1000).max(0), t_end)), 1000)
            {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(_, r)| match r {
                        autogit_drivers::state::FeedRow::Event {
                            at,
                            service,
                            kind,
                            detail,
                        } => serde_json::json!({"at": at, "service": service, "kind": kind,
                            "detail": serde_json::from_str::<serde_json::Value>(detail)
                                .unwrap_or_else(|_| detail.clone().into())}),
                        autogit_drivers::state::FeedRow::Transition(t) => {
                            serde_json::json!({"transition": t})
                        }
                    })
                    .collect();
                files.push(("state/events.json".into(), red(&json(&v.into()))));
            }
        }
        if let Ok(engine) = tokio::time::timeout(self.timeout, Docker::connect(s.socket(), &s.env))
            .await
            .map_err(|_| ())
            .and_then(|r| r.map_err(|_| ()))
            && let Ok(Ok(observed)) =
                tokio::time::timeout(self.timeout, engine.list(&s.config.platform.project)).await
        {
            for o in observed {
                if let Ok(Ok(lines)) =
                    tokio::time::timeout(self.timeout, engine.logs(&o.id, None, Some(500))).await
                {
                    files.push((format!("logs/{}.log", o.service), red(&lines.join("\n"))));
                }
            }
        }
        let bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
        let names = files.iter().map(|(n, _)| n.clone()).collect();
        autogit_drivers::bundle::write_tar_gz(path, "autogit-diagnose", &files, now).map_err(
            |e| DiagnoseError::Bundle {
                path: path.display().to_string(),
                message: e.to_string(),
            },
        )?;
        Ok(BundleReport {
            path: path.display().to_string(),
            files: names,
            bytes,
            secrets_redacted: secrets.len(),
        })
    }
}

fn container_facts(o: &Observed) -> d::ContainerFacts {
    d::ContainerFacts {
        state: match o.state {
            RunState::Created => "created",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Restarting => "restarting",
            RunState::Exited => "exited",
            RunState::Dead => "dead",
            RunState::Other => "unknown",
        }
        .to_owned(),
        health: match o.health {
            Health::None => "none",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
        .to_owned(),
        exit_code: (o.state != RunState::Running)
            .then_some(o.exit_code)
            .flatten(),
        oom_killed: o.oom_killed,
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Runs the futures concurrently on this task and returns their outputs in order.
async fn join_all<F: Future>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    futures_util::future::join_all(fs).await
}
