//! Fencing compute jobs by lease, so that a partition neither duplicates nor loses a job.
//! Pure: the compute controller keeps one [`Lease`] per running job, feeds it what each pass
//! saw (did the host answer, did the renewal reach it) and the time, and does what
//! [`decide`] says.
//!
//! - **The lease** (host, job, expiry) is renewed by every pass in which the host answers:
//!   the controller touches the job's lease file on the host (`renew_argv`) and moves the
//!   expiry to *the time the attempt ended* plus `compute.lease`. An attempt that failed still
//!   moves it (the touch may have landed before the connection broke), so the controller's
//!   expiry is never earlier than the host's.
//! - **The host side** ([`start_argv`]): the job's wrapper starts a watchdog beside the
//!   container that stops it (`<engine> stop -t 5`) once the lease file is older than the
//!   lease time by the host's own clock, and leaves a `.fenced` marker. A partitioned host
//!   therefore stops its own copy by `expiry + WATCHDOG_POLL_SECS + STOP_SECS` at the latest.
//! - **Unreachable, not failed:** a host that misses `compute.unreachable_after` probes in a
//!   row is unreachable; its jobs keep running there while their lease is live.
//! - **Lost:** once the lease expired the job is lost. Its [`OnLost`] policy decides: `resume`
//!   waits for the host (which restarts the fenced container when it answers again),
//!   `reschedule` puts it back in the queue, but only after [`FENCE_GRACE_SECS`] past the
//!   expiry, when the watchdog has stopped the old copy (the fencing rule).
//!
//! **Invariant** (property-tested against a model of the watchdog): a job is never placed
//! again while a copy on its old host could still run.

use crate::config::Capability;
use serde::{Deserialize, Serialize};

/// How often the host-side watchdog looks at the lease file.
pub const WATCHDOG_POLL_SECS: u64 = 1;
/// How long the watchdog's `stop` waits before the engine kills the job.
pub const STOP_SECS: u64 = 5;
/// Past the lease's expiry, how long until the old copy is surely stopped: one watchdog poll,
/// the stop timeout, and margin for the engine itself.
pub const FENCE_GRACE_SECS: u64 = WATCHDOG_POLL_SECS + STOP_SECS + 4;

/// What happens to a job whose lease expired while its host was away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLost {
    /// Wait for the host: when it answers, the stopped container is started again there
    /// (its output directory and checkpoints are on that host).
    Resume,
    /// Place it again, on any host with room, once the old copy is surely stopped.
    Reschedule,
}

impl OnLost {
    pub const NAMES: [&'static str; 2] = ["resume", "reschedule"];

    /// The default per job kind: render jobs keep their checkpointed output on their host and
    /// resume there; train jobs are preemptible with checkpoints and inference is a service,
    /// so they (and jobs of no kind) are placed elsewhere.
    /// (`core::jobkind::defaults` holds every kind's defaults.)
    pub fn default_for(kind: Option<Capability>) -> OnLost {
        crate::jobkind::defaults(kind).on_lost
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnLost::Resume => "resume",
            OnLost::Reschedule => "reschedule",
        }
    }

    pub fn parse(s: &str) -> Option<OnLost> {
        [OnLost::Resume, OnLost::Reschedule]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The lease rules from `compute` in autogit.yml.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRules {
    /// `compute.lease`, seconds.
    pub ttl: u64,
    /// `compute.unreachable_after`: probes missed in a row.
    pub unreachable_after: u32,
}

/// A running job's lease on its host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub job: String,
    pub host: String,
    /// Unix seconds (the controller's clock) after which the host no longer holds it.
    pub expires_at: u64,
    /// Probes of the host missed in a row.
    pub missed: u32,
}

/// Where a lease stands (shown by `compute status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// The host answers and renews it.
    Live,
    /// The host missed probes; the lease has not expired (the job may still run there).
    Unreachable,
    /// The lease expired: the host's watchdog stops (or has stopped) the job.
    Lost,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Live => "live",
            LeaseState::Unreachable => "unreachable",
            LeaseState::Lost => "lost",
        }
    }
}

/// What a pass saw of the job's host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The probe failed.
    Missed,
    /// The probe answered; the renewal (run right after) reached the host or not.
    Answered { renewed: bool },
}

/// What the controller does with the job after the pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing more: it runs (or may run) on its host under its lease.
    Keep,
    /// Lost, policy `resume`: it waits for its host.
    Wait,
    /// Lost, policy `reschedule`, and the old copy is surely stopped: back to the queue.
    Requeue,
}

