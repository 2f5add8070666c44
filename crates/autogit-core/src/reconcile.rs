//! One reconcile pass, decided purely: desired services + what the engine shows + what the store
//! remembers → a list of [`Action`]s. The runtime executes them and records the outcome; this
//! module never waits, sleeps or touches the engine (the kube-rs pattern: `reconcile` returns
//! what to do and when to come back).

use crate::lifecycle::{
    Event, History, RepairAction, RepairDecision, RepairPolicy, State, decide_repair, transition,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// What the plan wants for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub service: String,
    pub spec_hash: String,
    /// Seconds the service may take to become healthy after a (re)start.
    pub start_period_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// What the engine (and the probes) show for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub service: String,
    pub container_id: String,
    pub spec_hash: Option<String>,
    pub running: bool,
    /// Created but never started (engine state `created`).
    pub never_started: bool,
    pub health: Health,
    pub oom_killed: bool,
}

/// What the store remembers of one service.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    pub state: Option<State>,
    /// Unix seconds of the last transition.
    pub since: u64,
    pub history: History,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Record a state change (and notify).
    Transition {
        service: String,
        from: Option<State>,
        to: State,
        reason: String,
    },
    /// Create and start the container (none exists).
    Create {
        service: String,
    },
    /// Remove the container and create it again from the desired spec (volumes are kept).
    Recreate {
        service: String,
        reason: String,
    },
    Start {
        service: String,
    },
    /// A repair: restart or recreate, counted against the budget.
    Repair {
        service: String,
        how: RepairAction,
        attempt: u32,
    },
    /// Raise the human-intervention flag; no automatic repair until it is cleared.
    Flag {
        service: String,
        reason: String,
    },
    /// Remove a managed container no service wants any more.
    RemoveOrphan {
        container_id: String,
        service: String,
    },
    /// Come back for this service no later than this time (unix seconds).
    RequeueAt {
        service: String,
        at: u64,
    },
}

#[derive(Debug)]
pub struct Input<'a> {
    pub desired: &'a [Desired],
    pub seen: &'a [Seen],
    pub records: &'a BTreeMap<String, Record>,
    pub policy: RepairPolicy,
    pub now: u64,
    /// A number in [0, 1) for backoff jitter.
    pub jitter: f64,
}

fn move_to(
    actions: &mut Vec<Action>,
    service: &str,
    from: Option<State>,
    event: Event,
    reason: &str,
) -> Option<State> {
    let base = from.unwrap_or(State::Absent);
    match transition(base, event) {
        Ok(to) if Some(to) != from => {
            actions.push(Action::Transition {
                service: service.to_owned(),
                from,
                to,
                reason: reason.to_owned(),
            });
            Some(to)
        }
        Ok(_) => from,
        Err(_) => from,
    }
}

/// Decides a pass for every desired service and every orphan.
pub fn decide(input: &Input<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    let empty = Record::default();
    for d in input.desired {
        let rec = input.records.get(&d.service).unwrap_or(&empty);
        let seen = input.seen.iter().find(|s| s.service == d.service);
        decide_one(&mut actions, input, d, rec, seen);
    }
    for s in input.seen {
        if !input.desired.iter().any(|d| d.service == s.service) {
            actions.push(Action::RemoveOrphan {
                container_id: s.container_id.clone(),
                service: s.service.clone(),
            });
        }
    }
    actions
}

fn repair(
    actions: &mut Vec<Action>,
    input: &Input<'_>,
    d: &Desired,
    state: Option<State>,
    rec: &Record,
    why: &str,
) {
    match decide_repair(&input.policy, &rec.history, input.now, input.jitter) {
        RepairDecision::HandsOff { .. } => {}
        RepairDecision::WaitUntil(at) => actions.push(Action::RequeueAt {
            service: d.service.clone(),
            at,
        }),
        RepairDecision::GiveUp { reason } => {
            if state != Some(State::Failed) {
                actions.push(Action::Transition {
                    service: d.service.clone(),
                    from: state,
                    to: State::Failed,
                    reason: reason.clone(),
                });
            }
            actions.push(Action::Flag {
                service: d.service.clone(),
                reason,
            });
        }
        RepairDecision::Repair(how) => {
            move_to(actions, &d.service, state, Event::RepairStarted, why);
            actions.push(Action::Repair {
                service: d.service.clone(),
                how,
                attempt: rec.history.attempt + 1,
            });
            actions.push(Action::RequeueAt {
                service: d.service.clone(),
                at: input.now + d.start_period_secs.max(1),
            });
        }
    }
}

