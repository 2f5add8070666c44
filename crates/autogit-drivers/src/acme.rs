//! Certificates from an ACME CA (RFC 8555) by DNS-01, through any [`DnsProvider`]:
//! `*.BASE_DOMAIN` and the apex in one order. Both challenges live at the same name, so both
//! TXT values are added (never replaced) before either challenge is declared ready; the zone
//! is read back from its authoritative server until both are there; the challenge records
//! are removed afterwards, whatever the outcome.
//!
//! Bounded: every request to the CA gets [`acme_request_timeout`] and the whole issuance
//! [`acme_issuance_deadline`] (a CA that accepts connections and never answers fails the run
//! with [`AcmeError::Timeout`]); the DNS cleanup runs after the deadline, with its own bound.
//!
//! Challenge records outlive a run when the DNS server is gone at cleanup time, so what is
//! published is first recorded in `acme-challenges.json` (atomically, before the records are
//! added) and the next run removes whatever that file still lists before it starts.
//!
//! Files under `<data>/tls/`: one account per ACME directory (`acme-account.<host>.<hash>.json`,
//! [`account_file_name`], the account key, 0600; switching `ACME_DIRECTORY` registers a new
//! account, and a CA that has forgotten the stored one, `accountDoesNotExist`, gets a new
//! registration once), `acme-challenges.json` while challenge records may be published,
//! `<domain>/fullchain.pem` (0644) and `<domain>/key.pem` (0600), each written atomically: a
//! failed renewal leaves the old certificate serving.

use crate::dns::{DnsProvider, DnsProviderError};
use crate::fsx;
use autogit_core::dns::{Change, Record, RecordType};
use autogit_core::tls::{
    account_file_name, acme_issuance_deadline, acme_request_timeout, certificate_names,
    challenge_name,
};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, RetryPolicy,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors of issuance. None carries a key.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME CA at {directory}: {message}")]
    Ca { directory: String, message: String },
    #[error("DNS for the challenge: {0}")]
    Dns(#[from] DnsProviderError),
    #[error(
        "the challenge record {name} did not appear on the authoritative server within {after:?} (expected {expected} value(s), saw {seen})"
    )]
    Propagation {
        name: String,
        after: Duration,
        expected: usize,
        seen: usize,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("the certificate from the CA is unusable: {0}")]
    Certificate(String),
    #[error(
        "ACME CA at {directory}: no answer {what} within {after:?}; the CA may be down or overloaded: try again later (the current certificate keeps serving)"
    )]
    Timeout {
        directory: String,
        what: String,
        after: Duration,
    },
}

/// What [`issue`] needs.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// The directory URL.
    pub directory: String,
    /// `mailto:` contact (optional).
    pub email: Option<String>,
    /// A PEM root to trust for the CA's own HTTPS (a private CA, Pebble); `None`: web PKI.
    pub ca_root: Option<PathBuf>,
    /// `<data>/tls`.
    pub dir: PathBuf,
    /// How long to wait for the challenge records on the authoritative server.
    pub propagation_timeout: Duration,
    /// How long to wait for the CA to validate and issue.
    pub order_timeout: Duration,
    /// TTL of the challenge records.
    pub ttl: u32,
}

/// A certificate on disk.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CertInfo {
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub fullchain: PathBuf,
    pub key: PathBuf,
}

fn ca_err(directory: &str) -> impl Fn(instant_acme::Error) -> AcmeError + '_ {
    move |e| AcmeError::Ca {
        directory: directory.to_owned(),
        message: e.to_string(),
    }
}

/// Paths of the certificate for `base_domain`.
pub fn cert_paths(dir: &Path, base_domain: &str) -> (PathBuf, PathBuf) {
    let d = dir.join(base_domain.trim_end_matches('.').to_ascii_lowercase());
    (d.join("fullchain.pem"), d.join("key.pem"))
}

/// Reads the leaf certificate of `fullchain`: its DNS names and validity.
pub fn read_cert(fullchain: &Path, key: &Path) -> Result<CertInfo, AcmeError> {
    let file_err = |m: String| AcmeError::File {
        path: fullchain.to_owned(),
        message: m,
    };
    let pem = fsx::read_bounded(fullchain, 1 << 20).map_err(|e| file_err(e.to_string()))?;
    let (_, block) =
        x509_parser::pem::parse_x509_pem(&pem).map_err(|e| file_err(format!("not PEM: {e}")))?;
    let cert = block
        .parse_x509()
        .map_err(|e| file_err(format!("not a certificate: {e}")))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok(CertInfo {
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        fullchain: fullchain.to_owned(),
        key: key.to_owned(),
    })
}

