//! The API's wire types: the JSON shapes of requests and responses, with their schemas. The
//! platform spec's shapes (`Service`, `ServiceList`, `DeployRequest`, `DNSRecord`,
//! `AnalyzeRequest`, `AnalyzeResult`) keep its field names; the rest follow the same style.
//! Each type is built from the application layer's own types in `ops`, never read from a
//! driver directly.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An optional integer that also accepts a JSON number with a zero fraction (`60.0`): JSON
/// Schema calls that an integer, and clients that only have doubles send it so.
fn int<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let v = if let Some(i) = n.as_i64() {
        i
    } else {
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
            _ => return Err(D::Error::custom(format!("{n} is not an integer in range"))),
        }
    };
    T::try_from(v)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{v} is out of range")))
}

/// A role: `viewer` reads, `operator` also deploys, syncs, submits and reviews, `admin` also
/// manages keys, restores backups, deletes quarantine records and reads the audit log.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl From<autogit_core::access::Role> for Role {
    fn from(r: autogit_core::access::Role) -> Self {
        use autogit_core::access::Role as R;
        match r {
            R::Viewer => Role::Viewer,
            R::Operator => Role::Operator,
            R::Admin => Role::Admin,
        }
    }
}

impl From<Role> for autogit_core::access::Role {
    fn from(r: Role) -> Self {
        use autogit_core::access::Role as R;
        match r {
            Role::Viewer => R::Viewer,
            Role::Operator => R::Operator,
            Role::Admin => R::Admin,
        }
    }
}

/// Health of a service as the spec names it, mapped from the state machine:
/// HEALTHY → healthy; DEGRADED and REPAIRING → degraded; FAILED → unhealthy;
/// DEPLOYING, ABSENT or no record → unknown.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    Healthy,
    Degraded,
    Unhealthy,
    Unknown,
}

impl ServiceStatus {
    pub fn from_state(state: Option<&str>) -> Self {
        match state {
            Some("HEALTHY") => Self::Healthy,
            Some("DEGRADED" | "REPAIRING") => Self::Degraded,
            Some("FAILED") => Self::Unhealthy,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Ports {
    /// The port the service listens on inside its container.
    pub internal: Option<u16>,
    /// The host port it is published on, if any.
    pub external: Option<u16>,
}

/// A planned service and its state.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// `gitlab` for `gitlab.<BASE_DOMAIN>`; `null` for services without a route.
    pub subdomain: Option<String>,
    pub status: ServiceStatus,
    pub ports: Ports,
    /// The state machine's state (`HEALTHY`, `DEPLOYING`...), `null` before the first record.
    pub state: Option<String>,
    /// When it entered that state (Unix seconds).
    pub since: Option<i64>,
    pub restarts: i64,
    /// Raised when self-healing gave up; cleared by `POST /services/{service}/clear-flag`.
    pub flagged: bool,
    pub flag_reason: Option<String>,
    /// `https://<subdomain>.<BASE_DOMAIN>` when both are known.
    pub url: Option<String>,
}

/// The spec's `ServiceList`: an array of services.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceList(pub Vec<Service>);

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceQuery {
    /// Only services with this status.
    #[param(inline)]
    pub status: Option<ServiceStatus>,
    /// Page size (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// How many to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServicePath {
    /// A service of the plan (`gitlab`, `traefik`...).
    pub service: String,
}

/// The spec's `DeployRequest`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Seconds to wait for health before the deployment counts as failed (default 600).
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 0, maximum = 3600)]
    pub wait_seconds: Option<u32>,
}

/// Work started in the background; follow it on `GET /api/v1/events`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The request id; events of this work carry the same subject.
    pub id: String,
    pub operation: String,
    pub target: String,
    pub events: String,
}

/// The service after its flag was cleared.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FlagCleared {
    pub service: String,
    /// False when no flag was raised.
    pub cleared: bool,
}

/// The spec's `DNSRecord`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    /// Fully qualified name (`nas.example.com`); must be under BASE_DOMAIN and not one of
    /// the platform's own names.
    #[schema(
        pattern = "^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)+\\.?$",
        max_length = 253
    )]
    pub name: String,
    /// `A`, `AAAA` or `TXT` (the list also shows the platform's records).
    #[serde(rename = "type")]
    #[schema(pattern = "^(A|AAAA|TXT)$")]
    pub kind: String,
    /// An IPv4 address (A), an IPv6 address (AAAA) or printable text (TXT).
    #[schema(min_length = 1, max_length = 1024)]
    pub value: String,
    /// Seconds (default 300).
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 60, maximum = 86400)]
    pub ttl: Option<u32>,
}

