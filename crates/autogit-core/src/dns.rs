//! DNS records: what the platform needs (from the plan and the `.env` registry) and the diff
//! against what a zone holds. Pure: a driver (`autogit_drivers::dns`) reads the zone and applies
//! the changes.
//!
//! ## Ownership, in the manner of external-dns
//!
//! Every address name autogit manages carries an ownership TXT record next to it:
//!
//! ```text
//! gitlab.example.com.                 A    203.0.113.7
//! _autogit.gitlab.example.com.        TXT  "heritage=autogit,owner=autogit"
//! *.example.com.                      A    203.0.113.7
//! _autogit._wildcard.example.com.     TXT  "heritage=autogit,owner=autogit"
//! ```
//!
//! The owner name is `_autogit.` followed by the name, with a leading `*` label written as
//! `_wildcard` (a `*` may only be the leftmost label). The value names the project, so two
//! autogit installations sharing a zone do not take each other's records.
//!
//! **Invariant:** [`dns_plan`] never updates or deletes a record at a name that lacks our
//! ownership TXT. A foreign record where we want one is reported as a [`Conflict`] and left as
//! it is; so is a name owned by another project.

use crate::plan::Plan;
use crate::platform::{DnsMode, PlatformEnv};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// The TTL of a proxied record: Cloudflare's "automatic", the only TTL its proxy keeps (the
/// API stores 1 whatever is sent, so any other value would read back as drift).
pub const PROXIED_TTL: u32 = 1;
/// TTL used when `DNS_TTL` is not set, in seconds.
pub const DEFAULT_TTL: u32 = 300;
/// First label of every ownership TXT name.
pub const OWNER_LABEL: &str = "_autogit";
/// How a leading `*` label is spelt inside an ownership name.
pub const WILDCARD_LABEL: &str = "_wildcard";

/// Why the desired records cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("BASE_DOMAIN is not set: there is no zone to manage; set BASE_DOMAIN in .env")]
    NoBaseDomain,
    #[error(
        "INGRESS_IP is not set: DNS records need the address of the ingress; set INGRESS_IP in .env"
    )]
    NoIngressIp,
    #[error("INGRESS_IP `{0}` is not an IP address")]
    BadIngressIp(String),
}

/// The record types autogit manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "TXT")]
    Txt,
    /// Any other type seen in a zone (SOA, NS, MX...). Never created or changed by autogit;
    /// only CNAME blocks a desired name (see [`RecordType::blocks_address`]).
    #[serde(rename = "CNAME")]
    Cname,
    Other,
}

impl RecordType {
    /// The type of a type name as zone files and provider APIs spell it (`A`, `AAAA`, `TXT`,
    /// `CNAME`); anything else is `Other`. The inverse of [`RecordType::as_str`].
    pub fn from_name(name: &str) -> RecordType {
        match name {
            "A" => RecordType::A,
            "AAAA" => RecordType::Aaaa,
            "TXT" => RecordType::Txt,
            "CNAME" => RecordType::Cname,
            _ => RecordType::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Txt => "TXT",
            RecordType::Cname => "CNAME",
            RecordType::Other => "OTHER",
        }
    }

    /// A, AAAA: the types that point a name at the ingress.
    pub fn is_address(self) -> bool {
        matches!(self, RecordType::A | RecordType::Aaaa)
    }

    /// Whether a record of this type at a name keeps autogit from putting an address there.
    pub fn blocks_address(self) -> bool {
        matches!(self, RecordType::A | RecordType::Aaaa | RecordType::Cname)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource record, in canonical form: the name lower-case without the trailing dot, the
/// value as text (an address as `IpAddr` displays it; a TXT value unquoted, its strings joined).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Record {
    pub name: String,
    pub kind: RecordType,
    pub value: String,
    pub ttl: u32,
    /// Served through Cloudflare's proxy (`proxied: true`): the name resolves to Cloudflare's
    /// edge, which forwards HTTP(S) to `value`. Only Cloudflare records carry it; only A/AAAA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxied: bool,
}

impl Record {
    pub fn new(name: &str, kind: RecordType, value: impl Into<String>, ttl: u32) -> Self {
        Self {
            name: canonical_name(name),
            kind,
            value: value.into(),
            ttl,
            proxied: false,
        }
    }

