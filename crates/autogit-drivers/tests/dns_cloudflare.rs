//! The Cloudflare provider against a fake Cloudflare API (`cloudflare_fake`): pagination,
//! two TXT values at one name (ACME's wildcard + apex), ownership through `dns_plan`, and the
//! errors a user meets (bad token, token without DNS edit, unknown zone, rate limit).

mod cloudflare_fake;

mod dns_support;

use autogit_core::dns::{Change, ConflictReason, Record, RecordType, desired_records};
use autogit_core::platform::DnsMode;
use autogit_drivers::dns::cloudflare::{Cloudflare, CloudflareConfig};
use autogit_drivers::dns::{DnsProvider, DnsProviderError};
use cloudflare_fake::{Fake, READ_ONLY_TOKEN, TOKEN};
use dns_support::{PROJECT, ZONE, sync, target};
use secrecy::SecretString;
use std::time::Duration;

fn provider(fake: &Fake, token: &str) -> Cloudflare {
    Cloudflare::new(&CloudflareConfig {
        api_url: fake.url.clone(),
        token: SecretString::from(token.to_owned()),
        zone: ZONE.into(),
        zone_id: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

#[tokio::test]
async fn lists_every_page_and_syncs_with_ownership() {
    let fake = Fake::start(&["other.test", ZONE]).await;
    {
        let mut st = fake.state();
        st.max_per_page = 5;
        for i in 0..12 {
            st.add(ZONE, "A", &format!("host{i}.{ZONE}"), "198.51.100.1", 300);
        }
        st.add(ZONE, "TXT", &format!("mail.{ZONE}"), "\"v=spf1 -all\"", 300);
    }
    let p = provider(&fake, TOKEN);
    let listed = p.list(&[]).await.unwrap();
    assert_eq!(listed.len(), 13, "{listed:?}");
    // Quoted TXT content is read as its value.
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
        .filter(|r| r.contains("/dns_records?"))
        .count();
    assert_eq!(pages, 3, "{:?}", fake.state().requests);

    let desired = desired_records(&target(DnsMode::Wildcard, "203.0.113.7", &[]), PROJECT);
    let plan = sync(&p, &desired).await;
    assert_eq!(plan.changes.len(), 4, "{plan}");
    let after = p.list(&[]).await.unwrap();
    for r in &desired {
        assert!(after.contains(r), "{r} missing from {after:?}");
    }
    // A records are not proxied: they point at the ingress itself.
    assert!(fake.state().records.iter().all(|r| !r.proxied));
    // Second sync: nothing to do, no write.
    let writes = fake.state().writes();
    let again = sync(&p, &desired).await;
    assert!(again.is_empty(), "{again}");
    assert_eq!(fake.state().writes(), writes);

    // New address: updated in place (PATCH), foreign records untouched.
    let moved = desired_records(&target(DnsMode::Wildcard, "203.0.113.8", &[]), PROJECT);
    let plan = sync(&p, &moved).await;
    assert!(
        plan.changes
            .iter()
            .all(|c| matches!(c, Change::Update { .. })),
        "{plan}"
    );
    assert!(fake.state().requests.iter().any(|r| r.starts_with("PATCH")));
    let after = p.list(&[]).await.unwrap();
    assert_eq!(after.len(), 13 + 4);
    assert!(after.contains(&Record::new(ZONE, RecordType::A, "203.0.113.8", 300)));

    // Per-service mode: the wildcard and apex go (they are ours), gitlab comes.
    let per = desired_records(
        &target(DnsMode::PerService, "203.0.113.8", &["gitlab"]),
        PROJECT,
    );
    sync(&p, &per).await;
    let after = p.list(&[]).await.unwrap();
    assert!(!after.iter().any(|r| r.name == format!("*.{ZONE}")));
    assert!(after.contains(&Record::new(
        &format!("gitlab.{ZONE}"),
        RecordType::A,
        "203.0.113.8",
        300
    )));
    assert_eq!(after.len(), 13 + 2);
}

#[tokio::test]
async fn two_txt_values_at_one_name_coexist_and_delete_one_by_one() {
    let fake = Fake::start(&[ZONE]).await;
    let p = provider(&fake, TOKEN);
    let name = format!("_acme-challenge.{ZONE}");
    let a = Record::new(&name, RecordType::Txt, "token-for-wildcard", 60);
    let b = Record::new(&name, RecordType::Txt, "token-for-apex", 60);
    p.apply(&[
        Change::Create { record: a.clone() },
        Change::Create { record: b.clone() },
    ])
    .await
    .unwrap();
    let listed = p.list(std::slice::from_ref(&name)).await.unwrap();
    assert!(listed.contains(&a) && listed.contains(&b), "{listed:?}");
    p.apply(&[Change::Delete { record: a.clone() }])
        .await
        .unwrap();
    let listed = p.list(std::slice::from_ref(&name)).await.unwrap();
    assert_eq!(listed, vec![b.clone()]);
    // A provider that never listed finds the id by name and type.
    let fresh = provider(&fake, TOKEN);
    fresh
        .apply(&[Change::Delete { record: b.clone() }])
        .await
        .unwrap();
    assert!(fake.state().records.is_empty());
}

#[tokio::test]
async fn records_it_does_not_own_are_conflicts_and_left_alone() {
    let fake = Fake::start(&[ZONE]).await;
    fake.state()
        .add(ZONE, "A", &format!("gitlab.{ZONE}"), "198.51.100.9", 300);
    fake.state().add(
        ZONE,
        "TXT",
        &format!("_autogit.grafana.{ZONE}"),
        "heritage=autogit,owner=someone-else",
        300,
    );
    let p = provider(&fake, TOKEN);
    let desired = desired_records(
        &target(DnsMode::PerService, "203.0.113.7", &["gitlab", "grafana"]),
        PROJECT,
    );
    let plan = sync(&p, &desired).await;
    assert!(plan.changes.is_empty(), "{plan}");
    let reasons: Vec<_> = plan.conflicts.iter().map(|c| c.reason).collect();
    assert_eq!(
        reasons,
        [ConflictReason::NotOwned, ConflictReason::OtherOwner]
    );
    assert_eq!(fake.state().records.len(), 2);
    assert_eq!(fake.state().writes(), 0);
}

#[tokio::test]
async fn errors_say_what_to_check() {
    let fake = Fake::start(&[ZONE]).await;
    // Unknown token: 403 code 9109.
    let e = provider(&fake, "wrong").list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::Auth { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("9109") && msg.contains("CLOUDFLARE_API_TOKEN"),
        "{msg}"
    );
    assert!(!msg.contains("wrong"), "the token leaks: {msg}");

    // Read-only token: listing works, writing is 403 code 10000.
    let ro = provider(&fake, READ_ONLY_TOKEN);
    ro.list(&[]).await.unwrap();
    let e = ro
        .apply(&[Change::Create {
            record: Record::new(ZONE, RecordType::A, "203.0.113.7", 300),
        }])
        .await
        .unwrap_err();
    assert!(matches!(e, DnsProviderError::Forbidden { .. }), "{e:?}");
    assert!(e.to_string().contains("Zone:DNS:Edit"), "{e}");

    // A zone the token cannot see.
    let other = Cloudflare::new(&CloudflareConfig {
        api_url: fake.url.clone(),
        token: SecretString::from(TOKEN.to_owned()),
        zone: "nope.test".into(),
        zone_id: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let e = other.list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::ZoneNotFound { .. }), "{e:?}");

    // Cloudflare's own validation message comes through.
    let p = provider(&fake, TOKEN);
    let r = Record::new(ZONE, RecordType::A, "203.0.113.7", 300);
    p.apply(&[Change::Create { record: r.clone() }])
        .await
        .unwrap();
    let e = p.apply(&[Change::Create { record: r }]).await.unwrap_err();
    assert!(e.to_string().contains("81058"), "{e}");

    // 429: retried after Retry-After, then served.
    fake.state().rate_limit = 2;
    p.list(&[]).await.unwrap();
    // Still limited after the retries: a clear error.
    fake.state().rate_limit = 10;
    let e = p.list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::RateLimited { .. }), "{e:?}");
    fake.state().rate_limit = 0;

    // Nothing listening.
    let dead = Cloudflare::new(&CloudflareConfig {
        api_url: "http://127.0.0.1:9/client/v4".into(),
        token: SecretString::from(TOKEN.to_owned()),
        zone: ZONE.into(),
        zone_id: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let e = dead.list(&[]).await.unwrap_err();
    assert!(matches!(e, DnsProviderError::Http { .. }), "{e:?}");
}

#[tokio::test]
async fn proxied_subdomains_are_written_proxied_and_read_back_so_drift_is_fixed() {
    let fake = Fake::start(&[ZONE]).await;
    let p = provider(&fake, TOKEN);
    let mut t = target(DnsMode::Wildcard, "203.0.113.7", &["gitlab", "registry"]);
    t.proxied = vec!["registry".into()];
    let desired = desired_records(&t, PROJECT);
    let plan = sync(&p, &desired).await;
    assert!(plan.conflicts.is_empty(), "{plan}");
    let reg = format!("registry.{ZONE}");
    {
        let st = fake.state();
        let proxied: Vec<(&str, &str, u64)> = st
            .records
            .iter()
            .filter(|r| r.proxied)
            .map(|r| (r.kind.as_str(), r.name.as_str(), r.ttl))
            .collect();
        // Only the registry's A record; the wildcard and apex point at the ingress itself.
        assert_eq!(proxied, [("A", reg.as_str(), 1)], "{:?}", st.records);
    }
    // In sync: the listing reads `proxied` back, so a second round writes nothing.
    let writes = fake.state().writes();
    assert!(sync(&p, &desired).await.is_empty());
    assert_eq!(fake.state().writes(), writes);

    // Someone turns the proxy off in Cloudflare's dashboard: `dns plan` sees it, sync restores it.
    for r in fake
        .state()
        .records
        .iter_mut()
        .filter(|r| r.name == reg && r.kind == "A")
    {
        r.proxied = false;
        r.ttl = 300;
    }
    let observed = p.list(&[]).await.unwrap();
    let drift = autogit_core::dns::dns_plan(&desired, &observed, PROJECT);
    assert_eq!(drift.changes.len(), 1, "{drift}");
    assert!(drift.to_string().contains("proxied"), "{drift}");
    sync(&p, &desired).await;
    assert!(
        fake.state()
            .records
            .iter()
            .any(|r| r.name == reg && r.kind == "A" && r.proxied && r.ttl == 1)
    );

    // Proxy no longer wanted: the extra record and its ownership TXT go; the wildcard stays.
    t.proxied.clear();
    let plain = desired_records(&t, PROJECT);
    sync(&p, &plain).await;
    let st = fake.state();
    assert!(
        st.records
            .iter()
            .all(|r| !r.proxied && !r.name.contains("registry")),
        "{:?}",
        st.records
    );
}

#[tokio::test]
async fn the_fake_rejects_what_cloudflare_rejects_and_the_client_never_sends_it() {
    let fake = Fake::start(&[ZONE]).await;
    let zid = format!("zone{:032x}", 1);
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        http.post(format!("{}/zones/{zid}/dns_records", fake.url))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let txt = serde_json::json!({"type": "TXT", "name": format!("x.{ZONE}"), "content": "v", "ttl": 300, "proxied": true});
    let r = post(txt).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("9004"));
    let not_bool = serde_json::json!({"type": "A", "name": format!("x.{ZONE}"), "content": "203.0.113.7", "ttl": 300, "proxied": "yes"});
    let r = post(not_bool).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("9003"));
    assert!(fake.state().records.is_empty());

    // The production client refuses a proxied TXT before sending anything.
    let p = provider(&fake, TOKEN);
    let bad = Record::new(&format!("x.{ZONE}"), RecordType::Txt, "v", 300).with_proxied(true);
    let writes = fake.state().writes();
    let e = p
        .apply(&[Change::Create { record: bad }])
        .await
        .unwrap_err();
    assert!(matches!(e, DnsProviderError::Config(_)), "{e:?}");
    assert_eq!(fake.state().writes(), writes);
}