/// One certificate of a chain file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainCert {
    /// RFC 4514 distinguished names.
    pub subject: String,
    pub issuer: String,
    pub not_after: i64,
}

/// Every certificate of `fullchain`, in file order (the leaf first, as ACME writes it).
pub fn read_chain(fullchain: &Path) -> Result<Vec<ChainCert>, AcmeError> {
    let file_err = |m: String| AcmeError::File {
        path: fullchain.to_owned(),
        message: m,
    };
    let pem = fsx::read_bounded(fullchain, 1 << 20).map_err(|e| file_err(e.to_string()))?;
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let block = block.map_err(|e| file_err(format!("not PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block
            .parse_x509()
            .map_err(|e| file_err(format!("not a certificate: {e}")))?;
        out.push(ChainCert {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: cert.validity().not_after.timestamp(),
        });
    }
    if out.is_empty() {
        return Err(file_err("no certificate in it".into()));
    }
    Ok(out)
}

/// The account key and the certificate keys live here: 0700 whatever the umask (the ingress
/// reads the copies that rendering makes, not this directory).
fn private_tls_dir(dir: &Path) -> Result<(), AcmeError> {
    fsx::ensure_private_dir(dir).map_err(|e| AcmeError::File {
        path: dir.to_owned(),
        message: e.to_string(),
    })
}

/// Runs one request to the CA, bounded by `limit`.
async fn ca_call<T>(
    s: &AcmeSettings,
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, AcmeError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(ca_err(&s.directory)),
        Err(_) => Err(timeout_err(s, what, limit)),
    }
}

fn timeout_err(s: &AcmeSettings, what: &str, after: Duration) -> AcmeError {
    AcmeError::Timeout {
        directory: s.directory.clone(),
        what: what.to_owned(),
        after,
    }
}

/// Runs `fut` (a part of the issuance that talks to the CA) until the issuance's `deadline`.
async fn until<T>(
    s: &AcmeSettings,
    deadline: tokio::time::Instant,
    fut: impl Future<Output = Result<T, AcmeError>>,
) -> Result<T, AcmeError> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(timeout_err(
            s,
            "to the whole issuance",
            acme_issuance_deadline(s.propagation_timeout, s.order_timeout),
        )),
    }
}

fn builder(s: &AcmeSettings) -> Result<instant_acme::AccountBuilder, AcmeError> {
    let err = ca_err(&s.directory);
    match &s.ca_root {
        Some(root) => Account::builder_with_root(root).map_err(&err),
        None => Account::builder().map_err(&err),
    }
}

/// The stored account of `s.directory`, or `None` when there is none. A file of the layout
/// before accounts were keyed by directory (`acme-account.json`) is used only when it names
/// this directory.
fn stored_credentials(s: &AcmeSettings) -> Result<Option<AccountCredentials>, AcmeError> {
    let keyed = s.dir.join(account_file_name(&s.directory));
    let legacy = s.dir.join("acme-account.json");
    for (path, must_match) in [(keyed, false), (legacy, true)] {
        if !path.exists() {
            continue;
        }
        let file_err = |message: String| AcmeError::File {
            path: path.clone(),
            message,
        };
        let bytes = fsx::read_bounded(&path, 64 << 10).map_err(|e| file_err(e.to_string()))?;
        let stored_dir: Option<String> = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("directory")?.as_str().map(str::to_owned));
        if stored_dir.as_deref() != Some(s.directory.as_str()) {
            if must_match {
                continue;
            }
            return Err(file_err(format!(
                "this account file is for another ACME directory ({}), not {}: remove it and run again to register a new account",
                stored_dir.as_deref().unwrap_or("none recorded"),
                s.directory
            )));
        }
        let creds: AccountCredentials = serde_json::from_slice(&bytes)
            .map_err(|e| file_err(format!("not an ACME account file: {e}")))?;
        return Ok(Some(creds));
    }
    Ok(None)
}

