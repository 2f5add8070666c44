//! DNS providers: read what a zone holds and apply the changes that
//! `autogit_core::dns::dns_plan` decided. One module per provider, all behind [`DnsProvider`].
//!
//! - `rfc2136.rs`: RFC 2136 dynamic updates and AXFR, both TSIG-signed (BIND, Knot, PowerDNS).
//! - `cloudflare.rs`: Cloudflare's API v4 (API token, paginated listing, one request per change).
//! - `route53.rs`: Amazon Route 53 (SigV4-signed REST/XML, RRset upserts, waits for INSYNC);
//!   `sigv4.rs` signs, `xml.rs` reads the answers.
//! - `gcloud.rs`: Google Cloud DNS (service-account JWT signed RS256 by ring, one atomic change
//!   of RRset deletions and additions, polled until done).
//! - `dnsmasq.rs`: lines between autogit's markers in a dnsmasq configuration file, then a
//!   reload command.
//!
//! The decision (what to create, update or delete, and what is not ours) is pure and lives in
//! core; a provider only lists and applies. **Invariant:** a provider applies exactly the
//! changes it is given: a `Create` appends to the RRset (two TXT values under one name coexist,
//! as ACME's wildcard + apex challenge needs), a `Delete` removes exactly that value.

use autogit_core::dns::{Change, Record};

pub use factory::{from_platform, provider_name, zone_of};
use std::time::Duration;

pub mod cloudflare;
pub mod dnsmasq;
pub mod factory;
pub mod gcloud;
pub mod resolve;
pub mod rfc2136;
pub mod route53;
pub mod sigv4;
pub mod wire;
pub mod xml;

/// A DNS backend that can list and change records of one zone. Object-safe: the provider
/// a platform uses is chosen at run time ([`from_platform`]) and held as `Box<dyn DnsProvider>`.
#[async_trait::async_trait]
pub trait DnsProvider: Send + Sync {
    /// Short name for messages (`rfc2136 127.0.0.1:53`).
    fn describe(&self) -> String;

    /// Whether [`DnsProvider::apply`] is all or nothing. When it is not (one API request per
    /// change), an error may leave the changes before it applied.
    fn atomic(&self) -> bool {
        true
    }

    /// What a person must still do after a sync that changed records, if anything (dnsmasq
    /// without a reload command reads its file only when it starts).
    fn after_sync_hint(&self) -> Option<String> {
        None
    }

    /// The records at `names` (canonical, see `autogit_core::dns::canonical_name`), or more:
    /// providers that can list the whole zone (AXFR, paginated APIs) return all of it, which
    /// `dns_plan` needs to find owned names that are no longer desired.
    async fn list(&self, names: &[String]) -> Result<Vec<Record>, DnsProviderError>;

    /// Apply the changes, atomically where the backend can (RFC 2136: one update message), and
    /// where it can, only if the zone is still as the last `list` saw it
    /// ([`DnsProviderError::ZoneChanged`] otherwise).
    async fn apply(&self, changes: &[Change]) -> Result<(), DnsProviderError>;

    /// Ends the provider's session (an extension is sent `shutdown` and waited for). Nothing
    /// for the built-ins; dropping a provider without it is safe (an extension is killed).
    async fn close(&self) {}
}

#[async_trait::async_trait]
impl DnsProvider for Box<dyn DnsProvider> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn atomic(&self) -> bool {
        (**self).atomic()
    }
    fn after_sync_hint(&self) -> Option<String> {
        (**self).after_sync_hint()
    }
    async fn list(&self, names: &[String]) -> Result<Vec<Record>, DnsProviderError> {
        (**self).list(names).await
    }
    async fn apply(&self, changes: &[Change]) -> Result<(), DnsProviderError> {
        (**self).apply(changes).await
    }
    async fn close(&self) {
        (**self).close().await
    }
}

/// A provider whose calls are spans, `dns.list` and `dns.apply` (the driver level of a trace:
/// `crate::telemetry`), with the provider's description, the number of records or changes and,
/// on failure, the error. Wraps built-ins and extensions alike.
pub struct Traced(pub Box<dyn DnsProvider>);

impl std::fmt::Debug for Traced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Traced({})", self.0.describe())
    }
}

#[async_trait::async_trait]
impl DnsProvider for Traced {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn atomic(&self) -> bool {
        self.0.atomic()
    }
    fn after_sync_hint(&self) -> Option<String> {
        self.0.after_sync_hint()
    }
    async fn list(&self, names: &[String]) -> Result<Vec<Record>, DnsProviderError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "dns.list",
            otel.kind = "client",
            provider = %self.0.describe(),
            records = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let r = self.0.list(names).instrument(span.clone()).await;
        match &r {
            Ok(v) => span.record("records", v.len()),
            Err(e) => span.record("error", tracing::field::display(e)),
        };
        r
    }
    async fn apply(&self, changes: &[Change]) -> Result<(), DnsProviderError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "dns.apply",
            otel.kind = "client",
            provider = %self.0.describe(),
            changes = changes.len(),
            error = tracing::field::Empty,
        );
        let r = self.0.apply(changes).instrument(span.clone()).await;
        if let Err(e) = &r {
            span.record("error", tracing::field::display(e));
        }
        r
    }
    async fn close(&self) {
        self.0.close().await
    }
}

