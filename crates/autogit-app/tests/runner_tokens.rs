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