/// Registers a new account at `s.directory` and stores it (atomically, 0600) under its
/// directory's file name.
async fn register(s: &AcmeSettings) -> Result<Account, AcmeError> {
    let path = s.dir.join(account_file_name(&s.directory));
    let contact = s.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = ca_call(
        s,
        "to the account registration",
        acme_request_timeout(s.order_timeout) * 3,
        builder(s)?.create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory.clone(),
            None,
        ),
    )
    .await?;
    let json = serde_json::to_vec(&creds).map_err(|e| AcmeError::File {
        path: path.clone(),
        message: e.to_string(),
    })?;
    private_tls_dir(&s.dir)?;
    fsx::write_atomic(&path, &json, 0o600).map_err(|e| AcmeError::File {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(account)
}

/// The account at `s.directory`: the stored one (`true`: it may be unknown to the CA), or a
/// new registration (`false`).
async fn account(s: &AcmeSettings) -> Result<(Account, bool), AcmeError> {
    match stored_credentials(s)? {
        Some(creds) => {
            let account = ca_call(
                s,
                "to the directory request",
                acme_request_timeout(s.order_timeout),
                builder(s)?.from_credentials(creds),
            )
            .await?;
            Ok((account, true))
        }
        None => Ok((register(s).await?, false)),
    }
}

/// A challenge record this run published (or may have): what `acme-challenges.json` lists.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Published {
    name: String,
    value: String,
    ttl: u32,
}

const PUBLISHED_FILE: &str = "acme-challenges.json";

fn published_path(s: &AcmeSettings) -> PathBuf {
    s.dir.join(PUBLISHED_FILE)
}

fn read_published(s: &AcmeSettings) -> Result<Vec<Record>, AcmeError> {
    let path = published_path(s);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = fsx::read_bounded(&path, 1 << 20).map_err(|e| AcmeError::File {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let list: Vec<Published> = serde_json::from_slice(&bytes).map_err(|e| AcmeError::File {
        path: path.clone(),
        message: format!(
            "not a list of challenge records ({e}): remove any `_acme-challenge` TXT records by hand, then this file"
        ),
    })?;
    Ok(list
        .into_iter()
        .map(|p| Record::new(&p.name, RecordType::Txt, p.value, p.ttl))
        .collect())
}

/// Records `records` as published (atomically), or forgets them all when empty.
fn write_published(s: &AcmeSettings, records: &[Record]) -> Result<(), AcmeError> {
    let path = published_path(s);
    let file_err = |message: String| AcmeError::File {
        path: path.clone(),
        message,
    };
    if records.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file_err(e.to_string())),
            _ => Ok(()),
        };
    }
    let list: Vec<Published> = records
        .iter()
        .map(|r| Published {
            name: r.name.clone(),
            value: r.value.clone(),
            ttl: r.ttl,
        })
        .collect();
    let json = serde_json::to_vec_pretty(&list).map_err(|e| file_err(e.to_string()))?;
    fsx::write_atomic(&path, &json, 0o600).map_err(|e| file_err(e.to_string()))
}

