//! Server TLS from PEM files (rustls with the aws-lc-rs provider), and a
//! failed handshake counted and logged the same way wherever it happened.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::log::{LogThrottle, Masker};
use crate::metrics;

/// Failed handshakes come by the hundred from a scanner: 10 lines a minute.
static FAILED_LOG: LogThrottle = LogThrottle::new(
    "TLS handshake failed",
    10,
    std::time::Duration::from_secs(60),
);

/// A byte stream SMTP runs on: TCP, or TLS over TCP after STARTTLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (key does not match, unsupported algorithm).
    #[error("TLS certificate {cert} with key {key}: {reason}")]
    Config {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls's error.
        reason: String,
    },
}

/// The aws-lc-rs crypto provider, the only one this build uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Loads `[smtp.tls]` into an acceptor.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|err| TlsError::File {
        path: config.key.clone(),
        reason: format!("no usable private key: {err}"),
    })?;
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|err| TlsError::Config {
            cert: config.cert.clone(),
            key: config.key.clone(),
            reason: err.to_string(),
        })?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| bad(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(err.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(certs)
}

/// A client connector for STARTTLS toward the legacy relay. `verify = false`
/// is opportunistic TLS (Postfix's `may`): encrypted, certificate not checked,
/// because a self-signed certificate must not stop mail that would otherwise
/// go in plaintext. With `verify`, the chain is checked against `ca_file`, or
/// the system's roots when it is empty.
pub fn client_connector(
    verify: bool,
    ca_file: &Path,
) -> Result<tokio_rustls::TlsConnector, TlsError> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client_config(
        verify, ca_file,
    )?)))
}

/// The client side TLS settings behind [`client_connector`].
pub fn client_config(verify: bool, ca_file: &Path) -> Result<rustls::ClientConfig, TlsError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let bad = |reason: String| TlsError::File {
        path: ca_file.to_path_buf(),
        reason,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| bad(err.to_string()))?;
    let config = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth()
    } else if ca_file.as_os_str().is_empty() {
        builder
            .with_platform_verifier()
            .map_err(|err| bad(format!("system roots: {err}")))?
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in load_certs(ca_file)? {
            roots.add(cert).map_err(|err| bad(err.to_string()))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

/// Accepts any certificate but still checks the handshake signatures: opportunistic TLS.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a TLS handshake came about.
#[derive(Debug, Clone, Copy)]
pub enum TlsMode {
    /// On a `tls-listen` address, before the greeting.
    Implicit,
    /// After `STARTTLS`, in a session already counted.
    StartTls,
}

/// A TLS handshake that failed: counted by mode, and logged within the
/// throttle (a scanner's handshakes fail by the hundred).
pub fn failed(masker: &Masker, peer: SocketAddr, mode: TlsMode, error: &dyn std::fmt::Display) {
    metrics::tls_failure(match mode {
        TlsMode::Implicit => "implicit",
        TlsMode::StartTls => "starttls",
    });
    if FAILED_LOG.admit() {
        tracing::warn!(client = %masker.ip(peer.ip()), error = %error, "TLS handshake failed");
    }
}
