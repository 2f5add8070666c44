//! Backup and restore on the real engine, against the stand-in GitLab image of
//! `testing::fake_gitlab_backup_image` (GitLab itself cannot run here): its `gitlab-backup`,
//! `gitlab-ctl` and `gitlab-rake` behave as GitLab's do for what autogit relies on (backup file
//! names, restore refusing while puma/sidekiq run or on a version mismatch, reconfigure needing
//! the secrets) and record every call, so the order of autogit's steps is checked.
//! Without an engine the tests say so and pass, unless `AUTOGIT_REQUIRE_TOOLS` is set.

mod support;

use autogit_drivers::backup::{
    BackupError, BackupOptions, Decryption, Encryption, LocalFiles, create, extract_verified,
    extract_verified_with, restore, restore_with, sqlite_snapshot,
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
            access_snapshot: None,
            audit: None,
        },
        now,
        autogit_version: "test".into(),
        encryption: Default::default(),
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

/// Everything left in a directory, recursively, as relative paths.
fn left_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A GitLab whose backup is 256 KiB.
async fn big_gitlab(docker: &Docker, project: &str, img: String) -> String {
    let id = gitlab(docker, project, "gitlab", img).await;
    sh(
        docker,
        &id,
        "i=0; while [ $i -lt 64 ]; do printf '%4096s' x >> /var/opt/gitlab/data/big; i=$((i+1)); done",
    )
    .await;
    id
}

/// GitLab's backups in the container.
async fn in_container(docker: &Docker, id: &str) -> String {
    sh(docker, id, "ls /var/opt/gitlab/backups").await
}

/// A full disk: the destination (a 64 KiB tmpfs) cannot hold the archive, and the work dir (a
/// 128 KiB one) cannot hold the copy out. Each is refused before it is written to, with an
/// error naming the full path; nothing is left in the destination, in the work dir, or in the
/// container's backup directory. Needs root (tmpfs mounts).
#[tokio::test]
async fn a_full_disk_is_refused_up_front_and_leaves_nothing_behind() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let Some(img) = image("18.5.4").await else {
        return;
    };
    let (Some(small_dest), Some(small_work)) =
        (support::Tmpfs::mount("64k"), support::Tmpfs::mount("128k"))
    else {
        return;
    };
    let project = project("backup-full");
    let _cleanup = Cleanup::new(&docker, &project).await;
    let id = big_gitlab(&docker, &project, img).await;
    let dir = tempfile::tempdir().unwrap();
    SecretStore::open(&dir.path().join("data")).unwrap();

    // The destination is too small.
    let mut o = options(dir.path(), 1_764_556_245, 2);
    o.dest = small_dest.path().join("backups");
    let e = create(&docker, &id, &o, &quiet).await.unwrap_err();
    let archive = o.dest.join("autogit-backup-20251201T023045Z-18.5.4.tar");
    assert!(matches!(e, BackupError::NoSpace { .. }), "{e}");
    assert!(
        e.to_string().contains(&archive.display().to_string()),
        "names the full destination path: {e}"
    );
    assert!(left_in(&o.dest).is_empty(), "{:?}", left_in(&o.dest));
    assert!(left_in(&o.work).is_empty(), "{:?}", left_in(&o.work));
    assert_eq!(
        in_container(&docker, &id).await,
        "",
        "GitLab's copy removed"
    );

    // The work dir is too small for the copy out.
    let mut o = options(dir.path(), 1_764_556_300, 2);
    o.work = small_work.path().join("work");
    let e = create(&docker, &id, &o, &quiet).await.unwrap_err();
    assert!(matches!(e, BackupError::NoSpace { .. }), "{e}");
    assert!(e.to_string().contains(&o.work.display().to_string()), "{e}");
    assert!(left_in(&o.work).is_empty(), "{:?}", left_in(&o.work));
    assert!(left_in(&o.dest).is_empty(), "{:?}", left_in(&o.dest));
    assert_eq!(in_container(&docker, &id).await, "");

    // With room, the same backup works and leaves GitLab's copy nowhere.
    let o = options(dir.path(), 1_764_556_400, 2);
    create(&docker, &id, &o, &quiet).await.unwrap();
    assert_eq!(archives(&o.dest).len(), 1);
    assert!(left_in(&o.work).is_empty(), "{:?}", left_in(&o.work));
    assert_eq!(in_container(&docker, &id).await, "");
}

