//! Cloudflare's proxy, as the rest of the platform must know it: the address ranges its edge
//! connects from, pinned here. `autogit` never downloads them at run time: a rendered ingress
//! configuration is a pure function of the configuration, and a list fetched at run time would
//! let whoever answers that request decide whose forwarded client address the ingress believes.
//!
//! **Source:** <https://www.cloudflare.com/ips-v4> and <https://www.cloudflare.com/ips-v6>
//! (the list at <https://www.cloudflare.com/ips/>), as published on [`RANGES_DATE`].
//! Cloudflare announces changes to the list ahead of time; updating it is a change to this file
//! (its test pins the count and a few members).

/// When [`IPV4`] and [`IPV6`] were copied from [`RANGES_SOURCE`].
pub const RANGES_DATE: &str = "2026-12-07";
/// Where the ranges are published.
pub const RANGES_SOURCE: &str = "https://www.cloudflare.com/ips/";

/// Cloudflare's edge, IPv4 (<https://www.cloudflare.com/ips-v4>).
pub const IPV4: [&str; 15] = [
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
];

/// Cloudflare's edge, IPv6 (<https://www.cloudflare.com/ips-v6>).
pub const IPV6: [&str; 7] = [
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

/// The header in which Cloudflare's proxy passes the client's address.
pub const CLIENT_IP_HEADER: &str = "CF-Connecting-IP";

/// Every range, IPv4 first, as CIDR text.
pub fn ranges() -> Vec<String> {
    IPV4.iter()
        .chain(IPV6.iter())
        .map(|s| (*s).to_owned())
        .collect()
}

/// Whether `ip` is one of Cloudflare's edge addresses.
pub fn contains(ip: std::net::IpAddr) -> bool {
    IPV4.iter().chain(IPV6.iter()).any(|c| in_cidr(ip, c))
}

fn in_cidr(ip: std::net::IpAddr, cidr: &str) -> bool {
    use std::net::IpAddr;
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_list_is_whole_and_membership_works() {
        assert_eq!(ranges().len(), 22);
        for r in ranges() {
            let (net, len) = r.split_once('/').unwrap();
            assert!(
                net.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok(),
                "{r}"
            );
        }
        for inside in [
            "104.16.0.1",
            "172.71.255.254",
            "162.159.1.1",
            "2606:4700::6810:84e5",
        ] {
            assert!(contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["203.0.113.7", "104.32.0.1", "10.0.0.1", "2001:db8::1"] {
            assert!(!contains(outside.parse().unwrap()), "{outside}");
        }
    }
}
