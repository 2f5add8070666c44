//! Cloudflare DNS through API v4 (`https://api.cloudflare.com/client/v4`, or
//! `CLOUDFLARE_API_URL`), authenticated with an API token (`Authorization: Bearer`) that has
//! `Zone:DNS:Edit` (and `Zone:Zone:Read` for the zone lookup) on the zone.
//!
//! - The zone id is `CLOUDFLARE_ZONE_ID`, or looked up by name (`GET /zones?name=`).
//! - `list` reads every record of the zone, page by page (`page`, `per_page`,
//!   `result_info.total_pages`), and remembers each record's id.
//! - `apply` sends one request per change: `POST` a create, `PATCH` an update, `DELETE` a
//!   delete (by the id the listing found). Cloudflare holds values, not RRsets, so a second TXT
//!   value at a name is simply a second record. Not atomic: an error leaves the changes before it
//!   applied ([`DnsProvider::atomic`] is false).
//! - A and AAAA records carry `proxied` as the record says (CLOUDFLARE_PROXIED), and the
//!   listing reads it back, so a record switched on or off the proxy by hand is drift.
//! - Errors come from Cloudflare's `{"success": false, "errors": [{"code", "message"}]}` and
//!   say what to check; 429 is retried after `Retry-After` (three times, at most a minute each).

use super::wire::{error_chain, http_client, unquote_txt};
use super::{DnsProvider, DnsProviderError};
use autogit_core::dns::{Change, Record, RecordType, canonical_name};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Cloudflare's API endpoint.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// Records per page when listing (Cloudflare's default is 100).
const PER_PAGE: u32 = 100;
/// Largest number of pages read (5 000 000 records at 100 a page would be a broken answer).
const MAX_PAGES: u32 = 10_000;
/// Retries of a 429 answer, and the longest wait honoured for one.
const RATE_RETRIES: u32 = 3;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const SERVICE: &str = "Cloudflare";

/// Settings from CLOUDFLARE_API_TOKEN, CLOUDFLARE_ZONE_ID, CLOUDFLARE_API_URL and DNS_ZONE (or
/// BASE_DOMAIN).
#[derive(Clone)]
pub struct CloudflareConfig {
    /// API base URL without a trailing slash ([`DEFAULT_API_URL`]).
    pub api_url: String,
    pub token: SecretString,
    /// The zone apex, e.g. `example.com`.
    pub zone: String,
    /// The zone's id when known (skips the lookup by name).
    pub zone_id: Option<String>,
    /// Per request.
    pub timeout: Duration,
}

impl fmt::Debug for CloudflareConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareConfig")
            .field("api_url", &self.api_url)
            .field("token", &"[redacted]")
            .field("zone", &self.zone)
            .field("zone_id", &self.zone_id)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// (name, type, value) of a record.
type RecordKey = (String, RecordType, String);

/// The Cloudflare provider for one zone.
#[derive(Clone)]
pub struct Cloudflare {
    http: reqwest::Client,
    api: String,
    token: SecretString,
    zone: String,
    zone_id: Arc<Mutex<Option<String>>>,
    /// Record ids by (name, type, value), from the last listing.
    ids: Arc<Mutex<BTreeMap<RecordKey, String>>>,
}

