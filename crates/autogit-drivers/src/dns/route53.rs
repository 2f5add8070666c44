//! Amazon Route 53 through its REST API (version 2013-04-01, `https://route53.amazonaws.com`,
//! or `AWS_ROUTE53_ENDPOINT`), every request signed with AWS Signature Version 4 (region
//! `us-east-1`, service `route53`; [`super::sigv4`]).
//!
//! - `list` reads the hosted zone with `ListResourceRecordSets`, following `IsTruncated` /
//!   `NextRecordName` / `NextRecordType`.
//! - Route 53 holds RRsets, not values. `apply` reads each touched RRset afresh, applies the
//!   changes to its values (a `Create` adds a value, a `Delete` removes exactly one, an `Update`
//!   swaps one), and sends one `ChangeResourceRecordSets` batch: `UPSERT` of the resulting set,
//!   or `DELETE` of the old set (its exact values, so Route 53 refuses it when someone changed
//!   it meanwhile) when no value remains. One batch is atomic in Route 53.
//! - Then `GetChange` is polled until the change is `INSYNC` (on every Route 53 name server).
//! - Errors come from `<ErrorResponse><Error><Code>` (and `<InvalidChangeBatch>`) and say what
//!   to check; `Throttling` and `PriorRequestNotComplete` are retried with backoff.

use super::wire::{RrSet, core_value, error_chain as chain, http_client, wire_value};
use super::{DnsProvider, DnsProviderError, sigv4, xml};
use autogit_core::dns::{Change, Record, RecordType, canonical_name};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::time::{Duration, Instant};

pub const DEFAULT_ENDPOINT: &str = "https://route53.amazonaws.com";
const API: &str = "/2013-04-01";
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
const REGION: &str = "us-east-1";
const SERVICE_NAME: &str = "route53";
const SERVICE: &str = "Route 53";
/// Record sets per listing page (Route 53's maximum is 300).
const MAX_ITEMS: u32 = 300;
const MAX_PAGES: u32 = 10_000;
const THROTTLE_RETRIES: u32 = 3;

/// Settings from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
/// AWS_HOSTED_ZONE_ID, AWS_ROUTE53_ENDPOINT and DNS_ZONE (or BASE_DOMAIN).
#[derive(Clone)]
pub struct Route53Config {
    /// Without a trailing slash ([`DEFAULT_ENDPOINT`]).
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// For temporary credentials (STS).
    pub session_token: Option<SecretString>,
    /// `Z...`, with or without `/hostedzone/`.
    pub hosted_zone_id: String,
    /// The zone apex, e.g. `example.com`.
    pub zone: String,
    /// Per request.
    pub timeout: Duration,
    /// Between `GetChange` polls.
    pub poll_interval: Duration,
    /// How long a change may stay `PENDING`.
    pub insync_timeout: Duration,
}

impl fmt::Debug for Route53Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route53Config")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("hosted_zone_id", &self.hosted_zone_id)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

/// The Route 53 provider for one hosted zone.
#[derive(Clone)]
pub struct Route53 {
    http: reqwest::Client,
    endpoint: String,
    host: String,
    access_key_id: String,
    secret: SecretString,
    session_token: Option<SecretString>,
    zone_id: String,
    zone: String,
    poll_interval: Duration,
    insync_timeout: Duration,
}

