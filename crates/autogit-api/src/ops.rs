//! Every operation of `/api/v1`, one definition each (see [`crate::op`]). Grouped as Komodo
//! groups them: reads, writes (autogit's own records), executes (work on the platform).
//! [`for_each_operation!`] lists them all: the router, the OpenAPI document and the tests'
//! role matrix are generated from it, so an operation cannot be served without a role.

use crate::model::*;
use crate::op::{Access::*, NoBody, NoParams, json_body, operation};
use autogit_core::access::Role::*;

json_body!(
    DeployRequest,
    RenewRequest,
    DnsRecord,
    AnalyzeRequest,
    SyncRequest,
    SubmitJob,
    RestoreRequest,
    CreateKey,
    TokenRequest,
    RevokeToken,
);

// ---- meta ----------------------------------------------------------------------------------

operation! {
    /// Liveness of the API server (no credentials)
    Healthz: Get "/healthz",
    id: "meta.health", access: Public, area: "meta", kind: Read,
    path: NoParams, query: NoParams, body: NoBody, response: Health,
}

// ---- services ------------------------------------------------------------------------------

operation! {
    /// List all services
    ListServices: Get "/api/v1/services",
    id: "services.list", access: Role(Viewer), area: "services", kind: Read,
    path: NoParams, query: ServiceQuery, body: NoBody, response: ServiceList,
}

operation! {
    /// One service
    GetService: Get "/api/v1/services/{service}",
    id: "services.get", access: Role(Viewer), area: "services", kind: Read, etag: true,
    path: ServicePath, query: NoParams, body: NoBody, response: Service,
}

operation! {
    /// Deploy or update a service
    DeployService: Post "/api/v1/services/{service}/deploy",
    id: "services.deploy", access: Role(Operator), area: "services", kind: Execute,
    success: 202, etag: true,
    path: ServicePath, query: NoParams, body: DeployRequest, response: Accepted,
}

operation! {
    /// Clear the human-intervention flag of a service
    ClearFlag: Post "/api/v1/services/{service}/clear-flag",
    id: "services.clear_flag", access: Role(Operator), area: "services", kind: Write, etag: true,
    path: ServicePath, query: NoParams, body: NoBody, response: FlagCleared,
}

operation! {
    /// The last lines of a service's container log
    ServiceLogs: Get "/api/v1/services/{service}/logs",
    id: "services.logs", access: Role(Operator), area: "logs", kind: Read,
    path: ServicePath, query: ServiceLogQuery, body: NoBody, response: LogLines,
}

operation! {
    /// State transitions of the services
    ListTransitions: Get "/api/v1/state/transitions",
    id: "state.transitions", access: Role(Viewer), area: "services", kind: Read,
    path: NoParams, query: TransitionQuery, body: NoBody, response: TransitionList,
}

// ---- dns -----------------------------------------------------------------------------------

operation! {
    /// DNS records of the platform (planned, as the provider should hold them)
    ListDnsRecords: Get "/api/v1/dns/records",
    id: "dns.list", access: Role(Viewer), area: "dns", kind: Read,
    path: NoParams, query: NoParams, body: NoBody, response: DnsRecordList,
}

operation! {
    /// Create DNS record
    CreateDnsRecord: Post "/api/v1/dns/records",
    id: "dns.create", access: Role(Operator), area: "dns", kind: Write, success: 201,
    path: NoParams, query: NoParams, body: DnsRecord, response: DnsRecord,
}

operation! {
    /// Delete a DNS record
    DeleteDnsRecord: Delete "/api/v1/dns/records/{name}/{type}",
    id: "dns.delete", access: Role(Operator), area: "dns", kind: Write,
    path: DnsRecordPath, query: NoParams, body: NoBody, response: Deleted,
}

operation! {
    /// The records the platform needs against the provider's zone: the drift `dns sync` would fix
    GetDnsPlan: Get "/api/v1/dns/plan",
    id: "dns.plan", access: Role(Viewer), area: "dns", kind: Read,
    path: NoParams, query: NoParams, body: NoBody, response: DnsPlanView,
}

operation! {
    /// The TLS certificate: names, validity, whether renewal is due
    GetTls: Get "/api/v1/tls",
    id: "tls.status", access: Role(Viewer), area: "dns", kind: Read,
    path: NoParams, query: NoParams, body: NoBody, response: TlsStatus,
}

operation! {
    /// Renew the certificate by ACME (when due, or forced), then refresh the ingress
    RenewTls: Post "/api/v1/tls/renew",
    id: "tls.renew", access: Role(Operator), area: "dns", kind: Execute, success: 202,
    path: NoParams, query: NoParams, body: RenewRequest, response: Accepted,
}

// ---- security ------------------------------------------------------------------------------

operation! {
    /// The kept `guard scan-repo` runs and their findings, newest first
    ListScans: Get "/api/v1/security/scans",
    id: "security.scans", access: Role(Viewer), area: "security", kind: Read,
    path: NoParams, query: PageQuery, body: NoBody, response: RepoScanList,
}

