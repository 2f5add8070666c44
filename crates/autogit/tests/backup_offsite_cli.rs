//! `autogit backup` with `backup.targets` and `autogit restore --from` through the real binary
//! on the real engine (the backup stand-in of `backup_cli.rs`), against a real S3-compatible
//! server (`rclone serve s3`, `autogit_drivers::testing::rclone`) and a real OpenSSH SFTP
//! server in a network namespace (`autogit_drivers::testing::netns`; the binary runs in the
//! lab's client namespace, as `ip netns exec` puts it there): each copy is read back and
//! verified, retention runs on the target, a restore fetches and verifies before it touches
//! GitLab, a corrupted remote copy is refused, and a wrong credential is a clear error.

mod common;

use common::{Down, Run, bin, cmd, docker, finish, have_engine, run_data};
use serde_json::Value;
use std::path::Path;

fn write_config(dir: &Path, project: &str, targets: &str) {
    std::fs::write(
        dir.join("autogit.yml"),
        format!(
            "gitlab:\n  image: autogit-test/gitlab-backup\n  version: \"18.5.4\"\n  ports: {{http: 31480, https: 31481, ssh: 31482}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\nrunners: {{}}\nbackup:\n  retention: 5\n  targets:\n{targets}platform:\n  project: {project}\n"
        ),
    )
    .unwrap();
}

fn run_with(dir: &Path, args: &[&str], env: &[(&str, &str)], netns: Option<&str>) -> Run {
    let data = dir.join("data");
    let mut c = match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.current_dir(dir)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir)
                .env("NO_COLOR", "1")
                .env("AUTOGIT_NO_SERVICE", "1")
                .args(["netns", "exec", ns])
                .arg(bin());
            c
        }
        None => cmd(dir),
    };
    c.args(args).arg("--data-dir").arg(&data);
    for (k, v) in env {
        c.env(k, v);
    }
    finish(c.output().expect("run autogit"))
}

fn marker(c: &str) -> String {
    docker(&["exec", c, "cat", "/var/opt/gitlab/data/marker"])
}

fn set_marker(c: &str, v: &str) {
    docker(&[
        "exec",
        c,
        "sh",
        "-c",
        &format!("mkdir -p /var/opt/gitlab/data && echo {v} > /var/opt/gitlab/data/marker"),
    ]);
}

