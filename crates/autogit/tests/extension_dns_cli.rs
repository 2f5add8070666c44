//! The SDKs' example DNS extensions drive `autogit dns sync` against a real BIND 9 (the
//! fixture of `dns_cli.rs`), configured through `.env` only; every record is verified with a
//! DNS query to the server. The Python example (`sdk/python/examples/nsupdate_dns.py`) and the
//! Rust one (`crates/autogit-extension-sdk/examples/nsupdate_dns.rs`) are the same provider:
//! AXFR with `dig`, one conditional UPDATE with `nsupdate`, both TSIG-signed.

mod common;
use autogit_core::dns::RecordType;
use autogit_drivers::dns::rfc2136::Rfc2136;
use autogit_drivers::testing::bind::{Bind, KEY_NAME, TestZone, named_or_skip};
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const ZONE: &str = "example.test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tools_or_skip() -> Option<Bind> {
    if !(have("dig") && have("nsupdate") && have("python3")) {
        return None;
    }
    let named = named_or_skip()?;
    Some(
        Bind::start(
            &named,
            &[TestZone::new(ZONE, "mail 300 IN A 198.51.100.25\n")],
        )
        .unwrap_or_else(|e| panic!("{e}")),
    )
}

/// `.env` for the extension `name` against `bind`, the secret in a file.
fn write_env(dir: &Path, bind: &Bind, name: &str) {
    let secret = dir.join("tsig.secret");
    fs::write(&secret, format!("{}\n", bind.secret())).unwrap();
    let env = format!(
        "BASE_DOMAIN={ZONE}\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab,grafana\n\
         EXTENSIONS_ENABLED={name}\nDNS_PROVIDER={name}\n\
         NSUPDATE_SERVER={}\nNSUPDATE_KEY_NAME={KEY_NAME}\nNSUPDATE_KEY_SECRET_FILE={}\n",
        bind.server(),
        secret.display()
    );
    fs::write(dir.join(".env"), env).unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn autogit(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let data = dir.join("data");
    let mut all = args.to_vec();
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run_env(dir, &all, env)
}

async fn values(bind: &Bind, name: &str, kind: RecordType) -> Vec<String> {
    let p = Rfc2136::new(&bind.config(ZONE)).unwrap();
    let mut v: Vec<String> = p
        .query(name, kind)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    v.sort();
    v
}

/// Plan, sync, verify by DNS queries, sync again (nothing to do), move the ingress (updates),
/// and `extension check`.
async fn drive(dir: &Path, bind: &Bind, name: &str) {
    let plan = autogit(dir, &["dns", "plan", "-o", "json"], &[]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["provider"], name, "{plan}");
    assert!(
        plan["target"]
            .as_str()
            .unwrap()
            .starts_with(&format!("extension {name} ")),
        "{plan}"
    );
    assert_eq!(plan["changes"].as_array().unwrap().len(), 4, "{plan}");
    assert!(
        values(bind, "gitlab.example.test", RecordType::A)
            .await
            .is_empty()
    );

    let sync = autogit(dir, &["dns", "sync"], &[]);
    assert_eq!(sync.code, 0, "{}\n{}", sync.stdout, sync.stderr);
    assert!(
        sync.stdout
            .contains("applied 4 created, 0 updated, 0 deleted"),
        "{}",
        sync.stdout
    );
    assert_eq!(
        values(bind, "anything.example.test", RecordType::A).await,
        ["203.0.113.7"]
    );
    assert_eq!(values(bind, ZONE, RecordType::A).await, ["203.0.113.7"]);
    assert_eq!(
        values(bind, "_autogit._wildcard.example.test", RecordType::Txt).await,
        ["heritage=autogit,owner=autogit"]
    );
    assert_eq!(
        values(bind, "mail.example.test", RecordType::A).await,
        ["198.51.100.25"]
    );

    let again = autogit(dir, &["dns", "sync"], &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);

    let moved = autogit(
        dir,
        &["dns", "sync", "-o", "json"],
        &[("INGRESS_IP", "203.0.113.8")],
    );
    assert_eq!(moved.code, 0, "{}\n{}", moved.stdout, moved.stderr);
    let moved: serde_json::Value = serde_json::from_str(&moved.stdout).unwrap();
    assert_eq!(moved["applied"].as_array().unwrap().len(), 2, "{moved}");
    assert_eq!(
        values(bind, "anything.example.test", RecordType::A).await,
        ["203.0.113.8"]
    );
    assert_eq!(values(bind, ZONE, RecordType::A).await, ["203.0.113.8"]);

    let check = autogit(dir, &["extension", "check", name], &[]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("health ok"), "{}", check.stdout);
    // The secret went to the extension, never to autogit's output.
    for r in [&check, &sync, &again] {
        assert!(!r.stdout.contains(bind.secret()) && !r.stderr.contains(bind.secret()));
    }
}

#[tokio::test]
async fn the_python_example_syncs_a_real_bind() {
    let Some(bind) = tools_or_skip() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let ext = d.path().join("data/extensions");
    fs::create_dir_all(&ext).unwrap();
    std::os::unix::fs::symlink(
        repo().join("sdk/python/examples/nsupdate_dns.py"),
        ext.join("nsupdate-dns"),
    )
    .unwrap();
    write_env(d.path(), &bind, "nsupdate-dns");
    drive(d.path(), &bind, "nsupdate-dns").await;
}

#[tokio::test]
async fn the_rust_example_syncs_a_real_bind() {
    let Some(bind) = tools_or_skip() else {
        return;
    };
    let exe = autogit_drivers::testing::sdk_example("nsupdate_dns");
    let d = tempfile::tempdir().unwrap();
    let ext = d.path().join("data/extensions");
    fs::create_dir_all(&ext).unwrap();
    fs::copy(&exe, ext.join("nsupdate-dns-rs")).unwrap();
    write_env(d.path(), &bind, "nsupdate-dns-rs");
    drive(d.path(), &bind, "nsupdate-dns-rs").await;
}