impl fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloudflare")
            .field("api", &self.api)
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl Cloudflare {
    /// Checks the settings; connects to nothing.
    pub fn new(config: &CloudflareConfig) -> Result<Self, DnsProviderError> {
        let bad = DnsProviderError::Config;
        if config.token.expose_secret().trim().is_empty() {
            return Err(bad("CLOUDFLARE_API_TOKEN is empty".into()));
        }
        let api = config.api_url.trim().trim_end_matches('/').to_owned();
        if !(api.starts_with("https://") || api.starts_with("http://")) {
            return Err(bad(format!(
                "CLOUDFLARE_API_URL `{api}` is not an http(s) URL"
            )));
        }
        let zone = canonical_name(&config.zone);
        if zone.is_empty() {
            return Err(bad("the Cloudflare zone name is empty".into()));
        }
        let http = http_client(config.timeout).map_err(bad)?;
        Ok(Self {
            http,
            api,
            token: SecretString::from(config.token.expose_secret().trim().to_owned()),
            zone,
            zone_id: Arc::new(Mutex::new(
                config.zone_id.clone().filter(|z| !z.trim().is_empty()),
            )),
            ids: Arc::default(),
        })
    }

    /// The zone this provider manages (canonical).
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// One API call: the `result` of a successful answer, or the error Cloudflare's body says.
    /// Returns the whole body (for `result_info`).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        operation: &str,
    ) -> Result<Value, DnsProviderError> {
        let url = format!("{}{path}", self.api);
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.token.expose_secret())
                .query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| DnsProviderError::Http {
                service: SERVICE.into(),
                url: url.clone(),
                reason: error_chain(&e),
            })?;
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(MAX_RETRY_AFTER);
                if attempt > RATE_RETRIES {
                    return Err(DnsProviderError::RateLimited {
                        service: SERVICE.into(),
                        waited,
                    });
                }
                tokio::time::sleep(after).await;
                waited += after;
                continue;
            }
            let text = resp.text().await.map_err(|e| DnsProviderError::Http {
                service: SERVICE.into(),
                url: url.clone(),
                reason: error_chain(&e),
            })?;
            let parsed: Option<Value> = serde_json::from_str(&text).ok();
            let success = parsed
                .as_ref()
                .and_then(|v| v.get("success"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if status.is_success() && success {
                return parsed.ok_or_else(|| unreachable_json(&url));
            }
            return Err(self.error(status, parsed.as_ref(), &text, operation));
        }
    }

    /// Cloudflare's error answer as a message that says what to check.
    fn error(
        &self,
        status: StatusCode,
        body: Option<&Value>,
        text: &str,
        operation: &str,
    ) -> DnsProviderError {
        let errors: Vec<(i64, String)> = body
            .and_then(|b| b.get("errors"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e.get("code").and_then(Value::as_i64).unwrap_or(0),
                            e.get("message")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let detail = if errors.is_empty() {
            let snippet: String = text.chars().take(200).collect();
            format!("HTTP {}: {snippet}", status.as_u16())
        } else {
            errors
                .iter()
                .map(|(c, m)| format!("code {c}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let codes: Vec<i64> = errors.iter().map(|(c, _)| *c).collect();
        let has = |c: i64| codes.contains(&c);
        // 9109 "Invalid access token", 6003/6111 malformed Authorization header, 1000 invalid
        // API token: the token itself is wrong.
        if has(9109) || has(6003) || has(6111) || has(1000) || status == StatusCode::UNAUTHORIZED {
            return DnsProviderError::Auth {
                service: SERVICE.into(),
                detail,
                hint: "check CLOUDFLARE_API_TOKEN: an API token (not the Global API Key) from My Profile > API Tokens, not expired or revoked".into(),
            };
        }
        // 10000 "Authentication error": a valid token without the permission on this zone.
        if has(10000) || status == StatusCode::FORBIDDEN {
            return DnsProviderError::Forbidden {
                service: SERVICE.into(),
                detail,
                hint: format!(
                    "give the token the permissions Zone:Zone:Read and Zone:DNS:Edit for zone `{}` (or check that CLOUDFLARE_API_TOKEN is the right token)",
                    self.zone
                ),
            };
        }
        DnsProviderError::Api {
            service: SERVICE.into(),
            operation: operation.to_owned(),
            status: status.as_u16(),
            detail,
        }
    }

    /// The zone id: CLOUDFLARE_ZONE_ID, or looked up by name once.
    async fn zone_id(&self) -> Result<String, DnsProviderError> {
        if let Some(id) = self
            .zone_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(id);
        }
        let body = self
            .call(
                Method::GET,
                "/zones",
                &[("name", self.zone.clone())],
                None,
                &format!("the lookup of zone `{}`", self.zone),
            )
            .await?;
        let id = body
            .get("result")
            .and_then(Value::as_array)
            .and_then(|zones| {
                zones.iter().find(|z| {
                    z.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| canonical_name(n) == self.zone)
                })
            })
            .and_then(|z| z.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DnsProviderError::ZoneNotFound {
                service: SERVICE.into(),
                zone: self.zone.clone(),
                hint: "the token cannot see it: check DNS_ZONE / BASE_DOMAIN (the zone as Cloudflare names it), that the token has Zone:Zone:Read for it, or set CLOUDFLARE_ZONE_ID".into(),
            })?;
        *self.zone_id.lock().unwrap_or_else(PoisonError::into_inner) = Some(id.clone());
        Ok(id)
    }

    /// Every record of the zone, page by page; remembers the ids.
    pub async fn records(&self) -> Result<Vec<Record>, DnsProviderError> {
        let zid = self.zone_id().await?;
        let path = format!("/zones/{zid}/dns_records");
        let mut out = Vec::new();
        let mut ids = BTreeMap::new();
        let mut page = 1;
        loop {
            let body = self
                .call(
                    Method::GET,
                    &path,
                    &[
                        ("page", page.to_string()),
                        ("per_page", PER_PAGE.to_string()),
                    ],
                    None,
                    &format!("the listing of zone `{}`", self.zone),
                )
                .await?;
            let items = body
                .get("result")
                .and_then(Value::as_array)
                .ok_or_else(|| self.protocol("a record listing without a `result` array"))?;
            for item in items {
                let (record, id) = self.parse_record(item)?;
                ids.insert((record.name.clone(), record.kind, record.value.clone()), id);
                out.push(record);
            }
            let total_pages = body
                .get("result_info")
                .and_then(|i| i.get("total_pages"))
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if u64::from(page) >= total_pages || items.is_empty() {
                break;
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(self.protocol("more than 10 000 pages of records"));
            }
        }
        *self.ids.lock().unwrap_or_else(PoisonError::into_inner) = ids;
        out.sort();
        Ok(out)
    }

    fn protocol(&self, reason: &str) -> DnsProviderError {
        DnsProviderError::Protocol {
            server: format!("{SERVICE} {}", self.api),
            reason: reason.to_owned(),
        }
    }

    /// A Cloudflare record object as a core record and its id.
    fn parse_record(&self, item: &Value) -> Result<(Record, String), DnsProviderError> {
        let s = |k: &str| item.get(k).and_then(Value::as_str);
        let (Some(id), Some(name), Some(kind), Some(content)) =
            (s("id"), s("name"), s("type"), s("content"))
        else {
            return Err(self.protocol("a record without id, name, type or content"));
        };
        let kind = RecordType::from_name(kind);
        let value = match kind {
            RecordType::Txt => unquote_txt(content),
            _ => content.to_owned(),
        };
        let ttl = item
            .get("ttl")
            .and_then(Value::as_u64)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(1);
        // Read back so that a record someone switched to (or off) the proxy is drift.
        let proxied = item
            .get("proxied")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((
            Record::new(name, kind, value, ttl).with_proxied(proxied),
            id.to_owned(),
        ))
    }

    /// The id of `r`: from the last listing, else by asking for the name and type.
    async fn id_of(&self, zid: &str, r: &Record) -> Result<String, DnsProviderError> {
        let key = (r.name.clone(), r.kind, r.value.clone());
        if let Some(id) = self
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(id.clone());
        }
        let body = self
            .call(
                Method::GET,
                &format!("/zones/{zid}/dns_records"),
                &[
                    ("name", r.name.clone()),
                    ("type", r.kind.as_str().to_owned()),
                    ("per_page", PER_PAGE.to_string()),
                ],
                None,
                &format!("the lookup of {} {}", r.kind, r.name),
            )
            .await?;
        for item in body
            .get("result")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (found, id) = self.parse_record(item)?;
            if found.name == r.name && found.kind == r.kind && found.value == r.value {
                return Ok(id);
            }
        }
        Err(DnsProviderError::Api {
            service: SERVICE.into(),
            operation: format!("the lookup of {r}"),
            status: 404,
            detail: "no such record in the zone (deleted by someone else?)".into(),
        })
    }

    fn body(&self, r: &Record) -> Result<Value, DnsProviderError> {
        if !(r.name == self.zone || r.name.ends_with(&format!(".{}", self.zone))) {
            return Err(DnsProviderError::Config(format!(
                "record `{}` is outside zone `{}`",
                r.name, self.zone
            )));
        }
        let mut b = json!({
            "type": r.kind.as_str(),
            "name": r.name,
            "content": r.value,
            "ttl": r.ttl,
        });
        match r.kind {
            // Through Cloudflare's proxy only for the subdomains CLOUDFLARE_PROXIED names;
            // otherwise the name resolves to the ingress itself.
            RecordType::A | RecordType::Aaaa => b["proxied"] = json!(r.proxied),
            RecordType::Txt if r.proxied => {
                return Err(DnsProviderError::Config(format!(
                    "a TXT record cannot be proxied ({})",
                    r.name
                )));
            }
            RecordType::Txt => {}
            k => {
                return Err(DnsProviderError::Config(format!(
                    "autogit does not write {k} records ({})",
                    r.name
                )));
            }
        }
        Ok(b)
    }

    fn forget(&self, r: &Record) {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(r.name.clone(), r.kind, r.value.clone()));
    }

    fn remember(&self, r: &Record, answer: &Value) {
        if let Some(id) = answer
            .get("result")
            .and_then(|x| x.get("id"))
            .and_then(Value::as_str)
        {
            self.ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((r.name.clone(), r.kind, r.value.clone()), id.to_owned());
        }
    }
}