    /// The same record, proxied or not.
    pub fn with_proxied(mut self, proxied: bool) -> Self {
        self.proxied = proxied;
        self
    }

    /// The A or AAAA record for `ip`.
    pub fn address(name: &str, ip: IpAddr, ttl: u32) -> Self {
        let kind = match ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::Aaaa,
        };
        Self::new(name, kind, ip.to_string(), ttl)
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RecordType::Txt => write!(f, "{} {} TXT \"{}\"", self.name, self.ttl, self.value)?,
            k => write!(f, "{} {} {k} {}", self.name, self.ttl, self.value)?,
        }
        if self.proxied {
            f.write_str(" proxied")?;
        }
        Ok(())
    }
}

/// Lower-case, without the trailing dot.
pub fn canonical_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The name of the ownership TXT record for `name`.
pub fn owner_name(name: &str) -> String {
    let name = canonical_name(name);
    match name.strip_prefix("*.") {
        Some(rest) => format!("{OWNER_LABEL}.{WILDCARD_LABEL}.{rest}"),
        None if name == "*" => format!("{OWNER_LABEL}.{WILDCARD_LABEL}"),
        None => format!("{OWNER_LABEL}.{name}"),
    }
}

/// The name an ownership TXT name stands for, or `None` when `owner` is not one.
pub fn owned_name(owner: &str) -> Option<String> {
    let owner = canonical_name(owner);
    let rest = owner.strip_prefix(OWNER_LABEL)?.strip_prefix('.')?;
    Some(match rest.strip_prefix(WILDCARD_LABEL) {
        Some("") => "*".to_owned(),
        Some(r) if r.starts_with('.') => format!("*{r}"),
        _ => rest.to_owned(),
    })
}

/// The value of our ownership TXT record for `project`.
pub fn owner_value(project: &str) -> String {
    format!("heritage=autogit,owner={project}")
}

/// What autogit wants in the zone, before the ownership records are added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsTarget {
    /// The zone apex, canonical.
    pub base_domain: String,
    pub ingress_ip: IpAddr,
    pub mode: DnsMode,
    pub ttl: u32,
    /// Subdomains of routed services (per-service mode), without the base domain.
    pub subdomains: Vec<String>,
    /// Subdomains whose records Cloudflare proxies (CLOUDFLARE_PROXIED), canonical. In
    /// wildcard mode each gets its own proxied record, which wins over the wildcard.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxied: Vec<String>,
}

impl DnsTarget {
    /// From the plan (routed services) and the registry (BASE_DOMAIN, INGRESS_IP, DNS_MODE).
    pub fn from_plan(plan: &Plan, env: &PlatformEnv, ttl: u32) -> Result<Self, DnsError> {
        let base = env
            .base_domain
            .as_deref()
            .or(plan.base_domain.as_deref())
            .ok_or(DnsError::NoBaseDomain)?;
        let ip_text = env.ingress_ip.as_deref().ok_or(DnsError::NoIngressIp)?;
        let ingress_ip = ip_text
            .parse()
            .map_err(|_| DnsError::BadIngressIp(ip_text.to_owned()))?;
        let mut subdomains: Vec<String> = plan
            .routed_subdomains()
            .iter()
            .map(|h| canonical_name(h))
            .collect();
        subdomains.sort();
        subdomains.dedup();
        Ok(Self {
            base_domain: canonical_name(base),
            ingress_ip,
            mode: env.dns_mode,
            ttl,
            // Only routed services can be proxied (an unknown name is `diagnose`'s to report).
            proxied: env
                .cloudflare_proxied
                .iter()
                .map(|s| canonical_name(s))
                .filter(|s| subdomains.contains(s))
                .collect(),
            subdomains,
        })
    }

