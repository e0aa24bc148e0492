//! The CMS SignedData in a signature's `/Contents`: one signer, whose `messageDigest` is the
//! digest of the signed byte ranges, whose signature over the signed attributes (encoded
//! as a DER SET, RFC 5652 §5.4) verifies with the signer certificate, whose ESS
//! signing-certificate attribute (when present) names that certificate, and whose
//! certificate chains to the PDF trust store at the claimed signing time.

use std::time::SystemTime;

use aws_lc_rs::{digest, signature};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::OctetString;
use der::{Decode, Encode};
use x509_cert::Certificate;

use super::byterange::Ranges;
use super::{Problem, SignatureReport, Verdict, layer};
use crate::dsig::{SigCode, TrustStore};

const SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const SIGNING_TIME: &str = "1.2.840.113549.1.9.5";
const SIGNING_CERT: &str = "1.2.840.113549.1.9.16.2.12";
const SIGNING_CERT_V2: &str = "1.2.840.113549.1.9.16.2.47";

pub(super) fn invalid(msg: impl Into<String>) -> Problem {
    Problem::new(Verdict::SignatureInvalid, msg)
}

pub(super) fn unsupported(msg: impl Into<String>) -> Problem {
    Problem::new(Verdict::Unsupported, msg)
}

/// Checks the signature and fills in what `report` says of its signer (and, on failure,
/// its problem).
pub fn check(
    pdf: &[u8],
    ranges: &Ranges,
    contents: &[u8],
    trust: &TrustStore,
    layers: &[layer::LayerOverride],
    now: SystemTime,
    report: &mut SignatureReport,
) -> Result<(), Problem> {
    let der = der_prefix(contents).ok_or_else(|| unsupported("/Contents is not DER"))?;
    let sd = signed_data(der)?;
    let signer = Signer::of(&sd)?;
    describe_signer(signer.cert, layers, report);
    let (alg, name, weak) = digest_algorithm(&signer.info.digest_alg.oid.to_string())?;
    report.digest_algorithm = Some(name);
    report.weak_digest = weak;
    let parts = [&pdf[ranges.first.clone()], &pdf[ranges.second.clone()]];
    let claimed = signer.verify(alg, &parts).map_err(|p| match p.code {
        Verdict::DigestMismatch => Problem::new(
            Verdict::DigestMismatch,
            "the signed bytes changed after signing (messageDigest differs)",
        ),
        _ => p,
    })?;
    report.signing_time = claimed.map(|t| crate::ids::rfc3339(ms(t)));
    // A trusted time stamp over the signature says when it existed; else the signer's claim.
    let stamped = super::timestamp::verified_time(signer.info, trust)?;
    if let Some(t) = stamped {
        report.timestamp = Some(crate::ids::rfc3339(ms(t)));
    }
    signer.chain(trust, stamped.or(claimed).unwrap_or(now))
}

/// The SignedData in a DER `ContentInfo`.
pub(super) fn signed_data(der: &[u8]) -> Result<SignedData, Problem> {
    let ci = ContentInfo::from_der(der).map_err(|e| invalid(format!("unreadable CMS: {e}")))?;
    if ci.content_type.to_string() != SIGNED_DATA {
        return Err(unsupported("the CMS is not SignedData"));
    }
    ci.content
        .decode_as()
        .map_err(|e| invalid(format!("unreadable SignedData: {e}")))
}

/// The one signer of a SignedData, with its certificate and the others the CMS carries.
pub(super) struct Signer<'a> {
    pub info: &'a SignerInfo,
    pub cert: &'a Certificate,
    pub cert_der: Vec<u8>,
    others: Vec<Vec<u8>>,
}

