//! JWS compact serialization (RFC 7515) for what the hub signs: receipts and audit tree heads.
//!
//! Why JWS: any JOSE library (or openssl plus base64) can check one offline with only the hub's
//! certificate; the payload stays readable JSON. The header names the key by the SHA-256 of the
//! hub's signing certificate (`kid`), so a verifier knows at once when it holds the wrong one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use der::Decode;

use crate::digest::sha256_hex;
use crate::dsig::Signer;

#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    #[error("not a JWS compact serialization: {0}")]
    Format(String),
    #[error("signed by another key (kid {found}); this certificate's is {expected}")]
    WrongKey { found: String, expected: String },
    #[error("unsupported alg {0}")]
    Alg(String),
    #[error("the signature does not verify with this certificate")]
    BadSignature,
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// Signs `payload` (serialized as compact JSON) with the hub's key.
pub fn sign(signer: &Signer, payload: &serde_json::Value) -> Result<String, JwsError> {
    let header = serde_json::json!({
        "alg": signer.jws_alg(),
        "typ": "JOSE",
        "kid": sha256_hex(signer.certificate()),
    });
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string())
    );
    let sig = signer
        .sign_bytes(input.as_bytes())
        .map_err(|e| JwsError::Sign(e.to_string()))?;
    Ok(format!("{input}.{}", B64.encode(sig)))
}

/// Decodes the payload without checking the signature (to show what a bad one claims).
pub fn payload_unverified(jws: &str) -> Result<serde_json::Value, JwsError> {
    let parts: Vec<&str> = jws.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(JwsError::Format(
            "expected three dot-separated parts".into(),
        ));
    }
    let bytes = B64
        .decode(parts[1])
        .map_err(|e| JwsError::Format(format!("payload: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| JwsError::Format(format!("payload: {e}")))
}

/// Verifies `jws` with the certificate `cert_der` and returns its payload.
pub fn verify(jws: &str, cert_der: &[u8]) -> Result<serde_json::Value, JwsError> {
    use aws_lc_rs::signature;
    let jws = jws.trim();
    let parts: Vec<&str> = jws.split('.').collect();
    if parts.len() != 3 {
        return Err(JwsError::Format(
            "expected three dot-separated parts".into(),
        ));
    }
    let header: serde_json::Value = B64
        .decode(parts[0])
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| JwsError::Format("unreadable header".into()))?;
    let expected = sha256_hex(cert_der);
    if let Some(kid) = header["kid"].as_str()
        && !kid.eq_ignore_ascii_case(&expected)
    {
        return Err(JwsError::WrongKey {
            found: kid.to_owned(),
            expected,
        });
    }
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| JwsError::Format(format!("certificate: {e}")))?;
    let key = cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let alg: &'static dyn signature::VerificationAlgorithm = match header["alg"].as_str() {
        Some("ES256") => &signature::ECDSA_P256_SHA256_FIXED,
        Some("RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
        other => return Err(JwsError::Alg(format!("{other:?}"))),
    };
    let sig = B64
        .decode(parts[2])
        .map_err(|e| JwsError::Format(format!("signature: {e}")))?;
    let input_len = parts[0].len() + 1 + parts[1].len();
    signature::UnparsedPublicKey::new(alg, key)
        .verify(&jws.as_bytes()[..input_len], &sig)
        .map_err(|_| JwsError::BadSignature)?;
    payload_unverified(jws)
}
