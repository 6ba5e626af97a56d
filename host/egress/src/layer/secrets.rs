//! Layer 3, secrets, both ways: on the way out, the body size cap, `{{secret:NAME}}`
//! placeholders substituted (only for destinations bound to `NAME`) and the `Host` header set
//! from the checked origin; on the way back (cache hits included), nothing content-encoded and
//! no configured secret, in any common encoding, in any header or the body.

use super::{Routed, Stage};
use crate::{
    EgressError,
    cache::{BufferedResponse, ScanMemo},
    error::Denial,
    redact::{self, Redactor},
    secrets::SecretStore,
    telemetry::{self, warn_for},
};
use bytes::Bytes;
use http::{HeaderValue, Request, header::HOST};
use std::sync::Arc;

/// Substitutes secrets into requests and scrubs them from responses.
pub struct Secrets<S> {
    store: Arc<SecretStore>,
    max_request_bytes: usize,
    inner: S,
}

impl<S> Secrets<S> {
    /// Secrets from `store`; bodies over `max_request_bytes` are refused.
    pub fn new(store: Arc<SecretStore>, max_request_bytes: usize, inner: S) -> Self {
        Self {
            store,
            max_request_bytes,
            inner,
        }
    }

    /// Substitutes secret placeholders in header values and the body; refuses unbound ones.
    /// Returns whether any secret was used.
    fn inject(
        &self,
        request: Request<Bytes>,
        routed: &Routed<'_>,
    ) -> Result<(Request<Bytes>, bool), EgressError> {
        let (mut parts, body) = request.into_parts();
        if body.len() > self.max_request_bytes {
            return Err(EgressError::RequestTooLarge {
                limit: self.max_request_bytes,
            });
        }
        let mut used = Vec::new();
        let allowed = &routed.rule.config.secrets;
        for value in parts.headers.values_mut() {
            if let Some(replaced) = self
                .store
                .substitute(value.as_bytes(), allowed, &mut used)
                .map_err(Denial::Secret)?
            {
                *value = HeaderValue::from_bytes(&replaced)
                    .map_err(|_| Denial::SecretNotAHeaderValue)?;
                value.set_sensitive(true);
            }
        }
        let body = match self
            .store
            .substitute(&body, allowed, &mut used)
            .map_err(Denial::Secret)?
        {
            Some(replaced) => Bytes::from(replaced),
            None => body,
        };
        // Where a request goes is decided by its URI alone, never by a guest's Host header:
        // the Host header names the checked origin (never userinfo).
        let host = HeaderValue::try_from(routed.rule.destination.authority())
            .map_err(|_| Denial::InvalidHost)?;
        parts.headers.insert(HOST, host);
        Ok((Request::from_parts(parts, body), !used.is_empty()))
    }
}

impl<'a, S: Stage<Routed<'a>>> Stage<Routed<'a>> for Secrets<S> {
    async fn send(&self, mut routed: Routed<'a>) -> Result<BufferedResponse, EgressError> {
        let request = std::mem::take(&mut routed.request);
        let (request, carries_secrets) = self.inject(request, &routed).inspect_err(|error| {
            warn_for!(routed.caller, destination = %routed.origin(), %error, "egress denied");
            telemetry::denied(routed.caller, "secret");
        })?;
        routed.request = request;
        routed.carries_secrets = carries_secrets;
        let response = self.inner.send(routed).await?;
        sanitize(response, &self.store.redactor())
    }
}