/// Errors from DNS providers. Messages name the server and the key (never the secret) and say
/// what to check.
#[derive(Debug, thiserror::Error)]
pub enum DnsProviderError {
    #[error(
        "{server} rejected TSIG key `{key}` ({code}): check that RFC2136_TSIG_KEY_NAME names a key declared in the server's configuration, that RFC2136_TSIG_SECRET is that key's secret (base64) and that its algorithm is {algorithm}"
    )]
    TsigRejected {
        server: String,
        key: String,
        /// BADKEY, BADSIG, BADTIME or BADTRUNC.
        code: String,
        algorithm: String,
    },
    #[error(
        "{server} answered with a TSIG signature that does not verify with key `{key}`; the answer was discarded"
    )]
    BadResponseSignature { server: String, key: String },
    #[error(
        "{server} refused to {operation} zone `{zone}` (REFUSED): allow it for key `{key}` in the zone's configuration on the primary (BIND: `{setting}`)"
    )]
    Refused {
        server: String,
        zone: String,
        key: String,
        operation: &'static str,
        /// The BIND zone option that allows it, e.g. `allow-update { key autogit; };`.
        setting: String,
    },
    #[error(
        "zone `{zone}` on {server} changed between reading it and updating it ({evidence}); nothing was applied: run the command again"
    )]
    ZoneChanged {
        server: String,
        zone: String,
        /// How the server said so (`NXRRSET on its SOA`, `412 conditionNotMet`, ...).
        evidence: String,
    },
    #[error(
        "{server} is not authoritative for zone `{zone}` (NOTAUTH): check DNS_ZONE / BASE_DOMAIN and RFC2136_SERVER (it must be the zone's primary)"
    )]
    NotAuth { server: String, zone: String },
    #[error("{server} answered {rcode} to {operation} of zone `{zone}`")]
    Rcode {
        server: String,
        zone: String,
        operation: &'static str,
        rcode: String,
    },
    #[error(
        "no answer from DNS server {server} within {after:?}: check RFC2136_SERVER and that the server listens on TCP"
    )]
    Timeout { server: String, after: Duration },
    #[error(
        "cannot reach DNS server {server}: {source}; check RFC2136_SERVER (host:port of the zone's primary) and that it listens on TCP"
    )]
    Connect {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS server {server} sent something autogit cannot use: {reason}")]
    Protocol { server: String, reason: String },
    #[error("DNS provider configuration: {0}")]
    Config(String),
    /// An HTTP API refused the credentials (bad or expired token, wrong key).
    #[error("{service} rejected the credentials ({detail}): {hint}")]
    Auth {
        service: String,
        detail: String,
        hint: String,
    },
    /// An HTTP API accepted the credentials but does not allow the operation.
    #[error("{service} does not allow this ({detail}): {hint}")]
    Forbidden {
        service: String,
        detail: String,
        hint: String,
    },
    #[error(
        "{service} kept answering 429 Too Many Requests (rate limit); waited {waited:?} in all: try again later"
    )]
    RateLimited { service: String, waited: Duration },
    /// Any other error answer of an HTTP API, with its code and message.
    #[error("{service} answered {status} to {operation}: {detail}")]
    Api {
        service: String,
        operation: String,
        status: u16,
        detail: String,
    },
    #[error("cannot reach {service} at {url}: {reason}; check the network and the endpoint")]
    Http {
        service: String,
        url: String,
        reason: String,
    },
    #[error("zone `{zone}` not found at {service}: {hint}")]
    ZoneNotFound {
        service: String,
        zone: String,
        hint: String,
    },
    /// A `dns` extension failed (it names itself and what happened).
    #[error(transparent)]
    Extension(#[from] crate::extension::ExtensionError),
}

impl DnsProviderError {
    /// Whether the backend may have applied the changes, or part of them, despite this error
    /// (no answer, or an answer autogit could not use).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            DnsProviderError::Timeout { .. }
                | DnsProviderError::Connect { .. }
                | DnsProviderError::Protocol { .. }
                | DnsProviderError::BadResponseSignature { .. }
                | DnsProviderError::Http { .. }
        ) || match self {
            DnsProviderError::Extension(e) => {
                e.outcome_unknown()
                    || matches!(e, crate::extension::ExtensionError::Remote { code, .. }
                        if *code == autogit_core::extension::code::UNAVAILABLE)
            }
            _ => false,
        }
    }
}
