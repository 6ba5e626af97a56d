//! Which destination (if any) a request is allowed to go to.
//!
//! Matching only ever sees canonical URLs ([`crate::canonical`]): an entry's path prefix is
//! compared segment by segment with a path that has no dot segments and no encoded separators,
//! so what matched is exactly what an upstream (or any proxy normalising paths) will serve.

use crate::canonical::{self, NonCanonical};
use http::Uri;

/// Why a configured destination URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// Not a URL at all.
    #[error("invalid destination URL {url:?}: {source}")]
    Invalid {
        /// The configured URL, as written.
        url: String,
        /// Why it does not parse as a URI.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// A URL, but not in canonical form (see [`canonical`]).
    #[error("destination URL {url:?}: {source}")]
    NonCanonical {
        /// The configured URL, as written.
        url: String,
        /// What makes it non-canonical.
        #[source]
        source: NonCanonical,
    },
    /// A query cannot be part of a path prefix.
    #[error("destination URL {url:?}: a query cannot be part of a path prefix")]
    Query {
        /// The configured URL, as written.
        url: String,
    },
}

/// A parsed allowlist entry: scheme + host + port (+ path prefix). Made by
/// [`Destination::parse`], which also spells [`Destination::origin`] and
/// [`Destination::authority`] from these fields: treat them as read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// The effective port: the explicit one, else 80 for `http` and 443 for `https`.
    pub port: u16,
    /// A canonical path; `/range` covers `/range` and `/range/...`, `/range/` only the latter.
    pub path_prefix: String,
    /// [`Destination::origin`], spelled once: every call uses it as a key or a label.
    origin: String,
    /// [`Destination::authority`], spelled once: every call sends it as `Host`.
    authority: String,
}

impl Destination {
    /// Parses `https://host[:port][/prefix]`. Only canonical `http` and `https` URLs without a
    /// query are accepted (see [`canonical`]).
    pub fn parse(url: &str) -> Result<Self, DestinationError> {
        let uri: Uri = url.parse().map_err(|error| DestinationError::Invalid {
            url: url.to_owned(),
            source: error,
        })?;
        let refuse = |error: NonCanonical| DestinationError::NonCanonical {
            url: url.to_owned(),
            source: error,
        };
        let origin = canonical::origin_of(&uri).map_err(refuse)?;
        canonical::check_path(uri.path()).map_err(refuse)?;
        if uri.query().is_some() {
            return Err(DestinationError::Query {
                url: url.to_owned(),
            });
        }
        let authority = origin.authority();
        let origin_text = if origin.host.contains(':') {
            format!("{}://[{}]:{}", origin.scheme, origin.host, origin.port)
        } else {
            format!("{}://{}:{}", origin.scheme, origin.host, origin.port)
        };
        Ok(Self {
            scheme: origin.scheme.to_owned(),
            host: origin.host,
            port: origin.port,
            path_prefix: uri.path().to_owned(),
            origin: origin_text,
            authority,
        })
    }

    /// True when `uri` is canonical and for this destination: same scheme, host and port, and
    /// a path under the prefix (whole segments; the query is not part of the match).
    pub fn matches(&self, uri: &Uri) -> bool {
        let Ok(origin) = canonical::origin_of(uri) else {
            return false;
        };
        canonical::check_path(uri.path()).is_ok() && self.matches_checked(&origin, uri.path())
    }

    /// [`Destination::matches`] for a URL already checked: `origin` from
    /// [`canonical::origin_of`] and a `path` that passed [`canonical::check_path`].
    pub fn matches_checked(&self, origin: &canonical::Origin, path: &str) -> bool {
        origin.scheme == self.scheme
            && origin.host == self.host
            && origin.port == self.port
            && canonical::path_is_under(path, &self.path_prefix)
    }