impl Lease {
    /// The lease of a job just started on `host`; `now` is when the start command returned
    /// (the wrapper touched the lease file before that).
    pub fn granted(job: &str, host: &str, rules: &LeaseRules, now: u64) -> Lease {
        Lease {
            job: job.to_owned(),
            host: host.to_owned(),
            expires_at: now.saturating_add(rules.ttl),
            missed: 0,
        }
    }

    pub fn state(&self, rules: &LeaseRules, now: u64) -> LeaseState {
        if now >= self.expires_at {
            LeaseState::Lost
        } else if self.missed >= rules.unreachable_after.max(1) {
            LeaseState::Unreachable
        } else {
            LeaseState::Live
        }
    }

    /// The earliest time the job may be placed anywhere else (the fencing rule).
    pub fn fence_until(&self) -> u64 {
        self.expires_at.saturating_add(FENCE_GRACE_SECS)
    }

    /// Whether a copy on the old host could still run at `now` (from the controller's view).
    pub fn may_still_run(&self, now: u64) -> bool {
        now < self.fence_until()
    }
}

/// Applies what a pass saw at `now` (when the pass's remote calls ended) and says what to do.
/// An answered probe renews the lease whether or not the renewal is known to have landed:
/// the expiry only ever moves later, and never past what the host itself may hold.
pub fn decide(
    lease: &mut Lease,
    seen: Seen,
    policy: OnLost,
    now: u64,
    rules: &LeaseRules,
) -> Action {
    match seen {
        Seen::Answered { renewed } => {
            lease.expires_at = lease.expires_at.max(now.saturating_add(rules.ttl));
            lease.missed = if renewed {
                0
            } else {
                lease.missed.saturating_add(1)
            };
            Action::Keep
        }
        Seen::Missed => {
            lease.missed = lease.missed.saturating_add(1);
            match (lease.state(rules, now), policy) {
                (LeaseState::Lost, OnLost::Resume) => Action::Wait,
                (LeaseState::Lost, OnLost::Reschedule) if !lease.may_still_run(now) => {
                    Action::Requeue
                }
                _ => Action::Keep,
            }
        }
    }
}

/// Where the job's lease file lives on its host, under the remote user's `$HOME`: one
/// directory per platform (`platform.project`), so two autogit instances sharing a host and
/// SSH user do not fence each other's jobs. The default project keeps the path of earlier
/// versions (`.autogit/leases/job-N`), so jobs running across an upgrade keep their lease.
pub fn lease_path(project: &str, job: &str) -> String {
    if project == crate::compute::DEFAULT_PROJECT {
        format!(".autogit/leases/{job}")
    } else {
        format!(".autogit/leases/{project}/{job}")
    }
}

