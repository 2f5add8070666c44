//! The RFC 2136 provider against a real BIND 9 (`named`): TSIG-signed updates and AXFR, plain
//! queries to read back, and the errors a user meets (wrong secret, zone without
//! `allow-update`, no server). Each test runs its own `named` on a free port in a temporary
//! directory (`autogit_drivers::testing::bind`). Without `named` the tests say "skipping" and
//! pass, unless `AUTOGIT_REQUIRE_TOOLS` is set (scripts/test.sh), when they fail.

mod dns_support;

use autogit_core::dns::{
    Change, ConflictReason, Record, RecordType, desired_records, dns_plan, owner_value,
};
use autogit_core::platform::DnsMode;
use autogit_drivers::dns::rfc2136::{Rfc2136, Rfc2136Config};
use autogit_drivers::dns::{DnsProvider, DnsProviderError};
use autogit_drivers::testing::bind::{Bind, KEY_NAME, TestZone, free_port, named_or_skip};
use dns_support::{PROJECT, ZONE, sync, target};
use secrecy::SecretString;
use std::time::Duration;

/// Records that are not autogit's: they must survive every sync.
const FOREIGN: &str = "mail 300 IN A 198.51.100.25\nmail 300 IN TXT \"v=spf1 -all\"\n";

fn start(zones: &[TestZone]) -> Option<Bind> {
    let named = named_or_skip()?;
    Some(Bind::start(&named, zones).unwrap_or_else(|e| panic!("{e}")))
}

fn provider(bind: &Bind, zone: &str) -> Rfc2136 {
    Rfc2136::new(&bind.config(zone)).unwrap()
}

fn values(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.value.as_str()).collect()
}

fn rec(name: &str, kind: RecordType, value: &str) -> Record {
    Record::new(name, kind, value, 300)
}

#[tokio::test]
async fn creates_wildcard_and_ownership_then_reads_back() {
    let Some(bind) = start(&[TestZone::new(ZONE, FOREIGN)]) else {
        return;
    };
    let p = provider(&bind, ZONE);
    let desired = desired_records(&target(DnsMode::Wildcard, "203.0.113.7", &[]), PROJECT);
    let plan = sync(&p, &desired).await;
    assert_eq!(plan.changes.len(), 4, "{plan}");
    assert!(plan.conflicts.is_empty(), "{plan}");

    // AXFR shows every desired record, and the zone's own records beside them.
    let zone = p.transfer().await.unwrap();
    for r in &desired {
        assert!(zone.contains(r), "{r} missing from {zone:#?}");
    }
    assert!(zone.contains(&rec("mail.example.test", RecordType::A, "198.51.100.25")));
    assert!(
        zone.iter()
            .any(|r| r.name == ZONE && r.value.starts_with("SOA ")),
        "{zone:#?}"
    );

    // Plain queries: the wildcard answers for any service name, the apex for itself.
    let a = p.query("gitlab.example.test", RecordType::A).await.unwrap();
    assert_eq!(values(&a), ["203.0.113.7"]);
    assert_eq!(a[0].name, "gitlab.example.test");
    let apex = p.query(ZONE, RecordType::A).await.unwrap();
    assert_eq!(values(&apex), ["203.0.113.7"]);
    let owner = p
        .query("_autogit._wildcard.example.test", RecordType::Txt)
        .await
        .unwrap();
    assert_eq!(values(&owner), [owner_value(PROJECT)]);
    // A type the name does not have: an empty answer.
    let none = p
        .query("mail.example.test", RecordType::Aaaa)
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // Idempotent: the second pass has nothing to do.
    let again = sync(&p, &desired).await;
    assert!(again.is_empty(), "second pass: {again}");
}

