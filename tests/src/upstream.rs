//! A tiny HTTP/1.1 server on 127.0.0.1 for the harness: it records every request and answers
//! with whatever the test's handler says, including the failures real upstreams have (slow,
//! 5xx, garbage, huge bodies, connections reset mid-body).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Everything the server saw, as one string, for "never contains X" assertions.
    pub fn everything(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(key, value)| format!("{key}: {value}"))
            .collect();
        format!(
            "{} {}\n{}\n{}",
            self.method,
            self.path,
            headers.join("\n"),
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete response.
    Respond {
        /// The status.
        status: u16,
        /// Header fields.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Wait, then do the inner reply.
    After(Duration, Box<Reply>),
    /// Wait until the test adds a permit to `release` (or `at_most` passed), then do the
    /// inner reply: a barrier the test opens once it has seen what it waits for.
    Hold {
        /// Opened by the test: one permit lets one held reply go.
        release: Arc<tokio::sync::Semaphore>,
        /// The longest the reply is held if the test never opens it.
        at_most: Duration,
        /// The reply given once released.
        then: Box<Reply>,
    },
    /// Announce `declared` bytes, send `sent` of them, then reset the connection.
    ResetMidBody {
        /// The content length announced.
        declared: usize,
        /// The bytes sent before the reset.
        sent: usize,
    },
}

impl Reply {
    /// A 200 with a text body.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::Respond {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.into(),
        }
    }

    /// An empty response with `status`.
    pub fn status(status: u16) -> Self {
        Self::Respond {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

type Handler = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

/// A running test server; stops when dropped.
pub struct TestServer {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: JoinHandle<()>,
    /// Open connections: closed with the server, as a real server's are when it stops (a
    /// client's pooled keep-alive connection must not outlive the server).
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl TestServer {
    /// Starts a server on an ephemeral 127.0.0.1 port.
    pub async fn start(
        handler: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let address = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = requests.clone();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (open, count) = (connections.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (handler, recorded) = (handler.clone(), recorded.clone());
                let connection = tokio::spawn(async move {
                    let _ = serve(stream, handler, recorded).await;
                });
                let mut open = open.lock().unwrap();
                open.retain(|handle: &tokio::task::AbortHandle| !handle.is_finished());
                open.push(connection.abort_handle());
            }
        });
        Self {
            address,
            requests,
            task,
            connections,
            accepted,
        }
    }

    /// Closes every open connection (the listener stays): what a server does to idle
    /// keep-alive connections whose timeout expired.
    pub fn close_connections(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// How many connections were accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

async fn serve(
    mut stream: TcpStream,
    handler: Handler,
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    loop {
        let Some(request) = read_request(&mut stream).await? else {
            return Ok(());
        };
        recorded.lock().unwrap().push(request.clone());
        let mut reply = handler(&request);
        let reply = loop {
            reply = match reply {
                Reply::After(delay, inner) => {
                    tokio::time::sleep(delay).await;
                    *inner
                }
                Reply::Hold {
                    release,
                    at_most,
                    then,
                } => {
                    if let Ok(Ok(permit)) = tokio::time::timeout(at_most, release.acquire()).await {
                        permit.forget();
                    }
                    *then
                }
                other => break other,
            };
        };
        match reply {
            Reply::Respond {
                status,
                headers,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {status} Test\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                // One write: on a kept-alive connection, a second small write would wait for
                // the client's delayed ACK (Nagle), 40 ms per answer.
                let mut response = head.into_bytes();
                response.extend_from_slice(&body);
                stream.write_all(&response).await?;
                stream.flush().await?;
            }
            Reply::ResetMidBody { declared, sent } => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {declared}\r\n\r\n");
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&vec![b'A'; sent]).await?;
                stream.flush().await?;
                // SO_LINGER 0 turns the close into a reset. (Deprecated because a non-zero
                // linger blocks on drop; zero never does.)
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                return Ok(());
            }
            Reply::After(..) | Reply::Hold { .. } => unreachable!("unwrapped above"),
        }
    }
}

/// Reads one request (head and `content-length` body); `None` when the peer closed first.
pub(crate) async fn read_request(
    stream: &mut TcpStream,
) -> std::io::Result<Option<RecordedRequest>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    body.truncate(length);
    Ok(Some(RecordedRequest {
        method,
        path,
        headers,
        body,
    }))
}