#[async_trait::async_trait]
impl DnsProvider for Cloudflare {
    fn describe(&self) -> String {
        format!("cloudflare zone {}", self.zone)
    }

    fn atomic(&self) -> bool {
        false
    }

    /// The whole zone (paginated); `names` is not needed.
    async fn list(&self, _names: &[String]) -> Result<Vec<Record>, DnsProviderError> {
        self.records().await
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DnsProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        let zid = self.zone_id().await?;
        let base = format!("/zones/{zid}/dns_records");
        for change in changes {
            match change {
                Change::Create { record } => {
                    let body = self.body(record)?;
                    let answer = self
                        .call(
                            Method::POST,
                            &base,
                            &[],
                            Some(&body),
                            &format!("creating {record}"),
                        )
                        .await?;
                    self.remember(record, &answer);
                }
                Change::Update { from, to } => {
                    let id = self.id_of(&zid, from).await?;
                    let body = self.body(to)?;
                    let answer = self
                        .call(
                            Method::PATCH,
                            &format!("{base}/{id}"),
                            &[],
                            Some(&body),
                            &format!("updating {from}"),
                        )
                        .await?;
                    self.forget(from);
                    self.remember(to, &answer);
                }
                Change::Delete { record } => {
                    let id = self.id_of(&zid, record).await?;
                    self.call(
                        Method::DELETE,
                        &format!("{base}/{id}"),
                        &[],
                        None,
                        &format!("deleting {record}"),
                    )
                    .await?;
                    self.forget(record);
                }
            }
        }
        Ok(())
    }
}

fn unreachable_json(url: &str) -> DnsProviderError {
    DnsProviderError::Protocol {
        server: url.to_owned(),
        reason: "an answer that is not JSON".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let c = |url: &str, token: &str| CloudflareConfig {
            api_url: url.into(),
            token: SecretString::from(token.to_owned()),
            zone: "Example.COM.".into(),
            zone_id: None,
            timeout: Duration::from_secs(5),
        };
        assert!(Cloudflare::new(&c(DEFAULT_API_URL, " ")).is_err());
        assert!(Cloudflare::new(&c("ftp://x", "t")).is_err());
        let p = Cloudflare::new(&c(&format!("{DEFAULT_API_URL}/"), "t")).unwrap();
        assert_eq!(p.zone(), "example.com");
        assert_eq!(p.api, DEFAULT_API_URL);
        assert!(!format!("{p:?}").contains("\"t\""));
    }
}
