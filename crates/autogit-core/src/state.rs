//! The platform as it is: one model ([`PlatformState`]) that every exporter reads, built
//! either from the configuration and its plan ([`from_config`]) or from what the engine runs
//! ([`from_container`], filled in by the application layer's capture), and [`drift`], the
//! differences between the two.
//!
//! **Invariant:** the model never holds a secret's value. A variable the plan passes as a
//! secret is an [`EnvValue::Secret`] (its name is the reference); a variable found on a
//! running container that the configuration does not name is [`EnvValue::Withheld`]: its
//! name only, since nothing tells whether its value is a secret.

use crate::config::{Config, GpuVendor, IngressKind, RunnerMode};
use crate::container::{ContainerSpec, MountSpec, labels};
use crate::dns::{Change, DnsPlan, DnsTarget, Record, desired_records};
use crate::plan::{
    HealthCheck, HostPath, Mount, Placement, Plan, Probe, Protocol, Role, ServiceSpec,
};
use crate::platform::{DnsProvider, PlatformEnv};
use crate::preset::Preset;
use crate::units::{Bytes, Dur};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Where a [`PlatformState`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The configuration and its plan (`--from config`).
    Config,
    /// The engine's containers and the state store (`--from running`).
    Running,
}

/// The whole platform.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlatformState {
    pub origin: Origin,
    pub project: String,
    /// The network every local service joins (its short name; the engine's is
    /// `<project>_<network>`).
    pub network: String,
    pub base_domain: Option<String>,
    pub preset: Preset,
    pub ingress: Option<IngressState>,
    /// Sorted by name.
    pub services: Vec<ServiceState>,
    /// Where the platform's DNS records live (`DNS_PROVIDER`; `none` without one).
    pub dns_provider: DnsProvider,
    /// The records the platform wants at its DNS provider (ownership TXT records included).
    pub dns: Vec<Record>,
    pub certificates: Vec<CertificateState>,
    pub acme: Option<AcmeState>,
    pub runners: Vec<RunnerHost>,
    pub mirrors: Vec<MirrorSource>,
    /// How a cluster stores the volumes (`platform.storage_class`, `platform.volume_sizes`).
    #[serde(skip_serializing_if = "Storage::is_default")]
    pub storage: Storage,
}

/// The volumes' claims in a cluster: their StorageClass and the sizes set in the
/// configuration (the others get their preset's, [`crate::kubernetes::volume_size`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Storage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sizes: BTreeMap<String, Bytes>,
}

