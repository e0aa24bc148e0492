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

/// The hub's certificate and key, replaceable while it runs: both TLS configurations resolve
/// through it, so a renewed certificate takes effect on SIGHUP for new handshakes over TCP and
/// QUIC alike, without a restart. A pair that does not load or does not match is refused and
/// the old one kept.
#[derive(Debug)]
pub struct ServerCert {
    cert: PathBuf,
    key: PathBuf,
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ServerCert {
    pub fn load(cert: &Path, key: &Path) -> Result<ServerCert, TlsError> {
        Ok(ServerCert {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: std::sync::RwLock::new(Arc::new(certified_key(cert, key)?)),
        })
    }

    /// Reads the files again; returns whether the certificate changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let new = certified_key(&self.cert, &self.key)?;
        let mut current = self.current.write().expect("certificate lock");
        let changed = current.cert != new.cert;
        *current = Arc::new(new);
        Ok(changed)
    }
}

impl rustls::server::ResolvesServerCert for ServerCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, TlsError> {
    install_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| TlsError::Config("no crypto provider".into()))?;
    let certified =
        rustls::sign::CertifiedKey::from_der(load_certs(cert)?, load_key(key)?, &provider)
            .map_err(|e| TlsError::File {
                path: key.to_owned(),
                why: e.to_string(),
            })?;
    certified.keys_match().map_err(|_| TlsError::File {
        path: key.to_owned(),
        why: format!("not the key of {}", cert.display()),
    })?;
    Ok(certified)
}

/// The hub's TLS configurations: one for HTTPS (ALPN h2 then http/1.1, TLS 1.2 and 1.3) and
/// one for QUIC (TLS 1.3 only, ALPN h3), sharing one client-certificate verifier and one
/// certificate, so that the two transports cannot disagree on who may connect. Neither
/// accepts early data (0-RTT): a replayed POST or ack must never reach the hub. Session
/// resumption is rustls' default for both: an in-memory session cache, no tickets.
pub struct ServerTls {
    pub tcp: Arc<ServerConfig>,
    pub quic: Arc<ServerConfig>,
    /// The certificate both resolve (reloaded on SIGHUP).
    pub cert: Arc<ServerCert>,
}

pub fn server_config(cert: &Path, key: &Path, client_ca: &Path) -> Result<ServerTls, TlsError> {
    install_provider();
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots(client_ca)?))
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let resolver = Arc::new(ServerCert::load(cert, key)?);
    let build = |versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[&[u8]]| {
        let mut cfg = ServerConfig::builder_with_protocol_versions(versions)
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(resolver.clone());
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg.max_early_data_size = 0;
        Arc::new(cfg)
    };
    Ok(ServerTls {
        tcp: build(rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"]),
        quic: build(&[&rustls::version::TLS13], &[b"h3"]),
        cert: resolver,
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
