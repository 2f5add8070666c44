//! RFC 2136 dynamic updates and AXFR, signed with TSIG (RFC 8945), over TCP.
//!
//! hickory-proto builds, signs and parses the messages; the transport is ours (a TCP
//! connection per operation, two-byte length prefix), so every failure maps to an error that
//! names the server and the key. Responses to signed requests must carry a TSIG that verifies,
//! or they are discarded.
//!
//! - `list` is a TSIG-signed AXFR of the zone (the server must allow transfers with the key).
//! - `apply` sends every change in one UPDATE message, so BIND applies all or nothing. After a
//!   `list`, the update carries the zone's SOA as read as a prerequisite (RFC 2136 3.2.5, "RRset
//!   exists, value dependent"): if anything changed the zone in between (the serial moved), the
//!   server applies nothing and answers NXRRSET, which is [`DnsProviderError::ZoneChanged`].
//! - [`Rfc2136::query`] is a plain (unsigned) query, for reading back and propagation checks.

use super::wire::split_txt;
use super::{DnsProvider, DnsProviderError};
use autogit_core::dns::{Change, Record as CoreRecord, RecordType as CoreType, canonical_name};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest number of messages accepted in one zone transfer.
const MAX_AXFR_MESSAGES: usize = 10_000;
/// TSIG fudge: accepted clock difference between us and the server.
const FUDGE: u16 = 300;

/// Settings of the RFC 2136 provider, from RFC2136_SERVER, RFC2136_TSIG_KEY_NAME,
/// RFC2136_TSIG_ALGORITHM, RFC2136_TSIG_SECRET and DNS_ZONE (or BASE_DOMAIN).
#[derive(Clone)]
pub struct Rfc2136Config {
    /// `host:port` or `host` (port 53).
    pub server: String,
    /// The zone apex, e.g. `example.com`.
    pub zone: String,
    pub key_name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    pub algorithm: String,
    /// Base64, as `tsig-keygen` prints it.
    pub secret: SecretString,
    /// Per network step (connect, each read).
    pub timeout: Duration,
}

impl fmt::Debug for Rfc2136Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136Config")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The RFC 2136 provider for one zone on one server.
#[derive(Clone)]
pub struct Rfc2136 {
    server: String,
    zone: Name,
    zone_text: String,
    key_name: String,
    algorithm: String,
    signer: TSigner,
    timeout: Duration,
    /// The SOA of the last transfer: the next update's prerequisite.
    read_soa: Arc<Mutex<Option<Record>>>,
}

