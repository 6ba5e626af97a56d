//! Who the client is: the TCP peer, or, when the peer is a trusted proxy, the right-most hop of
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` that is not itself a trusted proxy.
//!
//! Every proxy appends the address it received the request from, so hops to the left of the
//! last trusted proxy's entry were written by whoever talked to it and can be anything; only the
//! entries added by trusted proxies are believed. Without `trusted-proxies` (the default) the
//! headers are ignored entirely, so a client cannot choose its own address by sending them.

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The configured trusted proxies (`[http] trusted-proxies`, CIDR blocks).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts these networks.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_address(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        let peer = unmapped(peer.ip());
        if !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        // Right to left: skip our own proxies; the first hop that is not one is the client.
        for hop in hops.iter().rev() {
            match hop {
                // A trusted proxy wrote something that is not an address (`unknown`, an
                // obfuscated name): nothing further left can be believed; the proxy is the client.
                None => return client,
                Some(address) => {
                    client = *address;
                    if !self.contains(client) {
                        return client;
                    }
                }
            }
        }
        client
    }
}

/// The hops named by `Forwarded` (when present) or else `X-Forwarded-For`, left to right, every
/// header line in order; `None` for a hop that is not an IP address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let lines = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    };
    let forwarded = lines("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value))
            })
            .collect();
    }
    lines("x-forwarded-for")
        .iter()
        .flat_map(|line| line.split(','))
        .map(parse_node)
        .collect()
}

/// An address from a hop: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `"[2001:db8::1]:443"`.
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"').trim();
    if let Ok(address) = value.parse::<IpAddr>() {
        return Some(unmapped(address));
    }
    if let Ok(socket) = value.parse::<SocketAddr>() {
        return Some(unmapped(socket.ip()));
    }
    // `[2001:db8::1]` without a port.
    value
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok())
        .map(|address| unmapped(IpAddr::V6(address)))
}

/// `::ffff:192.0.2.1` is `192.0.2.1`.
fn unmapped(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The key per-client throttles count under: the IPv4 address, or the IPv6 /64 (one customer's
/// network, whose addresses a client can rotate through at will).
pub fn throttle_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let network = Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            );
            format!("{network}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn proxies(networks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(networks.iter().map(|n| n.parse().unwrap()).collect())
    }

    const PEER: &str = "10.0.0.5:41000";

    #[test]
    fn untrusted_peers_cannot_name_another_address() {
        let spoofed = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        let peer: SocketAddr = PEER.parse().unwrap();
        assert_eq!(
            TrustedProxies::default().client_address(&spoofed, peer),
            peer.ip()
        );
        assert_eq!(
            proxies(&["192.168.0.0/16"]).client_address(&spoofed, peer),
            peer.ip()
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let peer = PEER.parse().unwrap();
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(
            trusted.client_address(&chain, peer),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let two_lines = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.8"),
        ]);
        assert_eq!(
            trusted.client_address(&two_lines, peer),
            "198.51.100.8".parse::<IpAddr>().unwrap()
        );
        let forwarded = headers(&[(
            "forwarded",
            "for=1.1.1.1, for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.2",
        )]);
        assert_eq!(
            trusted.client_address(&forwarded, peer),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let unknown = headers(&[("forwarded", "for=1.1.1.1, for=unknown")]);
        assert_eq!(trusted.client_address(&unknown, peer), peer.ip());
        let all_trusted = headers(&[("x-forwarded-for", "10.1.1.1")]);
        assert_eq!(
            trusted.client_address(&all_trusted, peer),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(trusted.client_address(&HeaderMap::new(), peer), peer.ip());
    }

    #[test]
    fn ipv6_clients_are_throttled_per_64() {
        assert_eq!(
            throttle_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            throttle_key("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
        assert_eq!(throttle_key("192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(
            unmapped("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
