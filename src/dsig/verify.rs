//! Core validation of a packet's signature: reference digest, signature value, signer chain.
//!
//! Checks run cheapest-to-explain first and each failure names one code: the structure and
//! algorithms, then the packet digest (was the packet changed?), then the signature over
//! SignedInfo (was the signature changed?), then the certificate (may this signer sign?).

use std::time::SystemTime;

use aws_lc_rs::{digest, signature};
use der::Decode;
use x509_cert::Certificate;

use super::c14n::{self, C14n, Method, Subset};
use super::locate::{Located, locate};
use super::trust::SignerKey;
use super::{SigCode, SigFailure, TrustStore, alg};
use crate::digest::hex;

/// OIDs of the public keys the profile accepts.
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// A signature that verified, and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Short name of the signature method: `rsa-sha1`, `rsa-sha256` or `ecdsa-sha256`.
    pub algorithm: &'static str,
    /// Subject CN of the signer certificate.
    pub signer_cn: Option<String>,
    /// Lower-case hex SHA-256 of the signer certificate's DER.
    pub cert_sha256: String,
}

impl Verified {
    /// The documented rule tying a signer to the packet's sender (docs/signatures.md): when the
    /// directory pins signing certificates for the sender (`signing_cert_sha256`), the
    /// certificate must be one of them; otherwise its subject CN must equal the OrganId.
    pub fn belongs_to(&self, organ_id: &str, pins: &[String]) -> bool {
        if pins.is_empty() {
            self.signer_cn.as_deref() == Some(organ_id)
        } else {
            pins.iter()
                .any(|p| p.eq_ignore_ascii_case(&self.cert_sha256))
        }
    }

    /// The failure to report when [`Verified::belongs_to`] says no.
    pub fn not_sender(&self, organ_id: &str) -> SigFailure {
        SigFailure::new(
            SigCode::SignerNotSender,
            format!(
                "the packet is signed by {} (certificate sha256 {}), which is not a signing certificate of the sender {organ_id}",
                self.signer_cn
                    .as_deref()
                    .unwrap_or("a certificate without CN"),
                self.cert_sha256
            ),
        )
    }
}

#[derive(Clone, Copy)]
#[repr(u8)]
enum SigMethod {
    RsaSha1,
    RsaSha256,
    EcdsaSha256,
}

impl SigMethod {
    fn from_uri(uri: &str) -> Option<SigMethod> {
        match uri {
            alg::RSA_SHA1 => Some(SigMethod::RsaSha1),
            alg::RSA_SHA256 => Some(SigMethod::RsaSha256),
            alg::ECDSA_SHA256 => Some(SigMethod::EcdsaSha256),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            SigMethod::RsaSha1 => "rsa-sha1",
            SigMethod::RsaSha256 => "rsa-sha256",
            SigMethod::EcdsaSha256 => "ecdsa-sha256",
        }
    }
}

fn unsupported(what: &str, uri: &str) -> SigFailure {
    SigFailure::new(
        SigCode::AlgorithmUnsupported,
        format!("{what} {uri:?} is not supported"),
    )
}

/// The canonicalization the Reference's transforms ask for. The chain must be the enveloped
/// transform plus at most one canonicalization, last; comments are always dropped because
/// `URI=""` excludes them (XML-DSig §4.3.3.3).
fn reference_c14n(loc: &Located) -> Result<C14n, SigFailure> {
    if loc.reference_uri.as_deref() != Some("") {
        return Err(SigFailure::new(
            SigCode::Malformed,
            format!(
                "the Reference URI must be \"\" (the whole packet); found {:?}",
                loc.reference_uri.as_deref().unwrap_or("no URI")
            ),
        ));
    }
    let mut enveloped = false;
    let mut c14n: Option<C14n> = None;
    for t in &loc.transforms {
        if c14n.is_some() {
            return Err(unsupported(
                "a Transform after the canonicalization",
                &t.algorithm,
            ));
        }
        if t.algorithm == alg::ENVELOPED {
            enveloped = true;
        } else if let Some(m) = C14n::from_uri(&t.algorithm, t.prefix_list.as_deref()) {
            c14n = Some(m);
        } else {
            return Err(unsupported("Transform", &t.algorithm));
        }
    }
    if !enveloped {
        return Err(SigFailure::new(
            SigCode::Malformed,
            "the Reference lacks the enveloped-signature transform, so it cannot cover the packet that holds it",
        ));
    }
    let mut m = c14n.unwrap_or(C14n {
        method: Method::Inclusive,
        comments: false,
    });
    m.comments = false;
    Ok(m)
}

