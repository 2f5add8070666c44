//! Asking a resolver what a name is, as a client would: one UDP query (recursion desired) to
//! a given server, or the system's resolver (`getaddrinfo`). `diagnose` compares the answers
//! with the ingress address.

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// The A (or AAAA, with `v6`) addresses `server` (`host:port`, or an address: port 53) gives
/// for `name`; empty for NXDOMAIN or no such record. The error names the server.
pub async fn query_addresses(
    server: &str,
    name: &str,
    v6: bool,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let addr: SocketAddr = match server.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match server.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(_) => tokio::net::lookup_host(server)
                .await
                .map_err(|e| format!("resolver {server}: {e}"))?
                .next()
                .ok_or_else(|| format!("resolver {server}: no address"))?,
        },
    };
    let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
    let qname = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("`{name}`: {e}"))?;
    let mut msg = Message::query();
    msg.metadata.id = fastrand_id();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname, rtype));
    let bytes = msg
        .to_vec()
        .map_err(|e| format!("encoding the query: {e}"))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().unwrap_or(addr)
    } else {
        "0.0.0.0:0".parse().unwrap_or(addr)
    };
    let work = async {
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("resolver {addr}: {e}"))?;
        sock.connect(addr)
            .await
            .map_err(|e| format!("resolver {addr}: {e}"))?;
        sock.send(&bytes)
            .await
            .map_err(|e| format!("resolver {addr}: {e}"))?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("resolver {addr}: {e}"))?;
            let Ok(resp) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if resp.metadata.id != msg.metadata.id
                || resp.metadata.message_type != MessageType::Response
            {
                continue;
            }
            return Ok::<Message, String>(resp);
        }
    };
    let resp = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("resolver {addr}: no answer within {}s", timeout.as_secs()))??;
    match resp.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        other => return Err(format!("resolver {addr} answered {other}")),
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

fn fastrand_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_be_bytes(b)
}