#[test]
fn backups_go_to_s3_and_sftp_verified_and_restore_from_each() {
    if !have_engine() {
        return;
    }
    let Some(rclone) = autogit_drivers::testing::rclone::rclone_or_skip() else {
        return;
    };
    if !autogit_drivers::testing::netns::lab_available() {
        return;
    }
    let image = autogit_drivers::testing::fake_gitlab_backup_image("18.5.4").unwrap();
    docker(&["tag", &image, "autogit-test/gitlab-backup:18.5.4-ce.0"]);
    let s3 = autogit_drivers::testing::rclone::RcloneS3::start(&rclone, &["backups"])
        .unwrap_or_else(|e| panic!("{e}"));
    let lab = autogit_drivers::testing::netns::SshLab::start(1).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let project = format!("agt-offsite-{}", std::process::id());
    let s3_target = format!(
        "    - {{type: s3, endpoint: \"{}\", bucket: backups, prefix: site/, access_key_env: S3_KEY, secret_key_env: S3_SECRET, keep: 2}}\n",
        s3.endpoint()
    );
    write_config(dir.path(), &project, &s3_target);
    let _down = Down(dir.path().to_owned());
    let r = run_data(
        dir.path(),
        &["install", "--wait", "0", "--no-bootstrap", "-q"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = format!("{project}-gitlab");
    let keys = [
        ("S3_KEY", s3.access_key.as_str()),
        ("S3_SECRET", s3.secret_key.as_str()),
    ];

    // --- S3: three backups (retention keeps 2 there), each read back and verified.
    let mut names = Vec::new();
    for i in 0..3 {
        set_marker(&c, &format!("s3-{i}"));
        let r = run_with(dir.path(), &["backup", "-o", "json"], &keys, None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        let copy = &v["copies"][0];
        assert_eq!(copy["target"], "s3", "{v}");
        let name = copy["copied"]["name"].as_str().unwrap().to_owned();
        let local = v["backup"]["archive"].as_str().unwrap();
        let remote = s3.object_path("backups", &format!("site/{name}"));
        assert_eq!(
            std::fs::read(&remote).unwrap(),
            std::fs::read(local).unwrap()
        );
        names.push(name);
        // Archive names have a one-second resolution.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert!(
        !s3.object_path("backups", &format!("site/{}", names[0]))
            .exists()
    );
    let r = run_with(
        dir.path(),
        &["restore", "--from", "s3", "--list", "-o", "json"],
        &keys,
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let listed: Vec<&str> = v["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [names[1].as_str(), names[2].as_str()]);

    // Restore the middle one from S3 (fetched and verified first).
    set_marker(&c, "changed");
    let r = run_with(
        dir.path(),
        &["restore", "--from", "s3", &names[1], "--yes", "--wait", "0"],
        &keys,
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(marker(&c), "s3-1");
    assert!(r.stderr.contains("verifying its SHA-256"), "{}", r.stderr);

    // A corrupted remote copy is refused before GitLab is touched.
    let remote = s3.object_path("backups", &format!("site/{}", names[2]));
    let mut bytes = std::fs::read(&remote).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&remote, bytes).unwrap();
    set_marker(&c, "untouched");
    let r = run_with(
        dir.path(),
        &["restore", "--from", "s3", "latest", "--yes", "--wait", "0"],
        &keys,
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("is corrupt") && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    assert_eq!(marker(&c), "untouched");

    // A wrong secret: the archive stays here, the command fails and says which variable.
    let r = run_with(
        dir.path(),
        &["backup"],
        &[
            ("S3_KEY", &s3.access_key),
            ("S3_SECRET", "wrong-secret-0815"),
        ],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("credentials were refused") && r.stderr.contains("S3_SECRET"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wrong-secret-0815") && !r.stdout.contains("wrong-secret-0815"));

    // --- SFTP: from the lab's client namespace, the host's key pinned first.
    let remote_dir = tempfile::tempdir().unwrap();
    let host = &lab.hosts[0].addr;
    let sftp_target = format!(
        "    - {{type: sftp, name: nas, host: \"root@{host}\", path: \"{}\", identity: \"{}\"}}\n",
        remote_dir.path().display(),
        lab.identity.display()
    );
    write_config(dir.path(), &project, &sftp_target);
    let ns = Some(lab.client_ns.as_str());
    set_marker(&c, "sftp-0");
    let r = run_with(dir.path(), &["backup"], &[], ns);
    assert_eq!(r.code, 1, "an unpinned host is refused: {}", r.stderr);
    assert!(r.stderr.contains("not trusted"), "{}", r.stderr);
    let r = run_with(dir.path(), &["runner", "trust", host], &[], ns);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run_with(dir.path(), &["backup", "-o", "json"], &[], ns);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let name = v["copies"][0]["copied"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        std::fs::read(remote_dir.path().join(&name)).unwrap(),
        std::fs::read(v["backup"]["archive"].as_str().unwrap()).unwrap()
    );
    set_marker(&c, "changed");
    let r = run_with(
        dir.path(),
        &["restore", "--from", "nas", "latest", "--yes", "--wait", "0"],
        &[],
        ns,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(marker(&c), "sftp-0");

    let victim = remote_dir.path().join(&name);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    set_marker(&c, "untouched");
    let r = run_with(
        dir.path(),
        &["restore", "--from", "nas", &name, "--yes", "--wait", "0"],
        &[],
        ns,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("is corrupt"), "{}", r.stderr);
    assert_eq!(marker(&c), "untouched");
}

/// Without a server: a target that is not configured, and an S3 target whose key variable is
/// not set, are clear errors naming what to fix (and nothing is fetched).
#[test]
fn an_unknown_target_and_an_unset_key_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "agt-offsite-none",
        "    - {type: s3, endpoint: \"http://127.0.0.1:9\", bucket: backups, access_key_env: S3_KEY, secret_key_env: S3_SECRET}\n",
    );
    let r = run_with(
        dir.path(),
        &["restore", "--from", "nowhere", "latest", "--yes"],
        &[],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no backup target `nowhere` in backup.targets (there are: s3)"),
        "{}",
        r.stderr
    );
    let r = run_with(
        dir.path(),
        &["restore", "--from", "s3", "--list"],
        &[("S3_KEY", "id")],
        None,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("S3_SECRET is not set"), "{}", r.stderr);
}
