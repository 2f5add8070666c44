//! Shared by the DNS provider tests (BIND, dnsmasq and the fakes of Cloudflare, Route 53 and
//! Cloud DNS): the zone, the owner, the target and one plan-and-apply round.

use autogit_core::dns::{DnsPlan, DnsTarget, Record, dns_plan};
use autogit_core::platform::DnsMode;
use autogit_drivers::dns::DnsProvider;

/// The zone every provider test manages.
pub const ZONE: &str = "example.test";
/// The owner written into the ownership TXT records.
pub const PROJECT: &str = "autogit";

/// The target of `ZONE` with ingress `ip` (TTL 300).
pub fn target(mode: DnsMode, ip: &str, subdomains: &[&str]) -> DnsTarget {
    DnsTarget {
        base_domain: ZONE.into(),
        ingress_ip: ip.parse().unwrap(),
        mode,
        ttl: 300,
        subdomains: subdomains.iter().map(|s| (*s).to_owned()).collect(),
        proxied: Vec::new(),
    }
}

/// Plan against the zone as the provider lists it, apply, and return the plan.
pub async fn sync<P: DnsProvider>(p: &P, desired: &[Record]) -> DnsPlan {
    let observed = p.list(&[]).await.unwrap();
    let plan = dns_plan(desired, &observed, PROJECT);
    p.apply(&plan.changes).await.unwrap();
    plan
}
