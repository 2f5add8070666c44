//! `install`, `status` and `reconcile` with `--target kubernetes` through the real binary.
//!
//! No Kubernetes cluster can run on the machines that test autogit (no kubelet, no container
//! runtime for pods): the binary talks to the in-process fake API server of
//! `crates/autogit-drivers/tests/kube_support`, which follows the documented server-side
//! apply (field managers, conflicts, force), list and watch semantics, found through a
//! kubeconfig in `KUBECONFIG` as kubectl would find it. The fake's `auto_rollout` plays the
//! cluster's controllers (a workload's pods become available after each change).

mod common;
#[path = "../../autogit-drivers/tests/kube_support/mod.rs"]
mod kube_support;

use common::*;
use kube_support::Fake;
use serde_json::{Value, json};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ENV: &str = "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,meilisearch\nMEILI_MASTER_KEY=meili-secret-value\nGF_SECURITY_ADMIN_PASSWORD=grafana-secret-value\n";
const GRAFANA: &str = "/apis/apps/v1/namespaces/autogit/deployments/grafana";

fn kube(dir: &Path, args: &[&str]) -> Run {
    let data = dir.join("data");
    let kc = dir.join("kubeconfig");
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--data-dir", data.to_str().unwrap()]);
    run_env(dir, &a, &[("KUBECONFIG", kc.to_str().unwrap())])
}

fn setup(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, Fake) {
    let fake = rt.block_on(Fake::start());
    fake.state().auto_rollout = true;
    let d = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("autogit.yml"),
        "gitlab:\n  resources:\n    preset: minimal\n",
    )
    .unwrap();
    fs::write(d.path().join(".env"), ENV).unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(d.path().join("kubeconfig"), fake.kubeconfig()).unwrap();
    (d, fake)
}