fn canonical_digest(
    doc: &[u8],
    subset: Subset,
    m: &C14n,
    alg: &'static digest::Algorithm,
) -> Result<digest::Digest, SigFailure> {
    let mut ctx = digest::Context::new(alg);
    c14n::canonicalize(doc, subset, m, &mut |b| ctx.update(b))
        .map_err(|e| SigFailure::new(SigCode::Malformed, e.to_string()))?;
    Ok(ctx.finish())
}

/// Picks the signer among the KeyInfo certificates: the one that issued none of the others
/// (the only one, in the usual case). The rest are offered as intermediates.
fn pick_leaf(certs: &[Vec<u8>]) -> Result<usize, SigFailure> {
    if certs.is_empty() {
        return Err(SigFailure::new(
            SigCode::CertUntrusted,
            "KeyInfo carries no X509Certificate, so the signer cannot be identified",
        ));
    }
    if certs.len() == 1 {
        return Ok(0);
    }
    let parsed = certs
        .iter()
        .map(|d| parse_cert(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..parsed.len())
        .find(|&i| {
            let subject = parsed[i].tbs_certificate().subject();
            !parsed.iter().enumerate().any(|(j, other)| {
                j != i && other.tbs_certificate().issuer() == subject && other != &parsed[i]
            })
        })
        .unwrap_or(0))
}

fn parse_cert(der: &[u8]) -> Result<Certificate, SigFailure> {
    Certificate::from_der(der).map_err(|e| {
        SigFailure::new(
            SigCode::Malformed,
            format!("X509Certificate is not a valid DER certificate: {e}"),
        )
    })
}

/// The named curve of an EC public key (its OID, dotted), `None` for other keys.
pub fn key_curve(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Option<String> {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string())
}

/// Parses the signer certificate's public key for `method` (once per certificate: cached).
fn signer_key(method: SigMethod, cert: &Certificate, der: &[u8]) -> Result<SignerKey, SigFailure> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let key_oid = spki.algorithm.oid.to_string();
    let key = spki.subject_public_key.raw_bytes();
    let curve = key_curve(spki);
    let (algorithm, kind): (&'static dyn signature::VerificationAlgorithm, &'static str) =
        match (method, key_oid.as_str()) {
            (SigMethod::RsaSha1 | SigMethod::RsaSha256, OID_RSA) => {
                // The DER RSAPublicKey of a 2048-bit key is 270 bytes.
                if key.len() < 260 {
                    return Err(SigFailure::new(
                        SigCode::AlgorithmUnsupported,
                        "RSA keys shorter than 2048 bits are not accepted",
                    ));
                }
                match method {
                    SigMethod::RsaSha1 => (
                        &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                        "RSA",
                    ),
                    _ => (&signature::RSA_PKCS1_2048_8192_SHA256, "RSA"),
                }
            }
            (SigMethod::EcdsaSha256, OID_EC) if curve.as_deref() == Some(OID_P256) => {
                // XML-DSig carries ECDSA signatures as r || s (RFC 4050), not DER.
                (&signature::ECDSA_P256_SHA256_FIXED, "EC P-256")
            }
            (_, OID_EC) => {
                return Err(SigFailure::new(
                    SigCode::AlgorithmUnsupported,
                    format!(
                        "{} with an EC key on curve {}: only ecdsa-sha256 with P-256 is supported",
                        method.name(),
                        curve.as_deref().unwrap_or("(unknown)")
                    ),
                ));
            }
            (_, other) => {
                return Err(SigFailure::new(
                    SigCode::SignatureInvalid,
                    format!(
                        "SignatureMethod {} does not fit the certificate's key (algorithm {other})",
                        method.name()
                    ),
                ));
            }
        };
    let parsed = signature::ParsedPublicKey::new(algorithm, key).map_err(|e| {
        SigFailure::new(
            SigCode::Malformed,
            format!("the certificate's {kind} public key is not usable: {e}"),
        )
    })?;
    Ok(SignerKey {
        key: parsed,
        kind,
        common_name: cert
            .tbs_certificate()
            .subject()
            .common_name()
            .ok()
            .flatten()
            .map(String::from),
        cert_sha256: hex(digest::digest(&digest::SHA256, der).as_ref()),
    })
}

