//! Development PKI: a root CA, the hub's server certificate, one TLS client certificate and one
//! document-signing certificate per agency, and a signature trust store holding the CA.
//!
//! `lienthong pki init` and the first `serve` on default paths use this so curl and the CLI work
//! at once. It only ever adds missing files; it never overwrites a key. Production deployments
//! bring their own CA and certificates and never call this.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::directory::Directory;

const CA_CN: &str = "lienthong development root CA";

/// Subject CN of the dev PKI's outbound client certificate (`[outbound] client_cert`).
pub const HUB_CLIENT_CN: &str = "lienthong-hub";

pub mod check;
pub mod csr;

/// Whether `cert` (DER) is the development CA or issued by it.
pub fn is_development(cert: &[u8]) -> bool {
    use der::Decode;
    let Ok(c) = x509_cert::Certificate::from_der(cert) else {
        return false;
    };
    let cn = |n: &x509_cert::name::Name| {
        n.common_name()
            .ok()
            .flatten()
            .map(String::from)
            .unwrap_or_default()
    };
    cn(c.tbs_certificate().subject()) == CA_CN || cn(c.tbs_certificate().issuer()) == CA_CN
}

/// The certificate files of `config` that are the development CA or issued by it: what a
/// production configuration (`[tls] dev_pki = false`) must not use (the daemon refuses to
/// start on one; `pki check` names each).
pub fn development_files(config: &crate::config::Config) -> Vec<&Path> {
    [
        &config.tls.client_ca,
        &config.tls.cert,
        &config.audit.signing_cert,
        &config.outbound.client_cert,
    ]
    .into_iter()
    .filter(|path| {
        crate::tls::load_certs(path)
            .unwrap_or_default()
            .iter()
            .any(|c| is_development(c))
    })
    .map(|p| p.as_path())
    .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// The files of a PKI directory.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PkiPaths { dir: dir.into() }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn agency_cert(&self, id: &str) -> PathBuf {
        self.dir.join("agencies").join(format!("{id}.pem"))
    }
    pub fn agency_key(&self, id: &str) -> PathBuf {
        self.dir.join("agencies").join(format!("{id}.key"))
    }
    /// The agency's document-signing certificate (`lienthong sign --cert`).
    pub fn signing_cert(&self, id: &str) -> PathBuf {
        self.dir.join("signing").join(format!("{id}.pem"))
    }
    pub fn signing_key(&self, id: &str) -> PathBuf {
        self.dir.join("signing").join(format!("{id}.key"))
    }
    /// The hub's own signing certificate (receipts, tree heads).
    pub fn hub_signing_cert(&self) -> PathBuf {
        self.dir.join("hub-signing.pem")
    }
    pub fn hub_signing_key(&self) -> PathBuf {
        self.dir.join("hub-signing.key")
    }
    /// The hub's outbound client certificate (`[outbound] client_cert`: push, federation).
    pub fn hub_client_cert(&self) -> PathBuf {
        self.dir.join("hub-client.pem")
    }
    pub fn hub_client_key(&self) -> PathBuf {
        self.dir.join("hub-client.key")
    }
    /// The signature trust store directory (`[signature] trust_dir`).
    pub fn trust_dir(&self) -> PathBuf {
        self.dir.join("trust")
    }
    pub fn role_cert(&self, cn: &str) -> PathBuf {
        self.dir.join("roles").join(format!("{cn}.pem"))
    }
    pub fn role_key(&self, cn: &str) -> PathBuf {
        self.dir.join("roles").join(format!("{cn}.key"))
    }
}

