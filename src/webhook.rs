//! Push signatures (issue 17's first piece): the Standard Webhooks headers — `webhook-id`,
//! `webhook-timestamp`, `webhook-signature` over `{id}.{timestamp}.{body}` — signed with the
//! hub's own signing key instead of a shared secret.
//!
//! Standard Webhooks' asymmetric scheme (`v1a`) is Ed25519 only, while the hub's signing key is
//! what the CA issues (ECDSA P-256 or RSA) and what receivers already check receipts with. So
//! the signature is labelled by its algorithm, in the spec's `version,base64` form: `v1e,`
//! ECDSA P-256 SHA-256 (`r‖s`, 64 bytes) or `v1r,` RSASSA-PKCS1-v1_5 SHA-256; `webhook-signer`
//! names the signing certificate (its SHA-256) so a receiver can pick the key across a
//! renewal. A receiver verifies with the hub signing certificate and refuses timestamps
//! outside its tolerance, so a captured push cannot be replayed later (see docs/push.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use der::Decode;

use crate::dsig::{SignAlgorithm, Signer};

/// How far a receiver accepts a timestamp from its own clock (Standard Webhooks' default).
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The headers of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    pub id: String,
    pub timestamp: u64,
    pub signature: String,
    /// SHA-256 (hex) of the signing certificate.
    pub signer: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("webhook-timestamp is {0} s away from this clock (more than the tolerance)")]
    Timestamp(i64),
    #[error("no webhook-signature this certificate's key can check")]
    NoSignature,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the certificate cannot be used: {0}")]
    Certificate(String),
    #[error("the hub key cannot sign: {0}")]
    Sign(String),
}

fn signed_content(id: &str, timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{id}.{timestamp}.").into_bytes();
    m.extend_from_slice(body);
    m
}

fn label(alg: SignAlgorithm) -> &'static str {
    match alg {
        SignAlgorithm::RsaSha256 => "v1r",
        _ => "v1e",
    }
}

/// Signs one push of `body` with the item id `id` (the same on every retry: receivers dedup
/// on it) at `now`.
pub fn sign(
    signer: &Signer,
    id: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Headers, WebhookError> {
    let timestamp = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let sig = signer
        .sign_bytes(&signed_content(id, timestamp, body))
        .map_err(|e| WebhookError::Sign(e.to_string()))?;
    Ok(Headers {
        id: id.to_owned(),
        timestamp,
        signature: format!("{},{}", label(signer.algorithm()), B64.encode(sig)),
        signer: crate::digest::sha256_hex(signer.certificate()),
    })
}

/// Checks a push as a receiver: the timestamp within [`TOLERANCE`] of `now`, and one of the
/// space-separated signatures valid for the certificate `cert_der`'s key.
pub fn verify(
    cert_der: &[u8],
    id: &str,
    timestamp: u64,
    signatures: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<(), WebhookError> {
    use aws_lc_rs::signature;
    let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let skew = timestamp as i64 - now_s;
    if skew.unsigned_abs() > TOLERANCE.as_secs() {
        return Err(WebhookError::Timestamp(skew));
    }
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| WebhookError::Certificate(e.to_string()))?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    let key = spki.subject_public_key.raw_bytes();
    let (want, alg): (&str, &'static dyn signature::VerificationAlgorithm) =
        match spki.algorithm.oid.to_string().as_str() {
            "1.2.840.10045.2.1" => ("v1e", &signature::ECDSA_P256_SHA256_FIXED),
            "1.2.840.113549.1.1.1" => ("v1r", &signature::RSA_PKCS1_2048_8192_SHA256),
            other => return Err(WebhookError::Certificate(format!("key algorithm {other}"))),
        };
    let content = signed_content(id, timestamp, body);
    let mut seen = false;
    for s in signatures.split_whitespace() {
        let Some((version, b64)) = s.split_once(',') else {
            continue;
        };
        if version != want {
            continue;
        }
        seen = true;
        if let Ok(sig) = B64.decode(b64)
            && signature::UnparsedPublicKey::new(alg, key)
                .verify(&content, &sig)
                .is_ok()
        {
            return Ok(());
        }
    }
    Err(if seen {
        WebhookError::BadSignature
    } else {
        WebhookError::NoSignature
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, SigningKey};

    fn signer(key: SigningKey) -> Signer {
        let (ca, _, _) = Ca::generate("webhook test CA").unwrap();
        let at = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let (cert, key) = ca.issue_signing("lienthong hub", key, at, 30).unwrap();
        Signer::from_pem(cert.as_bytes(), key.as_bytes()).unwrap()
    }

    #[test]
    fn signs_and_verifies_with_both_key_types() {
        for key in [SigningKey::EcdsaP256, SigningKey::Rsa2048] {
            let s = signer(key);
            let now = SystemTime::now();
            let h = sign(&s, "0000000000000007", b"<edXML/>", now).unwrap();
            let cert = s.certificate();
            assert_eq!(
                verify(cert, &h.id, h.timestamp, &h.signature, b"<edXML/>", now),
                Ok(())
            );
            // Another body, id or time: refused.
            let bad =
                |id: &str, ts: u64, body: &[u8]| verify(cert, id, ts, &h.signature, body, now);
            assert_eq!(
                bad(&h.id, h.timestamp, b"<edXML />"),
                Err(WebhookError::BadSignature)
            );
            assert_eq!(
                bad("0000000000000008", h.timestamp, b"<edXML/>"),
                Err(WebhookError::BadSignature)
            );
            assert_eq!(
                bad(&h.id, h.timestamp + 1, b"<edXML/>"),
                Err(WebhookError::BadSignature)
            );
            // An old capture replayed: outside the tolerance.
            let later = now + TOLERANCE + Duration::from_secs(2);
            assert!(matches!(
                verify(cert, &h.id, h.timestamp, &h.signature, b"<edXML/>", later),
                Err(WebhookError::Timestamp(_))
            ));
            // Several signatures (a key rotation): any valid one will do.
            let both = format!("v1,bm90IGl0 {}", h.signature);
            assert_eq!(
                verify(cert, &h.id, h.timestamp, &both, b"<edXML/>", now),
                Ok(())
            );
            assert_eq!(
                verify(cert, &h.id, h.timestamp, "v1,bm90IGl0", b"<edXML/>", now),
                Err(WebhookError::NoSignature)
            );
        }
    }
}
