//! `lienthong pki csr`: the hub's production keys and certificate signing requests.
//!
//! A hub has three identities, each with its own key so that one can be renewed or revoked
//! without the others: the TLS server certificate agencies connect to, the signing certificate
//! of its receipts and tree heads, and the client certificate it presents when it connects out
//! (push, federation). The requests carry the key usages each needs (RFC 2985 extension
//! request), so a CA that copies requested extensions issues the right profile; a CA that
//! does not gets them spelled out by `lienthong pki check` afterwards. Keys are written once:
//! an existing key is never overwritten (a CSR for a key you already have is made by the CA's
//! own tools).

use std::net::IpAddr;
use std::path::PathBuf;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::{PkiError, write_file};

/// The key algorithm of the three keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// RSA 2048 (what the Vietnamese government CA profiles issue most).
    Rsa2048,
    Rsa3072,
    /// ECDSA P-256.
    P256,
}

impl KeyType {
    fn generate(self) -> Result<KeyPair, PkiError> {
        let rsa = |size| KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size);
        Ok(match self {
            KeyType::Rsa2048 => rsa(rcgen::RsaKeySize::_2048)?,
            KeyType::Rsa3072 => rsa(rcgen::RsaKeySize::_3072)?,
            KeyType::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        })
    }
}

/// What the requests name.
#[derive(Debug, Clone)]
pub struct CsrRequest {
    /// Where the keys and requests go (created if missing).
    pub dir: PathBuf,
    /// The hub's DNS name: the server certificate's CN and first subjectAltName.
    pub name: String,
    /// More DNS names for the server certificate.
    pub dns: Vec<String>,
    /// IP addresses for the server certificate.
    pub ips: Vec<IpAddr>,
    /// CN of the outbound client certificate: the id peers know this hub by (`[federation]
    /// hub_id`); default: `name`.
    pub client_cn: Option<String>,
    /// Subject O (the operating agency) and C.
    pub organization: Option<String>,
    pub country: String,
    pub key_type: KeyType,
}

/// One key and request written.
#[derive(Debug, Clone)]
pub struct Made {
    /// "server", "hub-signing" or "hub-client".
    pub role: &'static str,
    pub key: PathBuf,
    pub csr: PathBuf,
    /// The config key its certificate goes in.
    pub config_key: &'static str,
}

/// The three identities: file stem, config key of the certificate, and how to fill the params.
const ROLES: [(&str, &str); 3] = [
    ("server", "[tls] cert"),
    ("hub-signing", "[audit] signing_cert"),
    ("hub-client", "[outbound] client_cert"),
];

/// Writes `<role>.key` (0600) and `<role>.csr` for the three identities. Refuses before writing
/// anything when one of the keys exists.
pub fn make(req: &CsrRequest) -> Result<Vec<Made>, PkiError> {
    if req.name.is_empty() || req.name.parse::<IpAddr>().is_ok() {
        return Err(PkiError::Invalid(
            "--name must be the hub's DNS name (add IP addresses with --ip)".into(),
        ));
    }
    for (stem, _) in ROLES {
        let key = req.dir.join(format!("{stem}.key"));
        if key.exists() {
            return Err(PkiError::Invalid(format!(
                "{} exists: keys are never overwritten (move it away to make a new one)",
                key.display()
            )));
        }
    }
    let mut made = Vec::new();
    for (stem, config_key) in ROLES {
        let params = params_for(stem, req)?;
        let key = req.key_type.generate()?;
        let csr = params.serialize_request(&key)?;
        let (key_path, csr_path) = (
            req.dir.join(format!("{stem}.key")),
            req.dir.join(format!("{stem}.csr")),
        );
        // A request left from an earlier run belongs to a key that is gone.
        let _ = std::fs::remove_file(&csr_path);
        write_file(&key_path, &key.serialize_pem(), true)?;
        write_file(&csr_path, &csr.pem()?, false)?;
        made.push(Made {
            role: stem,
            key: key_path,
            csr: csr_path,
            config_key,
        });
    }
    Ok(made)
}

fn subject(cn: &str, req: &CsrRequest) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if !req.country.is_empty() {
        dn.push(DnType::CountryName, req.country.as_str());
    }
    if let Some(o) = &req.organization {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// The profile of one identity: subject, names and key usages.
fn params_for(role: &str, req: &CsrRequest) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    match role {
        "server" => {
            params.distinguished_name = subject(&req.name, req);
            let mut names = vec![req.name.clone()];
            names.extend(req.dns.iter().filter(|d| **d != req.name).cloned());
            for n in names {
                params
                    .subject_alt_names
                    .push(SanType::DnsName(n.try_into()?));
            }
            params
                .subject_alt_names
                .extend(req.ips.iter().map(|ip| SanType::IpAddress(*ip)));
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        "hub-signing" => {
            params.distinguished_name = subject(&req.name, req);
            // Receipts and tree heads are statements the hub stands behind: nonRepudiation
            // (contentCommitment) as well as digitalSignature.
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ];
        }
        _ => {
            let cn = req.client_cn.as_deref().unwrap_or(&req.name);
            params.distinguished_name = subject(cn, req);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    Ok(params)
}
