//! Service discovery: turns a logical service name into a base URL, so the same configuration style
//! works with Kubernetes DNS (plain host names or SRV) and Consul DNS (SRV on port 8600).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::rr::{RData, rdata::SRV};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, ResolveError, TokioResolver};

/// How one logical service is found (a `[services.<name>]` table of the TOML config).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceLocation {
    /// A fixed base URL, `scheme://host[:port][/base-path]`. If `dns-servers` is empty, a host name is left
    /// for the system resolver at call time (Kubernetes: `http://notification-service.default.svc:8080`).
    /// If `dns-servers` is set, the host name is resolved here with A/AAAA queries to those servers.
    pub url: Option<String>,
    /// A DNS SRV name (Consul: `_http._tcp.notification-service.service.consul`, Kubernetes:
    /// `_http._tcp.notification-service.default.svc.cluster.local`). Lowest priority wins, weight
    /// breaks ties at random (RFC 2782); the target is resolved with A/AAAA.
    pub srv: Option<String>,
    /// Scheme for SRV targets: "http" (default when empty) or "https".
    pub scheme: String,
    /// Path prefix appended to SRV-built base URLs (e.g. "/api"), default "".
    pub base_path: String,
    /// Name servers to ask (e.g. "127.0.0.1:8600" for Consul); empty = the system's (/etc/resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
}

/// Why a service could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    /// The caller asked for a service that has no `[services.<name>]` entry.
    #[error("service `{0}` is not configured (no [services.{0}] table)")]
    UnknownService(String),
    /// The service's configuration is invalid; reported by [`Discovery::new`].
    #[error("[services.{service}] is misconfigured: {message}")]
    Misconfigured {
        /// The logical service name.
        service: String,
        /// What is wrong.
        message: String,
    },
    /// DNS could not produce an address for the service.
    #[error("service `{service}`: DNS lookup of `{name}` failed: {message}")]
    Lookup {
        /// The logical service name.
        service: String,
        /// The DNS name that was asked (SRV name, SRV target or URL host).
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// A resolved service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedService {
    /// `scheme://host[:port][/base-path]`, without a trailing slash.
    pub base_url: String,
    /// The logical host name (URL host or SRV target, no port, no trailing dot), for TLS SNI and `Host`.
    pub host_header: String,
}

/// How one service is resolved, decided once in [`Discovery::new`] so bad config fails at start-up.
enum Plan {
    /// Nothing to ask here: an IP literal, or a host name the HTTP client resolves itself.
    Fixed(ResolvedService),
    /// Something to ask DNS on every call (answers come from hickory's TTL cache).
    Dns(DnsPlan),
}

/// A DNS-backed location: an SRV name, or a URL host asked from configured servers.
struct DnsPlan {
    name: Name,
    /// `name` is an SRV name (port from the record) rather than a URL host (port from the URL).
    srv: bool,
    scheme: String,
    port: Option<u16>,
    path: String,
    resolver: Arc<TokioResolver>,
}

/// Resolves configured logical services. `Send + Sync`; share it in an `Arc`.
pub struct Discovery {
    plans: BTreeMap<String, Plan>,
}

impl Discovery {
    /// Validates every location (exactly one of `url`/`srv`, `http`/`https` schemes, valid DNS names)
    /// and builds one resolver per distinct `dns-servers` list, so services sharing servers share a cache.
    pub fn new(services: &BTreeMap<String, ServiceLocation>) -> Result<Self, DiscoveryError> {
        let mut resolvers = HashMap::new();
        let mut plans = BTreeMap::new();
        for (service, location) in services {
            let plan = plan(location, &mut resolvers).map_err(|message| {
                DiscoveryError::Misconfigured {
                    service: service.clone(),
                    message,
                }
            })?;
            plans.insert(service.clone(), plan);
        }
        Ok(Self { plans })
    }

    /// The logical names configured.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }

    /// Resolves `service` now. Hickory caches answers for their TTL, so calling this per request is
    /// cheap and still follows DNS changes; don't add another cache on top.
    pub async fn resolve(&self, service: &str) -> Result<ResolvedService, DiscoveryError> {
        match self.plans.get(service) {
            None => Err(DiscoveryError::UnknownService(service.to_owned())),
            Some(Plan::Fixed(resolved)) => Ok(resolved.clone()),
            Some(Plan::Dns(dns)) => {
                dns.resolve()
                    .await
                    .map_err(|(name, message)| DiscoveryError::Lookup {
                        service: service.to_owned(),
                        name: host_of(&name),
                        message,
                    })
            }
        }
    }
}