operation! {
    /// Analyze text for prompt injection
    Analyze: Post "/api/v1/security/analyze",
    id: "security.analyze", access: Role(Viewer), area: "security", kind: Read,
    path: NoParams, query: NoParams, body: AnalyzeRequest, response: AnalyzeResult,
}

operation! {
    /// Quarantined texts
    ListQuarantine: Get "/api/v1/security/quarantine",
    id: "quarantine.list", access: Role(Viewer), area: "security", kind: Read,
    path: NoParams, query: QuarantineQuery, body: NoBody, response: QuarantineList,
}

operation! {
    /// One quarantined text
    GetQuarantine: Get "/api/v1/security/quarantine/{id}",
    id: "quarantine.get", access: Role(Viewer), area: "security", kind: Read, etag: true,
    path: QuarantinePath, query: NoParams, body: NoBody, response: QuarantineRecord,
}

operation! {
    /// Release a quarantined text (a false positive)
    ReleaseQuarantine: Post "/api/v1/security/quarantine/{id}/release",
    id: "quarantine.release", access: Role(Operator), area: "security", kind: Write, etag: true,
    path: QuarantinePath, query: NoParams, body: NoBody, response: QuarantineRecord,
}

operation! {
    /// Delete a quarantined text
    DeleteQuarantine: Delete "/api/v1/security/quarantine/{id}",
    id: "quarantine.delete", access: Role(Admin), area: "security", kind: Write, etag: true,
    path: QuarantinePath, query: NoParams, body: NoBody, response: Deleted,
}

// ---- logs ----------------------------------------------------------------------------------

operation! {
    /// Semantic search across logs
    SearchLogs: Get "/api/v1/search/logs",
    id: "logs.search", access: Role(Viewer), area: "logs", kind: Read,
    path: NoParams, query: LogSearchQuery, body: NoBody, response: LogSearchResult,
}

// ---- mirrors -------------------------------------------------------------------------------

operation! {
    /// Configured mirrors and their last results
    ListMirrors: Get "/api/v1/mirrors",
    id: "mirrors.list", access: Role(Viewer), area: "mirrors", kind: Read,
    path: NoParams, query: PageQuery, body: NoBody, response: MirrorList,
}

operation! {
    /// Sync mirrors now (all, or the ones named)
    SyncMirrors: Post "/api/v1/mirrors/sync",
    id: "mirrors.sync", access: Role(Operator), area: "mirrors", kind: Execute, success: 202,
    path: NoParams, query: NoParams, body: SyncRequest, response: Accepted,
}

// ---- runners and compute -------------------------------------------------------------------

operation! {
    /// Runner hosts and their GPU inventory, as last probed
    ListRunners: Get "/api/v1/runners",
    id: "runners.list", access: Role(Viewer), area: "runners", kind: Read,
    path: NoParams, query: PageQuery, body: NoBody, response: RunnerHostList,
}

operation! {
    /// Registered runners: CPU or GPU, on-demand or always, idle since, stopped at (cooldown)
    ListRunnerStates: Get "/api/v1/runners/registered",
    id: "runners.registered", access: Role(Viewer), area: "runners", kind: Read,
    path: NoParams, query: NoParams, body: NoBody, response: RunnerStateList,
}

operation! {
    /// Compute jobs
    ListJobs: Get "/api/v1/compute/jobs",
    id: "compute.list", access: Role(Viewer), area: "compute", kind: Read,
    path: NoParams, query: JobQuery, body: NoBody, response: JobList,
}

operation! {
    /// One compute job
    GetJob: Get "/api/v1/compute/jobs/{id}",
    id: "compute.get", access: Role(Viewer), area: "compute", kind: Read, etag: true,
    path: JobPath, query: NoParams, body: NoBody, response: Job,
}

operation! {
    /// Queue a GPU job (placed by the VRAM-aware scheduler)
    SubmitJobOp: Post "/api/v1/compute/jobs",
    id: "compute.submit", access: Role(Operator), area: "compute", kind: Execute, success: 201,
    path: NoParams, query: NoParams, body: SubmitJob, response: Job,
}

operation! {
    /// Cancel a compute job
    CancelJob: Post "/api/v1/compute/jobs/{id}/cancel",
    id: "compute.cancel", access: Role(Operator), area: "compute", kind: Execute, etag: true,
    path: JobPath, query: NoParams, body: NoBody, response: Job,
}

// ---- backups -------------------------------------------------------------------------------

operation! {
    /// Backup archives
    ListBackups: Get "/api/v1/backups",
    id: "backups.list", access: Role(Viewer), area: "backups", kind: Read,
    path: NoParams, query: PageQuery, body: NoBody, response: BackupList,
}

