//! The runtime against the in-memory engine: exact scenarios with a hand-driven clock.
//! (The same runtime against a real dockerd: tests/runtime_docker.rs.)

use autogit_core::lifecycle::State;
use autogit_core::load::{LoadInput, load};
use autogit_core::plan::{PlanInput, plan};
use autogit_core::platform::load_platform;
use autogit_core::source::Sources;
use autogit_drivers::engine::Health;
use autogit_drivers::engine::memory::MemoryEngine;
use autogit_drivers::notify::Notifier;
use autogit_drivers::runtime::Runtime;
use autogit_drivers::state::Store;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const CONFIG: &str = "gitlab:\n  resources:\n    preset: minimal\nhealth:\n  restart_budget:\n    max: 3\n    window: 10m\n  backoff:\n    initial: 10s\n    max: 40s\n";

struct World {
    rt: Runtime<MemoryEngine>,
    clock: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

fn world(config: &str, env: &str, dir: Option<tempfile::TempDir>) -> World {
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", config)),
        ..Default::default()
    });
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    let mut sources = Sources::new();
    let mut diags = Default::default();
    let (platform, _) = load_platform(Some((".env", env)), &[], &mut sources, &mut diags);
    let (p, _) = plan(&loaded.config, &platform, &PlanInput::default());
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    let images: Vec<String> = p.images().iter().map(ToString::to_string).collect();
    let engine = MemoryEngine::new(&images.iter().map(String::as_str).collect::<Vec<_>>());
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let c = clock.clone();
    let rt = Runtime::new(
        engine,
        store,
        &p,
        &loaded.config,
        "/srv/rendered",
        &BTreeMap::new(),
        Notifier::none(),
    )
    .unwrap()
    .without_host_probes()
    .with_clock(move || c.load(Ordering::SeqCst));
    World {
        rt,
        clock,
        _dir: dir,
    }
}

