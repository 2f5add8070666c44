//! The dnsmasq provider against a real dnsmasq (`autogit_drivers::testing::dnsmasq`): records
//! written between autogit's markers, the user's lines kept, dnsmasq restarted by the reload
//! command and queried over TCP. Without `dnsmasq` the tests say "skipping" and pass, unless
//! `AUTOGIT_REQUIRE_TOOLS` is set (scripts/test.sh), when they fail.

mod dns_support;

use autogit_core::dns::{Change, ConflictReason, Record, RecordType, desired_records};
use autogit_core::platform::DnsMode;
use autogit_drivers::dns::dnsmasq::{Dnsmasq, DnsmasqConfig};
use autogit_drivers::dns::{DnsProvider, DnsProviderError};
use autogit_drivers::testing::dnsmasq::{DnsmasqServer, dnsmasq_or_skip};
use dns_support::{PROJECT, ZONE, sync, target};
use std::time::Duration;

/// The user's own lines: kept as they are, never changed.
const USER: &str = "# my homelab\nhost-record=nas.example.test,192.168.1.10\ndomain-needed\n";

fn start(initial: &str) -> Option<DnsmasqServer> {
    let bin = dnsmasq_or_skip()?;
    Some(DnsmasqServer::start(&bin, initial).unwrap_or_else(|e| panic!("{e}")))
}

async fn answers(s: &DnsmasqServer, name: &str, kind: RecordType) -> Vec<String> {
    let mut v: Vec<String> = s
        .client()
        .query(name, kind)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn wildcard_apex_and_ownership_are_served_and_user_lines_kept() {
    let Some(s) = start(USER) else { return };
    let p = Dnsmasq::new(&s.provider_config()).unwrap();
    let desired = desired_records(&target(DnsMode::Wildcard, "203.0.113.7", &[]), PROJECT);
    let plan = sync(&p, &desired).await;
    assert_eq!(plan.changes.len(), 4, "{plan}");

    assert_eq!(
        answers(&s, "gitlab.example.test", RecordType::A).await,
        ["203.0.113.7"]
    );
    assert_eq!(
        answers(&s, "a.b.example.test", RecordType::A).await,
        ["203.0.113.7"]
    );
    assert_eq!(
        answers(&s, "example.test", RecordType::A).await,
        ["203.0.113.7"]
    );
    assert_eq!(
        answers(&s, "_autogit._wildcard.example.test", RecordType::Txt).await,
        ["heritage=autogit,owner=autogit"]
    );
    // The user's record still answers, and the user's lines are there as written.
    assert_eq!(
        answers(&s, "nas.example.test", RecordType::A).await,
        ["192.168.1.10"]
    );
    let text = std::fs::read_to_string(s.config_path()).unwrap();
    assert!(text.starts_with(USER), "{text}");

    // Second sync: nothing to do; the file is not rewritten.
    let again = sync(&p, &desired).await;
    assert!(again.is_empty(), "{again}");
    assert_eq!(std::fs::read_to_string(s.config_path()).unwrap(), text);

    // Per-service: the wildcard goes, gitlab comes.
    let per = desired_records(
        &target(DnsMode::PerService, "203.0.113.8", &["gitlab"]),
        PROJECT,
    );
    sync(&p, &per).await;
    assert_eq!(
        answers(&s, "gitlab.example.test", RecordType::A).await,
        ["203.0.113.8"]
    );
    assert!(
        answers(&s, "other.example.test", RecordType::A)
            .await
            .is_empty()
    );
    assert!(
        std::fs::read_to_string(s.config_path())
            .unwrap()
            .starts_with(USER)
    );
}

#[tokio::test]
async fn two_txt_values_at_one_name_coexist() {
    let Some(s) = start("") else { return };
    let p = Dnsmasq::new(&s.provider_config()).unwrap();
    let name = format!("_acme-challenge.{ZONE}");
    let a = Record::new(&name, RecordType::Txt, "token-for-wildcard", 60);
    let b = Record::new(&name, RecordType::Txt, "token-for-apex", 60);
    p.apply(&[Change::Create { record: a.clone() }])
        .await
        .unwrap();
    p.apply(&[Change::Create { record: b.clone() }])
        .await
        .unwrap();
    assert_eq!(
        answers(&s, &name, RecordType::Txt).await,
        ["token-for-apex", "token-for-wildcard"]
    );
    let listed = p.list(std::slice::from_ref(&name)).await.unwrap();
    assert!(listed.contains(&a) && listed.contains(&b), "{listed:?}");
    p.apply(&[Change::Delete { record: a }]).await.unwrap();
    assert_eq!(
        answers(&s, &name, RecordType::Txt).await,
        ["token-for-apex"]
    );
}

#[tokio::test]
async fn user_records_are_conflicts_and_never_changed() {
    let Some(s) = start("host-record=gitlab.example.test,198.51.100.9\n") else {
        return;
    };
    let p = Dnsmasq::new(&s.provider_config()).unwrap();
    let desired = desired_records(
        &target(DnsMode::PerService, "203.0.113.7", &["gitlab", "grafana"]),
        PROJECT,
    );
    let plan = sync(&p, &desired).await;
    assert_eq!(plan.conflicts.len(), 1, "{plan}");
    assert_eq!(plan.conflicts[0].reason, ConflictReason::NotOwned);
    assert_eq!(
        answers(&s, "gitlab.example.test", RecordType::A).await,
        ["198.51.100.9"]
    );
    assert_eq!(
        answers(&s, "grafana.example.test", RecordType::A).await,
        ["203.0.113.7"]
    );
    // Even when asked directly, a line outside the markers is not touched.
    let e = p
        .apply(&[Change::Delete {
            record: Record::new("gitlab.example.test", RecordType::A, "198.51.100.9", 300),
        }])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("outside autogit's"), "{e}");
}

#[tokio::test]
async fn a_failing_reload_command_and_a_broken_file_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("autogit.conf");
    let p = Dnsmasq::new(&DnsmasqConfig {
        path: path.clone(),
        reload_command: Some("echo cannot restart >&2; exit 3".into()),
        default_ttl: 300,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let r = Record::new(ZONE, RecordType::A, "203.0.113.7", 300);
    let e = p
        .apply(&[Change::Create { record: r.clone() }])
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("DNSMASQ_RELOAD_COMMAND") && msg.contains("cannot restart"),
        "{msg}"
    );
    // The file was written (atomically) before the reload.
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("host-record=example.test,203.0.113.7,300")
    );
    // A BEGIN without END: refused, nothing written.
    std::fs::write(&path, "# BEGIN autogit\naddress=/x.test/1.2.3.4\n").unwrap();
    let e = p.list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("without `# END autogit`"), "{e}");
    // A relative path is refused.
    assert!(
        Dnsmasq::new(&DnsmasqConfig {
            path: "relative.conf".into(),
            reload_command: None,
            default_ttl: 300,
            timeout: Duration::from_secs(5),
        })
        .is_err()
    );
}
