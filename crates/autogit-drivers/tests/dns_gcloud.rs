//! The Google Cloud DNS provider against a fake Cloud DNS and token endpoint (`gcloud_fake`)
//! that verifies every JWT's RS256 signature: the token exchange (and its reuse), pagination,
//! RRset semantics (a second TXT value replaces the set with both, deleting one leaves the other,
//! the last one deletes the set), polling until done, ownership through `dns_plan`, and the
//! errors a user meets (a key file with the wrong key, a read-only account, a wrong zone).

mod gcloud_fake;

mod dns_support;

use autogit_core::dns::{Change, Record, RecordType, desired_records};
use autogit_core::platform::DnsMode;
use autogit_drivers::dns::gcloud::{Gcloud, GcloudConfig, ServiceAccount};
use autogit_drivers::dns::{DnsProvider, DnsProviderError};
use dns_support::{PROJECT as OWNER, ZONE, sync, target};
use gcloud_fake::{EMAIL, Fake, KEY_PEM, MANAGED_ZONE, OTHER_KEY_PEM, PROJECT, READER_EMAIL};
use std::path::Path;
use std::time::Duration;

fn provider(fake: &Fake, email: &str, key: &str) -> Gcloud {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("sa.json");
    fake.write_key_file(&file, email, key);
    let account = ServiceAccount::from_json(
        &std::fs::read_to_string(&file).unwrap(),
        Path::new("sa.json"),
    )
    .unwrap();
    Gcloud::new(&GcloudConfig {
        endpoint: fake.url.clone(),
        project: PROJECT.into(),
        managed_zone: MANAGED_ZONE.into(),
        account,
        zone: ZONE.into(),
        timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
        done_timeout: Duration::from_secs(10),
    })
    .unwrap()
}

#[tokio::test]
async fn lists_every_page_syncs_and_waits_until_done() {
    let fake = Fake::start(ZONE).await;
    {
        let mut st = fake.state();
        st.page_size = 2;
        st.pending_polls = 2;
        st.add(&format!("mail.{ZONE}"), "A", 300, &["198.51.100.25"]);
        st.add(&format!("mail.{ZONE}"), "TXT", 300, &["\"v=spf1 -all\""]);
    }
    let p = provider(&fake, EMAIL, KEY_PEM);
    let listed = p.list(&[]).await.unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(
        fake.state()
            .requests
            .iter()
            .any(|r| r.contains("pageToken=2")),
        "{:?}",
        fake.state().requests
    );
    assert!(listed.contains(&Record::new(
        &format!("mail.{ZONE}"),
        RecordType::Txt,
        "v=spf1 -all",
        300
    )));

    let desired = desired_records(&target(DnsMode::Wildcard, "203.0.113.7", &[]), OWNER);
    let plan = sync(&p, &desired).await;
    assert_eq!(plan.changes.len(), 4, "{plan}");
    assert_eq!(fake.state().changes_received.len(), 1);
    let after = p.list(&[]).await.unwrap();
    for r in &desired {
        assert!(after.contains(r), "{r} missing from {after:?}");
    }
    // One token for the whole session.
    assert_eq!(fake.state().issued, 1);

    let again = sync(&p, &desired).await;
    assert!(again.is_empty(), "{again}");
    assert_eq!(fake.state().changes_received.len(), 1);

    // A new address: the sets are replaced in one change; foreign records untouched.
    let moved = desired_records(&target(DnsMode::Wildcard, "203.0.113.8", &[]), OWNER);
    sync(&p, &moved).await;
    {
        let st = fake.state();
        assert_eq!(
            st.set(&format!("*.{ZONE}"), "A").unwrap().rrdatas,
            ["203.0.113.8"]
        );
        assert_eq!(
            st.set(&format!("mail.{ZONE}"), "A").unwrap().rrdatas,
            ["198.51.100.25"]
        );
    }
    // Per-service: the wildcard goes, gitlab comes.
    let per = desired_records(
        &target(DnsMode::PerService, "203.0.113.8", &["gitlab"]),
        OWNER,
    );
    sync(&p, &per).await;
    let st = fake.state();
    assert!(st.set(&format!("*.{ZONE}"), "A").is_none());
    assert_eq!(
        st.set(&format!("gitlab.{ZONE}"), "A").unwrap().rrdatas,
        ["203.0.113.8"]
    );
}

