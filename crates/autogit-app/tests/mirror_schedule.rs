//! The mirror controller in-process against real git over loopback (`git daemon` for source
//! and target), scheduled by a hand-driven clock: a schedule that never ran is due at once,
//! missed times collapse into one run, and every mirror's outcome is a typed event.

mod support;

#[path = "../../autogit-drivers/tests/git_support/mod.rs"]
mod git_support;

use autogit_app::Event;
use autogit_app::mirror::MirrorController;
use git_support::{Daemon, Work, have_git_daemon, refs};
use support::{bus_at, drain, settings};

/// 2026-01-01T00:00:00Z, a Thursday.
const NEW_YEAR: u64 = 1_767_225_600;

#[tokio::test]
async fn scheduled_passes_sync_once_per_due_time_and_publish_each_mirror() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "app-src");
    let dst = Daemon::start(&root.join("dst"), "app-dst");
    let bare = src.init("app.git");
    dst.init("mirrors/app.git");
    let w = Work::new(&root.join("work/app"), &bare);
    w.commit("README", "one");
    w.publish();
    let config = format!(
        "mirroring:\n  enabled: true\n  schedule: \"0 */6 * * *\"\n  namespace: mirrors\n  retries: 0\n  allow_private: true\n  target_url_template: \"git://127.0.0.1:{}/{{path}}.git\"\n  sources:\n    git:\n      - {}\n      - {}\n",
        dst.port,
        src.url("app.git"),
        src.url("gone.git"),
    );
    let s = settings(&config, "", &root.join("data"));
    let (bus, clock) = bus_at(NEW_YEAR + 3600);
    let mut rx = bus.subscribe();
    let m = MirrorController::new(s, bus.clone(), std::sync::Arc::new(clock.clone()));
    assert!(m.scheduled());

    // Never ran: due at once; the next time is 06:00.
    let next = m.pass(std::future::pending()).await.unwrap();
    assert_eq!(next, Some(NEW_YEAR as i64 + 6 * 3600));
    assert_eq!(refs(&src.url("app.git")), refs(&dst.url("mirrors/app.git")));
    let events = drain(&mut rx);
    let mut kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    // The two mirrors sync in parallel: their events come in either order.
    kinds[1..3].sort();
    assert_eq!(
        kinds,
        [
            "mirror_sync_started",
            "mirror_failed",
            "mirror_synced",
            "mirror_sync_finished"
        ],
        "{events:?}"
    );
    assert!(matches!(
        &events[3],
        Event::MirrorSyncFinished {
            synced: 1,
            failed: 1,
            ..
        }
    ));

    // Before 06:00 nothing runs, however often it is asked.
    w.commit("README", "two");
    w.publish();
    clock.set(NEW_YEAR + 5 * 3600);
    assert_eq!(
        m.pass(std::future::pending()).await.unwrap(),
        Some(NEW_YEAR as i64 + 6 * 3600)
    );
    assert!(drain(&mut rx).is_empty());
    assert_ne!(refs(&src.url("app.git")), refs(&dst.url("mirrors/app.git")));

    // A day later: the four missed times collapse into one run.
    clock.set(NEW_YEAR + 30 * 3600);
    m.pass(std::future::pending()).await.unwrap();
    assert_eq!(refs(&src.url("app.git")), refs(&dst.url("mirrors/app.git")));
    let runs = drain(&mut rx)
        .iter()
        .filter(|e| matches!(e, Event::MirrorSyncStarted { .. }))
        .count();
    assert_eq!(runs, 1);
}

/// A sync cancelled (the daemon's shutdown) records its runs as interrupted and is not
/// counted as the scheduled run.
#[tokio::test]
async fn a_cancelled_pass_stays_due() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "app-src2");
    let bare = src.init("app.git");
    let w = Work::new(&root.join("work/app"), &bare);
    w.commit("README", "one");
    w.publish();
    let config = format!(
        "mirroring:\n  enabled: true\n  namespace: mirrors\n  retries: 0\n  allow_private: true\n  target_url_template: \"git://127.0.0.1:9/{{path}}.git\"\n  sources:\n    git:\n      - {}\n",
        src.url("app.git"),
    );
    let s = settings(&config, "", &root.join("data"));
    let (bus, clock) = bus_at(NEW_YEAR);
    let m = MirrorController::new(s, bus, std::sync::Arc::new(clock));
    assert!(m.scheduled());
    // Cancelled before the sync can finish.
    assert_eq!(m.pass(async {}).await.unwrap(), None);
    assert!(!root.join("data/state/mirror-schedule.json").exists());
}
