//! Canonical requests: what the allowlist matches is exactly what goes out.
//!
//! Paths and hosts have many spellings that an upstream, a proxy or a resolver may normalise
//! differently from the allowlist (`/range/../admin`, `/range/%2e%2e/admin`, `127.1`,
//! `0x7f.1`...). Rather than normalising (and hoping every hop normalises the same way), the
//! gateway **refuses** every request whose URL is not already in canonical form:
//!
//! - **origin** ([`origin_of`]): `http`/`https` only, no userinfo, a host that is lower-case-able
//!   ASCII LDH labels (no trailing dot, no numeric last label) or a canonical IP literal, and a
//!   plain decimal port;
//! - **path** ([`check_path`]): no dot segments (`.`, `..`, also `..;params`), no raw `\`, no
//!   encoded `.`, `/`, `\` or `%` (`%2e`, `%2f`, `%5c`, `%25`, any case), well-formed
//!   percent-escapes only, ASCII only, UTF-8 once decoded.
//!
//! A canonical request is then rebuilt from its checked parts ([`canonical_uri`]), so the
//! authority, and with it the `Host` header the client derives, never carries userinfo.
//!
//! The request's headers are cleaned ([`strip_headers`]): forwarding and hop-by-hop headers
//! from a plugin never reach an upstream, and the gateway owns content-encoding
//! (`Accept-Encoding: identity`).

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Uri,
    header::{ACCEPT_ENCODING, CONNECTION},
};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a request's URL is not canonical. The messages never contain request data (a userinfo
/// password, a query token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonCanonical {
    /// No scheme, a scheme other than `http`/`https`, or no authority.
    #[error("the URL is not an absolute http(s) URL")]
    NotAbsoluteHttp,
    /// The authority has a `user[:password]@` part.
    #[error("the URL carries userinfo")]
    Userinfo,
    /// The host is refused; the payload says why.
    #[error("the host is not a canonical name or IP literal: {0}")]
    Host(HostProblem),
    /// The port is empty, has a sign or leading zeros, or is not in 1..=65535.
    #[error("the port is not a plain decimal port")]
    Port,
    /// The path does not start with `/`.
    #[error("the path does not start with `/`")]
    RelativePath,
    /// A `.` or `..` segment (also `..;params`).
    #[error("path contains a dot segment")]
    DotSegment,
    /// A raw `\` in the path.
    #[error("path contains a backslash")]
    Backslash,
    /// A percent-encoded `.`, `/`, `\` or `%`; the payload is the decoded character.
    #[error("path contains an encoded `{0}`")]
    EncodedDelimiter(char),
    /// A `%` not followed by two hex digits.
    #[error("path contains a malformed percent-escape")]
    MalformedEscape,
    /// A raw byte that is not ASCII, or an ASCII control character.
    #[error("path contains a raw non-ASCII or control character")]
    NonAscii,
    /// The percent-decoded path is not valid UTF-8 (e.g. overlong `%c0%ae`).
    #[error("path is not UTF-8 once decoded")]
    NotUtf8,
}

/// What is wrong with a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostProblem {
    /// No host at all.
    #[error("empty")]
    Empty,
    /// Longer than 253 characters.
    #[error("too long")]
    TooLong,
    /// A leading, trailing or doubled dot.
    #[error("empty label (a trailing or doubled dot)")]
    EmptyLabel,
    /// A label longer than 63 characters, with a character other than ASCII letters, digits
    /// and hyphens, or starting or ending with a hyphen.
    #[error("a label is not ASCII letters, digits and inner hyphens")]
    NotLdh,
    /// The last label is numeric (decimal or `0x` hex) but the host is not a canonical
    /// dotted-quad IPv4 address (`127.1`, `0x7f.0.0.1`, `010.0.0.1`).
    #[error("a numeric name that is not a dotted-quad IPv4 address")]
    OddIpv4,
    /// A bracketed literal that is not IPv6, has a zone, or is not spelled (case aside) as
    /// [`Ipv6Addr`] displays it.
    #[error("an IPv6 literal that is not in canonical form")]
    OddIpv6,
}

