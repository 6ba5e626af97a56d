//! Fault upstreams for breaker drills: one listener on 127.0.0.1 whose behaviour is an atomic
//! mode, switched at run time between healthy and each way a real upstream fails, so "the fault
//! clears" is just [`FaultServer::set_mode`] with [`Mode::Healthy`].
//!
//! Healthy, it answers like the harness's simulators: a Pwned Passwords range
//! ([`crate::hibp::range_body`]) or a Turnstile `siteverify` success (the format of
//! [`crate::captcha_vendors`], for its always-pass test secret). The faults ([`Fault`]):
//!
//! | fault | what the gateway meets |
//! |---|---|
//! | `refused` | the listener is closed: connection refused (it is bound again on the same port when the mode changes) |
//! | `hang` | the connection is accepted and the request read, and nothing is ever sent |
//! | `slow` | the right answer, after [`SLOW_ANSWER`] (900 ms) |
//! | `status-5xx` | `503` with an empty body |
//! | `reset` | headers announcing 20,000 bytes, 1,000 of them, then a reset (`SO_LINGER` 0) |
//! | `tls-failure` | the destination is `https://`, and the server answers the TLS hello with a plain-HTTP `400` |
//! | `nxdomain` | the destination's host is [`UNRESOLVABLE_HOST`], which the drill's own DNS server ([`crate::dns::TestDnsServer`], the gateway's `dns-servers`) answers NXDOMAIN |
//! | `dns-hang` | the destination's host is asked of a DNS server on 127.0.0.1 that never answers (UDP or TCP) |
//!
//! Three faults belong to the destination rather than the server, so they cannot be cleared at
//! the same destination ([`Fault::clears`]): no TLS certificate on 127.0.0.1 is trusted by the
//! gateway (webpki's Mozilla roots only), and the drill's name servers never learn the name.
//! Every lookup goes to a server the drill started on 127.0.0.1, never to the machine's
//! resolver.
//!
//! Also here: the drills' call policy and breaker ([`drill_policy`]) and hosts with a
//! breach-check or captcha slot built on it.

use crate::{
    PluginDir, breach_check_component, captcha_vendors as vendors, hibp, slot,
    upstream::{RecordedRequest, read_request},
};
use policy_host::{
    CaptchaInput, HostConfig, PluginConfig, PluginKind, PolicyHost,
    egress::{
        breaker::BreakerState,
        config::{BreakerConfig, CallPolicy, DestinationConfig, SecretSource},
    },
};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
    task::{JoinHandle, JoinSet},
};

/// How long the `slow` fault takes to answer.
pub const SLOW_ANSWER: Duration = Duration::from_millis(900);
/// The host name of the `nxdomain` fault: `.invalid` never resolves (RFC 6761 §6.4).
pub const UNRESOLVABLE_HOST: &str = "fault-upstream.invalid";
/// The drills' decision deadline: room for a 900 ms answer inside every timeout below it.
pub const DEADLINE: Duration = Duration::from_millis(1500);
/// First-byte timeout of the drills' destinations (and the plugins' own `timeout-ms`): above
/// [`SLOW_ANSWER`], so a slow answer arrives, and below [`DEADLINE`], as the host requires.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_millis(1200);
/// A call slower than this counts as a failure for the breaker (`slow-call-ms`).
pub const SLOW_CALL: Duration = Duration::from_millis(500);
/// The breaker's window and the fewest calls before it may open (`minimum-calls`).
pub const MINIMUM_CALLS: u32 = 10;
/// Probes let through while half-open; all must succeed to close (`half-open-probes`).
pub const HALF_OPEN_PROBES: u32 = 2;
/// The slot name of the breach check in drill hosts.
pub const BREACH_SLOT: &str = "breach-check";
/// The slot name of the captcha in drill hosts.
pub const CAPTCHA_SLOT: &str = "captcha";

/// One way an upstream fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection is refused.
    Refused,
    /// Accepts and never answers.
    Hang,
    /// Answers, slowly.
    Slow,
    /// Answers 503.
    Status5xx,
    /// Resets the connection.
    Reset,
    /// Fails the TLS handshake.
    TlsFailure,
    /// The name does not resolve.
    Nxdomain,
    /// The DNS server never answers.
    DnsHang,
}