#[tokio::test]
async fn two_txt_values_share_one_rrset() {
    let fake = Fake::start(ZONE).await;
    fake.state().pending_polls = 0;
    let p = provider(&fake, EMAIL, KEY_PEM);
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
        fake.state().set(&name, "TXT").unwrap().rrdatas,
        ["\"token-for-wildcard\"", "\"token-for-apex\""]
    );
    let listed = p.list(std::slice::from_ref(&name)).await.unwrap();
    assert!(listed.contains(&a) && listed.contains(&b), "{listed:?}");
    p.apply(&[Change::Delete { record: a }]).await.unwrap();
    assert_eq!(
        fake.state().set(&name, "TXT").unwrap().rrdatas,
        ["\"token-for-apex\""]
    );
    p.apply(&[Change::Delete { record: b }]).await.unwrap();
    assert!(fake.state().set(&name, "TXT").is_none());
}

#[tokio::test]
async fn errors_say_what_to_check() {
    let fake = Fake::start(ZONE).await;
    // A key file holding another key: the JWT signature does not verify.
    let e = provider(&fake, EMAIL, OTHER_KEY_PEM)
        .list(&[])
        .await
        .unwrap_err();
    assert!(matches!(e, DnsProviderError::Auth { .. }), "{e:?}");
    assert!(
        e.to_string().contains("Invalid JWT Signature")
            && e.to_string().contains("GCP_SERVICE_ACCOUNT_FILE"),
        "{e}"
    );

    // A read-only account: listing works, changing is 403.
    let reader = provider(&fake, READER_EMAIL, KEY_PEM);
    reader.list(&[]).await.unwrap();
    let e = reader
        .apply(&[Change::Create {
            record: Record::new(ZONE, RecordType::A, "203.0.113.7", 300),
        }])
        .await
        .unwrap_err();
    assert!(matches!(e, DnsProviderError::Forbidden { .. }), "{e:?}");
    assert!(e.to_string().contains("roles/dns.admin"), "{e}");

    // A managed zone that does not exist.
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("sa.json");
    fake.write_key_file(&file, EMAIL, KEY_PEM);
    let account =
        ServiceAccount::from_json(&std::fs::read_to_string(&file).unwrap(), &file).unwrap();
    let wrong_zone = Gcloud::new(&GcloudConfig {
        endpoint: fake.url.clone(),
        project: PROJECT.into(),
        managed_zone: "no-such-zone".into(),
        account,
        zone: ZONE.into(),
        timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
        done_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let e = wrong_zone.list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::ZoneNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("GCP_MANAGED_ZONE"), "{e}");

    // Rate limited: retried with backoff, then served.
    fake.state().rate_limit = 1;
    provider(&fake, EMAIL, KEY_PEM).list(&[]).await.unwrap();

    // Not a key file.
    assert!(ServiceAccount::from_json("{\"type\": \"user\"}", Path::new("x.json")).is_err());
}

#[tokio::test]
async fn a_set_changed_between_read_and_change_is_zone_changed() {
    let fake = Fake::start(ZONE).await;
    fake.state().pending_polls = 0;
    let p = provider(&fake, EMAIL, KEY_PEM);
    let name = format!("_acme-challenge.{ZONE}");
    let one = Record::new(&name, RecordType::Txt, "one", 60);
    p.apply(&[Change::Create {
        record: one.clone(),
    }])
    .await
    .unwrap();
    // Another writer adds a value after autogit read the set: 412, nothing applied.
    fake.state().interfere = Some(gcloud_fake::Set {
        name: format!("{name}."),
        kind: "TXT".into(),
        ttl: 60,
        rrdatas: vec!["\"one\"".into(), "\"other\"".into()],
    });
    let two = Record::new(&name, RecordType::Txt, "two", 60);
    let e = p
        .apply(&[Change::Create { record: two }])
        .await
        .unwrap_err();
    assert!(matches!(e, DnsProviderError::ZoneChanged { .. }), "{e:?}");
    assert!(e.to_string().contains("412"), "{e}");
    assert_eq!(
        fake.state().set(&name, "TXT").unwrap().rrdatas,
        ["\"one\"", "\"other\""]
    );
}
