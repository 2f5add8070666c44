//! Scheduled backups, in-process: the backup controller on the real engine against the
//! stand-in GitLab image (`testing::fake_gitlab_backup_image`: GitLab cannot run here), with a
//! hand-driven clock. The first pass only starts the schedule; the scheduled time takes a
//! verified archive with retention; a failure is a `backup_failed` event (which notifies).

mod support;

#[path = "../../autogit-drivers/tests/support/mod.rs"]
mod engine_support;

use autogit_app::Event;
use autogit_app::backup::BackupController;
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::testing::fake_gitlab_backup_image;
use engine_support::{Cleanup, engine, project, rehash, run, spec};
use support::{bus_at, drain, settings};

/// The stand-in GitLab container of a fresh project named after `name` (removed with the
/// returned `Cleanup`) and the container's id.
async fn gitlab_stand_in(
    docker: &autogit_drivers::engine::docker::Docker,
    name: &str,
) -> (Cleanup, String) {
    let image = tokio::task::spawn_blocking(|| fake_gitlab_backup_image("17.5.1"))
        .await
        .unwrap()
        .expect("stand-in image");
    let project = project(name);
    let cleanup = Cleanup::new(docker, &project).await;
    let mut s = spec(&project, "gitlab");
    s.image = image;
    s.healthcheck = None;
    s.command = vec!["/bin/sleep".into(), "3600".into()];
    rehash(&mut s);
    let id = run(docker, &s).await;
    (cleanup, id)
}

/// 2026-01-01T00:00:00Z.
const NEW_YEAR: u64 = 1_767_225_600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_takes_backups_with_retention_and_reports_failures() {
    let Some(docker) = engine().await else { return };
    let (_cleanup, id) = gitlab_stand_in(&docker, "app-backup").await;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "backup:\n  schedule: \"0 3 * * *\"\n  retention: 2\n";
    let settings = settings(config, "", &data);
    let (bus, clock) = bus_at(NEW_YEAR + 3600);
    let mut rx = bus.subscribe();
    let b = BackupController::new(
        settings.clone(),
        bus.clone(),
        std::sync::Arc::new(clock.clone()),
    );
    let archives = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(settings.backup_dir())
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.retain(|n| n.ends_with(".tar"));
        v.sort();
        v
    };

    // 01:00, first pass: the schedule starts, nothing is taken; next is 03:00.
    let next = b.pass_with(Some((&docker, id.as_str()))).await.unwrap();
    assert_eq!(next, Some(NEW_YEAR as i64 + 3 * 3600));
    assert!(archives().is_empty());

    // 03:00 on three days: one backup each, retention keeps two.
    for day in 0..3u64 {
        clock.set(NEW_YEAR + day * 86_400 + 3 * 3600 + 5);
        b.pass_with(Some((&docker, id.as_str()))).await.unwrap();
        // A second pass at the same time takes nothing more.
        b.pass_with(Some((&docker, id.as_str()))).await.unwrap();
    }
    assert_eq!(archives().len(), 2, "{:?}", archives());
    let events = drain(&mut rx);
    let created = events
        .iter()
        .filter(|e| matches!(e, Event::BackupCreated { .. }))
        .count();
    assert_eq!(created, 3, "{events:?}");
    assert!(
        matches!(events.last(), Some(Event::BackupCreated { removed, .. }) if removed.len() == 1),
        "{events:?}"
    );

    // The GitLab container is gone at the next scheduled time: a failed backup is published
    // (it notifies) and the schedule moves on.
    docker.remove(&id).await.unwrap();
    clock.set(NEW_YEAR + 3 * 86_400 + 3 * 3600 + 5);
    let next = b.pass_with(Some((&docker, id.as_str()))).await.unwrap();
    assert_eq!(next, Some((NEW_YEAR + 4 * 86_400 + 3 * 3600) as i64));
    let events = drain(&mut rx);
    assert!(
        matches!(&events[..], [Event::BackupFailed { .. }]),
        "{events:?}"
    );
    assert!(events[0].notifies());
}

/// The daemon's scheduled backups go to `backup.targets` too (a real `rclone serve s3`): each
/// copy verified and published as `backup_copied`, the target's own retention (`keep: 1`), and
/// a target that fails (its bucket does not exist) a `backup_copy_failed` event that notifies,
/// while the other target still gets its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_are_copied_to_the_targets() {
    let Some(docker) = engine().await else { return };
    let Some(rclone) = autogit_drivers::testing::rclone::rclone_or_skip() else {
        return;
    };
    let s3 = autogit_drivers::testing::rclone::RcloneS3::start(&rclone, &["backups"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (_cleanup, id) = gitlab_stand_in(&docker, "app-backup-offsite").await;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let target = |name: &str, bucket: &str| {
        format!(
            "    - {{type: s3, name: {name}, endpoint: \"{}\", bucket: {bucket}, access_key_env: S3_KEY, secret_key_env: S3_SECRET, keep: 1}}\n",
            s3.endpoint()
        )
    };
    let config = format!(
        "backup:\n  schedule: \"0 3 * * *\"\n  retention: 5\n  targets:\n{}{}",
        target("offsite", "backups"),
        target("gone", "no-such-bucket")
    );
    let env = format!("S3_KEY={}\nS3_SECRET={}\n", s3.access_key, s3.secret_key);
    let settings = settings(&config, &env, &data);
    let (bus, clock) = bus_at(NEW_YEAR + 3600);
    let mut rx = bus.subscribe();
    let b = BackupController::new(settings, bus.clone(), std::sync::Arc::new(clock.clone()));
    b.pass_with(Some((&docker, id.as_str()))).await.unwrap();
    for day in 0..2u64 {
        clock.set(NEW_YEAR + day * 86_400 + 3 * 3600 + 5);
        b.pass_with(Some((&docker, id.as_str()))).await.unwrap();
    }
    let events = drain(&mut rx);
    let copied: Vec<(&String, &Vec<String>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::BackupCopied {
                target, removed, ..
            } => Some((target, removed)),
            _ => None,
        })
        .collect();
    assert_eq!(copied.len(), 2, "{events:?}");
    assert!(copied.iter().all(|(t, _)| *t == "offsite"));
    assert_eq!(
        copied[1].1.len(),
        1,
        "keep 1 removed the first copy: {events:?}"
    );
    let failed: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::BackupCopyFailed { target, error, .. } if target == "gone" && error.contains("does not exist")))
        .collect();
    assert_eq!(failed.len(), 2, "{events:?}");
    assert!(failed[0].notifies());
    let mut on_s3: Vec<String> = std::fs::read_dir(s3.root.join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_s3.sort();
    assert_eq!(on_s3.len(), 2, "one archive and its checksum: {on_s3:?}");
    assert!(on_s3[1].ends_with(".tar.sha256"), "{on_s3:?}");
}