impl fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .field("zone", &self.zone_text)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Rfc2136 {
    /// Check the settings (names, algorithm, base64 secret); connects to nothing.
    pub fn new(config: &Rfc2136Config) -> Result<Self, DnsProviderError> {
        let bad = |m: String| DnsProviderError::Config(m);
        let zone_text = canonical_name(&config.zone);
        let zone = fqdn(&zone_text).map_err(|e| bad(format!("zone `{}`: {e}", config.zone)))?;
        let key = fqdn(&config.key_name)
            .map_err(|e| bad(format!("TSIG key name `{}`: {e}", config.key_name)))?;
        let algorithm = match config.algorithm.to_ascii_lowercase().as_str() {
            "" | "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err(bad(format!(
                    "RFC2136_TSIG_ALGORITHM `{other}` is not supported; use hmac-sha256, hmac-sha384 or hmac-sha512"
                )));
            }
        };
        let secret = data_encoding::BASE64
            .decode(config.secret.expose_secret().trim().as_bytes())
            .map_err(|_| {
                bad(format!(
                    "RFC2136_TSIG_SECRET for key `{}` is not valid base64 (copy the `secret` of the key as tsig-keygen prints it)",
                    config.key_name
                ))
            })?;
        if secret.is_empty() {
            return Err(bad(format!(
                "RFC2136_TSIG_SECRET for key `{}` is empty",
                config.key_name
            )));
        }
        let algorithm_name = algorithm.to_string();
        let signer = TSigner::new(secret, algorithm, key, FUDGE)
            .map_err(|e| bad(format!("TSIG key `{}`: {e}", config.key_name)))?;
        let server = if config.server.parse::<IpAddr>().is_ok() || !config.server.contains(':') {
            match config.server.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("[{v6}]:53"),
                _ => format!("{}:53", config.server),
            }
        } else {
            config.server.clone()
        };
        Ok(Self {
            server,
            zone,
            zone_text,
            key_name: config.key_name.clone(),
            algorithm: algorithm_name,
            signer,
            timeout: config.timeout,
            read_soa: Arc::new(Mutex::new(None)),
        })
    }

    /// The zone this provider manages (canonical).
    pub fn zone(&self) -> &str {
        &self.zone_text
    }

    /// The whole zone by a TSIG-signed AXFR, as core records (SOA, NS and other types as
    /// [`CoreType::Other`]).
    pub async fn transfer(&self) -> Result<Vec<CoreRecord>, DnsProviderError> {
        let mut q = Query::new();
        q.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::AXFR);
        let mut msg = Message::query();
        msg.metadata.recursion_desired = false;
        msg.add_query(q);
        let responses = self.exchange(msg, true, "transfer").await?;
        let mut out = Vec::new();
        let mut soa = None;
        for r in responses.iter().flat_map(|m| m.answers.iter()) {
            if r.record_type() == RecordType::SOA {
                // The closing SOA repeats the first.
                if soa.is_some() {
                    continue;
                }
                soa = Some(r.clone());
            }
            out.push(to_core(r));
        }
        *self.read_soa.lock().unwrap_or_else(PoisonError::into_inner) = soa;
        out.sort();
        Ok(out)
    }

    /// A plain query (no TSIG) of `name` for `kind`, answered by this server.
    pub async fn query(
        &self,
        name: &str,
        kind: CoreType,
    ) -> Result<Vec<CoreRecord>, DnsProviderError> {
        let rtype = match kind {
            CoreType::A => RecordType::A,
            CoreType::Aaaa => RecordType::AAAA,
            CoreType::Txt => RecordType::TXT,
            CoreType::Cname => RecordType::CNAME,
            CoreType::Other => RecordType::ANY,
        };
        let name = fqdn(name).map_err(|e| DnsProviderError::Config(format!("`{name}`: {e}")))?;
        let mut msg = Message::query();
        msg.metadata.recursion_desired = false;
        msg.add_query(Query::query(name, rtype));
        let responses = self.exchange(msg, false, "query").await?;
        let mut out: Vec<CoreRecord> = responses
            .iter()
            .flat_map(|m| m.answers.iter())
            .filter(|r| r.record_type() == rtype || rtype == RecordType::ANY)
            .map(to_core)
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every change in one signed UPDATE message; after a [`Rfc2136::transfer`], on the
    /// condition that the zone's SOA is still the one it read.
    pub async fn update(&self, changes: &[Change]) -> Result<(), DnsProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        let read_soa = self
            .read_soa
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        let mut msg = Message::query();
        msg.metadata.op_code = OpCode::Update;
        msg.metadata.recursion_desired = false;
        msg.add_zone(zone);
        if let Some(mut soa) = read_soa {
            // RFC 2136 2.4.2: RRset exists (value dependent): the zone's class, TTL 0.
            soa.ttl = 0;
            msg.add_pre_requisite(soa);
        }
        for change in changes {
            match change {
                Change::Create { record } => msg.add_update(self.to_wire(record)?),
                Change::Delete { record } => msg.add_update(self.deletion(record)?),
                Change::Update { from, to } => {
                    msg.add_update(self.deletion(from)?);
                    msg.add_update(self.to_wire(to)?);
                }
            }
        }
        self.exchange(msg, true, "update").await?;
        Ok(())
    }

    fn to_wire(&self, r: &CoreRecord) -> Result<Record, DnsProviderError> {
        let name = fqdn(&r.name)
            .map_err(|e| DnsProviderError::Config(format!("record name `{}`: {e}", r.name)))?;
        if !self.zone.zone_of(&name) {
            return Err(DnsProviderError::Config(format!(
                "record `{}` is outside zone `{}`",
                r.name, self.zone_text
            )));
        }
        let ip = || {
            r.value.parse::<IpAddr>().map_err(|_| {
                DnsProviderError::Config(format!("`{}` is not an IP address ({})", r.value, r.name))
            })
        };
        let data = match (r.kind, ip()) {
            (CoreType::A, Ok(IpAddr::V4(v4))) => RData::A(A(v4)),
            (CoreType::Aaaa, Ok(IpAddr::V6(v6))) => RData::AAAA(AAAA(v6)),
            (CoreType::A | CoreType::Aaaa, Ok(_)) => {
                return Err(DnsProviderError::Config(format!(
                    "{} record `{}` with address {} of the other family",
                    r.kind, r.name, r.value
                )));
            }
            (CoreType::A | CoreType::Aaaa, Err(e)) => return Err(e),
            (CoreType::Txt, _) => RData::TXT(TXT::new(split_txt(&r.value))),
            (k, _) => {
                return Err(DnsProviderError::Config(format!(
                    "autogit does not write {k} records ({})",
                    r.name
                )));
            }
        };
        let mut rec = Record::from_rdata(name, r.ttl, data);
        rec.dns_class = DNSClass::IN;
        Ok(rec)
    }

    /// RFC 2136 2.5.4: delete one RR: class NONE, TTL 0, the exact RDATA.
    fn deletion(&self, r: &CoreRecord) -> Result<Record, DnsProviderError> {
        let mut rec = self.to_wire(r)?;
        rec.dns_class = DNSClass::NONE;
        rec.ttl = 0;
        Ok(rec)
    }

    fn operation_name(op: &'static str) -> &'static str {
        match op {
            "update" => "update",
            "transfer" => "transfer",
            _ => "answer queries for",
        }
    }

    /// Send one request over a fresh TCP connection; read one response, or for AXFR every
    /// message until the closing SOA. Signed requests need signed, verified responses.
    async fn exchange(
        &self,
        mut msg: Message,
        sign: bool,
        op: &'static str,
    ) -> Result<Vec<Message>, DnsProviderError> {
        let server = self.server.clone();
        let proto = |reason: String| DnsProviderError::Protocol {
            server: server.clone(),
            reason,
        };
        let mut request_mac = None;
        if sign {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            msg.finalize(&self.signer, now)
                .map_err(|e| proto(format!("signing the request: {e}")))?;
            request_mac = msg.signature().map(|s| s.data.mac.clone());
        }
        let bytes = msg
            .to_vec()
            .map_err(|e| proto(format!("encoding the request: {e}")))?;
        let len = u16::try_from(bytes.len())
            .map_err(|_| proto("the request is larger than 64 KiB".into()))?;

        let timeout = |after| DnsProviderError::Timeout {
            server: server.clone(),
            after,
        };
        let mut stream = tokio::time::timeout(self.timeout, TcpStream::connect(&self.server))
            .await
            .map_err(|_| timeout(self.timeout))?
            .map_err(|source| DnsProviderError::Connect {
                server: server.clone(),
                source,
            })?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&bytes);
        tokio::time::timeout(self.timeout, stream.write_all(&framed))
            .await
            .map_err(|_| timeout(self.timeout))?
            .map_err(|source| DnsProviderError::Connect {
                server: server.clone(),
                source,
            })?;

        let is_axfr = msg
            .queries
            .first()
            .is_some_and(|q| q.query_type() == RecordType::AXFR);
        let mut out = Vec::new();
        let mut previous_mac = request_mac;
        let mut soa_count = 0;
        loop {
            let raw = tokio::time::timeout(self.timeout, read_frame(&mut stream))
                .await
                .map_err(|_| timeout(self.timeout))?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        proto("the connection closed before the answer was complete".into())
                    }
                    _ => DnsProviderError::Connect {
                        server: server.clone(),
                        source: e,
                    },
                })?;
            let resp = Message::from_vec(&raw).map_err(|e| proto(format!("bad message: {e}")))?;
            if resp.metadata.id != msg.metadata.id
                || resp.metadata.message_type != MessageType::Response
            {
                return Err(proto("an answer to another request".into()));
            }
            self.check_rcode(&resp, op)?;
            if let Some(prev) = previous_mac.as_deref() {
                if resp.signature().is_none() {
                    return Err(DnsProviderError::BadResponseSignature {
                        server: server.clone(),
                        key: self.key_name.clone(),
                    });
                }
                let (mac, _, _) = self
                    .signer
                    .verify_message_byte(&raw, Some(prev), out.is_empty())
                    .map_err(|_| DnsProviderError::BadResponseSignature {
                        server: server.clone(),
                        key: self.key_name.clone(),
                    })?;
                previous_mac = Some(mac);
            }
            soa_count += resp
                .answers
                .iter()
                .filter(|r| r.record_type() == RecordType::SOA)
                .count();
            let empty = resp.answers.is_empty();
            out.push(resp);
            if !is_axfr || soa_count >= 2 {
                break;
            }
            if empty || out.len() >= MAX_AXFR_MESSAGES {
                return Err(proto(
                    "the zone transfer did not end with the zone's SOA".into(),
                ));
            }
        }
        Ok(out)
    }

    fn check_rcode(&self, resp: &Message, op: &'static str) -> Result<(), DnsProviderError> {
        if let Some(sig) = resp.signature()
            && let Some(err) = &sig.data.error
        {
            let code = match err {
                TsigError::BadSig => "BADSIG".to_owned(),
                TsigError::BadKey => "BADKEY".to_owned(),
                TsigError::BadTime => "BADTIME (check the clocks)".to_owned(),
                TsigError::BadTrunc => "BADTRUNC".to_owned(),
                other => format!("{other:?}"),
            };
            return Err(DnsProviderError::TsigRejected {
                server: self.server.clone(),
                key: self.key_name.clone(),
                code,
                algorithm: self.algorithm.clone(),
            });
        }
        match resp.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            // A query for a name that does not exist is an empty answer, not an error.
            ResponseCode::NXDomain if op == "query" => Ok(()),
            ResponseCode::Refused => Err(DnsProviderError::Refused {
                server: self.server.clone(),
                zone: self.zone_text.clone(),
                key: self.key_name.clone(),
                operation: Self::operation_name(op),
                setting: match op {
                    "update" => format!("allow-update {{ key {}; }};", self.key_name),
                    "transfer" => format!("allow-transfer {{ key {}; }};", self.key_name),
                    _ => "allow-query { any; };".to_owned(),
                },
            }),
            ResponseCode::NXRRSet if op == "update" => Err(DnsProviderError::ZoneChanged {
                server: self.server.clone(),
                zone: self.zone_text.clone(),
                evidence: "NXRRSET on its SOA".into(),
            }),
            ResponseCode::NotAuth => Err(DnsProviderError::NotAuth {
                server: self.server.clone(),
                zone: self.zone_text.clone(),
            }),
            other => Err(DnsProviderError::Rcode {
                server: self.server.clone(),
                zone: self.zone_text.clone(),
                operation: op,
                rcode: format!("{other}"),
            }),
        }
    }
}