/// The checked origin of a request: lower-case scheme and host, effective port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Lower-case host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// The explicit port, else the scheme's default (80 or 443).
    pub port: u16,
}

impl Origin {
    /// The port a scheme implies.
    fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }

    /// `host[:port]` as it goes into the URI and the `Host` header: brackets around IPv6, the
    /// port only when it is not the scheme's default (RFC 3986 §6.2.3), never userinfo.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Checks the scheme and authority of an absolute URI.
pub fn origin_of(uri: &Uri) -> Result<Origin, NonCanonical> {
    let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => "http",
        Some("https") => "https",
        _ => return Err(NonCanonical::NotAbsoluteHttp),
    };
    let authority = uri
        .authority()
        .ok_or(NonCanonical::NotAbsoluteHttp)?
        .as_str();
    if authority.contains('@') {
        return Err(NonCanonical::Userinfo);
    }
    let (host, port) = split_host_port(authority)?;
    let host = canonical_host(host)?;
    let port = match port {
        None => {
            if scheme == "https" {
                443
            } else {
                80
            }
        }
        Some(port) => parse_port(port)?,
    };
    Ok(Origin { scheme, host, port })
}

/// Splits `host[:port]`, `[v6][:port]`; the port is returned unparsed.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), NonCanonical> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (literal, after) = rest
            .split_once(']')
            .ok_or(NonCanonical::Host(HostProblem::OddIpv6))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(NonCanonical::Port)?),
        };
        // Keep the brackets: they tell `canonical_host` this is meant to be IPv6.
        let host = &authority[..literal.len() + 2];
        return Ok((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((authority, None)),
    }
}

/// A port in plain decimal without leading zeros, 1..=65535.
fn parse_port(text: &str) -> Result<u16, NonCanonical> {
    let plain = !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && !text.starts_with('0');
    if !plain {
        return Err(NonCanonical::Port);
    }
    text.parse::<u16>().map_err(|_| NonCanonical::Port)
}

/// The lower-case canonical form of a host, or why it has none.
///
/// Accepted: `[v6]` literals written exactly as [`Ipv6Addr`] displays them (no zone), dotted-quad
/// IPv4 without leading zeros, and names made of ASCII letter-digit-hyphen labels whose last
/// label is not numeric (so `127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1` are all refused:
/// resolvers read them as IPv4 in odd notations).
pub fn canonical_host(host: &str) -> Result<String, NonCanonical> {
    let problem = NonCanonical::Host;
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let lower = literal.to_ascii_lowercase();
        let address: Ipv6Addr = lower.parse().map_err(|_| problem(HostProblem::OddIpv6))?;
        return if address.to_string() == lower {
            Ok(lower)
        } else {
            Err(problem(HostProblem::OddIpv6))
        };
    }
    if host.is_empty() {
        return Err(problem(HostProblem::Empty));
    }
    if host.len() > 253 {
        return Err(problem(HostProblem::TooLong));
    }
    let lower = host.to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(problem(HostProblem::EmptyLabel));
        }
        let ldh = label.len() <= 63
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ldh {
            return Err(problem(HostProblem::NotLdh));
        }
    }
    let last = labels.last().copied().unwrap_or_default();
    if looks_numeric(last) {
        // WHATWG's "ends in a number": then it is IPv4, and only the canonical spelling goes.
        let address: Ipv4Addr = lower.parse().map_err(|_| problem(HostProblem::OddIpv4))?;
        if address.to_string() != lower {
            return Err(problem(HostProblem::OddIpv4));
        }
    }
    Ok(lower)
}

/// All decimal digits, or `0x` followed by hex digits (as IPv4 parsers read a label).
fn looks_numeric(label: &str) -> bool {
    let decimal = !label.is_empty() && label.bytes().all(|byte| byte.is_ascii_digit());
    let hex = label
        .strip_prefix("0x")
        .is_some_and(|rest| rest.bytes().all(|byte| byte.is_ascii_hexdigit()));
    decimal || hex
}

