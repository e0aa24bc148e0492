//! XML signatures of edXML packets: verify (the hub, `lienthong verify`) and sign
//! (`lienthong sign`).
//!
//! A packet is signed with one enveloped XML-DSig `Signature` in `edXMLHeader` whose single
//! `Reference URI=""` covers the whole packet, attachments included. Why this is implemented
//! here rather than bound from libxmlsec1 is in docs/signatures.md: exactly this profile, with
//! streaming digests and aws-lc-rs (the crypto provider rustls already uses), tested against
//! the `xmlsec1` tool as an independent implementation.

pub mod c14n;
mod locate;
mod sign;
mod trust;
mod verify;

pub use sign::{SignAlgorithm, SignError, Signer};
pub(crate) use trust::read_crls;
pub use trust::{TrustError, TrustStore};
pub use verify::{Verified, key_curve, verify, verify_for_sender};

/// The XML-DSig namespace. Real packets also carry the Signature element without it.
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Why a signature was not accepted: a stable machine-readable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SigFailure {
    pub code: SigCode,
    pub message: String,
}

impl SigFailure {
    pub fn new(code: SigCode, message: impl Into<String>) -> SigFailure {
        SigFailure {
            code,
            message: message.into(),
        }
    }

    /// No `Signature` in `edXMLHeader`.
    pub fn missing() -> SigFailure {
        SigFailure::new(
            SigCode::Missing,
            "the packet carries no Signature in edXMLHeader",
        )
    }
}

/// The reasons a signature fails, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigCode {
    /// No `Signature` in `edXMLHeader`.
    Missing,
    /// The Signature element cannot be read (structure, base64, DER, several references, …).
    Malformed,
    /// An algorithm outside the supported profile.
    AlgorithmUnsupported,
    /// The packet's digest does not match the signed `DigestValue`: the packet was changed.
    DigestMismatch,
    /// `SignatureValue` does not verify over `SignedInfo` with the certificate's key.
    SignatureInvalid,
    /// The certificate does not chain to the trust store or may not sign documents.
    CertUntrusted,
    /// The certificate (or one in its chain) is expired or not yet valid.
    CertExpired,
    /// A configured CRL lists the certificate (or one in its chain).
    CertRevoked,
    /// The certificate is valid but does not belong to the packet's sender.
    SignerNotSender,
}

impl SigCode {
    pub fn as_str(self) -> &'static str {
        match self {
            SigCode::Missing => "signature_missing",
            SigCode::Malformed => "malformed_signature",
            SigCode::AlgorithmUnsupported => "algorithm_unsupported",
            SigCode::DigestMismatch => "digest_mismatch",
            SigCode::SignatureInvalid => "signature_invalid",
            SigCode::CertUntrusted => "cert_untrusted",
            SigCode::CertExpired => "cert_expired",
            SigCode::CertRevoked => "cert_revoked",
            SigCode::SignerNotSender => "signer_not_sender",
        }
    }

    /// Every code, for metrics and documentation.
    pub const ALL: [SigCode; 9] = [
        SigCode::Missing,
        SigCode::Malformed,
        SigCode::AlgorithmUnsupported,
        SigCode::DigestMismatch,
        SigCode::SignatureInvalid,
        SigCode::CertUntrusted,
        SigCode::CertExpired,
        SigCode::CertRevoked,
        SigCode::SignerNotSender,
    ];
}

/// The verdict string stored with a document and shown in inbox metadata.
pub const VERDICT_VERIFIED: &str = "verified";

/// Algorithm URIs of the supported profile.
pub mod alg {
    pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
    pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
    pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
    pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
    pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    pub const ECDSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256";
}
