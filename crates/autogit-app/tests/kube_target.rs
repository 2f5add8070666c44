//! The Kubernetes target in-process: `install` by server-side apply and a watch for the
//! rollouts, then `status` and the reconcile loop reading the cluster, with the platform's
//! state machine and repair policy (backoff, budget, flag).
//!
//! No cluster can run on the machines that test autogit (no kubelet, no container runtime for
//! pods): the API server is the fake of `crates/autogit-drivers/tests/kube_support`, which
//! follows the documented server-side apply, list and watch semantics; what the cluster's
//! controllers would do (pods becoming available, failing) the test does by hand. The client
//! and the controller under test are the production ones.

#[path = "../../autogit-drivers/tests/kube_support/mod.rs"]
mod kube_support;
mod support;

use autogit_app::kube::{KubeController, KubeInstall};
use autogit_core::kube_target::{RESTARTED_AT, SPEC_HASH};
use autogit_core::reconcile::Action;
use autogit_drivers::kube::KubeClient;
use autogit_drivers::kube::config;
use kube_support::Fake;
use serde_json::json;
use std::time::Duration;
use support::{bus_at, settings};

/// Three repairs an hour at most, so the budget is reached within the test's hand-driven hour
/// (Grafana's start period and retries space its repairs four minutes apart).
const CONFIG: &str = "gitlab:\n  resources:\n    preset: minimal\nhealth:\n  restart_budget:\n    max: 3\n    window: 1h\n";
const ENV: &str = "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,meilisearch\nMEILI_MASTER_KEY=meili-secret-value\nGF_SECURITY_ADMIN_PASSWORD=grafana-secret-value\n";
const GRAFANA: &str = "/apis/apps/v1/namespaces/autogit/deployments/grafana";

struct Setup {
    fake: Fake,
    k: KubeController,
    clock: autogit_app::ManualClock,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, fake.kubeconfig()).unwrap();
    let s = settings(CONFIG, ENV, &dir.path().join("data"));
    let plan = autogit_app::plan::quiet(&s).unwrap();
    let (bus, clock) = bus_at(1_800_000_000);
    let client = KubeClient::new(config::endpoint(&[kc], Some("fake")).unwrap()).unwrap();
    let k = KubeController::open(s, bus, client, &plan, false).unwrap();
    Setup {
        fake,
        k,
        clock,
        _dir: dir,
    }
}

