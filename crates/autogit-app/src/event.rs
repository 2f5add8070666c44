//! The typed events of the application layer: one enum for everything a controller did or
//! failed to do. Controllers publish them on the [`crate::bus::Bus`]; the log, the state
//! store, the notifiers (and, later, metrics, the audit log and the API's event stream)
//! subscribe. Serialized with `kind` as the tag, so a webhook body or a log line is
//! `{"kind": "mirror_failed", "at": …, "name": …, "error": …}`.

use serde::{Deserialize, Serialize};

/// How much an event matters: what a notifier filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A platform service moved through the state machine. The fields are those of the
    /// webhook body autogit has always sent for state changes.
    ServiceStateChanged {
        project: String,
        service: String,
        from: Option<String>,
        to: String,
        reason: String,
        flagged: bool,
    },
    /// The human-intervention flag went up: no automatic repair until it is cleared.
    FlagRaised {
        service: String,
        reason: String,
    },
    /// An action of a reconcile pass (create, repair, recreate, ...), as core decided it.
    ReconcileAction {
        action: serde_json::Value,
    },
    /// An action of a reconcile pass failed for one service.
    ReconcileActionFailed {
        service: String,
        error: String,
    },
    /// A scheduled or requested mirror run began.
    MirrorSyncStarted {
        scheduled_for: Option<i64>,
        mirrors: usize,
    },
    /// One mirror was synced (or found up to date).
    MirrorSynced {
        name: String,
        changed: usize,
        deleted: usize,
        lfs: bool,
    },
    MirrorFailed {
        name: String,
        source: String,
        error: String,
    },
    MirrorSyncFinished {
        scheduled_for: Option<i64>,
        synced: usize,
        failed: usize,
        pruned: Vec<String>,
        next: Option<i64>,
    },
    /// A GitLab project whose source is no longer configured was deleted (prune_projects).
    MirrorPruned {
        project: String,
    },
    DnsSynced {
        provider: String,
        created: usize,
        updated: usize,
        deleted: usize,
        conflicts: usize,
    },
    DnsSyncFailed {
        provider: String,
        error: String,
    },
    CertificateRenewed {
        names: Vec<String>,
        not_after: i64,
    },
    CertificateRenewalFailed {
        error: String,
        failures: u32,
        retry_at: i64,
    },
    /// A certificate autogit cannot renew itself (`TLS_SOURCE=file`: a user-supplied pair)
    /// is within its warning period ([`autogit_core::tls::FILE_EXPIRY_WARNING_DAYS`]): it
    /// must be replaced by hand. `days_left` is whole days; `source` is `file`; `file` the
    /// path of `TLS_CERT_FILE`.
    CertificateExpiring {
        names: Vec<String>,
        not_after: i64,
        days_left: i64,
        source: String,
        file: String,
    },
    IngressRefreshFailed {
        error: String,
    },
    BackupCreated {
        archive: String,
        bytes: u64,
        gitlab_version: String,
        removed: Vec<String>,
    },
    BackupFailed {
        error: String,
    },
    /// An archive was copied to a backup target and read back identical.
    BackupCopied {
        target: String,
        archive: String,
        bytes: u64,
        sha256: String,
        /// Archives retention deleted on the target.
        removed: Vec<String>,
    },
    /// An archive could not be copied to (or verified on) a backup target.
    BackupCopyFailed {
        target: String,
        archive: String,
        error: String,
    },
    /// An on-demand runner container was started or stopped on its host.
    RunnerScaled {
        runner: String,
        host: String,
        /// `start` or `stop`.
        action: String,
        jobs: usize,
        /// Its containers before and after (`runners.*[].min`/`max`).
        containers: usize,
        target: usize,
    },
    RunnerScaleFailed {
        runner: Option<String>,
        host: Option<String>,
        error: String,
    },
    /// A runner was registered in GitLab and on its host (`config.toml` written).
    RunnerRegistered {
        runner: String,
        host: String,
        runner_id: i64,
    },
    /// The host step of a registration failed; the GitLab runner and its token are kept.
    RunnerRegistrationFailed {
        runner: String,
        host: String,
        error: String,
    },
    /// A runner was removed from GitLab, its host and autogit's records.
    RunnerUnregistered {
        runner: String,
        host: String,
        runner_id: i64,
    },
    /// A runner's dead container was restarted (or recreated) on its host; `error` when the
    /// engine refused.
    RunnerRepaired {
        runner: String,
        host: String,
        action: String,
        attempt: u32,
        error: Option<String>,
    },
    /// Discovery found the host of a `host: auto` runner.
    /// `runner prepare` configured a host's engine for NVIDIA GPUs (`nvidia-ctk` steps).
    RunnerHostPrepared {
        host: String,
        steps: Vec<String>,
    },
    RunnerHostResolved {
        runner: String,
        host: String,
    },
    /// A runner host stopped answering, or answers again.
    HostUnreachable {
        host: String,
        error: String,
    },
    HostReachable {
        host: String,
    },
    /// An inference job's service was restarted (or recreated) on its host by the lifecycle
    /// policy; `error` when the engine refused.
    ComputeServiceRepaired {
        job: String,
        host: String,
        action: String,
        attempt: u32,
        error: Option<String>,
    },
    /// A compute job changed state.
    ComputeJobChanged {
        job: String,
        from: String,
        to: String,
        host: Option<String>,
        message: String,
    },
    /// A controller's pass failed; it runs again after `retry_in_s` (backoff with jitter).
    ControllerFailed {
        controller: String,
        error: String,
        failures: u32,
        retry_in_s: u64,
    },
    /// Work an API request started in the background (deploy, mirror sync, backup, restore).
    TaskStarted {
        /// The request id (also in the audit log).
        id: String,
        operation: String,
        target: String,
        actor: String,
    },
    /// That work ended.
    TaskFinished {
        id: String,
        operation: String,
        target: String,
        ok: bool,
        detail: String,
    },
    /// A notification could not be delivered.
    WebhookFailed {
        url: String,
        about: String,
        error: String,
    },
}

