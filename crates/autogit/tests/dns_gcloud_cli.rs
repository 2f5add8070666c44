//! `autogit dns plan` and `autogit dns sync` with `DNS_PROVIDER=gcloud`: the real binary,
//! configured only through `.env` and a service-account key file, against the fake Cloud DNS
//! and token endpoint of the drivers' tests (`autogit-drivers/tests/gcloud_fake`, pointed at by
//! `GCP_DNS_ENDPOINT` and the key file's `token_uri`), which verifies every JWT signature.
//! Google Cloud DNS cannot run here; the binary's production client talks HTTP to the fake over
//! loopback.

mod common;
#[path = "../../autogit-drivers/tests/gcloud_fake/mod.rs"]
mod gcloud_fake;

use common::{Run, run_env};
use gcloud_fake::{EMAIL, Fake, KEY_PEM, MANAGED_ZONE, OTHER_KEY_PEM, PROJECT};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ZONE: &str = "example.test";

fn write_env(dir: &Path, fake: &Fake, key: &str) {
    let sa = dir.join("sa.json");
    fake.write_key_file(&sa, EMAIL, key);
    let env = format!(
        "BASE_DOMAIN={ZONE}\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab,grafana\n\
         DNS_PROVIDER=gcloud\nGCP_DNS_ENDPOINT={}\nGCP_PROJECT={PROJECT}\n\
         GCP_MANAGED_ZONE={MANAGED_ZONE}\nGCP_SERVICE_ACCOUNT_FILE={}\n",
        fake.url,
        sa.display()
    );
    fs::write(dir.join(".env"), env).unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
}

async fn dns(dir: &Path, args: &[&str]) -> Run {
    let dir = dir.to_owned();
    let data = dir.join("data");
    let mut all: Vec<String> = vec!["dns".into()];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    all.extend(["--data-dir".into(), data.to_str().unwrap().to_owned()]);
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = all.iter().map(String::as_str).collect();
        run_env(&dir, &a, &[])
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_sync_and_a_second_sync_with_nothing_to_do() {
    let fake = Fake::start(ZONE).await;
    fake.state().pending_polls = 0;
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), &fake, KEY_PEM);

    let plan = dns(d.path(), &["plan", "-o", "json"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let v: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(v["provider"], "gcloud");
    assert_eq!(v["changes"].as_array().unwrap().len(), 4, "{v}");

    let sync = dns(d.path(), &["sync"]).await;
    assert_eq!(sync.code, 0, "{}\n{}", sync.stdout, sync.stderr);
    assert_eq!(
        fake.state().set(&format!("*.{ZONE}"), "A").unwrap().rrdatas,
        ["203.0.113.7"]
    );
    let again = dns(d.path(), &["sync"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(fake.state().changes_received.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_with_the_wrong_key_is_refused() {
    let fake = Fake::start(ZONE).await;
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), &fake, OTHER_KEY_PEM);
    let r = dns(d.path(), &["plan"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("Invalid JWT Signature") && r.stderr.contains("GCP_SERVICE_ACCOUNT_FILE"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("PRIVATE KEY"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_while_syncing_is_read_again_and_left_alone() {
    let fake = Fake::start(ZONE).await;
    fake.state().pending_polls = 0;
    // Someone creates the wildcard between autogit's read and its change.
    fake.state().interfere = Some(gcloud_fake::Set {
        name: format!("*.{ZONE}."),
        kind: "A".into(),
        ttl: 300,
        rrdatas: vec!["198.51.100.9".into()],
    });
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), &fake, KEY_PEM);
    let r = dns(d.path(), &["sync"]).await;
    // Cloud DNS refused the first change (409): read again, the wildcard is now a conflict,
    // the apex is created.
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("reading it again"), "{}", r.stderr);
    assert!(r.stderr.contains("left alone"), "{}", r.stderr);
    let st = fake.state();
    assert_eq!(
        st.set(&format!("*.{ZONE}"), "A").unwrap().rrdatas,
        ["198.51.100.9"]
    );
    assert_eq!(st.set(ZONE, "A").unwrap().rrdatas, ["203.0.113.7"]);
}
