//! Which addresses a host name or IP literal can reach, pure: the one classifier behind the
//! SSRF guard (`mirroring.allow_private`) and the plain-HTTP token rule.
//!
//! A literal is parsed the way the resolver that git and curl use parses it, so no spelling
//! slips through as a "host name": every IPv4 form `inet_aton(3)` accepts (1 to 4 parts, each
//! decimal, octal with a leading `0` or hexadecimal with `0x`: `127.1`, `0x7f000001`,
//! `0177.0.0.1`, `0`), and IPv6 with the IPv4 it embeds (IPv4-mapped `::ffff:a.b.c.d`,
//! IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) classified as that IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public unicast address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddrClass {
    /// 127.0.0.0/8, ::1, `localhost`.
    Loopback,
    /// RFC 1918: 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64.0.0/10 (RFC 6598).
    Cgnat,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// fc00::/7 (and the deprecated site-local fec0::/10, NAT64 local-use 64:ff9b:1::/48).
    UniqueLocal,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 224.0.0.0/4, 255.255.255.255, ff00::/8.
    Multicast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// Cloud instance metadata endpoints: 169.254.169.254, 100.100.100.200, fd00:ec2::254.
    Metadata,
    /// 192.0.0/24, 198.18/15, 240/4 and other special-purpose blocks.
    Reserved,
}

impl AddrClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::Cgnat => "carrier-grade NAT",
            AddrClass::LinkLocal => "link-local",
            AddrClass::UniqueLocal => "unique-local",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Multicast => "multicast or broadcast",
            AddrClass::Documentation => "documentation",
            AddrClass::Metadata => "cloud metadata",
            AddrClass::Reserved => "reserved",
        }
    }
}

impl AddrClass {
    /// `a loopback`, `an unspecified`: the class with its article, for messages.
    pub fn with_article(self) -> String {
        let s = self.as_str();
        let an = s.starts_with(['a', 'e', 'i', 'o', 'u']) && !s.starts_with("uni");
        format!("{} {s}", if an { "an" } else { "a" })
    }
}

impl std::fmt::Display for AddrClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IPv4 literal in any spelling `inet_aton(3)` accepts: 1 to 4 dot-separated parts, each
/// decimal, octal (leading `0`) or hexadecimal (`0x`); the last part fills the remaining bytes
/// (`127.1` is 127.0.0.1, `10.1.258` is 10.1.1.2). `None` for anything else (a host name).
pub fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut vals = Vec::with_capacity(4);
    for p in &parts {
        vals.push(parse_part(p)?);
    }
    let (last, init) = vals.split_last()?;
    if init.iter().any(|v| *v > 0xff) {
        return None;
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if rest_bits < 32 && *last >= (1u64 << rest_bits) {
        return None;
    }
    if *last > u64::from(u32::MAX) {
        return None;
    }
    let mut n: u32 = 0;
    for (i, v) in init.iter().enumerate() {
        n |= (*v as u32) << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(n | *last as u32))
}

/// One part of an `inet_aton` address; values above 32 bits are refused (as glibc does).
fn parse_part(p: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if p.is_empty() {
        return None;
    }
    // glibc takes `0x` alone as 0.
    if digits.is_empty() {
        return (radix == 16).then_some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Leading zeros cannot overflow; strip them so a long run of them is not refused.
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    let v = u64::from_str_radix(digits, radix).ok()?;
    (v <= u64::from(u32::MAX)).then_some(v)
}

/// An IP literal as a URL host carries it: any IPv4 spelling ([`parse_ipv4`]), or IPv6 with or
/// without brackets (a zone `%eth0` is refused). A trailing dot is ignored.
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    let h = host.strip_suffix('.').unwrap_or(host);
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if let Ok(v6) = h.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    parse_ipv4(h).map(IpAddr::V4)
}

/// The class of an address, `None` for public unicast.
pub fn classify(ip: IpAddr) -> Option<AddrClass> {
    match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

fn in_v4(a: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(a) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn classify_v4(a: Ipv4Addr) -> Option<AddrClass> {
    use AddrClass::*;
    const TABLE: &[([u8; 4], u32, AddrClass)] = &[
        ([169, 254, 169, 254], 32, Metadata),
        ([100, 100, 100, 200], 32, Metadata),
        ([0, 0, 0, 0], 8, Unspecified),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, Cgnat),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([192, 0, 2, 0], 24, Documentation),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([192, 0, 0, 0], 24, Reserved),
        ([198, 18, 0, 0], 15, Reserved),
        ([255, 255, 255, 255], 32, Multicast),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, len, _)| in_v4(a, *net, *len))
        .map(|(_, _, c)| *c)
}

fn classify_v6(a: Ipv6Addr) -> Option<AddrClass> {
    use AddrClass::*;
    let s = a.segments();
    let bits = u128::from(a);
    let in_v6 = |net: u128, len: u32| (bits >> (128 - len)) == (net >> (128 - len));
    if a.is_unspecified() {
        return Some(Unspecified);
    }
    if a.is_loopback() {
        return Some(Loopback);
    }
    // IPv4 carried inside IPv6 reaches that IPv4 address: classify it as such.
    let low32 = Ipv4Addr::from(bits as u32);
    if in_v6(0xffff << 32, 96) // IPv4-mapped ::ffff:a.b.c.d
        || in_v6(0, 96) // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
        || in_v6(0x0064_ff9b << 96, 96) // NAT64 well-known prefix
        || in_v6(0xffff_0000 << 32, 96)
    // SIIT ::ffff:0:a.b.c.d
    {
        return classify_v4(low32);
    }
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address is in bits 16..48.
        return classify_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    if a == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(Metadata);
    }
    if in_v6(0x0064_ff9b_0001 << 80, 48) {
        return Some(UniqueLocal);
    }
    if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
        return Some(UniqueLocal);
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return Some(LinkLocal);
    }
    if (s[0] & 0xff00) == 0xff00 {
        return Some(Multicast);
    }
    if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] & 0xfff0) == 0x3ff0 {
        return Some(Documentation);
    }
    // 100::/64 discard-only, 2001::/23 IETF protocol assignments other than Teredo (2001::/32,
    // whose embedded client address is obfuscated and public by construction).
    if in_v6(0x0100 << 112, 64) || (in_v6(0x2001 << 112, 23) && s[1] != 0) {
        return Some(Reserved);
    }
    None
}

