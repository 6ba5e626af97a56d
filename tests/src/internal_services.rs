//! Local stand-ins for the platform's internal services, on 127.0.0.1, behaving like the real
//! ones including their failures: an OAuth 2.0 token endpoint (client credentials), an event
//! consumer that deduplicates by event id, a Notification Service taking direct
//! `POST /notifications/email` calls, and a Configuration Service.
//!
//! The resource servers check bearer tokens against the token endpoint's live tokens, like a
//! real gateway would, so a revoked token gets a 401.

use crate::upstream::{RecordedRequest, Reply, TestServer};
use serde_json::Value;
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

/// The client credentials the token endpoint accepts.
pub const CLIENT_ID: &str = "user-service";
/// The client secret the token endpoint accepts.
pub const CLIENT_SECRET: &str = "s3cret+/=&client";

/// Issued tokens, shared with the resource servers.
#[derive(Default)]
pub struct TokenBook {
    live: BTreeSet<String>,
    issued: u64,
    lifetime_s: u64,
    issued_at: Vec<std::time::Instant>,
}

/// How a simulated resource server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Healthy.
    Up,
    /// 503 to everything.
    Down,
    /// Accepts the connection, never answers.
    Hanging,
    /// Answers every request with this status and a body that echoes it (its body and its
    /// `Authorization` header), like many validation errors do.
    Echoing(u16),
}

/// An OAuth 2.0 token endpoint (`POST /oauth/token`, HTTP Basic client authentication).
pub struct TokenEndpoint {
    /// The listening server.
    pub server: TestServer,
    /// Tokens issued and still live.
    pub book: Arc<Mutex<TokenBook>>,
}

impl TokenEndpoint {
    /// Issues tokens valid for `lifetime_s`.
    pub async fn start(lifetime_s: u64) -> Self {
        let book = Arc::new(Mutex::new(TokenBook {
            lifetime_s,
            ..TokenBook::default()
        }));
        let issuing = book.clone();
        let server = TestServer::start(move |request| {
            let expected = format!(
                "Basic {}",
                base64_encode(&format!(
                    "{}:{}",
                    form_encode(CLIENT_ID),
                    form_encode(CLIENT_SECRET)
                ))
            );
            if request.method != "POST" || request.path != "/oauth/token" {
                return Reply::status(404);
            }
            if request.header("authorization") != Some(expected.as_str()) {
                return json_reply(401, &serde_json::json!({ "error": "invalid_client" }));
            }
            if !String::from_utf8_lossy(&request.body).contains("grant_type=client_credentials") {
                return json_reply(400, &serde_json::json!({ "error": "unsupported_grant_type" }));
            }
            let mut book = issuing.lock().unwrap();
            book.issued += 1;
            book.issued_at.push(std::time::Instant::now());
            let token = format!("access-token-{}", book.issued);
            book.live.insert(token.clone());
            json_reply(
                200,
                &serde_json::json!({ "access_token": token, "token_type": "Bearer", "expires_in": book.lifetime_s }),
            )
        })
        .await;
        Self { server, book }
    }

    /// `http://127.0.0.1:<port>/oauth/token`.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.server.url())
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        self.book.lock().unwrap().issued
    }

    /// When the first token was issued.
    pub fn first_issued_at(&self) -> Option<std::time::Instant> {
        self.book.lock().unwrap().issued_at.first().copied()
    }

    /// Every token issued so far stops working (a resource server answers 401).
    pub fn revoke_all(&self) {
        self.book.lock().unwrap().live.clear();
    }

    /// Every token ever issued, for "never sent elsewhere" assertions.
    pub fn all_tokens(&self) -> Vec<String> {
        let issued = self.book.lock().unwrap().issued;
        (1..=issued).map(|n| format!("access-token-{n}")).collect()
    }
}

/// Checks a resource request's bearer token; `Some(reply)` when it is refused.
fn refuse_unauthorized(
    tokens: Option<&Arc<Mutex<TokenBook>>>,
    request: &RecordedRequest,
) -> Option<Reply> {
    let book = tokens?;
    let presented = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(token) if book.lock().unwrap().live.contains(token) => None,
        _ => Some(json_reply(
            401,
            &serde_json::json!({ "error": "invalid_token" }),
        )),
    }
}

/// A resource server with a health switch, recording what it accepted (deduplicated by
/// `Idempotency-Key`, like a consumer should).
pub struct ResourceServer {
    /// The listening server.
    pub server: TestServer,
    health: Arc<Mutex<Health>>,
    accepted: Arc<Mutex<Vec<Value>>>,
    reject_containing: Arc<Mutex<Option<String>>>,
    hang_containing: Arc<Mutex<Option<(String, std::time::Duration)>>>,
}

