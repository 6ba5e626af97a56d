//! Which destination (if any) a request is allowed to go to.

use http::Uri;

/// A parsed allowlist entry: scheme + host + port (+ path prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub scheme: String,
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub path_prefix: String,
}

impl Destination {
    /// Parses `https://host[:port][/prefix]`. Only `http` and `https` are accepted.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("invalid destination URL {url:?}: {error}"))?;
        let (scheme, host, port) = target_of(&uri)
            .ok_or_else(|| format!("destination URL {url:?} needs an http(s) scheme and a host"))?;
        let path_prefix = uri.path().to_owned();
        Ok(Self {
            scheme,
            host,
            port,
            path_prefix,
        })
    }

    /// True when `uri` is for this destination.
    pub fn matches(&self, uri: &Uri) -> bool {
        match target_of(uri) {
            Some((scheme, host, port)) => {
                scheme == self.scheme
                    && host == self.host
                    && port == self.port
                    && uri.path().starts_with(&self.path_prefix)
            }
            None => false,
        }
    }

    /// `scheme://host:port`, the key for per-destination state (breaker, budget, limits).
    pub fn origin(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// The scheme, lower-case host and effective port of an absolute http(s) URI.
pub fn target_of(uri: &Uri) -> Option<(String, String, u16)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some((scheme, host, uri.port_u16().unwrap_or(default_port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[test]
    fn scheme_host_port_and_prefix_must_all_match() {
        let rule = Destination::parse("https://api.pwnedpasswords.com/range/").unwrap();
        assert_eq!(rule.port, 443);
        assert!(rule.matches(&uri("https://API.pwnedpasswords.com/range/ABCDE")));
        assert!(rule.matches(&uri("https://api.pwnedpasswords.com:443/range/ABCDE")));
        assert!(!rule.matches(&uri("http://api.pwnedpasswords.com/range/ABCDE")));
        assert!(!rule.matches(&uri("https://api.pwnedpasswords.com:8443/range/ABCDE")));
        assert!(!rule.matches(&uri("https://api.pwnedpasswords.com/other")));
        assert!(!rule.matches(&uri("https://api.pwnedpasswords.com.evil.test/range/ABCDE")));
    }

    #[test]
    fn loopback_ports_are_distinct_destinations() {
        let rule = Destination::parse("http://127.0.0.1:8080").unwrap();
        assert!(rule.matches(&uri("http://127.0.0.1:8080/anything")));
        assert!(!rule.matches(&uri("http://127.0.0.1:8081/anything")));
        assert_eq!(rule.origin(), "http://127.0.0.1:8080");
    }

    #[test]
    fn rejects_other_schemes() {
        assert!(Destination::parse("ftp://example.org/").is_err());
        assert!(Destination::parse("not a url").is_err());
    }
}
