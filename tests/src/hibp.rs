//! A Pwned Passwords compatible range server on 127.0.0.1, with switchable faults.

use crate::upstream::{RecordedRequest, Reply, TestServer};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

/// The corpus by prefix: (suffix, count) lines.
pub fn corpus(breached: &[(&str, u64)]) -> BTreeMap<String, Vec<(String, u64)>> {
    let mut corpus: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for (password, count) in breached {
        let (prefix, suffix) = breach_check::hash::prefix_and_suffix(password);
        corpus.entry(prefix).or_default().push((suffix, *count));
    }
    corpus
}

/// How the server behaves right now.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Answers range queries normally.
    Healthy,
    /// Answers after this delay.
    Slow(Duration),
    /// Answers this status.
    Status(u16),
    /// Answers 200 with a body that is not a range.
    Garbage,
    /// A 200 with this many bytes of valid-looking lines.
    Huge(usize),
    /// Resets the connection halfway through the body.
    ResetMidBody,
}

/// The range API: serves `SUFFIX:COUNT` lines for its corpus, with `count-0` padding lines
/// when asked (`Add-Padding: true`), like the real one.
pub struct HibpServer {
    /// The listening server.
    pub server: TestServer,
    mode: Arc<Mutex<Mode>>,
}

impl HibpServer {
    /// A server whose corpus holds `breached` (password, count) pairs.
    pub async fn start(breached: &[(&str, u64)]) -> Self {
        let corpus = corpus(breached);
        let mode = Arc::new(Mutex::new(Mode::Healthy));
        let current = mode.clone();
        let server = TestServer::start(move |request| {
            respond(request, &corpus, &current.lock().unwrap().clone())
        })
        .await;
        Self { server, mode }
    }

    /// Switches behaviour.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn respond(
    request: &RecordedRequest,
    corpus: &BTreeMap<String, Vec<(String, u64)>>,
    mode: &Mode,
) -> Reply {
    match mode {
        Mode::Healthy => range_reply(request, corpus),
        Mode::Slow(delay) => Reply::After(*delay, Box::new(range_reply(request, corpus))),
        Mode::Status(status) => Reply::status(*status),
        Mode::Garbage => Reply::ok("<html><body>Service temporarily unavailable</body></html>"),
        Mode::Huge(bytes) => {
            Reply::ok("0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n".repeat(bytes / 40 + 1))
        }
        Mode::ResetMidBody => Reply::ResetMidBody {
            declared: 20_000,
            sent: 1_000,
        },
    }
}

fn range_reply(request: &RecordedRequest, corpus: &BTreeMap<String, Vec<(String, u64)>>) -> Reply {
    let Some(prefix) = request.path.strip_prefix("/range/") else {
        return Reply::status(404);
    };
    if prefix.len() != 5 || !prefix.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Reply::Respond {
            status: 400,
            headers: Vec::new(),
            body: b"The hash prefix was not in a valid format".to_vec(),
        };
    }
    Reply::Respond {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("cache-control".into(), "public, max-age=2678400".into()),
        ],
        body: range_body(
            corpus,
            prefix,
            request.header("add-padding") == Some("true"),
        )
        .into_bytes(),
    }
}

/// Lines in a padded range answer: real ones have 800–1,000 (about 30–36 KB).
pub const PADDED_RANGE_LINES: usize = 900;

/// The body the server sends for `prefix`, shaped like the real one: the corpus's lines among
/// hundreds of unrelated real-looking ones (35 hex characters, `:`, a count), sorted, CRLF;
/// when asked (`Add-Padding: true`), count-0 padding lines up to [`PADDED_RANGE_LINES`].
/// The filler is the same for the same prefix on every run.
pub fn range_body(
    corpus: &BTreeMap<String, Vec<(String, u64)>>,
    prefix: &str,
    padding: bool,
) -> String {
    let prefix = prefix.to_ascii_uppercase();
    let mut entries: Vec<(String, u64)> = corpus.get(&prefix).cloned().unwrap_or_default();
    // SplitMix64 seeded by the prefix: a fixed body per prefix, without a dependency.
    let mut state = u64::from_str_radix(&prefix, 16).unwrap_or(0) ^ 0x5EED_0018;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut random_suffix = || format!("{:016X}{:016X}{:03X}", next(), next(), next() & 0xFFF);
    let real_lines = PADDED_RANGE_LINES * 2 / 3;
    while entries.len() < real_lines {
        let suffix = random_suffix();
        let count = 1 + u64::from_str_radix(&suffix[..4], 16).unwrap_or(0) % 5_000;
        entries.push((suffix, count));
    }
    if padding {
        while entries.len() < PADDED_RANGE_LINES {
            entries.push((random_suffix(), 0));
        }
    }
    entries.sort();
    entries
        .iter()
        .map(|(suffix, count)| format!("{suffix}:{count}"))
        .collect::<Vec<_>>()
        .join("\r\n")
}
