//! `autogit backup` and `autogit restore` through the real binary on the real engine. The
//! platform runs the backup stand-in (`testing::fake_gitlab_backup_image`: `gitlab-backup`,
//! `gitlab-ctl`, `/etc/gitlab` laid out as in GitLab's image), since GitLab cannot run here.

mod common;

use common::{Down, cmd, docker, finish, have_engine, run_data};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn backup_then_restore_through_the_binary() {
    if !have_engine() {
        return;
    }
    let image = autogit_drivers::testing::fake_gitlab_backup_image("18.5.4").unwrap();
    // The planner derives `<image>:<version>-ce.0`.
    docker(&["tag", &image, "autogit-test/gitlab-backup:18.5.4-ce.0"]);
    let dir = tempfile::tempdir().unwrap();
    let project = format!("agt-backupcli-{}", std::process::id());
    std::fs::write(
        dir.path().join("autogit.yml"),
        format!(
            "gitlab:\n  image: autogit-test/gitlab-backup\n  version: \"18.5.4\"\n  ports: {{http: 31380, https: 31381, ssh: 31382}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\nrunners: {{}}\nbackup: {{retention: 2}}\nplatform:\n  project: {project}\n"
        ),
    )
    .unwrap();
    let _down = Down(dir.path().to_owned());
    let r = run_data(
        dir.path(),
        &["install", "--wait", "0", "--no-bootstrap", "-q"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = format!("{project}-gitlab");
    docker(&[
        "exec",
        &c,
        "sh",
        "-c",
        "mkdir -p /var/opt/gitlab/data && echo before > /var/opt/gitlab/data/marker",
    ]);

    let r = run_data(dir.path(), &["backup", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let archive = v["backup"]["archive"].as_str().unwrap().to_owned();
    assert!(archive.starts_with(dir.path().join("data/backups").to_str().unwrap()));
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        r.stderr.contains("gitlab-backup create"),
        "progress: {}",
        r.stderr
    );

    // A restore test of it: a scratch GitLab comes up from the archive, the running one is
    // untouched, the scratch and its volumes are gone afterwards, and `diagnose` knows.
    let r = run_data(
        dir.path(),
        &["restore", "--test", "latest", "--wait", "60s", "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["restore_test"]["ok"], true, "{v}");
    let name = Path::new(&archive).file_name().unwrap().to_str().unwrap();
    assert_eq!(v["restore_test"]["archive"], name, "{v}");
    assert!(r.stderr.contains("scratch GitLab"), "{}", r.stderr);
    let scratch = format!("{project}-restore-test");
    assert_eq!(
        docker(&["ps", "-a", "--filter", &format!("name=^{scratch}$"), "-q"]),
        "",
        "the scratch container is removed"
    );
    assert_eq!(
        docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={project}_restore-test")
        ]),
        "",
        "its volumes are removed"
    );
    let stand_in_log = docker(&["exec", &c, "cat", "/var/log/gitlab/stand-in.log"]);
    assert!(
        !stand_in_log.contains("gitlab-backup restore"),
        "the running GitLab was not restored into: {stand_in_log}"
    );
    let r = run_data(dir.path(), &["diagnose", "-o", "json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "backup.restore_test")
        .cloned()
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(check["status"], "ok", "{check}");

    // An archive whose data does not come up: the test fails, says why, diagnose fails it.
    docker(&[
        "exec",
        &c,
        "sh",
        "-c",
        "touch /var/opt/gitlab/data/stand-in-broken",
    ]);
    let r = run_data(dir.path(), &["backup", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let broken: Value = serde_json::from_str(&r.stdout).unwrap();
    let broken = broken["backup"]["archive"].as_str().unwrap().to_owned();
    let r = run_data(
        dir.path(),
        &["restore", "--test", &broken, "--wait", "10s", "-o", "json"],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["restore_test"]["ok"], false, "{v}");
    assert!(
        v["restore_test"]["error"]
            .as_str()
            .unwrap()
            .contains("after the restore"),
        "{v}"
    );
    let r = run_data(dir.path(), &["diagnose", "-o", "json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "backup.restore_test")
        .cloned()
        .unwrap();
    assert_eq!(check["status"], "fail", "{check}");
    docker(&[
        "exec",
        &c,
        "sh",
        "-c",
        "rm -f /var/opt/gitlab/data/stand-in-broken",
    ]);
    std::fs::remove_file(&broken).unwrap();

    docker(&[
        "exec",
        &c,
        "sh",
        "-c",
        "echo after > /var/opt/gitlab/data/marker",
    ]);
    // Without --yes and without a terminal, nothing happens.
    let out = cmd(dir.path())
        .args(["restore", &archive, "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let r = finish(out);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    assert_eq!(
        docker(&["exec", &c, "cat", "/var/opt/gitlab/data/marker"]),
        "after"
    );

    let r = run_data(
        dir.path(),
        &["restore", &archive, "--yes", "--wait", "0", "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["restore"]["gitlab_version"], "18.5.4");
    assert_eq!(
        docker(&["exec", &c, "cat", "/var/opt/gitlab/data/marker"]),
        "before"
    );

    // `gitlab status` names the last backup (GitLab's API is not there: exit 1, JSON still).
    let r = run_data(
        dir.path(),
        &[
            "gitlab",
            "status",
            "--url",
            "http://127.0.0.1:9",
            "-o",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let name = Path::new(&archive).file_name().unwrap().to_str().unwrap();
    assert_eq!(v["last_backup"]["archive"], name, "{}", r.stdout);
    // `status gitlab` shows the same GitLab table, last backup included.
    let r = run_data(dir.path(), &["status", "gitlab"]);
    assert!(
        r.stdout.contains("last backup") && r.stdout.contains(name),
        "{}",
        r.stdout
    );

    // A damaged archive is refused before the container is touched.
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    let bad = dir.path().join("damaged.tar");
    std::fs::write(&bad, &bytes).unwrap();
    docker(&["exec", &c, "sh", "-c", ": > /var/log/gitlab/stand-in.log"]);
    let r = run_data(
        dir.path(),
        &["restore", bad.to_str().unwrap(), "--yes", "--wait", "0"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("restore failed"), "{}", r.stderr);
    assert_eq!(
        docker(&["exec", &c, "cat", "/var/log/gitlab/stand-in.log"]),
        "",
        "nothing may run in GitLab for a damaged archive"
    );

    // Zip-slip: a member that climbs out of the extraction directory, and a link to /etc.
    for (name, kind, link) in [
        ("../../escaped-by-restore", b'0', ""),
        ("gitlab/evil-link", b'2', "/etc"),
    ] {
        let mut tar = Vec::new();
        raw_entry(&mut tar, name, kind, link, b"evil");
        tar.extend_from_slice(&[0u8; 1024]);
        let hostile = dir.path().join("hostile.tar");
        std::fs::write(&hostile, tar).unwrap();
        let r = run_data(
            dir.path(),
            &["restore", hostile.to_str().unwrap(), "--yes", "--wait", "0"],
        );
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains("refusing member"), "{}", r.stderr);
        assert!(!dir.path().join("escaped-by-restore").exists());
        assert!(!dir.path().join("data/escaped-by-restore").exists());
        assert_eq!(
            docker(&["exec", &c, "cat", "/var/log/gitlab/stand-in.log"]),
            "",
            "nothing may run in GitLab for a hostile archive"
        );
    }

    encrypted_backups(dir.path(), &c);
}

/// `backup --encrypt-to` writes an age file (`.tar.age`) that holds no master key; `restore`
/// without `--identity` refuses it before GitLab is touched; with it, restores.
fn encrypted_backups(dir: &Path, c: &str) {
    use age::secrecy::ExposeSecret;
    let data = dir.join("data");
    autogit_drivers::secrets::SecretStore::open_with_key(
        &data,
        autogit_drivers::secrets::KeyLocation::resolve(&data, &|_| None),
    )
    .unwrap()
    .put(
        "gitlab-admin-token",
        &autogit_drivers::secrets::SecretString::from("glpat-cli-age"),
    )
    .unwrap();
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let r = run_data(dir, &["backup", "--encrypt-to", &recipient, "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["backup"]["encrypted"], true);
    let archive = v["backup"]["archive"].as_str().unwrap().to_owned();
    assert!(archive.ends_with(".tar.age"), "{archive}");
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let key = std::fs::read_to_string(dir.join("data.key"))
        .expect("the secrets key, next to the data dir");
    assert!(!bytes.windows(64).any(|w| w == key.trim().as_bytes()));

    docker(&[
        "exec",
        c,
        "sh",
        "-c",
        "echo changed > /var/opt/gitlab/data/marker && : > /var/log/gitlab/stand-in.log",
    ]);
    let r = run_data(dir, &["restore", &archive, "--yes", "--wait", "0"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("is encrypted") && r.stderr.contains("--identity"),
        "{}",
        r.stderr
    );
    assert_eq!(
        docker(&["exec", c, "cat", "/var/log/gitlab/stand-in.log"]),
        ""
    );

    let id_file = dir.join("backup-identity.txt");
    std::fs::write(
        &id_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    let r = run_data(
        dir,
        &[
            "restore",
            &archive,
            "--identity",
            id_file.to_str().unwrap(),
            "--yes",
            "--wait",
            "0",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        docker(&["exec", c, "cat", "/var/opt/gitlab/data/marker"]),
        "before"
    );

    // A passphrase file others may read is refused before anything runs.
    let pass = dir.join("pass.txt");
    std::fs::write(&pass, "correct horse\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = run_data(
        dir,
        &["backup", "--passphrase-file", pass.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    assert!(!r.stderr.contains("correct horse"));
    // A bad recipient is refused with its text.
    let r = run_data(dir, &["backup", "--encrypt-to", "age1nope"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("age1nope"), "{}", r.stderr);
}

/// A raw ustar header with any name (tar libraries refuse to write hostile ones).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}