impl Storage {
    pub fn is_default(&self) -> bool {
        *self == Storage::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressClass {
    Traefik,
    Nginx,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngressState {
    pub class: IngressClass,
    /// Address ranges let in (empty: everyone).
    pub allow: Vec<String>,
    /// The guard's forward-auth address.
    pub guard: Option<String>,
    /// GitLab's container registry is routed at `registry.<base domain>` ([`crate::registry`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub registry: bool,
}

/// How the platform certificate is obtained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Challenge {
    /// The wildcard by DNS-01 through the platform's DNS provider.
    Dns01 {
        provider: DnsProvider,
        /// The provider's settings that are not secrets (RFC2136_SERVER, AWS_REGION, ...).
        settings: BTreeMap<String, String>,
        /// The variables holding the provider's secrets (references, never values).
        secrets: Vec<String>,
    },
    /// Each routed name by HTTP-01 through the ingress.
    Http01,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AcmeState {
    /// The directory URL.
    pub directory: String,
    pub email: Option<String>,
    pub challenge: Challenge,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateState {
    /// `wildcard` for the platform certificate.
    pub name: String,
    pub dns_names: Vec<String>,
    /// The identifier of the certificate on disk (changes with each renewal), if any.
    pub current: Option<String>,
    /// When the certificate on disk expires (unix seconds), as captured (`--from running`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunnerHost {
    pub name: String,
    /// `local`, `auto` or the host reached over SSH.
    pub host: String,
    pub executor: String,
    pub concurrent: u32,
    pub tags: Vec<String>,
    pub gpu: Option<GpuVendor>,
    pub wsl2: bool,
    pub on_demand: bool,
    /// What the state store recorded of it (`export --from running`); `None` from the
    /// configuration alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<RunnerRecord>,
}

/// A runner as the state store last recorded it: its registration and its host's last
/// probe (the daemon probes every runner host each pass).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunnerRecord {
    /// The registration's state: `registered` (gitlab-runner on the host has it), `token`
    /// (GitLab created the runner, the host has not registered it yet); `None`: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    /// The host's last probe; `None`: never probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<HostProbe>,
    /// The runner's containers running on its host, counted at capture (over SSH, or
    /// locally); `None`: not looked at, or the host did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<u32>,
}

/// One probe of a runner host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostProbe {
    pub reachable: bool,
    /// Unix seconds.
    pub checked_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the capture itself reached the host (true) or this is the daemon's last
    /// recorded probe (false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MirrorSource {
    pub name: String,
    /// `git`, `github` or `gitlab`.
    pub kind: String,
    pub source: String,
    /// `namespace/name` in GitLab.
    pub target: String,
    /// The variable holding the source's token (a reference, never the token).
    pub token_env: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum EnvValue {
    /// A value from the configuration: not a secret.
    Plain(String),
    /// A secret, passed from the environment of whoever deploys; the variable's name is the
    /// reference (a compose `${NAME}`, a Kubernetes Secret key).
    Secret,
    /// A host path only the deploying host knows.
    HostPath(HostPath),
    /// Found on a running container, not named by the configuration: the value is not
    /// captured (it may be a secret).
    Withheld,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(flatten)]
    pub value: EnvValue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Port {
    /// `http`, `ssh`, ...; `None` when captured (the engine does not name ports).
    pub name: Option<String>,
    pub bind: Option<String>,
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resources {
    pub cpus: f64,
    pub memory: Bytes,
    pub shm_size: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthState {
    /// What autogit probes; `None` when captured (the engine only knows its test command).
    pub probe: Option<Probe>,
    pub ready_path: Option<String>,
    /// The engine's HEALTHCHECK test (`["CMD", ...]` or `["CMD-SHELL", "..."]`).
    pub test: Vec<String>,
    pub interval: Dur,
    pub timeout: Dur,
    pub retries: u32,
    pub start_period: Dur,
}

/// How the ingress reaches a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// `<subdomain>.<base domain>`.
    pub host: String,
    pub subdomain: String,
    pub port: u16,
    /// The ingress middlewares, in order.
    pub middlewares: Vec<String>,
    /// Other hosts routed to the same service (`dash.<base domain>` for the API).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// A GPU request (GPU runners).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GpuRequest {
    pub vendor: GpuVendor,
    pub count: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceState {
    pub name: String,
    pub role: Role,
    /// `repository:tag`.
    pub image: String,
    pub container_name: String,
    /// The container's host name, where the plan sets one (GitLab: its external host).
    pub hostname: Option<String>,
    pub resources: Resources,
    pub command: Vec<String>,
    pub ports: Vec<Port>,
    /// In the plan's order: plain values, host paths, secrets.
    pub env: Vec<EnvVar>,
    pub mounts: Vec<Mount>,
    pub health: Option<HealthState>,
    pub depends_on: Vec<String>,
    pub networks: Vec<String>,
    /// Host devices the service's jobs use (`/dev/dxg` for WSL2 GPU runners: passed to the job
    /// containers by the runner's `config.toml`, not to the runner itself).
    pub devices: Vec<String>,
    pub gpu: Option<GpuRequest>,
    /// The plan's descriptive labels (`git`, `metrics`, `executor=docker`, ...).
    pub labels: Vec<String>,
    pub route: Option<Route>,
    pub placement: Placement,
    pub on_demand: bool,
}

impl ServiceState {
    /// Runs on this host and is created with the platform (not an on-demand runner).
    pub fn always_local(&self) -> bool {
        self.placement == Placement::Local && !self.on_demand
    }

    pub fn env_value(&self, name: &str) -> Option<&EnvValue> {
        self.env.iter().find(|e| e.name == name).map(|e| &e.value)
    }
}

impl PlatformState {
    pub fn service(&self, name: &str) -> Option<&ServiceState> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The engine's name of the platform network.
    pub fn network_name(&self) -> String {
        crate::container::network_name(&self.project, &self.network)
    }
}

/// Middlewares every routed service gets, in order (defined in the ingress configuration).
pub const MIDDLEWARES: [&str; 3] = ["security-headers", "rate-limit", "body-limit"];

/// A router's middlewares, in order: the IP allowlist first (reject before any work), the
/// shared ones, then the guard for the services it checks.
pub fn router_middlewares(plan: &Plan, service: &str) -> Vec<String> {
    let mut m = Vec::new();
    // A service behind Cloudflare's proxy is rate-limited and allowlisted per client address
    // as Cloudflare forwards it, not per edge address (which would put every visitor in one
    // bucket, and let every visitor through an allowlist that names the edge).
    let proxied = plan
        .services
        .iter()
        .find(|s| s.name == service)
        .and_then(|s| s.subdomain.as_ref())
        .is_some_and(|sub| plan.cloudflare_proxied.contains(sub));
    if !plan.ingress_allow.is_empty() {
        m.push(if proxied {
            crate::ingress::CLOUDFLARE_ALLOWLIST.to_owned()
        } else {
            "ip-allowlist".to_owned()
        });
    }
    m.extend(MIDDLEWARES.iter().map(|s| match *s {
        "rate-limit" if proxied => crate::ingress::CLOUDFLARE_RATE_LIMIT.to_owned(),
        s => s.to_owned(),
    }));
    if let Some((_, services)) = &plan.guard
        && services.iter().any(|s| s == service)
    {
        m.push("guard".to_owned());
    }
    if plan
        .guard_proxy
        .as_ref()
        .is_some_and(|g| g.services.iter().any(|s| s == service))
    {
        m.push("guard-headers".to_owned());
    }
    m
}

/// The engine's HEALTHCHECK test for a service's health check (GitLab and the API have their
/// own), with its further probes ([`HealthCheck::also`]) in the same test.
pub fn health_test(h: &HealthCheck, role: Role) -> Vec<String> {
    match (role, &h.probe) {
        // The GitLab image ships its own check that reads the right port and path.
        (Role::Gitlab, _) if h.also.is_empty() => {
            ["CMD", GITLAB_HEALTHCHECK, "--fail", "--max-time", "10"]
                .map(str::to_owned)
                .to_vec()
        }
        (Role::Gitlab, _) => {
            let mut script = format!("{GITLAB_HEALTHCHECK} --fail --max-time 10 || exit 1");
            for p in &h.also {
                script.push('\n');
                script.push_str(&gitlab_also(p));
            }
            vec!["CMD-SHELL".into(), script]
        }
        (Role::Api | Role::Guard, Probe::Http { port, path, .. }) => {
            crate::container::api_healthcheck(*port, path)
        }
        (_, Probe::Http { port, path, .. }) => vec![
            "CMD".into(),
            "wget".into(),
            "-q".into(),
            "-O".into(),
            "/dev/null".into(),
            format!("http://127.0.0.1:{port}{path}"),
        ],
        (_, Probe::Tcp { port }) => vec![
            "CMD-SHELL".into(),
            format!(
                "nc -z 127.0.0.1 {port} || wget -q -O /dev/null http://127.0.0.1:{port}/ || exit 1"
            ),
        ],
        (_, Probe::Command { argv }) => std::iter::once("CMD".to_owned())
            .chain(argv.iter().cloned())
            .collect(),
    }
}

/// GitLab's own check (`curl` with the health URL of its configuration; the arguments are
/// curl's).
const GITLAB_HEALTHCHECK: &str = "/opt/gitlab/bin/gitlab-healthcheck";

/// One further probe inside GitLab's container, in `sh`: its curl (Omnibus's embedded one)
/// must get the probe's status, else the line says what answered and the check fails.
fn gitlab_also(p: &Probe) -> String {
    match p {
        Probe::Http {
            port, path, status, ..
        } => format!(
            "code=$(/opt/gitlab/embedded/bin/curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://127.0.0.1:{port}{path}); \
             [ \"$code\" = {status} ] || {{ echo \"127.0.0.1:{port}{path} answered ${{code:-nothing}}, not {status}\"; exit 1; }}"
        ),
        Probe::Tcp { port } => format!(
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' || {{ echo \"nothing listens on 127.0.0.1:{port}\"; exit 1; }}"
        ),
        Probe::Command { argv } => argv.join(" "),
    }
}

fn gitlab_external_host(s: &ServiceSpec) -> Option<String> {
    if s.role != Role::Gitlab {
        return None;
    }
    s.environment.get("GITLAB_OMNIBUS_CONFIG").and_then(|c| {
        c.lines()
            .find_map(|l| l.strip_prefix("external_url '"))
            .and_then(|u| crate::validate::url_host(u.trim_end_matches('\'')).map(str::to_owned))
    })
}

/// One service of the plan.
pub fn service_from_plan(plan: &Plan, s: &ServiceSpec) -> ServiceState {
    let mut env: Vec<EnvVar> = s
        .environment
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: EnvValue::Plain(v.clone()),
        })
        .collect();
    env.extend(s.host_env.iter().map(|(k, p)| EnvVar {
        name: k.clone(),
        value: EnvValue::HostPath(*p),
    }));
    env.extend(s.secret_env.iter().map(|k| EnvVar {
        name: k.clone(),
        value: EnvValue::Secret,
    }));
    let route = match (&s.subdomain, s.internal_port, &plan.base_domain) {
        (Some(sub), Some(port), Some(domain)) => Some(Route {
            host: format!("{sub}.{domain}"),
            subdomain: sub.clone(),
            port,
            middlewares: router_middlewares(plan, &s.name),
            aliases: s
                .hosts()
                .into_iter()
                .skip(1)
                .map(|a| format!("{a}.{domain}"))
                .collect(),
        }),
        _ => None,
    };
    ServiceState {
        name: s.name.clone(),
        role: s.role,
        image: s.image.to_string(),
        container_name: format!("{}-{}", plan.project, s.name),
        hostname: gitlab_external_host(s),
        resources: Resources {
            cpus: s.cpus,
            memory: s.memory,
            shm_size: s.shm_size,
        },
        command: s.command.clone(),
        ports: s
            .ports
            .iter()
            .map(|p| Port {
                name: Some(p.name.clone()),
                bind: p.bind.clone(),
                host: p.host,
                container: p.container,
                protocol: p.protocol,
            })
            .collect(),
        env,
        mounts: s.mounts.clone(),
        health: s.health.as_ref().map(|h| HealthState {
            probe: Some(h.probe.clone()),
            ready_path: h.ready_path.clone(),
            test: health_test(h, s.role),
            interval: h.interval,
            timeout: h.timeout,
            retries: h.retries,
            start_period: h.start_period,
        }),
        depends_on: s.depends_on.clone(),
        networks: vec![plan.network.clone()],
        devices: Vec::new(),
        gpu: None,
        labels: s.labels.clone(),
        route,
        placement: s.placement.clone(),
        on_demand: s.on_demand,
    }
}

/// The services of a plan, and what the plan alone says about the platform (no DNS,
/// certificates, runner hosts or mirrors: [`from_config`] adds them).
pub fn from_plan(plan: &Plan) -> PlatformState {
    let mut services: Vec<ServiceState> = plan
        .services
        .iter()
        .map(|s| service_from_plan(plan, s))
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let ingress = plan
        .services
        .iter()
        .find(|s| s.role == Role::Ingress)
        .map(|s| IngressState {
            class: if s.name == "nginx" {
                IngressClass::Nginx
            } else {
                IngressClass::Traefik
            },
            allow: plan.ingress_allow.clone(),
            guard: plan.guard.as_ref().map(|(a, _)| a.clone()),
            registry: plan.registry,
        });
    PlatformState {
        origin: Origin::Config,
        project: plan.project.clone(),
        network: plan.network.clone(),
        base_domain: plan.base_domain.clone(),
        preset: plan.preset,
        ingress,
        services,
        dns_provider: DnsProvider::None,
        dns: Vec::new(),
        certificates: Vec::new(),
        acme: None,
        runners: Vec::new(),
        mirrors: Vec::new(),
        storage: Storage::default(),
    }
}

/// DNS provider settings that are not secrets, by provider: what a DNS-01 solver elsewhere
/// (cert-manager) needs besides the secret references.
pub fn dns_public_keys(
    provider: DnsProvider,
) -> (&'static [&'static str], &'static [&'static str]) {
    match provider {
        DnsProvider::Rfc2136 => (
            &[
                "RFC2136_SERVER",
                "RFC2136_TSIG_KEY_NAME",
                "RFC2136_TSIG_ALGORITHM",
            ],
            &["RFC2136_TSIG_SECRET"],
        ),
        DnsProvider::Cloudflare => (&["CLOUDFLARE_ZONE_ID"], &["CLOUDFLARE_API_TOKEN"]),
        DnsProvider::Route53 => (
            &["AWS_ACCESS_KEY_ID", "AWS_HOSTED_ZONE_ID", "AWS_REGION"],
            &["AWS_SECRET_ACCESS_KEY"],
        ),
        DnsProvider::Gcloud => (
            &["GCP_PROJECT", "GCP_MANAGED_ZONE"],
            &["GCP_SERVICE_ACCOUNT_FILE"],
        ),
        DnsProvider::None | DnsProvider::Dnsmasq | DnsProvider::Manual | DnsProvider::Extension => {
            (&[], &[])
        }
    }
}

/// The platform the configuration describes: the plan's services, the DNS records, the
/// certificate and how it is obtained, runner hosts and mirror sources. `setting` looks up a
/// `.env`/environment value; only the non-secret keys of [`dns_public_keys`] are asked for.
pub fn from_config(
    config: &Config,
    env: &PlatformEnv,
    plan: &Plan,
    setting: &dyn Fn(&str) -> Option<String>,
) -> PlatformState {
    let mut st = from_plan(plan);
    st.storage = Storage {
        class: config.platform.storage_class.clone(),
        sizes: config.platform.volume_sizes.clone(),
    };
    for r in config.all_runners() {
        if let Some(s) = st
            .services
            .iter_mut()
            .find(|s| s.name == format!("runner-{}", r.name))
        {
            if let Some(v) = r.gpu {
                s.gpu = Some(GpuRequest {
                    vendor: v,
                    count: 1,
                });
            }
            if r.wsl2 {
                s.devices.push("/dev/dxg".to_owned());
            }
        }
        st.runners.push(RunnerHost {
            name: r.name.clone(),
            host: r.host.clone(),
            executor: serde_json::to_value(r.executor)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            concurrent: r.concurrent,
            tags: r.tags.clone(),
            gpu: r.gpu,
            wsl2: r.wsl2,
            on_demand: config.runners.mode == RunnerMode::OnDemand,
            recorded: None,
        });
    }
    st.runners.sort_by(|a, b| a.name.cmp(&b.name));
    st.mirrors = crate::mirror::planned(&config.mirroring)
        .into_iter()
        .map(|m| MirrorSource {
            name: m.name,
            kind: m.kind.to_owned(),
            source: m.source,
            target: m.target.full(),
            token_env: m.token_env,
        })
        .collect();
    st.dns_provider = env.dns_provider;
    if let Ok(target) = DnsTarget::from_plan(plan, env, env.dns_ttl) {
        st.dns = desired_records(&target, &plan.project);
    }
    if let Some(domain) = &plan.base_domain
        && config.platform.ingress != IngressKind::None
    {
        let challenge = if env.acme_http01 {
            Challenge::Http01
        } else {
            let (public, secret) = dns_public_keys(env.dns_provider);
            Challenge::Dns01 {
                provider: env.dns_provider,
                settings: public
                    .iter()
                    .filter_map(|k| setting(k).map(|v| ((*k).to_owned(), v)))
                    .collect(),
                secrets: secret.iter().map(|k| (*k).to_owned()).collect(),
            }
        };
        let dns_names = match challenge {
            Challenge::Http01 => plan
                .routed_subdomains()
                .iter()
                .map(|sub| format!("{sub}.{domain}"))
                .collect(),
            Challenge::Dns01 { .. } => crate::tls::certificate_names(domain),
        };
        st.certificates.push(CertificateState {
            name: "wildcard".to_owned(),
            dns_names,
            current: plan.tls.clone(),
            not_after: None,
        });
        st.acme = Some(AcmeState {
            directory: crate::tls::directory_url(&env.acme_directory).to_owned(),
            email: env.acme_email.clone(),
            challenge,
        });
    }
    st
}

/// One running container as a service of the model. `rendered_dir` is the absolute
/// directory of the rendered files (a bind mount from under it is a rendered file);
/// `known` is the configuration's service of the same name, which says which variables are
/// plain (their captured values are kept), which are secrets (a reference) and which are
/// host paths. Every other variable is [`EnvValue::Withheld`]. What a container does not
/// carry comes from `known` too: the role, the route, `depends_on`, the descriptive labels,
/// the GPU request and what the health check probes (when the engine runs the configured
/// check); the order of ports and mounts follows the configuration's.
pub fn from_container(
    spec: &ContainerSpec,
    project: &str,
    rendered_dir: &str,
    known: Option<&ServiceState>,
) -> ServiceState {
    let service = spec
        .labels
        .get(labels::SERVICE)
        .cloned()
        .unwrap_or_else(|| spec.service.clone());
    let mut env: Vec<EnvVar> = spec
        .env
        .keys()
        .map(|k| EnvVar {
            name: k.clone(),
            value: match known.and_then(|s| s.env_value(k)) {
                Some(EnvValue::Plain(_)) => EnvValue::Plain(spec.env[k].clone()),
                Some(EnvValue::Secret) => EnvValue::Secret,
                Some(EnvValue::HostPath(p)) => EnvValue::HostPath(*p),
                Some(EnvValue::Withheld) | None => EnvValue::Withheld,
            },
        })
        .collect();
    // The plan's order (plain, host paths, secrets), then what the configuration does not name.
    let rank = |e: &EnvVar| match &e.value {
        EnvValue::Plain(_) => 0,
        EnvValue::HostPath(_) => 1,
        EnvValue::Secret => 2,
        EnvValue::Withheld => 3,
    };
    env.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.name.cmp(&b.name)));
    let volume_prefix = format!("{project}_");
    let rendered_prefix = format!("{}/", rendered_dir.trim_end_matches('/'));
    let mut mounts: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|m| match m {
            MountSpec::Volume { name, target } => Mount::Volume {
                name: name.strip_prefix(&volume_prefix).unwrap_or(name).to_owned(),
                target: target.clone(),
            },
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => match source.strip_prefix(&rendered_prefix) {
                Some(file) if *read_only => Mount::Rendered {
                    file: file.to_owned(),
                    target: target.clone(),
                },
                _ => Mount::Host {
                    path: source.clone(),
                    target: target.clone(),
                    read_only: *read_only,
                },
            },
        })
        .collect();
    // Nor the order of mounts (compose's binds come back in any order).
    if let Some(k) = known {
        mounts.sort_by_key(|m| k.mounts.iter().position(|km| km == m).unwrap_or(usize::MAX));
    }
    let network_prefix = format!("{project}_");
    let known_ports = known.map(|k| k.ports.as_slice()).unwrap_or_default();
    // The engine does not keep the order of port mappings: the configuration's order, then
    // the rest.
    let mut engine_ports = spec.ports.clone();
    engine_ports.sort_by_key(|p| {
        known_ports
            .iter()
            .position(|k| k.container == p.container_port && k.host == p.host_port)
            .unwrap_or(usize::MAX)
    });
    // A container the configuration does not know: a runner by its name, else a workload
    // like the observability ones (no special handling by any generator).
    let role = known.map_or_else(
        || {
            if service.starts_with("runner-") {
                Role::Runner
            } else {
                Role::Observability
            }
        },
        |k| k.role,
    );
    ServiceState {
        role,
        image: spec.image.clone(),
        container_name: spec.name.clone(),
        // autogit names the container's host after its service; the configuration's host name
        // (GitLab's external host, what compose sets) is the one the model keeps.
        hostname: known
            .and_then(|k| k.hostname.clone())
            .or_else(|| spec.hostname.clone()),
        resources: Resources {
            cpus: spec.nano_cpus as f64 / 1e9,
            memory: Bytes(u64::try_from(spec.memory_bytes).unwrap_or(0)),
            shm_size: spec
                .shm_size_bytes
                .and_then(|b| u64::try_from(b).ok())
                .map(Bytes),
        },
        command: spec.command.clone(),
        ports: engine_ports
            .iter()
            .map(|p| Port {
                // Named as the configuration names the same mapping.
                name: known_ports
                    .iter()
                    .find(|k| k.container == p.container_port && k.host == p.host_port)
                    .and_then(|k| k.name.clone()),
                bind: p.host_ip.clone(),
                host: p.host_port,
                container: p.container_port,
                protocol: if p.udp { Protocol::Udp } else { Protocol::Tcp },
            })
            .collect(),
        env,
        mounts,
        health: spec.healthcheck.as_ref().map(|h| {
            // The engine runs the configuration's check: what it probes is known too.
            let same = known
                .and_then(|k| k.health.as_ref())
                .filter(|k| k.test == h.test);
            HealthState {
                probe: same.and_then(|k| k.probe.clone()),
                ready_path: same.and_then(|k| k.ready_path.clone()),
                test: h.test.clone(),
                interval: Dur::secs(h.interval_secs),
                timeout: Dur::secs(h.timeout_secs),
                retries: h.retries,
                start_period: Dur::secs(h.start_period_secs),
            }
        }),
        depends_on: known.map(|k| k.depends_on.clone()).unwrap_or_default(),
        networks: vec![
            spec.network
                .strip_prefix(&network_prefix)
                .unwrap_or(&spec.network)
                .to_owned(),
        ],
        devices: Vec::new(),
        gpu: known.and_then(|k| k.gpu.clone()),
        labels: known.map(|k| k.labels.clone()).unwrap_or_default(),
        route: known.and_then(|k| k.route.clone()),
        placement: Placement::Local,
        on_demand: known.is_some_and(|k| k.on_demand),
        name: service,
    }
}