/// Removes those of `records` still in the zone (read first, so a value already gone, or
/// never added by a provider that failed half-way, does not fail the cleanup for ever),
/// bounded by the propagation timeout (a provider may wait for its change to be in sync).
/// Returns what may still be published: nothing, or all of them.
async fn remove_records<P: DnsProvider>(
    s: &AcmeSettings,
    dns: &P,
    records: &[Record],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Vec<Record> {
    if records.is_empty() {
        return Vec::new();
    }
    let limit = s
        .propagation_timeout
        .max(acme_request_timeout(s.order_timeout));
    let cleanup = async {
        let mut names: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        names.dedup();
        let seen = dns.list(&names).await?;
        let deletes: Vec<Change> = records
            .iter()
            .filter(|w| {
                seen.iter()
                    .any(|r| r.kind == RecordType::Txt && r.name == w.name && r.value == w.value)
            })
            .map(|r| Change::Delete { record: r.clone() })
            .collect();
        if deletes.is_empty() {
            return Ok(());
        }
        dns.apply(&deletes).await
    };
    let failure = match tokio::time::timeout(limit, cleanup).await {
        Ok(Ok(())) => return Vec::new(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("{} did not answer within {limit:?}", dns.describe()),
    };
    progress(&format!(
        "warning: removing {} challenge record(s) at {} failed: {failure}; the next run removes them (listed in {})",
        records.len(),
        records[0].name,
        published_path(s).display()
    ));
    records.to_vec()
}

/// Issues (or renews) the certificate for `*.base_domain` and `base_domain`, answering DNS-01
/// through `dns`, and stores it. `progress` gets one line per phase.
pub async fn issue<P: DnsProvider>(
    s: &AcmeSettings,
    base_domain: &str,
    dns: &P,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<CertInfo, AcmeError> {
    let deadline = tokio::time::Instant::now()
        + acme_issuance_deadline(s.propagation_timeout, s.order_timeout);
    // What an earlier run published and could not remove goes first.
    let stale = read_published(s)?;
    if !stale.is_empty() {
        progress(&format!(
            "removing {} challenge record(s) an earlier run left at {}",
            stale.len(),
            stale[0].name
        ));
    }
    let mut stale = remove_records(s, dns, &stale, progress).await;
    write_published(s, &stale)?;

    let names = certificate_names(base_domain);
    let (mut order, records) = until(s, deadline, async {
        let mut order = open_order(s, &names, progress).await?;
        let records = dns01_records(s, &mut order).await?;
        Ok((order, records))
    })
    .await?;
    // Recorded before they are published: if this process or the DNS server dies before the
    // cleanup below, the next run removes them.
    stale.extend(records.iter().cloned());
    write_published(s, &stale)?;
    let result = until(s, deadline, async {
        if !records.is_empty() {
            progress(&format!(
                "adding {} challenge record(s) at {}",
                records.len(),
                records[0].name
            ));
            let creates: Vec<Change> = records
                .iter()
                .map(|r| Change::Create { record: r.clone() })
                .collect();
            dns.apply(&creates).await?;
            wait_visible(dns, &records, s.propagation_timeout).await?;
            progress("challenge records visible on the authoritative server; asking the CA to validate");
            set_ready(s, &mut order, ChallengeType::Dns01).await?;
        }
        finish_order(
            &mut order,
            s,
            &format!("the CA could not see the challenge records: check that it resolves {base_domain} through your DNS"),
            progress,
        )
        .await
    })
    .await;
    // Clean up the challenge records whatever happened (also after the deadline).
    let left = remove_records(s, dns, &stale, progress).await;
    if let Err(e) = write_published(s, &left) {
        progress(&format!("warning: {e}"));
    }
    let (key_pem, chain) = result?;
    store_certificate(s, base_domain, &names, key_pem, &chain)
}

/// The TXT record of every pending DNS-01 challenge of `order`.
async fn dns01_records(s: &AcmeSettings, order: &mut Order) -> Result<Vec<Record>, AcmeError> {
    let limit = acme_request_timeout(s.order_timeout);
    let mut records = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(a) = next_authorization(s, &mut authzs, limit).await? {
        let mut a = a;
        match a.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::Ca {
                    directory: s.directory.clone(),
                    message: format!("authorization is {other:?}"),
                });
            }
        }
        let ch = a
            .challenge(ChallengeType::Dns01)
            .ok_or_else(|| AcmeError::Ca {
                directory: s.directory.clone(),
                message: "the CA offers no dns-01 challenge".to_owned(),
            })?;
        let name = challenge_name(&ch.identifier().to_string());
        records.push(Record::new(
            &name,
            RecordType::Txt,
            ch.key_authorization().dns_value(),
            s.ttl,
        ));
    }
    Ok(records)
}

/// The next authorization of the order, bounded by `limit`.
async fn next_authorization<'a>(
    s: &AcmeSettings,
    authzs: &'a mut instant_acme::Authorizations<'_>,
    limit: Duration,
) -> Result<Option<instant_acme::AuthorizationHandle<'a>>, AcmeError> {
    match tokio::time::timeout(limit, authzs.next()).await {
        Ok(None) => Ok(None),
        Ok(Some(r)) => r.map(Some).map_err(ca_err(&s.directory)),
        Err(_) => Err(timeout_err(s, "to an authorization request", limit)),
    }
}

