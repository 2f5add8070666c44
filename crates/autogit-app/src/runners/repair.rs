//! Remote runner repair: a registered runner's container that died on its host (it exists and
//! does not run; autogit stops runners by removing them) is restarted over SSH with the policy
//! of the platform's services (`core::ondemand::decide_runner_repair` over
//! `core::lifecycle::decide_repair`: restart budget, backoff with jitter, restart then
//! recreate, the human-intervention flag). Each runner is recorded in the state store as the
//! service `runner-<name>`, so `autogit status` and `reconcile --clear runner-<name>` see it
//! like any other service.

use super::RunnerController;
use crate::Event;
use autogit_core::lifecycle::{RepairAction, RepairDecision, RepairPolicy, State};
use autogit_core::ondemand::{
    ContainerState, RunnerRepair, decide_runner_repair, inspect_argv, parse_inspect,
    repair_service, restart_argv, start_argv,
};
use autogit_drivers::remote::RemoteExec;
use autogit_drivers::state::Store;
use serde::Serialize;

/// What one repair pass saw and did for one runner.
#[derive(Clone, Debug, Serialize)]
pub struct RepairRow {
    pub runner: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<ContainerState>,
    /// `healthy`, `none`, `restart`, `recreate`, `wait`, `flagged`, `hands_off`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One pass: the rows, and when the earliest repair that waits for its backoff is due.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairReport {
    pub runners: Vec<RepairRow>,
    pub next: Option<u64>,
}

impl RunnerController {
    /// Looks at the container of every registered runner on its host and repairs the dead
    /// ones as the policy decides. A host that cannot be reached is reported on its row (the
    /// health probe publishes unreachable hosts); it is not a repair.
    pub async fn repair_pass(&self) -> Result<RepairReport, String> {
        let store = self.store()?;
        let policy = RepairPolicy::from_config(&self.settings.config.health);
        let mut report = RepairReport::default();
        for r in &self.registered()? {
            let mut row = RepairRow {
                runner: r.name.clone(),
                host: r.host.clone(),
                observed: None,
                action: "none".into(),
                error: None,
            };
            if let Err(e) = self
                .repair_one(&store, &policy, r, &mut row, &mut report.next)
                .await
            {
                row.error = Some(e);
            }
            report.runners.push(row);
        }
        Ok(report)
    }

    async fn repair_one(
        &self,
        store: &Store,
        policy: &RepairPolicy,
        r: &autogit_core::config::Runner,
        row: &mut RepairRow,
        next: &mut Option<u64>,
    ) -> Result<(), String> {
        let host = self.remote(&r.host).await?;
        let out = host
            .run(&inspect_argv(r))
            .await
            .map_err(|e| e.to_string())?;
        let observed = parse_inspect(out.success(), &out.stdout, &out.stderr).ok_or_else(|| {
            format!(
                "inspecting the runner container: {}",
                out.stderr.trim().lines().last().unwrap_or("no answer")
            )
        })?;
        row.observed = Some(observed);
        let service = repair_service(&r.name);
        let now = self.clock.now();
        let records = store
            .records(now, policy.budget_window_secs)
            .map_err(|e| e.to_string())?;
        let record = records.get(&service).cloned().unwrap_or_default();
        let decision =
            decide_runner_repair(observed, policy, &record.history, now, fastrand::f64());
        match decision {
            RunnerRepair::Nothing => {}
            RunnerRepair::Healthy => {
                row.action = "healthy".into();
                if record.state.is_some_and(|s| s != State::Healthy) {
                    self.move_to(
                        store,
                        &service,
                        record.state,
                        State::Healthy,
                        "the runner container runs",
                        false,
                    )?;
                }
            }
            RunnerRepair::Decided(RepairDecision::WaitUntil(t)) => {
                row.action = "wait".into();
                *next = Some(next.map_or(t, |n| n.min(t)));
            }
            RunnerRepair::Decided(RepairDecision::HandsOff { .. }) => {
                row.action = "hands_off".into();
            }
            RunnerRepair::Decided(RepairDecision::GiveUp { reason }) => {
                row.action = "flagged".into();
                self.move_to(store, &service, record.state, State::Failed, &reason, true)?;
                store
                    .set_flag(&service, &reason)
                    .map_err(|e| e.to_string())?;
                self.bus.publish(Event::FlagRaised { service, reason });
            }
            RunnerRepair::Decided(RepairDecision::Repair(how)) => {
                let attempt = record.history.attempt + 1;
                let (what, argv) = match how {
                    RepairAction::Restart => ("restart", restart_argv(r)),
                    RepairAction::Recreate => (
                        "recreate",
                        start_argv(
                            r,
                            &self.settings.config.runners.image,
                            &self.settings.config.runners.isolation,
                        ),
                    ),
                };
                row.action = what.into();
                if record.state != Some(State::Repairing) {
                    let reason = format!("the runner container is {observed:?} on {}", r.host)
                        .to_lowercase();
                    self.move_to(
                        store,
                        &service,
                        record.state,
                        State::Repairing,
                        &reason,
                        false,
                    )?;
                }
                store
                    .record_repair(&service, what, attempt, now)
                    .map_err(|e| e.to_string())?;
                let out = host.run(&argv).await.map_err(|e| e.to_string())?;
                let error = (!out.success())
                    .then(|| out.stderr.trim().lines().last().unwrap_or("").to_owned());
                self.bus.publish(Event::RunnerRepaired {
                    runner: r.name.clone(),
                    host: r.host.clone(),
                    action: what.to_owned(),
                    attempt,
                    error: error.clone(),
                });
                if let Some(e) = error {
                    return Err(format!("{what} of the runner container failed: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Records a state change of `service` and publishes it, like the platform's runtime.
    fn move_to(
        &self,
        store: &Store,
        service: &str,
        from: Option<State>,
        to: State,
        reason: &str,
        flagged: bool,
    ) -> Result<(), String> {
        store
            .transition(service, from, to, reason, self.clock.now())
            .map_err(|e| e.to_string())?;
        self.bus.publish(Event::ServiceStateChanged {
            project: self.settings.config.platform.project.clone(),
            service: service.to_owned(),
            from: from.map(|s| s.as_str().to_owned()),
            to: to.as_str().to_owned(),
            reason: reason.to_owned(),
            flagged,
        });
        Ok(())
    }

    /// Whether `runner`'s repairs are flagged for a human: the autoscaler leaves it alone too.
    pub(crate) fn flagged(&self, store: &Store, runner: &str) -> Option<String> {
        let service = repair_service(runner);
        let records = store.records(self.clock.now(), 0).ok()?;
        let h = &records.get(&service)?.history;
        h.flagged.then(|| {
            h.flag_reason
                .clone()
                .unwrap_or_else(|| "human intervention flag is set".into())
        })
    }
}
