//! The typed configuration (`autogit.yml`) with its defaults.
//!
//! Decoding from YAML lives in [`crate::decode`]; cross-field checks in [`crate::validate`].
//! Every type here serializes back to the same YAML shape it was read from, which the
//! round-trip property test relies on.

use crate::preset::Preset;
use crate::units::{Bytes, Dur};
use serde::Serialize;
use std::collections::BTreeMap;

pub const CONFIG_VERSION: &str = "1.0";
/// GitLab CE version deployed unless `gitlab.version` says otherwise. Image tags are pinned
/// (`gitlab/gitlab-ce:<version>-ce.0`); never `latest`.
pub const DEFAULT_GITLAB_VERSION: &str = "18.5.4";
pub const DEFAULT_MIRROR_SCHEDULE: &str = "0 */6 * * *";
pub const DEFAULT_BACKUP_SCHEDULE: &str = "0 3 * * *";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub version: String,
    pub gitlab: GitLab,
    pub mirroring: Mirroring,
    pub runners: Runners,
    pub health: Health,
    pub compute: Compute,
    pub backup: Backup,
    pub platform: Platform,
    pub logs: Logs,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GitLab {
    pub hostname: String,
    pub external_url: String,
    /// Whether a layer set `external_url` to something other than `autogit init`'s default
    /// ([`crate::ingress::INIT_EXTERNAL_URL`]). Only an explicit URL is deployed as written
    /// when a base domain gives GitLab a route ([`crate::ingress::gitlab_external_url`]).
    #[serde(skip)]
    pub external_url_explicit: bool,
    pub version: String,
    pub image: String,
    pub ports: GitLabPorts,
    pub resources: Resources,
    pub tuning: Tuning,
    /// How long GitLab may take to become healthy after a (re)start: its first boot runs
    /// migrations and a reconfigure.
    pub start_period: Dur,
    /// People `autogit gitlab bootstrap` creates (missing ones only; never changes passwords).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<GitLabUser>,
    /// Groups, created when missing, with their members.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GitLabGroup>,
    /// Bot users `autogit-<name>` with a personal access token each (narrowest scopes).
    pub service_accounts: Vec<ServiceAccount>,
    /// Expiry of the tokens autogit creates (GitLab allows at most 365 days).
    pub token_lifetime: Dur,
    /// GitLab's container registry ([`crate::registry`]).
    pub registry: Registry,
}

/// GitLab's container registry: `registry.<BASE_DOMAIN>` through the ingress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Registry {
    /// `auto` (the default): on when GitLab has a route (a base domain and an ingress).
    pub enabled: AutoBool,
    /// When the daemon runs the registry's garbage collection (cron, the host's local time).
    pub gc_schedule: String,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            enabled: AutoBool::Auto,
            gc_schedule: crate::registry::DEFAULT_GC_SCHEDULE.to_owned(),
        }
    }
}

/// A GitLab user named in config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GitLabUser {
    pub username: String,
    pub email: String,
    pub name: String,
    pub role: UserRole,
}

/// What a configured user is: an administrator, or the default access level of the user in
/// groups that list them without `access`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    Admin,
    Maintainer,
    Developer,
}

impl UserRole {
    /// The group access level this role grants when a membership does not say.
    pub fn default_access(self) -> AccessLevel {
        match self {
            UserRole::Admin | UserRole::Maintainer => AccessLevel::Maintainer,
            UserRole::Developer => AccessLevel::Developer,
        }
    }
}

/// A group named in config; `path` may be nested (`parent/child`, parents listed first or
/// existing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GitLabGroup {
    pub path: String,
    pub name: String,
    pub visibility: Visibility,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMember>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Private,
    Internal,
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Internal => "internal",
            Visibility::Public => "public",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub username: String,
    pub access: AccessLevel,
}

/// Group access levels autogit grants (GitLab's numeric levels in [`AccessLevel::level`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    Reporter,
    Developer,
    Maintainer,
}

impl AccessLevel {
    /// GitLab's `access_level`: reporter 20, developer 30, maintainer 40.
    pub fn level(self) -> u32 {
        match self {
            AccessLevel::Reporter => 20,
            AccessLevel::Developer => 30,
            AccessLevel::Maintainer => 40,
        }
    }
}

