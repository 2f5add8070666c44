//! The Route 53 provider against a fake Route 53 (`route53_fake`) that checks every SigV4
//! signature: pagination, RRset semantics (a second TXT value upserts the set with both, deleting
//! one upserts the rest, the last one deletes the set), INSYNC polling, ownership through
//! `dns_plan`, and the errors a user meets (wrong secret, unknown key, no permission, wrong zone).

mod route53_fake;

mod dns_support;

use autogit_core::dns::{Change, Record, RecordType, desired_records};
use autogit_core::platform::DnsMode;
use autogit_drivers::dns::route53::{Route53, Route53Config};
use autogit_drivers::dns::{DnsProvider, DnsProviderError};
use dns_support::{PROJECT, ZONE, sync, target};
use route53_fake::{ACCESS_KEY, Fake, READ_ONLY_KEY, SECRET_KEY, ZONE_ID};
use secrecy::SecretString;
use std::time::Duration;

fn config(fake: &Fake, key: &str, secret: &str) -> Route53Config {
    Route53Config {
        endpoint: fake.url.clone(),
        access_key_id: key.into(),
        secret_access_key: SecretString::from(secret.to_owned()),
        session_token: None,
        hosted_zone_id: format!("/hostedzone/{ZONE_ID}"),
        zone: ZONE.into(),
        timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
        insync_timeout: Duration::from_secs(10),
    }
}

fn provider(fake: &Fake) -> Route53 {
    Route53::new(&config(fake, ACCESS_KEY, SECRET_KEY)).unwrap()
}

#[tokio::test]
async fn lists_every_page_syncs_and_waits_for_insync() {
    let fake = Fake::start(ZONE).await;
    {
        let mut st = fake.state();
        st.max_items = 2;
        st.pending_polls = 2;
        st.add(&format!("mail.{ZONE}"), "A", 300, &["198.51.100.25"]);
        st.add(&format!("mail.{ZONE}"), "TXT", 300, &["\"v=spf1 -all\""]);
    }
    let p = provider(&fake);
    let listed = p.list(&[]).await.unwrap();
    // SOA, NS, and the two foreign records, over two pages.
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(listed.contains(&Record::new(
        &format!("mail.{ZONE}"),
        RecordType::Txt,
        "v=spf1 -all",
        300
    )));
    let pages = fake
        .state()
        .requests
        .iter()
        .filter(|r| r.contains("/rrset?"))
        .count();
    assert_eq!(pages, 2, "{:?}", fake.state().requests);

    let desired = desired_records(&target(DnsMode::Wildcard, "203.0.113.7", &[]), PROJECT);
    let plan = sync(&p, &desired).await;
    assert_eq!(plan.changes.len(), 4, "{plan}");
    // One batch, then GetChange until INSYNC (two PENDING answers first).
    assert_eq!(fake.state().batches.len(), 1);
    let polls = fake
        .state()
        .requests
        .iter()
        .filter(|r| r.contains("/change/"))
        .count();
    assert_eq!(polls, 3);
    // The wildcard is listed back as `*` (Route 53 writes `\052`).
    let after = p.list(&[]).await.unwrap();
    for r in &desired {
        assert!(after.contains(r), "{r} missing from {after:?}");
    }
    let again = sync(&p, &desired).await;
    assert!(again.is_empty(), "{again}");
    assert_eq!(fake.state().batches.len(), 1, "a second sync wrote");

    // A new address: UPSERT of the sets; foreign records untouched.
    let moved = desired_records(&target(DnsMode::Wildcard, "203.0.113.8", &[]), PROJECT);
    sync(&p, &moved).await;
    {
        let st = fake.state();
        assert_eq!(
            st.set(&format!("*.{ZONE}"), "A").unwrap().values,
            ["203.0.113.8"]
        );
        assert_eq!(
            st.set(&format!("mail.{ZONE}"), "A").unwrap().values,
            ["198.51.100.25"]
        );
    }

    // Per-service: the wildcard and its owner go (DELETE of the sets), gitlab comes.
    let per = desired_records(
        &target(DnsMode::PerService, "203.0.113.8", &["gitlab"]),
        PROJECT,
    );
    sync(&p, &per).await;
    let st = fake.state();
    assert!(st.set(&format!("*.{ZONE}"), "A").is_none());
    assert!(
        st.set(&format!("_autogit._wildcard.{ZONE}"), "TXT")
            .is_none()
    );
    assert_eq!(
        st.set(&format!("gitlab.{ZONE}"), "A").unwrap().values,
        ["203.0.113.8"]
    );
}

