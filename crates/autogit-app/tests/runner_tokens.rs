//! Which GitLab token the runner workflows use (`core::runner::token_for`): the autoscaler's
//! instance-wide job listing needs an administrator, and with only the `ci` service account's
//! token stored it says so instead of using that token. In-process; no GitLab is contacted
//! (the client is refused before any request).

mod support;

use autogit_app::runners::RunnerController;
use autogit_drivers::gitlab::bootstrap::account_token_secret;
use autogit_drivers::secrets::{SecretStore, SecretString};
use autogit_drivers::state::{RegistrationRow, Store};
use std::sync::Arc;

#[tokio::test]
async fn the_job_listing_says_why_it_needs_the_admin_token() {
    let data = tempfile::tempdir().unwrap();
    let settings = support::settings(
        "runners:\n  cpu:\n    - name: r1\n      host: local\n",
        "",
        data.path(),
    );
    SecretStore::open(data.path())
        .unwrap()
        .put(
            &account_token_secret("ci"),
            &SecretString::from("glpat-ci-0123456789abcdef"),
        )
        .unwrap();
    Store::open(&data.path().join("state.db"))
        .unwrap()
        .set_registration(&RegistrationRow {
            name: "r1".into(),
            host: "local".into(),
            runner_id: 3,
            secret: "gitlab-runner-3-token".into(),
            state: "registered".into(),
            at: 0,
            message: String::new(),
        })
        .unwrap();
    let (bus, clock) = support::bus_at(1_764_000_000);
    let runners = RunnerController::new(settings, bus, Arc::new(clock));
    let e = runners
        .autoscale_pass("http://127.0.0.1:9")
        .await
        .unwrap_err();
    assert!(
        e.contains("no admin token stored")
            && e.contains("only an administrator sees the jobs of every project"),
        "{e}"
    );
    assert!(!e.contains("glpat-ci"), "{e}");
}

/// What the dashboard's runner table shows: each registered runner, CPU or GPU, and for an
/// idle on-demand runner when its cooldown stops it (the autoscale pass's idle record).
#[test]
fn on_demand_rows_come_from_the_registrations_and_the_idle_record() {
    let data = tempfile::tempdir().unwrap();
    let settings = support::settings(
        "runners:\n  mode: on-demand\n  cooldown: 10m\n  cpu:\n    - name: r1\n      host: local\n  gpu:\n    - name: g1\n      host: local\n    - name: g2\n      host: local\n",
        "",
        data.path(),
    );
    let store = Store::open(&data.path().join("state.db")).unwrap();
    for (name, state) in [("r1", "registered"), ("g1", "registered"), ("g2", "token")] {
        store
            .set_registration(&RegistrationRow {
                name: name.into(),
                host: "local".into(),
                runner_id: 3,
                secret: format!("gitlab-runner-{name}-token"),
                state: state.into(),
                at: 0,
                message: String::new(),
            })
            .unwrap();
    }
    std::fs::create_dir_all(data.path().join("state")).unwrap();
    std::fs::write(
        data.path().join("state/runner-idle.json"),
        r#"{"g1": 1000}"#,
    )
    .unwrap();
    let (bus, clock) = support::bus_at(1_100);
    let rows = RunnerController::new(settings, bus, Arc::new(clock))
        .on_demand()
        .unwrap();
    assert_eq!(rows.len(), 2, "only registered runners: {rows:?}");
    let g1 = rows.iter().find(|r| r.runner == "g1").unwrap();
    assert!(g1.gpu && g1.on_demand);
    assert_eq!((g1.idle_since, g1.stops_at), (Some(1000), Some(1600)));
    let r1 = rows.iter().find(|r| r.runner == "r1").unwrap();
    assert!(!r1.gpu);
    assert_eq!((r1.idle_since, r1.stops_at), (None, None));
}