impl Fault {
    /// Every fault a drill can stage.
    pub const ALL: [Fault; 8] = [
        Fault::Refused,
        Fault::Hang,
        Fault::Slow,
        Fault::Status5xx,
        Fault::Reset,
        Fault::TlsFailure,
        Fault::Nxdomain,
        Fault::DnsHang,
    ];

    /// Its name in test and bench output: `refused`, `hang`, `slow`, `status-5xx`, `reset`,
    /// `tls-failure`, `nxdomain`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Refused => "refused",
            Fault::Hang => "hang",
            Fault::Slow => "slow",
            Fault::Status5xx => "status-5xx",
            Fault::Reset => "reset",
            Fault::TlsFailure => "tls-failure",
            Fault::Nxdomain => "nxdomain",
            Fault::DnsHang => "dns-hang",
        }
    }

    /// True when switching the server to healthy ends the fault at the same destination; false
    /// for faults of the destination itself (`tls-failure`, `nxdomain`: see the module docs).
    pub fn clears(self) -> bool {
        !matches!(self, Fault::TlsFailure | Fault::Nxdomain | Fault::DnsHang)
    }
}

/// How a [`FaultServer`] behaves right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers normally.
    Healthy,
    /// Fails this way.
    Faulty(Fault),
}

impl Mode {
    fn encode(self) -> u8 {
        match self {
            Mode::Healthy => 0,
            Mode::Faulty(fault) => {
                1 + Fault::ALL
                    .iter()
                    .position(|each| *each == fault)
                    .expect("every fault is in ALL") as u8
            }
        }
    }

    fn decode(code: u8) -> Self {
        match code {
            0 => Mode::Healthy,
            code => Mode::Faulty(Fault::ALL[usize::from(code) - 1]),
        }
    }
}

/// What a healthy server answers.
enum Service {
    /// `GET /range/{prefix}` of the Pwned Passwords range API, for this corpus.
    RangeApi(BTreeMap<String, Vec<(String, u64)>>),
    /// Turnstile's `siteverify`, accepting [`vendors::TURNSTILE_PASS_SECRET`].
    Turnstile,
}

/// What the accept loop and the connections share.
struct Shared {
    service: Service,
    mode: AtomicU8,
    requests: AtomicUsize,
}

impl Shared {
    fn mode(&self) -> Mode {
        Mode::decode(self.mode.load(Ordering::SeqCst))
    }
}

/// A switchable upstream on 127.0.0.1; stops (and drops every connection) when dropped.
pub struct FaultServer {
    port: u16,
    shared: Arc<Shared>,
    /// Whether the listener should be open (every mode but `refused`).
    listening: watch::Sender<bool>,
    /// Whether it is: set by the accept loop once it has closed or bound it.
    bound: watch::Receiver<bool>,
    task: JoinHandle<()>,
    /// Answers NXDOMAIN for every name: the gateway's name server in every drill.
    dns: crate::dns::TestDnsServer,
    /// Never answers: the gateway's name server in the `dns-hang` drill.
    silent_dns: SilentDns,
}

/// A DNS server on 127.0.0.1 (UDP and TCP, one port) that reads queries and never answers.
struct SilentDns {
    address: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl SilentDns {
    async fn start() -> Self {
        loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind a UDP socket on 127.0.0.1");
            let address = udp.local_addr().expect("local address");
            let Ok(tcp) = TcpListener::bind(address).await else {
                continue;
            };
            let tasks = vec![
                tokio::spawn(async move {
                    let mut buffer = [0u8; 512];
                    while udp.recv_from(&mut buffer).await.is_ok() {}
                }),
                tokio::spawn(async move {
                    let mut held = Vec::new();
                    while let Ok((stream, _)) = tcp.accept().await {
                        held.push(stream);
                    }
                }),
            ];
            return Self { address, tasks };
        }
    }
}

impl Drop for SilentDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultServer {
    /// A healthy Pwned Passwords range API whose corpus holds `breached` (password, count).
    pub async fn range_api(breached: &[(&str, u64)]) -> Self {
        Self::start(Service::RangeApi(hibp::corpus(breached))).await
    }

    /// A healthy Turnstile `siteverify`.
    pub async fn turnstile() -> Self {
        Self::start(Service::Turnstile).await
    }

