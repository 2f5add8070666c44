//! The typed configuration (`autogit.yml`) with its defaults.
//!
//! Decoding from YAML lives in [`crate::decode`]; cross-field checks in [`crate::validate`].
//! Every type here serializes back to the same YAML shape it was read from, which the
//! round-trip property test relies on.

use crate::preset::Preset;
use crate::units::{Bytes, Dur};
use serde::Serialize;

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
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GitLab {
    pub hostname: String,
    pub external_url: String,
    pub version: String,
    pub image: String,
    pub ports: GitLabPorts,
    pub resources: Resources,
    pub tuning: Tuning,
    /// How long GitLab may take to become healthy after a (re)start: its first boot runs
    /// migrations and a reconfigure.
    pub start_period: Dur,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GitLabPorts {
    pub http: u16,
    pub https: u16,
    pub ssh: u16,
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
    pub prune_projects: bool,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<Runner>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpu: Vec<Runner>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Inference,
    Render,
    Train,
}

impl Capability {
    pub const NAMES: [&'static str; 3] = ["inference", "render", "train"];
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
    pub notify: Vec<Notify>,
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
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compute {
    pub queue_limit: u32,
    /// A queued job's priority rises by one step each `aging` interval.
    pub aging: Dur,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<Quota>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub user: String,
    pub gpus: u32,
    pub vram: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backup {
    /// Where archives go; relative paths are under the data dir. Default `backups`.
    pub path: String,
    /// How many archives to keep.
    pub retention: u32,
    pub schedule: String,
    pub btrfs_snapshot: AutoBool,
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION.to_owned(),
            gitlab: GitLab {
                hostname: "gitlab.localhost".to_owned(),
                external_url: "http://gitlab.localhost:8080".to_owned(),
                version: DEFAULT_GITLAB_VERSION.to_owned(),
                image: "gitlab/gitlab-ce".to_owned(),
                ports: GitLabPorts {
                    http: 8080,
                    https: 8443,
                    ssh: 2222,
                },
                resources: Resources {
                    preset: Preset::Homelab,
                    cpu: None,
                    memory: None,
                },
                tuning: Tuning::default(),
                start_period: Dur::secs(600),
            },
            mirroring: Mirroring {
                enabled: false,
                schedule: DEFAULT_MIRROR_SCHEDULE.to_owned(),
                parallelism: None,
                namespace: "mirrors".to_owned(),
                timeout: Dur::secs(30 * 60),
                prune_projects: false,
                sources: MirrorSources::default(),
            },
            runners: Runners {
                mode: RunnerMode::OnDemand,
                cooldown: Dur::secs(300),
                image: "gitlab/gitlab-runner:alpine-v18.5.0".to_owned(),
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
                notify: vec![Notify::Log],
            },
            compute: Compute {
                queue_limit: 1000,
                aging: Dur::secs(600),
                quotas: Vec::new(),
            },
            backup: Backup {
                path: "backups".to_owned(),
                retention: 7,
                schedule: DEFAULT_BACKUP_SCHEDULE.to_owned(),
                btrfs_snapshot: AutoBool::Auto,
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
            },
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