/// A record of the zone as autogit wants it (the platform's names, records added through the
/// API, and their ownership records).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ZoneRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub ttl: u32,
    /// Served through Cloudflare's proxy (`CLOUDFLARE_PROXIED`): the name resolves to
    /// Cloudflare's edge, which forwards to `value`. False with every other provider.
    pub proxied: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DnsRecordList(pub Vec<ZoneRecord>);

#[derive(Clone, Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DnsRecordPath {
    pub name: String,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: String,
}

/// The spec's `AnalyzeRequest`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// The text to analyse (at most the body limit, 1 MiB by default).
    pub text: String,
    /// Where it came from, recorded with a quarantined text (default `api-request`).
    #[serde(default)]
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub source: Option<String>,
    /// Store a suspicious or blocked text in the quarantine (default true).
    #[serde(default)]
    pub quarantine: Option<bool>,
}

/// One finding of the filter.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    pub rule: String,
    pub stage: String,
    pub start: usize,
    pub end: usize,
    pub weight: f64,
}

/// The spec's `AnalyzeResult` (`clean_text`, `quarantined`, `risk_score`, `detected_patterns`)
/// and the verdict.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AnalyzeResult {
    /// `clean`, `suspicious` or `blocked`.
    pub verdict: String,
    pub risk_score: f64,
    pub clean_text: String,
    /// Suspicious fragments of the original text.
    pub quarantined: Vec<String>,
    /// Rule names, in order of position.
    pub detected_patterns: Vec<String>,
    pub findings: Vec<Finding>,
    /// The quarantine record, when one was written.
    pub quarantine_id: Option<String>,
}

/// One difference between the records the platform needs and the provider's zone.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DnsDrift {
    /// `create`, `update` or `delete` (what `dns sync` would do), or `conflict`: a record
    /// autogit does not own is in the way, and is left alone.
    pub action: String,
    pub name: String,
    /// Record type (`A`, `AAAA`, `CNAME`, `TXT`...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The value the platform needs (for `delete`: the value that would go).
    pub value: String,
    /// What the provider holds now, for `update` and `conflict`.
    pub current: Option<String>,
    /// Whether the platform wants the record behind Cloudflare's proxy.
    pub proxied: bool,
    /// Whether the provider's record is proxied now, for `update` (a proxy turned on or off
    /// by hand is drift, as a changed value is).
    pub current_proxied: Option<bool>,
}

/// The records the platform needs against the provider's zone (`autogit dns plan`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DnsPlanView {
    /// `DNS_PROVIDER`.
    pub provider: String,
    /// The provider in words, or what `manual` means.
    pub target: String,
    pub zone: Option<String>,
    /// Whether the zone was read (false for `manual`: every record is listed as to create).
    pub readable: bool,
    pub in_sync: bool,
    pub drift: Vec<DnsDrift>,
}

/// The wildcard (or per-service) certificate on disk.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Certificate {
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Renewal is due: two thirds of the lifetime have passed, or a wanted name is missing.
    pub due: bool,
}

