//! Job kinds: what `compute run --capability inference|render|train` means beyond placement.
//! Pure: the compute controller asks [`defaults`] for a kind's defaults, builds a service
//! job's health check with [`health_cmd`], reads the engine's view of a job's container with
//! [`INSPECT_FORMAT`] / [`parse_seen`], and lets [`decide_service`] (the platform services'
//! own `reconcile::decide`: lifecycle, backoff, restart budget, human flag) say what to do
//! with an inference service.
//!
//! | kind | VRAM per GPU | restart | when its lease is lost | time limit | checkpoints |
//! | --- | --- | --- | --- | --- | --- |
//! | none | 1G | never (a batch job) | reschedule | none | no |
//! | `inference` | 8G | as a service: health check, repaired by the lifecycle policy | reschedule | none | no |
//! | `render` | 8G | never (a batch job) | resume (its output is on that host) | 24h | yes |
//! | `train` | 16G | never (a batch job, preemptible) | reschedule | 72h | yes |
//!
//! **Invariant:** a batch job's end is its container's exit; a service job's exit is a crash
//! that the lifecycle policy repairs until its restart budget is spent (then the human flag is
//! raised and it is left alone, as a platform service would be).

use crate::config::Capability;
use crate::lease::OnLost;
use crate::lifecycle::RepairPolicy;
use crate::reconcile::{self, Action, Desired, Health, Record};
use crate::units::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What ends a job, or keeps it alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// A batch job: its container's exit ends it (exit 0: succeeded, else failed).
    Never,
    /// A long-lived service: health-checked by the engine, restarted by the state machine.
    Service,
}

/// The defaults of a job kind (`None`: a job of no kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KindDefaults {
    /// VRAM reserved on each GPU when the job does not say (`--vram`).
    pub vram: Bytes,
    pub restart: Restart,
    pub on_lost: OnLost,
    /// Seconds it may run before it is stopped and failed; `None`: no limit.
    pub timeout: Option<u64>,
    /// Whether it gets a checkpoint volume (`CHECKPOINT_DIR`, kept across restarts and
    /// resumes on its host).
    pub checkpoint: bool,
}

/// Where a render or train job's checkpoints go in its container (also in
/// `AUTOGIT_CHECKPOINT_DIR`), on a named volume of the host that outlives the container.
pub const CHECKPOINT_DIR: &str = "/autogit/checkpoint";

/// How long a service may take to answer its health check after a (re)start, when the job
/// does not say: loading a model's weights takes a while.
pub const START_PERIOD_SECS: u64 = 120;
/// How often the engine asks a service's health endpoint, when the job does not say.
pub const HEALTH_INTERVAL_SECS: u64 = 10;
/// Failed health checks in a row before the engine calls a service unhealthy.
pub const HEALTH_RETRIES: u32 = 3;

pub fn defaults(kind: Option<Capability>) -> KindDefaults {
    const HOUR: u64 = 3600;
    match kind {
        None => KindDefaults {
            vram: Bytes::gib(1),
            restart: Restart::Never,
            on_lost: OnLost::Reschedule,
            timeout: None,
            checkpoint: false,
        },
        Some(Capability::Inference) => KindDefaults {
            vram: Bytes::gib(8),
            restart: Restart::Service,
            on_lost: OnLost::Reschedule,
            timeout: None,
            checkpoint: false,
        },
        Some(Capability::Render) => KindDefaults {
            vram: Bytes::gib(8),
            restart: Restart::Never,
            on_lost: OnLost::Resume,
            timeout: Some(24 * HOUR),
            checkpoint: true,
        },
        Some(Capability::Train) => KindDefaults {
            vram: Bytes::gib(16),
            restart: Restart::Never,
            on_lost: OnLost::Reschedule,
            timeout: Some(72 * HOUR),
            checkpoint: true,
        },
    }
}

/// An inference job's service: the port it listens on in its container and its health
/// endpoint there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub port: u16,
    /// A path on that port that answers 2xx while the service can serve.
    #[serde(default = "default_health")]
    pub health: String,
    /// Seconds between health checks.
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// Seconds a (re)started service may take to become healthy.
    #[serde(default = "default_start_period")]
    pub start_period: u64,
    /// Served by the ingress at `https://ROUTE.<BASE_DOMAIN>` while it runs
    /// (`core::routes`); `None`: reached at its host port only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Whether its route goes through the prompt-injection guard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guard: bool,
}

fn default_health() -> String {
    "/health".into()
}

fn default_interval() -> u64 {
    HEALTH_INTERVAL_SECS
}

fn default_start_period() -> u64 {
    START_PERIOD_SECS
}

