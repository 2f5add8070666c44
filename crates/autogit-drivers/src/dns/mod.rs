//! DNS providers: read what a zone holds and apply the changes that
//! `autogit_core::dns::dns_plan` decided. One module per provider, all behind [`DnsProvider`].
//!
//! - `rfc2136.rs`: RFC 2136 dynamic updates and AXFR, both TSIG-signed (BIND, Knot, PowerDNS).
//!
//! The decision (what to create, update or delete, and what is not ours) is pure and lives in
//! core; a provider only lists and applies. **Invariant:** a provider applies exactly the
//! changes it is given: a `Create` appends to the RRset (two TXT values under one name coexist,
//! as ACME's wildcard + apex challenge needs), a `Delete` removes exactly that value.

use autogit_core::dns::{Change, Record};
use std::future::Future;
use std::time::Duration;

pub mod rfc2136;

/// A DNS backend that can list and change records of one zone.
pub trait DnsProvider: Send + Sync {
    /// Short name for messages (`rfc2136 127.0.0.1:53`).
    fn describe(&self) -> String;

    /// The records at `names` (canonical, see `autogit_core::dns::canonical_name`), or more:
    /// providers that can list the whole zone (AXFR, paginated APIs) return all of it, which
    /// `dns_plan` needs to find owned names that are no longer desired.
    fn list(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<Record>, DnsProviderError>> + Send;

    /// Apply the changes, atomically where the backend can (RFC 2136: one update message), and
    /// where it can, only if the zone is still as the last `list` saw it
    /// ([`DnsProviderError::ZoneChanged`] otherwise).
    fn apply(
        &self,
        changes: &[Change],
    ) -> impl Future<Output = Result<(), DnsProviderError>> + Send;
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
        "zone `{zone}` on {server} changed between reading it and updating it (NXRRSET on its SOA); nothing was applied: run the command again"
    )]
    ZoneChanged { server: String, zone: String },
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
}
