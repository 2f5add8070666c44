//! Backup and restore on the real engine, against the stand-in GitLab image of
//! `testing::fake_gitlab_backup_image` (GitLab itself cannot run here): its `gitlab-backup`,
//! `gitlab-ctl` and `gitlab-rake` behave as GitLab's do for what autogit relies on (backup file
//! names, restore refusing while puma/sidekiq run or on a version mismatch, reconfigure needing
//! the secrets) and record every call, so the order of autogit's steps is checked.
//! Without an engine the tests say so and pass, unless `AUTOGIT_REQUIRE_TOOLS` is set.

mod support;

use autogit_drivers::backup::{
    BackupError, BackupOptions, LocalFiles, create, extract_verified, restore,
};
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::secrets::{ExposeSecret, SecretStore, SecretString};
use autogit_drivers::testing::{STAND_IN_LOG, fake_gitlab_backup_image};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::{Cleanup, project, rehash, run, spec};

async fn image(version: &str) -> Option<String> {
    let v = version.to_owned();
    match tokio::task::spawn_blocking(move || fake_gitlab_backup_image(&v))
        .await
        .expect("join")
    {
        Ok(i) => Some(i),
        Err(e) => {
            assert!(!support::required(), "stand-in image: {e}");
            eprintln!("skipping: {e}");
            None
        }
    }
}

async fn gitlab(docker: &Docker, project: &str, service: &str, image: String) -> String {
    let mut s = spec(project, service);
    s.image = image;
    s.healthcheck = None;
    s.command = vec!["/bin/sleep".into(), "3600".into()];
    rehash(&mut s);
    run(docker, &s).await
}

async fn sh(docker: &Docker, id: &str, script: &str) -> String {
    let (code, out) = docker
        .exec(id, &["sh".into(), "-c".into(), script.into()])
        .await
        .unwrap();
    assert_eq!(code, 0, "{script}: {out}");
    out
}

fn options(dir: &Path, now: u64, keep: u32) -> BackupOptions {
    BackupOptions {
        dest: dir.join("backups"),
        keep,
        work: dir.join("work"),
        local: LocalFiles {
            config: Some(dir.join("autogit.yml")),
            platform_env: None,
            state_snapshot: None,
            secrets: Some(dir.join("data/secrets")),
        },
        now,
        autogit_version: "test".into(),
    }
}

fn quiet(_: &str) {}

fn archives(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn backup_and_restore_round_trip_in_the_right_order() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let Some(img) = image("18.5.4").await else {
        return;
    };
    let project = project("backup");
    let _cleanup = Cleanup::new(&docker, &project).await;
    let id = gitlab(&docker, &project, "gitlab", img).await;
    sh(
        &docker,
        &id,
        "echo v1 > /var/opt/gitlab/data/marker && mkdir -p /var/opt/gitlab/data/repositories && echo objects > /var/opt/gitlab/data/repositories/a.git",
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("autogit.yml"), "gitlab: {}\n").unwrap();
    let store = SecretStore::open(&dir.path().join("data")).unwrap();
    store
        .put(
            "gitlab-admin-token",
            &SecretString::from("glpat-before-backup"),
        )
        .unwrap();

    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |l: &str| lines.lock().unwrap().push(l.to_owned());
    let report = create(
        &docker,
        &id,
        &options(dir.path(), 1_764_556_245, 5),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(report.gitlab_version, "18.5.4");
    assert!(
        report
            .archive
            .ends_with("autogit-backup-20251201T023045Z-18.5.4.tar")
    );
    let mode = std::fs::metadata(&report.archive)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "archives hold secrets");
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("gitlab-backup create"))
    );
    // GitLab's copy was removed from the container; nothing is left in the work dir.
    assert_eq!(
        sh(&docker, &id, "ls /var/opt/gitlab/backups").await.trim(),
        ""
    );
    assert!(archives(&dir.path().join("work")).is_empty());

    let check = tempfile::tempdir().unwrap();
    let v = extract_verified(&report.archive, &check.path().join("x")).unwrap();
    let names: Vec<&str> = v.manifest.members.iter().map(|m| m.name.as_str()).collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("gitlab/") && n.ends_with("_18.5.4_gitlab_backup.tar")),
        "{names:?}"
    );
    for n in [
        "etc-gitlab/gitlab-secrets.json",
        "etc-gitlab/gitlab.rb",
        "autogit/autogit.yml",
        "autogit/secrets/gitlab-admin-token",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }

    // Damage: data changed, secrets file gone, token changed.
    sh(
        &docker,
        &id,
        "echo v2 > /var/opt/gitlab/data/marker && rm /etc/gitlab/gitlab-secrets.json && : > /var/log/gitlab/stand-in.log",
    )
    .await;
    store
        .put("gitlab-admin-token", &SecretString::from("glpat-after"))
        .unwrap();

    let r = restore(
        &docker,
        &id,
        &report.archive,
        &dir.path().join("work"),
        &store,
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(r.secrets_restored, ["gitlab-admin-token"]);
    assert_eq!(
        sh(&docker, &id, "cat /var/opt/gitlab/data/marker")
            .await
            .trim(),
        "v1"
    );
    assert_eq!(
        sh(&docker, &id, "cat /var/opt/gitlab/data/repositories/a.git")
            .await
            .trim(),
        "objects"
    );
    assert!(
        sh(&docker, &id, "cat /etc/gitlab/gitlab-secrets.json")
            .await
            .contains("stand-in-secret-key-base")
    );
    assert_eq!(
        store
            .get("gitlab-admin-token")
            .unwrap()
            .unwrap()
            .expose_secret(),
        "glpat-before-backup"
    );
    let log = sh(&docker, &id, &format!("cat {STAND_IN_LOG}")).await;
    let calls: Vec<&str> = log.lines().collect();
    let backup_id = &v.manifest.gitlab_backup_id;
    assert_eq!(
        calls,
        [
            "gitlab-ctl stop puma",
            "gitlab-ctl stop sidekiq",
            &format!("gitlab-backup restore BACKUP={backup_id} force=yes"),
            "gitlab-ctl reconfigure",
            "gitlab-ctl restart",
        ],
        "{log}"
    );
}

