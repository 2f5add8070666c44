//! The planner: configuration + platform registry + host facts → the desired platform.
//!
//! A [`Plan`] is everything a driver needs to deploy: per service the image with its pinned tag,
//! resources, ports, subdomain, volumes, network, health check and dependencies. It is a pure
//! function of its inputs, so `plan` never touches the system.

use crate::config::{AutoBool, Config, IngressKind, RunnerMode};
use crate::diag::{Diagnostic, Diagnostics};
use crate::platform::{PlatformEnv, PortAllocation, ServiceId};
use crate::preset::{Component, Preset};
use crate::source::Loc;
use crate::units::{Bytes, Dur};
use serde::Serialize;
use std::collections::BTreeMap;

/// Pinned images of the platform's services. Bump deliberately, never `latest`.
pub mod images {
    pub const TRAEFIK: (&str, &str) = ("traefik", "v3.6.8");
    pub const NGINX: (&str, &str) = ("nginx", "1.27.3-alpine");
    pub const GRAFANA: (&str, &str) = ("grafana/grafana", "11.3.0");
    pub const LOKI: (&str, &str) = ("grafana/loki", "3.2.1");
    pub const TEMPO: (&str, &str) = ("grafana/tempo", "2.6.1");
    pub const PROMETHEUS: (&str, &str) = ("prom/prometheus", "v2.55.1");
    pub const MEILISEARCH: (&str, &str) = ("getmeili/meilisearch", "v1.11.3");
    /// Deployed with Prometheus: the host's metrics, the containers' metrics, alert routing.
    pub const NODE_EXPORTER: (&str, &str) = ("prom/node-exporter", "v1.8.2");
    pub const CADVISOR: (&str, &str) = ("gcr.io/cadvisor/cadvisor", "v0.49.1");
    pub const ALERTMANAGER: (&str, &str) = ("prom/alertmanager", "v0.27.0");
    /// NVIDIA's DCGM exporter, rendered for the GPU runner hosts (not deployed by autogit).
    pub const DCGM_EXPORTER: (&str, &str) = (
        "nvcr.io/nvidia/k8s/dcgm-exporter",
        "3.3.8-3.6.0-ubuntu22.04",
    );
    /// The API runs the host's own autogit binary (dynamically linked against glibc), mounted
    /// read-only into a slim Debian image. trixie ships glibc 2.41: a binary built against any
    /// glibc up to that runs (glibc is backwards compatible, not forwards); its `bash` runs
    /// the health check (the image has no wget).
    pub const API_BASE: (&str, &str) = ("debian", "trixie-slim");
}

/// What autogit knows about the machine it plans for.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HostFacts {
    pub cpus: f64,
    pub memory: Bytes,
    /// Whether the container engine runs rootless (cannot bind ports below 1024).
    pub rootless: Option<bool>,
}

/// Where the ingress container sees the platform certificate (`fullchain.pem`, `key.pem`);
/// the binary copies it into `rendered/tls/`.
pub const TLS_DIR: &str = "/etc/autogit/tls";
/// Where the nginx ingress serves HTTP-01 challenge files from (`rendered/acme-http`).
pub const ACME_HTTP_DIR: &str = "/etc/autogit/acme-http";
/// The `api` service's effective configuration: `rendered/api/` (a copy of `autogit.yml` and
/// of `.env`, written at deploy time, 0600), mounted read-only at [`API_CONFIG_DIR`].
pub const API_RENDERED: &str = "api";
pub const API_CONFIG_DIR: &str = "/etc/autogit";
/// Where the `api` container finds the autogit binary and the engine socket.
pub const API_BINARY: &str = "/usr/local/bin/autogit";
pub const API_ENGINE_SOCKET: &str = "/var/run/docker.sock";
/// The guard autogit deploys (docs/ingress.md, "The guard as a platform service"): with
/// `platform.guard_services` set and neither `guard_proxy` nor `guard_forward_auth` naming a
/// guard of the user's, the plan runs `autogit guard serve` (the deploying binary, like the
/// `api` service) as this service on the platform network, and the ingress sends the guarded
/// routes through it ([`GUARD_PORT`]; proxy mode).
pub const GUARD_SERVICE: &str = "guard";
pub const GUARD_PORT: u16 = 8787;
/// `rendered/guard/` (the routes of inference services, `upstreams`, written by the compute
/// controller), mounted read-only as a directory so that its atomic rewrites are seen.
pub const GUARD_RENDERED: &str = "guard";
pub const GUARD_CONFIG_DIR: &str = "/etc/autogit/guard";
/// The guard's data dir inside its container: `<data dir>/guard` is mounted at
/// `<GUARD_DATA_DIR>/guard`, where `guard serve` keeps its quarantine.
pub const GUARD_DATA_DIR: &str = "/var/lib/autogit";

/// A host path that only the deploying autogit knows (where it runs from, its data dir):
/// the plan names it, the app layer resolves it ([`resolve`]) before a container or a compose
/// file is made from the plan, so that core stays pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostPath {
    /// autogit's data dir (absolute).
    DataDir,
    /// The secret store's master key file (outside the data dir).
    KeyFile,
    /// The running autogit binary.
    Binary,
    /// The container engine's unix socket (rootless or system).
    EngineSocket,
    /// `<data dir>/guard`: the quarantine, calibrated thresholds and refitted model of the
    /// guard autogit deploys ([`GUARD_SERVICE`]); the only part of the data dir it sees.
    GuardDir,
}

impl HostPath {
    pub const ALL: [HostPath; 5] = [
        HostPath::DataDir,
        HostPath::KeyFile,
        HostPath::Binary,
        HostPath::EngineSocket,
        HostPath::GuardDir,
    ];

    /// The variable an unresolved compose file reads it from.
    pub fn compose_var(self) -> &'static str {
        match self {
            HostPath::DataDir => "AUTOGIT_DATA_DIR",
            HostPath::KeyFile => "AUTOGIT_KEY_FILE",
            HostPath::Binary => "AUTOGIT_HOST_BINARY",
            HostPath::EngineSocket => "AUTOGIT_HOST_ENGINE_SOCKET",
            HostPath::GuardDir => "AUTOGIT_GUARD_DIR",
        }
    }
}

/// The values of the [`HostPath`]s on this host, absolute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostPaths {
    pub data_dir: String,
    pub key_file: String,
    pub binary: String,
    pub engine_socket: String,
    pub guard_dir: String,
}

impl HostPaths {
    pub fn get(&self, p: HostPath) -> &str {
        match p {
            HostPath::DataDir => &self.data_dir,
            HostPath::KeyFile => &self.key_file,
            HostPath::Binary => &self.binary,
            HostPath::EngineSocket => &self.engine_socket,
            HostPath::GuardDir => &self.guard_dir,
        }
    }
}

