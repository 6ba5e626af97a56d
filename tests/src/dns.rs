//! A tiny authoritative DNS server on 127.0.0.1 (UDP and TCP) for discovery tests, standing in for
//! Consul DNS or CoreDNS. It answers only from the records it was given.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// One record the server holds. Names may be given with or without the trailing dot.
#[derive(Debug, Clone)]
pub enum TestRecord {
    /// An IPv4 address record.
    A {
        /// The name.
        name: String,
        /// Its address.
        ip: Ipv4Addr,
        /// Seconds to cache it.
        ttl: u32,
    },
    /// A service record (RFC 2782).
    Srv {
        /// The service name (`_svc._tcp.domain`).
        name: String,
        /// Lower first.
        priority: u16,
        /// Share among equal priorities.
        weight: u16,
        /// The port.
        port: u16,
        /// The host name.
        target: String,
        /// Seconds to cache it.
        ttl: u32,
    },
}

impl TestRecord {
    fn name(&self) -> &str {
        match self {
            Self::A { name, .. } | Self::Srv { name, .. } => name,
        }
    }
}

/// A running server; it stops when dropped.
pub struct TestDnsServer {
    address: SocketAddr,
    queries: Arc<Mutex<Vec<(String, String)>>>,
    tasks: Vec<JoinHandle<()>>,
}

struct Zone {
    records: Vec<TestRecord>,
    queries: Arc<Mutex<Vec<(String, String)>>>,
}

impl TestDnsServer {
    /// Starts serving `records` on an ephemeral port of 127.0.0.1, UDP and TCP on the same port.
    pub async fn start(records: Vec<TestRecord>) -> Self {
        let queries = Arc::new(Mutex::new(Vec::new()));
        let zone = Arc::new(Zone {
            records,
            queries: queries.clone(),
        });
        // Retry until UDP and TCP get the same free port (the TCP one may be taken).
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind test DNS UDP socket");
            let addr = udp.local_addr().expect("UDP local address");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        let address = udp.local_addr().expect("UDP local address");
        let tasks = vec![
            tokio::spawn(serve_udp(udp, zone.clone())),
            tokio::spawn(serve_tcp(tcp, zone)),
        ];
        Self {
            address,
            queries,
            tasks,
        }
    }

    /// Where to send queries (use as a `dns-servers` entry).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The questions received so far, in order, as (lower-case name without trailing dot, record
    /// type such as "SRV" or "A").
    pub fn queries(&self) -> Vec<(String, String)> {
        self.queries.lock().expect("queries lock").clone()
    }
}

impl Drop for TestDnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Zone>) {
    let mut buf = vec![0; 4096];
    while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
        if let Some(reply) = zone.answer(&buf[..len]) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>) {
    // Connection tasks live in the set, so aborting this task drops (aborts) them too.
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        connections.spawn(serve_tcp_connection(stream, zone.clone()));
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, zone: Arc<Zone>) {
    // DNS over TCP: each message is prefixed with its length as a big-endian u16.
    while let Ok(len) = stream.read_u16().await {
        let mut buf = vec![0; usize::from(len)];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Some(reply) = zone.answer(&buf) else {
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_u16(reply_len).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Name {
    let name = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&name).unwrap_or_else(|e| panic!("test DNS record name {name:?}: {e}"))
}

impl Zone {
    /// Builds the wire reply to one wire query; `None` if it does not parse.
    fn answer(&self, request: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(request).ok()?;
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_authoritative(true)
            .set_recursion_desired(request.recursion_desired())
            .add_queries(request.queries().to_vec());
        let mut code = ResponseCode::NoError;
        for query in request.queries() {
            let asked = normalize(&query.name().to_ascii());
            let kind = query.query_type();
            self.queries
                .lock()
                .ok()?
                .push((asked.clone(), kind.to_string()));
            let owned: Vec<&TestRecord> = self
                .records
                .iter()
                .filter(|r| normalize(r.name()) == asked)
                .collect();
            if owned.is_empty() {
                code = ResponseCode::NXDomain;
                continue;
            }
            // A name that exists but lacks the type gets an empty NOERROR answer (NODATA), as real servers do.
            for record in owned {
                match (record, kind) {
                    (TestRecord::A { ip, ttl, .. }, RecordType::A) => {
                        response.add_answer(Record::from_rdata(
                            query.name().clone(),
                            *ttl,
                            RData::A(A(*ip)),
                        ));
                    }
                    (
                        TestRecord::Srv {
                            priority,
                            weight,
                            port,
                            target,
                            ttl,
                            ..
                        },
                        RecordType::SRV,
                    ) => {
                        let srv = SRV::new(*priority, *weight, *port, fqdn(target));
                        response.add_answer(Record::from_rdata(
                            query.name().clone(),
                            *ttl,
                            RData::SRV(srv),
                        ));
                        // Like Consul and CoreDNS, include the target's addresses as additional records.
                        for glue in &self.records {
                            if let TestRecord::A { name, ip, ttl } = glue
                                && normalize(name) == normalize(target)
                            {
                                response.add_additional(Record::from_rdata(
                                    fqdn(name),
                                    *ttl,
                                    RData::A(A(*ip)),
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        response.set_response_code(code);
        response.to_vec().ok()
    }
}