/// Declares the `kind` challenge of every pending authorization ready.
async fn set_ready(
    s: &AcmeSettings,
    order: &mut Order,
    kind: ChallengeType,
) -> Result<(), AcmeError> {
    let limit = acme_request_timeout(s.order_timeout);
    let mut authzs = order.authorizations();
    while let Some(mut a) = next_authorization(s, &mut authzs, limit).await? {
        if a.status != AuthorizationStatus::Pending {
            continue;
        }
        if let Some(mut ch) = a.challenge(kind.clone()) {
            ca_call(s, "to a challenge request", limit, ch.set_ready()).await?;
        }
    }
    Ok(())
}

/// Checks that the chain names every one of `names`, then writes the key (0600) and the chain
/// where the ingress takes them from, each atomically.
fn store_certificate(
    s: &AcmeSettings,
    base_domain: &str,
    names: &[String],
    key_pem: String,
    chain: &str,
) -> Result<CertInfo, AcmeError> {
    store(&s.dir, base_domain, names, key_pem, chain)
}

/// Installs a chain and its key for `base_domain` under `dir` (`<data>/tls`), where the ingress
/// takes them from: the chain must name every one of `names`; the key (0600) and the chain are
/// each written atomically, so a failure leaves the old pair serving. Every certificate source
/// (ACME, the internal CA, a user-supplied file) stores through here.
pub fn store(
    dir: &Path,
    base_domain: &str,
    names: &[String],
    mut key_pem: String,
    chain: &str,
) -> Result<CertInfo, AcmeError> {
    let (fullchain, key) = cert_paths(dir, base_domain);
    private_tls_dir(dir)?;
    private_tls_dir(fullchain.parent().unwrap_or(dir))?;
    let write = |p: &Path, data: &[u8], mode: u32| {
        fsx::write_atomic(p, data, mode).map_err(|e| AcmeError::File {
            path: p.to_owned(),
            message: e.to_string(),
        })
    };
    // Key first: a chain without its key would not load; a new key with the old chain for a
    // moment is avoided by writing both before anything reloads.
    let tmp_chain = fullchain.with_extension("pem.new");
    write(&tmp_chain, chain.as_bytes(), 0o644)?;
    let info = read_cert(&tmp_chain, &key)?;
    for n in names {
        if !info.names.contains(n) {
            let _ = std::fs::remove_file(&tmp_chain);
            return Err(AcmeError::Certificate(format!(
                "it does not name {n} (names: {})",
                info.names.join(", ")
            )));
        }
    }
    write(&key, key_pem.as_bytes(), 0o600)?;
    secrecy::zeroize::Zeroize::zeroize(&mut key_pem);
    std::fs::rename(&tmp_chain, &fullchain).map_err(|e| AcmeError::File {
        path: fullchain.clone(),
        message: e.to_string(),
    })?;
    Ok(CertInfo { fullchain, ..info })
}