impl ServiceSpec {
    pub fn new(port: u16, health: Option<&str>) -> Result<ServiceSpec, String> {
        let s = ServiceSpec {
            port,
            health: health.map_or_else(default_health, str::to_owned),
            interval: HEALTH_INTERVAL_SECS,
            start_period: START_PERIOD_SECS,
            route: None,
            guard: false,
        };
        s.check()?;
        Ok(s)
    }

    /// Refuses a port 0, a health path that is not a plain absolute path (it is written into
    /// a shell command in the container), and intervals of 0 or over a day.
    pub fn check(&self) -> Result<(), String> {
        if self.port == 0 {
            return Err("--port must be a TCP port (1-65535)".into());
        }
        let p = &self.health;
        let ok = p.starts_with('/')
            && p.len() <= 256
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._~-?=&%+,".contains(&b));
        if !ok {
            return Err(format!(
                "--health `{p}` is not a path (it starts with `/`; letters, digits and `/ . _ ~ - ? = & % + ,`)"
            ));
        }
        for (name, v) in [
            ("interval", self.interval),
            ("start period", self.start_period),
        ] {
            if !(1..=86_400).contains(&v) {
                return Err(format!(
                    "the health check's {name} must be 1 s to 1 day, not {v} s"
                ));
            }
        }
        if let Some(r) = &self.route {
            crate::routes::check_name(r)?;
        }
        Ok(())
    }

    /// The container port as the engine names it (`8000/tcp`).
    pub fn port_key(&self) -> String {
        format!("{}/tcp", self.port)
    }
}

/// The health check the engine runs in the service's container (`--health-cmd`, by `sh -c`):
/// `wget`, else `curl`, of the health path on the container's own loopback. The image needs
/// one of them (busybox, Debian/Ubuntu/Alpine-based serving images have one).
pub fn health_cmd(s: &ServiceSpec) -> String {
    let url = format!("http://127.0.0.1:{}{}", s.port, s.health);
    format!("wget -q -O /dev/null '{url}' 2>/dev/null || curl -fsS -o /dev/null '{url}'")
}

/// The engine's `run` options of a service job: its port published on the host (a port the
/// engine picks, read back with [`INSPECT_FORMAT`]) and its health check.
pub fn service_run_args(s: &ServiceSpec) -> Vec<String> {
    vec![
        "-p".into(),
        s.port.to_string(),
        "--health-cmd".into(),
        health_cmd(s),
        "--health-interval".into(),
        format!("{}s", s.interval),
        "--health-timeout".into(),
        format!("{}s", s.interval.clamp(1, 10)),
        "--health-retries".into(),
        HEALTH_RETRIES.to_string(),
        "--health-start-period".into(),
        format!("{}s", s.start_period),
    ]
}

/// The engine's `run` options of a checkpointed job: a named volume per job at
/// [`CHECKPOINT_DIR`], named in the environment.
pub fn checkpoint_run_args(container: &str) -> Vec<String> {
    vec![
        "-v".into(),
        format!("{container}-checkpoint:{CHECKPOINT_DIR}"),
        "-e".into(),
        format!("AUTOGIT_CHECKPOINT_DIR={CHECKPOINT_DIR}"),
    ]
}

/// `inspect --format` for a job's container: status, exit code, OOM-killed, health and (for a
/// service) the host port of `port_key`.
pub fn inspect_format(port_key: Option<&str>) -> String {
    let port = port_key.map_or_else(String::new, |k| {
        format!(
            " {{{{with index .NetworkSettings.Ports \"{k}\"}}}}{{{{(index . 0).HostPort}}}}{{{{else}}}}-{{{{end}}}}"
        )
    });
    format!(
        "{{{{.State.Status}}}} {{{{.State.ExitCode}}}} {{{{.State.OOMKilled}}}} {{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{else}}}}none{{{{end}}}}{port}"
    )
}

/// What the engine showed of a job's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSeen {
    /// `running`, `exited`, `created`, `restarting`, `paused`, `dead`.
    pub status: String,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub health: Health,
    /// The host port its service is published on (while it runs).
    pub host_port: Option<u16>,
}

impl JobSeen {
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "exited" | "dead")
    }
}

/// Reads [`inspect_format`]'s line; `None` for anything else.
pub fn parse_seen(text: &str) -> Option<JobSeen> {
    let mut it = text.split_whitespace();
    let status = it.next()?.to_owned();
    let exit_code = it.next()?.parse().ok()?;
    let oom_killed = match it.next()? {
        "true" => true,
        "false" => false,
        _ => return None,
    };
    let health = match it.next()? {
        "none" | "" => Health::None,
        "starting" => Health::Starting,
        "healthy" => Health::Healthy,
        "unhealthy" => Health::Unhealthy,
        _ => return None,
    };
    let host_port = it.next().and_then(|p| p.parse().ok());
    Some(JobSeen {
        status,
        exit_code,
        oom_killed,
        health,
        host_port,
    })
}

