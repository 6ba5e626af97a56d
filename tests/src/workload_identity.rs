//! A token endpoint that authenticates clients by JWT assertion (RFC 7523 §2.2), as an
//! identity provider does for `private_key_jwt` and for Kubernetes service-account tokens: it
//! verifies the signature with the public keys it was given, checks `aud`, `iss`/`sub` and
//! `exp`, and refuses a `private_key_jwt` whose `jti` it has seen before (replay).
//!
//! Also: fresh ES256 key pairs as PEM, and signing a service-account token with one.

use crate::upstream::{Reply, TestServer};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::{rand::SystemRandom, signature::KeyPair as _};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

/// The `client_assertion_type` of a JWT assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The subject of the service-account tokens the endpoint accepts.
pub const SERVICE_ACCOUNT: &str = "system:serviceaccount:platform:user-service";

/// An ES256 key pair.
#[derive(Clone)]
pub struct TestKey {
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub pem: String,
    /// The public key, an uncompressed P-256 point.
    pub public: Vec<u8>,
}

impl TestKey {
    /// A fresh P-256 key pair.
    pub fn generate() -> Self {
        use base64::Engine as _;
        let rng = SystemRandom::new();
        let algorithm = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 =
            ring::signature::EcdsaKeyPair::generate_pkcs8(algorithm, &rng).expect("a P-256 key");
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), &rng)
            .expect("the key parses");
        let encoded = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
            .collect();
        Self {
            pem: format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                lines.join("\n")
            ),
            public: pair.public_key().as_ref().to_vec(),
        }
    }

    /// `claims` signed with this key (ES256).
    pub fn sign(&self, claims: &Value) -> String {
        let key = EncodingKey::from_ec_pem(self.pem.as_bytes()).expect("the PEM parses");
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).expect("signing")
    }
}

/// A service-account token for [`SERVICE_ACCOUNT`] with audience `audience`, signed by the
/// "cluster" key `issuer_key`, valid for an hour.
pub fn service_account_token(issuer_key: &TestKey, audience: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    issuer_key.sign(&json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": SERVICE_ACCOUNT,
        "aud": [audience],
        "iat": now,
        "exp": now + 3600,
    }))
}

#[derive(Default)]
struct Book {
    token_url: String,
    client_id: String,
    client_keys: Vec<Vec<u8>>,
    cluster_keys: Vec<Vec<u8>>,
    seen_jti: BTreeSet<String>,
    issued: u64,
    refusals: Vec<String>,
}

/// The token endpoint (`POST /oauth/token`).
pub struct AssertionTokenEndpoint {
    /// The listening server.
    pub server: TestServer,
    book: Arc<Mutex<Book>>,
}

impl AssertionTokenEndpoint {
    /// An endpoint for `client_id` trusting no key yet.
    pub async fn start(client_id: &str) -> Self {
        let book = Arc::new(Mutex::new(Book {
            client_id: client_id.to_owned(),
            ..Book::default()
        }));
        let serving = book.clone();
        let server = TestServer::start(move |request| {
            if request.method != "POST" || request.path != "/oauth/token" {
                return Reply::status(404);
            }
            let mut book = serving.lock().unwrap();
            match book.check(&form(&request.body)) {
                Ok(()) => {
                    book.issued += 1;
                    json_reply(
                        200,
                        &json!({ "access_token": format!("jwt-granted-{}", book.issued), "token_type": "Bearer", "expires_in": 300 }),
                    )
                }
                Err(reason) => {
                    book.refusals.push(reason.clone());
                    json_reply(401, &json!({ "error": "invalid_client", "error_description": reason }))
                }
            }
        })
        .await;
        book.lock().unwrap().token_url = format!("{}/oauth/token", server.url());
        Self { server, book }
    }

    /// `http://127.0.0.1:<port>/oauth/token` (the `aud` assertions must name).
    pub fn token_url(&self) -> String {
        self.book.lock().unwrap().token_url.clone()
    }

    /// Trust only `keys` for `private_key_jwt` assertions from now on.
    pub fn trust_client_keys(&self, keys: &[&TestKey]) {
        self.book.lock().unwrap().client_keys = keys.iter().map(|key| key.public.clone()).collect();
    }

    /// Trust `key` as the cluster's service-account token issuer.
    pub fn trust_cluster_key(&self, key: &TestKey) {
        self.book.lock().unwrap().cluster_keys = vec![key.public.clone()];
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        self.book.lock().unwrap().issued
    }

    /// Why requests were refused, in order.
    pub fn refusals(&self) -> Vec<String> {
        self.book.lock().unwrap().refusals.clone()
    }
}

impl Book {
    fn check(&mut self, form: &[(String, String)]) -> Result<(), String> {
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        if field("grant_type") != Some("client_credentials") {
            return Err("unsupported grant_type".to_owned());
        }
        if field("client_assertion_type") != Some(JWT_BEARER) {
            return Err("no JWT client assertion".to_owned());
        }
        let assertion = field("client_assertion").ok_or("no client_assertion")?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[&self.token_url]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let verify = |keys: &[Vec<u8>]| {
            keys.iter().find_map(|key| {
                jsonwebtoken::decode::<Value>(
                    assertion,
                    &DecodingKey::from_ec_der(key),
                    &validation,
                )
                .ok()
                .map(|data| data.claims)
            })
        };
        if let Some(claims) = verify(&self.client_keys) {
            if claims["iss"] != self.client_id.as_str() || claims["sub"] != self.client_id.as_str()
            {
                return Err("iss and sub must be the client id".to_owned());
            }
            let jti = claims["jti"].as_str().ok_or("no jti")?;
            if !self.seen_jti.insert(jti.to_owned()) {
                return Err(format!("replayed jti {jti}"));
            }
            return Ok(());
        }
        if let Some(claims) = verify(&self.cluster_keys) {
            if claims["sub"] != SERVICE_ACCOUNT {
                return Err("not the expected service account".to_owned());
            }
            return Ok(());
        }
        Err("the assertion's signature matches no trusted key".to_owned())
    }
}

/// Parses an `application/x-www-form-urlencoded` body.
fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (decode(key), decode(value)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply::Respond {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}
