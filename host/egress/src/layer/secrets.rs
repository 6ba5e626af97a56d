//! Layer 3, secrets, both ways: on the way out, the body size cap, `{{secret:NAME}}`
//! placeholders substituted (only for destinations bound to `NAME`) and the `Host` header set
//! from the checked origin; on the way back (cache hits included), nothing content-encoded and
//! no configured secret, in any common encoding, in any header or the body.

use super::{Routed, Stage};
use crate::{
    EgressError,
    cache::BufferedResponse,
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
    // The common case (nothing to hide) costs one scan and no copy: this runs on every cache hit.
    let leaks = response.headers.iter().any(|(name, value)| {
        redactor.finds(name.as_str().as_bytes()) || redactor.finds(value.as_bytes())
    });
    if leaks {
        response.headers = redact_headers(std::mem::take(&mut response.headers), redactor);
    }
    if let Some(redacted) = redactor.redact_bytes(&response.body) {
        response.body = Bytes::from(redacted);
        response
            .headers
            .insert(http::header::CONTENT_LENGTH, response.body.len().into());
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