/// The class of a URL host: `localhost` and `*.localhost` (RFC 6761: always loopback), any
/// IP literal spelling ([`parse_ip`]), `None` for other host names (they are resolved later,
/// and every address they resolve to is checked then).
pub fn host_class(host: &str) -> Option<AddrClass> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        return Some(AddrClass::Loopback);
    }
    classify(parse_ip(&h)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_spellings() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("127.0.0.1")),
            ("127.1", Some("127.0.0.1")),
            ("127.0.1", Some("127.0.0.1")),
            ("0x7f000001", Some("127.0.0.1")),
            ("0X7F.1", Some("127.0.0.1")),
            ("2130706433", Some("127.0.0.1")),
            ("017700000001", Some("127.0.0.1")),
            ("0177.0.0.1", Some("127.0.0.1")),
            ("0", Some("0.0.0.0")),
            ("0x", Some("0.0.0.0")),
            ("10.1.258", Some("10.1.1.2")),
            ("0xa9.0376.43518", Some("169.254.169.254")),
            ("00000000000000000000000127.1", Some("87.0.0.1")),
            ("4294967295", Some("255.255.255.255")),
            ("4294967296", None),
            ("256.0.0.1", None),
            ("1.2.3.4.5", None),
            ("1.2.3.", None),
            (".1.2.3", None),
            ("1..2", None),
            ("08", None),
            ("0x1g", None),
            ("1.2.65536", None),
            ("+1", None),
            ("", None),
            ("example.com", None),
            ("1e3", None),
        ];
        for (s, want) in cases {
            let got = parse_ipv4(s).map(|a| a.to_string());
            assert_eq!(got.as_deref(), *want, "{s}");
        }
    }

    #[test]
    fn classes() {
        let cases: &[(&str, Option<AddrClass>)] = &[
            ("127.0.0.1", Some(AddrClass::Loopback)),
            ("0x7f000001", Some(AddrClass::Loopback)),
            ("0177.0.0.1", Some(AddrClass::Loopback)),
            ("127.1", Some(AddrClass::Loopback)),
            ("0", Some(AddrClass::Unspecified)),
            ("10.255.0.1", Some(AddrClass::Private)),
            ("172.16.0.1", Some(AddrClass::Private)),
            ("172.32.0.1", None),
            ("192.168.1.2", Some(AddrClass::Private)),
            ("100.64.0.1", Some(AddrClass::Cgnat)),
            ("100.128.0.1", None),
            ("169.254.1.1", Some(AddrClass::LinkLocal)),
            ("169.254.169.254", Some(AddrClass::Metadata)),
            ("2852039166", Some(AddrClass::Metadata)),
            ("100.100.100.200", Some(AddrClass::Metadata)),
            ("192.0.2.1", Some(AddrClass::Documentation)),
            ("198.18.0.1", Some(AddrClass::Reserved)),
            ("224.0.0.1", Some(AddrClass::Multicast)),
            ("255.255.255.255", Some(AddrClass::Multicast)),
            ("240.0.0.1", Some(AddrClass::Reserved)),
            ("8.8.8.8", None),
            ("::1", Some(AddrClass::Loopback)),
            ("[::1]", Some(AddrClass::Loopback)),
            ("::", Some(AddrClass::Unspecified)),
            ("::ffff:127.0.0.1", Some(AddrClass::Loopback)),
            ("::ffff:7f00:1", Some(AddrClass::Loopback)),
            ("::127.0.0.1", Some(AddrClass::Loopback)),
            ("::ffff:0:a9fe:a9fe", Some(AddrClass::Metadata)),
            ("64:ff9b::10.0.0.1", Some(AddrClass::Private)),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::1", Some(AddrClass::UniqueLocal)),
            ("2002:7f00:1::", Some(AddrClass::Loopback)),
            ("2002:808:808::", None),
            ("fd00::1", Some(AddrClass::UniqueLocal)),
            ("fd00:ec2::254", Some(AddrClass::Metadata)),
            ("fec0::1", Some(AddrClass::UniqueLocal)),
            ("fe80::1", Some(AddrClass::LinkLocal)),
            ("ff02::1", Some(AddrClass::Multicast)),
            ("2001:db8::1", Some(AddrClass::Documentation)),
            ("2001:4860::8888", None),
            ("2606:4700::1111", None),
            ("github.com", None),
            ("LOCALHOST.", Some(AddrClass::Loopback)),
            ("api.localhost", Some(AddrClass::Loopback)),
            ("127.0.0.1.", Some(AddrClass::Loopback)),
        ];
        let mut bad = Vec::new();
        for (h, want) in cases {
            let got = host_class(h);
            if got != *want {
                bad.push(format!("{h}: expected {want:?}, got {got:?}"));
            }
        }
        assert!(bad.is_empty(), "\n{}", bad.join("\n"));
    }
}