#[tokio::test]
async fn two_txt_values_share_one_rrset() {
    let fake = Fake::start(ZONE).await;
    let p = provider(&fake);
    let name = format!("_acme-challenge.{ZONE}");
    let a = Record::new(&name, RecordType::Txt, "token-for-wildcard", 60);
    let b = Record::new(&name, RecordType::Txt, "token-for-apex", 60);
    // One after the other, as two challenges may be added.
    p.apply(&[Change::Create { record: a.clone() }])
        .await
        .unwrap();
    p.apply(&[Change::Create { record: b.clone() }])
        .await
        .unwrap();
    assert_eq!(
        fake.state().set(&name, "TXT").unwrap().values,
        ["\"token-for-wildcard\"", "\"token-for-apex\""]
    );
    let listed = p.list(std::slice::from_ref(&name)).await.unwrap();
    assert!(listed.contains(&a) && listed.contains(&b), "{listed:?}");
    assert!(fake.state().batches[1].contains("<Action>UPSERT</Action>"));

    // Deleting one value upserts the other.
    p.apply(&[Change::Delete { record: a.clone() }])
        .await
        .unwrap();
    assert_eq!(
        fake.state().set(&name, "TXT").unwrap().values,
        ["\"token-for-apex\""]
    );
    // Deleting the last deletes the set.
    p.apply(&[Change::Delete { record: b.clone() }])
        .await
        .unwrap();
    assert!(fake.state().set(&name, "TXT").is_none());
    assert!(fake.state().batches[3].contains("<Action>DELETE</Action>"));
}

#[tokio::test]
async fn errors_say_what_to_check() {
    let fake = Fake::start(ZONE).await;
    // A wrong secret: the fake recomputes the signature and refuses it.
    let wrong = Route53::new(&config(&fake, ACCESS_KEY, "not-the-secret")).unwrap();
    let e = wrong.list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::Auth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("SignatureDoesNotMatch") && msg.contains("AWS_SECRET_ACCESS_KEY"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-secret"), "the secret leaks: {msg}");

    // An unknown key.
    let unknown = Route53::new(&config(&fake, "AKIANOSUCHKEY0000000", SECRET_KEY)).unwrap();
    let e = unknown.list(&[]).await.unwrap_err();
    assert!(e.to_string().contains("InvalidClientTokenId"), "{e}");

    // A key that may read but not change.
    let ro = Route53::new(&config(&fake, READ_ONLY_KEY, SECRET_KEY)).unwrap();
    ro.list(&[]).await.unwrap();
    let e = ro
        .apply(&[Change::Create {
            record: Record::new(ZONE, RecordType::A, "203.0.113.7", 300),
        }])
        .await
        .unwrap_err();
    assert!(matches!(e, DnsProviderError::Forbidden { .. }), "{e:?}");
    assert!(
        e.to_string().contains("route53:ChangeResourceRecordSets"),
        "{e}"
    );

    // A hosted zone id that does not exist.
    let mut c = config(&fake, ACCESS_KEY, SECRET_KEY);
    c.hosted_zone_id = "ZNOSUCHZONE".into();
    let e = Route53::new(&c).unwrap().list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::ZoneNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("AWS_HOSTED_ZONE_ID"), "{e}");

    // Throttled: retried with backoff, then served.
    fake.state().throttle = 1;
    provider(&fake).list(&[]).await.unwrap();

    // Nothing listening.
    let mut c = config(&fake, ACCESS_KEY, SECRET_KEY);
    c.endpoint = "http://127.0.0.1:9".into();
    let e = Route53::new(&c).unwrap().list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::Http { .. }), "{e:?}");
}

#[tokio::test]
async fn a_set_changed_between_read_and_change_is_zone_changed() {
    let fake = Fake::start(ZONE).await;
    fake.state().pending_polls = 0;
    let p = provider(&fake);
    let name = format!("_acme-challenge.{ZONE}");
    let one = Record::new(&name, RecordType::Txt, "one", 60);
    p.apply(&[Change::Create {
        record: one.clone(),
    }])
    .await
    .unwrap();
    // Another writer adds a value after autogit read the set: Route 53 refuses the DELETE of
    // the set as read, and applies nothing.
    fake.state().interfere = Some(route53_fake::Set {
        name: name.clone(),
        kind: "TXT".into(),
        ttl: 60,
        values: vec!["\"one\"".into(), "\"other\"".into()],
    });
    let e = p
        .apply(&[Change::Delete { record: one }])
        .await
        .unwrap_err();
    assert!(matches!(e, DnsProviderError::ZoneChanged { .. }), "{e:?}");
    assert_eq!(
        fake.state().set(&name, "TXT").unwrap().values,
        ["\"one\"", "\"other\""]
    );
}