    /// The address records: `*.BASE` and `BASE` (wildcard), or `<sub>.BASE` per routed service;
    /// a proxied subdomain's record is `proxied` with [`PROXIED_TTL`] (in wildcard mode it is
    /// added next to the wildcard, which stays unproxied for everything else).
    pub fn address_records(&self) -> Vec<Record> {
        let base = &self.base_domain;
        let mut names: Vec<String> = match self.mode {
            DnsMode::Wildcard => vec![format!("*.{base}"), base.clone()],
            DnsMode::PerService => self
                .subdomains
                .iter()
                .map(|s| format!("{s}.{base}"))
                .collect(),
        };
        names.extend(self.proxied.iter().map(|s| format!("{s}.{base}")));
        names.sort();
        names.dedup();
        let proxied = |n: &str| {
            n.strip_suffix(&format!(".{base}"))
                .is_some_and(|s| self.proxied.iter().any(|p| p == s))
        };
        let mut v: Vec<Record> = names
            .iter()
            .map(|n| {
                if proxied(n) {
                    Record::address(n, self.ingress_ip, PROXIED_TTL).with_proxied(true)
                } else {
                    Record::address(n, self.ingress_ip, self.ttl)
                }
            })
            .collect();
        v.sort();
        v
    }
}

/// The desired zone content: address records plus one ownership TXT per address name.
pub fn desired_records(target: &DnsTarget, project: &str) -> Vec<Record> {
    let mut v = target.address_records();
    let owners: BTreeSet<String> = v.iter().map(|r| owner_name(&r.name)).collect();
    v.extend(
        owners
            .iter()
            .map(|n| Record::new(n, RecordType::Txt, owner_value(project), target.ttl)),
    );
    v.sort();
    v
}

/// The records autogit wants, with records added through the API (`extra`): each also gets
/// its ownership record, so a sync manages it like the platform's own.
pub fn desired_records_with(target: &DnsTarget, project: &str, extra: &[Record]) -> Vec<Record> {
    let mut v = target.address_records();
    v.extend(extra.iter().cloned());
    let owners: BTreeSet<String> = v.iter().map(|r| owner_name(&r.name)).collect();
    v.extend(
        owners
            .iter()
            .map(|n| Record::new(n, RecordType::Txt, owner_value(project), target.ttl)),
    );
    v.sort();
    v.dedup();
    v
}

/// A record asked for through the API, checked: A, AAAA or TXT; a valid name under the base
/// domain that is neither a platform name nor an ownership or ACME name; a value of its
/// type; a TTL of 60 to 86400 seconds. The error says which part is wrong.
pub fn check_extra(
    target: &DnsTarget,
    name: &str,
    kind: &str,
    value: &str,
    ttl: u32,
) -> Result<Record, (&'static str, String)> {
    let kind = match kind {
        "A" => RecordType::A,
        "AAAA" => RecordType::Aaaa,
        "TXT" => RecordType::Txt,
        other => {
            return Err((
                "type",
                format!(
                    "`{}` cannot be created here: use A, AAAA or TXT",
                    other.escape_default()
                ),
            ));
        }
    };
    let name = canonical_name(name);
    let base = &target.base_domain;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err((
            "name",
            "not a valid DNS name (letters, digits, `-`, `_`; labels of 1 to 63)".into(),
        ));
    }
    if name != *base && !name.ends_with(&format!(".{base}")) {
        return Err(("name", format!("must be {base} or under it")));
    }
    if name.starts_with(&format!("{OWNER_LABEL}.")) || name.starts_with("_acme-challenge.") {
        return Err((
            "name",
            "ownership and ACME challenge names are autogit's".into(),
        ));
    }
    if kind.is_address() && target.address_records().iter().any(|r| r.name == name) {
        return Err((
            "name",
            "the platform already points this name at the ingress".into(),
        ));
    }
    let value = value.trim();
    let ok = match kind {
        RecordType::A => value.parse::<std::net::Ipv4Addr>().is_ok(),
        RecordType::Aaaa => value.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => {
            !value.is_empty()
                && value.len() <= 1024
                && value
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"')
        }
    };
    if !ok {
        return Err((
            "value",
            match kind {
                RecordType::A => "an IPv4 address".into(),
                RecordType::Aaaa => "an IPv6 address".into(),
                _ => "1 to 1024 printable ASCII characters without `\"`".into(),
            },
        ));
    }
    if !(60..=86_400).contains(&ttl) {
        return Err(("ttl", "between 60 and 86400 seconds".into()));
    }
    let value = match kind {
        RecordType::A | RecordType::Aaaa => value
            .parse::<IpAddr>()
            .map_or(value.to_owned(), |ip| ip.to_string()),
        _ => value.to_owned(),
    };
    Ok(Record::new(&name, kind, value, ttl))
}

