//! A real TLS upstream on 127.0.0.1 for the HTTP/2 tests: a certificate for `127.0.0.1` signed
//! by a throw-away CA (written to a PEM file the gateway is told to trust), ALPN offering
//! either `h2` only or `http/1.1` only, hyper's own server behind it, and a count of accepted
//! connections. What it answers depends on the path:
//!
//! - `/stall`: never answers;
//! - `/big`: a 2 MiB body;
//! - `/slow`: answers after 20 ms (to pile streams up);
//! - `/headers`: the request's header names and authority, one per line;
//! - anything else: `ok <HTTP version>`.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{
    convert::Infallible,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{net::TcpListener, sync::Notify};

/// Which protocol the upstream offers by ALPN.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    H2,
    Http1,
}

/// What the upstream does to a connection once it answered its first request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AfterFirst {
    /// Keeps serving.
    KeepServing,
    /// Sends GOAWAY (graceful shutdown) and closes once the request in flight is done.
    GoAway,
    /// Drops the TCP connection without a word (no GOAWAY, no close_notify).
    Drop,
}

pub struct Upstream {
    /// `https://127.0.0.1:<port>`.
    pub origin: String,
    /// The CA's certificate, for the gateway's `tls-roots`.
    pub ca: PathBuf,
    accepted: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    closed: Arc<Notify>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Waits until the upstream has closed a connection (in `AfterFirst::Drop` or `GoAway`).
    pub async fn closed_one(&self) {
        self.closed.notified().await;
    }

    pub async fn start(alpn: Alpn, after_first: AfterFirst) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "egress test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();

        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
        tls.alpn_protocols = vec![match alpn {
            Alpn::H2 => b"h2".to_vec(),
            Alpn::Http1 => b"http/1.1".to_vec(),
        }];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("https://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(Notify::new());
        let task = tokio::spawn({
            let (accepted, served, closed) = (accepted.clone(), served.clone(), closed.clone());
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, served, closed) =
                        (acceptor.clone(), served.clone(), closed.clone());
                    tokio::spawn(async move {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(TokioIo::new(stream), alpn, after_first, served).await;
                        }
                        closed.notify_one();
                    });
                }
            }
        });
        Self {
            origin,
            ca: ca_path,
            accepted,
            served,
            closed,
            _dir: dir,
            task,
        }
    }
}

async fn serve<I>(io: I, alpn: Alpn, after_first: AfterFirst, served: Arc<AtomicUsize>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let answered = Arc::new(Notify::new());
    let service = service_fn({
        let answered = answered.clone();
        move |request| {
            let (answered, served) = (answered.clone(), served.clone());
            async move {
                let response = respond(request).await;
                served.fetch_add(1, Ordering::SeqCst);
                answered.notify_one();
                response
            }
        }
    });
    match alpn {
        Alpn::H2 => {
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(8)
                .serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = answered.notified(), if after_first != AfterFirst::KeepServing => {
                    if after_first == AfterFirst::GoAway {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    } else {
                        // Let the answer's frames go out, then vanish.
                        let _ = tokio::time::timeout(Duration::from_millis(50), connection).await;
                    }
                }
            }
        }
        Alpn::Http1 => {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        }
    }
}

async fn respond(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.uri().path() {
        "/stall" => std::future::pending().await,
        "/big" => Bytes::from(vec![b'x'; 2 << 20]),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Bytes::from_static(b"slow")
        }
        "/headers" => {
            let mut lines: Vec<String> = request
                .headers()
                .keys()
                .map(|name| name.as_str().to_owned())
                .collect();
            lines.push(format!(
                ":authority {}",
                request.uri().authority().map_or("", |a| a.as_str())
            ));
            Bytes::from(lines.join("\n"))
        }
        _ => Bytes::from(format!("ok {:?}", request.version())),
    };
    Ok(Response::new(Full::new(body)))
}