    /// `scheme://host:port`, the key for per-destination state (breaker, budget, limits).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `host[:port]` for the `Host` header: the checked origin alone (the port only when not
    /// the scheme's default), never userinfo.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

/// The scheme, lower-case host and effective port of a canonical absolute http(s) URI; `None`
/// for anything [`canonical::origin_of`] refuses.
pub fn target_of(uri: &Uri) -> Option<(String, String, u16)> {
    let origin = canonical::origin_of(uri).ok()?;
    Some((origin.scheme.to_owned(), origin.host, origin.port))
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

    fn prefixed() -> Destination {
        Destination::parse("http://127.0.0.1:8080/range/").unwrap()
    }

    #[test]
    fn path_tricks_never_match() {
        let rule = prefixed();
        assert!(rule.matches(&uri("http://127.0.0.1:8080/range/ABCDE")));
        for path in [
            "/range/../admin",
            "/range/./../admin",
            "/range/%2e%2e/admin",
            "/range/%2E%2E/admin",
            "/range/.%2e/admin",
            "/range/..%2fadmin",
            "/range/..%2Fadmin",
            "/range/..%5cadmin",
            "/range/..;/admin",
            "/range/%252e%252e/admin",
            "/range\\..\\admin",
            "/range/..\\admin",
        ] {
            let text = format!("http://127.0.0.1:8080{path}");
            if let Ok(parsed) = text.parse::<Uri>() {
                assert!(!rule.matches(&parsed), "{path} must not match");
            }
        }
    }

    #[test]
    fn userinfo_never_matches() {
        let rule = prefixed();
        assert!(!rule.matches(&uri("http://admin:pw@127.0.0.1:8080/range/ABCDE")));
        assert!(!rule.matches(&uri("http://admin@127.0.0.1:8080/range/ABCDE")));
    }

    #[test]
    fn odd_host_spellings_never_match() {
        let rule = prefixed();
        for host in [
            "0x7f.1",
            "0x7f.0.0.1",
            "2130706433",
            "0177.0.0.1",
            "127.1",
            "127.0.0.1.",
            "[::ffff:127.0.0.1]",
        ] {
            let text = format!("http://{host}:8080/range/ABCDE");
            assert!(!rule.matches(&uri(&text)), "{host} must not match");
        }
        let named = Destination::parse("https://api.pwnedpasswords.com/range/").unwrap();
        assert!(!named.matches(&uri("https://api.pwnedpasswords.com./range/ABCDE")));
        assert!(named.matches(&uri("https://API.PwnedPasswords.com/range/ABCDE")));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let exact = Destination::parse("http://127.0.0.1:8080/range").unwrap();
        assert!(exact.matches(&uri("http://127.0.0.1:8080/range")));
        assert!(exact.matches(&uri("http://127.0.0.1:8080/range/ABCDE")));
        assert!(exact.matches(&uri("http://127.0.0.1:8080/range?mode=padded")));
        assert!(!exact.matches(&uri("http://127.0.0.1:8080/rangeX")));
        assert!(!exact.matches(&uri("http://127.0.0.1:8080/range-admin")));
        assert!(!exact.matches(&uri("http://127.0.0.1:8080/range%2fx")));
        let slash = prefixed();
        assert!(slash.matches(&uri("http://127.0.0.1:8080/range/ABCDE")));
        assert!(slash.matches(&uri("http://127.0.0.1:8080/range/ABCDE?mode=padded")));
        assert!(!slash.matches(&uri("http://127.0.0.1:8080/range")));
        assert!(!slash.matches(&uri("http://127.0.0.1:8080/rangeX/ABCDE")));
        assert!(!slash.matches(&uri("http://127.0.0.1:8080/?next=/range/")));
    }

    #[test]
    fn entries_must_be_canonical_too() {
        for url in [
            "http://127.0.0.1:8080/range/../admin",
            "http://127.0.0.1:8080/range/%2e%2e/",
            "http://user:pw@127.0.0.1:8080/range/",
            "http://127.1:8080/",
            "http://example.org./",
            "http://example.org/range/?key=value",
        ] {
            assert!(Destination::parse(url).is_err(), "{url} must be refused");
        }
    }

    #[test]
    fn authority_is_the_checked_origin_alone() {
        assert_eq!(prefixed().authority(), "127.0.0.1:8080");
        let named = Destination::parse("https://API.example.org:443/v1/").unwrap();
        assert_eq!(named.authority(), "api.example.org");
        let v6 = Destination::parse("http://[::1]:8080").unwrap();
        assert_eq!(v6.authority(), "[::1]:8080");
    }
}

/// Property tests of the matcher against the normalisation an upstream or a proxy may apply.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Path pieces, including every dot and separator spelling the matcher must see through.
    const SEGMENTS: &[&str] = &[
        "range", "rangeX", "admin", "ABCDE", "a", "", ".", "..", "...", "%2e", "%2E", "%2e%2e",
        ".%2e", "%2E.", "%41", "%2f", "%2F", "%5c", "%5C", "..;", ".;x", "x.y", "%252e", "%25",
    ];
    const SEPARATORS: &[&str] = &["/", "/", "/", "\\", "%2f", "%2F", "%5c", ";"];
    const HEADS: &[&str] = &["/", "/range/", "/range", "/rangeX/", "/range/ABCDE/"];
    const QUERIES: &[&str] = &["", "?q=1", "?next=/../admin", "?x=%2e%2e"];
    const PREFIXES: &[&str] = &["/range/", "/range", "/", "/range/ABCDE"];