#[tokio::test]
async fn retention_version_mismatch_and_failed_create() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let (Some(old), Some(new)) = (image("18.5.4").await, image("18.6.0").await) else {
        return;
    };
    let project = project("backup-ret");
    let _cleanup = Cleanup::new(&docker, &project).await;
    let id = gitlab(&docker, &project, "gitlab", old).await;
    let dir = tempfile::tempdir().unwrap();
    SecretStore::open(&dir.path().join("data")).unwrap();

    // Retention: three backups, keep two.
    let mut made = Vec::new();
    for i in 0..3 {
        let r = create(
            &docker,
            &id,
            &options(dir.path(), 1_764_556_245 + i * 60, 2),
            &quiet,
        )
        .await
        .unwrap();
        made.push(r);
    }
    assert_eq!(made[2].removed.len(), 1, "{:?}", made[2].removed);
    let left = archives(&dir.path().join("backups"));
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!made[0].archive.exists() && made[2].archive.exists());

    // A restore into another GitLab version is refused before anything runs there.
    let other = gitlab(&docker, &project, "gitlab-new", new).await;
    let store = SecretStore::open(&dir.path().join("data")).unwrap();
    let e = restore(
        &docker,
        &other,
        &made[2].archive,
        &dir.path().join("work"),
        &store,
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, BackupError::VersionMismatch { .. }), "{e}");
    assert!(e.to_string().contains("gitlab.version=18.5.4"), "{e}");
    let (_, log) = docker
        .exec(&other, &["cat".into(), STAND_IN_LOG.into()])
        .await
        .unwrap();
    assert!(!log.contains("gitlab-ctl"), "nothing may be stopped: {log}");

    // gitlab-backup create failing is reported with its output; no archive appears.
    sh(&docker, &id, "touch /var/opt/gitlab/.stand-in-fail-create").await;
    let before = archives(&dir.path().join("backups"));
    let e = create(&docker, &id, &options(dir.path(), 1_764_999_999, 2), &quiet)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("[FAILED]"), "{e}");
    assert_eq!(archives(&dir.path().join("backups")), before);
}

/// A full disk while writing the archive leaves neither the archive nor a partial file.
/// Needs root (a 64 KiB tmpfs is mounted as the destination).
#[tokio::test]
async fn disk_full_leaves_no_partial_archive() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let Some(img) = image("18.5.4").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("backups");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            !support::required(),
            "mounting a small tmpfs needs root (AUTOGIT_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipping: cannot mount a tmpfs (not root?)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let project = project("backup-full");
    let _cleanup = Cleanup::new(&docker, &project).await;
    let id = gitlab(&docker, &project, "gitlab", img).await;
    // 256 KiB of data: the archive cannot fit in 64 KiB.
    sh(
        &docker,
        &id,
        "i=0; while [ $i -lt 64 ]; do printf '%4096s' x >> /var/opt/gitlab/data/big; i=$((i+1)); done",
    )
    .await;
    SecretStore::open(&dir.path().join("data")).unwrap();
    let e = create(&docker, &id, &options(dir.path(), 1_764_556_245, 2), &quiet)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("No space left"),
        "expected ENOSPC: {e}"
    );
    assert!(archives(&small).is_empty(), "{:?}", archives(&small));
}
