//! The service state machine of the spec, and the repair policy.
//!
//! ```text
//! ABSENT ──install──► DEPLOYING ──healthy──► HEALTHY ──unhealthy──► DEGRADED
//!    ▲                    │ crashed             │ crashed              │ repair
//!    └──uninstall── FAILED ◄──────────────────────┘                      ▼
//!                     │ repair                                      REPAIRING ──healthy (fixed)──► HEALTHY
//!                     └──────────────────────────────────────────►      │ repair failed / crashed ──► FAILED
//! ```
//!
//! [`transition`] is total over (state, event): every pair either moves to a state or is an
//! [`Impossible`] combination, and the table test covers all of them. [`RepairPolicy`] decides
//! when a repair may run (exponential backoff with jitter, a restart budget per window) and when
//! to stop and raise the human-intervention flag.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Absent,
    Deploying,
    Healthy,
    Degraded,
    Failed,
    Repairing,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Absent,
        State::Deploying,
        State::Healthy,
        State::Degraded,
        State::Failed,
        State::Repairing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Absent => "ABSENT",
            State::Deploying => "DEPLOYING",
            State::Healthy => "HEALTHY",
            State::Degraded => "DEGRADED",
            State::Failed => "FAILED",
            State::Repairing => "REPAIRING",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Deploy (or redeploy after a spec change) was started.
    Install,
    Uninstall,
    /// Running and its health check passes (or it has none).
    ProbeHealthy,
    /// Running but its health check fails.
    ProbeUnhealthy,
    /// Not running: died, OOM-killed, or its container is gone.
    Crashed,
    /// Self-heal began a restart or recreate.
    RepairStarted,
    /// A repair did not bring health back in time.
    RepairFailed,
}

impl Event {
    pub const ALL: [Event; 7] = [
        Event::Install,
        Event::Uninstall,
        Event::ProbeHealthy,
        Event::ProbeUnhealthy,
        Event::Crashed,
        Event::RepairStarted,
        Event::RepairFailed,
    ];
}

/// A (state, event) combination that cannot happen; the runtime logs it and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Impossible {
    pub state: State,
    pub event: Event,
}

impl fmt::Display for Impossible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {:?} cannot happen in state {}",
            self.event, self.state
        )
    }
}

pub fn transition(state: State, event: Event) -> Result<State, Impossible> {
    use Event as E;
    use State as S;
    let next = match (state, event) {
        (S::Absent, E::Uninstall) => S::Absent,
        (_, E::Uninstall) => S::Absent,
        (S::Absent | S::Failed | S::Healthy | S::Degraded | S::Deploying, E::Install) => {
            S::Deploying
        }
        (S::Repairing, E::Install) => S::Deploying,
        (S::Deploying | S::Healthy | S::Degraded | S::Failed | S::Repairing, E::ProbeHealthy) => {
            S::Healthy
        }
        (S::Deploying, E::ProbeUnhealthy) => S::Deploying,
        (S::Healthy | S::Degraded, E::ProbeUnhealthy) => S::Degraded,
        (S::Repairing, E::ProbeUnhealthy) => S::Repairing,
        (S::Failed, E::ProbeUnhealthy) => S::Degraded,
        (S::Deploying | S::Healthy | S::Degraded | S::Failed | S::Repairing, E::Crashed) => {
            S::Failed
        }
        (S::Degraded | S::Failed, E::RepairStarted) => S::Repairing,
        (S::Repairing, E::RepairStarted) => S::Repairing,
        (S::Repairing, E::RepairFailed) => S::Failed,
        (S::Absent, _)
        | (S::Deploying | S::Healthy, E::RepairStarted | E::RepairFailed)
        | (S::Degraded | S::Failed, E::RepairFailed) => {
            return Err(Impossible { state, event });
        }
    };
    Ok(next)
}

/// Repairs escalate: restart first, recreate the container after that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairAction {
    Restart,
    Recreate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairPolicy {
    pub self_heal: bool,
    pub budget_max: u32,
    pub budget_window_secs: u64,
    pub backoff_initial_secs: u64,
    pub backoff_max_secs: u64,
}

impl RepairPolicy {
    pub fn from_config(h: &crate::config::Health) -> Self {
        Self {
            self_heal: h.self_heal,
            budget_max: h.restart_budget.max,
            budget_window_secs: h.restart_budget.window.as_secs(),
            backoff_initial_secs: h.backoff.initial.as_secs(),
            backoff_max_secs: h.backoff.max.as_secs(),
        }
    }

    /// Delay before repair number `attempt` (0-based) of a streak: `initial * 2^attempt`,
    /// capped at `max`, scaled by a jitter factor in [0.5, 1.0] so many services that fail
    /// together do not retry in lockstep. `jitter` is a number in [0, 1) from the caller.
    pub fn backoff_secs(&self, attempt: u32, jitter: f64) -> u64 {
        backoff_secs(
            attempt,
            self.backoff_initial_secs,
            self.backoff_max_secs,
            jitter,
        )
    }
}

/// Exponential backoff with jitter, the one rule for every retry autogit makes (repairs, and
/// the application layer's controllers after a failed pass): 0 before the first attempt, then
/// `initial * 2^(attempt-1)` capped at `max`, scaled by a factor in [0.5, 1.0] from `jitter`
/// (a number in [0, 1) from the caller) so that things failing together do not retry in
/// lockstep.
pub fn backoff_secs(attempt: u32, initial: u64, max: u64, jitter: f64) -> u64 {
    if attempt == 0 {
        return 0;
    }
    let exp = initial.saturating_mul(1u64 << (attempt - 1).min(30));
    let base = exp.min(max);
    let factor = 0.5 + jitter.clamp(0.0, 1.0) / 2.0;
    ((base as f64) * factor).round() as u64
}