impl Event {
    /// The tag, as serialized (`mirror_failed`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ServiceStateChanged { .. } => "service_state_changed",
            Event::FlagRaised { .. } => "flag_raised",
            Event::ReconcileAction { .. } => "reconcile_action",
            Event::ReconcileActionFailed { .. } => "reconcile_action_failed",
            Event::MirrorSyncStarted { .. } => "mirror_sync_started",
            Event::MirrorSynced { .. } => "mirror_synced",
            Event::MirrorFailed { .. } => "mirror_failed",
            Event::MirrorSyncFinished { .. } => "mirror_sync_finished",
            Event::MirrorPruned { .. } => "mirror_pruned",
            Event::DnsSynced { .. } => "dns_synced",
            Event::DnsSyncFailed { .. } => "dns_sync_failed",
            Event::CertificateRenewed { .. } => "certificate_renewed",
            Event::CertificateRenewalFailed { .. } => "certificate_renewal_failed",
            Event::CertificateExpiring { .. } => "certificate_expiring",
            Event::IngressRefreshFailed { .. } => "ingress_refresh_failed",
            Event::BackupCreated { .. } => "backup_created",
            Event::BackupFailed { .. } => "backup_failed",
            Event::BackupCopied { .. } => "backup_copied",
            Event::BackupCopyFailed { .. } => "backup_copy_failed",
            Event::RunnerScaled { .. } => "runner_scaled",
            Event::RunnerScaleFailed { .. } => "runner_scale_failed",
            Event::RunnerRegistered { .. } => "runner_registered",
            Event::RunnerRegistrationFailed { .. } => "runner_registration_failed",
            Event::RunnerUnregistered { .. } => "runner_unregistered",
            Event::RunnerRepaired { .. } => "runner_repaired",
            Event::RunnerHostResolved { .. } => "runner_host_resolved",
            Event::RunnerHostPrepared { .. } => "runner_host_prepared",
            Event::HostUnreachable { .. } => "host_unreachable",
            Event::HostReachable { .. } => "host_reachable",
            Event::ComputeJobChanged { .. } => "compute_job_changed",
            Event::ComputeServiceRepaired { .. } => "compute_service_repaired",
            Event::ControllerFailed { .. } => "controller_failed",
            Event::WebhookFailed { .. } => "webhook_failed",
            Event::TaskStarted { .. } => "task_started",
            Event::TaskFinished { .. } => "task_finished",
        }
    }

    pub fn severity(&self) -> Severity {
        match self {
            Event::FlagRaised { .. }
            | Event::ReconcileActionFailed { .. }
            | Event::MirrorFailed { .. }
            | Event::DnsSyncFailed { .. }
            | Event::CertificateRenewalFailed { .. }
            | Event::IngressRefreshFailed { .. }
            | Event::BackupFailed { .. }
            | Event::BackupCopyFailed { .. }
            | Event::RunnerScaleFailed { .. }
            | Event::RunnerRegistrationFailed { .. }
            | Event::ControllerFailed { .. } => Severity::Error,
            Event::TaskFinished { ok: false, .. } => Severity::Error,
            Event::HostUnreachable { .. }
            | Event::WebhookFailed { .. }
            | Event::CertificateExpiring { .. } => Severity::Warning,
            Event::RunnerRepaired { error, .. } | Event::ComputeServiceRepaired { error, .. } => {
                if error.is_some() {
                    Severity::Error
                } else {
                    Severity::Warning
                }
            }
            Event::ServiceStateChanged { to, flagged, .. } => {
                if *flagged || to == "FAILED" {
                    Severity::Error
                } else if to == "DEGRADED" || to == "REPAIRING" {
                    Severity::Warning
                } else {
                    Severity::Info
                }
            }
            Event::MirrorSyncFinished { failed, .. } if *failed > 0 => Severity::Warning,
            Event::ComputeJobChanged { to, .. } if to == "failed" => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// Whether the configured notifiers (webhooks) get this event: every state change and
    /// everything that went wrong. Routine successes stay in the log and the state store.
    pub fn notifies(&self) -> bool {
        matches!(
            self,
            Event::ServiceStateChanged { .. } | Event::BackupCreated { .. }
        ) || (self.severity() >= Severity::Warning && !matches!(self, Event::WebhookFailed { .. }))
    }

    /// What the event is about (a service, mirror, runner, host, job), for the state store.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Event::ServiceStateChanged { service, .. }
            | Event::FlagRaised { service, .. }
            | Event::ReconcileActionFailed { service, .. } => Some(service),
            Event::MirrorSynced { name, .. } | Event::MirrorFailed { name, .. } => Some(name),
            Event::MirrorPruned { project } => Some(project),
            Event::RunnerScaled { runner, .. }
            | Event::RunnerRegistered { runner, .. }
            | Event::RunnerRegistrationFailed { runner, .. }
            | Event::RunnerUnregistered { runner, .. }
            | Event::RunnerRepaired { runner, .. }
            | Event::RunnerHostResolved { runner, .. } => Some(runner),
            Event::RunnerScaleFailed { runner, host, .. } => runner.as_deref().or(host.as_deref()),
            Event::HostUnreachable { host, .. }
            | Event::HostReachable { host }
            | Event::RunnerHostPrepared { host, .. } => Some(host),
            Event::ComputeJobChanged { job, .. } | Event::ComputeServiceRepaired { job, .. } => {
                Some(job)
            }
            Event::ControllerFailed { controller, .. } => Some(controller),
            Event::TaskStarted { target, .. } | Event::TaskFinished { target, .. } => Some(target),
            Event::CertificateRenewed { .. }
            | Event::CertificateRenewalFailed { .. }
            | Event::CertificateExpiring { .. }
            | Event::IngressRefreshFailed { .. } => Some("tls"),
            Event::DnsSynced { .. } | Event::DnsSyncFailed { .. } => Some("dns"),
            Event::BackupCreated { .. } | Event::BackupFailed { .. } => Some("backup"),
            Event::BackupCopied { target, .. } | Event::BackupCopyFailed { target, .. } => {
                Some(target)
            }
            Event::MirrorSyncStarted { .. } | Event::MirrorSyncFinished { .. } => Some("mirror"),
            Event::ReconcileAction { .. } | Event::WebhookFailed { .. } => None,
        }
    }

    /// One line for people (the log's message).
    pub fn summary(&self) -> String {
        match self {
            Event::ServiceStateChanged {
                service,
                from,
                to,
                reason,
                ..
            } => format!(
                "{service}: {} → {to} ({reason})",
                from.as_deref().unwrap_or("-")
            ),
            Event::FlagRaised { service, reason } => {
                format!(
                    "{service} needs attention: {reason}; `autogit reconcile --clear {service}` once fixed"
                )
            }
            Event::ReconcileAction { action } => format!("reconcile: {action}"),
            Event::ReconcileActionFailed { service, error } => format!("{service}: {error}"),
            Event::MirrorSyncStarted { mirrors, .. } => {
                format!("mirror sync of {mirrors} mirror(s) started")
            }
            Event::MirrorSynced {
                name,
                changed,
                deleted,
                ..
            } => {
                format!("{name}: synced ({changed} refs changed, {deleted} deleted)")
            }
            Event::MirrorFailed { name, error, .. } => format!("{name}: mirror failed: {error}"),
            Event::MirrorSyncFinished { synced, failed, .. } => {
                format!("mirror sync finished: {synced} synced or up to date, {failed} failed")
            }
            Event::MirrorPruned { project } => {
                format!("pruned {project}: its source is no longer configured")
            }
            Event::DnsSynced {
                provider,
                created,
                updated,
                deleted,
                ..
            } => {
                format!("{provider}: {created} created, {updated} updated, {deleted} deleted")
            }
            Event::DnsSyncFailed { provider, error } => {
                format!("dns sync ({provider}) failed: {error}")
            }
            Event::CertificateRenewed { names, .. } => {
                format!("certificate renewed for {}", names.join(", "))
            }
            Event::CertificateRenewalFailed { error, .. } => {
                format!("certificate renewal failed: {error}")
            }
            Event::CertificateExpiring {
                names,
                days_left,
                file,
                ..
            } => format!(
                "the certificate for {} ({file}) expires in {days_left} day(s): replace TLS_CERT_FILE and TLS_KEY_FILE",
                names.join(", ")
            ),
            Event::IngressRefreshFailed { error } => {
                format!("the ingress was not refreshed: {error}")
            }
            Event::BackupCreated { archive, bytes, .. } => {
                format!(
                    "backup written: {archive} ({} MiB)",
                    bytes.div_ceil(1 << 20)
                )
            }
            Event::BackupFailed { error } => format!("backup failed: {error}"),
            Event::BackupCopied {
                target,
                archive,
                bytes,
                ..
            } => format!(
                "backup {archive} copied to {target} and verified ({} MiB)",
                bytes.div_ceil(1 << 20)
            ),
            Event::BackupCopyFailed {
                target,
                archive,
                error,
            } => format!("backup {archive} was not copied to {target}: {error}"),
            Event::RunnerHostPrepared { host, steps } => {
                format!("{host} prepared for NVIDIA GPUs: {}", steps.join("; "))
            }
            Event::RunnerHostResolved { runner, host } => {
                format!("runner {runner} (host: auto) runs on {host}")
            }
            Event::RunnerRepaired {
                runner,
                host,
                action,
                attempt,
                error,
            } => match error {
                None => format!("runner {runner}: dead container on {host}: {action} #{attempt}"),
                Some(e) => format!("runner {runner}: {action} #{attempt} on {host} failed: {e}"),
            },
            Event::RunnerRegistered {
                runner,
                host,
                runner_id,
            } => format!("runner {runner} registered on {host} (GitLab runner {runner_id})"),
            Event::RunnerRegistrationFailed {
                runner,
                host,
                error,
            } => format!("runner {runner}: registration on {host} failed: {error}"),
            Event::RunnerUnregistered {
                runner,
                host,
                runner_id,
            } => format!("runner {runner} (GitLab runner {runner_id}) unregistered from {host}"),
            Event::RunnerScaled {
                runner,
                host,
                action,
                jobs,
                containers,
                target,
            } => {
                format!(
                    "runner {runner} on {host}: {action}, {containers} → {target} container(s) ({jobs} job(s) waiting or running)"
                )
            }
            Event::RunnerScaleFailed {
                runner,
                host,
                error,
            } => format!(
                "runner {} on {}: {error}",
                runner.as_deref().unwrap_or("-"),
                host.as_deref().unwrap_or("-")
            ),
            Event::HostUnreachable { host, error } => format!("{host} is unreachable: {error}"),
            Event::ComputeServiceRepaired {
                job,
                host,
                action,
                attempt,
                error,
            } => match error {
                None => format!("job {job}: its service on {host}: {action} #{attempt}"),
                Some(e) => {
                    format!("job {job}: {action} #{attempt} of its service on {host} failed: {e}")
                }
            },
            Event::HostReachable { host } => format!("{host} answers again"),
            Event::ComputeJobChanged {
                job,
                from,
                to,
                host,
                message,
            } => format!(
                "job {job}: {from} → {to}{}{}",
                host.as_deref()
                    .map(|h| format!(" on {h}"))
                    .unwrap_or_default(),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(" ({message})")
                }
            ),
            Event::ControllerFailed {
                controller,
                error,
                retry_in_s,
                ..
            } => {
                format!("{controller}: {error}; again in {retry_in_s}s")
            }
            Event::WebhookFailed { url, about, error } => {
                format!("webhook {url} ({about}): {error}")
            }
            Event::TaskStarted {
                id,
                operation,
                target,
                actor,
            } => format!("{operation} {target} started by {actor} (request {id})"),
            Event::TaskFinished {
                id,
                operation,
                target,
                ok,
                detail,
            } => format!(
                "{operation} {target} {} (request {id}){}",
                if *ok { "done" } else { "failed" },
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
        }
    }
}