/// A service account: bot user `autogit-<name>` with one personal access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceAccount {
    pub name: String,
    pub scopes: Vec<String>,
}

/// Personal access token scopes GitLab CE knows.
pub const TOKEN_SCOPES: &[&str] = &[
    "api",
    "read_api",
    "read_user",
    "create_runner",
    "manage_runner",
    "k8s_proxy",
    "read_repository",
    "write_repository",
    "read_registry",
    "write_registry",
    "read_virtual_registry",
    "write_virtual_registry",
    "ai_features",
    "self_rotate",
    "sudo",
    "admin_mode",
    "read_service_ping",
];

/// Default token lifetime: 90 days.
pub const DEFAULT_TOKEN_LIFETIME: Dur = Dur::secs(90 * 86_400);
/// Longest token lifetime GitLab accepts by default: 365 days.
pub const MAX_TOKEN_LIFETIME: Dur = Dur::secs(365 * 86_400);

impl ServiceAccount {
    /// The built-in accounts and their narrowest scopes (see docs/gitlab.md for why):
    /// `ci` creates and manages runners, `api` automates through the API, `backup` only
    /// reads, `mirror` creates projects and pushes to them.
    pub fn default_scopes(name: &str) -> Option<&'static [&'static str]> {
        match name {
            "ci" => Some(&["create_runner", "manage_runner"]),
            "api" => Some(&["api"]),
            "backup" => Some(&["read_api"]),
            "mirror" => Some(&["api"]),
            _ => None,
        }
    }

    /// The default list: ci, api, backup, mirror.
    pub fn defaults() -> Vec<ServiceAccount> {
        ["ci", "api", "backup", "mirror"]
            .into_iter()
            .map(|n| ServiceAccount {
                name: n.to_owned(),
                scopes: Self::default_scopes(n)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            })
            .collect()
    }

    /// The GitLab username of the bot: `autogit-<name>`.
    pub fn username(&self) -> String {
        format!("autogit-{}", self.name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GitLabPorts {
    pub http: u16,
    pub https: u16,
    pub ssh: u16,
    /// The host address GitLab's own HTTP and HTTPS ports are published on
    /// (`gitlab.ports.bind`). Unset: `127.0.0.1` when the ingress serves GitLab (the ingress
    /// is then the only door from the network, with its rate limits and WAF rules), every
    /// address when there is no ingress (those ports are then the door).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<std::net::IpAddr>,
}

impl GitLabPorts {
    /// The address on this host that reaches GitLab's published HTTP port: loopback, unless
    /// `bind` names one specific address (then only that one answers).
    pub fn local_host(&self) -> String {
        match self.bind {
            Some(std::net::IpAddr::V4(ip)) if !ip.is_unspecified() && !ip.is_loopback() => {
                ip.to_string()
            }
            Some(std::net::IpAddr::V6(ip)) if !ip.is_unspecified() => format!("[{ip}]"),
            _ => "127.0.0.1".to_owned(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resources {
    pub preset: Preset,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
}

/// Explicit overrides of the preset's GitLab tuning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
pub struct Tuning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub puma_workers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidekiq_concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_shared_buffers: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mirroring {
    pub enabled: bool,
    pub schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Namespace (group path) in the local GitLab that receives mirrored projects.
    pub namespace: String,
    pub timeout: Dur,
    /// Further attempts after a failed sync (network errors, timeouts), with backoff.
    pub retries: u32,
    pub prune_projects: bool,
    /// Accept sources whose host is a literal loopback/private/link-local address (SSRF guard).
    pub allow_private: bool,
    /// Push to `template` with `{path}` replaced by `namespace/name` instead of the local
    /// GitLab's REST-created project (plain git remotes, tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url_template: Option<String>,
    pub sources: MirrorSources,
}

#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct MirrorSources {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub github: Vec<GitHubSource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gitlab: Vec<GitLabSource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<GitSource>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Default)]
pub struct Filters {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    pub forks: bool,
    pub archived: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GitHubSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The REST API root; `None`: `https://api.github.com` (GitHub Enterprise: `https://HOST/api/v3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The token may go over plain `http://`, to a loopback address only (a local test server).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
    #[serde(flatten)]
    pub filters: Filters,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GitLabSource {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The token may go over plain `http://`, to a loopback address only (a local test server).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
    #[serde(flatten)]
    pub filters: Filters,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GitSource {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunnerMode {
    /// Start a runner when jobs wait for it, stop it after `cooldown` without work.
    OnDemand,
    /// Keep runners running.
    Always,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Runners {
    pub mode: RunnerMode,
    pub cooldown: Dur,
    pub image: String,
    /// What a runner and its jobs may reach on their host (docs/runners.md "Isolation").
    pub isolation: Isolation,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<Runner>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpu: Vec<Runner>,
}

/// `runners.isolation`: the defaults give a job no way to root on its host; each weaker
/// setting is a `validate` warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Isolation {
    /// How the runner's container reaches the engine.
    pub engine: EngineAccess,
    /// The engine proxy's socket on a runner host (`autogit runner engine-proxy --listen`).
    pub proxy_socket: String,
    /// The network job containers join.
    pub network: JobNetwork,
    /// `privileged` for job containers (gitlab-runner's `[runners.docker] privileged`).
    pub privileged: bool,
    /// Mount the engine's socket into job containers (Docker-out-of-Docker builds).
    pub job_engine_socket: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineAccess {
    /// Through `autogit runner engine-proxy`: only the calls the Docker executor needs.
    Proxy,
    /// The engine's own socket: anything, root on the host.
    Socket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobNetwork {
    /// The runner's own bridge network `autogit-runner-<name>`.
    Runner,
    /// The engine's default bridge, shared with every container started without a network.
    Bridge,
    /// The host's network stack: every port of the host, loopback included.
    Host,
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation {
            engine: EngineAccess::Proxy,
            proxy_socket: crate::engine_proxy::DEFAULT_PROXY_SOCKET.to_owned(),
            network: JobNetwork::Runner,
            privileged: false,
            job_engine_socket: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    Docker,
    Podman,
    Shell,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuVendor {
    Nvidia,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Inference,
    Render,
    Train,
}

impl Capability {
    pub const NAMES: [&'static str; 3] = ["inference", "render", "train"];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Inference => "inference",
            Capability::Render => "render",
            Capability::Train => "train",
        }
    }

    pub fn parse(s: &str) -> Option<Capability> {
        [Capability::Inference, Capability::Render, Capability::Train]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Runner {
    pub name: String,
    /// `auto` (found by discovery), `local`, or a hostname / IP address reached over SSH.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub executor: Executor,
    pub concurrent: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuVendor>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    pub wsl2: bool,
    /// Runner containers kept on the host even without work (0: zero idle).
    pub min: u32,
    /// Runner containers at most; each takes `concurrent` jobs (`core::ondemand::plan_scale`).
    pub max: u32,
    /// How compute jobs share this host's GPUs (`gpu` runners; one value per host).
    #[serde(skip_serializing_if = "GpuSharing::is_default")]
    pub sharing: GpuSharing,
    /// Takes only jobs of protected branches and tags (GitLab's `access_level:
    /// ref_protected`): a deploy runner that unreviewed code cannot reach.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

impl Runner {
    /// The tags GitLab gives the runner: its `tags`, then its capabilities (`inference`, ...).
    pub fn gitlab_tags(&self) -> Vec<String> {
        let mut tags = self.tags.clone();
        tags.extend(self.capabilities.iter().map(|c| c.as_str().to_owned()));
        tags
    }
}

impl GpuSharing {
    pub fn is_default(&self) -> bool {
        *self == GpuSharing::TimeSliced
    }
}

/// How jobs share a host's GPUs (`runners.gpu[].sharing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuSharing {
    /// Several jobs on one GPU, each with its VRAM (the driver's default compute mode).
    #[default]
    TimeSliced,
    /// One job per GPU, whatever VRAM is left.
    Exclusive,
    /// The GPUs are partitioned (Multi-Instance GPU): each MIG device (`nvidia-smi -L`) takes
    /// one job; GPUs without MIG devices take one job each.
    Mig,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub check_interval: Dur,
    pub reconcile_interval: Dur,
    pub timeout: Dur,
    pub failure_threshold: u32,
    pub self_heal: bool,
    pub restart_budget: RestartBudget,
    pub backoff: Backoff,
    pub notify: Notifiers,
}

/// The entries of `health.notify`, each with its filter and rate limit
/// ([`crate::notify::Rule`]). Derefs to the targets; serialized as the YAML list it came
/// from (each target's keys and, when set, `events`, `min_severity`, `rate_limit`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Notifiers {
    targets: Vec<Notify>,
    rules: Vec<crate::notify::Rule>,
}

impl Notifiers {
    /// A target that gets every notifying event.
    pub fn push(&mut self, n: Notify) {
        self.push_with(n, crate::notify::Rule::default());
    }

    pub fn push_with(&mut self, n: Notify, rule: crate::notify::Rule) {
        self.targets.push(n);
        self.rules.push(rule);
    }

    pub fn clear(&mut self) {
        self.targets.clear();
        self.rules.clear();
    }

    /// Each target with its rule, in the order configured (the index keys a rate limiter).
    pub fn entries(&self) -> impl Iterator<Item = (&Notify, &crate::notify::Rule)> {
        self.targets.iter().zip(&self.rules)
    }
}

/// The targets as a list; an entry with a filter or a rate limit is followed by its rule.
impl std::fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct One<'a>(&'a Notify, &'a crate::notify::Rule);
        impl std::fmt::Debug for One<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)?;
                if *self.1 != crate::notify::Rule::default() {
                    write!(f, " if {:?}", self.1)?;
                }
                Ok(())
            }
        }
        f.debug_list()
            .entries(self.entries().map(|(n, r)| One(n, r)))
            .finish()
    }
}

impl From<Vec<Notify>> for Notifiers {
    fn from(targets: Vec<Notify>) -> Self {
        let rules = vec![crate::notify::Rule::default(); targets.len()];
        Self { targets, rules }
    }
}

impl<'a> IntoIterator for &'a Notifiers {
    type Item = &'a Notify;
    type IntoIter = std::slice::Iter<'a, Notify>;
    fn into_iter(self) -> Self::IntoIter {
        self.targets.iter()
    }
}

impl std::ops::Deref for Notifiers {
    type Target = [Notify];
    fn deref(&self) -> &[Notify] {
        &self.targets
    }
}

impl Serialize for Notifiers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry<'a> {
            #[serde(flatten)]
            target: &'a Notify,
            #[serde(flatten)]
            rule: &'a crate::notify::Rule,
        }
        s.collect_seq(self.entries().map(|(target, rule)| Entry { target, rule }))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RestartBudget {
    pub max: u32,
    pub window: Dur,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Backoff {
    pub initial: Dur,
    pub max: Dur,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Notify {
    Log,
    Webhook {
        url: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_env: Option<String>,
    },
    /// A Slack incoming webhook; its URL is a secret, in the variable `url_env`.
    Slack {
        url_env: String,
    },
    /// A Discord channel webhook; its URL is a secret, in the variable `url_env`.
    Discord {
        url_env: String,
    },
    /// An ntfy server (`url`, e.g. `https://ntfy.sh`) and topic; an access token in
    /// `token_env` when the topic is protected.
    Ntfy {
        url: String,
        topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        token_env: Option<String>,
    },
    /// A Matrix room (`room`: its id, `!…:server`) on `homeserver`, as the user whose access
    /// token is in the variable `token_env` (a secret).
    Matrix {
        homeserver: String,
        room: String,
        token_env: String,
    },
    /// E-mail over SMTP (RFC 5321) to `to`, from `from`; over TLS ([`SmtpTls`]: STARTTLS, or
    /// implicit TLS on port 465) unless the host is a loopback address; the server's certificate checked against Mozilla's roots, or
    /// against `ca_file` (PEM) when set. Credentials (AUTH PLAIN/LOGIN, a secret) from the
    /// variables `username_env` and `password_env`.
    Email {
        host: String,
        port: u16,
        tls: SmtpTls,
        from: String,
        to: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        username_env: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        password_env: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ca_file: Option<String>,
    },
    /// An extension providing `notify` (enabled by EXTENSIONS_ENABLED).
    Extension {
        name: String,
    },
}

/// How an e-mail notifier protects its SMTP session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// A plain connection upgraded with STARTTLS (RFC 3207), or no message: a server that
    /// does not offer it is refused. The default except on port 465.
    Starttls,
    /// TLS from the first byte ("SMTPS", RFC 8314 §3.3), the default on port 465.
    Implicit,
    /// Plain text; allowed only for a loopback host (a local relay).
    None,
}

impl SmtpTls {
    /// The mode a port implies when `tls` is not given: implicit on 465, STARTTLS elsewhere.
    pub fn default_for(port: u16) -> SmtpTls {
        if port == 465 {
            SmtpTls::Implicit
        } else {
            SmtpTls::Starttls
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compute {
    pub queue_limit: u32,
    /// A queued job's priority rises by one step each `aging` interval.
    pub aging: Dur,
    /// How long a running job's lease lasts without renewal; a partitioned host stops the
    /// job after this, and it is placed again (policy `reschedule`) only after that.
    pub lease: Dur,
    /// Probes a host may miss in a row before it is shown unreachable.
    pub unreachable_after: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<Quota>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub user: String,
    pub gpus: u32,
    pub vram: Bytes,
}

/// The log store (docs/logs.md): how long lines are kept and what else is scrubbed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Logs {
    /// Lines older than this are deleted. Default 14 days.
    pub retention: Dur,
    /// Beyond this many lines, the oldest are deleted. Default 5 000 000.
    pub max_lines: u64,
    /// Extra scrub patterns (regular expressions, `regex` syntax): every match becomes
    /// `<redacted>` before a line is stored, besides the built-in scrubbing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scrub: Vec<String>,
    /// Semantic (and hybrid) search: sentence embeddings of the stored messages.
    #[serde(skip_serializing_if = "Semantic::is_default")]
    pub semantic: Semantic,
}

impl Default for Logs {
    fn default() -> Self {
        Self {
            retention: Dur::secs(14 * 86_400),
            max_lines: 5_000_000,
            scrub: Vec::new(),
            semantic: Semantic::default(),
        }
    }
}

/// `logs.semantic` (docs/logs.md): embeddings of the stored messages, computed in the
/// background by all-MiniLM-L6-v2, for `mode=semantic|hybrid` searches. Off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Semantic {
    pub enabled: bool,
    /// The directory holding the model's `model.safetensors`, `tokenizer.json` and
    /// `config.json` (`AUTOGIT_EMBED_MODEL` comes first when set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<String>,
}

impl Semantic {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backup {
    /// Where archives go; relative paths are under the data dir. Default `backups`.
    pub path: String,
    /// How many archives to keep.
    pub retention: u32,
    pub schedule: String,
    pub btrfs_snapshot: AutoBool,
    /// age X25519 recipients (`age1…`, public keys) every archive is encrypted to; empty:
    /// archives are plain tar files. The matching identities are not on this host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encrypt_to: Vec<String>,
    /// Where every archive is copied off the host, verified, with retention there
    /// (`backup.targets`; docs/gitlab.md "Off-host copies"). Empty: archives stay local.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<BackupTarget>,
}

/// One off-host store of archives (`backup.targets[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackupTarget {
    /// An S3-compatible bucket (AWS S3, MinIO, Ceph, rclone ...), SigV4 over HTTPS.
    S3(S3Target),
    /// A directory on an SSH host, over `sftp` with the host key pinned in autogit's
    /// `known_hosts`.
    Sftp(SftpTarget),
    /// An extension of type `storage` (enabled by EXTENSIONS_ENABLED); `name` is its name.
    Extension(ExtensionTarget),
}

/// How many copies a target keeps: the newest `keep` (none: `backup.retention`), and none
/// older than `max_age` (the newest copy is always kept).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetRetention {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Dur>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct S3Target {
    /// The target's name (`backup restore --from NAME`); default `s3`.
    pub name: String,
    /// The service's base URL, e.g. `https://s3.eu-central-1.amazonaws.com`; requests use
    /// path-style addressing (`<endpoint>/<bucket>/<key>`).
    pub endpoint: String,
    pub bucket: String,
    /// The SigV4 signing region; default `us-east-1`.
    pub region: String,
    /// Prepended to every object key (e.g. `gitlab/`); default none.
    pub prefix: String,
    /// The NAME of the variable holding the access key id (default `AWS_ACCESS_KEY_ID`).
    pub access_key_env: String,
    /// The NAME of the variable holding the secret key (default `AWS_SECRET_ACCESS_KEY`).
    pub secret_key_env: String,
    #[serde(flatten)]
    pub retention: TargetRetention,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SftpTarget {
    /// Default `sftp`.
    pub name: String,
    /// `host` or `user@host`; its key must be trusted first (`autogit runner trust HOST`).
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The remote directory (absolute, or relative to the login directory); it must exist.
    pub path: String,
    /// The private key to log in with; none: ssh's defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(flatten)]
    pub retention: TargetRetention,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExtensionTarget {
    pub name: String,
    #[serde(flatten)]
    pub retention: TargetRetention,
}

impl BackupTarget {
    pub fn name(&self) -> &str {
        match self {
            Self::S3(t) => &t.name,
            Self::Sftp(t) => &t.name,
            Self::Extension(t) => &t.name,
        }
    }

    pub fn retention(&self) -> &TargetRetention {
        match self {
            Self::S3(t) => &t.retention,
            Self::Sftp(t) => &t.retention,
            Self::Extension(t) => &t.retention,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoBool {
    Auto,
    True,
    False,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Auto,
    Docker,
    Podman,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressKind {
    Traefik,
    Nginx,
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Platform {
    pub engine: EngineKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    pub rootless: AutoBool,
    /// Compose project name, container name prefix and label value.
    pub project: String,
    pub network: String,
    pub ingress: IngressKind,
    /// Address ranges allowed to read GitLab's health endpoints.
    pub monitoring_whitelist: Vec<String>,
    /// Address ranges allowed through the ingress at all (empty: everyone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress_allow: Vec<String>,
    /// The prompt-injection filter's forward-auth endpoint (`autogit guard serve`), e.g.
    /// `http://autogit-guard:8787/guard/forward-auth`; routes of `guard_services` go through it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard_forward_auth: Option<String>,
    /// Services whose requests the guard checks (by service name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guard_services: Vec<String>,
    /// The prompt-injection filter as a reverse proxy (`autogit guard serve --upstream
    /// HOST=URL`), e.g. `http://autogit-guard:8787`: the routes of `guard_services` are sent to
    /// it instead of to the service, and it passes what is clean on. The alternative to
    /// `guard_forward_auth` (one of the two): no second exchange per request, works with nginx
    /// too, and can fail open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard_proxy: Option<String>,
    /// With `guard_proxy`: when the guard is down, send the guarded routes to the service
    /// unchecked (`true`) instead of answering 502 (`false`, the default: fail closed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub guard_fail_open: bool,
    /// Where a cluster (`export kubernetes`, `install --target kubernetes`) puts the
    /// volumes' claims: a StorageClass name; `None`: the cluster's default class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The size each volume's claim asks for in a cluster, by volume name (`gitlab-data:
    /// 200G`); a volume not named gets its preset's size (`kubernetes::default_volume_size`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_sizes: BTreeMap<String, Bytes>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION.to_owned(),
            gitlab: GitLab {
                hostname: "gitlab.localhost".to_owned(),
                external_url: crate::ingress::INIT_EXTERNAL_URL.to_owned(),
                external_url_explicit: false,
                version: DEFAULT_GITLAB_VERSION.to_owned(),
                image: "gitlab/gitlab-ce".to_owned(),
                ports: GitLabPorts {
                    http: 8080,
                    https: 8443,
                    ssh: 2222,
                    bind: None,
                },
                resources: Resources {
                    preset: Preset::Homelab,
                    cpu: None,
                    memory: None,
                },
                tuning: Tuning::default(),
                start_period: Dur::secs(600),
                users: Vec::new(),
                groups: Vec::new(),
                service_accounts: ServiceAccount::defaults(),
                token_lifetime: DEFAULT_TOKEN_LIFETIME,
                registry: Registry::default(),
            },
            mirroring: Mirroring {
                enabled: false,
                schedule: DEFAULT_MIRROR_SCHEDULE.to_owned(),
                parallelism: None,
                namespace: "mirrors".to_owned(),
                timeout: Dur::secs(30 * 60),
                retries: 2,
                prune_projects: false,
                allow_private: false,
                target_url_template: None,
                sources: MirrorSources::default(),
            },
            runners: Runners {
                mode: RunnerMode::OnDemand,
                cooldown: Dur::secs(300),
                image: "gitlab/gitlab-runner:alpine-v18.5.0".to_owned(),
                isolation: Isolation::default(),
                cpu: Vec::new(),
                gpu: Vec::new(),
            },
            health: Health {
                check_interval: Dur::secs(60),
                reconcile_interval: Dur::secs(300),
                timeout: Dur::secs(10),
                failure_threshold: 3,
                self_heal: true,
                restart_budget: RestartBudget {
                    max: 5,
                    window: Dur::secs(600),
                },
                backoff: Backoff {
                    initial: Dur::secs(10),
                    max: Dur::secs(300),
                },
                notify: vec![Notify::Log].into(),
            },
            compute: Compute {
                queue_limit: 1000,
                aging: Dur::secs(600),
                lease: Dur::secs(120),
                unreachable_after: 2,
                quotas: Vec::new(),
            },
            backup: Backup {
                path: "backups".to_owned(),
                retention: 7,
                schedule: DEFAULT_BACKUP_SCHEDULE.to_owned(),
                btrfs_snapshot: AutoBool::Auto,
                encrypt_to: Vec::new(),
                targets: Vec::new(),
            },
            platform: Platform {
                engine: EngineKind::Auto,
                socket: None,
                rootless: AutoBool::Auto,
                project: "autogit".to_owned(),
                network: "autogit".to_owned(),
                ingress: IngressKind::Traefik,
                monitoring_whitelist: vec![
                    "127.0.0.0/8".to_owned(),
                    "::1/128".to_owned(),
                    "10.0.0.0/8".to_owned(),
                    "172.16.0.0/12".to_owned(),
                ],
                ingress_allow: Vec::new(),
                guard_forward_auth: None,
                guard_services: Vec::new(),
                guard_proxy: None,
                guard_fail_open: false,
                storage_class: None,
                volume_sizes: BTreeMap::new(),
            },
            logs: Logs::default(),
        }
    }
}

impl Config {
    /// The effective GitLab tuning: the preset's, with explicit overrides applied.
    pub fn gitlab_tuning(&self) -> crate::preset::GitLabTuning {
        let base = self.gitlab.resources.preset.tuning();
        let t = &self.gitlab.tuning;
        crate::preset::GitLabTuning {
            puma_workers: t.puma_workers.unwrap_or(base.puma_workers),
            sidekiq_concurrency: t.sidekiq_concurrency.unwrap_or(base.sidekiq_concurrency),
            postgres_shared_buffers: t
                .postgres_shared_buffers
                .unwrap_or(base.postgres_shared_buffers),
            prometheus: t.prometheus.unwrap_or(base.prometheus),
        }
    }

    /// The effective GitLab size: the preset's, with explicit cpu/memory applied.
    pub fn gitlab_size(&self) -> crate::preset::Size {
        let base = self
            .gitlab
            .resources
            .preset
            .size(crate::preset::Component::GitLab);
        crate::preset::Size {
            cpus: self.gitlab.resources.cpu.unwrap_or(base.cpus),
            memory: self.gitlab.resources.memory.unwrap_or(base.memory),
        }
    }

    pub fn all_runners(&self) -> impl Iterator<Item = &Runner> {
        self.runners.cpu.iter().chain(&self.runners.gpu)
    }
}