/// The host-side wrapper. `$1` is `start` or `renew`, then the lease file, the lease time
/// in seconds, the engine program and the container; for `start`, the engine's `run` argv
/// follows. `start` touches the lease, removes any old container of the job (its old lease
/// expired: the controller places a job again only then), runs the engine and starts the
/// watchdog. `renew` touches the lease, and when the watchdog had stopped the container
/// (`.fenced`), starts it again with a new watchdog and prints `resumed`, or, when the engine
/// cannot start it, `resume-failed: <its error>` (the container stays stopped). `restart`
/// (a service job's repair) touches the lease, restarts the container and starts a new
/// watchdog (the old one left when the container exited).
/// The watchdog stops the container once the lease file is older than the lease time, by
/// the host's clock, and leaves when the container ends or is gone.
pub const WRAPPER: &str = r#"set -u
mode=$1 lease=$2 ttl=$3 eng=$4 name=$5; shift 5
case $lease in /*) ;; *) lease=$HOME/$lease ;; esac
mkdir -p "$(dirname "$lease")" && touch "$lease" || exit 125
watchdog() {
  (
    trap '' HUP
    while sleep POLL; do
      st=$("$eng" inspect --format '{{.State.Status}}' "$name" 2>&1)
      case $st in
        *[Nn]"o such"*|exited|dead) exit 0 ;;
      esac
      age=$(( $(date +%s) - $(stat -c %Y "$lease" 2>/dev/null || echo 0) ))
      if [ "$age" -ge "$ttl" ]; then
        case $st in running|restarting|paused|created) : > "$lease.fenced" ;; esac
        "$eng" stop -t STOP "$name" >/dev/null 2>&1 && exit 0
      fi
    done
  ) </dev/null >/dev/null 2>&1 &
}
case $mode in
  start)
    rm -f "$lease.fenced"
    "$eng" rm -f "$name" >/dev/null 2>&1
    "$@" || exit $?
    watchdog ;;
  renew)
    if [ -e "$lease.fenced" ]; then
      if err=$("$eng" start "$name" 2>&1 >/dev/null); then
        rm -f "$lease.fenced"
        watchdog
        echo resumed
      else
        echo "resume-failed: $err" | head -n 1
      fi
    fi ;;
  restart)
    rm -f "$lease.fenced"
    "$eng" restart -t STOP "$name" >/dev/null || exit $?
    watchdog ;;
  *) exit 125 ;;
esac
"#;

fn wrapper() -> String {
    WRAPPER
        .replace("POLL", &WATCHDOG_POLL_SECS.to_string())
        .replace("STOP", &STOP_SECS.to_string())
}

fn wrapped(mode: &str, project: &str, job: &str, ttl: u64, engine: &str) -> Vec<String> {
    [
        "sh",
        "-c",
        &wrapper(),
        "autogit-job",
        mode,
        &lease_path(project, job),
        &ttl.to_string(),
        engine,
        &crate::compute::container_name(project, job),
    ]
    .map(str::to_owned)
    .into()
}

/// The argv that starts a job under its lease: the wrapper, then `run` (from
/// `compute::run_argv`, whose first word is the engine).
pub fn start_argv(project: &str, job: &str, ttl: u64, run: &[String]) -> Vec<String> {
    let engine = run.first().map_or("docker", String::as_str);
    let mut v = wrapped("start", project, job, ttl, engine);
    v.extend(run.iter().cloned());
    v
}

/// The argv that renews a job's lease on its host (and resumes a fenced container).
pub fn renew_argv(project: &str, job: &str, ttl: u64, engine: &str) -> Vec<String> {
    wrapped("renew", project, job, ttl, engine)
}

/// The argv that restarts a job's container under its lease (a service job's repair).
pub fn restart_argv(project: &str, job: &str, ttl: u64, engine: &str) -> Vec<String> {
    wrapped("restart", project, job, ttl, engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RULES: LeaseRules = LeaseRules {
        ttl: 60,
        unreachable_after: 3,
    };

    fn lease(expires_at: u64, missed: u32) -> Lease {
        Lease {
            job: "job-1".into(),
            host: "gpu1".into(),
            expires_at,
            missed,
        }
    }

    /// (expires_at, missed, seen, policy, now) → (action, expires_at, missed, state).
    type Case = (u64, u32, Seen, OnLost, u64, Action, u64, u32, LeaseState);

    #[test]
    fn decisions_table() {
        use Action::*;
        use OnLost::*;
        let missed = Seen::Missed;
        let ok = Seen::Answered { renewed: true };
        let lost_reply = Seen::Answered { renewed: false };
        let cases: &[Case] = &[
            // The host answers: renewed from the end of the pass, misses forgotten.
            (160, 2, ok, Reschedule, 130, Keep, 190, 0, LeaseState::Live),
            // Renewal failed after the probe answered: still extended (the touch may have
            // landed), and it counts as a miss.
            (
                160,
                0,
                lost_reply,
                Reschedule,
                130,
                Keep,
                190,
                1,
                LeaseState::Live,
            ),
            // Never shortened.
            (500, 0, ok, Resume, 130, Keep, 500, 0, LeaseState::Live),
            // Misses below the threshold: live.
            (
                160,
                1,
                missed,
                Reschedule,
                130,
                Keep,
                160,
                2,
                LeaseState::Live,
            ),
            // Third miss: unreachable, not failed, still running there.
            (
                160,
                2,
                missed,
                Reschedule,
                130,
                Keep,
                160,
                3,
                LeaseState::Unreachable,
            ),
            (
                160,
                2,
                missed,
                Resume,
                130,
                Keep,
                160,
                3,
                LeaseState::Unreachable,
            ),
            // Expired: lost. Resume waits.
            (160, 5, missed, Resume, 160, Wait, 160, 6, LeaseState::Lost),
            (160, 5, missed, Resume, 9000, Wait, 160, 6, LeaseState::Lost),
            // Reschedule waits out the grace (the watchdog may still be stopping it) ...
            (
                160,
                5,
                missed,
                Reschedule,
                160,
                Keep,
                160,
                6,
                LeaseState::Lost,
            ),
            (
                160,
                5,
                missed,
                Reschedule,
                169,
                Keep,
                160,
                6,
                LeaseState::Lost,
            ),
            // ... then requeues.
            (
                160,
                5,
                missed,
                Reschedule,
                170,
                Requeue,
                160,
                6,
                LeaseState::Lost,
            ),
            // A lost lease whose host answers again is renewed (the wrapper resumes it there).
            (160, 9, ok, Reschedule, 165, Keep, 225, 0, LeaseState::Live),
        ];
        for (i, &(exp, m, seen, policy, now, action, exp2, m2, state)) in cases.iter().enumerate() {
            let mut l = lease(exp, m);
            assert_eq!(
                decide(&mut l, seen, policy, now, &RULES),
                action,
                "case {i}"
            );
            assert_eq!((l.expires_at, l.missed), (exp2, m2), "case {i}");
            assert_eq!(l.state(&RULES, now), state, "case {i}");
        }
    }

    #[test]
    fn policies_by_kind_and_names() {
        assert_eq!(
            OnLost::default_for(Some(Capability::Render)),
            OnLost::Resume
        );
        assert_eq!(
            OnLost::default_for(Some(Capability::Train)),
            OnLost::Reschedule
        );
        assert_eq!(
            OnLost::default_for(Some(Capability::Inference)),
            OnLost::Reschedule
        );
        assert_eq!(OnLost::default_for(None), OnLost::Reschedule);
        for n in OnLost::NAMES {
            assert_eq!(OnLost::parse(n).unwrap().as_str(), n);
        }
        assert_eq!(OnLost::parse("retry"), None);
    }

    #[test]
    fn wrapper_argv_keeps_the_run_argv_last_and_untouched() {
        let run: Vec<String> = [
            "docker",
            "run",
            "-d",
            "--name",
            "autogit-job-1",
            "img",
            "a b",
        ]
        .map(str::to_owned)
        .into();
        let v = start_argv("autogit", "job-1", 60, &run);
        assert_eq!(&v[..2], ["sh", "-c"]);
        assert!(
            v[2].contains("sleep 1") && v[2].contains("stop -t 5"),
            "{}",
            v[2]
        );
        assert_eq!(
            &v[3..9],
            [
                "autogit-job",
                "start",
                ".autogit/leases/job-1",
                "60",
                "docker",
                "autogit-job-1"
            ]
        );
        assert_eq!(&v[9..], &run[..]);
        let r = renew_argv("autogit", "job-1", 60, "podman");
        assert_eq!(
            &r[4..],
            [
                "renew",
                ".autogit/leases/job-1",
                "60",
                "podman",
                "autogit-job-1"
            ]
        );
        // Another platform on the same host: its own container names and lease directory.
        let r = restart_argv("lab2", "job-1", 60, "docker");
        assert_eq!(
            &r[4..],
            [
                "restart",
                ".autogit/leases/lab2/job-1",
                "60",
                "docker",
                "lab2-job-1"
            ]
        );
    }

    /// One step of a partition scenario.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// The link is up or down for this pass; `reply_lost`: the renewal reached the host
        /// but its answer did not come back.
        Pass {
            up: bool,
            reply_lost: bool,
            wait: u64,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        (any::<bool>(), any::<bool>(), 0u64..90).prop_map(|(up, reply_lost, wait)| Step::Pass {
            up,
            reply_lost,
            wait,
        })
    }

    proptest! {
        /// The fencing rule against a model of the host: the watchdog stops the job at the
        /// last touch plus the lease plus one poll
        /// plus the stop timeout. Whatever the partition does, a requeue happens only after
        /// that, and a job whose host keeps answering is never requeued.
        #[test]
        fn never_placed_again_while_the_old_copy_may_run(
            steps in proptest::collection::vec(step(), 1..40),
            ttl in 2u64..300,
            unreachable_after in 1u32..5,
            resume in any::<bool>(),
        ) {
            let rules = LeaseRules { ttl, unreachable_after };
            let policy = if resume { OnLost::Resume } else { OnLost::Reschedule };
            let mut now = 1_000u64;
            let mut l = Lease::granted("j", "h", &rules, now);
            // The host measures the file's age by its own clock, so clock skew does not
            // matter: only the instant of the last touch does.
            let mut touched = now;
            let mut stopped_at: Option<u64> = None;
            for s in steps {
                let Step::Pass { up, reply_lost, wait } = s;
                now += wait;
                // The watchdog, had it fired by now.
                if stopped_at.is_none() && now >= touched + ttl + WATCHDOG_POLL_SECS + STOP_SECS {
                    stopped_at = Some(touched + ttl + WATCHDOG_POLL_SECS + STOP_SECS);
                }
                let seen = if up {
                    // The touch lands during the pass (before `now`).
                    touched = now;
                    if stopped_at.is_some() {
                        stopped_at = None; // renew resumes the fenced container there
                    }
                    Seen::Answered { renewed: !reply_lost }
                } else {
                    Seen::Missed
                };
                match decide(&mut l, seen, policy, now, &rules) {
                    Action::Requeue => {
                        prop_assert!(!resume, "resume never requeues");
                        let stop = touched + ttl + WATCHDOG_POLL_SECS + STOP_SECS;
                        prop_assert!(now >= stop, "requeued at {now}, old copy runs until {stop}");
                        return Ok(());
                    }
                    Action::Keep | Action::Wait => {}
                }
                prop_assert!(l.expires_at >= touched + ttl, "controller expiry before the host's");
            }
        }
    }
}