/// What a caller may see of a response: nothing content-encoded (it would decode it past the
/// scrub), and no configured secret, in any common encoding, in any header or in the body.
fn sanitize(
    mut response: BufferedResponse,
    redactor: &Redactor,
) -> Result<BufferedResponse, EgressError> {
    if let Some(encoding) = response.headers.get(http::header::CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(EgressError::ContentEncoded {
            encoding: String::from_utf8_lossy(encoding.as_bytes()).into_owned(),
        });
    }
    // A cached response this same set of secrets already found clean is served as it is: the
    // bytes can't have changed, so neither can the answer (a rotation makes a new redactor).
    if response.scanned_clean.is_clean_for(redactor.id()) {
        return Ok(response);
    }
    // The common case (nothing to hide) costs one scan and no copy.
    let leaks = response.headers.iter().any(|(name, value)| {
        redactor.finds(name.as_str().as_bytes()) || redactor.finds(value.as_bytes())
    });
    if leaks {
        response.headers = redact_headers(std::mem::take(&mut response.headers), redactor);
    }
    match redactor.redact_bytes(&response.body) {
        Some(redacted) => {
            response.body = Bytes::from(redacted);
            response
                .headers
                .insert(http::header::CONTENT_LENGTH, response.body.len().into());
            // A new memo: this copy differs from the one it came from.
            response.scanned_clean = ScanMemo::default();
        }
        None if !leaks => response.scanned_clean.mark_clean_for(redactor.id()),
        None => response.scanned_clean = ScanMemo::default(),
    }
    Ok(response)
}

/// `headers` without any header whose name holds a secret, and with secrets in values replaced.
fn redact_headers(headers: http::HeaderMap, redactor: &Redactor) -> http::HeaderMap {
    let mut clean = http::HeaderMap::with_capacity(headers.len());
    let mut last_name = None;
    for (name, value) in headers {
        let name = name.or(last_name.clone());
        let Some(name) = name else { continue };
        last_name = Some(name.clone());
        if redactor.finds(name.as_str().as_bytes()) {
            continue;
        }
        let value = match redactor.redact_bytes(value.as_bytes()) {
            Some(redacted) => HeaderValue::from_bytes(&redacted)
                .unwrap_or_else(|_| HeaderValue::from_static(redact::REDACTED)),
            None => value,
        };
        clean.append(name, value);
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(body: &str) -> BufferedResponse {
        BufferedResponse {
            body: Bytes::from(body.to_owned()),
            ..BufferedResponse::default()
        }
    }

    #[test]
    fn a_clean_cached_response_is_scanned_once_per_set_of_secrets() {
        let entry = cached("0018A45C4D1DEF81644B54AB7F969B88D65:10\r\n");
        let before_rotation = Redactor::new(["old-secret-value"]);
        let served = sanitize(entry.clone(), &before_rotation).expect("clean");
        assert_eq!(served.body, entry.body);
        assert!(
            entry.scanned_clean.is_clean_for(before_rotation.id()),
            "the cached entry remembers the scan"
        );
        let after_rotation = Redactor::new(["0018A45C4D1DEF81644B54AB7F969B88D65"]);
        assert!(!entry.scanned_clean.is_clean_for(after_rotation.id()));
        let served = sanitize(entry.clone(), &after_rotation).expect("redacted");
        assert_eq!(
            &served.body[..],
            b"[redacted]:10\r\n",
            "a new secret is looked for"
        );
        assert!(
            !entry.scanned_clean.is_clean_for(after_rotation.id()),
            "a response that needed redaction is never marked clean"
        );
        let served = sanitize(entry, &after_rotation).expect("redacted again");
        assert_eq!(&served.body[..], b"[redacted]:10\r\n");
    }

    #[test]
    fn no_secrets_means_no_memo() {
        let entry = cached("body");
        let nothing = Redactor::none();
        sanitize(entry.clone(), &nothing).expect("clean");
        assert!(!entry.scanned_clean.is_clean_for(nothing.id()));
    }

    #[test]
    fn a_response_whose_headers_were_redacted_is_not_marked_clean() {
        let mut entry = cached("body");
        entry
            .headers
            .insert("x-echo", HeaderValue::from_static("old-secret-value"));
        let redactor = Redactor::new(["old-secret-value"]);
        let served = sanitize(entry.clone(), &redactor).expect("redacted");
        assert_eq!(served.headers["x-echo"], "[redacted]");
        assert!(!entry.scanned_clean.is_clean_for(redactor.id()));
        let served = sanitize(entry, &redactor).expect("redacted again");
        assert_eq!(served.headers["x-echo"], "[redacted]");
    }
}
