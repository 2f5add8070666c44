//! `autogit dns plan` and `autogit dns sync`: the real binary against a real BIND 9
//! (`autogit_drivers::testing::bind`), configured only through `.env` as a user would. Without
//! `named` the BIND cases say "skipping" and pass, unless `AUTOGIT_REQUIRE_TOOLS` is set.

mod common;
use autogit_core::dns::RecordType;
use autogit_drivers::dns::rfc2136::Rfc2136;
use autogit_drivers::testing::bind::{Bind, KEY_NAME, TestZone, free_port, named_or_skip};
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ZONE: &str = "example.test";

fn start(records: &str) -> Option<Bind> {
    let named = named_or_skip()?;
    Some(Bind::start(&named, &[TestZone::new(ZONE, records)]).unwrap_or_else(|e| panic!("{e}")))
}

/// A `.env` for rfc2136 against `server`, plus `extra` lines.
fn write_env(dir: &Path, server: &str, extra: &str) {
    let env = format!(
        "BASE_DOMAIN={ZONE}\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab,grafana\n\
         DNS_PROVIDER=rfc2136\nRFC2136_SERVER={server}\nRFC2136_TSIG_KEY_NAME={KEY_NAME}\n{extra}"
    );
    fs::write(dir.join(".env"), env).unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn dns(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let data = dir.join("data");
    let mut all = vec!["dns"];
    all.extend_from_slice(args);
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run_env(dir, &all, env)
}

fn json(r: &Run) -> serde_json::Value {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

async fn a_records(bind: &Bind, name: &str) -> Vec<String> {
    let p = Rfc2136::new(&bind.config(ZONE)).unwrap();
    p.query(name, RecordType::A)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect()
}

#[tokio::test]
async fn plan_sync_and_a_second_sync_with_nothing_to_do() {
    let Some(bind) = start("mail 300 IN A 198.51.100.25\n") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    // The secret from a file (RFC2136_TSIG_SECRET_FILE), as Docker/systemd credentials give it.
    let secret_file = d.path().join("tsig.secret");
    fs::write(&secret_file, format!("{}\n", bind.secret())).unwrap();
    write_env(
        d.path(),
        &bind.server(),
        &format!("RFC2136_TSIG_SECRET_FILE={}\n", secret_file.display()),
    );

    let plan = json(&dns(d.path(), &["plan", "-o", "json"], &[]));
    assert_eq!(plan["in_sync"], false, "{plan}");
    assert_eq!(plan["provider"], "rfc2136");
    let ops: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["create"; 4], "{plan}");
    // Planning changed nothing.
    assert!(a_records(&bind, "gitlab.example.test").await.is_empty());

    let table = dns(d.path(), &["plan"], &[]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains("create") && table.stdout.contains("*.example.test"),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains("4 to create, 0 to update, 0 to delete"),
        "{}",
        table.stdout
    );

    let sync = dns(d.path(), &["sync"], &[]);
    assert_eq!(sync.code, 0, "{}\n{}", sync.stdout, sync.stderr);
    assert!(
        sync.stdout
            .contains("applied 4 created, 0 updated, 0 deleted"),
        "{}",
        sync.stdout
    );
    assert_eq!(
        a_records(&bind, "gitlab.example.test").await,
        ["203.0.113.7"]
    );
    assert_eq!(
        a_records(&bind, "mail.example.test").await,
        ["198.51.100.25"]
    );

    // Idempotent.
    let again = dns(d.path(), &["sync"], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    let plan = json(&dns(d.path(), &["plan", "-o", "json"], &[]));
    assert_eq!(plan["in_sync"], true, "{plan}");

    // The ingress moves (the environment wins over .env): one sync updates both addresses.
    let moved = [("INGRESS_IP", "203.0.113.8")];
    let sync = json(&dns(d.path(), &["sync", "-o", "json"], &moved));
    assert_eq!(sync["applied"].as_array().unwrap().len(), 2, "{sync}");
    assert_eq!(
        a_records(&bind, "grafana.example.test").await,
        ["203.0.113.8"]
    );
    assert_eq!(a_records(&bind, ZONE).await, ["203.0.113.8"]);
}

#[tokio::test]
async fn names_with_foreign_records_are_conflicts_and_left_alone() {
    let Some(bind) = start("gitlab 600 IN A 198.51.100.1\n") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    write_env(
        d.path(),
        &bind.server(),
        &format!(
            "DNS_MODE=per-service\nRFC2136_TSIG_SECRET={}\n",
            bind.secret()
        ),
    );
    let plan = dns(d.path(), &["plan"], &[]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("conflict") && plan.stdout.contains("not owned by autogit"),
        "{}",
        plan.stdout
    );

    // grafana is created; gitlab stays as it was, and sync says so with exit 1.
    let sync = dns(d.path(), &["sync"], &[]);
    assert_eq!(sync.code, 1, "{}\n{}", sync.stdout, sync.stderr);
    assert!(
        sync.stderr.contains("gitlab.example.test left alone"),
        "{}",
        sync.stderr
    );
    assert_eq!(
        a_records(&bind, "gitlab.example.test").await,
        ["198.51.100.1"]
    );
    assert_eq!(
        a_records(&bind, "grafana.example.test").await,
        ["203.0.113.7"]
    );
}

#[test]
fn wrong_secret_names_the_key_and_never_the_secret() {
    let Some(bind) = start("") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let wrong = "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc=";
    write_env(
        d.path(),
        &bind.server(),
        &format!("RFC2136_TSIG_SECRET={wrong}\n"),
    );
    for args in [&["plan"][..], &["sync"], &["sync", "-o", "json"]] {
        let r = dns(d.path(), args, &[]);
        assert_eq!(r.code, 1, "{args:?}: {}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .contains(&format!("rejected TSIG key `{KEY_NAME}` (BADSIG)")),
            "{}",
            r.stderr
        );
        assert!(
            !r.stderr.contains(wrong) && !r.stdout.contains(wrong),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn no_server_listening_is_a_one_line_error() {
    let d = tempfile::tempdir().unwrap();
    let server = format!("127.0.0.1:{}", free_port());
    write_env(d.path(), &server, "RFC2136_TSIG_SECRET=c2VjcmV0\n");
    let r = dns(d.path(), &["plan"], &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("autogit: cannot reach DNS server") && last.contains(&server),
        "{}",
        r.stderr
    );
}

#[test]
fn unset_and_incomplete_providers_say_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), "127.0.0.1", "RFC2136_TSIG_SECRET=c2VjcmV0\n");
    // A provider without its keys names them.
    let r = dns(d.path(), &["sync"], &[("DNS_PROVIDER", "gcloud")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("GCP_PROJECT"), "{}", r.stderr);
    let r = dns(d.path(), &["plan"], &[("DNS_PROVIDER", "none")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("DNS_PROVIDER is not set"), "{}", r.stderr);

    // manual: plan lists the records to create by hand; sync refuses.
    let r = dns(d.path(), &["plan"], &[("DNS_PROVIDER", "manual")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("*.example.test") && r.stdout.contains("manual"),
        "{}",
        r.stdout
    );
    let r = dns(d.path(), &["sync"], &[("DNS_PROVIDER", "manual")]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // Without INGRESS_IP there is nothing to point the records at.
    fs::write(
        d.path().join(".env"),
        "BASE_DOMAIN=example.test\nDNS_PROVIDER=manual\n",
    )
    .unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = dns(d.path(), &["plan"], &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("INGRESS_IP is not set"), "{}", r.stderr);
}

#[tokio::test]
async fn base_domain_below_the_zone_apex() {
    let Some(bind) = start("") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    write_env(
        d.path(),
        &bind.server(),
        &format!(
            "DNS_ZONE={ZONE}\nDNS_TTL=120\nRFC2136_TSIG_SECRET={}\n",
            bind.secret()
        ),
    );
    let env = [("BASE_DOMAIN", "lab.example.test")];
    let sync = json(&dns(d.path(), &["sync", "-o", "json"], &env));
    let names: Vec<&str> = sync["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["record"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "*.lab.example.test",
            "_autogit._wildcard.lab.example.test",
            "_autogit.lab.example.test",
            "lab.example.test"
        ],
        "{sync}"
    );
    assert!(
        sync["applied"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["record"]["ttl"] == 120),
        "{sync}"
    );
    assert_eq!(
        a_records(&bind, "gitlab.lab.example.test").await,
        ["203.0.113.7"]
    );
    let again = json(&dns(d.path(), &["sync", "-o", "json"], &env));
    assert_eq!(again["applied"], serde_json::json!([]), "{again}");
    assert_eq!(again["in_sync"], true, "{again}");

    // A BASE_DOMAIN outside DNS_ZONE is a configuration error, found before any network I/O.
    let r = dns(d.path(), &["plan"], &[("BASE_DOMAIN", "example.org")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("DNS_ZONE"), "{}", r.stderr);
}

#[test]
fn secret_file_problems_name_the_variable_and_the_file() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no-such-file");
    write_env(
        d.path(),
        "127.0.0.1",
        &format!("RFC2136_TSIG_SECRET_FILE={}\n", missing.display()),
    );
    let r = dns(d.path(), &["plan"], &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("RFC2136_TSIG_SECRET_FILE: cannot read")
            && r.stderr.contains(&missing.display().to_string()),
        "{}",
        r.stderr
    );

    let empty = d.path().join("empty");
    fs::write(&empty, "\n").unwrap();
    let file = empty.display().to_string();
    let r = dns(d.path(), &["plan"], &[("RFC2136_TSIG_SECRET_FILE", &file)]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("is empty"), "{}", r.stderr);

    // Not base64: the message names the key, not the value.
    let r = dns(
        d.path(),
        &["plan"],
        &[("RFC2136_TSIG_SECRET", "not base64 at all!")],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not valid base64") && !r.stderr.contains("not base64 at all"),
        "{}",
        r.stderr
    );
}

/// `autogit daemon` keeps the zone in sync by itself (and `dns apply` is `dns sync`). Needs
/// BIND and a container engine (the daemon also keeps a stand-in GitLab running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_syncs_the_zone_and_apply_is_sync() {
    let Some(bind) = start("") else {
        return;
    };
    if !have_engine() {
        return;
    }
    tokio::task::spawn_blocking(|| autogit_drivers::testing::fake_gitlab_image("0.0.9", &[]))
        .await
        .unwrap()
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    write_env(
        d.path(),
        &bind.server(),
        &format!("RFC2136_TSIG_SECRET={}\n", bind.secret()),
    );
    let project = format!("agt-dnsd-{}", std::process::id());
    fs::write(
        d.path().join("autogit.yml"),
        format!("gitlab:\n  image: autogit-test/gitlab-ce\n  version: \"0.0.9\"\n  ports: {{http: 31680, https: 31681, ssh: 31682}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\n  start_period: 3s\nrunners: {{}}\nplatform:\n  project: {project}\n  ingress: none\n"),
    )
    .unwrap();
    let data = d.path().join("data");
    let mut child = cmd(d.path())
        .args(["daemon", "--data-dir", data.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start_t = std::time::Instant::now();
    let mut seen = Vec::new();
    while start_t.elapsed() < std::time::Duration::from_secs(60) {
        seen = a_records(&bind, "gitlab.example.test").await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = run(
        d.path(),
        &[
            "down",
            "--volumes",
            "--yes",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    remove_project_leftovers(&project);
    assert_eq!(seen, ["203.0.113.7"], "the daemon did not sync the zone");
    // `dns apply` is the same command: nothing left to do.
    let r = dns(
        d.path(),
        &["apply"],
        &[("RFC2136_TSIG_SECRET", bind.secret())],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
}