#[async_trait::async_trait]
impl DnsProvider for Rfc2136 {
    fn describe(&self) -> String {
        format!("rfc2136 {} zone {}", self.server, self.zone_text)
    }

    /// The whole zone (AXFR); `names` is not needed.
    async fn list(&self, _names: &[String]) -> Result<Vec<CoreRecord>, DnsProviderError> {
        self.transfer().await
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DnsProviderError> {
        self.update(changes).await
    }
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

fn fqdn(name: &str) -> Result<Name, String> {
    let n = canonical_name(name);
    if n.is_empty() {
        return Err("empty name".into());
    }
    Name::from_ascii(format!("{n}.")).map_err(|e| e.to_string())
}

fn to_core(r: &Record) -> CoreRecord {
    let name = canonical_name(&r.name.to_ascii());
    let (kind, value) = match &r.data {
        RData::A(a) => (CoreType::A, a.0.to_string()),
        RData::AAAA(a) => (CoreType::Aaaa, a.0.to_string()),
        RData::TXT(t) => (
            CoreType::Txt,
            t.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect::<String>(),
        ),
        RData::CNAME(c) => (CoreType::Cname, c.0.to_ascii()),
        other => (CoreType::Other, format!("{} {other}", r.record_type())),
    };
    CoreRecord {
        name,
        kind,
        value,
        ttl: r.ttl,
        proxied: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str) -> Rfc2136Config {
        Rfc2136Config {
            server: "127.0.0.1".into(),
            zone: "Example.Test.".into(),
            key_name: "autogit-test".into(),
            algorithm: "hmac-sha256".into(),
            secret: SecretString::from(secret.to_owned()),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn secret_never_in_debug() {
        let c = config("c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        let p = Rfc2136::new(&c).unwrap();
        for text in [format!("{c:?}"), format!("{p:?}")] {
            assert!(!text.contains("c2VjcmV0"), "{text}");
            assert!(!text.contains("secret-secret"), "{text}");
        }
        assert_eq!(p.server, "127.0.0.1:53");
        assert_eq!(p.zone(), "example.test");
    }

    #[test]
    fn bad_settings_are_clear() {
        let e = Rfc2136::new(&config("not base64!"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not valid base64") && e.contains("autogit-test"),
            "{e}"
        );
        let mut c = config("c2VjcmV0");
        c.algorithm = "hmac-md5".into();
        let e = Rfc2136::new(&c).unwrap_err().to_string();
        assert!(e.contains("hmac-md5"), "{e}");
    }

    #[test]
    fn long_txt_values_split_and_join() {
        let long = "x".repeat(600);
        let parts = split_txt(&long);
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            [255, 255, 90]
        );
        assert_eq!(parts.concat(), long);
    }
}