fn repairs(a: &[Action]) -> Vec<String> {
    a.iter()
        .filter_map(|a| match a {
            Action::Repair { service, how, .. } => Some(format!("{service}:{how:?}")),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn install_applies_everything_in_order_and_waits_for_the_rollouts() {
    let t = setup().await;
    t.fake.state().auto_rollout = true;
    let out =
        t.k.install(Duration::from_secs(30), &|_| {})
            .await
            .expect("install");
    let KubeInstall::Ready { workloads, .. } = out else {
        panic!("{out:?}");
    };
    assert_eq!(workloads, t.k.plan.desired().len());
    assert!(workloads >= 3, "gitlab, grafana, meilisearch at least");
    // Every object of the export is in the cluster, applied by `autogit`, unforced.
    let applies = t.fake.state().applies.clone();
    assert_eq!(applies.len(), t.k.plan.applies.len());
    assert!(applies.iter().all(|(_, m, f)| m == "autogit" && !f));
    for a in &t.k.plan.applies {
        assert!(t.fake.get(&a.path()).is_some(), "{} missing", a.path());
    }
    // The namespace first; workloads after what they mount.
    assert_eq!(applies[0].0, "/api/v1/namespaces/autogit");
    let first_workload = applies
        .iter()
        .position(|(p, _, _)| p.contains("/deployments/") || p.contains("/statefulsets/"))
        .unwrap();
    let last_config = applies
        .iter()
        .rposition(|(p, _, _)| p.contains("/configmaps/") || p.contains("/persistentvolumeclaims/"))
        .unwrap_or(0);
    assert!(last_config < first_workload);
    // The readiness wait watched the workloads (and no Secret was ever sent).
    let requests = t.fake.state().requests.clone();
    assert!(
        requests.iter().any(|r| r.contains("watch=1")),
        "{requests:#?}"
    );
    assert!(!requests.iter().any(|r| r.contains("/secrets")));
    // Each workload carries its service's hash; the reconcile pass recorded them healthy.
    let g = t.fake.get(GRAFANA).unwrap();
    assert!(g["metadata"]["annotations"][SPEC_HASH].is_string());
    let status = t.k.status().await.unwrap();
    for s in status.iter().filter(|s| s.replicas > 0) {
        assert_eq!(s.state.as_deref(), Some("HEALTHY"), "{s:?}");
    }
    // A second install changes nothing in the cluster.
    let rv = t.fake.state().rv;
    t.k.install(Duration::from_secs(30), &|_| {}).await.unwrap();
    assert_eq!(t.fake.state().rv, rv);
    let pass = t.k.reconcile_once().await.unwrap();
    assert!(pass.actions.is_empty(), "{:?}", pass.actions);
}

#[tokio::test]
async fn install_reports_what_did_not_roll_out() {
    let t = setup().await;
    // No controller marks anything available: the wait ends with every workload named.
    let out = t.k.install(Duration::from_secs(1), &|_| {}).await.unwrap();
    let KubeInstall::NotReady(list) = out else {
        panic!("{out:?}");
    };
    assert!(
        list.iter()
            .any(|(s, why)| s == "grafana" && why.contains("controller")),
        "{list:?}"
    );
}

#[tokio::test]
async fn an_unavailable_workload_is_restarted_under_the_repair_policy() {
    let t = setup().await;
    t.fake.state().auto_rollout = true;
    t.k.install(Duration::from_secs(30), &|_| {}).await.unwrap();
    t.fake.state().auto_rollout = false;

    // Its pods fail: the pass repairs by a rollout restart, the restart annotation applied
    // by its own, forced, field manager.
    t.fake.fail(GRAFANA);
    let pass = t.k.reconcile_once().await.unwrap();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(repairs(&pass.actions), ["grafana:Restart"]);
    let g = t.fake.get(GRAFANA).unwrap();
    assert_eq!(
        g["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
        json!(autogit_core::civil::rfc3339_utc(1_800_000_000))
    );
    // autogit's own fields are untouched by the restart's apply.
    assert!(g["metadata"]["annotations"][SPEC_HASH].is_string());
    assert!(g["spec"]["template"]["spec"]["containers"].is_array());
    let last = t.fake.state().applies.last().cloned().unwrap();
    assert_eq!(
        last,
        (GRAFANA.to_owned(), "autogit-restart".to_owned(), true)
    );
    let row = |svc: &str, rows: &[autogit_app::kube::WorkloadStatus]| {
        rows.iter().find(|r| r.service == svc).cloned().unwrap()
    };
    let st = t.k.status().await.unwrap();
    assert_eq!(row("grafana", &st).state.as_deref(), Some("REPAIRING"));
    assert_eq!(row("grafana", &st).restarts, 1);

    // The new pods come up: healthy again.
    t.fake.roll_out(GRAFANA);
    t.clock.advance(5);
    t.k.reconcile_once().await.unwrap();
    let st = t.k.status().await.unwrap();
    assert_eq!(row("grafana", &st).state.as_deref(), Some("HEALTHY"));

    // It keeps failing: restarts back off and stop at the budget with the flag raised.
    let mut restarts = 0;
    let mut flagged = false;
    for _ in 0..40 {
        // The controller rolls the restart out, and the new pods fail too.
        t.fake.roll_out(GRAFANA);
        t.fake.fail(GRAFANA);
        let pass = t.k.reconcile_once().await.unwrap();
        restarts += repairs(&pass.actions).len();
        if pass
            .actions
            .iter()
            .any(|a| matches!(a, Action::Flag { .. }))
        {
            flagged = true;
            break;
        }
        t.clock.advance(120);
    }
    assert!(flagged, "never flagged after {restarts} restarts");
    let st = t.k.status().await.unwrap();
    assert!(row("grafana", &st).flagged);
    assert_eq!(
        restarts, 2,
        "the budget: one repair before the loop, two in it"
    );
    // Flagged: hands off, however long it stays down.
    let before = t.fake.state().applies.len();
    t.clock.advance(7200);
    t.k.reconcile_once().await.unwrap();
    assert_eq!(t.fake.state().applies.len(), before);
    // Cleared: repaired again.
    t.fake.roll_out(GRAFANA);
    t.fake.fail(GRAFANA);
    assert!(t.k.clear_flag("grafana").unwrap());
    let pass = t.k.reconcile_once().await.unwrap();
    assert_eq!(repairs(&pass.actions).len(), 1, "{:?}", pass.actions);
}

#[tokio::test]
async fn deleted_workloads_come_back_and_orphans_go() {
    let t = setup().await;
    t.fake.state().auto_rollout = true;
    t.k.install(Duration::from_secs(30), &|_| {}).await.unwrap();

    // Deleted under autogit: recreated by applying the service's objects again.
    let c = KubeClient::new(config::endpoint(&[t._dir.path().join("kubeconfig")], None).unwrap())
        .unwrap();
    c.delete(GRAFANA).await.unwrap();
    assert!(t.fake.get(GRAFANA).is_none());
    let pass = t.k.reconcile_once().await.unwrap();
    assert_eq!(repairs(&pass.actions), ["grafana:Recreate"]);
    assert!(t.fake.get(GRAFANA).is_some());

    // A workload of the project no service wants (left by an older configuration): deleted.
    let orphan = "/apis/apps/v1/namespaces/autogit/deployments/old-tool";
    c.apply(
        orphan,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "old-tool", "namespace": "autogit",
                "labels": {"app.kubernetes.io/name": "old-tool", "app.kubernetes.io/instance": "autogit", "app.kubernetes.io/managed-by": "autogit"}},
            "spec": {"replicas": 1}}),
        "autogit",
        false,
    )
    .await
    .unwrap();
    // Someone else's workload in the namespace is not autogit's to delete.
    let theirs = "/apis/apps/v1/namespaces/autogit/deployments/theirs";
    c.apply(
        theirs,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "theirs", "namespace": "autogit", "labels": {"app.kubernetes.io/name": "theirs"}},
            "spec": {"replicas": 1}}),
        "kubectl",
        false,
    )
    .await
    .unwrap();
    let pass = t.k.reconcile_once().await.unwrap();
    assert!(
        pass.actions
            .iter()
            .any(|a| matches!(a, Action::RemoveOrphan { service, .. } if service == "old-tool")),
        "{:?}",
        pass.actions
    );
    assert!(t.fake.get(orphan).is_none());
    assert!(t.fake.get(theirs).is_some());
}

