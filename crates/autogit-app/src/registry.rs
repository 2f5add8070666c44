//! The container registry's upkeep: its garbage collection on `gitlab.registry.gc_schedule`,
//! run in GitLab's container (`gitlab-ctl registry-garbage-collect -m`: Omnibus stops the
//! registry, removes blobs no manifest names and untagged manifests, starts it again — so the
//! registry is away for the minutes it takes, hence a night-time schedule). Published as a
//! task (`task_started`, `task_finished`; a failure notifies like any error).

use std::sync::Arc;

use autogit_drivers::engine::ContainerEngine;

use crate::bus::Bus;
use crate::clock::SharedClock;
use crate::event::Event;
use crate::schedule::{Cadence, Turn};
use crate::settings::Settings;

/// What runs in GitLab's container.
pub const GC_ARGV: [&str; 3] = ["gitlab-ctl", "registry-garbage-collect", "-m"];

#[derive(Debug)]
pub struct RegistryController {
    settings: Arc<Settings>,
    bus: Bus,
    clock: SharedClock,
}

impl RegistryController {
    pub fn new(settings: Arc<Settings>, bus: Bus, clock: SharedClock) -> Self {
        Self {
            settings,
            bus,
            clock,
        }
    }

    /// Whether this platform has a registry to look after.
    pub fn enabled(&self) -> bool {
        autogit_core::registry::enabled(
            &self.settings.config,
            self.settings.platform.base_domain.as_deref(),
        )
    }

    fn cadence(&self) -> Cadence {
        Cadence::new(
            self.settings
                .data_dir
                .join("state/registry-gc-schedule.json"),
        )
    }

    /// The daemon's pass: when the schedule is due, collect garbage in GitLab's container
    /// (`on`, else the configured engine's). The first pass only starts the schedule; missed
    /// times collapse into one run. Returns when it is due next.
    pub async fn pass(&self) -> Result<Option<i64>, String> {
        self.pass_with(None::<(&autogit_drivers::engine::docker::Docker, &str)>)
            .await
    }

    pub async fn pass_with<E: ContainerEngine>(
        &self,
        on: Option<(&E, &str)>,
    ) -> Result<Option<i64>, String> {
        let schedule = &self.settings.config.gitlab.registry.gc_schedule;
        match self.cadence().turn(schedule, self.clock.now() as i64)? {
            Turn::Wait(next) => Ok(next),
            Turn::Run { at, next } => {
                let _ = match on {
                    Some((engine, id)) => self.collect(engine, id, at).await,
                    None => match crate::backup::gitlab_container(&self.settings).await {
                        Ok((engine, id)) => self.collect(&engine, &id, at).await,
                        Err(e) => {
                            self.finished(at, false, e.clone());
                            Err(e)
                        }
                    },
                };
                Ok(next)
            }
        }
    }

    /// One garbage collection in container `id`; its output's last lines are the detail.
    async fn collect<E: ContainerEngine>(
        &self,
        engine: &E,
        id: &str,
        at: i64,
    ) -> Result<(), String> {
        self.bus.publish(Event::TaskStarted {
            id: task_id(at),
            operation: "registry_gc".into(),
            target: "registry".into(),
            actor: "daemon".into(),
        });
        let argv: Vec<String> = GC_ARGV.iter().map(|s| (*s).to_owned()).collect();
        let (ok, detail) = match engine.exec(id, &argv).await {
            Ok((0, out)) => (true, tail(&out)),
            Ok((code, out)) => (false, format!("exit status {code}: {}", tail(&out))),
            Err(e) => (false, e.to_string()),
        };
        self.finished(at, ok, detail.clone());
        if ok { Ok(()) } else { Err(detail) }
    }

    fn finished(&self, at: i64, ok: bool, detail: String) {
        self.bus.publish(Event::TaskFinished {
            id: task_id(at),
            operation: "registry_gc".into(),
            target: "registry".into(),
            ok,
            detail,
        });
    }
}

fn task_id(at: i64) -> String {
    format!("registry-gc-{at}")
}

/// The last lines of a command's output (what a person reads first), at most 500 bytes.
fn tail(out: &str) -> String {
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut s = lines[lines.len().saturating_sub(3)..].join(" / ");
    if s.len() > 500 {
        let mut cut = s.len() - 500;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = s.split_off(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use autogit_core::config::Config;
    use autogit_core::platform::PlatformEnv;
    use autogit_drivers::engine::memory::MemoryEngine;

    #[tokio::test]
    async fn collects_on_schedule_in_gitlabs_container_and_reports_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.gitlab.registry.gc_schedule = "0 3 * * 0".into();
        let env = PlatformEnv {
            base_domain: Some("example.test".into()),
            ..PlatformEnv::default()
        };
        let settings = Arc::new(Settings::new(config, env, dir.path().into()));
        // Saturday 2026-12-05 12:00 UTC.
        let clock = crate::clock::ManualClock::at(1_796_472_000);
        let shared: SharedClock = Arc::new(clock.clone());
        let bus = Bus::new(shared.clone());
        let mut events = bus.subscribe();
        let c = RegistryController::new(settings, bus, shared);
        assert!(c.enabled());
        let engine = MemoryEngine::new(&[]);

        // The first pass starts the schedule: nothing runs, the next Sunday 03:00 is named.
        let next = c.pass_with(Some((&engine, "gl1"))).await.unwrap().unwrap();
        assert_eq!(next, 1_796_526_000, "Sunday 2026-12-06 03:00 UTC");
        assert!(engine.lock().calls.is_empty());
        // Before it: still nothing.
        clock.set(1_796_525_999);
        c.pass_with(Some((&engine, "gl1"))).await.unwrap();
        assert!(engine.lock().calls.is_empty());
        // Due: one collection in GitLab's container, a started and a finished task.
        clock.set(1_796_526_060);
        let next = c.pass_with(Some((&engine, "gl1"))).await.unwrap().unwrap();
        assert_eq!(next, 1_796_526_000 + 7 * 86_400);
        assert_eq!(
            engine.lock().calls,
            ["exec gl1 gitlab-ctl registry-garbage-collect -m"]
        );
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e.event.clone());
        }
        assert!(
            matches!(&seen[0], Event::TaskStarted { operation, .. } if operation == "registry_gc")
        );
        assert!(matches!(&seen[1], Event::TaskFinished { ok: true, .. }));
        // Not again until next week, even when passes are frequent.
        c.pass_with(Some((&engine, "gl1"))).await.unwrap();
        assert_eq!(engine.lock().calls.len(), 1);

        // An engine that fails: the task finishes failed (an error event, so it notifies).
        clock.set(1_796_526_000 + 7 * 86_400 + 5);
        engine.lock().down = true;
        c.pass_with(Some((&engine, "gl1"))).await.unwrap();
        let mut last = None;
        while let Ok(e) = events.try_recv() {
            last = Some(e.event.clone());
        }
        let last = last.unwrap();
        assert!(
            matches!(&last, Event::TaskFinished { ok: false, .. }),
            "{last:?}"
        );
        assert!(last.notifies());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\n\nb\nc\nd\n"), "b / c / d");
        assert!(tail(&"é".repeat(400)).len() <= 500);
    }
}