impl DnsPlan {
    /// Looks the service up; on failure returns the DNS name that failed and why.
    async fn resolve(&self) -> Result<ResolvedService, (Name, String)> {
        let (target, port, known) = if self.srv {
            let lookup = self.resolver.srv_lookup(self.name.clone()).await;
            let lookup = lookup.map_err(|e| (self.name.clone(), describe(&e, "SRV")))?;
            // A target of "." means "decidedly not available here" (RFC 2782).
            let srv = pick(lookup.iter().filter(|s| !s.target().is_root()).collect())
                .ok_or_else(|| (self.name.clone(), "no usable SRV record".to_owned()))?;
            let target = srv.target().clone();
            // Consul and CoreDNS send the target's addresses in the additional section and hickory
            // keeps those it attributes to the target; using them saves a round trip.
            let records = lookup.as_lookup().records().iter();
            let known = records
                .filter(|r| *r.name() == target)
                .find_map(|r| ip_of(r.data()));
            (target, Some(srv.port()), known)
        } else {
            (self.name.clone(), self.port, None)
        };
        if self.srv && self.scheme == "https" {
            // TLS verifies the certificate against a name, so the URL keeps the target's name
            // (resolved again when connecting, by the system resolver) instead of an address.
            let host = host_of(&target);
            let base_url = match port {
                Some(port) => format!("https://{host}:{port}{}", self.path),
                None => format!("https://{host}{}", self.path),
            };
            return Ok(ResolvedService {
                base_url,
                host_header: host,
            });
        }
        let ip = match known {
            Some(ip) => ip,
            None => first_ip(&self.resolver, &target)
                .await
                .map_err(|m| (target.clone(), m))?,
        };
        let base_url = base_url(&self.scheme, ip, port, &self.path);
        Ok(ResolvedService {
            base_url,
            host_header: host_of(&target),
        })
    }
}

/// Decides how `location` is resolved, reusing the resolver of an identical `dns-servers` list.
fn plan(
    location: &ServiceLocation,
    resolvers: &mut HashMap<Vec<SocketAddr>, Arc<TokioResolver>>,
) -> Result<Plan, String> {
    let (srv, scheme, name, port, path) = match (&location.url, &location.srv) {
        (Some(url), None) => {
            if !location.scheme.is_empty() || !location.base_path.is_empty() {
                return Err(
                    "`scheme` and `base-path` apply to `srv` only; put them in `url`".into(),
                );
            }
            let (scheme, host, port, path) =
                parse_url(url).map_err(|m| format!("url {url:?}: {m}"))?;
            if location.dns_servers.is_empty() || host.parse::<IpAddr>().is_ok() {
                let base_url = url.trim_end_matches('/').to_owned();
                return Ok(Plan::Fixed(ResolvedService {
                    base_url,
                    host_header: host,
                }));
            }
            (false, scheme, host, port, path)
        }
        (None, Some(name)) => {
            let scheme = match location.scheme.as_str() {
                "" => "http",
                scheme @ ("http" | "https") => scheme,
                other => {
                    return Err(format!(
                        "scheme must be \"http\" or \"https\", not {other:?}"
                    ));
                }
            };
            let path = location.base_path.trim_end_matches('/');
            let path = if path.is_empty() || path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
            (true, scheme.to_owned(), name.clone(), None, path)
        }
        (Some(_), Some(_)) => return Err("set exactly one of `url` and `srv`, not both".into()),
        (None, None) => return Err("set `url` (fixed base URL) or `srv` (DNS SRV name)".into()),
    };
    let name = dns_name(&name)?;
    let resolver = match resolvers.get(&location.dns_servers) {
        Some(resolver) => resolver.clone(),
        None => {
            let resolver = Arc::new(build_resolver(&location.dns_servers)?);
            resolvers.insert(location.dns_servers.clone(), resolver.clone());
            resolver
        }
    };
    Ok(Plan::Dns(DnsPlan {
        name,
        srv,
        scheme,
        port,
        path,
        resolver,
    }))
}