impl World {
    fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }
    async fn pass(&self) -> Vec<String> {
        let r = self.rt.reconcile_once().await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        r.actions.iter().map(|a| format!("{a:?}")).collect()
    }
    fn state(&self, s: &str) -> Option<State> {
        self.rt.with_store(|st| st.state_of(s).unwrap())
    }
    fn history(&self, s: &str) -> Vec<String> {
        self.rt
            .with_store(|st| st.transitions(Some(s), 100).unwrap())
            .into_iter()
            .map(|t| {
                format!(
                    "{} -> {} ({})",
                    t.from.unwrap_or_else(|| "-".into()),
                    t.to,
                    t.reason
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn apply_is_idempotent() {
    let w = world(CONFIG, "", None);
    w.rt.prepare(&|_| {}).await.unwrap();
    w.rt.prepare(&|_| {}).await.unwrap();
    assert!(
        w.rt.engine.lock().pulls.is_empty(),
        "images present locally are not pulled"
    );
    w.pass().await;
    w.pass().await;
    assert_eq!(w.state("gitlab"), Some(State::Healthy));
    let calls_before = w.rt.engine.lock().calls.len();
    assert!(w.pass().await.is_empty(), "a third pass changes nothing");
    let calls = w.rt.engine.lock().calls[calls_before..].to_vec();
    assert_eq!(calls, ["list"], "only observation");
    assert_eq!(w.rt.engine.by_service("gitlab").len(), 1);
    assert_eq!(
        w.history("gitlab"),
        [
            "- -> DEPLOYING (install)",
            "DEPLOYING -> HEALTHY (deployed and healthy)"
        ]
    );
}

#[tokio::test]
async fn killed_container_is_restarted() {
    let w = world(CONFIG, "", None);
    w.pass().await;
    w.pass().await;
    w.rt.engine.kill("gitlab");
    w.advance(5);
    w.pass().await;
    assert_eq!(w.rt.engine.by_service("gitlab")[0].starts, 2, "restarted");
    w.pass().await;
    assert_eq!(w.state("gitlab"), Some(State::Healthy));
    assert_eq!(
        w.history("gitlab")[2..],
        [
            "HEALTHY -> FAILED (container stopped)",
            "FAILED -> REPAIRING (container stopped)",
            "REPAIRING -> HEALTHY (fixed)"
        ]
    );
}

#[tokio::test]
async fn unhealthy_is_degraded_then_repaired() {
    let w = world(CONFIG, "", None);
    w.pass().await;
    w.pass().await;
    w.rt.engine.set_health("gitlab", Health::Unhealthy);
    w.pass().await;
    w.pass().await;
    assert_eq!(w.state("gitlab"), Some(State::Healthy));
    assert_eq!(
        w.history("gitlab")[2..],
        [
            "HEALTHY -> DEGRADED (health check failing)",
            "DEGRADED -> REPAIRING (health check failing)",
            "REPAIRING -> HEALTHY (fixed)"
        ]
    );
    // A running GitLab is restarted with its own stop grace (Omnibus needs 10-15 s to stop
    // cleanly), not Docker's default 10 s.
    let restarts: Vec<String> =
        w.rt.engine
            .lock()
            .calls
            .iter()
            .filter(|c| c.starts_with("restart "))
            .cloned()
            .collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert!(restarts[0].ends_with("(stop grace 30s)"), "{restarts:?}");
}

/// Engine calls that (re)start a container.
fn starts(w: &World) -> usize {
    w.rt.engine
        .lock()
        .calls
        .iter()
        .filter(|c| c.starts_with("start ") || c.starts_with("restart "))
        .count()
}

#[tokio::test]
async fn crash_loop_backs_off_then_flags_and_stops() {
    let w = world(CONFIG, "", None);
    w.pass().await;
    w.pass().await;
    w.rt.engine.lock().crash_on_start.push("gitlab".into());
    w.rt.engine.kill("gitlab");
    let mut restarts_at = Vec::new();
    for _ in 0..60 {
        w.advance(5);
        let before = starts(&w);
        w.pass().await;
        let after = starts(&w);
        if after > before {
            restarts_at.push(w.clock.load(Ordering::SeqCst) - 1_000_000);
        }
    }
    assert_eq!(
        restarts_at.len(),
        3,
        "the budget allows 3 repairs: {restarts_at:?}"
    );
    let gaps: Vec<u64> = restarts_at.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(gaps[1] >= gaps[0], "backoff grows: {gaps:?}");
    assert_eq!(w.state("gitlab"), Some(State::Failed));
    let records = w.rt.with_store(|s| s.records(w.rt.now(), 600).unwrap());
    assert!(records["gitlab"].history.flagged, "human intervention flag");
    // Flagged: no more repairs, however long we wait.
    let before = starts(&w);
    w.advance(3600);
    w.pass().await;
    assert_eq!(starts(&w), before);
    // Clearing the flag resumes repair.
    w.rt.engine.lock().crash_on_start.clear();
    assert!(w.rt.with_store(|s| s.clear_flag("gitlab").unwrap()));
    w.pass().await;
    w.pass().await;
    assert_eq!(w.state("gitlab"), Some(State::Healthy));
}

#[tokio::test]
async fn spec_change_recreates_only_that_service_and_keeps_volumes() {
    let env = "SERVICES_ENABLED=gitlab,loki\n";
    let dir = tempfile::tempdir().unwrap();
    let w = world(CONFIG, env, Some(dir));
    w.rt.prepare(&|_| {}).await.unwrap();
    w.pass().await;
    w.pass().await;
    let loki_id = w.rt.engine.by_service("loki")[0].id.clone();
    let gitlab_id = w.rt.engine.by_service("gitlab")[0].id.clone();
    let volumes = w.rt.engine.lock().volumes.clone();
    // Same data dir, same engine state, new configuration: move the engine over.
    let World { rt, _dir, .. } = w;
    let engine = rt.engine;
    let changed = CONFIG.replace(
        "preset: minimal",
        "preset: minimal\n  tuning:\n    puma_workers: 4",
    );
    let w2 = world(&changed, env, Some(_dir));
    *w2.rt.engine.lock() = std::mem::take(&mut *engine.lock());
    let actions = w2.pass().await;
    assert!(
        actions
            .iter()
            .any(|a| a.contains("Recreate") && a.contains("gitlab")),
        "{actions:?}"
    );
    assert_eq!(
        w2.rt.engine.by_service("loki")[0].id,
        loki_id,
        "loki untouched"
    );
    assert_ne!(
        w2.rt.engine.by_service("gitlab")[0].id,
        gitlab_id,
        "gitlab recreated"
    );
    assert_eq!(w2.rt.engine.lock().volumes, volumes, "volumes kept");
}

#[tokio::test]
async fn orphans_removed_and_engine_down_is_an_error() {
    let w = world(CONFIG, "SERVICES_ENABLED=gitlab,loki\n", None);
    w.pass().await;
    assert_eq!(w.rt.engine.by_service("loki").len(), 1);
    let w2 = world(CONFIG, "", None);
    *w2.rt.engine.lock() = std::mem::take(&mut *w.rt.engine.lock());
    let actions = w2.pass().await;
    assert!(
        actions
            .iter()
            .any(|a| a.contains("RemoveOrphan") && a.contains("loki")),
        "{actions:?}"
    );
    assert!(w2.rt.engine.by_service("loki").is_empty());
    w2.rt.engine.lock().down = true;
    let e = w2.rt.reconcile_once().await.unwrap_err();
    assert!(e.to_string().contains("no container engine"), "{e}");
}

#[tokio::test]
async fn restart_of_autogit_adopts_existing_containers() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(CONFIG, "", Some(dir));
    w.pass().await; // created, then autogit "dies" here
    let World { rt, _dir, .. } = w;
    let engine = rt.engine;
    // The runtime and its store connection are gone, as after kill -9.
    let w2 = world(CONFIG, "", Some(_dir));
    *w2.rt.engine.lock() = std::mem::take(&mut *engine.lock());
    w2.pass().await;
    assert_eq!(w2.rt.engine.by_service("gitlab").len(), 1, "no duplicate");
    assert_eq!(w2.state("gitlab"), Some(State::Healthy));
}