/// A backup cancelled while it copies out (its future dropped, as on Ctrl-C or a timeout)
/// leaves no scratch files; GitLab's copy in the container is removed by the next run.
#[tokio::test]
async fn a_cancelled_backup_is_cleaned_up() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let Some(img) = image("18.5.4").await else {
        return;
    };
    let project = project("backup-cancel");
    let _cleanup = Cleanup::new(&docker, &project).await;
    let id = big_gitlab(&docker, &project, img).await;
    let dir = tempfile::tempdir().unwrap();
    SecretStore::open(&dir.path().join("data")).unwrap();
    let o = options(dir.path(), 1_764_556_245, 2);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let cancel_when_copying = |line: &str| {
        if line.starts_with("copying")
            && let Some(tx) = tx.lock().unwrap().take()
        {
            let _ = tx.send(());
        }
    };
    tokio::select! {
        r = create(&docker, &id, &o, &cancel_when_copying) => panic!("not cancelled: {r:?}"),
        _ = rx => {}
    }
    let left = left_in(&o.work);
    assert!(
        left.iter().all(|p| p == ".pending-gitlab-backup"),
        "only the note of GitLab's copy: {left:?}"
    );
    assert_ne!(
        in_container(&docker, &id).await,
        "",
        "still there until the next run"
    );
    let o = options(dir.path(), 1_764_556_300, 2);
    create(&docker, &id, &o, &quiet).await.unwrap();
    assert_eq!(in_container(&docker, &id).await, "", "both copies gone");
    assert!(left_in(&o.work).is_empty(), "{:?}", left_in(&o.work));
}

