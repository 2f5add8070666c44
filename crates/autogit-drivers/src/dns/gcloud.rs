//! Google Cloud DNS through its REST API v1 (`https://dns.googleapis.com/dns/v1`, or
//! `GCP_DNS_ENDPOINT`), authenticated as a service account: a JWT signed with the account's
//! RSA key (RS256, by ring) is exchanged for an access token at the key file's `token_uri`
//! (OAuth 2.0 JWT bearer grant); the token is reused until a minute before it expires.
//!
//! - `list` reads the managed zone's record sets page by page (`pageToken` /
//!   `nextPageToken`).
//! - Cloud DNS holds RRsets, not values. `apply` reads each touched set afresh, applies the
//!   changes to its values (a `Create` adds one, a `Delete` removes exactly one, an `Update` swaps
//!   one) and sends one change: the old set as a deletion and the new set as an addition. Cloud
//!   DNS applies a change all or nothing, and refuses it when a deleted set is no longer exactly
//!   as read (412 `conditionNotMet`) or an added one appeared meanwhile (409 `alreadyExists`),
//!   which is [`DnsProviderError::ZoneChanged`].
//! - Then the change is polled until its status is `done`.

use super::wire::{RrSet, core_value, error_chain as chain, http_client, wire_value};
use super::{DnsProvider, DnsProviderError};
use autogit_core::dns::{Change, Record, RecordType, canonical_name};
use reqwest::{Method, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const DEFAULT_ENDPOINT: &str = "https://dns.googleapis.com/dns/v1";
const SCOPE: &str = "https://www.googleapis.com/auth/ndev.clouddns.readwrite";
const SERVICE: &str = "Google Cloud DNS";
const MAX_PAGES: u32 = 10_000;
const RATE_RETRIES: u32 = 3;

/// The fields of a service-account key file autogit uses.
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: String,
    /// PKCS#8 PEM.
    pub private_key: SecretString,
    pub token_uri: String,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Parses a key file as the Cloud console downloads it (`"type": "service_account"`).
    pub fn from_json(text: &str, origin: &Path) -> Result<Self, DnsProviderError> {
        let bad = |m: &str| {
            DnsProviderError::Config(format!(
                "GCP_SERVICE_ACCOUNT_FILE {}: {m}",
                origin.display()
            ))
        };
        let v: Value = serde_json::from_str(text)
            .map_err(|_| bad("not JSON (download a JSON key of the service account)"))?;
        if v.get("type").and_then(Value::as_str) != Some("service_account") {
            return Err(bad(
                "not a service-account key (`type` is not `service_account`)",
            ));
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Self {
            client_email: s("client_email").ok_or_else(|| bad("no `client_email`"))?,
            private_key_id: s("private_key_id").unwrap_or_default(),
            private_key: SecretString::from(
                s("private_key").ok_or_else(|| bad("no `private_key`"))?,
            ),
            token_uri: s("token_uri")
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned()),
        })
    }
}

/// Settings from GCP_PROJECT, GCP_MANAGED_ZONE, GCP_SERVICE_ACCOUNT_FILE, GCP_DNS_ENDPOINT and
/// DNS_ZONE (or BASE_DOMAIN).
#[derive(Clone, Debug)]
pub struct GcloudConfig {
    pub endpoint: String,
    pub project: String,
    /// The managed zone's name in Cloud DNS (e.g. `example-com`), not its DNS name.
    pub managed_zone: String,
    pub account: ServiceAccount,
    /// The zone apex, e.g. `example.com`.
    pub zone: String,
    pub timeout: Duration,
    pub poll_interval: Duration,
    pub done_timeout: Duration,
}

/// The Cloud DNS provider for one managed zone.
#[derive(Clone)]
pub struct Gcloud {
    http: reqwest::Client,
    endpoint: String,
    project: String,
    managed_zone: String,
    zone: String,
    email: String,
    key_id: String,
    key: Arc<RsaKeyPair>,
    token_uri: String,
    token: Arc<Mutex<Option<(SecretString, Instant)>>>,
    poll_interval: Duration,
    done_timeout: Duration,
}

