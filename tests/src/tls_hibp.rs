//! A Pwned Passwords compatible range server over HTTPS on 127.0.0.1 that speaks HTTP/2 only
//! (ALPN `h2`), like the real one behind Cloudflare: a certificate for `127.0.0.1` from a
//! throw-away CA whose PEM file the gateway is told to trust (`egress.tls-roots`), hyper's
//! HTTP/2 server, and counts of accepted connections and of requests by HTTP version.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{
    collections::BTreeMap,
    convert::Infallible,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

/// The HTTPS range server.
pub struct TlsHibpServer {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The CA certificate (PEM) to trust.
    pub ca: PathBuf,
    accepted: Arc<AtomicUsize>,
    over_h2: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsHibpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsHibpServer {
    /// A server whose corpus holds `breached` (password, count) pairs.
    ///
    /// # Panics
    /// When the certificates cannot be made or no port can be bound (a broken test machine).
    pub async fn start(breached: &[(&str, u64)]) -> Self {
        let corpus = Arc::new(crate::hibp::corpus(breached));
        let (ca_pem, acceptor) = tls_acceptor();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).expect("the CA file is written");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let url = format!("https://{}", listener.local_addr().expect("bound"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let over_h2 = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (accepted, over_h2) = (accepted.clone(), over_h2.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, corpus, over_h2) =
                        (acceptor.clone(), corpus.clone(), over_h2.clone());
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let service = service_fn(move |request| {
                            let response = respond(&request, &corpus, &over_h2);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self {
            url,
            ca,
            accepted,
            over_h2,
            _dir: dir,
            task,
        }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests that came over HTTP/2 so far.
    pub fn requests_over_h2(&self) -> usize {
        self.over_h2.load(Ordering::SeqCst)
    }
}

/// A CA (its PEM) and an acceptor with a certificate for 127.0.0.1 signed by it, offering `h2`
/// only.
fn tls_acceptor() -> (String, tokio_rustls::TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "harness test CA");
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let leaf_key = rcgen::KeyPair::generate().expect("a server key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("a server certificate");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("the server certificate is usable");
    config.alpn_protocols = vec![b"h2".to_vec()];
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn respond(
    request: &Request<Incoming>,
    corpus: &BTreeMap<String, Vec<(String, u64)>>,
    over_h2: &AtomicUsize,
) -> Response<Full<Bytes>> {
    if request.version() == hyper::Version::HTTP_2 {
        over_h2.fetch_add(1, Ordering::SeqCst);
    }
    let prefix = request.uri().path().strip_prefix("/range/").unwrap_or("");
    if prefix.len() != 5 || !prefix.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        let mut response = Response::new(Full::new(Bytes::from_static(b"bad prefix")));
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return response;
    }
    let padding = request
        .headers()
        .get("add-padding")
        .is_some_and(|value| value == "true");
    let body = crate::hibp::range_body(corpus, prefix, padding);
    Response::new(Full::new(Bytes::from(body)))
}