impl<'a> Signer<'a> {
    pub fn of(sd: &'a SignedData) -> Result<Signer<'a>, Problem> {
        let [info] = sd.signer_infos.0.as_slice() else {
            return Err(unsupported("a signature must have exactly one signer"));
        };
        let certs: Vec<&Certificate> = sd
            .certificates
            .iter()
            .flat_map(|set| set.0.iter())
            .filter_map(|c| match c {
                CertificateChoices::Certificate(c) => Some(c),
                CertificateChoices::Other(_) => None,
            })
            .collect();
        let cert = *certs
            .iter()
            .find(|c| names_signer(info, c))
            .ok_or_else(|| invalid("the signer's certificate is not in the signature"))?;
        let der = |c: &Certificate| {
            c.to_der()
                .map_err(|e| invalid(format!("a certificate does not re-encode: {e}")))
        };
        let cert_der = der(cert)?;
        let mut others = Vec::new();
        for c in certs.iter().filter(|c| !std::ptr::eq(**c, cert)) {
            others.push(der(c)?);
        }
        Ok(Signer {
            info,
            cert,
            cert_der,
            others,
        })
    }

    /// Checks the signature over `parts` (the signed content, in pieces): the signed
    /// `messageDigest`, the ESS signing-certificate attribute and the signature value.
    /// Returns the claimed `signingTime`, if any.
    pub fn verify(
        &self,
        alg: &'static digest::Algorithm,
        parts: &[&[u8]],
    ) -> Result<Option<SystemTime>, Problem> {
        let Some(attrs) = &self.info.signed_attrs else {
            verify_signature(self.info, self.cert, alg, &parts.concat())?;
            return Ok(None);
        };
        let mut ctx = digest::Context::new(alg);
        for p in parts {
            ctx.update(p);
        }
        let md = attribute(attrs, MESSAGE_DIGEST)
            .ok_or_else(|| invalid("the signed attributes have no messageDigest"))?
            .decode_as::<OctetString>()
            .map_err(|e| invalid(format!("unreadable messageDigest: {e}")))?;
        if md.as_bytes() != ctx.finish().as_ref() {
            return Err(Problem::new(
                Verdict::DigestMismatch,
                "the signed content changed (messageDigest differs)",
            ));
        }
        check_signing_certificate(attrs, &self.cert_der)?;
        let message = attrs
            .to_der()
            .map_err(|e| invalid(format!("signed attributes do not re-encode: {e}")))?;
        verify_signature(self.info, self.cert, alg, &message)?;
        Ok(attribute(attrs, SIGNING_TIME)
            .and_then(|t| t.decode_as::<x509_cert::time::Time>().ok())
            .map(|t| t.to_system_time()))
    }

    /// The certificate chains to `trust` at `at`.
    pub fn chain(&self, trust: &TrustStore, at: SystemTime) -> Result<(), Problem> {
        trust.check(&self.cert_der, &self.others, at).map_err(|f| {
            let code = match f.code {
                SigCode::CertRevoked => Verdict::Revoked,
                _ => Verdict::ChainUntrusted,
            };
            Problem::new(code, f.message)
        })
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The DER object at the start of `bytes` (`/Contents` is zero-padded after it).
fn der_prefix(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.first() != Some(&0x30) {
        return None;
    }
    let first = *bytes.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None; // Indefinite (BER) or absurd lengths.
        }
        let len = bytes
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| acc << 8 | *b as usize);
        (len, 2 + n)
    };
    bytes.get(..header.checked_add(len)?)
}

/// Whether `si` names `c` (by issuer and serial, or by subject key identifier).
fn names_signer(si: &SignerInfo, c: &Certificate) -> bool {
    match &si.sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            c.tbs_certificate().issuer() == &ias.issuer
                && c.tbs_certificate().serial_number() == &ias.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => c
            .tbs_certificate()
            .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .is_some_and(|(_, k)| k == *ski),
    }
}

fn describe_signer(
    cert: &Certificate,
    layers: &[layer::LayerOverride],
    report: &mut SignatureReport,
) {
    let subject = cert.tbs_certificate().subject();
    report.signer = subject.common_name().ok().flatten().map(String::from);
    report.organisation = subject.organization().ok().flatten().map(String::from);
    report.layer = layer::classify_with(cert, layers);
}

/// (algorithm, name, weak) of a CMS digest algorithm.
pub(super) fn digest_algorithm(
    oid: &str,
) -> Result<(&'static digest::Algorithm, &'static str, bool), Problem> {
    Ok(match oid {
        "1.3.14.3.2.26" => (&digest::SHA1_FOR_LEGACY_USE_ONLY, "sha1", true),
        "2.16.840.1.101.3.4.2.1" => (&digest::SHA256, "sha256", false),
        "2.16.840.1.101.3.4.2.2" => (&digest::SHA384, "sha384", false),
        "2.16.840.1.101.3.4.2.3" => (&digest::SHA512, "sha512", false),
        other => return Err(unsupported(format!("digest algorithm {other}"))),
    })
}

