//! `autogit dns plan` and `autogit dns sync` with `DNS_PROVIDER=dnsmasq`: the real binary,
//! configured only through `.env`, against a real dnsmasq (`autogit_drivers::testing::dnsmasq`)
//! that `DNSMASQ_RELOAD_COMMAND` restarts. Without `dnsmasq` the tests say "skipping" and pass,
//! unless `AUTOGIT_REQUIRE_TOOLS` is set.

mod common;
use autogit_core::dns::RecordType;
use autogit_drivers::testing::dnsmasq::{DnsmasqServer, dnsmasq_or_skip};
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn write_env(dir: &Path, s: &DnsmasqServer, reload: bool) {
    let mut env = format!(
        "BASE_DOMAIN=example.test\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab,grafana\n\
         DNS_PROVIDER=dnsmasq\nDNSMASQ_CONFIG_PATH={}\n",
        s.config_path().display()
    );
    if reload {
        env.push_str(&format!("DNSMASQ_RELOAD_COMMAND={}\n", s.reload_command()));
    }
    fs::write(dir.join(".env"), env).unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn dns(dir: &Path, args: &[&str]) -> Run {
    let data = dir.join("data");
    let mut all = vec!["dns"];
    all.extend_from_slice(args);
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run_env(dir, &all, &[])
}

#[tokio::test]
async fn sync_writes_the_file_restarts_dnsmasq_and_a_second_sync_has_nothing_to_do() {
    let Some(bin) = dnsmasq_or_skip() else { return };
    let s = DnsmasqServer::start(&bin, "host-record=nas.example.test,192.168.1.10\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), &s, true);

    let plan = dns(d.path(), &["plan", "-o", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let v: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(v["provider"], "dnsmasq");
    assert_eq!(v["changes"].as_array().unwrap().len(), 4, "{v}");

    let sync = dns(d.path(), &["sync", "-o", "json"]);
    assert_eq!(sync.code, 0, "{}\n{}", sync.stdout, sync.stderr);
    let v: serde_json::Value = serde_json::from_str(&sync.stdout).unwrap();
    assert_eq!(v["zone"], "example.test");
    assert!(
        v["target"]
            .as_str()
            .unwrap()
            .contains(s.config_path().to_str().unwrap()),
        "{v}"
    );
    let a = s
        .client()
        .query("gitlab.example.test", RecordType::A)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].value, "203.0.113.7");
    let text = fs::read_to_string(s.config_path()).unwrap();
    assert!(
        text.starts_with("host-record=nas.example.test,192.168.1.10\n"),
        "{text}"
    );

    let again = dns(d.path(), &["sync"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);

    // Without a reload command, sync says dnsmasq must be restarted.
    write_env(d.path(), &s, false);
    fs::write(d.path().join(".env"), {
        let mut e = fs::read_to_string(d.path().join(".env")).unwrap();
        e = e.replace("INGRESS_IP=203.0.113.7", "INGRESS_IP=203.0.113.9");
        e
    })
    .unwrap();
    let r = dns(d.path(), &["sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("DNSMASQ_RELOAD_COMMAND"), "{}", r.stderr);
}
