//! SSRF guard: resolve a host once, refuse non-public addresses unless allowed, and hand the
//! checked addresses to the connector so a second lookup can't change the answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address is not public, or `None` when it is.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_reason(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(mapped) => v4_reason(mapped),
            None => v6_reason(ip),
        },
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if ip.is_broadcast() || ip.is_multicast() || a == 0 || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local (private)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// Why a destination's addresses cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The name did not resolve (NXDOMAIN, no answer, resolver failure): the upstream's side.
    #[error("cannot resolve {host}: {reason}")]
    Unresolvable { host: String, reason: String },
    /// It resolved only to addresses this destination may not reach: the gateway's refusal.
    #[error("{host} resolves to {address} ({reason}), which this destination may not reach")]
    Refused {
        host: String,
        address: IpAddr,
        reason: &'static str,
    },
}

/// Resolves `host:port` and keeps the addresses this destination may use.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, AddressError> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| AddressError::Unresolvable {
                host: host.to_owned(),
                reason: error.to_string(),
            })?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(AddressError::Unresolvable {
            host: host.to_owned(),
            reason: "no address".to_owned(),
        });
    }
    if allow_private {
        return Ok(addresses);
    }
    let (public, refused): (Vec<_>, Vec<_>) = addresses
        .into_iter()
        .partition(|address| non_public_reason(address.ip()).is_none());
    if public.is_empty() {
        let address = refused[0].ip();
        return Err(AddressError::Refused {
            host: host.to_owned(),
            address,
            reason: non_public_reason(address).unwrap_or("non-public"),
        });
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for (text, non_public) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("0.0.0.0", true),
            ("100.64.0.1", true),
            ("::1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("::ffff:127.0.0.1", true),
            ("8.8.8.8", false),
            ("2606:4700::1111", false),
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(non_public_reason(ip).is_some(), non_public, "{text}");
        }
    }

    #[tokio::test]
    async fn refuses_loopback_unless_allowed() {
        assert!(resolve_checked("127.0.0.1", 80, false).await.is_err());
        assert!(
            resolve_checked("169.254.169.254", 80, false)
                .await
                .unwrap_err()
                .to_string()
                .contains("link-local")
        );
        assert_eq!(
            resolve_checked("127.0.0.1", 80, true).await.unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert!(resolve_checked("localhost", 80, false).await.is_err());
    }
}