    async fn start(service: Service) -> Self {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            service,
            mode: AtomicU8::new(Mode::Healthy.encode()),
            requests: AtomicUsize::new(0),
        });
        let (listening, wanted) = watch::channel(true);
        let (bound_tx, bound) = watch::channel(true);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), wanted, bound_tx));
        Self {
            port,
            shared,
            listening,
            bound,
            task,
            dns: crate::dns::TestDnsServer::start(Vec::new()).await,
            silent_dns: SilentDns::start().await,
        }
    }

    /// Switches behaviour; returns once the listener is closed (`refused`) or open again.
    pub async fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode.encode(), Ordering::SeqCst);
        let open = mode != Mode::Faulty(Fault::Refused);
        self.listening.send_replace(open);
        let mut bound = self.bound.clone();
        bound
            .wait_for(|bound| *bound == open)
            .await
            .expect("the accept loop is running");
    }

    /// The current behaviour.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// `http://127.0.0.1:<port>`: the server as a healthy destination.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The base URL a slot uses to meet `fault`: the server's, or `https://` for
    /// `tls-failure`, or [`UNRESOLVABLE_HOST`] for `nxdomain`. It is also the destination's
    /// origin, as [`policy_host::egress::EgressGateway::breaker_state`] wants it.
    pub fn base_url(&self, fault: Fault) -> String {
        match fault {
            Fault::TlsFailure => format!("https://127.0.0.1:{}", self.port),
            Fault::Nxdomain | Fault::DnsHang => {
                format!("http://{UNRESOLVABLE_HOST}:{}", self.port)
            }
            _ => self.url(),
        }
    }

    /// The name servers the gateway asks in the drill of `fault`: ones on 127.0.0.1 that this
    /// server started, never the machine's resolver.
    pub fn dns_servers(&self, fault: Fault) -> Vec<SocketAddr> {
        match fault {
            Fault::DnsHang => vec![self.silent_dns.address],
            _ => vec![self.dns.address()],
        }
    }

    /// Requests received so far (a TLS hello met by `tls-failure` counts as one).
    pub fn request_count(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

/// A listener on `address` with `SO_REUSEADDR`, so a closed port can be bound again at once.
async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Binds `port` again after `refused`, retrying briefly in case something holds it.
async fn rebind(port: u16) -> TcpListener {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut last_error = None;
    for _ in 0..200 {
        match bind(address).await {
            Ok(listener) => return listener,
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cannot bind 127.0.0.1:{port} again: {last_error:?}")
}

/// Accepts connections while the listener should be open; closes and re-binds it as told.
/// Connections live in a set, so aborting this task drops them all.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut wanted: watch::Receiver<bool>,
    bound: watch::Sender<bool>,
) {
    let port = listener.local_addr().expect("local address").port();
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        let open = *wanted.borrow_and_update();
        if open && listener.is_none() {
            listener = Some(rebind(port).await);
        } else if !open {
            listener = None;
        }
        bound.send_replace(listener.is_some());
        while connections.try_join_next().is_some() {}
        match &listener {
            Some(open_listener) => tokio::select! {
                accepted = open_listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(serve(stream, shared.clone()));
                    }
                }
                changed = wanted.changed() => if changed.is_err() { return },
            },
            None => {
                if wanted.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One connection: requests answered as the mode says when each arrives.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    if shared.mode() == Mode::Faulty(Fault::TlsFailure) {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        answer_tls_hello_with_plain_http(&mut stream).await;
        return;
    }
    while let Ok(Some(request)) = read_request(&mut stream).await {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let answered = match shared.mode() {
            Mode::Healthy | Mode::Faulty(Fault::TlsFailure | Fault::Nxdomain | Fault::DnsHang) => {
                write_healthy(&mut stream, &shared.service, &request).await
            }
            Mode::Faulty(Fault::Slow) => {
                tokio::time::sleep(SLOW_ANSWER).await;
                write_healthy(&mut stream, &shared.service, &request).await
            }
            Mode::Faulty(Fault::Hang) => std::future::pending().await,
            Mode::Faulty(Fault::Status5xx) => write_response(&mut stream, 503, &[], b"").await,
            Mode::Faulty(Fault::Reset) => {
                reset_mid_body(stream).await;
                return;
            }
            // Accepted just before the listener closed: close without an answer.
            Mode::Faulty(Fault::Refused) => return,
        };
        if answered.is_err() {
            return;
        }
    }
}

/// What a plain HTTP server does with a TLS client hello: reads it, answers `400`, closes.
async fn answer_tls_hello_with_plain_http(stream: &mut TcpStream) {
    let mut hello = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut hello)).await;
    let _ = stream
        .write_all(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 42\r\n\
              connection: close\r\n\r\nThis is a plain HTTP server, not HTTPS.\r\n\r\n",
        )
        .await;
    let _ = stream.shutdown().await;
}