impl ResourceServer {
    /// Accepts JSON `POST`s to `path`; with `tokens`, only with a live bearer token.
    pub async fn start(path: &'static str, tokens: Option<Arc<Mutex<TokenBook>>>) -> Self {
        let health = Arc::new(Mutex::new(Health::Up));
        let accepted = Arc::new(Mutex::new(Vec::<Value>::new()));
        let reject_containing = Arc::new(Mutex::new(None::<String>));
        let hang_containing = Arc::new(Mutex::new(None::<(String, std::time::Duration)>));
        let (health_in, accepted_in, reject_in, hang_in) = (
            health.clone(),
            accepted.clone(),
            reject_containing.clone(),
            hang_containing.clone(),
        );
        let server = TestServer::start(move |request| {
            match *health_in.lock().unwrap() {
                Health::Echoing(status) => return echo(status, request),
                Health::Up => {}
                Health::Down => return Reply::status(503),
                Health::Hanging => {
                    return Reply::After(
                        std::time::Duration::from_hours(1),
                        Box::new(Reply::status(503)),
                    );
                }
            }
            if request.method != "POST" || request.path != path {
                return Reply::status(404);
            }
            if let Some(refused) = refuse_unauthorized(tokens.as_ref(), request) {
                return refused;
            }
            let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                return Reply::status(400);
            };
            if let Some(poison) = &*reject_in.lock().unwrap()
                && body.to_string().contains(poison.as_str())
            {
                return json_reply(
                    422,
                    &serde_json::json!({ "error": "cannot process this event" }),
                );
            }
            let Some(key) = request.header("idempotency-key") else {
                return Reply::status(400);
            };
            let body_text = body.to_string();
            let mut accepted = accepted_in.lock().unwrap();
            let seen = accepted
                .iter()
                .any(|earlier| earlier["_idempotencyKey"] == key);
            if !seen {
                let mut body = body;
                body["_idempotencyKey"] = Value::String(key.to_owned());
                accepted.push(body);
            }
            let reply = Reply::status(if seen { 200 } else { 202 });
            match &*hang_in.lock().unwrap() {
                // Taken (recorded above), answered late.
                Some((text, delay)) if body_text.contains(text.as_str()) => {
                    Reply::After(*delay, Box::new(reply))
                }
                _ => reply,
            }
        })
        .await;
        Self {
            server,
            health,
            accepted,
            reject_containing,
            hang_containing,
        }
    }

    /// Take every body containing `text` at once but answer only after `delay` (a consumer
    /// that hangs after accepting), or stop doing so.
    pub fn hang_containing(&self, hang: Option<(&str, std::time::Duration)>) {
        *self.hang_containing.lock().unwrap() = hang.map(|(text, delay)| (text.to_owned(), delay));
    }

    /// How many requests carried `Idempotency-Key: key` (deliveries of that event, duplicates
    /// included).
    pub fn requests_with_key(&self, key: &str) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|request| request.header("idempotency-key") == Some(key))
            .count()
    }

    /// Changes the health it reports.
    pub fn set_health(&self, health: Health) {
        *self.health.lock().unwrap() = health;
    }

    /// Refuse (422) every body containing `text`, or stop refusing.
    pub fn reject_containing(&self, text: Option<&str>) {
        *self.reject_containing.lock().unwrap() = text.map(str::to_owned);
    }

    /// What was accepted, once per idempotency key, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap().clone()
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// A Configuration Service serving `GET /config/user-service/security-policies`.
pub struct ConfigService {
    /// The listening server.
    pub server: TestServer,
    document: Arc<Mutex<(u16, Vec<u8>)>>,
}

impl ConfigService {
    /// Serves `document` with a 200.
    pub async fn start(document: &Value, tokens: Option<Arc<Mutex<TokenBook>>>) -> Self {
        let state = Arc::new(Mutex::new((200u16, document.to_string().into_bytes())));
        let serving = state.clone();
        let server = TestServer::start(move |request| {
            if request.method != "GET" || request.path != "/config/user-service/security-policies" {
                return Reply::status(404);
            }
            if let Some(refused) = refuse_unauthorized(tokens.as_ref(), request) {
                return refused;
            }
            let (status, body) = serving.lock().unwrap().clone();
            Reply::Respond {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            }
        })
        .await;
        Self {
            server,
            document: state,
        }
    }

    /// Serves `document` from now on.
    pub fn serve(&self, document: &Value) {
        *self.document.lock().unwrap() = (200, document.to_string().into_bytes());
    }

    /// Serves `body` (anything) with `status` from now on.
    pub fn serve_raw(&self, status: u16, body: &[u8]) {
        *self.document.lock().unwrap() = (status, body.to_vec());
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// `status` with a body quoting the request: its body and its `Authorization` header.
fn echo(status: u16, request: &RecordedRequest) -> Reply {
    json_reply(
        status,
        &serde_json::json!({
            "error": "validation failed",
            "request": String::from_utf8_lossy(&request.body),
            "authorization": request.header("authorization"),
        }),
    )
}

/// Log lines of the code running on this thread, captured while the capture lives: for "never
/// logged" assertions. Tests on a current-thread runtime (`#[tokio::test]`) see everything the
/// service and its background tasks log, and nothing of tests running on other threads.
pub struct LogCapture {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    /// Captures everything at DEBUG and above, as plain text lines.
    pub fn start() -> Self {
        use tracing_subscriber::util::SubscriberInitExt;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let guard = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with_ansi(false)
            .with_writer(move || CaptureWriter(sink.clone()))
            .finish()
            .set_default();
        Self {
            lines,
            _guard: guard,
        }
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }

    /// Captured lines containing every one of `words`.
    pub fn lines_with(&self, words: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| words.iter().all(|word| line.contains(word)))
            .map(str::to_owned)
            .collect()
    }
}

/// Appends to a [`LogCapture`]'s buffer.
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply::Respond {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1).
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (byte as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Standard base64 with padding, written out so the simulator shares no code with the client.
fn base64_encode(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(super::base64_encode(plain), encoded);
        }
    }
}