/// Repair history of one service, kept by the runtime's state store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Unix seconds of each repair started, oldest first.
    pub repairs: Vec<u64>,
    /// Consecutive repairs that did not bring the service back (the streak).
    pub attempt: u32,
    /// Human intervention needed: automatic repair is off until `reconcile --clear`.
    pub flagged: bool,
    pub flag_reason: Option<String>,
}

impl History {
    pub fn repairs_in_window(&self, now: u64, window: u64) -> usize {
        self.repairs
            .iter()
            .filter(|t| now.saturating_sub(**t) < window)
            .count()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum RepairDecision {
    /// Self-heal is off, or the service is flagged: leave it alone.
    HandsOff {
        reason: String,
    },
    /// Not before this time (unix seconds).
    WaitUntil(u64),
    Repair(RepairAction),
    /// The budget is spent: mark FAILED and raise the flag.
    GiveUp {
        reason: String,
    },
}

pub fn decide_repair(
    policy: &RepairPolicy,
    history: &History,
    now: u64,
    jitter: f64,
) -> RepairDecision {
    if history.flagged {
        return RepairDecision::HandsOff {
            reason: history
                .flag_reason
                .clone()
                .unwrap_or_else(|| "human intervention flag is set".into()),
        };
    }
    if !policy.self_heal {
        return RepairDecision::HandsOff {
            reason: "health.self_heal is false".into(),
        };
    }
    let used = history.repairs_in_window(now, policy.budget_window_secs);
    if used >= policy.budget_max as usize {
        return RepairDecision::GiveUp {
            reason: format!(
                "restart budget exhausted: {used} repairs in the last {}s (limit {})",
                policy.budget_window_secs, policy.budget_max
            ),
        };
    }
    if let Some(last) = history.repairs.last() {
        let ready_at = last + policy.backoff_secs(history.attempt, jitter);
        if now < ready_at {
            return RepairDecision::WaitUntil(ready_at);
        }
    }
    RepairDecision::Repair(if history.attempt == 0 {
        RepairAction::Restart
    } else {
        RepairAction::Recreate
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    /// The whole (state, event) table, as a snapshot: adding a state or event shows up here.
    #[test]
    fn transition_table() {
        let mut out = String::new();
        for s in State::ALL {
            for e in Event::ALL {
                let r = match transition(s, e) {
                    Ok(n) => n.to_string(),
                    Err(_) => "impossible".to_owned(),
                };
                let _ = writeln!(out, "{:<10} + {:<15} -> {r}", s.as_str(), format!("{e:?}"));
            }
        }
        insta::assert_snapshot!(out);
    }

    #[test]
    fn spec_paths() {
        use Event::*;
        let walk = |start: State, events: &[Event]| {
            events.iter().try_fold(start, |s, e| transition(s, *e))
        };
        assert_eq!(
            walk(State::Absent, &[Install, ProbeHealthy]),
            Ok(State::Healthy)
        );
        assert_eq!(
            walk(
                State::Healthy,
                &[ProbeUnhealthy, RepairStarted, ProbeHealthy]
            ),
            Ok(State::Healthy)
        );
        assert_eq!(
            walk(State::Healthy, &[Crashed, RepairStarted, ProbeHealthy]),
            Ok(State::Healthy)
        );
        assert_eq!(
            walk(State::Healthy, &[Crashed, RepairStarted, RepairFailed]),
            Ok(State::Failed)
        );
        assert_eq!(walk(State::Failed, &[Uninstall]), Ok(State::Absent));
        assert!(transition(State::Absent, ProbeHealthy).is_err());
        assert!(transition(State::Healthy, RepairStarted).is_err());
    }

    fn policy() -> RepairPolicy {
        RepairPolicy {
            self_heal: true,
            budget_max: 3,
            budget_window_secs: 600,
            backoff_initial_secs: 10,
            backoff_max_secs: 60,
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy();
        let full: Vec<u64> = (0..6).map(|a| p.backoff_secs(a, 1.0)).collect();
        assert_eq!(full, [0, 10, 20, 40, 60, 60]);
        assert_eq!(p.backoff_secs(2, 0.0), 10, "jitter scales down to half");
    }

    #[test]
    fn repair_escalates_then_gives_up() {
        let p = policy();
        let mut h = History::default();
        assert_eq!(
            decide_repair(&p, &h, 1000, 0.5),
            RepairDecision::Repair(RepairAction::Restart)
        );
        h.repairs.push(1000);
        h.attempt = 1;
        assert_eq!(
            decide_repair(&p, &h, 1001, 1.0),
            RepairDecision::WaitUntil(1010)
        );
        assert_eq!(
            decide_repair(&p, &h, 1010, 1.0),
            RepairDecision::Repair(RepairAction::Recreate)
        );
        h.repairs.extend([1010, 1030]);
        h.attempt = 3;
        assert!(matches!(
            decide_repair(&p, &h, 1100, 1.0),
            RepairDecision::GiveUp { .. }
        ));
        // Outside the window the budget is available again.
        assert!(matches!(
            decide_repair(&p, &h, 1000 + 700, 1.0),
            RepairDecision::Repair(_)
        ));
        h.flagged = true;
        assert!(matches!(
            decide_repair(&p, &h, 5000, 1.0),
            RepairDecision::HandsOff { .. }
        ));
        let off = RepairPolicy {
            self_heal: false,
            ..p
        };
        assert!(matches!(
            decide_repair(&off, &History::default(), 0, 0.0),
            RepairDecision::HandsOff { .. }
        ));
    }
}