/// One change to a zone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// Add the record (RFC 2136 "add to an RRset": other values at the name stay).
    Create { record: Record },
    /// Replace exactly `from` with `to` (same name and type).
    Update { from: Record, to: Record },
    /// Remove exactly this record (name, type and value).
    Delete { record: Record },
}

impl Change {
    /// The name the change touches.
    pub fn name(&self) -> &str {
        match self {
            Change::Create { record } | Change::Delete { record } => &record.name,
            Change::Update { to, .. } => &to.name,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create { record } => write!(f, "+ {record}"),
            Change::Update { from, to } => {
                write!(f, "~ {from} -> {} {}", to.ttl, to.value)?;
                match (from.proxied, to.proxied) {
                    (false, true) => f.write_str(" proxied"),
                    (true, false) => f.write_str(" not proxied"),
                    _ => Ok(()),
                }
            }
            Change::Delete { record } => write!(f, "- {record}"),
        }
    }
}

/// A desired name autogit may not touch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub name: String,
    /// The records that block it, or the foreign ownership TXT.
    pub found: Vec<Record>,
    pub reason: ConflictReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictReason {
    /// Address or CNAME records without our ownership TXT.
    NotOwned,
    /// An ownership TXT of another autogit project.
    OtherOwner,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            ConflictReason::NotOwned => "records autogit does not own",
            ConflictReason::OtherOwner => "owned by another autogit project",
        };
        write!(f, "! {} left alone: {why}:", self.name)?;
        for r in &self.found {
            write!(f, " [{r}]")?;
        }
        Ok(())
    }
}

/// The diff between desired and observed: changes to apply, conflicts to report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsPlan {
    pub changes: Vec<Change>,
    pub conflicts: Vec<Conflict>,
}

impl DnsPlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.conflicts.is_empty()
    }
}