/// What `init` created.
#[derive(Debug, Default)]
pub struct InitReport {
    pub created_ca: bool,
    pub created_server: bool,
    /// Agency and role client certificates created.
    pub created_clients: usize,
    /// Agency document-signing certificates created.
    pub created_signing: usize,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = secret;
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365 * years);
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "lienthong dev");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A CA that can issue certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Makes a new CA; returns it with its certificate and key in PEM.
    pub fn generate(cn: &str) -> Result<(Ca, String, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(cn);
        validity(&mut params, 10);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok((
            Ca {
                issuer: Issuer::new(params, key),
            },
            cert.pem(),
            key_pem,
        ))
    }

    /// Loads the dev CA written by [`init`]. Only the key and the name are needed to issue.
    pub fn load_dev(paths: &PkiPaths) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(&read(&paths.ca_key())?)?;
        let params = ca_params(CA_CN);
        Ok(Ca {
            issuer: Issuer::new(params, key),
        })
    }

    /// Issues a TLS server certificate for the given DNS names and IP addresses.
    pub fn issue_server(&self, names: &[&str]) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for n in names {
            params.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into()?),
            });
        }
        params
            .distinguished_name
            .push(DnType::CommonName, "lienthong hub");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, 2);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a TLS client certificate whose subject CN is `cn` (an OrganId or a role name).
    pub fn issue_client(&self, cn: &str) -> Result<(String, String), PkiError> {
        self.issue_client_valid(cn, OffsetDateTime::now_utc() - Duration::hours(1), 365 * 2)
    }

    /// Issues a client certificate valid from `not_before` for `days` days (tests use the past).
    pub fn issue_client_valid(
        &self,
        cn: &str,
        not_before: OffsetDateTime,
        days: i64,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_before + Duration::days(days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The key type of a document-signing certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKey {
    /// ECDSA P-256: fast to generate (the dev PKI makes 519 of them).
    EcdsaP256,
    /// RSA 2048: what CA-issued signing tokens hold; ~0.3 s each to generate here.
    Rsa2048,
}

impl Ca {
    /// Issues a document-signing certificate: subject CN `cn` (the OrganId, per the signer
    /// rule), key usage digitalSignature + nonRepudiation, valid from `not_before` for `days`.
    pub fn issue_signing(
        &self,
        cn: &str,
        key_type: SigningKey,
        not_before: OffsetDateTime,
        days: i64,
    ) -> Result<(String, String), PkiError> {
        let usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        self.issue_signing_with(cn, key_type, not_before, days, usages)
    }

    /// [`Ca::issue_signing`] with chosen key usages (tests issue certificates that may not sign).
    pub fn issue_signing_with(
        &self,
        cn: &str,
        key_type: SigningKey,
        not_before: OffsetDateTime,
        days: i64,
        key_usages: Vec<KeyUsagePurpose>,
    ) -> Result<(String, String), PkiError> {
        let key = match key_type {
            SigningKey::EcdsaP256 => KeyPair::generate()?,
            SigningKey::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?
            }
        };
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "lienthong dev signing");
        params.key_usages = key_usages;
        // rcgen writes extensions (key usage included) only when one of these is set.
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_before + Duration::days(days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A CRL from this CA revoking the given certificates (PEM), valid for a week.
    pub fn crl_revoking(&self, cert_pems: &[&str]) -> Result<String, PkiError> {
        use der::Decode;
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let now = OffsetDateTime::now_utc();
        let mut revoked = Vec::new();
        for pem in cert_pems {
            let der = CertificateDer::from_pem_slice(pem.as_bytes())
                .map_err(|e| PkiError::Invalid(format!("bad certificate PEM: {e:?}")))?;
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|e| PkiError::Invalid(format!("bad certificate: {e}")))?;
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(
                    cert.tbs_certificate().serial_number().as_bytes(),
                ),
                revocation_time: now - Duration::minutes(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// Creates whatever is missing of the dev PKI in `paths.dir`: CA, server certificate, one
/// client certificate per directory agency and one per role CN (`roles/<CN>.pem`). Existing
/// files are kept.
pub fn init(
    paths: &PkiPaths,
    directory: &Directory,
    roles: &[String],
) -> Result<InitReport, PkiError> {
    let mut report = InitReport::default();
    let ca = if paths.ca_cert().exists() && paths.ca_key().exists() {
        Ca::load_dev(paths)?
    } else {
        let (ca, cert, key) = Ca::generate(CA_CN)?;
        write_file(&paths.ca_key(), &key, true)?;
        write_file(&paths.ca_cert(), &cert, false)?;
        report.created_ca = true;
        ca
    };
    if !paths.server_cert().exists() || !paths.server_key().exists() {
        let (cert, key) = ca.issue_server(&["localhost", "127.0.0.1", "::1"])?;
        let _ = fs::remove_file(paths.server_cert());
        let _ = fs::remove_file(paths.server_key());
        write_file(&paths.server_key(), &key, true)?;
        write_file(&paths.server_cert(), &cert, false)?;
        report.created_server = true;
    }
    let clients = directory
        .agencies()
        .iter()
        .map(|a| {
            (
                a.id.as_str(),
                paths.agency_cert(&a.id),
                paths.agency_key(&a.id),
            )
        })
        .chain(
            roles
                .iter()
                .map(|r| (r.as_str(), paths.role_cert(r), paths.role_key(r))),
        )
        .chain(std::iter::once((
            HUB_CLIENT_CN,
            paths.hub_client_cert(),
            paths.hub_client_key(),
        )));
    for (cn, cert_path, key_path) in clients {
        if cert_path.exists() && key_path.exists() {
            continue;
        }
        let (cert, key) = ca.issue_client(cn)?;
        let _ = fs::remove_file(&cert_path);
        let _ = fs::remove_file(&key_path);
        write_file(&key_path, &key, true)?;
        write_file(&cert_path, &cert, false)?;
        report.created_clients += 1;
    }
    if !paths.hub_signing_cert().exists() || !paths.hub_signing_key().exists() {
        let now = OffsetDateTime::now_utc() - Duration::hours(1);
        let (cert, key) = ca.issue_signing("lienthong hub", SigningKey::EcdsaP256, now, 365 * 2)?;
        let _ = fs::remove_file(paths.hub_signing_cert());
        let _ = fs::remove_file(paths.hub_signing_key());
        write_file(&paths.hub_signing_key(), &key, true)?;
        write_file(&paths.hub_signing_cert(), &cert, false)?;
    }
    // Document signing: one certificate per agency, and the CA as the signature trust anchor.
    let trust = paths.trust_dir().join("dev-ca.pem");
    if !trust.exists() {
        write_file(&trust, &read(&paths.ca_cert())?, false)?;
    }
    let now = OffsetDateTime::now_utc() - Duration::hours(1);
    for a in directory.agencies() {
        let (cert_path, key_path) = (paths.signing_cert(&a.id), paths.signing_key(&a.id));
        if cert_path.exists() && key_path.exists() {
            continue;
        }
        let (cert, key) = ca.issue_signing(&a.id, SigningKey::EcdsaP256, now, 365 * 2)?;
        let _ = fs::remove_file(&cert_path);
        let _ = fs::remove_file(&key_path);
        write_file(&key_path, &key, true)?;
        write_file(&cert_path, &cert, false)?;
        report.created_signing += 1;
    }
    Ok(report)
}