/// The service name an inference job's lifecycle is recorded under in the state store (so
/// `autogit status` lists it and `autogit reconcile --clear compute-job-3` clears its flag).
pub fn service_name(job: &str) -> String {
    format!("compute-{job}")
}

/// One pass of the state machine for a service job: the platform services' `decide`, with
/// the job's container as the service. `seen` is `None` when the container is gone. The
/// actions are `reconcile`'s: `Transition`, `Repair` (restart, then recreate), `Flag`,
/// `Create` (it is gone and was never healthy), `Start` (created, never started),
/// `RequeueAt`.
pub fn decide_service(
    job: &str,
    spec: &ServiceSpec,
    seen: Option<&JobSeen>,
    record: &Record,
    policy: RepairPolicy,
    now: u64,
    jitter: f64,
) -> Vec<Action> {
    let service = service_name(job);
    let desired = [Desired {
        service: service.clone(),
        spec_hash: "job".into(),
        start_period_secs: spec.start_period,
    }];
    let seen: Vec<reconcile::Seen> = seen
        .map(|s| reconcile::Seen {
            service: service.clone(),
            container_id: job.to_owned(),
            spec_hash: Some("job".into()),
            running: s.status == "running",
            never_started: s.status == "created",
            health: s.health,
            oom_killed: s.oom_killed,
        })
        .into_iter()
        .collect();
    let records = BTreeMap::from([(service, record.clone())]);
    reconcile::decide(&reconcile::Input {
        desired: &desired,
        seen: &seen,
        records: &records,
        policy,
        now,
        jitter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{History, State};

    #[test]
    fn defaults_per_kind_and_the_lease_policy_agree() {
        for k in [
            None,
            Some(Capability::Inference),
            Some(Capability::Render),
            Some(Capability::Train),
        ] {
            assert_eq!(defaults(k).on_lost, OnLost::default_for(k), "{k:?}");
            assert_eq!(
                defaults(k).restart == Restart::Service,
                k == Some(Capability::Inference)
            );
            assert_eq!(defaults(k).checkpoint, defaults(k).timeout.is_some());
        }
    }

    #[test]
    fn service_specs_and_health_commands() {
        let s = ServiceSpec::new(8000, None).unwrap();
        assert_eq!(
            health_cmd(&s),
            "wget -q -O /dev/null 'http://127.0.0.1:8000/health' 2>/dev/null || curl -fsS -o /dev/null 'http://127.0.0.1:8000/health'"
        );
        assert_eq!(
            service_run_args(&s).join(" "),
            format!(
                "-p 8000 --health-cmd {} --health-interval 10s --health-timeout 10s --health-retries 3 --health-start-period 120s",
                health_cmd(&s)
            )
        );
        assert!(ServiceSpec::new(8000, Some("/v1/models?x=1")).is_ok());
        for bad in ["health", "/a b", "/a'b", "/$(id)", "/a;b", "/`x`"] {
            assert!(ServiceSpec::new(80, Some(bad)).is_err(), "{bad}");
        }
        assert!(ServiceSpec::new(0, None).is_err());
        let mut s = ServiceSpec::new(80, None).unwrap();
        s.interval = 0;
        assert!(s.check().is_err());
        // Older specs (no interval in the JSON) read with the defaults.
        let old: ServiceSpec = serde_json::from_str(r#"{"port":80}"#).unwrap();
        assert_eq!(old, ServiceSpec::new(80, None).unwrap());
    }

    #[test]
    fn inspect_lines() {
        assert_eq!(
            inspect_format(Some("8000/tcp")),
            "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{with index .NetworkSettings.Ports \"8000/tcp\"}}{{(index . 0).HostPort}}{{else}}-{{end}}"
        );
        /// (status, exit code, OOM-killed, health, host port)
        type Want = (&'static str, i64, bool, Health, Option<u16>);
        let cases: &[(&str, Option<Want>)] = &[
            (
                "running 0 false healthy 32768",
                Some(("running", 0, false, Health::Healthy, Some(32768))),
            ),
            (
                "exited 137 true unhealthy -",
                Some(("exited", 137, true, Health::Unhealthy, None)),
            ),
            (
                "running 0 false none",
                Some(("running", 0, false, Health::None, None)),
            ),
            (
                "created 0 false starting -",
                Some(("created", 0, false, Health::Starting, None)),
            ),
            ("running x false none", None),
            ("running 0 maybe none", None),
            ("running 0 false sick", None),
            ("", None),
        ];
        for (line, want) in cases {
            let got = parse_seen(line).map(|s| {
                (
                    s.status.clone(),
                    s.exit_code,
                    s.oom_killed,
                    s.health,
                    s.host_port,
                )
            });
            let want = want.map(|(a, b, c, d, e)| (a.to_owned(), b, c, d, e));
            assert_eq!(got, want, "{line}");
        }
    }

    fn seen(status: &str, health: Health) -> JobSeen {
        JobSeen {
            status: status.into(),
            exit_code: if status == "running" { 0 } else { 1 },
            oom_killed: false,
            health,
            host_port: None,
        }
    }

    fn policy() -> RepairPolicy {
        RepairPolicy {
            self_heal: true,
            budget_max: 2,
            budget_window_secs: 600,
            backoff_initial_secs: 10,
            backoff_max_secs: 60,
        }
    }

    fn show(actions: &[Action]) -> String {
        actions
            .iter()
            .map(|a| match a {
                Action::Transition { to, .. } => format!("->{to}"),
                Action::Repair { how, attempt, .. } => format!("repair:{how:?}#{attempt}"),
                Action::Flag { .. } => "flag".into(),
                Action::Create { .. } => "create".into(),
                Action::Start { .. } => "start".into(),
                Action::Recreate { .. } => "recreate".into(),
                Action::RemoveOrphan { .. } => "orphan".into(),
                Action::RequeueAt { at, .. } => format!("at:{at}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A service job's life as a table: (state, repairs so far, attempt, what the engine
    /// shows, now) → the actions.
    #[test]
    fn a_service_job_is_kept_alive_by_the_lifecycle_policy() {
        let spec = ServiceSpec {
            start_period: 30,
            ..ServiceSpec::new(8000, None).unwrap()
        };
        type Case = (
            Option<State>,
            &'static [u64],
            u32,
            Option<(&'static str, Health)>,
            u64,
            &'static str,
        );
        let cases: &[Case] = &[
            // Just started: deploying until healthy.
            (
                Some(State::Deploying),
                &[],
                0,
                Some(("running", Health::Starting)),
                100,
                "",
            ),
            (
                Some(State::Deploying),
                &[],
                0,
                Some(("running", Health::Healthy)),
                100,
                "->HEALTHY",
            ),
            // Its health check fails: degraded, restarted at once (first repair).
            (
                Some(State::Healthy),
                &[],
                0,
                Some(("running", Health::Unhealthy)),
                200,
                "->DEGRADED ->REPAIRING repair:Restart#1 at:230",
            ),
            // It exited: a crash, repaired.
            (
                Some(State::Healthy),
                &[],
                0,
                Some(("exited", Health::Unhealthy)),
                200,
                "->FAILED ->REPAIRING repair:Restart#1 at:230",
            ),
            // Its container is gone: recreated.
            (
                Some(State::Healthy),
                &[],
                0,
                None,
                200,
                "->FAILED ->REPAIRING repair:Recreate#1 at:230",
            ),
            // The restart did not bring it back: failed, and after the backoff (10 s, jitter 0 halves
            // it) recreated.
            (
                Some(State::Repairing),
                &[200],
                1,
                Some(("exited", Health::Unhealthy)),
                202,
                "->FAILED at:205",
            ),
            (
                Some(State::Failed),
                &[200],
                1,
                Some(("exited", Health::Unhealthy)),
                215,
                "->REPAIRING repair:Recreate#2 at:245",
            ),
            // The budget is spent: failed and flagged for a human.
            (
                Some(State::Failed),
                &[200, 215],
                2,
                Some(("exited", Health::Unhealthy)),
                300,
                "flag",
            ),
            // Healthy again after a repair.
            (
                Some(State::Repairing),
                &[200],
                1,
                Some(("running", Health::Healthy)),
                210,
                "->HEALTHY",
            ),
        ];
        for (state, repairs, attempt, s, now, want) in cases {
            let record = Record {
                state: *state,
                since: 200,
                history: History {
                    repairs: repairs.to_vec(),
                    attempt: *attempt,
                    ..History::default()
                },
            };
            let s = s.map(|(st, h)| seen(st, h));
            let got = decide_service("job-3", &spec, s.as_ref(), &record, policy(), *now, 0.0);
            assert_eq!(show(&got), *want, "{state:?} {repairs:?} {s:?} at {now}");
            for a in &got {
                if let Action::Transition { service, .. } | Action::Repair { service, .. } = a {
                    assert_eq!(service, "compute-job-3");
                }
            }
        }
        // A flagged service is left alone.
        let record = Record {
            state: Some(State::Failed),
            since: 200,
            history: History {
                flagged: true,
                ..History::default()
            },
        };
        let got = decide_service(
            "job-3",
            &spec,
            Some(&seen("exited", Health::Unhealthy)),
            &record,
            policy(),
            900,
            0.0,
        );
        assert_eq!(show(&got), "");
    }
}