/// TLS as configured, and the certificate when there is one.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TlsStatus {
    /// BASE_DOMAIN and ACME_EMAIL are set.
    pub configured: bool,
    /// The names the certificate must cover.
    pub wanted: Vec<String>,
    pub certificate: Option<Certificate>,
    /// Why TLS is not configured, or the certificate could not be read.
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RenewRequest {
    /// Renew even when not due (counts against the CA's rate limits).
    pub force: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceLogQuery {
    /// The last lines (1–5000, default 200).
    #[param(minimum = 1, maximum = 5000)]
    pub tail: Option<u32>,
    /// Only lines since (Unix seconds).
    #[param(minimum = 0)]
    pub since: Option<i64>,
}

/// A line of a service's container log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    pub service: String,
    pub line: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LogLines(pub Vec<LogLine>);

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogSearchQuery {
    /// What to look for, in the query language of docs/logs.md: words, "phrases", -word,
    /// service:, level:, status:, class:, ip:, url:, request:, trace:, job:.
    #[param(min_length = 1, max_length = 1000)]
    pub q: String,
    /// `90s`, `15m`, `24h`, `7d`, `2w` (at most a year).
    #[serde(rename = "timeRange")]
    #[param(rename = "timeRange", pattern = r"^[0-9]{1,8}(s|m|min|h|d|w)$")]
    pub time_range: Option<String>,
    /// Ranking: `hybrid` (words and meaning, reciprocal rank fusion), `lexical` (words,
    /// BM25) or `semantic` (meaning: sentence embeddings). The last two need
    /// `logs.semantic.enabled`; default: `hybrid` when it is on, else `lexical`.
    #[param(pattern = r"^(hybrid|lexical|semantic)$")]
    pub mode: Option<String>,
}

/// A stored log line (scrubbed: e-mail addresses, tokens and secrets are replaced).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LogHit {
    /// RFC 3339, UTC, nanoseconds.
    pub at: String,
    pub service: String,
    pub message: String,
    /// Relevance, higher is better: cosine similarity (semantic) or the reciprocal rank
    /// fusion of BM25's and the semantic ranking (hybrid); 0 in lexical search, which is
    /// ordered by time (newest first) and computes no score.
    pub score: f64,
    /// `debug`, `info`, `warn`, `error` or `unknown`.
    pub level: String,
    pub error_class: Option<String>,
    pub http_status: Option<u16>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub job_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LogSearchResult {
    pub hits: Vec<LogHit>,
    /// Lines in the store (0: nothing indexed yet; is the daemon running?).
    pub indexed: u64,
}

/// A configured mirror and its last result.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Mirror {
    pub name: String,
    /// `git`, `github` or `gitlab`.
    pub kind: String,
    pub source: String,
    pub target: String,
    /// `ok`, `failed`, or `null` before the first sync.
    pub last_result: Option<String>,
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    /// Seconds since the last success.
    pub lag_seconds: Option<i64>,
    /// Bytes of Git LFS objects mirrored; `null` when the repository has none.
    pub lfs_bytes: Option<u64>,
    /// A configuration problem that keeps it from syncing.
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MirrorList(pub Vec<Mirror>);

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// How many to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Mirror names, or repositories (`github:OWNER/REPO`); empty: every mirror.
    #[serde(default)]
    pub repos: Vec<String>,
}

/// A runner host with its last known inventory.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunnerHost {
    pub host: String,
    pub reachable: bool,
    pub checked_at: i64,
    pub error: Option<String>,
    /// The host's inventory (CPUs, memory, engine, GPUs with VRAM) as last probed.
    #[schema(value_type = Object)]
    pub inventory: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunnerHostList(pub Vec<RunnerHost>);

/// A registered runner and its on-demand state.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunnerState {
    pub runner: String,
    pub host: String,
    /// `cpu` or `gpu`.
    pub kind: String,
    /// `on-demand` (started for jobs, stopped after the cooldown) or `always`.
    pub mode: String,
    /// Since when it has had no job (Unix seconds); `null` while it has work or never ran.
    pub idle_since: Option<i64>,
    /// When the cooldown stops it if no job comes (Unix seconds; on-demand only).
    pub stops_at: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunnerStateList(pub Vec<RunnerState>);

/// A compute job.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub user: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    pub submitted_at: i64,
    pub host: Option<String>,
    pub gpus: Option<Vec<u32>>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub message: String,
    /// A running job's lease on its host (docs/runners.md, "Partitions: fencing by lease");
    /// `null` when it holds none.
    #[serde(default)]
    pub lease: Option<JobLease>,
}

/// A running job's lease on its host.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct JobLease {
    pub host: String,
    /// `live` (renewed), `unreachable` (the host missed `compute.unreachable_after` probes;
    /// the job may still run there) or `lost` (expired: the host's watchdog stops the job).
    pub state: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Probes of the host missed in a row.
    pub missed: u32,
    /// What happens when it is lost: `resume` or `reschedule`.
    pub on_lost: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList(pub Vec<Job>);

#[derive(Clone, Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    pub id: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs in this state.
    #[param(inline)]
    pub state: Option<JobStateName>,
    /// Page size (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// How many to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