impl fmt::Display for DnsPlan {
    /// One line per change (`+`, `~`, `-`) and per conflict (`!`); "in sync" when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "in sync");
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for c in &self.conflicts {
            writeln!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The changes that take the zone from `observed` to `desired` (see [`desired_records`]),
/// touching only names whose ownership TXT carries `owner_value(project)`.
///
/// `observed` is every record of the zone the provider could list (or at least every record at
/// the desired names and at every `_autogit.*` name). Changes come out in a stable order:
/// deletes, updates, creates, each sorted.
pub fn dns_plan(desired: &[Record], observed: &[Record], project: &str) -> DnsPlan {
    let ours = owner_value(project);
    let mut by_name: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in observed {
        by_name.entry(r.name.as_str()).or_default().push(r);
    }
    let at = |name: &str| by_name.get(name).cloned().unwrap_or_default();

    // Names we own: an ownership TXT with our value at `_autogit.<name>`.
    let owned: BTreeSet<String> = observed
        .iter()
        .filter(|r| r.kind == RecordType::Txt && r.value == ours)
        .filter_map(|r| owned_name(&r.name))
        .collect();

    let mut want: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in desired.iter().filter(|r| r.kind.is_address()) {
        want.entry(r.name.as_str()).or_default().push(r);
    }

    let mut plan = DnsPlan::default();
    let (mut deletes, mut updates, mut creates) = (Vec::new(), Vec::new(), Vec::new());

    for (&name, wanted) in &want {
        let owner = owner_name(name);
        let owner_records = at(&owner);
        // The ownership TXT's TTL: as desired (a proxied address has Cloudflare's automatic
        // TTL, its TXT keeps DNS_TTL), else the address's.
        let ttl = desired
            .iter()
            .find(|r| r.kind == RecordType::Txt && r.name == owner)
            .map_or(wanted[0].ttl, |r| r.ttl);
        if owned.contains(name) {
            // Ours: bring the address records in line, and the ownership TXT's TTL.
            let have: Vec<&Record> = at(name)
                .into_iter()
                .filter(|r| r.kind.is_address())
                .collect();
            diff_rrset(&have, wanted, &mut deletes, &mut updates, &mut creates);
            for r in owner_records
                .iter()
                .filter(|r| r.value == ours && r.ttl != ttl)
            {
                updates.push(Change::Update {
                    from: (*r).clone(),
                    to: Record {
                        ttl,
                        ..(*r).clone()
                    },
                });
            }
            continue;
        }
        let foreign_owner: Vec<Record> = owner_records
            .iter()
            .filter(|r| r.kind == RecordType::Txt && r.value.starts_with("heritage=autogit,"))
            .map(|r| (*r).clone())
            .collect();
        if !foreign_owner.is_empty() {
            plan.conflicts.push(Conflict {
                name: name.to_owned(),
                found: foreign_owner,
                reason: ConflictReason::OtherOwner,
            });
            continue;
        }
        let blocking: Vec<Record> = at(name)
            .into_iter()
            .filter(|r| r.kind.blocks_address())
            .cloned()
            .collect();
        if !blocking.is_empty() {
            plan.conflicts.push(Conflict {
                name: name.to_owned(),
                found: blocking,
                reason: ConflictReason::NotOwned,
            });
            continue;
        }
        creates.extend(wanted.iter().map(|r| Change::Create {
            record: (*r).clone(),
        }));
        creates.push(Change::Create {
            record: Record::new(&owner, RecordType::Txt, ours.clone(), ttl),
        });
    }

    // Owned names no longer desired: remove their addresses and the ownership TXT.
    for name in owned.iter().filter(|n| !want.contains_key(n.as_str())) {
        for r in at(name).into_iter().filter(|r| r.kind.is_address()) {
            deletes.push(Change::Delete { record: r.clone() });
        }
        for r in at(&owner_name(name))
            .into_iter()
            .filter(|r| r.kind == RecordType::Txt && r.value == ours)
        {
            deletes.push(Change::Delete { record: r.clone() });
        }
    }

    deletes.sort();
    updates.sort();
    creates.sort();
    plan.changes = deletes.into_iter().chain(updates).chain(creates).collect();
    plan
}

/// Diff the address records at one owned name.
fn diff_rrset(
    have: &[&Record],
    want: &[&Record],
    deletes: &mut Vec<Change>,
    updates: &mut Vec<Change>,
    creates: &mut Vec<Change>,
) {
    let same = |a: &Record, b: &Record| a.kind == b.kind && a.value == b.value;
    for kind in [RecordType::A, RecordType::Aaaa] {
        let h: Vec<&Record> = have.iter().copied().filter(|r| r.kind == kind).collect();
        let w: Vec<&Record> = want.iter().copied().filter(|r| r.kind == kind).collect();
        // Same value, different TTL or proxy status: update in place.
        for r in &w {
            if let Some(old) = h.iter().find(|o| same(o, r))
                && (old.ttl != r.ttl || old.proxied != r.proxied)
            {
                updates.push(Change::Update {
                    from: (*old).clone(),
                    to: (*r).clone(),
                });
            }
        }
        let gone: Vec<&Record> = h
            .iter()
            .copied()
            .filter(|o| !w.iter().any(|r| same(o, r)))
            .collect();
        let new: Vec<&Record> = w
            .iter()
            .copied()
            .filter(|r| !h.iter().any(|o| same(o, r)))
            .collect();
        let paired = gone.len().min(new.len());
        for (from, to) in gone.iter().zip(&new) {
            updates.push(Change::Update {
                from: (*from).clone(),
                to: (*to).clone(),
            });
        }
        deletes.extend(gone[paired..].iter().map(|r| Change::Delete {
            record: (*r).clone(),
        }));
        creates.extend(new[paired..].iter().map(|r| Change::Create {
            record: (*r).clone(),
        }));
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn record_type_names_round_trip() {
        for t in [
            RecordType::A,
            RecordType::Aaaa,
            RecordType::Txt,
            RecordType::Cname,
        ] {
            assert_eq!(RecordType::from_name(t.as_str()), t);
        }
        assert_eq!(RecordType::from_name("MX"), RecordType::Other);
        assert_eq!(RecordType::from_name("aaaa"), RecordType::Other);
    }

    use super::*;

    const PROJECT: &str = "autogit";

    fn target(mode: DnsMode, ip: &str) -> DnsTarget {
        DnsTarget {
            base_domain: "example.test".into(),
            ingress_ip: ip.parse().unwrap(),
            mode,
            ttl: DEFAULT_TTL,
            subdomains: vec!["gitlab".into(), "grafana".into()],
            proxied: Vec::new(),
        }
    }

    /// `name ttl TYPE value` per line; `#` starts a comment.
    fn zone(text: &str) -> Vec<Record> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let (name, ttl, kind, value) = (
                    it.next().unwrap(),
                    it.next().unwrap().parse().unwrap(),
                    it.next().unwrap(),
                    it.next().unwrap().trim_matches('"'),
                );
                let kind = RecordType::from_name(kind);
                Record::new(name, kind, value, ttl)
            })
            .collect()
    }