#[tokio::test]
async fn changed_address_is_updated_and_removed_names_deleted() {
    let Some(bind) = start(&[TestZone::new(ZONE, FOREIGN)]) else {
        return;
    };
    let p = provider(&bind, ZONE);
    let first = desired_records(
        &target(DnsMode::PerService, "203.0.113.7", &["gitlab", "grafana"]),
        PROJECT,
    );
    sync(&p, &first).await;

    // The ingress moved: addresses updated in place.
    let moved = desired_records(
        &target(DnsMode::PerService, "203.0.113.8", &["gitlab", "grafana"]),
        PROJECT,
    );
    let plan = sync(&p, &moved).await;
    assert!(
        plan.changes
            .iter()
            .all(|c| matches!(c, Change::Update { .. })),
        "{plan}"
    );
    assert_eq!(plan.changes.len(), 2, "{plan}");
    let a = p.query("gitlab.example.test", RecordType::A).await.unwrap();
    assert_eq!(values(&a), ["203.0.113.8"]);

    // grafana is no longer routed: its address and ownership record go, gitlab's stay.
    let fewer = desired_records(
        &target(DnsMode::PerService, "203.0.113.8", &["gitlab"]),
        PROJECT,
    );
    let plan = sync(&p, &fewer).await;
    assert_eq!(plan.changes.len(), 2, "{plan}");
    let zone = p.transfer().await.unwrap();
    assert!(
        !zone.iter().any(|r| r.name.contains("grafana")),
        "{zone:#?}"
    );
    for r in &fewer {
        assert!(zone.contains(r), "{r} missing from {zone:#?}");
    }
    assert!(zone.contains(&rec("mail.example.test", RecordType::A, "198.51.100.25")));
    assert!(zone.contains(&rec("mail.example.test", RecordType::Txt, "v=spf1 -all")));

    // Nothing desired any more: every owned record goes, nothing else.
    let plan = sync(&p, &[]).await;
    assert_eq!(plan.changes.len(), 2, "{plan}");
    let after = p.transfer().await.unwrap();
    assert!(
        !after.iter().any(|r| r.name.contains("gitlab")),
        "{after:#?}"
    );
    assert!(
        !after.iter().any(|r| r.name.starts_with("_autogit")),
        "{after:#?}"
    );
    assert_eq!(after.len(), zone.len() - 2, "{after:#?}");
}

#[tokio::test]
async fn ttl_change_and_switch_to_ipv6() {
    let Some(bind) = start(&[TestZone::new(ZONE, FOREIGN)]) else {
        return;
    };
    let p = provider(&bind, ZONE);
    let v4 = desired_records(&target(DnsMode::Wildcard, "203.0.113.7", &[]), PROJECT);
    sync(&p, &v4).await;

    // Same addresses, shorter TTL: every record (ownership TXT included) updated in place.
    let mut t = target(DnsMode::Wildcard, "203.0.113.7", &[]);
    t.ttl = 60;
    let short = desired_records(&t, PROJECT);
    let plan = sync(&p, &short).await;
    assert_eq!(plan.changes.len(), 4, "{plan}");
    let zone = p.transfer().await.unwrap();
    for r in &short {
        assert!(zone.contains(r), "{r} missing from {zone:#?}");
    }
    assert!(sync(&p, &short).await.is_empty());

    // The ingress moves to IPv6: A records go, AAAA records come, ownership stays.
    let v6 = desired_records(&target(DnsMode::Wildcard, "2001:db8::7", &[]), PROJECT);
    sync(&p, &v6).await;
    let aaaa = p
        .query("gitlab.example.test", RecordType::Aaaa)
        .await
        .unwrap();
    assert_eq!(values(&aaaa), ["2001:db8::7"]);
    let a = p.query("gitlab.example.test", RecordType::A).await.unwrap();
    assert!(a.is_empty(), "{a:?}");
    assert!(sync(&p, &v6).await.is_empty());
}