/// A GPU job to queue.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// Image reference (`registry/name:tag` or `name@sha256:…`).
    #[schema(pattern = "^[A-Za-z0-9._/:@][A-Za-z0-9._/:@-]{0,511}$")]
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    /// GPUs (default 1).
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 1, maximum = 64)]
    pub gpus: Option<u32>,
    /// VRAM per GPU (`8G`, `512M`, `24GiB`); default: the kind's (`capability`), else 1G.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,6}([KMGkmg]([Ii]?[Bb])?)?$")]
    pub vram: Option<String>,
    /// The job's kind, as `compute run --capability`: only hosts whose runners have this
    /// capability take it, and it gets the kind's defaults (VRAM when `vram` is left out,
    /// lease policy, time limit, checkpoint volume; docs/runners.md, "Job kinds").
    #[serde(default)]
    #[schema(pattern = "^(inference|render|train)$")]
    pub capability: Option<String>,
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
    /// Spread the job over this many hosts (default 1): one part per host, each with `gpus`
    /// GPUs and a job id of its own (the answer is the first), all started together or none,
    /// each told `AUTOGIT_RANK`, `AUTOGIT_WORLD_SIZE`, `AUTOGIT_HOSTS` and `MASTER_ADDR`
    /// (docs/runners.md, "Jobs over several hosts"). Not for services (`port`).
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 1, maximum = 64)]
    pub hosts: Option<u32>,
    /// An inference service's port in its container: the job then runs as a service,
    /// health-checked at `health` and kept running by the lifecycle policy until cancelled.
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    /// The service's health path (default `/health`; needs `port`).
    #[serde(default)]
    #[schema(pattern = "^/[\\x21-\\x7e]{0,255}$")]
    pub health: Option<String>,
    /// Between health checks (`10s`; needs `port`).
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,6}(ms|s|m|h|d)?$")]
    pub health_interval: Option<String>,
    /// How long a (re)started service may take to become healthy (`2m`; needs `port`).
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,6}(ms|s|m|h|d)?$")]
    pub start_period: Option<String>,
    /// How long the job may run (`24h`; `0`: no limit); default: its kind's.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,6}(ms|s|m|h|d)?$")]
    pub timeout: Option<String>,
    /// When its lease expires while its host is away: `resume` (wait for the host) or
    /// `reschedule`; default: its kind's.
    #[serde(default)]
    #[schema(pattern = "^(resume|reschedule)$")]
    pub on_lost: Option<String>,
    /// A service's route (needs `port`): served by the ingress (Traefik or nginx) at
    /// `https://ROUTE.<BASE_DOMAIN>` while it runs; not a platform service's name, nor one a
    /// queued or running job holds.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub route: Option<String>,
    /// Whether the route goes through the prompt-injection guard (needs `route`); default:
    /// when the ingress has the guard (deployed for `platform.guard_services`, or
    /// `guard_proxy`, or `guard_forward_auth` with Traefik).
    #[serde(default)]
    pub guard: Option<bool>,
}

/// An area of the API: what a key's scopes name.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Meta,
    Services,
    Dns,
    Security,
    Logs,
    Mirrors,
    Runners,
    Compute,
    Backups,
    Auth,
    Audit,
    Events,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Meta => "meta",
            Area::Services => "services",
            Area::Dns => "dns",
            Area::Security => "security",
            Area::Logs => "logs",
            Area::Mirrors => "mirrors",
            Area::Runners => "runners",
            Area::Compute => "compute",
            Area::Backups => "backups",
            Area::Auth => "auth",
            Area::Audit => "audit",
            Area::Events => "events",
        }
    }

    pub const ALL: [Area; 12] = [
        Area::Meta,
        Area::Services,
        Area::Dns,
        Area::Security,
        Area::Logs,
        Area::Mirrors,
        Area::Runners,
        Area::Compute,
        Area::Backups,
        Area::Auth,
        Area::Audit,
        Area::Events,
    ];

    pub fn parse(s: &str) -> Option<Area> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A job state.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobStateName {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// The review state of a quarantined text.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineStatus {
    Pending,
    Released,
    Confirmed,
}

/// A backup archive.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Backup {
    pub name: String,
    pub bytes: u64,
    /// Unix seconds.
    pub modified: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupList(pub Vec<Backup>);