/// An archive encrypted to an age recipient, with `access.db` and `audit/`: it is an age file
/// holding no master key; a restore without the identity is refused before GitLab is touched,
/// one with it puts everything back; on a machine without the secrets' master key the
/// restore stops before GitLab is touched and says to put the key back.
#[tokio::test]
async fn encrypted_backup_restores_with_the_identity_and_never_holds_the_master_key() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let Some(img) = image("18.5.4").await else {
        return;
    };
    let project = project("backup-age");
    let _cleanup = Cleanup::new(&docker, &project).await;
    let id = gitlab(&docker, &project, "gitlab", img).await;
    sh(&docker, &id, "echo v1 > /var/opt/gitlab/data/marker").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("autogit.yml"), "gitlab: {}\n").unwrap();
    let data = dir.path().join("data");
    let store = SecretStore::open(&data).unwrap();
    store
        .put(
            "gitlab-admin-token",
            &SecretString::from("glpat-AGE-TEST-TOKEN"),
        )
        .unwrap();
    let master_key = std::fs::read_to_string(store.key_location().path.clone()).unwrap();
    // access.db (a live SQLite database) and the audit directory.
    let access_db = data.join("access.db");
    rusqlite_create(&access_db);
    std::fs::create_dir_all(data.join("audit")).unwrap();
    std::fs::write(data.join("audit/audit-2026-12.jsonl"), "{\"seq\":1}\n").unwrap();
    let access_snap = dir.path().join("access-snap.db");
    sqlite_snapshot(&access_db, &access_snap).unwrap();

    let identity = age::x25519::Identity::generate();
    let mut opts = options(dir.path(), 1_764_556_245, 5);
    opts.local.access_snapshot = Some(access_snap.clone());
    opts.local.audit = Some(data.join("audit"));
    opts.encryption = Encryption::Recipients(vec![identity.to_public().to_string()]);
    let report = create(&docker, &id, &opts, &quiet).await.unwrap();
    assert!(report.encrypted);
    assert!(
        report
            .archive
            .ends_with("autogit-backup-20251201T023045Z-18.5.4.tar.age"),
        "{}",
        report.archive.display()
    );
    let bytes = std::fs::read(&report.archive).unwrap();
    assert!(bytes.starts_with(autogit_core::backup::AGE_MAGIC));
    assert!(!bytes.windows(20).any(|w| w == b"glpat-AGE-TEST-TOKEN"));

    let id_file = dir.path().join("identity.txt");
    std::fs::write(
        &id_file,
        format!("{}\n", ExposeSecret::expose_secret(&identity.to_string())),
    )
    .unwrap();
    // Inside: access.db, audit, the sealed secret, and no master key anywhere.
    let check = tempfile::tempdir().unwrap();
    let x = check.path().join("x");
    let v =
        extract_verified_with(&report.archive, &x, &Decryption::Identity(id_file.clone())).unwrap();
    let names: Vec<&str> = v.manifest.members.iter().map(|m| m.name.as_str()).collect();
    for n in [
        "autogit/access.db",
        "autogit/audit/audit-2026-12.jsonl",
        "autogit/secrets/gitlab-admin-token",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.ends_with(".key")), "{names:?}");
    for m in &v.manifest.members {
        let b = std::fs::read(x.join(&m.name)).unwrap();
        assert!(
            !b.windows(64).any(|w| w == master_key.trim().as_bytes()),
            "{} holds the master key",
            m.name
        );
        assert!(
            !b.windows(20).any(|w| w == b"glpat-AGE-TEST-TOKEN"),
            "{} holds a plaintext secret",
            m.name
        );
    }
    let snap = rusqlite::Connection::open(x.join("autogit/access.db")).unwrap();
    let n: i64 = snap
        .query_row("SELECT count(*) FROM api_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);

    sh(
        &docker,
        &id,
        "echo v2 > /var/opt/gitlab/data/marker && : > /var/log/gitlab/stand-in.log",
    )
    .await;
    // No identity: refused before anything is done.
    let e = restore(
        &docker,
        &id,
        &report.archive,
        &dir.path().join("work"),
        &store,
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, BackupError::Encrypted(_)), "{e}");
    assert!(e.to_string().contains("--identity"), "{e}");
    assert_eq!(
        sh(&docker, &id, &format!("cat {STAND_IN_LOG}"))
            .await
            .trim(),
        ""
    );

    // Another machine: same archive, no master key. Refused before GitLab is touched.
    let elsewhere = tempfile::tempdir().unwrap();
    let other_store = SecretStore::open(&elsewhere.path().join("data")).unwrap();
    let e = restore_with(
        &docker,
        &id,
        &report.archive,
        &elsewhere.path().join("work"),
        &other_store,
        &Decryption::Identity(id_file.clone()),
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, BackupError::Secrets { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("which this machine does not have")
            && text.contains(&other_store.key_location().path.display().to_string())
            && text.contains("The secrets key"),
        "{text}"
    );
    assert!(!text.contains("glpat-AGE"), "{text}");
    assert_eq!(
        sh(&docker, &id, &format!("cat {STAND_IN_LOG}"))
            .await
            .trim(),
        ""
    );
    assert!(
        !other_store.key_location().path.exists(),
        "no new key was made"
    );

    // With the identity, on the machine with the key: restored.
    store
        .put("gitlab-admin-token", &SecretString::from("glpat-after"))
        .unwrap();
    let r = restore_with(
        &docker,
        &id,
        &report.archive,
        &dir.path().join("work"),
        &store,
        &Decryption::Identity(id_file),
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
        store
            .get("gitlab-admin-token")
            .unwrap()
            .unwrap()
            .expose_secret(),
        "glpat-AGE-TEST-TOKEN"
    );
    assert!(r.kept_for_reference.join("autogit/access.db").is_file());
}

fn rusqlite_create(path: &Path) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE api_keys (prefix TEXT, hash TEXT); INSERT INTO api_keys VALUES ('agk_1', 'h1'), ('agk_2', 'h2');",
    )
    .unwrap();
    std::mem::forget(c); // Keep it open, with its WAL, while the snapshot is taken.
}