    const APEX: &str = "
        example.test 3600 OTHER SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
        example.test 3600 OTHER NS ns.example.test.
        ns.example.test 3600 A 127.0.0.1";

    const WILDCARD_SYNCED: &str = "
        *.example.test 300 A 203.0.113.7
        _autogit._wildcard.example.test 300 TXT \"heritage=autogit,owner=autogit\"
        example.test 300 A 203.0.113.7
        _autogit.example.test 300 TXT \"heritage=autogit,owner=autogit\"";

    /// (case, mode, ingress ip, observed zone beyond the apex records)
    const CASES: &[(&str, DnsMode, &str, &str)] = &[
        ("fresh_zone_wildcard", DnsMode::Wildcard, "203.0.113.7", ""),
        (
            "fresh_zone_per_service",
            DnsMode::PerService,
            "203.0.113.7",
            "",
        ),
        ("fresh_zone_ipv6", DnsMode::PerService, "2001:db8::7", ""),
        ("in_sync", DnsMode::Wildcard, "203.0.113.7", WILDCARD_SYNCED),
        (
            "foreign_record_at_desired_name",
            DnsMode::PerService,
            "203.0.113.7",
            "gitlab.example.test 600 A 198.51.100.1
             grafana.example.test 600 CNAME elsewhere.example.net.",
        ),
        (
            "other_project_owns_name",
            DnsMode::PerService,
            "203.0.113.7",
            "gitlab.example.test 300 A 203.0.113.9
             _autogit.gitlab.example.test 300 TXT \"heritage=autogit,owner=staging\"",
        ),
        (
            "owned_stale_record",
            DnsMode::PerService,
            "203.0.113.7",
            "gitlab.example.test 300 A 203.0.113.7
             _autogit.gitlab.example.test 300 TXT \"heritage=autogit,owner=autogit\"
             grafana.example.test 300 A 203.0.113.7
             _autogit.grafana.example.test 300 TXT \"heritage=autogit,owner=autogit\"
             old.example.test 300 A 203.0.113.7
             _autogit.old.example.test 300 TXT \"heritage=autogit,owner=autogit\"
             # a foreign record next to it is never touched
             mail.example.test 300 A 198.51.100.25",
        ),
        (
            "ip_changed",
            DnsMode::Wildcard,
            "203.0.113.8",
            WILDCARD_SYNCED,
        ),
        (
            "ttl_changed",
            DnsMode::Wildcard,
            "203.0.113.7",
            "*.example.test 60 A 203.0.113.7
             _autogit._wildcard.example.test 60 TXT \"heritage=autogit,owner=autogit\"
             example.test 300 A 203.0.113.7
             _autogit.example.test 300 TXT \"heritage=autogit,owner=autogit\"",
        ),
        (
            "v4_to_v6",
            DnsMode::Wildcard,
            "2001:db8::7",
            WILDCARD_SYNCED,
        ),
        (
            "mode_switch_wildcard_to_per_service",
            DnsMode::PerService,
            "203.0.113.7",
            WILDCARD_SYNCED,
        ),
        (
            "owned_name_with_foreign_extra_value",
            DnsMode::Wildcard,
            "203.0.113.7",
            "*.example.test 300 A 203.0.113.7
             *.example.test 300 A 203.0.113.99
             _autogit._wildcard.example.test 300 TXT \"heritage=autogit,owner=autogit\"
             example.test 300 A 203.0.113.7
             _autogit.example.test 300 TXT \"heritage=autogit,owner=autogit\"
             _acme-challenge.example.test 60 TXT \"token-1\"",
        ),
    ];