#[derive(Clone, Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BackupPath {
    pub name: String,
}

/// Restoring replaces GitLab's data: the body must repeat the archive's name.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub confirm: String,
}

/// A state transition of a service.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    pub service: String,
    pub at: i64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TransitionList(pub Vec<Transition>);

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransitionQuery {
    /// Only this service.
    pub service: Option<String>,
    /// How many, newest last (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A quarantined text (the spec's quarantine record).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QuarantineRecord {
    pub id: String,
    pub timestamp: String,
    pub source: String,
    pub original_text: String,
    pub detected_patterns: Vec<String>,
    pub risk_score: f64,
    pub sanitized_text: String,
    /// `pending` or `released`.
    pub analysis_status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QuarantineList(pub Vec<QuarantineRecord>);

/// A finding of `guard scan-repo`: Trojan Source controls, invisible characters, homoglyphs.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ScanFinding {
    /// Relative to the scanned root.
    pub path: String,
    pub line: usize,
    pub column: usize,
    /// `bidi_control`, `invisible_character`, `homoglyph_identifier`...
    pub kind: String,
    pub message: String,
}

/// A kept `guard scan-repo` run.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RepoScan {
    pub id: String,
    pub path: String,
    /// Unix seconds.
    pub at: i64,
    pub files_scanned: usize,
    pub files_skipped: usize,
    /// Findings in all (the list holds the first 500).
    pub total: usize,
    pub findings: Vec<ScanFinding>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RepoScanList(pub Vec<RepoScan>);

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuarantineQuery {
    #[param(inline)]
    pub status: Option<QuarantineStatus>,
    /// How many, newest first (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct QuarantinePath {
    pub id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

/// An API key (never its secret, except once in [`CreatedKey`]).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// The public part (`4y2o4zod`; the key itself is `agk_4y2o4zod_…`), used to revoke it.
    pub prefix: String,
    pub name: String,
    pub role: Role,
    /// Areas it may use; empty: all.
    pub scopes: Vec<Area>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList(pub Vec<ApiKey>);

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key is for: letters, digits, space, `.`, `_`, `@`, `-`; 1 to 100.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$")]
    pub name: String,
    pub role: Role,
    /// Areas the key may use; empty: all.
    #[serde(default)]
    pub scopes: Vec<Area>,
    /// Lifetime in days (default: no expiry).
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

/// A new key. `key` is shown this once; only its hash is kept.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKey,
}

#[derive(Clone, Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The key's public part as listed (`4y2o4zod`); `agk_4y2o4zod` works too.
    #[param(pattern = "^(agk_)?[a-z2-7]{8}$")]
    pub prefix: String,
}

/// A token request: with a key in `Authorization`, an empty body; or a login.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The login provider (default `local`).
    #[serde(default)]
    pub provider: Option<String>,
    /// Lifetime in seconds (default 900, at most 86400).
    #[serde(default, deserialize_with = "int")]
    #[schema(minimum = 60, maximum = 86400)]
    pub ttl_seconds: Option<u32>,
}

impl std::fmt::Debug for TokenRequestRedacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("username", &self.0.username)
            .field("password", &self.0.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `Debug` of a token request without its password.
pub struct TokenRequestRedacted<'a>(pub &'a TokenRequest);

#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_at: i64,
    pub token_id: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("token_id", &self.token_id)
            .finish()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    #[schema(min_length = 1, max_length = 128)]
    pub token_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    pub ok: bool,
    pub detail: String,
}

/// Who the request authenticated as.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub subject: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
}

/// An audit record: who, with which role, did what to what, with which result.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub role: Option<Role>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub status: Option<u16>,
    pub request_id: String,
    pub source: Option<String>,
    pub prev: String,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList(pub Vec<AuditRecord>);

#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Records after this sequence number.
    #[param(minimum = 0, maximum = 9007199254740991_i64)]
    pub after: Option<u64>,
    /// How many (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// Liveness of the API server itself.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// One event of the application layer (the `data` of a server-sent event).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EventEnvelope {
    /// Unix seconds.
    pub at: u64,
    /// The event kind (`service_state_changed`, `mirror_synced`...), also the SSE `event:`.
    pub kind: String,
    pub severity: String,
    pub subject: Option<String>,
    pub summary: String,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}
