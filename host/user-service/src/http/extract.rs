//! Extractors: what a handler takes from a request. JSON bodies whose rejections are problem
//! documents, the client's address, the request's metadata for events, the session of a
//! bearer token, and the admin token.

use crate::{
    domain::{
        Caller, RequestMetadata,
        sessions::{self, Authenticated},
    },
    problem::Problem,
    state::AppState,
    trace_context::TraceContext,
};
use axum::{
    Json,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};

/// `Json<T>` whose rejections are problem documents (malformed JSON, wrong content type,
/// oversized body), never axum's plain-text defaults.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(match &rejection {
                JsonRejection::MissingJsonContentType(_) => Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "Send JSON",
                )
                .detail("Use `Content-Type: application/json`."),
                JsonRejection::BytesRejection(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body-too-large",
                        "The request body is too large",
                    )
                }
                JsonRejection::JsonDataError(error) => {
                    Problem::bad_request("invalid-body", error.body_text())
                }
                _ => Problem::bad_request("malformed-json", rejection.body_text()),
            }),
        }
    }
}

/// The client's address: the peer, or what trusted proxies say (see
/// [`crate::client_address`]).
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
        Ok(Self(
            state
                .config
                .http
                .trusted_proxies
                .client_address(&parts.headers, peer),
        ))
    }
}

impl FromRequestParts<AppState> for RequestMetadata {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientAddress(client)) = ClientAddress::from_request_parts(parts, state).await;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| value.chars().take(256).collect::<String>())
        };
        Ok(Self {
            client_ip: client.to_string(),
            user_agent: header("user-agent"),
            request_id: header("x-request-id"),
            traceparent: parts
                .extensions
                .get::<TraceContext>()
                .map(TraceContext::traceparent),
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientAddress(client)) = ClientAddress::from_request_parts(parts, state).await;
        let Ok(metadata) = RequestMetadata::from_request_parts(parts, state).await;
        Ok(Self { client, metadata })
    }
}

/// The bearer value of `Authorization`, if any (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        sessions::authenticate(state, bearer(&parts.headers)).await
    }
}

/// A request with the admin bearer token. Without a configured token the admin API does not
/// exist (`404`); a wrong or missing token is `401`.
pub struct Admin;

/// Checks the admin bearer token of `headers` (see [`Admin`]).
pub fn authorize_admin(state: &AppState, headers: &HeaderMap) -> Result<Admin, Problem> {
    let Some(expected) = &state.config.admin_token else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    // Compare hashes so the comparison time doesn't depend on where the strings differ.
    if given.is_some_and(|given| {
        Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
    }) {
        Ok(Admin)
    } else {
        Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid admin bearer token is required",
        ))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authorize_admin(state, &parts.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_are_parsed_strictly() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