/// Announces 20,000 bytes, sends 1,000, then resets the connection.
async fn reset_mid_body(mut stream: TcpStream) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 20000\r\n\r\n";
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&[b'A'; 1_000]).await;
    let _ = stream.flush().await;
    // SO_LINGER 0 turns the close into a reset. (Deprecated because a non-zero linger blocks on
    // drop; zero never does.)
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// The healthy answer of `service` to `request`.
async fn write_healthy(
    stream: &mut TcpStream,
    service: &Service,
    request: &RecordedRequest,
) -> std::io::Result<()> {
    match service {
        Service::RangeApi(corpus) => {
            let prefix = request.path.strip_prefix("/range/").unwrap_or_default();
            if prefix.len() != 5 || !prefix.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return write_response(stream, 404, &[], b"").await;
            }
            let padding = request.header("add-padding") == Some("true");
            let body = hibp::range_body(corpus, prefix, padding);
            let headers = [
                ("content-type", "text/plain"),
                ("cache-control", "public, max-age=2678400"),
            ];
            write_response(stream, 200, &headers, body.as_bytes()).await
        }
        Service::Turnstile => {
            let body = turnstile_verdict(request).to_string();
            let headers = [("content-type", "application/json")];
            write_response(stream, 200, &headers, body.as_bytes()).await
        }
    }
}

/// Turnstile's answer for its always-pass test secret, or `invalid-input-secret`.
fn turnstile_verdict(request: &RecordedRequest) -> serde_json::Value {
    let form = vendors::decode_form(&request.body);
    let secret = form
        .iter()
        .find(|(name, _)| name == "secret")
        .map(|(_, value)| value.as_str());
    if secret != Some(vendors::TURNSTILE_PASS_SECRET) {
        return serde_json::json!({ "success": false, "error-codes": ["invalid-input-secret"] });
    }
    serde_json::json!({
        "success": true,
        "error-codes": [],
        "challenge_ts": vendors::rfc3339_now(),
        "hostname": vendors::TURNSTILE_TEST_HOSTNAME,
        "action": "",
        "cdata": "",
    })
}

/// Writes a complete HTTP/1.1 response.
async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} Drill\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a head and a body written apart on a kept-alive connection meet Nagle's
    // algorithm and the client's delayed ACK, 40 ms a response.
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    stream.write_all(&response).await?;
    stream.flush().await
}

/// The drills' breaker: opens at a failure rate of 0.5 over [`MINIMUM_CALLS`] calls, stays open
/// for `open_for`, closes after [`HALF_OPEN_PROBES`] good probes, and counts calls slower than
/// [`SLOW_CALL`] as failures where the gateway knows `slow-call-ms` (see
/// [`slow_calls_configurable`]).
pub fn drill_breaker(open_for: Duration) -> BreakerConfig {
    let base = format!(
        "failure-rate = 0.5\nminimum-calls = {MINIMUM_CALLS}\nopen-ms = {}\nhalf-open-probes = {HALF_OPEN_PROBES}\n",
        open_for.as_millis()
    );
    let with_slow_calls = format!("{base}slow-call-ms = {}\n", SLOW_CALL.as_millis());
    toml::from_str(&with_slow_calls)
        .or_else(|_| toml::from_str(&base))
        .expect("the drill's breaker configuration parses")
}

/// True when the gateway's breaker configuration knows `slow-call-ms`.
pub fn slow_calls_configurable() -> bool {
    toml::from_str::<BreakerConfig>("slow-call-ms = 500").is_ok()
}

