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
    Unresolvable {
        /// The name that was looked up.
        host: String,
        /// The resolver's error, or "no address" for an empty answer.
        reason: String,
    },
    /// It resolved only to addresses this destination may not reach: the gateway's refusal.
    #[error("{host} resolves to {address} ({reason}), which this destination may not reach")]
    Refused {
        /// The name (or IP literal) of the destination.
        host: String,
        /// The first of the refused addresses it resolved to.
        address: IpAddr,
        /// Why that address is not public (see [`non_public_reason`]).
        reason: &'static str,
    },
}

/// How names are resolved: the system's resolver, or the configured name servers.
pub enum NameResolver {
    /// `getaddrinfo`, as any process on the machine would.
    System,
    /// A DNS client asking only the configured servers (no `/etc/hosts`).
    Servers(Box<hickory_resolver::TokioResolver>),
}

impl NameResolver {
    /// The system resolver when `servers` is empty, else a client for those servers.
    pub fn new(servers: &[SocketAddr]) -> Self {
        use hickory_resolver::{
            config::{NameServerConfig, ResolveHosts, ResolverConfig},
            proto::xfer::Protocol,
        };
        if servers.is_empty() {
            return Self::System;
        }
        let mut config = ResolverConfig::new();
        for &server in servers {
            config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
        }
        let mut builder =
            hickory_resolver::TokioResolver::builder_with_config(config, Default::default());
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        // The caller bounds the whole lookup by the connect timeout; one try per server.
        builder.options_mut().attempts = 1;
        Self::Servers(Box::new(builder.build()))
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, AddressError> {
        let unresolvable = |reason: String| AddressError::Unresolvable {
            host: host.to_owned(),
            reason,
        };
        match self {
            Self::System => tokio::net::lookup_host((host, port))
                .await
                .map(Iterator::collect)
                .map_err(|error| unresolvable(error.to_string())),
            Self::Servers(resolver) => {
                // Fully qualified: search domains never rewrite a destination's name.
                let name = format!("{}.", host.trim_end_matches('.'));
                resolver
                    .lookup_ip(name)
                    .await
                    .map(|found| found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
                    .map_err(|error| unresolvable(error.to_string()))
            }
        }
    }
}

/// Resolves `host:port` with `resolver` and keeps the addresses this destination may use.
pub async fn resolve_checked(
    resolver: &NameResolver,
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, AddressError> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => resolver.lookup(host, port).await?,
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
        let system = NameResolver::System;
        assert!(
            resolve_checked(&system, "127.0.0.1", 80, false)
                .await
                .is_err()
        );
        assert!(
            resolve_checked(&system, "169.254.169.254", 80, false)
                .await
                .unwrap_err()
                .to_string()
                .contains("link-local")
        );
        assert_eq!(
            resolve_checked(&system, "127.0.0.1", 80, true)
                .await
                .unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert!(
            resolve_checked(&system, "localhost", 80, false)
                .await
                .is_err()
        );
    }
}