#[test]
fn install_status_and_reconcile_on_a_cluster() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, fake) = setup(&rt);
    let r = kube(
        d.path(),
        &[
            "install",
            "--target",
            "kubernetes",
            "--context",
            "fake",
            "--wait",
            "60s",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("applied autogit/Deployment/grafana"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("grafana rolled out"), "{}", r.stderr);
    assert!(r.stderr.contains("installed: "), "{}", r.stderr);
    // No engine was touched: nothing in the engine's state store.
    assert!(!d.path().join("data/state.db").exists());
    assert!(fake.get(GRAFANA).is_some());
    // The secrets' values never reach the cluster (they are referenced: secretKeyRef).
    let applied: Vec<Value> = fake
        .state()
        .objects
        .values()
        .map(|s| s.object.clone())
        .collect();
    let text = serde_json::to_string(&applied).unwrap();
    assert!(!text.contains("meili-secret-value") && !text.contains("grafana-secret-value"));

    let r = kube(
        d.path(),
        &["status", "--target", "kubernetes", "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["context"], "fake");
    let services = v["services"].as_array().unwrap();
    assert!(services.len() >= 3);
    for s in services.iter().filter(|s| s["replicas"] != 0) {
        assert_eq!(s["state"], "HEALTHY", "{s}");
        assert_eq!(s["rollout"], json!({"state": "complete"}), "{s}");
    }
    let r = kube(d.path(), &["status", "grafana", "--target", "kubernetes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Deployment/grafana") && r.stdout.contains("HEALTHY"),
        "{}",
        r.stdout
    );

    let r = kube(d.path(), &["reconcile", "--target", "kubernetes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("everything matches the plan"),
        "{}",
        r.stderr
    );

    // Its pods fail: one pass restarts it (the restart annotation, by its own manager).
    fake.state().auto_rollout = false;
    fake.fail(GRAFANA);
    let r = kube(
        d.path(),
        &["reconcile", "--target", "kubernetes", "-o", "json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "repair" && a["service"] == "grafana" && a["how"] == "restart"),
        "{v}"
    );
    let g = fake.get(GRAFANA).unwrap();
    assert!(
        g["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    let r = kube(
        d.path(),
        &["status", "grafana", "--target", "kubernetes", "-o", "json"],
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["services"][0]["state"], "REPAIRING", "{v}");
    assert_eq!(v["services"][0]["restarts"], 1, "{v}");
}

#[test]
fn conflicts_stop_the_install_until_forced() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, fake) = setup(&rt);
    let r = kube(
        d.path(),
        &["install", "--target", "kubernetes", "--wait", "0"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("context fake"), "{}", r.stderr);
    // Someone scales Grafana by hand: the next install names the field and its manager.
    fake.update_by("kubectl", GRAFANA, &json!({"spec": {"replicas": 3}}));
    let r = kube(
        d.path(),
        &["install", "--target", "kubernetes", "--wait", "0"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(".spec.replicas")
            && r.stderr.contains("kubectl")
            && r.stderr.contains("--force-conflicts"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.get(GRAFANA).unwrap()["spec"]["replicas"], 3);
    let r = kube(
        d.path(),
        &[
            "install",
            "--target",
            "kubernetes",
            "--wait",
            "0",
            "--force-conflicts",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fake.get(GRAFANA).unwrap()["spec"]["replicas"], 1);
}

#[test]
fn a_wrong_context_or_kubeconfig_says_what_to_do() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, _fake) = setup(&rt);
    let r = kube(
        d.path(),
        &["install", "--target", "kubernetes", "--context", "prod"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("context `prod`") && r.stderr.contains("contexts there: fake, other"),
        "{}",
        r.stderr
    );
    let r = kube(
        d.path(),
        &["status", "--target", "kubernetes", "--context", "other"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("refused the credentials of context `other`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("not-the-token"));
    // A context without the target: refused, not ignored.
    let r = kube(d.path(), &["status", "--context", "fake"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("add --target kubernetes"), "{}", r.stderr);
    // No KUBECONFIG and no ~/.kube/config.
    let r = run_data(d.path(), &["reconcile", "--target", "kubernetes"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(".kube/config") && r.stderr.contains("KUBECONFIG"),
        "{}",
        r.stderr
    );
}

/// `daemon --target kubernetes`: the loop repairs a failed workload without being asked, the
/// scheduled mirror syncs run beside it (they need no engine), and it stops on SIGTERM with
/// status 0. Its output goes to target/test-logs.
#[test]
fn the_daemon_repairs_on_the_cluster_and_stops_on_sigterm() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d, fake) = setup(&rt);
    let r = kube(
        d.path(),
        &["install", "--target", "kubernetes", "--wait", "60s"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    fake.state().auto_rollout = false;
    // A mirror due every minute (its source is nowhere: the sync starts, then fails).
    fs::write(
        d.path().join("autogit.yml"),
        "gitlab:\n  resources:\n    preset: minimal\nmirroring:\n  enabled: true\n  schedule: \"* * * * *\"\n  target_url_template: \"git://nowhere.invalid/{path}.git\"\n  sources:\n    git:\n      - https://nowhere.invalid/none.git\n",
    )
    .unwrap();
    let log = test_log_dir().join("kube-cli-daemon.log");
    let out = fs::File::create(&log).unwrap();
    let mut c = cmd(d.path());
    c.args([
        "daemon",
        "--target",
        "kubernetes",
        "--data-dir",
        d.path().join("data").to_str().unwrap(),
    ])
    .env("KUBECONFIG", d.path().join("kubeconfig"))
    .stdout(out.try_clone().unwrap())
    .stderr(out);
    let mut child = KillOnDrop(c.spawn().expect("start the daemon"));
    // Its first pass, then the failure.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fake.fail(GRAFANA);
    let mut repaired = false;
    for _ in 0..100 {
        let g = fake.get(GRAFANA).unwrap();
        if g["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
        {
            repaired = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = || fs::read_to_string(&log).unwrap_or_default();
    assert!(repaired, "not repaired:\n{}", text());
    for _ in 0..100 {
        if text().contains("mirror_sync_started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        text().contains("mirror_sync_started"),
        "the mirror loop did not run:\n{}",
        text()
    );
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", text());
    assert!(
        text().contains("reconciling namespace autogit of context fake"),
        "{}",
        text()
    );
}