impl fmt::Debug for Route53 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route53")
            .field("endpoint", &self.endpoint)
            .field("zone_id", &self.zone_id)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl Route53 {
    /// Checks the settings; connects to nothing.
    pub fn new(config: &Route53Config) -> Result<Self, DnsProviderError> {
        let bad = DnsProviderError::Config;
        let endpoint = config.endpoint.trim().trim_end_matches('/').to_owned();
        let host = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .map(|r| r.split('/').next().unwrap_or("").to_owned())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                bad(format!(
                    "AWS_ROUTE53_ENDPOINT `{endpoint}` is not an http(s) URL"
                ))
            })?;
        if config.access_key_id.trim().is_empty() {
            return Err(bad("AWS_ACCESS_KEY_ID is empty".into()));
        }
        if config.secret_access_key.expose_secret().trim().is_empty() {
            return Err(bad("AWS_SECRET_ACCESS_KEY is empty".into()));
        }
        let zone_id = config
            .hosted_zone_id
            .trim()
            .trim_start_matches("/hostedzone/")
            .trim_start_matches("hostedzone/")
            .to_owned();
        if zone_id.is_empty() || !zone_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(format!(
                "AWS_HOSTED_ZONE_ID `{}` is not a hosted zone id (like Z0123456789ABCDEFGHIJ)",
                config.hosted_zone_id
            )));
        }
        let zone = canonical_name(&config.zone);
        if zone.is_empty() {
            return Err(bad("the Route 53 zone name is empty".into()));
        }
        let http = http_client(config.timeout).map_err(bad)?;
        Ok(Self {
            http,
            endpoint,
            host,
            access_key_id: config.access_key_id.trim().to_owned(),
            secret: SecretString::from(config.secret_access_key.expose_secret().trim().to_owned()),
            session_token: config.session_token.clone(),
            zone_id,
            zone,
            poll_interval: config.poll_interval,
            insync_timeout: config.insync_timeout,
        })
    }

    /// The zone this provider manages (canonical).
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// One signed request; the parsed XML answer, or the error it says.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
        operation: &str,
    ) -> Result<xml::Element, DnsProviderError> {
        let qs = sigv4::canonical_query(query);
        let url = if qs.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{qs}", self.endpoint)
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let amz_date = sigv4::amz_date_now();
            let token = self.session_token.as_ref().map(|t| t.expose_secret());
            let extra: Vec<(&str, &str)> = token
                .map(|t| vec![("x-amz-security-token", t)])
                .unwrap_or_default();
            let auth = sigv4::Signer {
                access_key_id: &self.access_key_id,
                secret_access_key: self.secret.expose_secret(),
                region: REGION,
                service: SERVICE_NAME,
            }
            .authorization(&sigv4::Request {
                method: method.as_str(),
                path,
                query,
                host: &self.host,
                amz_date: &amz_date,
                extra_headers: &extra,
                payload: body,
            });
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header("x-amz-date", &amz_date)
                .header(reqwest::header::AUTHORIZATION, auth);
            if let Some(t) = token {
                req = req.header("x-amz-security-token", t);
            }
            if !body.is_empty() {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "text/xml")
                    .body(body.to_vec());
            }
            let http_err = |e: reqwest::Error| DnsProviderError::Http {
                service: SERVICE.into(),
                url: url.clone(),
                reason: chain(&e),
            };
            let resp = req.send().await.map_err(http_err)?;
            let status = resp.status();
            let text = resp.text().await.map_err(http_err)?;
            let parsed = xml::parse(&text);
            if status.is_success() {
                return parsed.map_err(|reason| DnsProviderError::Protocol {
                    server: format!("{SERVICE} {}", self.endpoint),
                    reason: format!("an answer that is not XML ({reason})"),
                });
            }
            let (code, message) = match &parsed {
                Ok(root) if root.name == "InvalidChangeBatch" => (
                    "InvalidChangeBatch".to_owned(),
                    root.child("Messages")
                        .map(|m| {
                            m.all("Message")
                                .map(|x| x.text.trim().to_owned())
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_default(),
                ),
                Ok(root) => (
                    root.text_at(&["Error", "Code"]).unwrap_or_default(),
                    root.text_at(&["Error", "Message"]).unwrap_or_default(),
                ),
                Err(_) => (String::new(), text.chars().take(200).collect()),
            };
            let throttled = status.as_u16() == 429
                || matches!(code.as_str(), "Throttling" | "PriorRequestNotComplete");
            if throttled && attempt <= THROTTLE_RETRIES {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                continue;
            }
            return Err(self.error(status.as_u16(), &code, &message, operation, throttled));
        }
    }

    fn error(
        &self,
        status: u16,
        code: &str,
        message: &str,
        operation: &str,
        throttled: bool,
    ) -> DnsProviderError {
        let detail = if code.is_empty() {
            format!("HTTP {status}: {message}")
        } else {
            format!("{code}: {message}")
        };
        match code {
            _ if throttled => DnsProviderError::RateLimited {
                service: SERVICE.into(),
                waited: Duration::from_secs((1 << THROTTLE_RETRIES) - 1),
            },
            "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredToken"
            | "InvalidSignatureException"
            | "UnrecognizedClientException" => DnsProviderError::Auth {
                service: SERVICE.into(),
                detail,
                hint: format!(
                    "check AWS_ACCESS_KEY_ID (`{}`) and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials), and that this machine's clock is right (signatures are valid for 5 minutes)",
                    self.access_key_id
                ),
            },
            "AccessDenied" | "AccessDeniedException" => DnsProviderError::Forbidden {
                service: SERVICE.into(),
                detail,
                hint: format!(
                    "allow route53:ListResourceRecordSets, route53:ChangeResourceRecordSets and route53:GetChange on arn:aws:route53:::hostedzone/{} (and arn:aws:route53:::change/*) in the IAM policy of key `{}`",
                    self.zone_id, self.access_key_id
                ),
            },
            "NoSuchHostedZone" => DnsProviderError::ZoneNotFound {
                service: SERVICE.into(),
                zone: self.zone.clone(),
                hint: format!(
                    "there is no hosted zone `{}`: check AWS_HOSTED_ZONE_ID (Route 53 console > Hosted zones > Hosted zone ID)",
                    self.zone_id
                ),
            },
            // The sets were read just before the batch: a set that appeared, vanished or
            // changed since is another writer's doing, and Route 53 applied nothing.
            "InvalidChangeBatch"
                if message.contains("but it already exists")
                    || message.contains("but it was not found")
                    || message.contains("do not match the current values") =>
            {
                DnsProviderError::ZoneChanged {
                    server: SERVICE.into(),
                    zone: self.zone.clone(),
                    evidence: detail,
                }
            }
            _ => DnsProviderError::Api {
                service: SERVICE.into(),
                operation: operation.to_owned(),
                status,
                detail,
            },
        }
    }

    fn rrset_path(&self) -> String {
        format!("{API}/hostedzone/{}/rrset", self.zone_id)
    }

    /// One page of record sets from (`name`, `kind`) on, and where the next page starts.
    async fn page(
        &self,
        start: Option<(String, String)>,
        max_items: u32,
    ) -> Result<(Vec<(String, String, RrSet)>, Option<(String, String)>), DnsProviderError> {
        let mut query = vec![("maxitems".to_owned(), max_items.to_string())];
        if let Some((n, t)) = start {
            query.push(("name".into(), n));
            query.push(("type".into(), t));
        }
        let root = self
            .send(
                Method::GET,
                &self.rrset_path(),
                &query,
                b"",
                &format!("the listing of hosted zone {}", self.zone_id),
            )
            .await?;
        let mut sets = Vec::new();
        for s in root
            .child("ResourceRecordSets")
            .into_iter()
            .flat_map(|x| x.all("ResourceRecordSet"))
        {
            let name = decode_name(&s.text_at(&["Name"]).unwrap_or_default());
            let kind = s.text_at(&["Type"]).unwrap_or_default();
            let ttl = s
                .text_at(&["TTL"])
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let mut values: Vec<String> = s
                .child("ResourceRecords")
                .into_iter()
                .flat_map(|r| r.all("ResourceRecord"))
                .filter_map(|r| r.text_at(&["Value"]))
                .collect();
            if let Some(alias) = s.text_at(&["AliasTarget", "DNSName"]) {
                values.push(format!("ALIAS {alias}"));
            }
            sets.push((name, kind, RrSet { ttl, values }));
        }
        let truncated = root.text_at(&["IsTruncated"]).as_deref() == Some("true");
        let next = match (
            truncated,
            root.text_at(&["NextRecordName"]),
            root.text_at(&["NextRecordType"]),
        ) {
            (true, Some(n), Some(t)) => Some((n, t)),
            (true, _, _) => {
                return Err(DnsProviderError::Protocol {
                    server: format!("{SERVICE} {}", self.endpoint),
                    reason: "IsTruncated without NextRecordName/NextRecordType".into(),
                });
            }
            _ => None,
        };
        Ok((sets, next))
    }

    /// Every record of the hosted zone.
    pub async fn records(&self) -> Result<Vec<Record>, DnsProviderError> {
        let mut out = Vec::new();
        let mut next = None;
        for _ in 0..MAX_PAGES {
            let (sets, n) = self.page(next, MAX_ITEMS).await?;
            for (name, kind, set) in sets {
                let kind = RecordType::from_name(&kind);
                for v in &set.values {
                    out.push(Record::new(&name, kind, core_value(kind, v), set.ttl));
                }
            }
            match n {
                Some(n) => next = Some(n),
                None => {
                    out.sort();
                    return Ok(out);
                }
            }
        }
        Err(DnsProviderError::Protocol {
            server: format!("{SERVICE} {}", self.endpoint),
            reason: "more than 10 000 pages of record sets".into(),
        })
    }

    /// The RRset at `name` of `kind`, if any, read now.
    async fn rrset(&self, name: &str, kind: RecordType) -> Result<Option<RrSet>, DnsProviderError> {
        let (sets, _) = self
            .page(Some((format!("{name}."), kind.as_str().to_owned())), 1)
            .await?;
        Ok(sets
            .into_iter()
            .find(|(n, k, _)| canonical_name(n) == name && k == kind.as_str())
            .map(|(_, _, s)| s))
    }

    /// Waits until the change is INSYNC.
    async fn wait_insync(&self, change_id: &str) -> Result<(), DnsProviderError> {
        let id = change_id.trim_start_matches("/change/");
        let start = Instant::now();
        loop {
            let root = self
                .send(
                    Method::GET,
                    &format!("{API}/change/{id}"),
                    &[],
                    b"",
                    &format!("the status of change {id}"),
                )
                .await?;
            if root.text_at(&["ChangeInfo", "Status"]).as_deref() == Some("INSYNC") {
                return Ok(());
            }
            if start.elapsed() >= self.insync_timeout {
                return Err(DnsProviderError::Api {
                    service: SERVICE.into(),
                    operation: format!("change {id}"),
                    status: 200,
                    detail: format!(
                        "accepted but still PENDING after {:?}; Route 53 will finish it: run `autogit dns plan` later to see",
                        self.insync_timeout
                    ),
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    fn check_record(&self, r: &Record) -> Result<(), DnsProviderError> {
        if !(r.name == self.zone || r.name.ends_with(&format!(".{}", self.zone))) {
            return Err(DnsProviderError::Config(format!(
                "record `{}` is outside zone `{}`",
                r.name, self.zone
            )));
        }
        if !matches!(r.kind, RecordType::A | RecordType::Aaaa | RecordType::Txt) {
            return Err(DnsProviderError::Config(format!(
                "autogit does not write {} records ({})",
                r.kind, r.name
            )));
        }
        Ok(())
    }
}

/// The change batch for `changes` given the current RRsets: UPSERT or DELETE per touched set.
fn batch(
    changes: &[Change],
    current: &BTreeMap<(String, RecordType), Option<RrSet>>,
) -> Vec<(&'static str, String, RecordType, RrSet)> {
    let mut next: BTreeMap<(String, RecordType), Option<RrSet>> = current.clone();
    for c in changes {
        let (remove, add): (Option<&Record>, Option<&Record>) = match c {
            Change::Create { record } => (None, Some(record)),
            Change::Delete { record } => (Some(record), None),
            Change::Update { from, to } => (Some(from), Some(to)),
        };
        let r = add.or(remove).map(|r| (r.name.clone(), r.kind));
        let Some(key) = r else { continue };
        let set = next.entry(key).or_insert(None);
        if let Some(rem) = remove
            && let Some(s) = set.as_mut()
        {
            let wire = wire_value(rem);
            s.values
                .retain(|v| core_value(rem.kind, v) != rem.value && *v != wire);
        }
        if let Some(a) = add {
            let s = set.get_or_insert(RrSet {
                ttl: a.ttl,
                values: Vec::new(),
            });
            s.ttl = a.ttl;
            if !s.values.iter().any(|v| core_value(a.kind, v) == a.value) {
                s.values.push(wire_value(a));
            }
        }
    }
    let mut out = Vec::new();
    for (key, after) in next {
        let before = current.get(&key).cloned().flatten();
        let after = after.filter(|s| !s.values.is_empty());
        match (before, after) {
            (b, Some(a)) if b.as_ref() != Some(&a) => out.push(("UPSERT", key.0, key.1, a)),
            (Some(b), None) => out.push(("DELETE", key.0, key.1, b)),
            _ => {}
        }
    }
    out
}

fn batch_xml(items: &[(&'static str, String, RecordType, RrSet)]) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\"><ChangeBatch><Comment>autogit</Comment><Changes>"
    );
    for (action, name, kind, set) in items {
        x.push_str(&format!(
            "<Change><Action>{action}</Action><ResourceRecordSet><Name>{}.</Name><Type>{}</Type><TTL>{}</TTL><ResourceRecords>",
            xml::escape(name),
            kind.as_str(),
            set.ttl
        ));
        for v in &set.values {
            x.push_str(&format!(
                "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                xml::escape(v)
            ));
        }
        x.push_str("</ResourceRecords></ResourceRecordSet></Change>");
    }
    x.push_str("</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>");
    x
}

#[async_trait::async_trait]
impl DnsProvider for Route53 {
    fn describe(&self) -> String {
        format!("route53 hosted zone {} ({})", self.zone_id, self.zone)
    }

    /// The whole hosted zone (paginated); `names` is not needed.
    async fn list(&self, _names: &[String]) -> Result<Vec<Record>, DnsProviderError> {
        self.records().await
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DnsProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut current: BTreeMap<(String, RecordType), Option<RrSet>> = BTreeMap::new();
        for c in changes {
            let records: Vec<&Record> = match c {
                Change::Create { record } | Change::Delete { record } => vec![record],
                Change::Update { from, to } => vec![from, to],
            };
            for r in records {
                self.check_record(r)?;
                if let Entry::Vacant(slot) = current.entry((r.name.clone(), r.kind)) {
                    slot.insert(self.rrset(&r.name, r.kind).await?);
                }
            }
        }
        let items = batch(changes, &current);
        if items.is_empty() {
            return Ok(());
        }
        let body = batch_xml(&items);
        let root = self
            .send(
                Method::POST,
                &format!("{}/", self.rrset_path()),
                &[],
                body.as_bytes(),
                "ChangeResourceRecordSets",
            )
            .await?;
        let id = root
            .text_at(&["ChangeInfo", "Id"])
            .ok_or_else(|| DnsProviderError::Protocol {
                server: format!("{SERVICE} {}", self.endpoint),
                reason: "a change answer without ChangeInfo/Id".into(),
            })?;
        self.wait_insync(&id).await
    }
}

/// Route 53 writes some characters of names as `\ooo` octal escapes (`*` is `\052`).
fn decode_name(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = i + 3 < b.len() && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d));
        let n = octal.then(|| {
            u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0')
        });
        if b[i] == b'\\'
            && let Some(n) = n.and_then(|n| u8::try_from(n).ok())
        {
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    canonical_name(&String::from_utf8_lossy(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(v: &str) -> Record {
        Record::new("_acme-challenge.example.com", RecordType::Txt, v, 60)
    }

    #[test]
    fn names_and_values() {
        assert_eq!(decode_name("\\052.Example.com."), "*.example.com");
        assert_eq!(wire_value(&txt("a\"b")), "\"a\\\"b\"");
        let long = "x".repeat(300);
        assert_eq!(wire_value(&txt(&long)).matches('"').count(), 4);
        assert_eq!(core_value(RecordType::Txt, &wire_value(&txt(&long))), long);
    }

    #[test]
    fn a_second_value_upserts_both_and_the_last_delete_deletes_the_set() {
        let key = ("_acme-challenge.example.com".to_owned(), RecordType::Txt);
        let mut current = BTreeMap::new();
        current.insert(
            key.clone(),
            Some(RrSet {
                ttl: 60,
                values: vec!["\"one\"".into()],
            }),
        );
        let b = batch(&[Change::Create { record: txt("two") }], &current);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].0, "UPSERT");
        assert_eq!(b[0].3.values, ["\"one\"", "\"two\""]);

        let b = batch(&[Change::Delete { record: txt("one") }], &current);
        assert_eq!(b[0].0, "DELETE");
        assert_eq!(b[0].3.values, ["\"one\""]);

        // Deleting a value that is not there changes nothing.
        assert!(batch(&[Change::Delete { record: txt("zzz") }], &current).is_empty());

        // Nothing there yet: both creates in one UPSERT.
        let empty = BTreeMap::from([(key, None)]);
        let b = batch(
            &[
                Change::Create { record: txt("a") },
                Change::Create { record: txt("b") },
            ],
            &empty,
        );
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].3.values, ["\"a\"", "\"b\""]);
    }
}
