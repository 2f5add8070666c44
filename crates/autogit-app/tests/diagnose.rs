//! `DiagnoseController` in-process on a hand-driven clock: backup freshness and mirror
//! failures judged from what the data dir and the state store hold, and the secrets the bundle
//! redacts. (The engine, BIND, SSH and bundle cases run through the binary:
//! `crates/autogit/tests/diagnose_cli.rs`.)

mod support;
use autogit_app::diagnose::DiagnoseController;
use autogit_core::diagnose::{Check, Status};
use autogit_drivers::state::{MirrorRunEnd, Store};
use std::sync::Arc;

const DAY: u64 = 86_400;

fn status(checks: &[Check], id: &str) -> Status {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no {id} in {checks:#?}"))
        .status
}

fn real_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn backups_age_and_mirror_failure_streaks_on_a_hand_clock() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let settings = support::settings(
        "runners: {}\nbackup:\n  schedule: \"0 3 * * *\"\nmirroring:\n  sources:\n    git:\n      - url: https://git.example.test/team/app.git\n        name: app\n",
        "",
        &data,
    );
    let start = real_now();
    let store = Store::open(&settings.state_db()).unwrap();
    // No archive yet: a warning that says how to take one.
    let (bus, clock) = support::bus_at(start);
    let c = DiagnoseController::new(settings.clone(), bus, Arc::new(clock.clone()));
    let only = ["backup".to_owned(), "mirror".to_owned()];
    let checks = c.run(&only).await;
    assert_eq!(
        status(&checks, "backup.freshness"),
        Status::Warn,
        "{checks:#?}"
    );

    // An archive now (its mtime is the real clock's).
    let dir = settings.backup_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let name = autogit_core::backup::archive_name(start, "18.5.4");
    std::fs::write(dir.join(&name), b"archive").unwrap();
    // A mirror that synced once, then failed three times in a row.
    let mirror = c_mirror_name(&settings);
    let id = store
        .mirror_run_start(
            &mirror,
            "https://git.example.test/team/app.git",
            "team/app",
            start - DAY,
        )
        .unwrap();
    store
        .mirror_run_end(
            id,
            start - DAY + 5,
            &MirrorRunEnd {
                result: "synced",
                changed: 1,
                deleted: 0,
                error: None,
            },
        )
        .unwrap();
    let checks = c.run(&only).await;
    assert_eq!(
        status(&checks, "backup.freshness"),
        Status::Ok,
        "{checks:#?}"
    );
    assert_eq!(
        status(&checks, &format!("mirror.{mirror}")),
        Status::Ok,
        "{checks:#?}"
    );
    for i in 0..3 {
        let id = store
            .mirror_run_start(
                &mirror,
                "https://git.example.test/team/app.git",
                "team/app",
                start - 600 + i * 60,
            )
            .unwrap();
        store
            .mirror_run_end(
                id,
                start - 590 + i * 60,
                &MirrorRunEnd {
                    result: "failed",
                    changed: 0,
                    deleted: 0,
                    error: Some("fatal: could not read from remote repository"),
                },
            )
            .unwrap();
    }
    let checks = c.run(&only).await;
    let m = checks
        .iter()
        .find(|c| c.id == format!("mirror.{mirror}"))
        .unwrap();
    assert_eq!(m.status, Status::Fail, "{m:#?}");
    assert!(
        m.evidence.contains("3 failed run(s)") && m.evidence.contains("could not read"),
        "{m:#?}"
    );

    // Three days on the hand clock: the daily backup is late; five days: failed.
    clock.advance(3 * DAY);
    let checks = c.run(&["backup".to_owned()]).await;
    assert_eq!(
        status(&checks, "backup.freshness"),
        Status::Warn,
        "{checks:#?}"
    );
    clock.advance(2 * DAY);
    let checks = c.run(&["backup".to_owned()]).await;
    assert_eq!(
        status(&checks, "backup.freshness"),
        Status::Fail,
        "{checks:#?}"
    );
}

/// The name `mirror list` gives the configured source.
fn c_mirror_name(settings: &Arc<autogit_app::Settings>) -> String {
    let (bus, _) = support::bus_at(0);
    let mc = autogit_app::mirror::MirrorController::new(
        settings.clone(),
        bus,
        autogit_app::clock::system(),
    );
    mc.list().unwrap()[0].name.clone()
}

#[test]
fn the_bundle_knows_every_secret_and_no_plain_setting() {
    let d = tempfile::tempdir().unwrap();
    let mut s = (*support::settings(
        "runners: {}\nhealth:\n  notify:\n    - {type: webhook, url: \"https://hooks.example.test/T0/B0/s3cretpath\", secret_env: HOOK_SECRET}\n",
        "BASE_DOMAIN=example.test\nMY_TOKEN=dotenv-token-123\nHOOK_SECRET=hook-signing-456\n",
        &d.path().join("data"),
    ))
    .clone();
    s.env = vec![
        ("GITHUB_TOKEN".into(), "env-token-789".into()),
        ("PATH".into(), "/usr/bin:/bin".into()),
    ];
    let (bus, clock) = support::bus_at(0);
    let c = DiagnoseController::new(Arc::new(s), bus, Arc::new(clock));
    let known = c.known_secrets();
    for want in [
        "dotenv-token-123",
        "hook-signing-456",
        "env-token-789",
        "https://hooks.example.test/T0/B0/s3cretpath",
    ] {
        assert!(known.iter().any(|k| k == want), "{want} not known");
    }
    assert!(
        !known
            .iter()
            .any(|k| k == "example.test" || k.contains("/usr/bin")),
        "{known:?}"
    );
    assert!(
        !d.path().join("data/secrets").exists(),
        "looking created a secret store"
    );
}