    #[test]
    fn plans() {
        let mut out = String::new();
        for (case, mode, ip, extra) in CASES {
            let desired = desired_records(&target(*mode, ip), PROJECT);
            let observed = zone(&format!("{APEX}\n{extra}"));
            let plan = dns_plan(&desired, &observed, PROJECT);
            out.push_str(&format!("## {case} ({mode:?}, {ip})\n{plan}\n"));
        }
        insta::assert_snapshot!(out);
    }

    #[test]
    fn applying_a_plan_reaches_sync() {
        for (case, mode, ip, extra) in CASES {
            let desired = desired_records(&target(*mode, ip), PROJECT);
            let mut zone_now = zone(&format!("{APEX}\n{extra}"));
            let plan = dns_plan(&desired, &zone_now, PROJECT);
            for c in &plan.changes {
                match c {
                    Change::Create { record } => zone_now.push(record.clone()),
                    Change::Update { from, to } => {
                        zone_now.retain(|r| r != from);
                        zone_now.push(to.clone());
                    }
                    Change::Delete { record } => zone_now.retain(|r| r != record),
                }
            }
            let again = dns_plan(&desired, &zone_now, PROJECT);
            assert!(again.changes.is_empty(), "{case}: second pass {again}");
            assert_eq!(again.conflicts, plan.conflicts, "{case}");
        }
    }

    #[test]
    fn never_touches_unowned_records() {
        for (case, mode, ip, extra) in CASES {
            let desired = desired_records(&target(*mode, ip), PROJECT);
            let observed = zone(&format!("{APEX}\n{extra}"));
            let plan = dns_plan(&desired, &observed, PROJECT);
            let owned: BTreeSet<String> = observed
                .iter()
                .filter(|r| r.value == owner_value(PROJECT))
                .filter_map(|r| owned_name(&r.name))
                .collect();
            for c in &plan.changes {
                if let Change::Update { from: r, .. } | Change::Delete { record: r } = c {
                    let name = owned_name(&r.name).unwrap_or(r.name.clone());
                    assert!(owned.contains(&name), "{case}: touches unowned {r}");
                }
            }
        }
    }

    #[test]
    fn owner_names_round_trip() {
        for name in ["*.example.test", "example.test", "gitlab.example.test", "*"] {
            assert_eq!(owned_name(&owner_name(name)).as_deref(), Some(name));
        }
        assert_eq!(
            owner_name("*.Example.Test."),
            "_autogit._wildcard.example.test"
        );
        assert_eq!(owned_name("gitlab.example.test"), None);
        assert_eq!(owned_name("_autogitx.example.test"), None);
    }

    #[test]
    fn target_needs_domain_and_ip() {
        let plan = Plan {
            project: PROJECT.into(),
            network: "autogit".into(),
            base_domain: None,
            tls: None,
            ingress_allow: Vec::new(),
            cloudflare_proxied: Vec::new(),
            http01: None,
            guard: None,
            guard_proxy: None,
            registry: false,
            preset: crate::preset::Preset::Minimal,
            services: vec![],
            total_cpus: 0.0,
            total_memory: crate::units::Bytes(0),
        };
        let mut env = PlatformEnv::default();
        assert_eq!(
            DnsTarget::from_plan(&plan, &env, DEFAULT_TTL),
            Err(DnsError::NoBaseDomain)
        );
        env.base_domain = Some("Example.Test".into());
        assert_eq!(
            DnsTarget::from_plan(&plan, &env, DEFAULT_TTL),
            Err(DnsError::NoIngressIp)
        );
        env.ingress_ip = Some("2001:db8::1".into());
        let t = DnsTarget::from_plan(&plan, &env, DEFAULT_TTL).unwrap();
        assert_eq!(t.base_domain, "example.test");
        assert_eq!(
            t.address_records()[0],
            Record::new("*.example.test", RecordType::Aaaa, "2001:db8::1", 300)
        );
    }