fn decide_one(
    actions: &mut Vec<Action>,
    input: &Input<'_>,
    d: &Desired,
    rec: &Record,
    seen: Option<&Seen>,
) {
    let state = rec.state;
    let svc = d.service.as_str();
    let Some(seen) = seen else {
        match state {
            None | Some(State::Absent) | Some(State::Deploying) => {
                move_to(actions, svc, state, Event::Install, "install");
                actions.push(Action::Create {
                    service: svc.to_owned(),
                });
            }
            Some(_) => {
                // It existed and is gone: a crash. Repair by recreating.
                let st = move_to(actions, svc, state, Event::Crashed, "container is gone");
                if !rec.history.flagged && input.policy.self_heal {
                    match decide_repair(&input.policy, &rec.history, input.now, input.jitter) {
                        RepairDecision::Repair(_) => {
                            move_to(actions, svc, st, Event::RepairStarted, "container is gone");
                            actions.push(Action::Repair {
                                service: svc.to_owned(),
                                how: RepairAction::Recreate,
                                attempt: rec.history.attempt + 1,
                            });
                            actions.push(Action::RequeueAt {
                                service: svc.to_owned(),
                                at: input.now + d.start_period_secs.max(1),
                            });
                        }
                        _ => repair(actions, input, d, st, rec, "container is gone"),
                    }
                }
            }
        }
        return;
    };
    if seen.spec_hash.as_deref() != Some(d.spec_hash.as_str()) {
        move_to(actions, svc, state, Event::Install, "desired spec changed");
        actions.push(Action::Recreate {
            service: svc.to_owned(),
            reason: "desired spec changed".into(),
        });
        return;
    }
    if !seen.running {
        match state {
            None | Some(State::Absent) | Some(State::Deploying)
                if seen.never_started || state != Some(State::Deploying) =>
            {
                move_to(actions, svc, state, Event::Install, "install");
                actions.push(Action::Start {
                    service: svc.to_owned(),
                });
            }
            _ => {
                let why = if seen.oom_killed {
                    "killed: out of memory"
                } else {
                    "container stopped"
                };
                let st = move_to(actions, svc, state, Event::Crashed, why);
                repair(actions, input, d, st, rec, why);
            }
        }
        return;
    }
    match seen.health {
        Health::Healthy | Health::None => {
            let reason = match state {
                Some(State::Repairing) => "fixed",
                Some(State::Deploying) | None => "deployed and healthy",
                _ => "health check passes",
            };
            move_to(actions, svc, state, Event::ProbeHealthy, reason);
        }
        Health::Starting => match state {
            None | Some(State::Absent) => {
                move_to(
                    actions,
                    svc,
                    state,
                    Event::Install,
                    "adopted a starting container",
                );
            }
            // A repair that is still starting when the start period is over did not work.
            Some(State::Repairing) if input.now >= rec.since + d.start_period_secs => {
                let st = move_to(
                    actions,
                    svc,
                    state,
                    Event::RepairFailed,
                    "not healthy within the start period after repair",
                );
                repair(actions, input, d, st, rec, "not healthy after repair");
            }
            Some(State::Repairing) => actions.push(Action::RequeueAt {
                service: svc.to_owned(),
                at: rec.since + d.start_period_secs,
            }),
            Some(State::Deploying) => {}
            Some(_) => {}
        },
        Health::Unhealthy => match state {
            Some(State::Repairing) => {
                // Still unhealthy after the grace period: the repair did not work.
                if input.now >= rec.since + d.start_period_secs {
                    let st = move_to(
                        actions,
                        svc,
                        state,
                        Event::RepairFailed,
                        "repair did not restore health",
                    );
                    repair(actions, input, d, st, rec, "health check still failing");
                } else {
                    actions.push(Action::RequeueAt {
                        service: svc.to_owned(),
                        at: rec.since + d.start_period_secs,
                    });
                }
            }
            Some(State::Deploying) if input.now < rec.since + d.start_period_secs => {}
            _ => {
                let st = move_to(
                    actions,
                    svc,
                    state.or(Some(State::Healthy)),
                    Event::ProbeUnhealthy,
                    "health check failing",
                );
                let st = if state.is_none() { st } else { st.or(state) };
                repair(actions, input, d, st, rec, "health check failing");
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RepairPolicy {
        RepairPolicy {
            self_heal: true,
            budget_max: 3,
            budget_window_secs: 600,
            backoff_initial_secs: 10,
            backoff_max_secs: 60,
        }
    }

    fn d() -> Desired {
        Desired {
            service: "web".into(),
            spec_hash: "h1".into(),
            start_period_secs: 30,
        }
    }

    fn seen(running: bool, health: Health, hash: &str) -> Seen {
        Seen {
            service: "web".into(),
            container_id: "c1".into(),
            spec_hash: Some(hash.into()),
            running,
            never_started: !running && health == Health::Starting,
            health,
            oom_killed: false,
        }
    }

    fn run(
        state: Option<State>,
        since: u64,
        history: History,
        seen_: Option<Seen>,
        now: u64,
    ) -> String {
        let records = BTreeMap::from([(
            "web".to_owned(),
            Record {
                state,
                since,
                history,
            },
        )]);
        let desired = [d()];
        let seen_list: Vec<Seen> = seen_.into_iter().collect();
        let actions = decide(&Input {
            desired: &desired,
            seen: &seen_list,
            records: &records,
            policy: policy(),
            now,
            jitter: 1.0,
        });
        actions
            .iter()
            .map(|a| match a {
                Action::Transition {
                    from, to, reason, ..
                } => format!(
                    "{} -> {to} ({reason})",
                    from.map_or("-".into(), |f| f.to_string())
                ),
                Action::Repair { how, attempt, .. } => format!("repair {how:?} #{attempt}"),
                Action::RequeueAt { at, .. } => format!("requeue at {at}"),
                Action::Flag { reason, .. } => format!("flag: {reason}"),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Data-driven: (name, state, since, history attempts/repairs, seen, now) → actions.
    #[test]
    fn scenarios() {
        let h = |attempt: u32, repairs: &[u64], flagged: bool| History {
            repairs: repairs.to_vec(),
            attempt,
            flagged,
            flag_reason: None,
        };
        type Case<'a> = (&'a str, Option<State>, u64, History, Option<Seen>, u64);
        let cases: Vec<Case> = vec![
            ("fresh install", None, 0, h(0, &[], false), None, 100),
            (
                "created, not started",
                Some(State::Deploying),
                90,
                h(0, &[], false),
                Some(seen(false, Health::Starting, "h1")),
                100,
            ),
            (
                "crashed while deploying",
                Some(State::Deploying),
                90,
                h(0, &[], false),
                Some(seen(false, Health::None, "h1")),
                100,
            ),
            (
                "deploying, starting",
                Some(State::Deploying),
                90,
                h(0, &[], false),
                Some(seen(true, Health::Starting, "h1")),
                100,
            ),
            (
                "deployed healthy",
                Some(State::Deploying),
                90,
                h(0, &[], false),
                Some(seen(true, Health::Healthy, "h1")),
                100,
            ),
            (
                "steady",
                Some(State::Healthy),
                90,
                h(0, &[], false),
                Some(seen(true, Health::Healthy, "h1")),
                100,
            ),
            (
                "spec changed",
                Some(State::Healthy),
                90,
                h(0, &[], false),
                Some(seen(true, Health::Healthy, "old")),
                100,
            ),
            (
                "killed",
                Some(State::Healthy),
                90,
                h(0, &[], false),
                Some(seen(false, Health::None, "h1")),
                100,
            ),
            (
                "container removed",
                Some(State::Healthy),
                90,
                h(0, &[], false),
                None,
                100,
            ),
            (
                "unhealthy",
                Some(State::Healthy),
                90,
                h(0, &[], false),
                Some(seen(true, Health::Unhealthy, "h1")),
                100,
            ),
            (
                "still unhealthy in grace",
                Some(State::Repairing),
                90,
                h(1, &[90], false),
                Some(seen(true, Health::Unhealthy, "h1")),
                100,
            ),
            (
                "unhealthy after grace",
                Some(State::Repairing),
                90,
                h(1, &[90], false),
                Some(seen(true, Health::Unhealthy, "h1")),
                130,
            ),
            (
                "fixed",
                Some(State::Repairing),
                90,
                h(1, &[90], false),
                Some(seen(true, Health::Healthy, "h1")),
                100,
            ),
            (
                "crash loop in backoff",
                Some(State::Failed),
                95,
                h(2, &[80, 90], false),
                Some(seen(false, Health::None, "h1")),
                100,
            ),
            (
                "crash loop after backoff",
                Some(State::Failed),
                95,
                h(2, &[80, 90], false),
                Some(seen(false, Health::None, "h1")),
                111,
            ),
            (
                "budget exhausted",
                Some(State::Failed),
                95,
                h(3, &[70, 80, 90], false),
                Some(seen(false, Health::None, "h1")),
                200,
            ),
            (
                "flagged: hands off",
                Some(State::Failed),
                95,
                h(3, &[70, 80, 90], true),
                Some(seen(false, Health::None, "h1")),
                2000,
            ),
        ];
        let mut out = String::new();
        for (name, state, since, hist, s, now) in cases {
            out.push_str(&format!("{name}: {}\n", run(state, since, hist, s, now)));
        }
        insta::assert_snapshot!(out);
    }

    #[test]
    fn orphans_are_removed() {
        let records = BTreeMap::new();
        let seen_list = [Seen {
            service: "old".into(),
            container_id: "c9".into(),
            spec_hash: None,
            running: true,
            never_started: false,
            health: Health::None,
            oom_killed: false,
        }];
        let actions = decide(&Input {
            desired: &[],
            seen: &seen_list,
            records: &records,
            policy: policy(),
            now: 0,
            jitter: 0.0,
        });
        assert_eq!(
            actions,
            [Action::RemoveOrphan {
                container_id: "c9".into(),
                service: "old".into()
            }]
        );
    }
}