/// The platform as the engine runs it: one service per managed container (read through
/// [`from_container`], the configuration's service of the same name telling plain variables
/// from secrets), with the identity of the platform (project, network, domain, preset,
/// ingress) and what the engine cannot show (certificate, ACME, DNS records, runner hosts,
/// mirror sources) taken from `config` until the caller replaces them with what it read
/// elsewhere (the state store).
pub fn from_containers(
    config: &PlatformState,
    containers: &[ContainerSpec],
    rendered_dir: &str,
) -> PlatformState {
    let mut services: Vec<ServiceState> = containers
        .iter()
        .map(|c| {
            let name = c
                .labels
                .get(labels::SERVICE)
                .map_or(c.service.as_str(), String::as_str);
            from_container(c, &config.project, rendered_dir, config.service(name))
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    PlatformState {
        origin: Origin::Running,
        services,
        ..config.clone()
    }
}

/// The platform's records as the zone holds them, from what the platform wants (`desired`)
/// and the plan that would make the zone so (`core::dns::dns_plan` against the zone): the
/// desired records less those still to create, the zone's version of those to update, and
/// the owned records still to delete. A desired name in conflict (held by records autogit
/// does not own) has none of the platform's.
pub fn dns_found(desired: &[Record], plan: &DnsPlan) -> Vec<Record> {
    let conflicted: BTreeSet<&str> = plan.conflicts.iter().map(|c| c.name.as_str()).collect();
    let mut found: Vec<Record> = desired
        .iter()
        .filter(|r| !conflicted.contains(r.name.as_str()))
        .filter(|r| {
            !plan.changes.iter().any(|c| match c {
                Change::Create { record } => record == *r,
                Change::Update { to, .. } => to == *r,
                Change::Delete { .. } => false,
            })
        })
        .cloned()
        .collect();
    for c in &plan.changes {
        match c {
            Change::Update { from, .. } => found.push(from.clone()),
            Change::Delete { record } => found.push(record.clone()),
            Change::Create { .. } => {}
        }
    }
    found.sort();
    found.dedup();
    found
}

/// One difference between the configuration and what runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Drift {
    /// The service, or `None` for the platform as a whole (`dns`).
    pub service: Option<String>,
    /// What differs: `service`, `image`, `command`, `ports`, `env.NAME`, `mounts`, `cpus`,
    /// `memory`, `shm_size`, `health`, `networks`.
    pub field: String,
    /// What the configuration says (`absent` when it has none).
    pub expected: String,
    /// What runs (`absent` when nothing does).
    pub found: String,
}

fn show<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn env_show(v: Option<&EnvValue>) -> String {
    match v {
        None => "absent".to_owned(),
        Some(EnvValue::Plain(p)) => format!("{p:?}"),
        Some(EnvValue::Secret) => "a secret (set)".to_owned(),
        Some(EnvValue::HostPath(p)) => format!("the host path {}", p.compose_var()),
        Some(EnvValue::Withheld) => "set (value not captured)".to_owned(),
    }
}

/// The differences between the configuration's state and the captured one, sorted. Only
/// services that run on this host are compared (remote runners are not on this engine; an
/// on-demand runner that does not exist yet is not a difference), and the host name is not
/// (the engine's is the service name, the configuration's the external host). A plain
/// variable the plan resolves to a host path compares equal to a captured plain value. DNS
/// records are compared one by one (`dns`: a record wanted and not in the zone, or owned and
/// not wanted).
pub fn drift(config: &PlatformState, captured: &PlatformState) -> Vec<Drift> {
    let mut out = Vec::new();
    for r in config.dns.iter().filter(|r| !captured.dns.contains(r)) {
        out.push(Drift {
            service: None,
            field: "dns".into(),
            expected: r.to_string(),
            found: "absent".into(),
        });
    }
    for r in captured.dns.iter().filter(|r| !config.dns.contains(r)) {
        out.push(Drift {
            service: None,
            field: "dns".into(),
            expected: "absent".into(),
            found: r.to_string(),
        });
    }
    // The certificate: on disk at all, and covering every name the platform wants.
    for want in &config.certificates {
        let field = format!("certificate.{}", want.name);
        match captured.certificates.iter().find(|c| c.name == want.name) {
            None => out.push(Drift {
                service: None,
                field,
                expected: "present".into(),
                found: "absent: no certificate on disk yet (`autogit tls renew`)".into(),
            }),
            Some(got) => {
                let missing: Vec<&str> = want
                    .dns_names
                    .iter()
                    .filter(|n| !got.dns_names.contains(n))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() {
                    out.push(Drift {
                        service: None,
                        field,
                        expected: want.dns_names.join(", "),
                        found: format!(
                            "{} (missing {}: `autogit tls renew --force`)",
                            got.dns_names.join(", "),
                            missing.join(", ")
                        ),
                    });
                }
            }
        }
    }
    // Runners, as the state store recorded them: registered, and their host answering.
    for got in &captured.runners {
        let Some(rec) = &got.recorded else { continue };
        let service = Some(format!("runner-{}", got.name));
        if config.runners.iter().all(|r| r.name != got.name) {
            continue;
        }
        if rec.registration.as_deref() != Some("registered") {
            out.push(Drift {
                service: service.clone(),
                field: "registration".into(),
                expected: "registered".into(),
                found: match rec.registration.as_deref() {
                    Some("token") => format!(
                        "created in GitLab, not registered on its host yet: `autogit runner register {}`",
                        got.name
                    ),
                    Some(other) => format!("{other}: `autogit runner register {}`", got.name),
                    None => format!("never registered: `autogit runner register {}`", got.name),
                },
            });
        }
        // A runner kept running (`runners.mode: always`) has its container; an on-demand
        // runner has none while idle, so no count is drift for it.
        if !got.on_demand
            && rec.registration.as_deref() == Some("registered")
            && rec.containers == Some(0)
        {
            out.push(Drift {
                service: service.clone(),
                field: "container".into(),
                expected: "running (runners.mode: always)".into(),
                found: format!(
                    "no runner container running on {}: the daemon starts it, or `autogit runner autoscale --once`",
                    got.host
                ),
            });
        }
        if let Some(p) = rec.probe.as_ref().filter(|p| !p.reachable) {
            out.push(Drift {
                service,
                field: "host".into(),
                expected: format!("{} reachable", got.host),
                found: format!(
                    "not reachable at the {} ({}){}",
                    if p.live { "capture" } else { "last probe" },
                    crate::civil::rfc3339_utc(p.checked_at.max(0) as u64),
                    p.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    let mut d = |service: &str, field: &str, expected: String, found: String| {
        out.push(Drift {
            service: Some(service.to_owned()),
            field: field.to_owned(),
            expected,
            found,
        });
    };
    for want in config
        .services
        .iter()
        .filter(|s| s.placement == Placement::Local)
    {
        let Some(got) = captured.service(&want.name) else {
            if !want.on_demand {
                d(&want.name, "service", "present".into(), "absent".into());
            }
            continue;
        };
        let n = want.name.as_str();
        if want.image != got.image {
            d(n, "image", want.image.clone(), got.image.clone());
        }
        if want.command != got.command {
            d(n, "command", show(&want.command), show(&got.command));
        }
        let ports = |s: &ServiceState| {
            let mut v: Vec<(Option<String>, u16, u16, Protocol)> = s
                .ports
                .iter()
                .map(|p| (p.bind.clone(), p.host, p.container, p.protocol))
                .collect();
            v.sort_by_key(|p| (p.1, p.2));
            v
        };
        if ports(want) != ports(got) {
            d(n, "ports", show(&ports(want)), show(&ports(got)));
        }
        let names: BTreeSet<&str> = want
            .env
            .iter()
            .chain(&got.env)
            .map(|e| e.name.as_str())
            .collect();
        for name in names {
            let (a, b) = (want.env_value(name), got.env_value(name));
            let same = match (a, b) {
                (Some(EnvValue::Plain(x)), Some(EnvValue::Plain(y))) => x == y,
                (Some(EnvValue::HostPath(_)), Some(EnvValue::Withheld | EnvValue::HostPath(_))) => {
                    true
                }
                (Some(x), Some(y)) => x == y,
                (None, None) => true,
                _ => false,
            };
            if !same {
                d(n, &format!("env.{name}"), env_show(a), env_show(b));
            }
        }
        let mounts = |s: &ServiceState| {
            let mut v: Vec<String> = s.mounts.iter().map(show).collect();
            v.sort();
            v
        };
        if mounts(want) != mounts(got) {
            d(n, "mounts", mounts(want).join(", "), mounts(got).join(", "));
        }
        // The engine keeps nano-CPUs: compare to a millionth.
        if (want.resources.cpus - got.resources.cpus).abs() > 1e-6 {
            d(
                n,
                "cpus",
                want.resources.cpus.to_string(),
                got.resources.cpus.to_string(),
            );
        }
        if want.resources.memory != got.resources.memory {
            d(
                n,
                "memory",
                want.resources.memory.to_string(),
                got.resources.memory.to_string(),
            );
        }
        if want.resources.shm_size != got.resources.shm_size {
            d(
                n,
                "shm_size",
                show(&want.resources.shm_size),
                show(&got.resources.shm_size),
            );
        }
        let health = |s: &ServiceState| {
            s.health.as_ref().map(|h| {
                (
                    h.test.clone(),
                    h.interval,
                    h.timeout,
                    h.retries,
                    h.start_period,
                )
            })
        };
        if health(want) != health(got) {
            d(n, "health", show(&health(want)), show(&health(got)));
        }
        if want.networks != got.networks {
            d(n, "networks", show(&want.networks), show(&got.networks));
        }
    }
    for got in &captured.services {
        if config.service(&got.name).is_none() {
            d(&got.name, "service", "absent".into(), "present".into());
        }
    }
    out.sort();
    out
}

/// The named volumes `services` mount, each once, in name order (the export generators
/// create them before the containers).
pub fn named_volumes<'a>(
    services: impl IntoIterator<Item = &'a ServiceState>,
) -> BTreeSet<&'a str> {
    services
        .into_iter()
        .flat_map(|s| s.mounts.iter())
        .filter_map(|m| match m {
            Mount::Volume { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withheld_is_never_a_value() {
        let v = EnvVar {
            name: "X".into(),
            value: EnvValue::Withheld,
        };
        assert_eq!(show(&v), r#"{"name":"X","kind":"withheld"}"#);
    }
}