impl fmt::Debug for Gcloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gcloud")
            .field("endpoint", &self.endpoint)
            .field("project", &self.project)
            .field("managed_zone", &self.managed_zone)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Gcloud {
    /// Checks the settings and the key; connects to nothing.
    pub fn new(config: &GcloudConfig) -> Result<Self, DnsProviderError> {
        let bad = DnsProviderError::Config;
        let endpoint = config.endpoint.trim().trim_end_matches('/').to_owned();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(bad(format!(
                "GCP_DNS_ENDPOINT `{endpoint}` is not an http(s) URL"
            )));
        }
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if !plain(&config.project) {
            return Err(bad(format!(
                "GCP_PROJECT `{}` is not a project id",
                config.project
            )));
        }
        if !plain(&config.managed_zone) {
            return Err(bad(format!(
                "GCP_MANAGED_ZONE `{}` is not a managed zone name (the zone's name in Cloud DNS, like example-com)",
                config.managed_zone
            )));
        }
        let der = pem_pkcs8(config.account.private_key.expose_secret()).ok_or_else(|| {
            bad("GCP_SERVICE_ACCOUNT_FILE: `private_key` is not a PEM `PRIVATE KEY`".into())
        })?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            bad(format!(
                "GCP_SERVICE_ACCOUNT_FILE: `private_key` is not an RSA key ring accepts: {e}"
            ))
        })?;
        let http = http_client(config.timeout).map_err(bad)?;
        Ok(Self {
            http,
            endpoint,
            project: config.project.clone(),
            managed_zone: config.managed_zone.clone(),
            zone: canonical_name(&config.zone),
            email: config.account.client_email.clone(),
            key_id: config.account.private_key_id.clone(),
            key: Arc::new(key),
            token_uri: config.account.token_uri.clone(),
            token: Arc::default(),
            poll_interval: config.poll_interval,
            done_timeout: config.done_timeout,
        })
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The signed JWT assertion for the token endpoint.
    fn assertion(&self, now: u64) -> Result<String, DnsProviderError> {
        let b64 = |v: &Value| data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes());
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.key_id});
        let claims = json!({
            "iss": self.email, "scope": SCOPE, "aud": self.token_uri,
            "iat": now, "exp": now + 3600,
        });
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| {
                DnsProviderError::Config(
                    "signing the JWT with the service-account key failed".into(),
                )
            })?;
        Ok(format!(
            "{input}.{}",
            data_encoding::BASE64URL_NOPAD.encode(&sig)
        ))
    }

    /// An access token, from the cache or the token endpoint.
    async fn access_token(&self) -> Result<SecretString, DnsProviderError> {
        if let Some((t, until)) = self
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = format!(
            "grant_type={}&assertion={}",
            percent_encoding::utf8_percent_encode(
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
                percent_encoding::NON_ALPHANUMERIC
            ),
            self.assertion(now)?
        );
        let resp = self
            .http
            .post(&self.token_uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| DnsProviderError::Http {
                service: "Google OAuth".into(),
                url: self.token_uri.clone(),
                reason: chain(&e),
            })?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        let Some(token) = v.get("access_token").and_then(Value::as_str) else {
            let err = v.get("error").and_then(Value::as_str).unwrap_or("");
            let desc = v
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(DnsProviderError::Auth {
                service: format!("Google's token endpoint {}", self.token_uri),
                detail: format!("HTTP {}: {err} {desc}", status.as_u16())
                    .trim()
                    .to_owned(),
                hint: format!(
                    "check GCP_SERVICE_ACCOUNT_FILE: the key of `{}` may be deleted or disabled (create a new JSON key), and this machine's clock must be right",
                    self.email
                ),
            });
        };
        let expires = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        let until = Instant::now() + Duration::from_secs(expires.saturating_sub(60));
        let token = SecretString::from(token.to_owned());
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some((token.clone(), until));
        Ok(token)
    }

    fn base(&self) -> String {
        format!(
            "{}/projects/{}/managedZones/{}",
            self.endpoint, self.project, self.managed_zone
        )
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        operation: &str,
    ) -> Result<Value, DnsProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.access_token().await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose_secret())
                .query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| DnsProviderError::Http {
                service: SERVICE.into(),
                url: url.to_owned(),
                reason: chain(&e),
            })?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(v);
            }
            if status == StatusCode::TOO_MANY_REQUESTS && attempt <= RATE_RETRIES {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                continue;
            }
            return Err(self.error(status, &v, operation));
        }
    }

    fn error(&self, status: StatusCode, v: &Value, operation: &str) -> DnsProviderError {
        let e = v.get("error");
        let message = e
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let reason = e
            .and_then(|e| e.get("errors"))
            .and_then(|x| x.get(0))
            .and_then(|x| x.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let detail = format!("{} {reason}: {message}", status.as_u16());
        match status.as_u16() {
            401 => DnsProviderError::Auth {
                service: SERVICE.into(),
                detail,
                hint: "check GCP_SERVICE_ACCOUNT_FILE (the key may be disabled)".into(),
            },
            403 => DnsProviderError::Forbidden {
                service: SERVICE.into(),
                detail,
                hint: format!(
                    "give `{}` the role DNS Administrator (roles/dns.admin) on project `{}`, and check that the Cloud DNS API is enabled there",
                    self.email, self.project
                ),
            },
            404 if reason == "notFound" || message.contains("managedZone") => {
                DnsProviderError::ZoneNotFound {
                    service: SERVICE.into(),
                    zone: self.zone.clone(),
                    hint: format!(
                        "there is no managed zone `{}` in project `{}`: check GCP_MANAGED_ZONE (the zone's name in Cloud DNS, not its DNS name) and GCP_PROJECT",
                        self.managed_zone, self.project
                    ),
                }
            }
            // The sets were read just before the change: one that no longer matches (412) or
            // that appeared meanwhile (409) is another writer's doing; nothing was applied.
            412 | 409 => DnsProviderError::ZoneChanged {
                server: SERVICE.into(),
                zone: self.zone.clone(),
                evidence: format!("412 {reason}: {message}"),
            },
            429 => DnsProviderError::RateLimited {
                service: SERVICE.into(),
                waited: Duration::from_secs((1 << RATE_RETRIES) - 1),
            },
            _ => DnsProviderError::Api {
                service: SERVICE.into(),
                operation: operation.to_owned(),
                status: status.as_u16(),
                detail,
            },
        }
    }

    fn parse_sets(v: &Value) -> Vec<(String, String, RrSet)> {
        v.get("rrsets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let name = canonical_name(s.get("name")?.as_str()?);
                let kind = s.get("type")?.as_str()?.to_owned();
                let ttl = s
                    .get("ttl")
                    .and_then(Value::as_u64)
                    .and_then(|t| u32::try_from(t).ok())
                    .unwrap_or(0);
                let values = s
                    .get("rrdatas")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect();
                Some((name, kind, RrSet { ttl, values }))
            })
            .collect()
    }

    /// Every record of the managed zone.
    pub async fn records(&self) -> Result<Vec<Record>, DnsProviderError> {
        let url = format!("{}/rrsets", self.base());
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = Vec::new();
            if let Some(p) = &page {
                q.push(("pageToken", p.clone()));
            }
            let v = self
                .call(
                    Method::GET,
                    &url,
                    &q,
                    None,
                    &format!("the listing of managed zone {}", self.managed_zone),
                )
                .await?;
            for (name, kind, set) in Self::parse_sets(&v) {
                let kind = RecordType::from_name(&kind);
                for value in &set.values {
                    out.push(Record::new(&name, kind, core_value(kind, value), set.ttl));
                }
            }
            match v.get("nextPageToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => page = Some(t.to_owned()),
                _ => {
                    out.sort();
                    return Ok(out);
                }
            }
        }
        Err(DnsProviderError::Protocol {
            server: SERVICE.into(),
            reason: "more than 10 000 pages of record sets".into(),
        })
    }

    async fn rrset(&self, name: &str, kind: RecordType) -> Result<Option<RrSet>, DnsProviderError> {
        let v = self
            .call(
                Method::GET,
                &format!("{}/rrsets", self.base()),
                &[
                    ("name", format!("{name}.")),
                    ("type", kind.as_str().to_owned()),
                ],
                None,
                &format!("the lookup of {kind} {name}"),
            )
            .await?;
        Ok(Self::parse_sets(&v)
            .into_iter()
            .find(|(n, k, _)| n == name && k == kind.as_str())
            .map(|(_, _, s)| s))
    }

    async fn wait_done(&self, id: &str) -> Result<(), DnsProviderError> {
        let start = Instant::now();
        loop {
            let v = self
                .call(
                    Method::GET,
                    &format!("{}/changes/{id}", self.base()),
                    &[],
                    None,
                    &format!("the status of change {id}"),
                )
                .await?;
            if v.get("status").and_then(Value::as_str) == Some("done") {
                return Ok(());
            }
            if start.elapsed() >= self.done_timeout {
                return Err(DnsProviderError::Api {
                    service: SERVICE.into(),
                    operation: format!("change {id}"),
                    status: 200,
                    detail: format!(
                        "accepted but still pending after {:?}; Cloud DNS will finish it: run `autogit dns plan` later to see",
                        self.done_timeout
                    ),
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }
}

fn set_json(name: &str, kind: RecordType, s: &RrSet) -> Value {
    json!({"name": format!("{name}."), "type": kind.as_str(), "ttl": s.ttl, "rrdatas": s.values})
}

#[async_trait::async_trait]
impl DnsProvider for Gcloud {
    fn describe(&self) -> String {
        format!(
            "gcloud managed zone {} in project {} ({})",
            self.managed_zone, self.project, self.zone
        )
    }

    /// The whole managed zone (paginated); `names` is not needed.
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
                if let Entry::Vacant(slot) = current.entry((r.name.clone(), r.kind)) {
                    slot.insert(self.rrset(&r.name, r.kind).await?);
                }
            }
        }
        let mut next = current.clone();
        for c in changes {
            let (remove, add) = match c {
                Change::Create { record } => (None, Some(record)),
                Change::Delete { record } => (Some(record), None),
                Change::Update { from, to } => (Some(from), Some(to)),
            };
            if let Some(r) = remove
                && let Some(Some(s)) = next.get_mut(&(r.name.clone(), r.kind))
            {
                s.values.retain(|v| core_value(r.kind, v) != r.value);
            }
            if let Some(a) = add {
                let slot = next.entry((a.name.clone(), a.kind)).or_insert(None);
                let s = slot.get_or_insert(RrSet {
                    ttl: a.ttl,
                    values: Vec::new(),
                });
                s.ttl = a.ttl;
                if !s.values.iter().any(|v| core_value(a.kind, v) == a.value) {
                    s.values.push(wire_value(a));
                }
            }
        }
        let (mut deletions, mut additions) = (Vec::new(), Vec::new());
        for (key, after) in next {
            let before = current.get(&key).cloned().flatten();
            let after = after.filter(|s| !s.values.is_empty());
            if before == after {
                continue;
            }
            if let Some(b) = &before {
                deletions.push(set_json(&key.0, key.1, b));
            }
            if let Some(a) = &after {
                additions.push(set_json(&key.0, key.1, a));
            }
        }
        if deletions.is_empty() && additions.is_empty() {
            return Ok(());
        }
        let v = self
            .call(
                Method::POST,
                &format!("{}/changes", self.base()),
                &[],
                Some(&json!({"additions": additions, "deletions": deletions})),
                "a change",
            )
            .await?;
        match v.get("id").and_then(Value::as_str) {
            Some(id) if v.get("status").and_then(Value::as_str) != Some("done") => {
                self.wait_done(id).await
            }
            _ => Ok(()),
        }
    }
}

/// The DER inside a PEM `PRIVATE KEY` block.
fn pem_pkcs8(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = pem[start..].find("-----END PRIVATE KEY-----")? + start;
    let b64: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    data_encoding::BASE64.decode(b64.as_bytes()).ok()
}