#[tokio::test]
async fn a_field_taken_by_hand_is_reported_not_overwritten() {
    let t = setup().await;
    t.fake.state().auto_rollout = true;
    t.k.install(Duration::from_secs(30), &|_| {}).await.unwrap();
    // Someone edits the spec hash annotation (and so owns it): the pass sees a changed spec
    // and applies again, which conflicts; the conflict is the pass's error, named.
    t.fake.update_by(
        "kubectl-edit",
        GRAFANA,
        &json!({"metadata": {"annotations": {SPEC_HASH: "edited"}}}),
    );
    let pass = t.k.reconcile_once().await.unwrap();
    assert!(
        pass.actions
            .iter()
            .any(|a| matches!(a, Action::Recreate { service, .. } if service == "grafana"))
    );
    let (svc, err) = pass.errors.first().cloned().expect("a conflict");
    assert_eq!(svc, "grafana");
    assert!(
        err.contains("kubectl-edit") && err.contains("--force-conflicts"),
        "{err}"
    );
    assert_eq!(
        t.fake.get(GRAFANA).unwrap()["metadata"]["annotations"][SPEC_HASH],
        "edited"
    );
}

#[tokio::test]
async fn the_loop_is_woken_by_the_cluster_and_repairs() {
    let t = setup().await;
    t.fake.state().auto_rollout = true;
    t.k.install(Duration::from_secs(30), &|_| {}).await.unwrap();
    t.fake.state().auto_rollout = false;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let passes = std::sync::atomic::AtomicUsize::new(0);
    let run = t.k.run(
        // An hour between timed passes: only the watch can wake it within the test.
        Duration::from_secs(3600),
        async {
            let _ = stopped.await;
        },
        |_| {
            passes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        },
    );
    let fake = t.fake.clone();
    let check = async move {
        // The first pass has run and the loop waits on its watches.
        tokio::time::sleep(Duration::from_millis(300)).await;
        fake.fail(GRAFANA);
        for _ in 0..100 {
            let g = fake.get(GRAFANA).unwrap();
            if g["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT].is_string() {
                let _ = stop.send(());
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        false
    };
    let (repaired, ()) = tokio::join!(check, run);
    assert!(repaired, "the failure did not wake the loop");
    assert!(passes.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    // Its watches asked for the project's workloads only.
    let requests = t.fake.state().requests.clone();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/deployments?watch=1") && r.contains("labelSelector=")),
        "{requests:#?}"
    );
}