    fn path_strategy() -> impl Strategy<Value = String> {
        (
            prop::sample::select(HEADS),
            prop::collection::vec(
                (
                    prop::sample::select(SEGMENTS),
                    prop::sample::select(SEPARATORS),
                ),
                0..7,
            ),
            prop::sample::select(SEGMENTS),
        )
            .prop_map(|(head, pieces, last)| {
                let mut path = head.to_owned();
                for (segment, separator) in pieces {
                    path.push_str(segment);
                    path.push_str(separator);
                }
                path.push_str(last);
                path
            })
    }

    fn hex_value(pair: &[u8]) -> Option<u8> {
        std::str::from_utf8(pair)
            .ok()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
    }

    /// Decodes `%XX` where `decode(byte)` says so, leaving other escapes as written.
    fn percent_decode(path: &str, decode: impl Fn(u8) -> bool) -> String {
        let bytes = path.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        while at < bytes.len() {
            let escaped = (bytes[at] == b'%')
                .then(|| bytes.get(at + 1..at + 3).and_then(hex_value))
                .flatten()
                .filter(|value| decode(*value));
            if let Some(value) = escaped {
                out.push(value);
                at += 3;
                continue;
            }
            out.push(bytes[at]);
            at += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn pop_segment(output: &mut String) {
        match output.rfind('/') {
            Some(at) => output.truncate(at),
            None => output.clear(),
        }
    }

    /// RFC 3986 §5.2.4.
    fn remove_dot_segments(path: &str) -> String {
        let mut input = path.to_owned();
        let mut output = String::new();
        while !input.is_empty() {
            if input.starts_with("../") {
                input.drain(..3);
            } else if input.starts_with("./") {
                input.drain(..2);
            } else if input.starts_with("/./") {
                input.replace_range(..3, "/");
            } else if input == "/." {
                input = "/".to_owned();
            } else if input.starts_with("/../") {
                input.replace_range(..4, "/");
                pop_segment(&mut output);
            } else if input == "/.." {
                input = "/".to_owned();
                pop_segment(&mut output);
            } else if input == "." || input == ".." {
                input.clear();
            } else {
                let start = usize::from(input.starts_with('/'));
                let end = input[start..]
                    .find('/')
                    .map_or(input.len(), |at| at + start);
                output.push_str(&input[..end]);
                input.drain(..end);
            }
        }
        output
    }

    /// RFC 3986 §2.3.
    fn unreserved(byte: u8) -> bool {
        byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
    }

    /// The RFC's normalisation: decode unreserved characters, remove dot segments.
    fn rfc_normalised(path: &str) -> String {
        remove_dot_segments(&percent_decode(path, unreserved))
    }

    /// What a sloppy upstream may do: decode everything, read `\` as `/`, drop `;params`.
    fn aggressive_normalised(path: &str) -> String {
        let decoded = percent_decode(path, |_| true).replace('\\', "/");
        let without_params: Vec<&str> = decoded
            .split('/')
            .map(|segment| segment.split(';').next().unwrap_or_default())
            .collect();
        remove_dot_segments(&without_params.join("/"))
    }

    /// The specification of "under a prefix", whole segments.
    fn under(path: &str, prefix: &str) -> bool {
        if prefix.ends_with('/') {
            path.starts_with(prefix)
        } else {
            path == prefix || path.starts_with(&format!("{prefix}/"))
        }
    }

    fn has_tricks(path: &str) -> bool {
        let lower = path.to_ascii_lowercase();
        let dot_segment = path.split('/').any(|segment| {
            let name = segment.split(';').next().unwrap_or_default();
            name == "." || name == ".."
        });
        dot_segment
            || path.contains('\\')
            || ["%2e", "%2f", "%5c", "%25"]
                .iter()
                .any(|encoded| lower.contains(encoded))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn allowed_paths_stay_under_the_prefix(
            path in path_strategy(),
            query in prop::sample::select(QUERIES),
            prefix in prop::sample::select(PREFIXES),
        ) {
            let rule = Destination::parse(&format!("http://127.0.0.1:8080{prefix}")).unwrap();
            let Ok(target) = format!("http://127.0.0.1:8080{path}{query}").parse::<Uri>() else {
                return Ok(());
            };
            prop_assert_eq!(target.path(), path.as_str());
            if rule.matches(&target) {
                prop_assert!(!has_tricks(&path), "{} was allowed", path);
                prop_assert!(under(&rfc_normalised(&path), prefix), "{} escapes {}", path, prefix);
                prop_assert!(under(&aggressive_normalised(&path), prefix), "{} escapes {}", path, prefix);
                // Exact: normalising changes nothing an upstream would route on.
                prop_assert_eq!(rfc_normalised(&path), percent_decode(&path, unreserved));
            }
            if has_tricks(&path) {
                prop_assert!(!rule.matches(&target), "{} must be refused", path);
            }
        }

        #[test]
        fn plain_paths_under_the_prefix_are_allowed(
            segments in prop::collection::vec("[A-Za-z0-9_~-]{1,8}|%4[1-9A-F]", 1..6),
            query in prop::sample::select(QUERIES),
        ) {
            let rule = Destination::parse("http://127.0.0.1:8080/range/").unwrap();
            let path = format!("/range/{}", segments.join("/"));
            let target: Uri = format!("http://127.0.0.1:8080{path}{query}").parse().unwrap();
            prop_assert!(rule.matches(&target), "{} must be allowed", path);
            let outside: Uri = format!("http://127.0.0.1:8080/rangeX/{}", segments.join("/")).parse().unwrap();
            prop_assert!(!rule.matches(&outside));
        }

        #[test]
        fn only_dotted_quads_name_an_ipv4_address(address in any::<u32>()) {
            let ip = std::net::Ipv4Addr::from(address);
            let [a, b, c, d] = ip.octets();
            let rule = Destination::parse(&format!("http://{ip}:8080/")).unwrap();
            let canonical: Uri = format!("http://{ip}:8080/x").parse().unwrap();
            prop_assert!(rule.matches(&canonical));
            for odd in [
                format!("{address}"),
                format!("0x{address:x}"),
                format!("{a}.{}", u32::from_be_bytes([0, b, c, d])),
                format!("{a}.{b}.{}", u16::from_be_bytes([c, d])),
                format!("0{a:o}.{b}.{c}.{d}"),
                format!("0x{a:x}.{b}.{c}.{d}"),
                format!("{ip}."),
            ] {
                if let Ok(target) = format!("http://{odd}:8080/x").parse::<Uri>() {
                    prop_assert!(!rule.matches(&target), "{} must be refused", odd);
                    let entry = format!("http://{odd}:8080/");
                    prop_assert!(Destination::parse(&entry).is_err(), "{} must be refused", entry);
                }
            }
        }
    }
}
