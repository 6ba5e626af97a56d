//! Workload identity and rotating secrets: the client-credentials grant authenticated with
//! `private_key_jwt` and with a Kubernetes service-account token, against a token endpoint that
//! verifies signatures with the public keys and refuses a replayed `jti`; a rotated key file, a
//! rotated service-account token and a rotated CAPTCHA secret are used from the next call on.

use harness::{
    captcha_vendors::{CaptchaServer, TURNSTILE_FAIL_SECRET, TURNSTILE_PASS_SECRET, Vendor},
    hibp::HibpServer,
    service::TestService,
    workload_identity::{AssertionTokenEndpoint, TestKey, service_account_token},
};
use policy_host::egress::{
    EgressGateway,
    config::{EgressConfig, SecretSource},
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{path::Path, sync::Arc, time::Duration};
use user_service::outbound::{
    assertion::ClientAssertionConfig,
    token::{ClientCredentialsConfig, TokenSource},
};

const CLIENT_ID: &str = "user-service";

/// Replaces `path` the way a secret volume does: a new file renamed over the old one.
fn rotate(path: &Path, contents: &str) {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, contents).unwrap();
    std::fs::rename(&fresh, path).unwrap();
}

fn token_source(
    endpoint: &AssertionTokenEndpoint,
    assertion: ClientAssertionConfig,
) -> TokenSource {
    let gateway = Arc::new(EgressGateway::new(EgressConfig::default()).unwrap());
    let defaults = gateway.defaults().clone();
    TokenSource::new(
        ClientCredentialsConfig {
            token_url: endpoint.token_url(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: None,
            client_assertion: Some(assertion),
            scope: None,
            audience: None,
            refresh_before_s: 60,
            allow_private: true,
        },
        gateway,
        &defaults,
    )
    .unwrap()
}

#[tokio::test]
async fn private_key_jwt_gets_tokens_a_replay_is_refused_and_a_rotated_key_is_used_next() {
    let endpoint = AssertionTokenEndpoint::start(CLIENT_ID).await;
    let first = TestKey::generate();
    endpoint.trust_client_keys(&[&first]);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, &first.pem).unwrap();
    let source = token_source(
        &endpoint,
        ClientAssertionConfig::PrivateKeyJwt {
            key: SecretSource::File(key_file.clone()),
            algorithm: "ES256".to_owned(),
            key_id: None,
            lifetime_s: 60,
        },
    );

    let token = source
        .token()
        .await
        .expect("a token for the signed assertion");
    assert_eq!(endpoint.issued(), 1, "{:?}", endpoint.refusals());
    let request = endpoint.server.requests()[0].clone();
    assert!(
        request.header("authorization").is_none(),
        "no client secret"
    );
    let body = String::from_utf8_lossy(&request.body).into_owned();
    assert!(
        body.contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        ),
        "{body}"
    );

    // The same assertion sent again (captured on the wire) is refused: its jti was used.
    let replay = Client::new()
        .post(endpoint.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(request.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert!(
        endpoint.refusals()[0].contains("replayed jti"),
        "{:?}",
        endpoint.refusals()
    );

    // The key rotates; the identity provider now knows only the new one. The next token
    // request is signed with the new key.
    let second = TestKey::generate();
    endpoint.trust_client_keys(&[&second]);
    rotate(&key_file, &second.pem);
    source.invalidate(&token).await;
    source
        .token()
        .await
        .expect("a token signed with the rotated key");
    assert_eq!(endpoint.issued(), 2, "{:?}", endpoint.refusals());

    // A half-written key file is not used: the last key that parsed signs.
    std::fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG").unwrap();
    source.invalidate(&source.token().await.unwrap()).await;
    source.token().await.expect("the previous key still signs");
    assert_eq!(endpoint.issued(), 3, "{:?}", endpoint.refusals());
    assert_eq!(endpoint.refusals().len(), 1, "only the replay was refused");
}

#[tokio::test]
async fn a_service_account_token_gets_tokens_and_its_rotation_is_used_next() {
    let endpoint = AssertionTokenEndpoint::start(CLIENT_ID).await;
    let cluster = TestKey::generate();
    endpoint.trust_cluster_key(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        service_account_token(&cluster, &endpoint.token_url()),
    )
    .unwrap();
    let source = token_source(
        &endpoint,
        ClientAssertionConfig::ServiceAccountToken {
            path: token_file.clone(),
        },
    );
    let token = source
        .token()
        .await
        .expect("a token for the service-account token");
    assert_eq!(endpoint.issued(), 1, "{:?}", endpoint.refusals());

    // The cluster's signing key rotates and the kubelet writes a new token.
    let rotated = TestKey::generate();
    endpoint.trust_cluster_key(&rotated);
    let fresh = service_account_token(&rotated, &endpoint.token_url());
    rotate(&token_file, &fresh);
    source.invalidate(&token).await;
    source
        .token()
        .await
        .expect("a token for the rotated service-account token");
    assert_eq!(endpoint.issued(), 2, "{:?}", endpoint.refusals());
    let last = endpoint.server.requests().last().unwrap().clone();
    assert!(String::from_utf8_lossy(&last.body).contains(&fresh));
    assert!(
        source.sensitive_values().contains(&fresh),
        "scrubbed from errors"
    );
}

#[tokio::test]
async fn a_rotated_captcha_secret_is_used_from_the_next_call_on() {
    let hibp = HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("captcha-secret");
    std::fs::write(&secret_file, format!("{TURNSTILE_PASS_SECRET}\n")).unwrap();
    let service = TestService::start(&hibp.server.url(), Some(&turnstile.url()), |config| {
        config.flows.captcha_on_register = true;
        config.plugins.egress.secrets.insert(
            "captcha-secret".to_owned(),
            SecretSource::File(secret_file.clone()),
        );
        config.plugins.egress.secrets_refresh = Duration::from_millis(50);
    })
    .await
    .unwrap();
    let client = Client::new();
    let register = |n: u32| {
        let client = client.clone();
        let url = service.url("/v1/users");
        async move {
            let response = client
                .post(url)
                .json(&json!({ "email": format!("u{n}@example.org"), "password": "correct horse battery staple", "captcha_token": format!("token-{n}") }))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = register(1).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    rotate(&secret_file, TURNSTILE_FAIL_SECRET);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = register(2).await;
    assert_eq!(
        body["type"], "urn:user-service:problem:captcha-failed",
        "{status} {body}"
    );
    let secrets: Vec<String> = turnstile
        .server
        .requests()
        .iter()
        .map(|request| String::from_utf8_lossy(&request.body).into_owned())
        .collect();
    assert!(secrets[0].contains(TURNSTILE_PASS_SECRET), "{secrets:?}");
    assert!(
        secrets.last().unwrap().contains(TURNSTILE_FAIL_SECRET),
        "the rotated secret is sent: {secrets:?}"
    );
}