/// Checks that a path (without its query) is canonical: see the module documentation.
pub fn check_path(path: &str) -> Result<(), NonCanonical> {
    if !path.starts_with('/') {
        return Err(NonCanonical::RelativePath);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b'\\' => return Err(NonCanonical::Backslash),
            b'%' => {
                let value = bytes
                    .get(at + 1..at + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .filter(|hex| hex.bytes().all(|digit| digit.is_ascii_hexdigit()))
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or(NonCanonical::MalformedEscape)?;
                if matches!(value, b'.' | b'/' | b'\\' | b'%') {
                    return Err(NonCanonical::EncodedDelimiter(char::from(value)));
                }
                decoded.push(value);
                at += 3;
                continue;
            }
            _ if !byte.is_ascii() || byte.is_ascii_control() => {
                return Err(NonCanonical::NonAscii);
            }
            _ => decoded.push(byte),
        }
        at += 1;
    }
    // Overlong encodings of `.` or `/` (`%c0%ae`) are not UTF-8: refused with the rest.
    if std::str::from_utf8(&decoded).is_err() {
        return Err(NonCanonical::NotUtf8);
    }
    let dot_segment = path.split('/').any(|segment| {
        // Some servers (Tomcat, Jetty) drop `;params` before resolving: `..;x` is `..` there.
        let name = segment.split(';').next().unwrap_or_default();
        name == "." || name == ".."
    });
    if dot_segment {
        return Err(NonCanonical::DotSegment);
    }
    Ok(())
}

/// True when canonical `path` is `prefix` or below it, segment by segment: `/range` covers
/// `/range` and `/range/x` but not `/rangeX`; `/range/` covers `/range/` and `/range/x`.
pub fn path_is_under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The URI rebuilt from its checked parts: canonical scheme and authority, the path and query
/// exactly as written (after [`check_path`]).
pub fn canonical_uri(uri: &Uri) -> Result<Uri, NonCanonical> {
    canonical_uri_and_origin(uri.clone()).map(|(uri, _)| uri)
}

/// [`canonical_uri`], also giving the checked origin, and keeping `uri` itself when it is
/// already spelled exactly as the rebuilt one would be (the usual case: a plugin's URL).
fn canonical_uri_and_origin(uri: Uri) -> Result<(Uri, Origin), NonCanonical> {
    let origin = origin_of(&uri)?;
    check_path(uri.path())?;
    if spelled_canonically(&uri, &origin) {
        return Ok((uri, origin));
    }
    let rebuilt = rebuild(&uri, &origin)?;
    Ok((rebuilt, origin))
}

/// True when [`rebuild`] would give `uri` back unchanged: lower-case scheme, the canonical
/// authority, and a path that starts with `/`.
fn spelled_canonically(uri: &Uri, origin: &Origin) -> bool {
    uri.scheme_str() == Some(origin.scheme)
        && uri
            .authority()
            .is_some_and(|given| given.as_str() == origin.authority())
        && uri
            .path_and_query()
            .is_some_and(|path| path.as_str().starts_with('/'))
}

/// The URI made of `origin` and `uri`'s path and query.
fn rebuild(uri: &Uri, origin: &Origin) -> Result<Uri, NonCanonical> {
    let path_and_query = uri.path_and_query().map_or("/", |path| path.as_str());
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_owned()
    } else {
        // Only a query (`?x`): the path is `/`.
        format!("/{path_and_query}")
    };
    Uri::builder()
        .scheme(origin.scheme)
        .authority(origin.authority())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| NonCanonical::NotAbsoluteHttp)
}

/// Headers a plugin never gets to send, by exact (lower-case) name: forwarding headers (an
/// upstream would trust them as a proxy's word), hop-by-hop headers (RFC 9110 §7.6.1), path
/// overrides some frameworks honour, and `accept-encoding` (the gateway owns content-encoding).
const DROPPED_HEADERS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "via",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "accept-encoding",
];