/// Verifies the packet's signature at time `now` against `trust`. The signer-to-sender rule
/// is the caller's to apply with [`Verified::belongs_to`], since it needs the directory.
pub fn verify(doc: &[u8], trust: &TrustStore, now: SystemTime) -> Result<Verified, SigFailure> {
    let loc = locate(doc)?;
    let si_c14n = C14n::from_uri(&loc.c14n_method, loc.c14n_prefix_list.as_deref())
        .ok_or_else(|| unsupported("CanonicalizationMethod", &loc.c14n_method))?;
    let method = SigMethod::from_uri(&loc.signature_method)
        .ok_or_else(|| unsupported("SignatureMethod", &loc.signature_method))?;
    let digest_alg: &'static digest::Algorithm = match loc.digest_method.as_str() {
        alg::SHA1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        alg::SHA256 => &digest::SHA256,
        other => return Err(unsupported("DigestMethod", other)),
    };
    let ref_c14n = reference_c14n(&loc)?;
    let leaf = pick_leaf(&loc.certificates)?;
    let leaf_der = &loc.certificates[leaf];
    let fingerprint: [u8; 32] = digest::digest(&digest::SHA256, leaf_der)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes");
    let key = trust.signer_key(fingerprint, method as u8, || {
        signer_key(method, &parse_cert(leaf_der)?, leaf_der)
    })?;

    let actual = canonical_digest(
        doc,
        Subset::Document {
            exclude: Some(loc.signature_start),
        },
        &ref_c14n,
        digest_alg,
    )?;
    if actual.as_ref() != loc.digest_value.as_slice() {
        return Err(SigFailure::new(
            SigCode::DigestMismatch,
            "the packet's digest does not match the signed DigestValue: it was changed after signing",
        ));
    }

    let mut signed_info = Vec::with_capacity(1024);
    c14n::canonicalize(
        doc,
        Subset::Element {
            start: loc.signed_info_start,
        },
        &si_c14n,
        &mut |b| signed_info.extend_from_slice(b),
    )
    .map_err(|e| SigFailure::new(SigCode::Malformed, e.to_string()))?;
    key.key
        .verify_sig(&signed_info, &loc.signature_value)
        .map_err(|_| {
            SigFailure::new(
                SigCode::SignatureInvalid,
                format!(
                    "SignatureValue does not verify over SignedInfo with the certificate's {} key ({})",
                    key.kind,
                    method.name()
                ),
            )
        })?;

    let intermediates: Vec<Vec<u8>> = loc
        .certificates
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leaf)
        .map(|(_, d)| d.clone())
        .collect();
    trust.check(leaf_der, &intermediates, now)?;

    Ok(Verified {
        algorithm: method.name(),
        signer_cn: key.common_name.clone(),
        cert_sha256: key.cert_sha256.clone(),
    })
}

/// [`verify`], then the signer-to-sender rule for `from` with the directory's `pins` for it.
pub fn verify_for_sender(
    doc: &[u8],
    from: &str,
    pins: &[String],
    trust: &TrustStore,
    now: SystemTime,
) -> Result<Verified, SigFailure> {
    let v = verify(doc, trust, now)?;
    if v.belongs_to(from, pins) {
        Ok(v)
    } else {
        Err(v.not_sender(from))
    }
}