/// Issues a certificate for exactly `names` (no wildcard) by HTTP-01: the key authorizations
/// are written as files under `webroot/.well-known/acme-challenge/` (the nginx ingress serves
/// that directory on port 80, as certbot's webroot mode expects), removed afterwards whatever
/// the outcome. Stored like the DNS-01 certificate, under `base_domain`.
pub async fn issue_http01(
    s: &AcmeSettings,
    base_domain: &str,
    names: &[String],
    webroot: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<CertInfo, AcmeError> {
    if names.is_empty() || names.iter().any(|n| n.starts_with("*.")) {
        return Err(AcmeError::Certificate(
            "HTTP-01 needs explicit names (a wildcard needs DNS-01)".to_owned(),
        ));
    }
    let deadline = tokio::time::Instant::now()
        + acme_issuance_deadline(s.propagation_timeout, s.order_timeout);
    let limit = acme_request_timeout(s.order_timeout);
    let mut order = until(s, deadline, open_order(s, names, progress)).await?;
    let dir = webroot.join(".well-known/acme-challenge");
    std::fs::create_dir_all(&dir).map_err(|e| AcmeError::File {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let mut written: Vec<PathBuf> = Vec::new();
    let result = until(s, deadline, async {
        let mut authzs = order.authorizations();
        while let Some(mut a) = next_authorization(s, &mut authzs, limit).await? {
            if a.status != AuthorizationStatus::Pending {
                continue;
            }
            let mut ch = a.challenge(ChallengeType::Http01).ok_or_else(|| AcmeError::Ca {
                directory: s.directory.clone(),
                message: "the CA offers no http-01 challenge".to_owned(),
            })?;
            let token = ch.token.clone();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(AcmeError::Ca {
                    directory: s.directory.clone(),
                    message: "the CA sent a challenge token that is not base64url".to_owned(),
                });
            }
            let file = dir.join(&token);
            fsx::write_atomic(&file, ch.key_authorization().as_str().as_bytes(), 0o644).map_err(
                |e| AcmeError::File {
                    path: file.clone(),
                    message: e.to_string(),
                },
            )?;
            written.push(file);
            progress(&format!("http-01 for {} ready", ch.identifier()));
            ca_call(s, "to a challenge request", limit, ch.set_ready()).await?;
        }
        finish_order(
            &mut order,
            s,
            "the CA could not fetch http://<name>/.well-known/acme-challenge/…: check that the names resolve to the ingress and port 80 reaches it",
            progress,
        )
        .await
    })
    .await;
    for f in &written {
        let _ = std::fs::remove_file(f);
    }
    let (key_pem, chain) = result?;
    store_certificate(s, base_domain, names, key_pem, &chain)
}

/// Logs in to the CA's account (creating it on first use) and opens an order for `names`.
/// When the CA no longer knows the stored account (`accountDoesNotExist`: a CA reset, a
/// deactivated account), registers a new one, once, and goes on.
async fn open_order(
    s: &AcmeSettings,
    names: &[String],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Order, AcmeError> {
    progress(&format!("ACME account at {}", s.directory));
    let (account, stored) = account(s).await?;
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let limit = acme_request_timeout(s.order_timeout);
    let what = "to the new-order request";
    let first =
        match tokio::time::timeout(limit, account.new_order(&NewOrder::new(&identifiers))).await {
            Err(_) => return Err(timeout_err(s, what, limit)),
            Ok(r) => r,
        };
    match first {
        Err(instant_acme::Error::Api(p))
            if stored
                && p.r#type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(":accountDoesNotExist")) =>
        {
            progress(&format!(
                "the CA does not know the stored account ({}); registering a new one",
                p.detail.as_deref().unwrap_or("accountDoesNotExist")
            ));
            let account = register(s).await?;
            ca_call(
                s,
                what,
                limit,
                account.new_order(&NewOrder::new(&identifiers)),
            )
            .await
        }
        other => other.map_err(ca_err(&s.directory)),
    }
}

/// After the challenges are ready: waits for the order to be ready (or fails with `hint`, what
/// the CA could not check), finalizes it and fetches the chain. Returns `(key PEM, chain PEM)`.
async fn finish_order(
    order: &mut Order,
    s: &AcmeSettings,
    hint: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(String, String), AcmeError> {
    let limit = acme_request_timeout(s.order_timeout);
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .timeout(s.order_timeout);
    let polling = s.order_timeout + limit;
    let status = ca_call(
        s,
        "while the order is validated",
        polling,
        order.poll_ready(&retry),
    )
    .await?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Ca {
            directory: s.directory.clone(),
            message: format!("the order is {status:?} after validation ({hint})"),
        });
    }
    progress("validated; finalizing");
    let key_pem = ca_call(s, "to the finalize request", limit, order.finalize()).await?;
    let chain = ca_call(
        s,
        "while the certificate is issued",
        polling,
        order.poll_certificate(&retry),
    )
    .await?;
    Ok((key_pem, chain))
}

/// Reads the zone back until every record in `want` is there (as a TXT value at its name).
async fn wait_visible<P: DnsProvider>(
    dns: &P,
    want: &[Record],
    timeout: Duration,
) -> Result<(), AcmeError> {
    let start = Instant::now();
    let names: Vec<String> = want.iter().map(|r| r.name.clone()).collect();
    loop {
        let seen = dns.list(&names).await?;
        let found = want
            .iter()
            .filter(|w| {
                seen.iter()
                    .any(|r| r.kind == RecordType::Txt && r.name == w.name && r.value == w.value)
            })
            .count();
        if found == want.len() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(AcmeError::Propagation {
                name: names[0].clone(),
                after: timeout,
                expected: want.len(),
                seen: found,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
