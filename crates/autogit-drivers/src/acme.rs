//! Certificates from an ACME CA (RFC 8555) by DNS-01, through any [`DnsProvider`]:
//! `*.BASE_DOMAIN` and the apex in one order. Both challenges live at the same name, so both
//! TXT values are added (never replaced) before either challenge is declared ready; the zone
//! is read back from its authoritative server until both are there; the challenge records
//! are removed afterwards, whatever the outcome.
//!
//! Files under `<data>/tls/`: `acme-account.json` (the account key, 0600),
//! `<domain>/fullchain.pem` (0644) and `<domain>/key.pem` (0600), each written atomically: a
//! failed renewal leaves the old certificate serving.

use crate::dns::{DnsProvider, DnsProviderError};
use crate::fsx;
use autogit_core::dns::{Change, Record, RecordType};
use autogit_core::tls::{certificate_names, challenge_name};
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

/// The account key and the certificate keys live here: 0700 whatever the umask (the ingress
/// reads the copies that rendering makes, not this directory).
fn private_tls_dir(dir: &Path) -> Result<(), AcmeError> {
    fsx::ensure_private_dir(dir).map_err(|e| AcmeError::File {
        path: dir.to_owned(),
        message: e.to_string(),
    })
}

async fn account(s: &AcmeSettings) -> Result<Account, AcmeError> {
    let err = ca_err(&s.directory);
    let path = s.dir.join("acme-account.json");
    let builder = || match &s.ca_root {
        Some(root) => Account::builder_with_root(root).map_err(&err),
        None => Account::builder().map_err(&err),
    };
    if path.exists() {
        let bytes = fsx::read_bounded(&path, 64 << 10).map_err(|e| AcmeError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let creds: AccountCredentials =
            serde_json::from_slice(&bytes).map_err(|e| AcmeError::File {
                path: path.clone(),
                message: format!("not an ACME account file: {e}"),
            })?;
        return builder()?.from_credentials(creds).await.map_err(&err);
    }
    let contact = s.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory.clone(),
            None,
        )
        .await
        .map_err(&err)?;
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

/// Issues (or renews) the certificate for `*.base_domain` and `base_domain`, answering DNS-01
/// through `dns`, and stores it. `progress` gets one line per phase.
pub async fn issue<P: DnsProvider>(
    s: &AcmeSettings,
    base_domain: &str,
    dns: &P,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<CertInfo, AcmeError> {
    let err = ca_err(&s.directory);
    let names = certificate_names(base_domain);
    let mut order = open_order(s, &names, progress).await?;

    // Every pending DNS-01 challenge's TXT record, added before any is declared ready.
    let mut records = Vec::new();
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(&err)?;
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
    }
    let result = async {
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
            let mut authzs = order.authorizations();
            while let Some(a) = authzs.next().await {
                let mut a = a.map_err(&err)?;
                if a.status != AuthorizationStatus::Pending {
                    continue;
                }
                if let Some(mut ch) = a.challenge(ChallengeType::Dns01) {
                    ch.set_ready().await.map_err(&err)?;
                }
            }
        }
        finish_order(
            &mut order,
            s,
            &format!("the CA could not see the challenge records: check that it resolves {base_domain} through your DNS"),
            progress,
        )
        .await
    }
    .await;
    // Clean up the challenge records whatever happened.
    if !records.is_empty() {
        let deletes: Vec<Change> = records
            .iter()
            .map(|r| Change::Delete { record: r.clone() })
            .collect();
        if let Err(e) = dns.apply(&deletes).await {
            progress(&format!(
                "warning: removing the challenge records failed: {e}"
            ));
        }
    }
    let (key_pem, chain) = result?;
    store_certificate(s, base_domain, &names, key_pem, &chain)
}

/// Checks that the chain names every one of `names`, then writes the key (0600) and the chain
/// where the ingress takes them from, each atomically.
fn store_certificate(
    s: &AcmeSettings,
    base_domain: &str,
    names: &[String],
    mut key_pem: String,
    chain: &str,
) -> Result<CertInfo, AcmeError> {
    let (fullchain, key) = cert_paths(&s.dir, base_domain);
    private_tls_dir(fullchain.parent().unwrap_or(&s.dir))?;
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
    let err = ca_err(&s.directory);
    if names.is_empty() || names.iter().any(|n| n.starts_with("*.")) {
        return Err(AcmeError::Certificate(
            "HTTP-01 needs explicit names (a wildcard needs DNS-01)".to_owned(),
        ));
    }
    let mut order = open_order(s, names, progress).await?;
    let dir = webroot.join(".well-known/acme-challenge");
    std::fs::create_dir_all(&dir).map_err(|e| AcmeError::File {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let mut written: Vec<PathBuf> = Vec::new();
    let result = async {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut a = a.map_err(&err)?;
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
            ch.set_ready().await.map_err(&err)?;
        }
        finish_order(
            &mut order,
            s,
            "the CA could not fetch http://<name>/.well-known/acme-challenge/…: check that the names resolve to the ingress and port 80 reaches it",
            progress,
        )
        .await
    }
    .await;
    for f in &written {
        let _ = std::fs::remove_file(f);
    }
    let (key_pem, chain) = result?;
    store_certificate(s, base_domain, names, key_pem, &chain)
}

/// Logs in to the CA's account (creating it on first use) and opens an order for `names`.
async fn open_order(
    s: &AcmeSettings,
    names: &[String],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Order, AcmeError> {
    progress(&format!("ACME account at {}", s.directory));
    let account = account(s).await?;
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(ca_err(&s.directory))
}

/// After the challenges are ready: waits for the order to be ready (or fails with `hint`, what
/// the CA could not check), finalizes it and fetches the chain. Returns `(key PEM, chain PEM)`.
async fn finish_order(
    order: &mut Order,
    s: &AcmeSettings,
    hint: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(String, String), AcmeError> {
    let err = ca_err(&s.directory);
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .timeout(s.order_timeout);
    let status = order.poll_ready(&retry).await.map_err(&err)?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Ca {
            directory: s.directory.clone(),
            message: format!("the order is {status:?} after validation ({hint})"),
        });
    }
    progress("validated; finalizing");
    let key_pem = order.finalize().await.map_err(&err)?;
    let chain = order.poll_certificate(&retry).await.map_err(&err)?;
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
