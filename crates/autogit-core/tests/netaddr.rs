//! Property tests of the address classifier (`core::netaddr`) against `std::net`: every IPv4
//! spelling `inet_aton` accepts parses to the address it names, whatever std parses we parse
//! the same, IPv4 embedded in IPv6 is classified as that IPv4, and the classes agree with
//! std's predicates.

use autogit_core::netaddr::{AddrClass, classify, host_class, parse_ip, parse_ipv4};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `n` spelt in `parts` parts (1..=4), each in the radix chosen for it (0 decimal, 1 octal,
/// 2 hex), the last part holding the remaining bytes, as inet_aton reads it.
fn spell(n: u32, parts: usize, radixes: &[u8], upper: bool) -> String {
    let bytes = n.to_be_bytes();
    let mut vals: Vec<u64> = bytes[..parts - 1].iter().map(|b| u64::from(*b)).collect();
    let mut last: u64 = 0;
    for b in &bytes[parts - 1..] {
        last = (last << 8) | u64::from(*b);
    }
    vals.push(last);
    vals.iter()
        .zip(radixes)
        .map(|(v, r)| match r {
            0 => v.to_string(),
            1 => format!("0{v:o}"),
            _ if upper => format!("0X{v:X}"),
            _ => format!("0x{v:x}"),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn is_class(c: Option<AddrClass>, any_of: &[AddrClass]) -> bool {
    c.is_some_and(|c| any_of.contains(&c))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_inet_aton_spelling_names_the_address(
        n in any::<u32>(),
        parts in 1usize..=4,
        radixes in proptest::collection::vec(0u8..3, 4),
        upper in any::<bool>(),
    ) {
        let s = spell(n, parts, &radixes, upper);
        prop_assert_eq!(parse_ipv4(&s), Some(Ipv4Addr::from(n)), "{}", s);
        // And a host written that way is classified as the address.
        prop_assert_eq!(host_class(&s), classify(IpAddr::V4(Ipv4Addr::from(n))), "{}", s);
    }

    #[test]
    fn whatever_std_parses_we_parse_the_same(s in "[0-9a-fA-FxX.:\\[\\]]{0,24}") {
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            prop_assert_eq!(parse_ipv4(&s), Some(a));
        }
        if let Ok(a) = s.parse::<IpAddr>() {
            prop_assert_eq!(parse_ip(&s), Some(a));
        }
    }

    #[test]
    fn ipv6_round_trips(a in any::<u128>()) {
        let a = Ipv6Addr::from(a);
        prop_assert_eq!(parse_ip(&a.to_string()), Some(IpAddr::V6(a)));
        prop_assert_eq!(parse_ip(&format!("[{a}]")), Some(IpAddr::V6(a)));
    }

    #[test]
    fn embedded_ipv4_is_classified_as_the_ipv4(n in any::<u32>()) {
        let v4 = Ipv4Addr::from(n);
        let want = classify(IpAddr::V4(v4));
        let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(n));
        let sixtofour = Ipv6Addr::from((0x2002_u128 << 112) | (u128::from(n) << 80));
        prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_mapped())), want);
        prop_assert_eq!(classify(IpAddr::V6(nat64)), want);
        prop_assert_eq!(classify(IpAddr::V6(sixtofour)), want);
        if n > 1 {
            prop_assert_eq!(classify(IpAddr::V6(v4.to_ipv6_compatible())), want);
        }
    }

    #[test]
    fn classes_agree_with_std_v4(n in any::<u32>()) {
        let a = Ipv4Addr::from(n);
        let c = classify(IpAddr::V4(a));
        use AddrClass::*;
        if a.is_loopback() { prop_assert_eq!(c, Some(Loopback)); }
        if a.is_private() { prop_assert_eq!(c, Some(Private)); }
        if a.is_link_local() { prop_assert!(is_class(c, &[LinkLocal, Metadata])); }
        if a.is_multicast() || a.is_broadcast() { prop_assert_eq!(c, Some(Multicast)); }
        if a.octets()[0] == 0 { prop_assert_eq!(c, Some(Unspecified)); }
        if c.is_none() {
            prop_assert!(!(a.is_loopback() || a.is_private() || a.is_link_local()
                || a.is_multicast() || a.is_broadcast() || a.is_unspecified()));
        }
    }

    #[test]
    fn classes_agree_with_std_v6(x in any::<u128>(), top in prop_oneof![
        Just(0u16), Just(0xfc00), Just(0xfd00), Just(0xfe80), Just(0xff02), Just(0x2001), Just(0x2a00)
    ]) {
        let a = Ipv6Addr::from((u128::from(top) << 112) | (x >> 16));
        let c = classify(IpAddr::V6(a));
        use AddrClass::*;
        if a.is_loopback() { prop_assert_eq!(c, Some(Loopback)); }
        if a.is_unspecified() { prop_assert_eq!(c, Some(Unspecified)); }
        if a.is_multicast() { prop_assert_eq!(c, Some(Multicast)); }
        if a.is_unique_local() { prop_assert!(is_class(c, &[UniqueLocal, Metadata])); }
        if a.is_unicast_link_local() { prop_assert_eq!(c, Some(LinkLocal)); }
        if c.is_none() {
            prop_assert!(!(a.is_loopback() || a.is_unspecified() || a.is_multicast()
                || a.is_unique_local() || a.is_unicast_link_local()));
        }
    }
}
