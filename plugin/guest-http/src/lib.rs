//! A small blocking `wasi:http` client for plugins.
//!
//! Plugins run one call at a time in a fresh instance, so a blocking request (subscribe, block,
//! read the body to the end) is all they need. Requests go to the host's egress gateway, which
//! decides whether they may leave at all; this crate only speaks the protocol.
//!
//! The URL helpers are plain Rust and compile natively; [`send`] exists only on wasm.

/// An absolute `http(s)` URL split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` or `http`.
    pub https: bool,
    /// Host and port.
    pub authority: String,
    /// Path and query.
    pub path_with_query: String,
}

impl Target {
    /// Splits `base` (e.g. `https://api.example.org/v1/`) and appends `path` to its path.
    pub fn join(base: &str, path: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(rest) = base.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = base.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "base URL {base:?} must start with http:// or https://"
            ));
        };
        let (authority, base_path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("base URL {base:?} has no host"));
        }
        let path = format!(
            "{}/{}",
            base_path.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        Ok(Self {
            https,
            authority: authority.to_owned(),
            path_with_query: path,
        })
    }
}

/// A buffered response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The header fields, when the request asked for them ([`Request::read_headers`]).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// An outgoing request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`...
    pub method: &'a str,
    /// Where to send it.
    pub target: &'a Target,
    /// Header fields to send.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body, if any.
    pub body: Option<&'a [u8]>,
    /// Asks the host for a first-byte timeout; the host may only make it shorter.
    pub timeout_ms: Option<u64>,
    /// Bodies longer than this are an error.
    pub max_body_bytes: usize,
    /// Copies the response's header fields into [`Response::headers`]. Off unless needed:
    /// lowering each name and value is a call back into the guest, on every decision.
    pub read_headers: bool,
}

#[cfg(target_arch = "wasm32")]
mod wasi_client;

#[cfg(target_arch = "wasm32")]
pub use wasi_client::send;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths() {
        let target = Target::join("https://api.pwnedpasswords.com", "range/ABCDE").unwrap();
        assert_eq!(
            target,
            Target {
                https: true,
                authority: "api.pwnedpasswords.com".into(),
                path_with_query: "/range/ABCDE".into()
            }
        );
        let target = Target::join("http://127.0.0.1:8080/hibp/", "/range/ABCDE").unwrap();
        assert_eq!(target.authority, "127.0.0.1:8080");
        assert_eq!(target.path_with_query, "/hibp/range/ABCDE");
        assert!(Target::join("ftp://x", "y").is_err());
        assert!(Target::join("http:///x", "y").is_err());
    }
}