/// The drills' call policy: no retries (every decision is one attempt, so the breaker counts
/// decisions), a 300 ms connect timeout, [`FIRST_BYTE_TIMEOUT`], and [`drill_breaker`].
pub fn drill_policy(open_for: Duration) -> CallPolicy {
    CallPolicy {
        connect_timeout: Duration::from_millis(300),
        first_byte_timeout: FIRST_BYTE_TIMEOUT,
        between_bytes_timeout: Duration::from_millis(500),
        max_retries: 0,
        breaker: drill_breaker(open_for),
        max_concurrency: 64,
        ..CallPolicy::default()
    }
}

/// The plugins' own `timeout-ms` setting in drills: the same as the policy's first byte.
fn plugin_timeout_setting() -> String {
    FIRST_BYTE_TIMEOUT.as_millis().to_string()
}

/// A host configuration for `dir` with the drills' deadline and name servers.
fn drill_config(dir: &PluginDir, dns_servers: &[SocketAddr]) -> HostConfig {
    let mut config = dir.config();
    config.limits.deadline = DEADLINE;
    config.egress.dns_servers = dns_servers.to_vec();
    config
}

/// A host whose `breach-check` slot calls `base_url` (a local server: `allow-private`) with
/// [`drill_policy`]`(open_for)`; default fail policy (open).
pub async fn breach_host(
    base_url: &str,
    dns_servers: &[SocketAddr],
    open_for: Duration,
) -> anyhow::Result<(PluginDir, PolicyHost)> {
    let dir = PluginDir::new()?;
    dir.publish(BREACH_SLOT, breach_check_component())?;
    let mut config = drill_config(&dir, dns_servers);
    let timeout = plugin_timeout_setting();
    config.slots.insert(
        BREACH_SLOT.to_owned(),
        crate::breach_slot(
            base_url,
            drill_policy(open_for),
            &[("timeout-ms", &timeout)],
        ),
    );
    let host = PolicyHost::start(&config).await?;
    Ok((dir, host))
}

/// A host whose `captcha` slot verifies with Turnstile at `base_url` (its always-pass test
/// secret as the host secret) with [`drill_policy`]`(open_for)`; default fail policy (closed).
pub async fn captcha_host(
    base_url: &str,
    dns_servers: &[SocketAddr],
    open_for: Duration,
) -> anyhow::Result<(PluginDir, PolicyHost)> {
    let dir = PluginDir::new()?;
    dir.publish(CAPTCHA_SLOT, Path::new(bundled_plugins::CAPTCHA.path))?;
    let mut config = drill_config(&dir, dns_servers);
    config.egress.secrets.insert(
        "captcha-secret".to_owned(),
        SecretSource::Value(vendors::TURNSTILE_PASS_SECRET.to_owned()),
    );
    let timeout = plugin_timeout_setting();
    let mut captcha: PluginConfig = slot(
        PluginKind::Captcha,
        &[
            ("provider", "turnstile"),
            ("base-url", base_url),
            ("timeout-ms", &timeout),
        ],
    );
    captcha.egress = vec![DestinationConfig {
        url: format!("{base_url}{}", vendors::Vendor::Turnstile.path()),
        allow_private: true,
        secrets: vec!["captcha-secret".to_owned()],
        cache_ttl: None,
        idempotency_header: Some("idempotency-key".to_owned()),
        policy: Some(drill_policy(open_for)),
    }];
    config.slots.insert(CAPTCHA_SLOT.to_owned(), captcha);
    let host = PolicyHost::start(&config).await?;
    Ok((dir, host))
}

/// The breaker state of `slot`'s destination at `base_url`; `None` before its first call.
pub fn breaker_state(host: &PolicyHost, slot: &str, base_url: &str) -> Option<BreakerState> {
    host.catalog()
        .engine()
        .gateway()
        .breaker_state(&policy_host::egress::Caller::plugin(slot), base_url)
}

/// A password no other drill call uses, so its range is never cached: `<label>-<n>`.
pub fn drill_password(label: &str, n: usize) -> String {
    format!("drill {label} {n}")
}

/// A captcha input for the `login` flow with a token no other drill call uses.
pub fn drill_captcha(label: &str, n: usize) -> CaptchaInput {
    CaptchaInput {
        token: format!("drill-{label}-{n}"),
        action: "login".to_owned(),
        remote_ip: None,
        idempotency_key: None,
    }
}
