//! The platform controller in-process, on the in-memory engine with a hand-driven clock: what
//! the runtime does reaches the bus as typed events (no binary, no dockerd).

mod support;

use autogit_app::Event;
use autogit_app::platform::PlatformController;
use autogit_drivers::engine::memory::MemoryEngine;
use support::{bus_at, drain, settings};

const CONFIG: &str = "gitlab:\n  resources:\n    preset: minimal\nhealth:\n  restart_budget:\n    max: 2\n    window: 10m\n  backoff:\n    initial: 10s\n    max: 20s\n";

fn open(
    dir: &std::path::Path,
) -> (
    PlatformController<MemoryEngine>,
    autogit_app::Bus,
    autogit_app::ManualClock,
) {
    let s = settings(CONFIG, "", dir);
    let plan = autogit_app::plan::quiet(&s).unwrap();
    let images: Vec<String> = plan.images().iter().map(ToString::to_string).collect();
    let engine = MemoryEngine::new(&images.iter().map(String::as_str).collect::<Vec<_>>());
    let (bus, clock) = bus_at(1_000_000);
    let p = PlatformController::open(s, bus.clone(), engine, plan)
        .unwrap()
        .without_host_probes();
    (p, bus, clock)
}

fn transitions(events: &[Event], service: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ServiceStateChanged {
                service: s,
                from,
                to,
                ..
            } if s == service => Some(format!("{} -> {to}", from.as_deref().unwrap_or("-"))),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn state_changes_and_actions_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let (p, bus, _clock) = open(dir.path());
    let mut rx = bus.subscribe();
    p.reconcile_once().await.unwrap();
    p.reconcile_once().await.unwrap();
    p.settle().await;
    let events = drain(&mut rx);
    assert_eq!(
        transitions(&events, "gitlab"),
        ["- -> DEPLOYING", "DEPLOYING -> HEALTHY"]
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::ReconcileAction { action } if action.to_string().contains("create"))),
        "the create action is published: {events:?}"
    );
    assert_eq!(p.states(), [("gitlab".to_owned(), "HEALTHY".to_owned())]);
}

/// A crash loop spends the budget, then the flag goes up: published once, as an error that
/// the notifiers get.
#[tokio::test]
async fn a_crash_loop_raises_the_flag_on_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let (p, bus, clock) = open(dir.path());
    p.reconcile_once().await.unwrap();
    p.reconcile_once().await.unwrap();
    p.settle().await;
    let mut rx = bus.subscribe();
    p.runtime.engine.lock().crash_on_start.push("gitlab".into());
    p.runtime.engine.kill("gitlab");
    for _ in 0..40 {
        clock.advance(5);
        p.reconcile_once().await.unwrap();
    }
    p.settle().await;
    let events = drain(&mut rx);
    let flags: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::FlagRaised { .. }))
        .collect();
    assert_eq!(flags.len(), 1, "{events:?}");
    assert!(flags[0].notifies());
    let t = transitions(&events, "gitlab");
    assert_eq!(
        t[..3],
        [
            "HEALTHY -> FAILED",
            "FAILED -> REPAIRING",
            "REPAIRING -> FAILED"
        ],
        "{t:?}"
    );
    // The runtime's own notice of the flag is a state change with `flagged` set.
    let failed = events
        .iter()
        .rfind(|e| matches!(e, Event::ServiceStateChanged { .. }))
        .unwrap();
    assert!(
        matches!(failed, Event::ServiceStateChanged { to, flagged: true, .. } if to == "FAILED"),
        "{failed:?}"
    );
    assert_eq!(failed.severity(), autogit_app::Severity::Error);
}

/// The daemon's loops, in-process: with a sound database, several state checks pass and a
/// shutdown ends every loop with success (the check must not cry wolf on pages still in the
/// WAL).
#[tokio::test(start_paused = true)]
async fn the_daemon_runs_until_shutdown_on_a_sound_database() {
    let dir = tempfile::tempdir().unwrap();
    let (p, bus, clock) = open(dir.path());
    let clock: autogit_app::SharedClock = std::sync::Arc::new(clock);
    // A second connection writes events, as in the daemon.
    let _sink = autogit_app::sinks::store(&bus, dir.path().join("state.db"));
    let (trigger, shutdown) = autogit_app::supervisor::shutdown();
    let stop = async {
        // Four state checks, with the reconcile loop writing transitions in between.
        tokio::time::sleep(std::time::Duration::from_secs(130)).await;
        trigger.fire();
    };
    let (result, ()) = tokio::join!(autogit_app::daemon::run(&p, &bus, &clock, &shutdown), stop);
    assert_eq!(result, Ok(()));
}

/// The daemon's loops, in-process: a state database emptied under the running daemon stops
/// every loop with an error naming the file (its flags and budgets can no longer be trusted).
/// tokio's clock is paused, so the 30 s between checks pass at once.
#[tokio::test(start_paused = true)]
async fn the_daemon_stops_when_its_state_database_is_emptied_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let (p, bus, clock) = open(dir.path());
    let clock: autogit_app::SharedClock = std::sync::Arc::new(clock);
    let (_trigger, shutdown) = autogit_app::supervisor::shutdown();
    let db = dir.path().join("state.db");
    let vandal = async {
        tokio::time::sleep(std::time::Duration::from_secs(45)).await;
        std::fs::write(&db, b"").unwrap();
    };
    let (result, ()) = tokio::join!(
        autogit_app::daemon::run(&p, &bus, &clock, &shutdown),
        vandal
    );
    let e = result.unwrap_err();
    assert!(e.contains("state.db"), "{e}");
}

/// An engine that stays down fails every pass; the failure is published at the 1st, 2nd, 4th,
/// 8th... pass in a row, not at every pass (an hour of outage is a handful of webhooks), and
/// counting starts again once a pass works.
#[tokio::test]
async fn an_engine_outage_is_published_sparingly() {
    let dir = tempfile::tempdir().unwrap();
    let (p, bus, _clock) = open(dir.path());
    p.reconcile_once().await.unwrap();
    let mut rx = bus.subscribe();
    p.runtime.engine.lock().down = true;
    for _ in 0..10 {
        assert!(p.reconcile_once().await.is_err());
    }
    let failures: Vec<u32> = drain(&mut rx)
        .iter()
        .filter_map(|e| match e {
            Event::ControllerFailed { failures, .. } => Some(*failures),
            _ => None,
        })
        .collect();
    assert_eq!(failures, [1, 2, 4, 8]);
    p.runtime.engine.lock().down = false;
    p.reconcile_once().await.unwrap();
    p.runtime.engine.lock().down = true;
    assert!(p.reconcile_once().await.is_err());
    let again: Vec<Event> = drain(&mut rx)
        .into_iter()
        .filter(|e| matches!(e, Event::ControllerFailed { .. }))
        .collect();
    assert!(
        matches!(&again[..], [Event::ControllerFailed { failures: 1, .. }]),
        "{again:?}"
    );
}
