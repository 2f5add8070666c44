//! Asking a resolver what a name is, as a client would: one UDP query (recursion desired) to
//! a given server, or the system's resolver (`getaddrinfo`). `diagnose` compares the answers
//! with the ingress address.

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// `server` as a socket address: `host:port`, or an address (port 53).
async fn server_addr(server: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = server.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = server.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| format!("resolver {server}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolver {server}: no address"))
}

/// One UDP query (recursion desired; with `dnssec_ok`, EDNS with the DO bit so that
/// signatures come along); the answer, whatever its response code.
async fn query(
    server: &str,
    name: &str,
    rtype: RecordType,
    dnssec_ok: bool,
    timeout: Duration,
) -> Result<Message, String> {
    let addr = server_addr(server).await?;
    let qname = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("`{name}`: {e}"))?;
    let mut msg = Message::query();
    msg.metadata.id = random_id();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname, rtype));
    if dnssec_ok {
        let mut edns = Edns::new();
        edns.set_max_payload(4096).set_dnssec_ok(true);
        msg.set_edns(edns);
    }
    let bytes = msg
        .to_vec()
        .map_err(|e| format!("encoding the query: {e}"))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let work = async {
        let err = |e: std::io::Error| format!("resolver {addr}: {e}");
        let sock = UdpSocket::bind(bind).await.map_err(err)?;
        sock.connect(addr).await.map_err(err)?;
        sock.send(&bytes).await.map_err(err)?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = sock.recv(&mut buf).await.map_err(err)?;
            let Ok(resp) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if resp.metadata.id == msg.metadata.id
                && resp.metadata.message_type == MessageType::Response
            {
                return Ok::<Message, String>(resp);
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("resolver {addr}: no answer within {}s", timeout.as_secs()))?
}

/// The A (or AAAA, with `v6`) addresses `server` (`host:port`, or an address: port 53) gives
/// for `name`; empty for NXDOMAIN or no such record. The error names the server.
pub async fn query_addresses(
    server: &str,
    name: &str,
    v6: bool,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
    let resp = query(server, name, rtype, false, timeout).await?;
    match resp.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        other => return Err(format!("resolver {server} answered {other}")),
    }
    let mut out: Vec<String> = resp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) if !v6 => Some(a.0.to_string()),
            RData::AAAA(a) if v6 => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// What a resolver says about a zone's DNSSEC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneDnssec {
    /// The resolver knows the zone (its SOA was not NXDOMAIN).
    pub exists: bool,
    /// The apex has a DNSKEY RRset.
    pub dnskey: bool,
    /// The apex's SOA comes with an RRSIG.
    pub rrsig: bool,
    /// A DS for the zone at its parent; `None` when the server is authoritative for the zone
    /// (it cannot speak for the parent).
    pub ds: Option<bool>,
}

/// Asks `server` for the zone's DNSKEY, its SOA with signatures, and its DS.
pub async fn zone_dnssec(
    server: &str,
    zone: &str,
    timeout: Duration,
) -> Result<ZoneDnssec, String> {
    let ok = |m: &Message| {
        matches!(
            m.metadata.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        )
    };
    let soa = query(server, zone, RecordType::SOA, true, timeout).await?;
    if !ok(&soa) {
        return Err(format!(
            "resolver {server} answered {} for the SOA of {zone}",
            soa.metadata.response_code
        ));
    }
    let has = |m: &Message, t: RecordType| m.answers.iter().any(|r| r.record_type() == t);
    let rrsig = has(&soa, RecordType::RRSIG);
    let keys = query(server, zone, RecordType::DNSKEY, true, timeout).await?;
    let dnskey = ok(&keys) && has(&keys, RecordType::DNSKEY);
    let ds = if soa.metadata.authoritative {
        None
    } else {
        let ds = query(server, zone, RecordType::DS, true, timeout).await?;
        Some(ok(&ds) && has(&ds, RecordType::DS))
    };
    let exists = soa.metadata.response_code != ResponseCode::NXDomain;
    Ok(ZoneDnssec {
        exists,
        dnskey,
        rrsig,
        ds,
    })
}

/// The first `nameserver` of `/etc/resolv.conf`: the system's resolver, for queries that
/// `getaddrinfo` cannot make (DNSSEC records).
pub fn system_nameserver() -> Option<String> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next().map(str::to_owned))
            .flatten()
    })
}

/// The addresses the system resolver gives for `name` (IPv4 or IPv6 as asked).
pub async fn system_addresses(
    name: &str,
    v6: bool,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((name, 0)))
        .await
        .map_err(|_| format!("system resolver: no answer within {}s", timeout.as_secs()))?;
    let mut out: Vec<String> = match found {
        Ok(addrs) => addrs
            .filter(|a| a.is_ipv6() == v6)
            .map(|a| a.ip().to_string())
            .collect(),
        // getaddrinfo's "Name or service not known": no such name.
        Err(_) => Vec::new(),
    };
    out.sort();
    out.dedup();
    Ok(out)
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_be_bytes(b)
}