/// Builds a resolver asking `servers`, or the system's name servers when empty.
fn build_resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
    } else {
        let mut config = ResolverConfig::new();
        for &addr in servers {
            // TCP is only used when a UDP answer is truncated (many SRV targets).
            config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
        }
        let mut builder = TokioResolver::builder_with_config(config, Default::default());
        // The operator named the servers to trust; /etc/hosts must not shadow them.
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        builder
    };
    // Fail fast, a request is waiting. `attempts` counts retries, so a dead server costs 3 x 2 s per
    // query; a host lookup (A, then AAAA only if A fails) can take twice that.
    builder.options_mut().timeout = Duration::from_secs(2);
    builder.options_mut().attempts = 2;
    Ok(builder.build())
}

/// Parses a configured name as fully qualified (trailing dot), so search domains and `ndots` never
/// rewrite it: `notification.test` is asked as-is.
fn dns_name(name: &str) -> Result<Name, String> {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&fqdn).map_err(|e| format!("{name:?} is not a valid DNS name: {e}"))
}

/// Splits `scheme://host[:port][/path]` into (scheme, host, port, path without trailing slash).
fn parse_url(url: &str) -> Result<(String, String, Option<u16>, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("expected scheme://host[:port][/path]")?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme must be http or https, not {scheme:?}"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') || rest.contains(['?', '#']) {
        return Err("user info, query and fragment are not allowed".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, after)) => (
                host,
                Some(after.strip_prefix(':').ok_or("bad text after ']'")?),
            ),
            None => return Err("missing ']' after IPv6 address".into()),
        },
        None => authority
            .split_once(':')
            .map_or((authority, None), |(h, p)| (h, Some(p))),
    };
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| format!("invalid port {p:?}")))
        .transpose()?;
    if host.is_empty() {
        return Err("missing host".into());
    }
    Ok((
        scheme.to_owned(),
        host.to_owned(),
        port,
        path.trim_end_matches('/').to_owned(),
    ))
}

/// The first address the resolver returns (A and AAAA per its default strategy).
async fn first_ip(resolver: &TokioResolver, host: &Name) -> Result<IpAddr, String> {
    let lookup = resolver
        .lookup_ip(host.clone())
        .await
        .map_err(|e| describe(&e, "A/AAAA"))?;
    lookup
        .iter()
        .next()
        .ok_or_else(|| "no A/AAAA records".into())
}

/// Picks by lowest priority, then at random weighted by weight (RFC 2782). Zero weights only win
/// when all candidates have zero weight (RFC 2782 gives them a "very small chance"; close enough).
fn pick(records: Vec<&SRV>) -> Option<&SRV> {
    let best = records.iter().map(|s| s.priority()).min()?;
    let candidates: Vec<&SRV> = records
        .into_iter()
        .filter(|s| s.priority() == best)
        .collect();
    let total: u64 = candidates.iter().map(|s| u64::from(s.weight())).sum();
    if total == 0 {
        return candidates
            .get(random_below(candidates.len() as u64) as usize)
            .copied();
    }
    let mut point = random_below(total);
    candidates
        .into_iter()
        .find(|s| match point.checked_sub(u64::from(s.weight())) {
            Some(rest) => {
                point = rest;
                false
            }
            None => true,
        })
}

/// A random number in `0..n` (n > 0); load spreading needs no cryptographic randomness.
fn random_below(n: u64) -> u64 {
    fastrand::u64(0..n)
}

fn ip_of(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

fn base_url(scheme: &str, ip: IpAddr, port: Option<u16>, path: &str) -> String {
    // IPv6 hosts need brackets in URLs.
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

fn host_of(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_owned()
}

/// Turns hickory's errors (which print whole `Query` structs) into an operator-readable reason.
fn describe(error: &ResolveError, kind: &str) -> String {
    if error.is_nx_domain() {
        "no such name (NXDOMAIN)".into()
    } else if error.is_no_records_found() {
        format!("no {kind} records")
    } else if let Some(ProtoErrorKind::Timeout) = error.proto().map(|e| e.kind()) {
        "no answer from the name servers (timed out)".into()
    } else {
        error.to_string()
    }
}