/// Replaces every [`Mount::HostPath`] with the [`Mount::Host`] it stands for and moves every
/// `host_env` entry into `environment`, with this host's paths. A resolved plan has neither.
pub fn resolve(plan: &mut Plan, paths: &HostPaths) {
    for s in &mut plan.services {
        for m in &mut s.mounts {
            if let Mount::HostPath {
                of,
                target,
                read_only,
            } = m
            {
                let path = paths.get(*of).to_owned();
                *m = Mount::Host {
                    target: target.clone().unwrap_or_else(|| path.clone()),
                    path,
                    read_only: *read_only,
                };
            }
        }
        for (k, p) in std::mem::take(&mut s.host_env) {
            s.environment.insert(k, paths.get(p).to_owned());
        }
    }
}

/// Whether any service of the plan needs `p` (resolved or not: a resolved plan is asked by
/// the caller that resolved it).
pub fn needs(plan: &Plan, p: HostPath) -> bool {
    plan.services.iter().any(|s| {
        s.host_env.values().any(|v| *v == p)
            || s.mounts
                .iter()
                .any(|m| matches!(m, Mount::HostPath { of, .. } if *of == p))
    })
}

#[derive(Clone, Debug, Default)]
pub struct PlanInput {
    pub host: Option<HostFacts>,
    /// Ports picked by earlier runs in dynamic mode (service name → port).
    pub remembered_ports: BTreeMap<String, u16>,
    /// The platform certificate, when one is on disk: an identifier that changes with every
    /// renewal (its expiry), so rendered configurations change and ingresses reload.
    pub tls_certificate: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ImageRef {
    pub repository: String,
    pub tag: String,
}

impl ImageRef {
    pub fn new(repository: &str, tag: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortMap {
    pub name: String,
    /// Host address to bind; `None` is every address.
    pub bind: Option<String>,
    pub host: u16,
    pub container: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mount {
    /// A named volume managed by the engine (`<project>_<name>`).
    Volume { name: String, target: String },
    /// A file rendered by autogit into the data dir (relative to `rendered/`).
    Rendered { file: String, target: String },
    /// A host path (the engine socket for runners; resolved [`Mount::HostPath`]s).
    Host {
        path: String,
        target: String,
        read_only: bool,
    },
    /// A host path known at deploy time ([`resolve`]); `target: None` mounts it at the same
    /// absolute path (the data dir: paths recorded in the state store stay true inside).
    HostPath {
        of: HostPath,
        target: Option<String>,
        read_only: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Probe {
    /// HTTP GET on the container port; healthy on `status` (and `body` contained, if given).
    Http {
        port: u16,
        path: String,
        status: u16,
        body: Option<String>,
    },
    Tcp {
        port: u16,
    },
    /// A command run inside the container; healthy on exit 0.
    Command {
        argv: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub probe: Probe,
    /// Readiness endpoint (GitLab `/-/readiness`), when the service has one.
    pub ready_path: Option<String>,
    pub interval: Dur,
    pub timeout: Dur,
    pub retries: u32,
    pub start_period: Dur,
    /// Further probes that must pass too, in the same engine health check: a part of the
    /// service that is not its main endpoint but that users reach (GitLab's container
    /// registry). A failing one makes the service unhealthy, so the state machine repairs it
    /// with the same backoff, budget and flag; the engine's health log says which part failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Probe>,
}

impl HealthCheck {
    /// `probe` at the configuration's interval, timeout and retries (`health`), given
    /// `start_period` to come up; `ready`: its readiness endpoint, when it has one.
    pub fn of(
        probe: Probe,
        ready: Option<&str>,
        start_period: Dur,
        health: &crate::config::Health,
    ) -> Self {
        HealthCheck {
            probe,
            ready_path: ready.map(str::to_owned),
            interval: health.check_interval,
            timeout: health.timeout,
            retries: health.failure_threshold,
            start_period,
            also: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "address")]
pub enum Placement {
    Local,
    /// A runner host reached over SSH; `auto` until discovery finds it.
    Remote(String),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceSpec {
    pub name: String,
    pub role: Role,
    pub image: ImageRef,
    pub cpus: f64,
    pub memory: Bytes,
    pub shm_size: Option<Bytes>,
    pub ports: Vec<PortMap>,
    pub subdomain: Option<String>,
    /// Port inside the container that the ingress routes to.
    pub internal_port: Option<u16>,
    pub mounts: Vec<Mount>,
    pub environment: BTreeMap<String, String>,
    /// Environment variables whose values are secrets, passed from the engine's environment.
    pub secret_env: Vec<String>,
    /// Environment variables whose values are host paths, set by [`resolve`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub host_env: BTreeMap<String, HostPath>,
    pub command: Vec<String>,
    pub health: Option<HealthCheck>,
    pub depends_on: Vec<String>,
    pub labels: Vec<String>,
    pub placement: Placement,
    /// Runners in on-demand mode are created stopped and started when jobs wait.
    pub on_demand: bool,
}

/// Other subdomains the ingress routes to a service of this role: the API server also serves
/// the dashboard, at `dash.<BASE_DOMAIN>`.
pub fn aliases(role: Role) -> &'static [&'static str] {
    match role {
        Role::Api => &["dash"],
        _ => &[],
    }
}

impl ServiceSpec {
    /// Every subdomain the ingress routes to this service: its own, then its aliases; none
    /// without a subdomain.
    pub fn hosts(&self) -> Vec<String> {
        let Some(sub) = &self.subdomain else {
            return Vec::new();
        };
        std::iter::once(sub.clone())
            .chain(aliases(self.role).iter().map(|a| (*a).to_owned()))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Gitlab,
    Ingress,
    Observability,
    Search,
    Api,
    Runner,
    /// The prompt-injection guard autogit deploys in front of `platform.guard_services`.
    Guard,
}

impl Role {
    /// Seconds a restart lets the service stop on SIGTERM before the engine kills it. GitLab
    /// (Omnibus: PostgreSQL, Gitaly, Redis, Puma under runit) needs 10–15 s to stop cleanly
    /// (GitLab's own QA measured it), more than Docker's default 10: 30. Prometheus and the
    /// search index flush to disk and runners finish their current step: 10. The API and the
    /// ingress hold nothing a stop could lose: 2, so their repair is not a 10 s wait.
    pub fn stop_grace_secs(self) -> u32 {
        match self {
            Role::Gitlab => 30,
            Role::Observability | Role::Search | Role::Runner => 10,
            Role::Api | Role::Ingress | Role::Guard => 2,
        }
    }
}

/// The guard as a reverse proxy: the ingress sends the routes of `services` to `url` (which
/// keeps the request's `Host`, so one guard serves several services), and, with `fail_open`,
/// straight to the service while the guard is down.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuardProxy {
    pub url: String,
    pub services: Vec<String>,
    pub fail_open: bool,
}

impl GuardProxy {
    /// The proxy's `host:port` (what nginx's `proxy_pass` and Traefik's server URL take).
    pub fn authority(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub project: String,
    pub network: String,
    pub base_domain: Option<String>,
    /// The certificate identifier when the ingress serves HTTPS with the platform certificate
    /// (mounted at [`TLS_DIR`] in the ingress container); `None`: no certificate yet.
    pub tls: Option<String>,
    /// Address ranges the ingress lets in (empty: everyone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress_allow: Vec<String>,
    /// Subdomains Cloudflare proxies (CLOUDFLARE_PROXIED). When not empty, the ingress believes
    /// the forwarded client address only from Cloudflare's edge ([`crate::cloudflare`]), so
    /// rate limits and allowlists apply per real client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cloudflare_proxied: Vec<String>,
    /// ACME by HTTP-01 through the ingress (ACME_CHALLENGE=http-01): (contact e-mail, directory
    /// setting). nginx serves `rendered/acme-http` for autogit; Traefik runs its own resolver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http01: Option<(Option<String>, String)>,
    /// The guard's forward-auth address and the services routed through it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<(String, Vec<String>)>,
    /// The guard as a reverse proxy in front of some services (`platform.guard_proxy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard_proxy: Option<GuardProxy>,
    /// GitLab's container registry is served at `registry.<BASE_DOMAIN>` ([`crate::registry`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub registry: bool,
    pub preset: Preset,
    pub services: Vec<ServiceSpec>,
    /// CPU and memory of everything that runs on this host.
    pub total_cpus: f64,
    pub total_memory: Bytes,
}

impl Plan {
    /// Every subdomain the ingress serves (each service's hosts, and the registry's), sorted,
    /// without duplicates: the DNS records and an HTTP-01 certificate's names.
    pub fn routed_subdomains(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .services
            .iter()
            .flat_map(ServiceSpec::hosts)
            .chain(self.registry.then(|| crate::registry::SUBDOMAIN.to_owned()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every image the plan needs, without duplicates, sorted.
    pub fn images(&self) -> Vec<ImageRef> {
        let mut v: Vec<ImageRef> = self.services.iter().map(|s| s.image.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Services deployed on this host (not remote runners).
    pub fn local(&self) -> impl Iterator<Item = &ServiceSpec> {
        self.services
            .iter()
            .filter(|s| s.placement == Placement::Local)
    }
}

fn http(port: u16, path: &str) -> Probe {
    Probe::Http {
        port,
        path: path.to_owned(),
        status: 200,
        body: None,
    }
}

struct Catalog {
    internal_port: u16,
    image: (&'static str, &'static str),
    component: Component,
    role: Role,
    probe: Probe,
    ready: Option<&'static str>,
    volumes: &'static [(&'static str, &'static str)],
    labels: &'static [&'static str],
}

fn catalog(id: ServiceId) -> Option<Catalog> {
    use images::*;
    Some(match id {
        ServiceId::Gitlab => return None,
        ServiceId::Grafana => Catalog {
            internal_port: 3000,
            image: GRAFANA,
            component: Component::Grafana,
            role: Role::Observability,
            probe: http(3000, "/api/health"),
            ready: None,
            volumes: &[("grafana-data", "/var/lib/grafana")],
            labels: &["dashboards"],
        },
        ServiceId::Loki => Catalog {
            internal_port: 3100,
            image: LOKI,
            component: Component::Loki,
            role: Role::Observability,
            probe: http(3100, "/ready"),
            ready: Some("/ready"),
            volumes: &[("loki-data", "/loki")],
            labels: &["logs"],
        },
        ServiceId::Tempo => Catalog {
            internal_port: 3200,
            image: TEMPO,
            component: Component::Tempo,
            role: Role::Observability,
            probe: http(3200, "/ready"),
            ready: Some("/ready"),
            volumes: &[("tempo-data", "/var/tempo")],
            labels: &["traces"],
        },
        ServiceId::Prometheus => Catalog {
            internal_port: 9090,
            image: PROMETHEUS,
            component: Component::Prometheus,
            role: Role::Observability,
            probe: http(9090, "/-/healthy"),
            ready: Some("/-/ready"),
            volumes: &[("prometheus-data", "/prometheus")],
            labels: &["metrics"],
        },
        ServiceId::Meilisearch => Catalog {
            internal_port: 7700,
            image: MEILISEARCH,
            component: Component::Meilisearch,
            role: Role::Search,
            probe: http(7700, "/health"),
            ready: None,
            volumes: &[("meili-data", "/meili_data")],
            labels: &["search"],
        },
        ServiceId::Api => Catalog {
            internal_port: 8000,
            image: API_BASE,
            component: Component::Api,
            role: Role::Api,
            probe: http(8000, "/healthz"),
            ready: None,
            volumes: &[],
            labels: &["api"],
        },
    })
}

/// The guard autogit deploys ([`GUARD_SERVICE`]): `autogit guard serve` of the deploying
/// binary in the API's base image, on the platform network only (no host port, no subdomain:
/// the ingress is its only client). It sees `<data dir>/guard` (its quarantine, which
/// `autogit guard quarantine` on the host reviews) and `rendered/guard/` (the routes of
/// inference services), nothing else of the host: no engine socket, no secrets key.
/// `upstreams` are its `--upstream HOST=URL` arguments: each guarded route's host names to
/// the service on the platform network. Without a token (`--insecure-no-auth`): only
/// containers on the platform network reach it, and they reach the guarded services directly
/// anyway; without a per-client rate limit (`--rate-limit 0`): every request comes from the
/// ingress, which limits per client itself.
fn guard_service(
    preset: Preset,
    health: &crate::config::Health,
    upstreams: &[String],
) -> ServiceSpec {
    let size = preset.size(Component::Guard);
    let mut command: Vec<String> = [
        API_BINARY,
        "guard",
        "serve",
        "--listen",
        &format!("0.0.0.0:{GUARD_PORT}"),
        "--insecure-no-auth",
        "--rate-limit",
        "0",
        "--upstream-file",
        &format!("{GUARD_CONFIG_DIR}/upstreams"),
    ]
    .map(str::to_owned)
    .to_vec();
    for u in upstreams {
        command.push("--upstream".into());
        command.push(u.clone());
    }
    ServiceSpec {
        name: GUARD_SERVICE.into(),
        role: Role::Guard,
        image: ImageRef::new(images::API_BASE.0, images::API_BASE.1),
        cpus: size.cpus,
        memory: size.memory,
        shm_size: None,
        ports: Vec::new(),
        subdomain: None,
        internal_port: Some(GUARD_PORT),
        mounts: vec![
            Mount::HostPath {
                of: HostPath::Binary,
                target: Some(API_BINARY.into()),
                read_only: true,
            },
            Mount::HostPath {
                of: HostPath::GuardDir,
                target: Some(format!("{GUARD_DATA_DIR}/guard")),
                read_only: false,
            },
            Mount::Rendered {
                file: GUARD_RENDERED.into(),
                target: GUARD_CONFIG_DIR.into(),
            },
        ],
        environment: BTreeMap::from([("AUTOGIT_DATA_DIR".to_owned(), GUARD_DATA_DIR.to_owned())]),
        secret_env: Vec::new(),
        host_env: BTreeMap::new(),
        command,
        health: Some(HealthCheck::of(
            http(GUARD_PORT, "/healthz"),
            None,
            Dur::secs(10),
            health,
        )),
        depends_on: Vec::new(),
        labels: vec!["security".into()],
        placement: Placement::Local,
        on_demand: false,
    }
}

/// The services that come with Prometheus (docs/observability.md): node-exporter (the host's
/// CPU, memory and disks, through the host's root file system mounted read-only), cAdvisor
/// (every container's CPU, memory and I/O; it reads the engine's socket and `/var/lib/docker`)
/// and Alertmanager (the rendered `alertmanager/` configuration). On the platform network only:
/// no port on the host, no subdomain. Sized by the preset ([`Component`]). cAdvisor is left out
/// with a rootless engine or Podman (`platform.engine: podman`).
pub const MONITORING_COMPANIONS: [&str; 3] = ["node-exporter", "cadvisor", "alertmanager"];

fn monitoring_companions(preset: Preset, health: &crate::config::Health) -> Vec<ServiceSpec> {
    use images::*;
    let host = |path: &str, target: &str| Mount::Host {
        path: path.into(),
        target: target.into(),
        read_only: true,
    };
    let companion = |name: &str,
                     image: (&str, &str),
                     component: Component,
                     port: u16,
                     health_path: &str,
                     ready: Option<&str>,
                     mounts: Vec<Mount>,
                     command: &[&str]| {
        let size = preset.size(component);
        ServiceSpec {
            name: name.into(),
            role: Role::Observability,
            image: ImageRef::new(image.0, image.1),
            cpus: size.cpus,
            memory: size.memory,
            shm_size: None,
            ports: Vec::new(),
            subdomain: None,
            internal_port: Some(port),
            mounts,
            environment: BTreeMap::new(),
            secret_env: Vec::new(),
            host_env: BTreeMap::new(),
            command: command.iter().map(|c| (*c).to_owned()).collect(),
            health: Some(HealthCheck::of(
                http(port, health_path),
                ready,
                Dur::secs(30),
                health,
            )),
            depends_on: Vec::new(),
            labels: vec!["metrics".into()],
            placement: Placement::Local,
            on_demand: false,
        }
    };
    vec![
        companion(
            "node-exporter",
            NODE_EXPORTER,
            Component::NodeExporter,
            9100,
            "/",
            None,
            vec![host("/", "/host")],
            // Its default exclusions (/dev, /proc, /sys, the engines' layers) apply to the
            // host's mount points as seen under the root it is given.
            &["--path.rootfs=/host"],
        ),
        companion(
            "cadvisor",
            CADVISOR,
            Component::Cadvisor,
            8080,
            "/healthz",
            None,
            vec![
                host("/", "/rootfs"),
                host("/var/run", "/var/run"),
                host("/sys", "/sys"),
                host("/var/lib/docker", "/var/lib/docker"),
            ],
            &[
                "--docker_only=true",
                "--housekeeping_interval=30s",
                "--store_container_labels=false",
                "--disable_metrics=percpu,sched,tcp,udp,hugetlb,referenced_memory,resctrl,cpuset,advtcp,memory_numa,process",
            ],
        ),
        companion(
            "alertmanager",
            ALERTMANAGER,
            Component::Alertmanager,
            9093,
            "/-/healthy",
            Some("/-/ready"),
            vec![
                Mount::Rendered {
                    file: "alertmanager".into(),
                    target: "/etc/alertmanager".into(),
                },
                Mount::Volume {
                    name: "alertmanager-data".into(),
                    target: "/alertmanager".into(),
                },
            ],
            &[
                "--config.file=/etc/alertmanager/alertmanager.yml",
                "--storage.path=/alertmanager",
            ],
        ),
    ]
}

/// The first port from `from` up to `last` (the end of PORT_POOL) that is not `taken`.
fn free_in_pool(from: u16, last: u16, taken: impl Fn(u16) -> bool) -> Option<u16> {
    (from..=last).find(|p| !taken(*p))
}

/// The name Tempo's OTLP port is remembered under in the state store's `ports` table.
pub const TEMPO_OTLP_PORT_KEY: &str = "tempo-otlp";
/// Tempo's OTLP/HTTP receiver in its container (`render::tempo`).
pub const TEMPO_OTLP_CONTAINER_PORT: u16 = 4318;

/// Where autogit sends its traces when OTLP_ENDPOINT is unset: the platform's Tempo on this
/// host, by its published OTLP/HTTP port. `None` without Tempo (or without that port).
pub fn tempo_otlp_endpoint(plan: &Plan) -> Option<String> {
    plan.local()
        .find(|s| s.name == "tempo")?
        .ports
        .iter()
        .find(|p| p.name == "otlp")
        .map(|p| format!("http://127.0.0.1:{}", p.host))
}

/// Builds the plan. Diagnostics are warnings about the host (preset too large, low ports when
/// rootless) and errors about ports (collisions, explicit mode without a port).
pub fn plan(config: &Config, env: &PlatformEnv, input: &PlanInput) -> (Plan, Diagnostics) {
    let mut diags = Diagnostics::default();
    let preset = config.gitlab.resources.preset;
    let project = config.platform.project.clone();
    let health = &config.health;
    let mut services = Vec::new();
    let mut used: Vec<(u16, String, Option<Loc>)> = Vec::new();

    // GitLab.
    let size = config.gitlab_size();
    let g = &config.gitlab;
    services.push(ServiceSpec {
        name: "gitlab".to_owned(),
        role: Role::Gitlab,
        image: ImageRef::new(&g.image, &format!("{}-ce.0", g.version)),
        cpus: size.cpus,
        memory: size.memory,
        shm_size: Some(Bytes::mib(256)),
        ports: vec![
            PortMap {
                name: "http".into(),
                bind: g.ports.bind.map(|ip| ip.to_string()),
                host: g.ports.http,
                container: 80,
                protocol: Protocol::Tcp,
            },
            PortMap {
                name: "https".into(),
                bind: g.ports.bind.map(|ip| ip.to_string()),
                host: g.ports.https,
                container: 443,
                protocol: Protocol::Tcp,
            },
            PortMap {
                name: "ssh".into(),
                bind: None,
                host: g.ports.ssh,
                container: 22,
                protocol: Protocol::Tcp,
            },
        ],
        subdomain: Some("gitlab".to_owned()),
        internal_port: Some(80),
        mounts: vec![
            Mount::Volume {
                name: "gitlab-config".into(),
                target: "/etc/gitlab".into(),
            },
            Mount::Volume {
                name: "gitlab-logs".into(),
                target: "/var/log/gitlab".into(),
            },
            Mount::Volume {
                name: "gitlab-data".into(),
                target: "/var/opt/gitlab".into(),
            },
        ],
        environment: BTreeMap::from([(
            "GITLAB_OMNIBUS_CONFIG".to_owned(),
            crate::render::gitlab_omnibus(config, env.base_domain.as_deref()),
        )]),
        secret_env: Vec::new(),
        host_env: BTreeMap::new(),
        command: Vec::new(),
        health: Some(HealthCheck {
            probe: Probe::Http {
                port: 80,
                path: "/-/health".into(),
                status: 200,
                body: Some("GitLab OK".into()),
            },
            ready_path: Some("/-/readiness".into()),
            interval: health.check_interval,
            timeout: health.timeout,
            retries: health.failure_threshold,
            // First boot runs migrations and reconfigure: minutes.
            start_period: g.start_period,
            // The registry answers users at registry.<BASE_DOMAIN>: its health is GitLab's.
            also: crate::registry::enabled(config, env.base_domain.as_deref())
                .then(crate::registry::probe)
                .into_iter()
                .collect(),
        }),
        depends_on: Vec::new(),
        labels: vec!["git".into(), "ci".into(), "registry".into()],
        placement: Placement::Local,
        on_demand: false,
    });
    for (name, port) in [
        ("http", g.ports.http),
        ("https", g.ports.https),
        ("ssh", g.ports.ssh),
    ] {
        used.push((port, format!("gitlab.ports.{name}"), None));
    }

    // Catalog services from SERVICES_ENABLED.
    let mut next_free = env.port_pool.0;
    for id in &env.services_enabled {
        let Some(cat) = catalog(*id) else { continue };
        let name = id.name().to_owned();
        let host_port = match env.ports.get(id) {
            Some(p) => Some(*p),
            None if env.port_allocation == PortAllocation::Explicit => {
                diags.push(
                    Diagnostic::error(
                        "port-missing",
                        format!(
                            "PORT_ALLOCATION=explicit but `PORT_{}` is not set",
                            name.to_ascii_uppercase()
                        ),
                    )
                    .path(format!("PORT_{}", name.to_ascii_uppercase()))
                    .help(format!(
                        "set PORT_{}=<port> in .env, or use PORT_ALLOCATION=dynamic",
                        name.to_ascii_uppercase()
                    )),
                );
                None
            }
            None => match input.remembered_ports.get(&name) {
                Some(p)
                    if !used.iter().any(|(u, _, _)| u == p)
                        && !env.ports.values().any(|v| v == p) =>
                {
                    Some(*p)
                }
                _ => {
                    let free = free_in_pool(next_free, env.port_pool.1, |p| {
                        used.iter().any(|(u, _, _)| *u == p)
                            || env.ports.values().any(|v| *v == p)
                            || input.remembered_ports.values().any(|v| *v == p)
                    });
                    match free {
                        None => {
                            diags.push(Diagnostic::error(
                                "port-pool",
                                format!(
                                    "no free port left in PORT_POOL {}-{}",
                                    env.port_pool.0, env.port_pool.1
                                ),
                            ));
                            None
                        }
                        Some(p) => {
                            next_free = p + 1;
                            Some(p)
                        }
                    }
                }
            },
        };
        if let Some(p) = host_port {
            used.push((
                p,
                format!("PORT_{}", name.to_ascii_uppercase()),
                env.port_locs.get(id).copied(),
            ));
        }
        let size = preset.size(cat.component);
        let mut spec = ServiceSpec {
            name: name.clone(),
            role: cat.role,
            image: ImageRef::new(cat.image.0, cat.image.1),
            cpus: size.cpus,
            memory: size.memory,
            shm_size: None,
            ports: host_port
                .map(|hp| PortMap {
                    name: "http".into(),
                    bind: Some("127.0.0.1".into()),
                    host: hp,
                    container: cat.internal_port,
                    protocol: Protocol::Tcp,
                })
                .into_iter()
                .collect(),
            subdomain: Some(name.clone()),
            internal_port: Some(cat.internal_port),
            mounts: cat
                .volumes
                .iter()
                .map(|(v, t)| Mount::Volume {
                    name: (*v).into(),
                    target: (*t).into(),
                })
                .collect(),
            environment: BTreeMap::new(),
            secret_env: Vec::new(),
            host_env: BTreeMap::new(),
            command: Vec::new(),
            health: Some(HealthCheck::of(
                cat.probe.clone(),
                cat.ready,
                Dur::secs(60),
                health,
            )),
            depends_on: Vec::new(),
            labels: cat.labels.iter().map(|l| (*l).to_owned()).collect(),
            placement: Placement::Local,
            on_demand: false,
        };
        match id {
            ServiceId::Tempo => {
                spec.mounts.push(Mount::Rendered {
                    file: "tempo/tempo.yaml".into(),
                    target: "/etc/tempo/tempo.yaml".into(),
                });
                spec.command = vec!["-config.file=/etc/tempo/tempo.yaml".into()];
                // Its OTLP/HTTP receiver on loopback: where autogit sends its own traces when
                // OTLP_ENDPOINT is unset (`tempo_otlp_endpoint`). PORT_TEMPO_OTLP, else a
                // port of the pool remembered as `tempo-otlp`; none with explicit allocation
                // and no PORT_TEMPO_OTLP.
                let taken = |p: u16, used: &[(u16, String, Option<Loc>)]| {
                    used.iter().any(|(u, _, _)| *u == p)
                        || env.ports.values().any(|v| *v == p)
                        || Some(p) == host_port
                };
                let otlp = match env.tempo_otlp_port {
                    Some(p) => Some(p),
                    None if env.port_allocation == PortAllocation::Explicit => None,
                    None => match input.remembered_ports.get(TEMPO_OTLP_PORT_KEY) {
                        Some(p) if !taken(*p, &used) => Some(*p),
                        _ => {
                            let free = free_in_pool(next_free, env.port_pool.1, |p| {
                                taken(p, &used) || input.remembered_ports.values().any(|v| *v == p)
                            });
                            if let Some(p) = free {
                                next_free = p + 1;
                            }
                            free
                        }
                    },
                };
                if let Some(p) = otlp {
                    used.push((p, "PORT_TEMPO_OTLP".into(), None));
                    spec.ports.push(PortMap {
                        name: "otlp".into(),
                        bind: Some("127.0.0.1".into()),
                        host: p,
                        container: TEMPO_OTLP_CONTAINER_PORT,
                        protocol: Protocol::Tcp,
                    });
                }
            }
            ServiceId::Prometheus => {
                // The directory: the configuration, the alert rules and, once the user
                // writes it, the API key Prometheus scrapes autogit with (`autogit.token`).
                spec.mounts.push(Mount::Rendered {
                    file: "prometheus".into(),
                    target: "/etc/prometheus".into(),
                });
            }
            ServiceId::Meilisearch => {
                spec.environment
                    .insert("MEILI_ENV".into(), "production".into());
                spec.secret_env.push("MEILI_MASTER_KEY".into());
            }
            ServiceId::Grafana => {
                // Datasources and dashboards (`crate::grafana`), rendered at every deploy.
                spec.mounts.push(Mount::Rendered {
                    file: "grafana/provisioning".into(),
                    target: crate::grafana::PROVISIONING_DIR.into(),
                });
                // The dashboards read Prometheus: none without it.
                if env.services_enabled.contains(&ServiceId::Prometheus) {
                    spec.mounts.push(Mount::Rendered {
                        file: "grafana/dashboards".into(),
                        target: crate::grafana::DASHBOARDS_DIR.into(),
                    });
                }
                spec.environment.insert(
                    "GF_SERVER_ROOT_URL".into(),
                    match &env.base_domain {
                        Some(d) => format!("https://grafana.{d}"),
                        None => "http://localhost:3000".into(),
                    },
                );
                spec.secret_env.push("GF_SECURITY_ADMIN_PASSWORD".into());
            }
            ServiceId::Api => {
                // `autogit serve` of the deploying binary, on the same data dir, secrets key
                // and engine as the host's autogit (its deploy and backup operations drive the
                // engine: SECURITY.md, "The api container"). The host paths are resolved at
                // deploy time; the same variables let the API's own deploys resolve them to
                // the same host paths (no spurious recreation of its own container).
                spec.mounts = vec![
                    Mount::HostPath {
                        of: HostPath::Binary,
                        target: Some(API_BINARY.into()),
                        read_only: true,
                    },
                    Mount::HostPath {
                        of: HostPath::DataDir,
                        target: None,
                        read_only: false,
                    },
                    Mount::HostPath {
                        of: HostPath::KeyFile,
                        target: None,
                        read_only: true,
                    },
                    Mount::HostPath {
                        of: HostPath::EngineSocket,
                        target: Some(API_ENGINE_SOCKET.into()),
                        read_only: false,
                    },
                    Mount::Rendered {
                        file: API_RENDERED.into(),
                        target: API_CONFIG_DIR.into(),
                    },
                ];
                spec.command = vec![
                    API_BINARY.into(),
                    "serve".into(),
                    "--listen".into(),
                    "0.0.0.0:8000".into(),
                ];
                for (k, v) in [
                    ("AUTOGIT_CONFIG", format!("{API_CONFIG_DIR}/autogit.yml")),
                    ("AUTOGIT_ENV_FILE", format!("{API_CONFIG_DIR}/.env")),
                    ("DOCKER_HOST", format!("unix://{API_ENGINE_SOCKET}")),
                ] {
                    spec.environment.insert(k.into(), v);
                }
                // Its traces go to the platform's Tempo on the platform network (loopback
                // is the container's own there), unless OTLP_ENDPOINT names a collector.
                if env.otlp_endpoint.is_none() && env.services_enabled.contains(&ServiceId::Tempo) {
                    spec.environment.insert(
                        "OTLP_ENDPOINT".into(),
                        format!("http://tempo:{TEMPO_OTLP_CONTAINER_PORT}"),
                    );
                }
                for p in [
                    HostPath::DataDir,
                    HostPath::KeyFile,
                    HostPath::Binary,
                    HostPath::EngineSocket,
                ] {
                    spec.host_env.insert(p.compose_var().into(), p);
                }
            }
            ServiceId::Loki => {
                spec.mounts.push(Mount::Rendered {
                    file: "loki/loki.yaml".into(),
                    target: "/etc/loki/loki.yaml".into(),
                });
                spec.command = vec!["-config.file=/etc/loki/loki.yaml".into()];
            }
            ServiceId::Gitlab => {}
        }
        services.push(spec);
    }

    let rootless = match (
        config.platform.rootless,
        input.host.and_then(|h| h.rootless),
    ) {
        (AutoBool::True, _) => true,
        (AutoBool::False, _) => false,
        (AutoBool::Auto, detected) => detected.unwrap_or(false),
    };
    if env.services_enabled.contains(&ServiceId::Prometheus) {
        // cAdvisor reads a rootful Docker's cgroups and `/var/lib/docker`: not there with a
        // rootless engine or Podman (its mounts would not even exist).
        let cadvisor = !rootless && config.platform.engine != crate::config::EngineKind::Podman;
        services.extend(
            monitoring_companions(preset, health)
                .into_iter()
                .filter(|s| cadvisor || s.name != "cadvisor"),
        );
    }

    // The guard: the user's (`guard_proxy`, `guard_forward_auth`), else the one autogit
    // deploys for `guard_services`, which needs the ingress to send it anything.
    let guard_wanted = !config.platform.guard_services.is_empty()
        && config.platform.guard_proxy.is_none()
        && config.platform.guard_forward_auth.is_none();
    let deploy_guard =
        guard_wanted && config.platform.ingress != IngressKind::None && env.base_domain.is_some();

    // Ingress: one subdomain per service under BASE_DOMAIN.
    if config.platform.ingress != IngressKind::None {
        if let Some(domain) = &env.base_domain {
            let (image, component, name) = match config.platform.ingress {
                IngressKind::Nginx => (images::NGINX, Component::Nginx, "nginx"),
                _ => (images::TRAEFIK, Component::Traefik, "traefik"),
            };
            let size = preset.size(component);
            let routed: Vec<String> = services
                .iter()
                .filter(|s| s.subdomain.is_some())
                .map(|s| s.name.clone())
                .collect();
            let tls = input.tls_certificate.is_some();
            // The guard autogit deploys, before the ingress that sends the guarded routes to it.
            let mut routed = routed;
            if deploy_guard {
                let upstreams: Vec<String> = services
                    .iter()
                    .filter(|s| config.platform.guard_services.contains(&s.name))
                    .filter_map(|s| Some((s, s.internal_port?)))
                    .flat_map(|(s, port)| {
                        s.hosts()
                            .into_iter()
                            .map(move |h| format!("{h}.{domain}=http://{}:{port}", s.name))
                    })
                    .collect();
                services.push(guard_service(preset, health, &upstreams));
                routed.push(GUARD_SERVICE.into());
            }
            let mut mounts = match config.platform.ingress {
                IngressKind::Nginx => vec![
                    Mount::Rendered {
                        file: "nginx/nginx.conf".into(),
                        target: "/etc/nginx/nginx.conf".into(),
                    },
                    Mount::Rendered {
                        file: "nginx/autogit.conf".into(),
                        target: "/etc/nginx/conf.d/autogit.conf".into(),
                    },
                    // A directory: the compute controller replaces the file of its routes
                    // there and nginx, told to reload, reads the new one.
                    Mount::Rendered {
                        file: crate::routes::NGINX_RENDERED_DIR.into(),
                        target: crate::routes::NGINX_ROUTES_DIR.into(),
                    },
                ],
                _ => vec![
                    Mount::Rendered {
                        file: "traefik/traefik.yml".into(),
                        target: "/etc/traefik/traefik.yml".into(),
                    },
                    Mount::Rendered {
                        file: "traefik/dynamic".into(),
                        target: "/etc/traefik/dynamic".into(),
                    },
                    Mount::Rendered {
                        file: "traefik/plugins-local".into(),
                        target: "/plugins-local".into(),
                    },
                    Mount::Volume {
                        name: "traefik-acme".into(),
                        target: "/acme".into(),
                    },
                ],
            };
            if tls {
                mounts.push(Mount::Rendered {
                    file: "tls".into(),
                    target: TLS_DIR.into(),
                });
            }
            if env.acme_http01 && config.platform.ingress == IngressKind::Nginx {
                mounts.push(Mount::Rendered {
                    file: "acme-http".into(),
                    target: ACME_HTTP_DIR.into(),
                });
            }
            // GitLab's SSH on the ingress's own TCP entry point (`ssh`): the port its clone
            // URLs name (`gitlab.ports.ssh`) is published by the ingress, which passes the
            // connection to GitLab's port 22 on the platform network. GitLab no longer
            // publishes it itself (one host port, one owner).
            let mut ports = vec![
                PortMap {
                    name: "http".into(),
                    bind: env.ingress_ip.clone(),
                    host: env.ingress_http_port,
                    container: 80,
                    protocol: Protocol::Tcp,
                },
                PortMap {
                    name: "https".into(),
                    bind: env.ingress_ip.clone(),
                    host: env.ingress_https_port,
                    container: 443,
                    protocol: Protocol::Tcp,
                },
            ];
            // GitLab's own HTTP(S) ports stay for autogit and the host (the bootstrap, health
            // checks, a local runner) but, behind the ingress, only on loopback unless
            // `gitlab.ports.bind` says otherwise: the ingress's rate limits, body limits and
            // WAF rules would mean nothing with a second door open to the network.
            let gitlab_bind = config
                .gitlab
                .ports
                .bind
                .map_or_else(|| "127.0.0.1".to_owned(), |ip| ip.to_string());
            if let Some(gitlab) = services.iter_mut().find(|s| s.role == Role::Gitlab) {
                for p in &mut gitlab.ports {
                    if p.name == "http" || p.name == "https" {
                        p.bind = Some(gitlab_bind.clone());
                    }
                }
            }
            if let Some(gitlab) = services.iter_mut().find(|s| s.role == Role::Gitlab)
                && let Some(i) = gitlab.ports.iter().position(|p| p.name == "ssh")
            {
                let ssh = gitlab.ports.remove(i);
                ports.push(PortMap {
                    bind: env.ingress_ip.clone(),
                    container: crate::ingress::SSH_ENTRY_PORT,
                    ..ssh
                });
            }
            services.push(ServiceSpec {
                name: name.to_owned(),
                role: Role::Ingress,
                image: ImageRef::new(image.0, image.1),
                cpus: size.cpus,
                memory: size.memory,
                shm_size: None,
                ports,
                subdomain: None,
                internal_port: None,
                mounts,
                environment: BTreeMap::new(),
                secret_env: Vec::new(),
                host_env: BTreeMap::new(),
                command: Vec::new(),
                health: Some(HealthCheck::of(
                    Probe::Tcp { port: 80 },
                    None,
                    Dur::secs(10),
                    health,
                )),
                depends_on: routed,
                labels: vec!["ingress".into(), format!("domain={domain}")],
                placement: Placement::Local,
                on_demand: false,
            });
            for (i, (pname, p)) in [
                ("INGRESS_HTTP_PORT", env.ingress_http_port),
                ("INGRESS_HTTPS_PORT", env.ingress_https_port),
            ]
            .into_iter()
            .enumerate()
            {
                used.push((p, pname.to_owned(), env.ingress_port_locs[i]));
                if rootless && p < 1024 {
                    diags.push(
                        Diagnostic::warning("rootless-low-port", format!("{pname}={p}: a rootless engine cannot bind ports below 1024"))
                            .at(env.ingress_port_locs[i])
                            .path(pname)
                            .help(format!("set {pname} to 1024 or above (and forward {p} to it), or allow it with `sysctl net.ipv4.ip_unprivileged_port_start={p}`")),
                    );
                }
            }
        } else {
            diags.push(Diagnostic::warning("no-base-domain", "BASE_DOMAIN is not set: no ingress, no subdomains, no TLS; services are reached on their published ports")
                .path("BASE_DOMAIN")
                .help("set BASE_DOMAIN=example.com in .env to serve https://<service>.example.com"));
        }
    }
    if rootless {
        for (name, p) in [
            ("http", g.ports.http),
            ("https", g.ports.https),
            ("ssh", g.ports.ssh),
        ] {
            if p < 1024 {
                diags.push(Diagnostic::warning("rootless-low-port", format!("gitlab.ports.{name} = {p}: a rootless engine cannot bind ports below 1024"))
                    .path(format!("gitlab.ports.{name}"))
                    .help("use a port of 1024 or above (the defaults are 8080, 8443 and 2222)"));
            }
        }
    }

    // Runners: one gitlab-runner manager per runner entry, placed on its host.
    let runner_image = config.runners.image.rsplit_once(':').map_or_else(
        || ImageRef::new(&config.runners.image, "alpine-v18.5.0"),
        |(r, t)| ImageRef::new(r, t),
    );
    for r in config.all_runners() {
        let size = preset.size(Component::Runner);
        let placement = if r.host == "local" {
            Placement::Local
        } else {
            Placement::Remote(r.host.clone())
        };
        let mut labels = vec![format!(
            "executor={}",
            serde_json::to_value(r.executor)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )];
        labels.extend(r.capabilities.iter().map(|c| {
            format!(
                "capability={}",
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        }));
        if r.gpu.is_some() {
            labels.push("gpu=nvidia".into());
        }
        if r.wsl2 {
            labels.push("wsl2".into());
        }
        services.push(ServiceSpec {
            name: format!("runner-{}", r.name),
            role: Role::Runner,
            image: runner_image.clone(),
            cpus: size.cpus,
            memory: size.memory,
            shm_size: None,
            ports: Vec::new(),
            subdomain: None,
            internal_port: None,
            mounts: vec![
                Mount::Volume {
                    name: format!("runner-{}-config", r.name),
                    target: "/etc/gitlab-runner".into(),
                },
                Mount::Host {
                    path: "/var/run/docker.sock".into(),
                    target: "/var/run/docker.sock".into(),
                    read_only: false,
                },
            ],
            environment: BTreeMap::new(),
            secret_env: Vec::new(),
            host_env: BTreeMap::new(),
            command: Vec::new(),
            health: Some(HealthCheck::of(
                Probe::Command {
                    argv: vec!["gitlab-runner".into(), "verify".into()],
                },
                None,
                Dur::secs(30),
                health,
            )),
            depends_on: if placement == Placement::Local {
                vec!["gitlab".into()]
            } else {
                Vec::new()
            },
            labels,
            placement,
            on_demand: config.runners.mode == RunnerMode::OnDemand,
        });
    }

    // Published port collisions.
    for (i, (p, a, aloc)) in used.iter().enumerate() {
        if let Some((_, b, bloc)) = used[i + 1..].iter().find(|(q, _, _)| q == p) {
            let mut d = Diagnostic::error(
                "port-collision",
                format!("host port {p} is used by both {a} and {b}"),
            )
            .at(bloc.or(*aloc))
            .path(b.clone())
            .help("give each published service its own port");
            if let (Some(l), Some(_)) = (aloc, bloc) {
                d = d.related(*l, format!("{a} = {p}"));
            }
            diags.push(d);
        }
    }

    let local: Vec<&ServiceSpec> = services
        .iter()
        .filter(|s| s.placement == Placement::Local && !s.on_demand)
        .collect();
    let total_cpus: f64 = local.iter().map(|s| s.cpus).sum();
    let total_memory = Bytes(local.iter().map(|s| s.memory.0).sum());
    if let Some(h) = input.host {
        if total_cpus > h.cpus {
            diags.push(
                Diagnostic::warning(
                    "preset-exceeds-host",
                    format!(
                        "the plan asks for {total_cpus} CPUs (preset `{preset}`), this host has {}",
                        h.cpus
                    ),
                )
                .path("gitlab.resources.preset")
                .help(
                    "each container's CPU limit is capped at the host's CPUs; choose a smaller preset, set gitlab.resources.cpu, or enable fewer services",
                ),
            );
        }
        if total_memory > h.memory {
            diags.push(Diagnostic::warning("preset-exceeds-host", format!(
                "the plan asks for {total_memory} of memory (preset `{preset}`), this host has {}", h.memory.approx()))
                .path("gitlab.resources.preset")
                .help("choose a smaller preset, set gitlab.resources.memory, or enable fewer services"));
        }
    }

    // A limit above the host's CPUs is refused by the engine; the warning above still says
    // the plan wants more than the host has.
    if let Some(h) = input.host {
        for s in services
            .iter_mut()
            .filter(|s| s.placement == Placement::Local)
        {
            s.cpus = s.cpus.min(h.cpus);
        }
    }

    if let Some(d) = crate::registry::diagnostic(config, env.base_domain.as_deref()) {
        diags.push(d);
    }
    let p = &config.platform;
    if p.guard_forward_auth.is_some() && p.guard_proxy.is_some() {
        diags.push(
            Diagnostic::error(
                "guard-two-modes",
                "platform.guard_forward_auth and platform.guard_proxy are both set; the guard is either asked (forward-auth) or in the path (proxy), not both",
            )
            .path("platform.guard_proxy")
            .help("keep guard_proxy (one exchange per request, nginx too, can fail open) and remove guard_forward_auth"),
        );
    }
    if guard_wanted && !deploy_guard {
        diags.push(
            Diagnostic::warning(
                "guard-needs-ingress",
                "platform.guard_services is set but there is no ingress (BASE_DOMAIN and platform.ingress), so autogit deploys no guard and no request goes through one",
            )
            .path("platform.guard_services")
            .help("set BASE_DOMAIN in .env and keep platform.ingress (traefik or nginx), or remove guard_services"),
        );
    }
    if p.guard_fail_open && p.guard_proxy.is_none() && !deploy_guard {
        diags.push(
            Diagnostic::warning(
                "guard-fail-open-needs-proxy",
                "platform.guard_fail_open applies to platform.guard_proxy only; Traefik's forwardAuth always fails closed",
            )
            .path("platform.guard_fail_open")
            .help("set platform.guard_proxy (and remove guard_forward_auth), or remove guard_fail_open"),
        );
    }
    if p.guard_proxy.is_some() && p.guard_services.is_empty() {
        diags.push(
            Diagnostic::warning(
                "guard-no-services",
                "platform.guard_proxy is set but platform.guard_services is empty, so no route goes through the guard",
            )
            .path("platform.guard_services")
            .help("list the services whose requests the guard checks, e.g. guard_services: [ollama]"),
        );
    }
    if p.guard_proxy.is_some() || deploy_guard {
        guard_services_known(config, &services, &mut diags);
    }
    if config.platform.guard_forward_auth.is_some() {
        if config.platform.ingress == IngressKind::Nginx {
            diags.push(
                Diagnostic::warning(
                    "guard-needs-traefik",
                    "platform.guard_forward_auth is only wired into the Traefik ingress; with nginx no request goes through the guard",
                )
                .path("platform.guard_forward_auth")
                .help("use platform.guard_proxy instead (the guard in the path, which nginx can do), or set platform.ingress: traefik (docs/ingress.md)"),
            );
        }
        guard_services_known(config, &services, &mut diags);
    }
    // A size for a volume no service has is a typo, or a service left out.
    let volumes: Vec<&str> = services
        .iter()
        .flat_map(|s| &s.mounts)
        .filter_map(|m| match m {
            Mount::Volume { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    for name in config.platform.volume_sizes.keys() {
        if !volumes.contains(&name.as_str()) {
            let mut d = Diagnostic::warning(
                "unknown-volume",
                format!(
                    "platform.volume_sizes names `{name}`, which no service of the plan has, so the size is not used"
                ),
            )
            .path(format!("platform.volume_sizes.{name}"));
            d = match crate::diag::suggest(name, volumes.iter().copied()) {
                Some(s) => d.help(format!(
                    "did you mean `{s}`? (`autogit plan` lists the volumes)"
                )),
                None => d.help(format!("the plan's volumes: {}", volumes.join(", "))),
            };
            diags.push(d);
        }
    }
    (
        Plan {
            project,
            network: config.platform.network.clone(),
            base_domain: env.base_domain.clone(),
            tls: input.tls_certificate.clone().filter(|_| {
                env.base_domain.is_some() && config.platform.ingress != IngressKind::None
            }),
            ingress_allow: config.platform.ingress_allow.clone(),
            cloudflare_proxied: env.cloudflare_proxied.clone(),
            http01: (env.acme_http01 && env.base_domain.is_some())
                .then(|| (env.acme_email.clone(), env.acme_directory.clone())),
            guard: config
                .platform
                .guard_forward_auth
                .clone()
                .map(|a| (a, config.platform.guard_services.clone())),
            registry: crate::registry::enabled(config, env.base_domain.as_deref()),
            guard_proxy: config
                .platform
                .guard_proxy
                .clone()
                .or_else(|| deploy_guard.then(|| format!("http://{GUARD_SERVICE}:{GUARD_PORT}")))
                .map(|url| GuardProxy {
                    url,
                    services: config.platform.guard_services.clone(),
                    fail_open: config.platform.guard_fail_open,
                }),
            preset,
            services,
            total_cpus,
            total_memory,
        },
        diags,
    )
}

/// A warning for each name in `platform.guard_services` that is not a routed service.
fn guard_services_known(config: &Config, services: &[ServiceSpec], diags: &mut Diagnostics) {
    for name in &config.platform.guard_services {
        if !services
            .iter()
            .any(|s| &s.name == name && s.subdomain.is_some())
        {
            diags.push(
                Diagnostic::warning(
                    "guard-unknown-service",
                    format!("platform.guard_services names `{name}`, which is not a routed service of this plan"),
                )
                .path("platform.guard_services")
                .help("name services that have a subdomain (see `autogit plan`)"),
            );
        }
    }
}
