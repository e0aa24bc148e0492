//! TLS set-up for both sides, and turning a client certificate into an identity.
//!
//! The hub requires a client certificate that chains to the configured client CA: anything
//! else fails the handshake. What the certificate names (its subject CN) and whether the
//! directory knows and pins it is decided per request by the HTTP layer, so a directory reload
//! takes effect without dropping connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use der::Decode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Installs the one crypto provider (aws-lc-rs) for the process; safe to call repeatedly.
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |why: String| TlsError::File {
        path: path.to_owned(),
        why,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in file".into()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in load_certs(path)? {
        store.add(c).map_err(|e| TlsError::File {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The hub's TLS configurations: one for HTTPS (ALPN h2 then http/1.1, TLS 1.2 and 1.3) and
/// one for QUIC (TLS 1.3 only, ALPN h3), sharing one client-certificate verifier and one
/// certificate, so that the two transports cannot disagree on who may connect. Neither
/// accepts early data (0-RTT): a replayed POST or ack must never reach the hub. Session
/// resumption is rustls' default for both: an in-memory session cache, no tickets.
pub struct ServerTls {
    pub tcp: Arc<ServerConfig>,
    pub quic: Arc<ServerConfig>,
}

pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<ServerTls, TlsError> {
    install_provider();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots(client_ca)?))
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| TlsError::Config("no crypto provider".into()))?;
    let certified = Arc::new(
        rustls::sign::CertifiedKey::from_der(load_certs(cert)?, load_key(key)?, &provider)
            .map_err(|e| TlsError::Config(e.to_string()))?,
    );
    let build = |versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[&[u8]]| {
        let mut cfg = ServerConfig::builder_with_protocol_versions(versions)
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                certified.clone(),
            )));
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg.max_early_data_size = 0;
        Arc::new(cfg)
    };
    Ok(ServerTls {
        tcp: build(rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"]),
        quic: build(&[&rustls::version::TLS13], &[b"h3"]),
    })
}

/// An agency's TLS configuration: trusts `ca`, presents `cert`/`key`, offers the given ALPN.
pub fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    install_provider();
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// What the hub learns from a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// Subject CN: the agency's OrganId (or a role name).
    pub common_name: Option<String>,
    /// Lower-case hex SHA-256 of the certificate's DER, for pinning.
    pub sha256: String,
    /// When the certificate expires (for the agency certificate expiry gauge).
    pub not_after: Option<std::time::SystemTime>,
}

/// Reads the subject CN and fingerprint of a DER certificate.
pub fn peer_cert(der: &[u8]) -> PeerCert {
    let cert = x509_cert::Certificate::from_der(der).ok();
    let common_name = cert
        .as_ref()
        .and_then(|c| c.tbs_certificate().subject().common_name().ok().flatten())
        .map(String::from);
    let not_after = cert
        .as_ref()
        .map(|c| c.tbs_certificate().validity().not_after.to_system_time());
    let sha256 = crate::digest::sha256_hex(der);
    PeerCert {
        common_name,
        sha256,
        not_after,
    }
}