#[tokio::test]
async fn transfer_of_a_zone_spanning_many_messages() {
    // About 400 KiB of records: BIND sends the transfer as several TSIG-signed messages, each
    // verified against the previous one's MAC.
    let mut big = String::new();
    for i in 0..2000 {
        big.push_str(&format!("host{i} 300 IN TXT \"{}\"\n", "v".repeat(180)));
    }
    let Some(bind) = start(&[TestZone::new(ZONE, &big)]) else {
        return;
    };
    let p = provider(&bind, ZONE);
    let zone = p.transfer().await.unwrap();
    // 2000 TXT + SOA + NS + ns A.
    assert_eq!(zone.len(), 2003);
    assert!(bind.log().contains("AXFR ended"), "{}", bind.log());
    let messages = bind
        .log()
        .lines()
        .find(|l| l.contains("AXFR ended"))
        .and_then(|l| l.split("AXFR ended: ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(messages > 1, "{}", bind.log());
}

#[tokio::test]
async fn sha384_and_sha512_keys() {
    let Some(named) = named_or_skip() else {
        return;
    };
    for algorithm in ["hmac-sha384", "hmac-sha512"] {
        let bind = Bind::start_with_algorithm(&named, &[TestZone::new(ZONE, "")], algorithm)
            .unwrap_or_else(|e| panic!("{e}"));
        let p = provider(&bind, ZONE);
        let desired = desired_records(&target(DnsMode::Wildcard, "203.0.113.7", &[]), PROJECT);
        assert_eq!(sync(&p, &desired).await.changes.len(), 4, "{algorithm}");
        assert!(sync(&p, &desired).await.is_empty(), "{algorithm}");
    }
}

#[tokio::test]
async fn an_update_after_a_concurrent_change_applies_nothing() {
    let Some(bind) = start(&[TestZone::new(ZONE, FOREIGN)]) else {
        return;
    };
    let ours = provider(&bind, ZONE);
    let someone_else = provider(&bind, ZONE);
    let desired = desired_records(&target(DnsMode::Wildcard, "203.0.113.7", &[]), PROJECT);
    let plan = dns_plan(&desired, &ours.list(&[]).await.unwrap(), PROJECT);

    // Between our read and our update, another client changes the zone.
    let theirs = rec("x.example.test", RecordType::A, "198.51.100.9");
    someone_else
        .apply(&[Change::Create {
            record: theirs.clone(),
        }])
        .await
        .unwrap();
    let err = ours.apply(&plan.changes).await.unwrap_err();
    assert!(
        matches!(err, DnsProviderError::ZoneChanged { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("run the command again"), "{err}");
    let zone = ours.transfer().await.unwrap();
    assert!(zone.contains(&theirs), "{zone:#?}");
    assert!(
        !zone.iter().any(|r| r.name.starts_with("_autogit")),
        "{zone:#?}"
    );

    // Read again, plan again: it goes through.
    let plan = sync(&ours, &desired).await;
    assert_eq!(plan.changes.len(), 4, "{plan}");
    assert!(sync(&ours, &desired).await.is_empty());
}

#[tokio::test]
async fn two_txt_values_at_one_name_coexist() {
    let Some(bind) = start(&[TestZone::new(ZONE, "")]) else {
        return;
    };
    let p = provider(&bind, ZONE);
    let name = "_acme-challenge.example.test";
    // ACME's wildcard + apex order: two challenges under one name, added one at a time.
    let one = Record::new(name, RecordType::Txt, "token-for-wildcard", 60);
    let two = Record::new(name, RecordType::Txt, "token-for-apex", 60);
    p.apply(&[Change::Create {
        record: one.clone(),
    }])
    .await
    .unwrap();
    p.apply(&[Change::Create {
        record: two.clone(),
    }])
    .await
    .unwrap();
    // A name that does not exist (NXDOMAIN): an empty answer, not an error.
    let nothing = p
        .query("nothing.example.test", RecordType::Txt)
        .await
        .unwrap();
    assert!(nothing.is_empty(), "{nothing:?}");
    let both = p.query(name, RecordType::Txt).await.unwrap();
    assert_eq!(values(&both), ["token-for-apex", "token-for-wildcard"]);

    // Deleting one value leaves the other.
    p.apply(&[Change::Delete { record: one }]).await.unwrap();
    let left = p.query(name, RecordType::Txt).await.unwrap();
    assert_eq!(values(&left), ["token-for-apex"]);

    // A value longer than one TXT string (255 bytes) round-trips.
    let long = Record::new(name, RecordType::Txt, "k".repeat(400), 60);
    p.apply(&[Change::Create {
        record: long.clone(),
    }])
    .await
    .unwrap();
    let zone = p.transfer().await.unwrap();
    assert!(zone.contains(&long), "{zone:#?}");
}

#[tokio::test]
async fn records_autogit_does_not_own_are_left_alone() {
    let foreign = "gitlab 600 IN A 198.51.100.1\n\
                   grafana 600 IN CNAME elsewhere.example.net.\n\
                   loki 300 IN A 198.51.100.3\n\
                   _autogit.loki 300 IN TXT \"heritage=autogit,owner=staging\"\n";
    let Some(bind) = start(&[TestZone::new(ZONE, &format!("{FOREIGN}{foreign}"))]) else {
        return;
    };
    let p = provider(&bind, ZONE);
    let before = p.transfer().await.unwrap();
    let desired = desired_records(
        &target(
            DnsMode::PerService,
            "203.0.113.7",
            &["gitlab", "grafana", "loki", "tempo"],
        ),
        PROJECT,
    );
    let plan = sync(&p, &desired).await;
    let reasons: Vec<(&str, ConflictReason)> = plan
        .conflicts
        .iter()
        .map(|c| (c.name.as_str(), c.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("gitlab.example.test", ConflictReason::NotOwned),
            ("grafana.example.test", ConflictReason::NotOwned),
            ("loki.example.test", ConflictReason::OtherOwner),
        ],
        "{plan}"
    );
    let after = p.transfer().await.unwrap();
    // Everything that was there is still there, unchanged; only tempo's records were added.
    let soa_free = |v: &[Record]| -> Vec<Record> {
        v.iter()
            .filter(|r| !r.value.starts_with("SOA "))
            .cloned()
            .collect()
    };
    let mut expected = soa_free(&before);
    expected.push(rec("tempo.example.test", RecordType::A, "203.0.113.7"));
    expected.push(rec(
        "_autogit.tempo.example.test",
        RecordType::Txt,
        &owner_value(PROJECT),
    ));
    expected.sort();
    assert_eq!(soa_free(&after), expected);

    // The conflicts stay conflicts; nothing else to do.
    let again = sync(&p, &desired).await;
    assert!(again.changes.is_empty(), "{again}");
    assert_eq!(again.conflicts.len(), 3, "{again}");
}

#[tokio::test]
async fn wrong_secret_is_tsig_rejected_naming_the_key_not_the_secret() {
    let Some(bind) = start(&[TestZone::new(ZONE, "")]) else {
        return;
    };
    let wrong = "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc=";
    let mut c = bind.config(ZONE);
    c.secret = SecretString::from(wrong.to_owned());
    let p = Rfc2136::new(&c).unwrap();
    let record = rec("x.example.test", RecordType::A, "203.0.113.1");
    for err in [
        p.apply(&[Change::Create { record }]).await.unwrap_err(),
        p.transfer().await.unwrap_err(),
    ] {
        assert!(
            matches!(err, DnsProviderError::TsigRejected { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(KEY_NAME) && msg.contains(&bind.server()),
            "{msg}"
        );
        assert!(
            !msg.contains(wrong) && !msg.contains(bind.secret()),
            "{msg}"
        );
    }

    // An unknown key name: also rejected, naming it.
    let mut c = bind.config(ZONE);
    c.key_name = "no-such-key".into();
    let err = Rfc2136::new(&c).unwrap().transfer().await.unwrap_err();
    assert!(
        matches!(err, DnsProviderError::TsigRejected { ref code, .. } if code == "BADKEY"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-key"), "{err}");

    // The right key with another algorithm than the server's.
    let mut c = bind.config(ZONE);
    c.algorithm = "hmac-sha512".into();
    let err = Rfc2136::new(&c).unwrap().transfer().await.unwrap_err();
    assert!(
        matches!(err, DnsProviderError::TsigRejected { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("hmac-sha512"), "{err}");
}

#[tokio::test]
async fn zone_without_allow_update_is_refused_with_the_bind_hint() {
    let Some(bind) = start(&[
        TestZone::new("locked.test", "").read_only(),
        TestZone::new("secret.test", "").no_transfer(),
    ]) else {
        return;
    };
    let p = provider(&bind, "locked.test");
    // Reading is allowed (allow-transfer), updating is not.
    p.transfer().await.unwrap();
    let err = p
        .apply(&[Change::Create {
            record: rec("x.locked.test", RecordType::A, "203.0.113.1"),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, DnsProviderError::Refused { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("allow-update { key autogit-test-key; };")
            && !msg.contains("allow-transfer")
            && msg.contains("locked.test"),
        "{msg}"
    );

    // Updates allowed, transfers not: `dns plan` cannot read the zone, and says which setting.
    let p = provider(&bind, "secret.test");
    p.apply(&[Change::Create {
        record: rec("x.secret.test", RecordType::A, "203.0.113.1"),
    }])
    .await
    .unwrap();
    let err = p.transfer().await.unwrap_err();
    assert!(matches!(err, DnsProviderError::Refused { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("allow-transfer { key autogit-test-key; };"),
        "{err}"
    );

    // A zone the server does not serve at all.
    let p = provider(&bind, "other.test");
    let transfer = p.transfer().await.unwrap_err();
    let update = p
        .apply(&[Change::Create {
            record: rec("x.other.test", RecordType::A, "203.0.113.1"),
        }])
        .await
        .unwrap_err();
    for err in [transfer, update] {
        assert!(matches!(err, DnsProviderError::NotAuth { .. }), "{err:?}");
        assert!(err.to_string().contains("other.test"), "{err}");
    }
}

#[tokio::test]
async fn no_server_is_a_connect_error_and_a_silent_one_a_timeout() {
    let config = |server: String| Rfc2136Config {
        server,
        zone: ZONE.into(),
        key_name: KEY_NAME.into(),
        algorithm: "hmac-sha256".into(),
        secret: SecretString::from("c2VjcmV0".to_owned()),
        timeout: Duration::from_millis(500),
    };
    // Nothing listens on a port that was just free.
    let server = format!("127.0.0.1:{}", free_port());
    let err = Rfc2136::new(&config(server.clone()))
        .unwrap()
        .transfer()
        .await
        .unwrap_err();
    assert!(matches!(err, DnsProviderError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&server), "{err}");

    // Something accepts the connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = silent.local_addr().unwrap().to_string();
    let err = Rfc2136::new(&config(server.clone()))
        .unwrap()
        .apply(&[Change::Create {
            record: rec("x.example.test", RecordType::A, "203.0.113.1"),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, DnsProviderError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&server), "{err}");
    drop(silent);
}
