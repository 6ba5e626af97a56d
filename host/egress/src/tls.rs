//! The gateway's TLS client configuration: which roots are trusted, and which protocols are
//! offered by ALPN (HTTP/2 first, HTTP/1.1 as the fallback every server speaks).

use crate::error::SetupError;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use std::path::PathBuf;

/// The ALPN protocol id of HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol id of HTTP/1.1.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A client configuration trusting the Mozilla roots and every certificate in `extra_roots`
/// (PEM files), offering `h2` then `http/1.1`.
pub fn client_config(extra_roots: &[PathBuf]) -> Result<rustls::ClientConfig, SetupError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for path in extra_roots {
        let refused = |reason: String| SetupError::TlsRoots {
            path: path.clone(),
            reason,
        };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|error| refused(error.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| refused(error.to_string()))?;
        if certificates.is_empty() {
            return Err(refused("no certificate".to_owned()));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| refused(error.to_string()))?;
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(tls)
}
