//! Why the gateway did not return a response: typed, so callers (the `wasi:http` bridge, the
//! service's outbound clients) match on variants, never on text.

use crate::{
    address_guard::AddressError, allowlist::DestinationError, canonical::NonCanonical,
    client::AttemptError, secrets::SecretError, secrets::SubstitutionError,
};
use std::time::Duration;

/// Why the gateway did not return a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The gateway refused the request before anything left (the guest sees
    /// `HttpRequestDenied`).
    #[error("request denied: {0}")]
    Denied(#[from] Denial),
    /// The destination resolved only to addresses it may not reach (SSRF guard).
    #[error("{0}")]
    AddressRefused(AddressError),
    /// The destination's name did not resolve, or not in time.
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    /// The destination's circuit breaker is open: failing fast.
    #[error("circuit breaker open for {origin}")]
    BreakerOpen {
        /// `scheme://host:port` of the destination.
        origin: String,
    },
    /// The request body is larger than `max-request-bytes`.
    #[error("request body larger than {limit} bytes")]
    RequestTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The caller's deadline left no time for (another) attempt.
    #[error("the decision's deadline leaves no time for this request")]
    DeadlineExceeded,
    /// The upstream compressed its answer although the gateway asked for `identity`: the
    /// response could not be checked for secrets, so it is not handed over.
    #[error("the response is content-encoded ({encoding}); only identity is accepted")]
    ContentEncoded {
        /// The `Content-Encoding` the upstream sent.
        encoding: String,
    },
    /// The last attempt failed on the wire.
    #[error("{0}")]
    Attempt(#[from] AttemptError),
}

/// Why the gateway refused a request itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The URL is not in canonical form (see [`crate::canonical`]).
    #[error("non-canonical request: {0}")]
    NonCanonical(#[from] NonCanonical),
    /// No destination of the caller's policy matches. `target` is method and URL without its
    /// query (queries can carry tokens).
    #[error("{target} is not on the allowlist of {caller}")]
    NotAllowed {
        /// `METHOD scheme://authority/path`.
        target: String,
        /// Who asked, as in [`crate::Caller`]'s `Display`.
        caller: String,
    },
    /// A secret placeholder could not be substituted.
    #[error("{0}")]
    Secret(#[from] SubstitutionError),
    /// A substituted secret is not a valid header value.
    #[error("secret is not a valid header value")]
    SecretNotAHeaderValue,
    /// The destination's authority cannot be a `Host` header.
    #[error("destination is not a valid Host")]
    InvalidHost,
}

/// Why a destination's name gave no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The resolver answered with an error or no address.
    #[error("cannot resolve: {0}")]
    Failed(AddressError),
    /// The resolver did not answer within the lookup's budget (the connect timeout).
    #[error("cannot resolve: cannot resolve {host}: no answer within {budget:?}")]
    Timeout {
        /// The name looked up.
        host: String,
        /// How long the lookup was given.
        budget: Duration,
    },
}

/// Why a gateway (or a caller's policy) could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A configured secret cannot be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The TLS client configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A `tls-roots` file cannot be read or holds no usable certificate.
    #[error("TLS root certificates in {path}: {reason}")]
    TlsRoots {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A destination URL is refused.
    #[error(transparent)]
    Destination(#[from] DestinationError),
}
