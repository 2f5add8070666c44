//! `autogit dns plan` and `autogit dns sync` with `DNS_PROVIDER=route53`: the real binary,
//! configured only through `.env`, against the fake Route 53 of the drivers' tests
//! (`autogit-drivers/tests/route53_fake`, pointed at by `AWS_ROUTE53_ENDPOINT`), which checks
//! every SigV4 signature. Route 53 cannot run here; the binary's production client talks HTTP
//! to the fake over loopback.

mod common;
#[path = "../../autogit-drivers/tests/route53_fake/mod.rs"]
mod route53_fake;

use common::{Run, run_env};
use route53_fake::{ACCESS_KEY, Fake, SECRET_KEY, ZONE_ID};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ZONE: &str = "example.test";

fn write_env(dir: &Path, fake: &Fake, secret: &str) {
    let env = format!(
        "BASE_DOMAIN={ZONE}\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab,grafana\n\
         DNS_PROVIDER=route53\nAWS_ROUTE53_ENDPOINT={}\nAWS_ACCESS_KEY_ID={ACCESS_KEY}\n\
         AWS_SECRET_ACCESS_KEY={secret}\nAWS_HOSTED_ZONE_ID={ZONE_ID}\n",
        fake.url
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

fn json(r: &Run) -> serde_json::Value {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_sync_and_a_second_sync_with_nothing_to_do() {
    let fake = Fake::start(ZONE).await;
    fake.state().pending_polls = 0;
    fake.state().max_items = 2;
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), &fake, SECRET_KEY);

    let plan = json(&dns(d.path(), &["plan", "-o", "json"]).await);
    assert_eq!(plan["provider"], "route53");
    assert_eq!(plan["changes"].as_array().unwrap().len(), 4, "{plan}");
    assert!(fake.state().batches.is_empty(), "plan wrote");

    let sync = json(&dns(d.path(), &["sync", "-o", "json"]).await);
    assert_eq!(sync["provider"], "route53");
    assert_eq!(sync["in_sync"], true, "{sync}");
    assert_eq!(fake.state().batches.len(), 1);
    assert_eq!(
        fake.state().set(&format!("*.{ZONE}"), "A").unwrap().values,
        ["203.0.113.7"]
    );

    let again = dns(d.path(), &["sync"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(fake.state().batches.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_key_is_refused_by_signature() {
    let fake = Fake::start(ZONE).await;
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), &fake, "wrong-secret-key");
    let r = dns(d.path(), &["plan"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("SignatureDoesNotMatch")
            && r.stderr.contains("AWS_SECRET_ACCESS_KEY")
            && !r.stderr.contains("wrong-secret-key"),
        "{}",
        r.stderr
    );
}