/// Header name prefixes a plugin never gets to send: `X-Forwarded-*`, `Proxy-*`.
const DROPPED_PREFIXES: &[&str] = &["x-forwarded-", "proxy-"];

/// Drops forwarding and hop-by-hop headers (and any header a `Connection` value names), then
/// sets `Accept-Encoding: identity`.
pub fn strip_headers(headers: &mut HeaderMap) {
    let named_by_connection: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named_by_connection {
        headers.remove(name);
    }
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            DROPPED_HEADERS.contains(&name)
                || DROPPED_PREFIXES
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
        })
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
}

/// Canonicalises a request: refuses a non-canonical URL, rebuilds the URI from its checked
/// parts, cleans the headers. Also gives the checked origin, for matching the allowlist
/// without checking the URL again.
pub fn canonicalize(request: Request<Bytes>) -> Result<(Request<Bytes>, Origin), NonCanonical> {
    let (mut parts, body) = request.into_parts();
    let (uri, origin) = canonical_uri_and_origin(parts.uri)?;
    parts.uri = uri;
    strip_headers(&mut parts.headers);
    Ok((Request::from_parts(parts, body), origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Result<Origin, NonCanonical> {
        origin_of(&text.parse::<Uri>().expect("test URIs parse"))
    }

    #[test]
    fn userinfo_is_refused() {
        assert_eq!(
            origin("http://admin:pw@allowed.example/x"),
            Err(NonCanonical::Userinfo)
        );
        assert_eq!(
            origin("http://admin@allowed.example/x"),
            Err(NonCanonical::Userinfo)
        );
        assert_eq!(
            origin("http://@allowed.example/x"),
            Err(NonCanonical::Userinfo)
        );
    }

    #[test]
    fn odd_ipv4_notations_are_refused() {
        for host in [
            "0x7f.1",
            "0x7f.0.0.1",
            "0X7F.0.0.1",
            "2130706433",
            "0177.0.0.1",
            "127.1",
            "127.0.1",
            "127.000.0.1",
            "127.0.0.1.",
            "1.2.3.4.5",
            "256.0.0.1",
            "example.123",
            "a.0x10",
            "0x",
        ] {
            let uri = format!("http://{host}/x");
            assert!(
                matches!(origin(&uri), Err(NonCanonical::Host(_))),
                "{host} must be refused"
            );
        }
        assert_eq!(origin("http://127.0.0.1:8080/").unwrap().host, "127.0.0.1");
        assert_eq!(
            origin("http://169.254.169.254/").unwrap().host,
            "169.254.169.254"
        );
    }

    #[test]
    fn hosts_must_be_ldh_labels() {
        for host in [
            "allowed.example.",
            "allowed..example",
            ".allowed.example",
            "-allowed.example",
            "allowed-.example",
            "allowed_host.example",
            "allowed%2eexample",
            "allowed%2Eexample",
        ] {
            assert!(canonical_host(host).is_err(), "{host} must be refused");
        }
        assert!(matches!(
            origin("http://allowed.example./x"),
            Err(NonCanonical::Host(HostProblem::EmptyLabel))
        ));
        // Non-ASCII hosts do not even parse as an `http::Uri`; refused either way.
        assert!("http://ex\u{e4}mple.org/".parse::<Uri>().is_err());
        assert!(canonical_host("ex\u{e4}mple.org").is_err());
        assert!(canonical_host("xn--exmple-cua.org").is_ok());
        assert!(canonical_host(&"a.".repeat(127)).is_err());
        assert_eq!(
            origin("https://API.PwnedPasswords.com/range/").unwrap(),
            Origin {
                scheme: "https",
                host: "api.pwnedpasswords.com".into(),
                port: 443
            }
        );
        assert_eq!(
            origin("http://1password.com/").unwrap().host,
            "1password.com"
        );
    }

    #[test]
    fn ipv6_literals_must_be_canonical() {
        assert_eq!(origin("http://[::1]:8080/").unwrap().host, "::1");
        assert_eq!(
            origin("http://[::FFFF:127.0.0.1]/").unwrap().host,
            "::ffff:127.0.0.1"
        );
        for host in [
            "[0:0:0:0:0:0:0:1]",
            "[::0001]",
            "[::ffff:7f00:1]",
            "[v1.x]",
            "[::1",
        ] {
            let uri = format!("http://{host}/x");
            if let Ok(uri) = uri.parse::<Uri>() {
                assert!(origin_of(&uri).is_err(), "{host} must be refused");
            }
        }
        assert!(canonical_host("[::ffff:7f00:1]").is_err());
        assert!(canonical_host("[fe80::1%25eth0]").is_err());
    }

    #[test]
    fn ports_are_plain_decimal() {
        assert_eq!(origin("http://example.org:8080/").unwrap().port, 8080);
        assert_eq!(origin("https://example.org/").unwrap().port, 443);
        assert_eq!(origin("http://example.org:/"), Err(NonCanonical::Port));
        assert_eq!(origin("http://example.org:080/"), Err(NonCanonical::Port));
        assert_eq!(origin("http://example.org:0/"), Err(NonCanonical::Port));
    }

    #[test]
    fn dot_segments_are_refused() {
        for path in [
            "/range/../admin",
            "/range/./x",
            "/range/..",
            "/..",
            "/.",
            "/range/..;/admin",
            "/range/.;x/admin",
        ] {
            assert_eq!(check_path(path), Err(NonCanonical::DotSegment), "{path}");
        }
        for path in ["/range/...", "/range/.hidden", "/range/a..b", "/range/x."] {
            assert_eq!(check_path(path), Ok(()), "{path} is an ordinary segment");
        }
    }

    #[test]
    fn encoded_separators_and_dots_are_refused() {
        let cases = [
            ("/range/%2e%2e/admin", '.'),
            ("/range/%2E%2E/admin", '.'),
            ("/range/.%2e/admin", '.'),
            ("/range/%2e./admin", '.'),
            ("/range/..%2fadmin", '/'),
            ("/range/..%2Fadmin", '/'),
            ("/range/..%5cadmin", '\\'),
            ("/range/..%5Cadmin", '\\'),
            ("/range/%252e%252e/admin", '%'),
        ];
        for (path, delimiter) in cases {
            assert_eq!(
                check_path(path),
                Err(NonCanonical::EncodedDelimiter(delimiter)),
                "{path}"
            );
        }
        assert_eq!(
            check_path("/range\\..\\admin"),
            Err(NonCanonical::Backslash)
        );
        assert_eq!(check_path("/range/%zz"), Err(NonCanonical::MalformedEscape));
        assert_eq!(check_path("/range/%2"), Err(NonCanonical::MalformedEscape));
        assert_eq!(check_path("/range/%c0%ae"), Err(NonCanonical::NotUtf8));
        assert_eq!(check_path("/range/\u{e4}"), Err(NonCanonical::NonAscii));
        assert_eq!(check_path("range"), Err(NonCanonical::RelativePath));
        assert_eq!(check_path("/range/%41BCDE"), Ok(()));
        assert_eq!(check_path("/range/caf%C3%A9"), Ok(()));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(path_is_under("/range", "/range"));
        assert!(path_is_under("/range/ABCDE", "/range"));
        assert!(!path_is_under("/rangeX", "/range"));
        assert!(!path_is_under("/range%41", "/range"));
        assert!(path_is_under("/range/ABCDE", "/range/"));
        assert!(path_is_under("/range/", "/range/"));
        assert!(!path_is_under("/range", "/range/"));
        assert!(path_is_under("/anything", "/"));
    }

    #[test]
    fn canonical_uris_drop_default_ports_and_keep_the_query() {
        let uri: Uri = "HTTPS://API.example.org:443/range/ABCDE?mode=padded"
            .parse()
            .unwrap();
        assert_eq!(
            canonical_uri(&uri).unwrap().to_string(),
            "https://api.example.org/range/ABCDE?mode=padded"
        );
        let uri: Uri = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            canonical_uri(&uri).unwrap().to_string(),
            "http://127.0.0.1:8080/"
        );
        let uri: Uri = "http://[::1]:80/x".parse().unwrap();
        assert_eq!(canonical_uri(&uri).unwrap().to_string(), "http://[::1]/x");
        let uri: Uri = "http://admin:pw@127.0.0.1:8080/x".parse().unwrap();
        assert_eq!(canonical_uri(&uri), Err(NonCanonical::Userinfo));
    }

    #[test]
    fn forwarding_and_hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("forwarded", "for=10.0.0.1;host=admin.internal"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-host", "admin.internal"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "10.0.0.1"),
            ("via", "1.1 internal-proxy"),
            ("connection", "close, x-hop, X-Other"),
            ("x-hop", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept-encoding", "gzip, br"),
            ("x-original-url", "/admin"),
            ("authorization", "Bearer kept"),
            ("x-request-id", "kept"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_headers(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept-encoding", "authorization", "x-request-id"]);
        assert_eq!(headers[ACCEPT_ENCODING], "identity");
    }

    #[test]
    fn every_request_asks_for_identity_encoding() {
        let mut headers = HeaderMap::new();
        strip_headers(&mut headers);
        assert_eq!(headers[ACCEPT_ENCODING], "identity");
    }

    #[test]
    fn refusals_are_denials() {
        let request = Request::get("http://admin:pw@127.0.0.1:8080/range/x")
            .body(Bytes::new())
            .unwrap();
        let error = canonicalize(request).unwrap_err();
        assert_eq!(error, NonCanonical::Userinfo);
        assert!(!error.to_string().contains("pw"));
        let request = Request::get("http://127.0.0.1:8080/range/ABCDE?x=1")
            .header("x-forwarded-for", "10.0.0.1")
            .body(Bytes::new())
            .unwrap();
        let (admitted, origin) = canonicalize(request).unwrap();
        assert_eq!(
            admitted.uri().to_string(),
            "http://127.0.0.1:8080/range/ABCDE?x=1"
        );
        assert_eq!((origin.host.as_str(), origin.port), ("127.0.0.1", 8080));
        assert!(!admitted.headers().contains_key("x-forwarded-for"));
    }

    /// A URL kept as given (not rebuilt) is exactly the URL the rebuild would give, and every
    /// other canonical URL comes out in the rebuilt spelling.
    #[test]
    fn a_url_is_kept_only_when_it_is_already_the_rebuilt_one() {
        for text in [
            "http://127.0.0.1:8080/range/ABCDE",
            "http://127.0.0.1:8080/range/ABCDE?x=1&y",
            "https://api.pwnedpasswords.com/range/ABCDE",
            "https://api.pwnedpasswords.com:443/range/ABCDE",
            "HTTPS://API.pwnedpasswords.com/range/ABCDE",
            "http://example.org:80/",
            "http://example.org",
            "http://example.org?x=1",
            "http://[::1]:8080/x",
            "https://Example.org:8443/a/b%20c",
        ] {
            let uri: Uri = text.parse().unwrap();
            let origin = origin_of(&uri).unwrap();
            let rebuilt = rebuild(&uri, &origin).unwrap();
            let (result, _) = canonical_uri_and_origin(uri.clone()).unwrap();
            assert_eq!(result.to_string(), rebuilt.to_string(), "{text}");
            assert_eq!(result, rebuilt, "{text}");
            assert_eq!(
                result.path_and_query().map(http::uri::PathAndQuery::as_str),
                rebuilt
                    .path_and_query()
                    .map(http::uri::PathAndQuery::as_str),
                "{text}"
            );
            if spelled_canonically(&uri, &origin) {
                assert_eq!(uri.to_string(), rebuilt.to_string(), "{text}");
            }
        }
    }
}