pub(super) fn attribute<'a>(
    attrs: &'a x509_cert::attr::Attributes,
    oid: &str,
) -> Option<&'a der::Any> {
    attrs
        .iter()
        .find(|a| a.oid.to_string() == oid)
        .and_then(|a| a.values.iter().next())
}

/// An ESS signing-certificate(-v2) attribute must name the signer certificate (its SHA-256,
/// or SHA-1 for v1): a signature cannot be moved to another certificate with the same key.
fn check_signing_certificate(
    attrs: &x509_cert::attr::Attributes,
    cert_der: &[u8],
) -> Result<(), Problem> {
    let named = |oid: &str, alg: &'static digest::Algorithm| {
        attribute(attrs, oid).map(|v| {
            let hash = digest::digest(alg, cert_der);
            let value = v.to_der().unwrap_or_default();
            value
                .windows(hash.as_ref().len())
                .any(|w| w == hash.as_ref())
        })
    };
    let v2 = named(SIGNING_CERT_V2, &digest::SHA256);
    let v1 = named(SIGNING_CERT, &digest::SHA1_FOR_LEGACY_USE_ONLY);
    if v2 == Some(false) || (v2.is_none() && v1 == Some(false)) {
        return Err(invalid(
            "the signing-certificate attribute names another certificate than the signer's",
        ));
    }
    Ok(())
}

/// Verifies the signature value over `message` with the signer certificate's key.
fn verify_signature(
    si: &SignerInfo,
    cert: &Certificate,
    digest_alg: &'static digest::Algorithm,
    message: &[u8],
) -> Result<(), Problem> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let key = spki.subject_public_key.raw_bytes();
    let sig_oid = si.signature_algorithm.oid.to_string();
    let curve = crate::dsig::key_curve(spki);
    let algorithm = verification_algorithm(&sig_oid, curve.as_deref(), digest_alg)?;
    signature::UnparsedPublicKey::new(algorithm, key)
        .verify(message, si.signature.as_bytes())
        .map_err(|_| invalid("the signature value does not verify with the signer's key"))
}

fn verification_algorithm(
    sig_oid: &str,
    curve: Option<&str>,
    digest_alg: &'static digest::Algorithm,
) -> Result<&'static dyn signature::VerificationAlgorithm, Problem> {
    use digest::{SHA1_FOR_LEGACY_USE_ONLY as SHA1, SHA256, SHA384, SHA512};
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    let d = digest_alg;
    let rsa_pkcs1 = matches!(
        sig_oid,
        "1.2.840.113549.1.1.1"
            | "1.2.840.113549.1.1.5"
            | "1.2.840.113549.1.1.11"
            | "1.2.840.113549.1.1.12"
            | "1.2.840.113549.1.1.13"
    );
    let ecdsa = sig_oid == "1.2.840.10045.2.1" || sig_oid.starts_with("1.2.840.10045.4.3.");
    Ok(if rsa_pkcs1 {
        match () {
            _ if d == &SHA256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            _ if d == &SHA384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            _ if d == &SHA512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            _ if d == &SHA1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            _ => return Err(unsupported("RSA with this digest")),
        }
    } else if sig_oid == "1.2.840.113549.1.1.10" {
        match () {
            _ if d == &SHA256 => &signature::RSA_PSS_2048_8192_SHA256,
            _ if d == &SHA384 => &signature::RSA_PSS_2048_8192_SHA384,
            _ if d == &SHA512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return Err(unsupported("RSASSA-PSS with this digest")),
        }
    } else if ecdsa {
        match (curve, ()) {
            (Some(P256), _) if d == &SHA256 => &signature::ECDSA_P256_SHA256_ASN1,
            (Some(P256), _) if d == &SHA384 => &signature::ECDSA_P256_SHA384_ASN1,
            (Some(P384), _) if d == &SHA384 => &signature::ECDSA_P384_SHA384_ASN1,
            (Some(P384), _) if d == &SHA256 => &signature::ECDSA_P384_SHA256_ASN1,
            _ => return Err(unsupported("ECDSA on this curve or with this digest")),
        }
    } else {
        return Err(unsupported(format!("signature algorithm {sig_oid}")));
    })
}