/// An event with the time it happened (unix seconds): what subscribers receive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub at: u64,
    #[serde(flatten)]
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `core::notify::EVENT_KINDS` (what `health.notify[].events` accepts) is every kind
    /// `Event::kind` returns, read from this file's `kind` function.
    #[test]
    fn the_core_list_of_event_kinds_matches_kind() {
        let src = include_str!("event.rs");
        let start = src.find("pub fn kind(&self)").unwrap();
        let end = start + src[start..].find("pub fn severity").unwrap();
        let mut here: Vec<&str> = src[start..end]
            .split("=> \"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap())
            .collect();
        let mut core: Vec<&str> = autogit_core::notify::EVENT_KINDS.to_vec();
        here.sort_unstable();
        core.sort_unstable();
        assert_eq!(here, core);
        for e in samples() {
            assert!(autogit_core::notify::EVENT_KINDS.contains(&e.kind()));
        }
    }

    fn samples() -> Vec<Event> {
        vec![
            Event::ServiceStateChanged {
                project: "p".into(),
                service: "gitlab".into(),
                from: Some("HEALTHY".into()),
                to: "DEGRADED".into(),
                reason: "unhealthy".into(),
                flagged: false,
            },
            Event::FlagRaised {
                service: "gitlab".into(),
                reason: "budget".into(),
            },
            Event::MirrorFailed {
                name: "a".into(),
                source: "git://x/a".into(),
                error: "e".into(),
            },
            Event::BackupFailed {
                error: "disk full".into(),
            },
            Event::BackupCopyFailed {
                target: "nas".into(),
                archive: "a.tar".into(),
                error: "refused".into(),
            },
            Event::DnsSyncFailed {
                provider: "rfc2136".into(),
                error: "e".into(),
            },
            Event::CertificateRenewalFailed {
                error: "e".into(),
                failures: 1,
                retry_at: 5,
            },
            Event::CertificateExpiring {
                names: vec!["*.example.com".into(), "example.com".into()],
                not_after: 86_400 * 3,
                days_left: 3,
                source: "file".into(),
                file: "/etc/ssl/git.pem".into(),
            },
            Event::MirrorSynced {
                name: "a".into(),
                changed: 1,
                deleted: 0,
                lfs: false,
            },
            Event::WebhookFailed {
                url: "u".into(),
                about: "k".into(),
                error: "e".into(),
            },
        ]
    }

    #[test]
    fn the_kind_is_the_serialized_tag_and_round_trips() {
        for e in samples() {
            let env = Envelope {
                at: 42,
                event: e.clone(),
            };
            let v = serde_json::to_value(&env).unwrap();
            assert_eq!(v["kind"], e.kind(), "{v}");
            assert_eq!(v["at"], 42);
            let back: Envelope = serde_json::from_value(v).unwrap();
            assert_eq!(back, env);
        }
    }

    #[test]
    fn failures_and_state_changes_notify_routine_successes_do_not() {
        let notifies: Vec<(&str, bool)> =
            samples().iter().map(|e| (e.kind(), e.notifies())).collect();
        assert_eq!(
            notifies,
            [
                ("service_state_changed", true),
                ("flag_raised", true),
                ("mirror_failed", true),
                ("backup_failed", true),
                ("backup_copy_failed", true),
                ("dns_sync_failed", true),
                ("certificate_renewal_failed", true),
                ("certificate_expiring", true),
                ("mirror_synced", false),
                // A failed webhook is not sent to the webhooks (no loop).
                ("webhook_failed", false),
            ]
        );
    }

    #[test]
    fn a_state_change_keeps_the_webhook_fields_of_wave_one() {
        let v = serde_json::to_value(Envelope {
            at: 7,
            event: samples().remove(0),
        })
        .unwrap();
        for k in [
            "project", "service", "from", "to", "reason", "at", "flagged",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
    }
}
