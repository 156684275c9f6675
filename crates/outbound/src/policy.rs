//! Which addresses an outbound call may reach: the pure part of the egress policy.
//!
//! A caller names a URL; Taxbridge connects to an address. Everything between (the URL's host
//! in any numeric spelling, what DNS returns for a name, an IPv4 address hidden in an IPv6
//! one) ends up as an [`IpAddr`], and only [`Policy::check`] decides whether it may be
//! reached. Refused unless allow-listed: loopback, private, shared (CGNAT), link-local (which
//! holds the cloud metadata address 169.254.169.254), unique-local IPv6 (which holds AWS's
//! `fd00:ec2::254`), multicast, broadcast, unspecified, documentation, benchmarking and
//! reserved ranges, and IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64,
//! 6to4, Teredo), which are judged by the address they embed.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The ranges an operator has allowed (for local demos and tests), checked first.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    allow: Vec<IpNet>,
}

/// Why an address may not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    Loopback,
    Private,
    SharedAddressSpace,
    LinkLocal,
    Multicast,
    Unspecified,
    Broadcast,
    Reserved,
}

impl Blocked {
    pub fn describe(self) -> &'static str {
        match self {
            Blocked::Loopback => "a loopback address",
            Blocked::Private => "a private network address",
            Blocked::SharedAddressSpace => "a carrier-grade NAT address",
            Blocked::LinkLocal => "a link-local address (where cloud metadata services live)",
            Blocked::Multicast => "a multicast address",
            Blocked::Unspecified => "the unspecified address",
            Blocked::Broadcast => "the broadcast address",
            Blocked::Reserved => "a reserved or documentation address",
        }
    }
}

impl Policy {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Parses `["127.0.0.0/8", "::1/128"]`-style allow-list entries, naming a bad one.
    pub fn parse_allow_list(entries: &[String]) -> Result<Vec<IpNet>, String> {
        entries
            .iter()
            .map(|entry| {
                entry.trim().parse::<IpNet>().map_err(|_| {
                    format!("`{entry}` is not a CIDR range such as 127.0.0.0/8 or ::1/128")
                })
            })
            .collect()
    }

    /// Whether `ip` may be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match classify(ip) {
            Some(blocked) => Err(blocked),
            None => Ok(()),
        }
    }
}

/// Why `ip` is not a public unicast address, if it is not.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let ranges: [([u8; 4], u32, Blocked); 16] = [
        ([0, 0, 0, 0], 8, Blocked::Unspecified),
        ([10, 0, 0, 0], 8, Blocked::Private),
        ([100, 64, 0, 0], 10, Blocked::SharedAddressSpace),
        ([127, 0, 0, 0], 8, Blocked::Loopback),
        ([169, 254, 0, 0], 16, Blocked::LinkLocal),
        ([172, 16, 0, 0], 12, Blocked::Private),
        ([192, 0, 0, 0], 24, Blocked::Reserved),
        ([192, 0, 2, 0], 24, Blocked::Reserved),
        ([192, 88, 99, 0], 24, Blocked::Reserved),
        ([192, 168, 0, 0], 16, Blocked::Private),
        ([198, 18, 0, 0], 15, Blocked::Reserved),
        ([198, 51, 100, 0], 24, Blocked::Reserved),
        ([203, 0, 113, 0], 24, Blocked::Reserved),
        ([224, 0, 0, 0], 4, Blocked::Multicast),
        ([255, 255, 255, 255], 32, Blocked::Broadcast),
        ([240, 0, 0, 0], 4, Blocked::Reserved),
    ];
    ranges
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    let segments = ip.segments();
    // IPv4 inside IPv6: judged by the IPv4 address it carries. A public IPv4 address behind a
    // translation prefix is still a translation the gateway has no reason to use: reserved.
    if let Some(v4) = embedded_v4(ip) {
        return Some(classify_v4(v4).unwrap_or(Blocked::Reserved));
    }
    if ip.is_unspecified() {
        return Some(Blocked::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Blocked::Loopback);
    }
    let first = segments[0];
    if first & 0xff00 == 0xff00 {
        return Some(Blocked::Multicast);
    }
    if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        return Some(Blocked::LinkLocal);
    }
    if first & 0xfe00 == 0xfc00 {
        return Some(Blocked::Private);
    }
    // Documentation (2001:db8::/32), discard (100::/64), benchmarking (2001:2::/48).
    if (first == 0x2001 && segments[1] == 0x0db8)
        || (first == 0x0100 && segments[1..4] == [0, 0, 0])
        || (first == 0x2001 && segments[1] == 0x0002 && segments[2] == 0)
    {
        return Some(Blocked::Reserved);
    }
    // Only global unicast (2000::/3) is reachable.
    if first & 0xe000 != 0x2000 {
        return Some(Blocked::Reserved);
    }
    None
}

/// The IPv4 address an IPv6 address carries: mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`) or Teredo
/// (`2001::/32`, the client address inverted).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(from(s[6], s[7]));
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) {
        return Some(from(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(from(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(from(!s[6], !s[7]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(ip: &str) -> Option<Blocked> {
        classify(ip.parse().expect("an address"))
    }

    #[test]
    fn every_non_public_range_is_refused() {
        let cases = [
            ("127.0.0.1", Blocked::Loopback),
            ("127.255.255.254", Blocked::Loopback),
            ("10.1.2.3", Blocked::Private),
            ("172.16.0.1", Blocked::Private),
            ("172.31.255.255", Blocked::Private),
            ("192.168.1.1", Blocked::Private),
            ("100.64.0.1", Blocked::SharedAddressSpace),
            ("169.254.169.254", Blocked::LinkLocal),
            ("0.0.0.0", Blocked::Unspecified),
            ("224.0.0.1", Blocked::Multicast),
            ("255.255.255.255", Blocked::Broadcast),
            ("192.0.2.10", Blocked::Reserved),
            ("198.18.0.1", Blocked::Reserved),
            ("240.0.0.1", Blocked::Reserved),
            ("::1", Blocked::Loopback),
            ("::", Blocked::Unspecified),
            ("fe80::1", Blocked::LinkLocal),
            ("fd00:ec2::254", Blocked::Private),
            ("fc00::1", Blocked::Private),
            ("ff02::1", Blocked::Multicast),
            ("::ffff:127.0.0.1", Blocked::Loopback),
            ("::ffff:169.254.169.254", Blocked::LinkLocal),
            ("::127.0.0.1", Blocked::Loopback),
            ("64:ff9b::7f00:1", Blocked::Loopback),
            ("64:ff9b::a00:1", Blocked::Private),
            ("2002:7f00:1::", Blocked::Loopback),
            ("2002:c0a8:101::", Blocked::Private),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Blocked::Loopback),
            ("2001:db8::1", Blocked::Reserved),
        ];
        for (ip, why) in cases {
            assert_eq!(blocked(ip), Some(why), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
            assert_eq!(blocked(ip), None, "{ip}");
        }
    }

    #[test]
    fn the_allow_list_comes_first_and_names_a_bad_entry() {
        let allow =
            Policy::parse_allow_list(&["127.0.0.0/8".into(), "::1/128".into()]).expect("valid");
        let policy = Policy::new(allow);
        assert!(policy.check("127.0.0.1".parse().expect("ip")).is_ok());
        assert!(policy.check("::1".parse().expect("ip")).is_ok());
        assert_eq!(
            policy.check("10.0.0.1".parse().expect("ip")),
            Err(Blocked::Private)
        );
        let err = Policy::parse_allow_list(&["localhost".into()]).expect_err("bad");
        assert!(err.contains("`localhost`"), "{err}");
    }
}
