//! `autogit upgrade` through the real binary on the real engine, with stand-in GitLab images
//! for three versions (`testing::fake_gitlab_image`: health endpoint, `gitlab-backup`,
//! `gitlab-ctl`, and a `gitlab-rails` that reports background migrations finishing), since
//! GitLab itself cannot run here.

mod common;

use common::{Down, docker, have_engine, run_data};
use serde_json::Value;

#[test]
fn upgrade_goes_through_each_required_stop_with_a_backup_before_each() {
    if !have_engine() {
        return;
    }
    for v in ["17.11.7", "18.2.8", "18.5.4"] {
        autogit_drivers::testing::fake_gitlab_image(v, &[]).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let project = format!("agt-upgrade-{}", std::process::id());
    let config = format!(
        "# my platform\ngitlab:\n  image: autogit-test/gitlab-ce\n  version: \"17.11.7\"  # pinned by hand\n  ports: {{http: 31480, https: 31481, ssh: 31482}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\n  start_period: 3s\nrunners: {{}}\nhealth:\n  check_interval: 1s\n  timeout: 1s\n  failure_threshold: 1\nplatform:\n  project: {project}\n"
    );
    std::fs::write(dir.path().join("autogit.yml"), &config).unwrap();
    let _down = Down(dir.path().to_owned());
    let r = run_data(
        dir.path(),
        &["install", "--wait", "60s", "--no-bootstrap", "-q"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = format!("{project}-gitlab");
    docker(&[
        "exec",
        &c,
        "sh",
        "-c",
        "echo kept > /var/opt/gitlab/data/marker",
    ]);

    // The plan: one required stop, then the target.
    let r = run_data(
        dir.path(),
        &["upgrade", "--to", "18.5.4", "--dry-run", "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["from"], "17.11.7");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["18.2.8", "18.5.4"]);

    let r = run_data(
        dir.path(),
        &[
            "upgrade", "--to", "18.5.4", "--yes", "--wait", "60s", "--poll", "1s", "-o", "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["upgraded"]["steps"],
        serde_json::json!(["18.2.8", "18.5.4"])
    );
    assert_eq!(
        docker(&[
            "exec",
            &c,
            "cat",
            "/opt/gitlab/embedded/service/gitlab-rails/VERSION"
        ]),
        "18.5.4"
    );
    assert_eq!(
        docker(&["exec", &c, "cat", "/var/opt/gitlab/data/marker"]),
        "kept"
    );
    assert!(
        r.stderr.contains("background migration(s) still running"),
        "{}",
        r.stderr
    );
    // autogit.yml now says 18.5.4, and nothing else changed.
    let now = std::fs::read_to_string(dir.path().join("autogit.yml")).unwrap();
    assert_eq!(now, config.replace("\"17.11.7\"", "\"18.5.4\""));
    // One backup before each step, of the version running then.
    let mut backups: Vec<String> = std::fs::read_dir(dir.path().join("data/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    backups.sort();
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(backups[0].ends_with("-17.11.7.tar") || backups[1].ends_with("-17.11.7.tar"));
    assert!(
        backups.iter().any(|b| b.ends_with("-18.2.8.tar")),
        "{backups:?}"
    );

    // Downgrades are refused before anything happens.
    let r = run_data(dir.path(), &["upgrade", "--to", "18.2.8", "--yes"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot be downgraded"), "{}", r.stderr);
}