operation! {
    /// Take a backup now
    CreateBackup: Post "/api/v1/backups",
    id: "backups.create", access: Role(Operator), area: "backups", kind: Execute, success: 202,
    path: NoParams, query: NoParams, body: NoBody, response: Accepted,
}

operation! {
    /// Restore a backup (replaces GitLab's data; the body repeats the archive's name)
    RestoreBackup: Post "/api/v1/backups/{name}/restore",
    id: "backups.restore", access: Role(Admin), area: "backups", kind: Execute, success: 202,
    path: BackupPath, query: NoParams, body: RestoreRequest, response: Accepted,
}

// ---- auth and audit ------------------------------------------------------------------------

operation! {
    /// A short-lived token, from an API key (Authorization header) or a login (body)
    IssueToken: Post "/api/v1/auth/token",
    id: "auth.token", access: Public, area: "auth", kind: Write, success: 201,
    path: NoParams, query: NoParams, body: TokenRequest, response: Token,
}

operation! {
    /// Who the credentials belong to
    WhoAmIOp: Get "/api/v1/auth/whoami",
    id: "auth.whoami", access: Role(Viewer), area: "auth", kind: Read,
    path: NoParams, query: NoParams, body: NoBody, response: WhoAmI,
}

operation! {
    /// Revoke a token before it expires
    RevokeTokenOp: Post "/api/v1/auth/revoke",
    id: "auth.revoke", access: Role(Admin), area: "auth", kind: Write,
    path: NoParams, query: NoParams, body: RevokeToken, response: Done,
}

operation! {
    /// API keys
    ListKeys: Get "/api/v1/auth/keys",
    id: "keys.list", access: Role(Admin), area: "auth", kind: Read,
    path: NoParams, query: PageQuery, body: NoBody, response: ApiKeyList,
}

operation! {
    /// Create an API key (its secret is shown once)
    CreateKeyOp: Post "/api/v1/auth/keys",
    id: "keys.create", access: Role(Admin), area: "auth", kind: Write, success: 201,
    path: NoParams, query: NoParams, body: CreateKey, response: CreatedKey,
}

operation! {
    /// Revoke an API key
    RevokeKey: Delete "/api/v1/auth/keys/{prefix}",
    id: "keys.revoke", access: Role(Admin), area: "auth", kind: Write,
    path: KeyPath, query: NoParams, body: NoBody, response: ApiKey,
}

operation! {
    /// Rotate the token signing key (tokens signed with the old key stay valid until they expire)
    RotateSigningKey: Post "/api/v1/auth/rotate",
    id: "auth.rotate", access: Role(Admin), area: "auth", kind: Write,
    path: NoParams, query: NoParams, body: NoBody, response: Done,
}

operation! {
    /// The audit log (hash-chained)
    ListAudit: Get "/api/v1/audit",
    id: "audit.list", access: Role(Admin), area: "audit", kind: Read,
    path: NoParams, query: AuditQuery, body: NoBody, response: AuditList,
}

operation! {
    /// Live events of the application layer (server-sent events)
    Events: Get "/api/v1/events",
    id: "events.stream", access: Role(Viewer), area: "events", kind: Read,
    path: NoParams, query: NoParams, body: NoBody, response: EventEnvelope,
}

operation! {
    /// autogit's metrics for Prometheus (OpenMetrics text; a key with the `metrics` scope suffices)
    ScrapeMetrics: Get "/metrics",
    id: "metrics.scrape", access: Role(Viewer), area: "metrics", kind: Read,
    path: NoParams, query: NoParams, body: NoBody, response: String,
}

/// Calls `$m!(Op)` for every operation: the one list the router, the OpenAPI document and
/// the tests are generated from.
#[macro_export]
macro_rules! for_each_operation {
    ($m:ident) => {
        $m!(
            Healthz,
            ListServices,
            GetService,
            DeployService,
            ClearFlag,
            ServiceLogs,
            ListTransitions,
            ListDnsRecords,
            CreateDnsRecord,
            DeleteDnsRecord,
            GetDnsPlan,
            GetTls,
            RenewTls,
            Analyze,
            ListScans,
            ListQuarantine,
            GetQuarantine,
            ReleaseQuarantine,
            DeleteQuarantine,
            SearchLogs,
            ListMirrors,
            SyncMirrors,
            ListRunners,
            ListRunnerStates,
            ListJobs,
            GetJob,
            SubmitJobOp,
            CancelJob,
            ListBackups,
            CreateBackup,
            RestoreBackup,
            IssueToken,
            WhoAmIOp,
            RevokeTokenOp,
            ListKeys,
            CreateKeyOp,
            RevokeKey,
            RotateSigningKey,
            ListAudit,
            Events,
            ScrapeMetrics
        )
    };
}

/// Every operation's description, in the order of [`for_each_operation!`].
pub fn all() -> Vec<crate::op::Info> {
    macro_rules! infos {
        ($($op:ident),*) => { vec![$(<$op as crate::op::Operation>::INFO),*] };
    }
    for_each_operation!(infos)
}