    #[test]
    fn extra_records_are_checked_and_owned() {
        let t = DnsTarget {
            base_domain: "example.test".into(),
            ingress_ip: "192.0.2.1".parse().unwrap(),
            mode: DnsMode::Wildcard,
            ttl: 300,
            subdomains: Vec::new(),
            proxied: Vec::new(),
        };
        type Case<'a> = (&'a str, &'a str, &'a str, u32, Result<(), &'a str>);
        let cases: &[Case] = &[
            ("nas.example.test", "A", "192.0.2.9", 300, Ok(())),
            ("NAS.example.test.", "AAAA", "2001:db8::1", 300, Ok(())),
            ("txt.example.test", "TXT", "v=spf1 -all", 300, Ok(())),
            ("x.other.test", "A", "192.0.2.9", 300, Err("name")),
            ("*.example.test", "A", "192.0.2.9", 300, Err("name")),
            ("example.test", "A", "192.0.2.9", 300, Err("name")),
            ("_autogit.x.example.test", "TXT", "v", 300, Err("name")),
            ("_acme-challenge.example.test", "TXT", "v", 300, Err("name")),
            ("a..example.test", "A", "192.0.2.9", 300, Err("name")),
            ("m.example.test", "MX", "10 mail", 300, Err("type")),
            ("m.example.test", "A", "2001:db8::1", 300, Err("value")),
            ("m.example.test", "TXT", "quote\"d", 300, Err("value")),
            ("m.example.test", "A", "192.0.2.9", 5, Err("ttl")),
        ];
        for (name, kind, value, ttl, want) in cases {
            let got = check_extra(&t, name, kind, value, *ttl)
                .map(|_| ())
                .map_err(|e| e.0);
            assert_eq!(&got, want, "{name} {kind} {value}");
        }
        let nas = check_extra(&t, "NAS.example.test.", "A", "192.0.2.9", 300).unwrap();
        assert_eq!(nas.name, "nas.example.test");
        let all = desired_records_with(&t, "p", std::slice::from_ref(&nas));
        assert!(all.contains(&nas));
        assert!(all.iter().any(|r| r.name == owner_name("nas.example.test")));
    }

    #[test]
    fn proxied_subdomains_get_their_own_proxied_record_and_drift_is_an_update() {
        let mut t = target(DnsMode::Wildcard, "203.0.113.7");
        t.proxied = vec!["grafana".into()];
        let want = t.address_records();
        let grafana = want
            .iter()
            .find(|r| r.name == "grafana.example.test")
            .unwrap();
        assert!(grafana.proxied && grafana.ttl == PROXIED_TTL, "{grafana}");
        assert!(
            want.iter()
                .filter(|r| r.name != "grafana.example.test")
                .all(|r| !r.proxied && r.ttl == 300),
            "{want:?}"
        );
        assert_eq!(
            grafana.to_string(),
            "grafana.example.test 1 A 203.0.113.7 proxied"
        );
        // Per-service mode: only the named subdomain is proxied.
        t.mode = DnsMode::PerService;
        let per: Vec<(String, bool)> = t
            .address_records()
            .into_iter()
            .map(|r| (r.name, r.proxied))
            .collect();
        assert_eq!(
            per,
            [
                ("gitlab.example.test".to_owned(), false),
                ("grafana.example.test".to_owned(), true)
            ]
        );
        // A zone where the record is ours but not proxied: one update, nothing else.
        let desired = desired_records(&t, PROJECT);
        let observed: Vec<Record> = desired
            .iter()
            .cloned()
            .map(|r| {
                if r.proxied {
                    Record {
                        ttl: 300,
                        ..r.with_proxied(false)
                    }
                } else {
                    r
                }
            })
            .collect();
        let plan = dns_plan(&desired, &observed, PROJECT);
        assert_eq!(plan.changes.len(), 1, "{plan}");
        assert!(
            matches!(&plan.changes[0], Change::Update { from, to } if !from.proxied && to.proxied),
            "{plan}"
        );
        assert!(
            plan.to_string()
                .trim_end()
                .ends_with("-> 1 203.0.113.7 proxied"),
            "{plan}"
        );
        assert!(dns_plan(&desired, &desired, PROJECT).is_empty());
    }
}
