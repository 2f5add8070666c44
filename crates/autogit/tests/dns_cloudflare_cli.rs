//! `autogit dns plan` and `autogit dns sync` with `DNS_PROVIDER=cloudflare`: the real binary,
//! configured only through `.env`, against the fake Cloudflare API of the drivers' tests
//! (`autogit-drivers/tests/cloudflare_fake`, pointed at by `CLOUDFLARE_API_URL`). Cloudflare
//! cannot run here; the binary's production client talks HTTP to the fake over loopback.

#[path = "../../autogit-drivers/tests/cloudflare_fake/mod.rs"]
mod cloudflare_fake;
mod common;

use cloudflare_fake::{Fake, TOKEN};
use common::{Run, run_env};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ZONE: &str = "example.test";

fn write_env(dir: &Path, fake: &Fake, token_line: &str) {
    let env = format!(
        "BASE_DOMAIN={ZONE}\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab,grafana\n\
         DNS_PROVIDER=cloudflare\nCLOUDFLARE_API_URL={}\n{token_line}\n",
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
    let fake = Fake::start(&[ZONE]).await;
    fake.state().max_per_page = 5;
    fake.state().add(ZONE, "MX", ZONE, "mail.example.test", 300);
    let d = tempfile::tempdir().unwrap();
    // The token from a file, as Docker/systemd credentials give it.
    let token_file = d.path().join("cf.token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    write_env(
        d.path(),
        &fake,
        &format!("CLOUDFLARE_API_TOKEN_FILE={}", token_file.display()),
    );

    let plan = json(&dns(d.path(), &["plan", "-o", "json"]).await);
    assert_eq!(plan["provider"], "cloudflare");
    assert_eq!(plan["in_sync"], false, "{plan}");
    assert_eq!(plan["changes"].as_array().unwrap().len(), 4, "{plan}");
    assert_eq!(fake.state().writes(), 0, "plan wrote");

    let sync = json(&dns(d.path(), &["sync", "-o", "json"]).await);
    assert_eq!(sync["provider"], "cloudflare");
    assert_eq!(sync["zone"], ZONE);
    assert_eq!(sync["in_sync"], true, "{sync}");
    assert_eq!(sync["applied"].as_array().unwrap().len(), 4, "{sync}");
    let all = fake.state().all();
    assert!(
        all.contains(&("A".into(), format!("*.{ZONE}"), "203.0.113.7".into())),
        "{all:?}"
    );
    assert!(all.contains(&("MX".into(), ZONE.into(), "mail.example.test".into())));
    assert_eq!(all.len(), 5, "{all:?}");

    let again = dns(d.path(), &["sync"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_and_a_foreign_record_are_reported() {
    let fake = Fake::start(&[ZONE]).await;
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), &fake, "CLOUDFLARE_API_TOKEN=not-the-token");
    let r = dns(d.path(), &["plan"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("Cloudflare rejected the credentials")
            && r.stderr.contains("CLOUDFLARE_API_TOKEN")
            && !r.stderr.contains("not-the-token"),
        "{}",
        r.stderr
    );

    // A record autogit does not own at a desired name: left alone, exit 1.
    fake.state().add(ZONE, "A", ZONE, "198.51.100.9", 300);
    write_env(d.path(), &fake, &format!("CLOUDFLARE_API_TOKEN={TOKEN}"));
    let r = dns(d.path(), &["sync"]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("left alone"), "{}", r.stderr);
    assert!(
        fake.state()
            .all()
            .contains(&("A".into(), ZONE.into(), "198.51.100.9".into()))
    );
    // The wildcard was still created.
    assert!(
        fake.state()
            .all()
            .contains(&("A".into(), format!("*.{ZONE}"), "203.0.113.7".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_services_are_synced_proxied_and_a_proxy_turned_off_by_hand_is_drift() {
    let fake = Fake::start(&[ZONE]).await;
    let d = tempfile::tempdir().unwrap();
    write_env(
        d.path(),
        &fake,
        &format!("CLOUDFLARE_API_TOKEN={TOKEN}\nCLOUDFLARE_PROXIED=grafana"),
    );
    let sync = json(&dns(d.path(), &["sync", "-o", "json"]).await);
    assert_eq!(sync["in_sync"], true, "{sync}");
    let grafana = format!("grafana.{ZONE}");
    let proxied: Vec<(String, u64)> = fake
        .state()
        .records
        .iter()
        .filter(|r| r.proxied)
        .map(|r| (r.name.clone(), r.ttl))
        .collect();
    assert_eq!(proxied, [(grafana.clone(), 1)]);

    // Someone turns the proxy off in the dashboard: `dns plan` shows the update, exit 0.
    for r in fake
        .state()
        .records
        .iter_mut()
        .filter(|r| r.name == grafana)
    {
        if r.kind == "A" {
            r.proxied = false;
            r.ttl = 300;
        }
    }
    let plan = dns(d.path(), &["plan"]).await;
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains(&grafana)
            && plan.stdout.contains("300 → 1")
            && plan.stdout.contains("203.0.113.7 (direct → proxied)"),
        "{}",
        plan.stdout
    );
    let plan = json(&dns(d.path(), &["plan", "-o", "json"]).await);
    assert_eq!(plan["changes"][0]["to"]["proxied"], true, "{plan}");

    // GitLab cannot be proxied: refused before anything is asked of Cloudflare.
    let before = fake.state().requests.len();
    write_env(
        d.path(),
        &fake,
        &format!("CLOUDFLARE_API_TOKEN={TOKEN}\nCLOUDFLARE_PROXIED=gitlab"),
    );
    let r = dns(d.path(), &["plan"]).await;
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("GitLab SSH cannot be proxied")
            && r.stderr.contains("CLOUDFLARE_PROXIED"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.state().requests.len(), before);
}
