//! Signing a packet as an agency does before sending it (`lienthong sign`).
//!
//! The Signature goes last in `edXMLHeader`, in the xmldsig namespace (so generic tools such
//! as xmlsec1 find it), with one `Reference URI=""`: enveloped-signature then exclusive C14N,
//! SHA-256 digest; `SignedInfo` is canonicalized with exclusive C14N too, so it does not
//! depend on the packet's namespace declarations. RSA keys sign rsa-sha256, P-256 keys
//! ecdsa-sha256. The digest is computed with the same canonicalizer the hub verifies with,
//! and the tests check the result with xmlsec1.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use quick_xml::Reader;
use quick_xml::events::Event;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::c14n::{self, C14n, Subset};
use super::{DSIG_NS, alg};
use crate::edxml::{self, EdxmlError};

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(String),
    #[error("the packet is not valid edXML: {0}")]
    Edxml(#[from] EdxmlError),
    #[error("the packet already carries a Signature in edXMLHeader")]
    AlreadySigned,
    #[error("cannot sign: {0}")]
    Other(String),
}

/// The signature methods `lienthong sign` produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256 (RSA keys; what CA-issued signing tokens hold).
    RsaSha256,
    /// ECDSA P-256 with SHA-256 (P-256 keys).
    EcdsaSha256,
}

impl SignAlgorithm {
    pub fn uri(self) -> &'static str {
        match self {
            SignAlgorithm::RsaSha256 => alg::RSA_SHA256,
            SignAlgorithm::EcdsaSha256 => alg::ECDSA_SHA256,
        }
    }
}

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A signing key with its certificate chain (signer first).
pub struct Signer {
    key: Key,
    chain: Vec<CertificateDer<'static>>,
    rng: SystemRandom,
}

fn parse_key(der: &PrivateKeyDer<'_>) -> Result<Key, SignError> {
    let bytes = der.secret_der();
    let ec = || {
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
            .or_else(|_| {
                EcdsaKeyPair::from_private_key_der(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    bytes,
                )
            })
            .map(Key::Ec)
    };
    let rsa = || {
        RsaKeyPair::from_pkcs8(bytes)
            .or_else(|_| RsaKeyPair::from_der(bytes))
            .map(Key::Rsa)
    };
    rsa().or_else(|_| ec()).map_err(|_| {
        SignError::Key(
            "the key is neither an RSA key (2048 bits or more) nor an EC P-256 key".into(),
        )
    })
}

impl Signer {
    /// A signer from PEM text: the certificate file may hold the chain (signer first).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Signer, SignError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| SignError::Key(format!("bad certificate PEM: {e:?}")))?;
        if chain.is_empty() {
            return Err(SignError::Key(
                "no certificate in the certificate file".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| SignError::Key(format!("bad key PEM: {e:?}")))?;
        let key = parse_key(&key)?;
        let signer = Signer {
            key,
            chain,
            rng: SystemRandom::new(),
        };
        signer.check_pair()?;
        Ok(signer)
    }

    pub fn load(cert: &Path, key: &Path) -> Result<Signer, SignError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| SignError::Io {
                path: p.display().to_string(),
                source,
            })
        };
        Signer::from_pem(&read(cert)?, &read(key)?)
    }

    /// Refuses a key that does not belong to the certificate (a common packaging mistake
    /// that would otherwise surface only as `signature_invalid` at the hub).
    fn check_pair(&self) -> Result<(), SignError> {
        use der::Decode;
        let cert = x509_cert::Certificate::from_der(&self.chain[0])
            .map_err(|e| SignError::Key(format!("the certificate is not valid DER: {e}")))?;
        let cert_key = cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes();
        let ours = match &self.key {
            Key::Rsa(k) => k.public_key().as_ref().to_vec(),
            Key::Ec(k) => k.public_key().as_ref().to_vec(),
        };
        if cert_key != ours.as_slice() {
            return Err(SignError::Key(
                "the private key does not belong to the certificate".into(),
            ));
        }
        Ok(())
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SignAlgorithm {
        match self.key {
            Key::Rsa(_) => SignAlgorithm::RsaSha256,
            Key::Ec(_) => SignAlgorithm::EcdsaSha256,
        }
    }

    /// The JWS `alg` of this key: `RS256` or `ES256` (raw `r‖s`, as JWS wants).
    pub fn jws_alg(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "RS256",
            Key::Ec(_) => "ES256",
        }
    }

    /// The signer certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The certificate file's chain, signer first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Signs arbitrary bytes with RSA PKCS#1 v1.5 SHA-256 or ECDSA P-256 SHA-256 (`r‖s`).
    pub fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let fail = |_| SignError::Other("the key refused to sign".into());
        match &self.key {
            Key::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, msg, &mut sig)
                    .map_err(fail)?;
                Ok(sig)
            }
            Key::Ec(k) => Ok(k.sign(&self.rng, msg).map_err(fail)?.as_ref().to_vec()),
        }
    }

    /// Returns the packet with an enveloped Signature added as the last child of
    /// `edXMLHeader`. The rest of the packet is left byte for byte as it was.
    pub fn sign(&self, packet: &[u8]) -> Result<Vec<u8>, SignError> {
        let parsed = edxml::parse(packet)?;
        if parsed.has_signature {
            return Err(SignError::AlreadySigned);
        }
        let at = header_end(packet)?;
        let b64 = base64::engine::general_purpose::STANDARD;

        // The reference digest: the packet without the Signature is the packet as given.
        let c14n = C14n::from_uri(C14n::EXCLUSIVE, None).expect("known method");
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        c14n::canonicalize(
            packet,
            Subset::Document { exclude: None },
            &c14n,
            &mut |b| ctx.update(b),
        )
        .map_err(|e| SignError::Other(e.to_string()))?;
        let digest = b64.encode(ctx.finish().as_ref());

        let signed_info = format!(
            concat!(
                "<SignedInfo>",
                "<CanonicalizationMethod Algorithm=\"{c14n}\"/>",
                "<SignatureMethod Algorithm=\"{method}\"/>",
                "<Reference URI=\"\"><Transforms>",
                "<Transform Algorithm=\"{enveloped}\"/>",
                "<Transform Algorithm=\"{c14n}\"/>",
                "</Transforms>",
                "<DigestMethod Algorithm=\"{sha256}\"/>",
                "<DigestValue>{digest}</DigestValue>",
                "</Reference></SignedInfo>"
            ),
            c14n = C14n::EXCLUSIVE,
            method = self.algorithm().uri(),
            enveloped = alg::ENVELOPED,
            sha256 = alg::SHA256,
            digest = digest,
        );
        let open = format!("<Signature xmlns=\"{DSIG_NS}\">");
        let certs: String = self
            .chain
            .iter()
            .map(|c| format!("<X509Certificate>{}</X509Certificate>", b64.encode(c)))
            .collect();
        let assemble = |value: &str| {
            let mut out = Vec::with_capacity(packet.len() + 4096);
            out.extend_from_slice(&packet[..at]);
            out.extend_from_slice(open.as_bytes());
            out.extend_from_slice(signed_info.as_bytes());
            out.extend_from_slice(b"<SignatureValue>");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"</SignatureValue><KeyInfo><X509Data>");
            out.extend_from_slice(certs.as_bytes());
            out.extend_from_slice(b"</X509Data></KeyInfo></Signature>");
            out.extend_from_slice(&packet[at..]);
            out
        };

        // SignedInfo is canonicalized in place, as a verifier will.
        let draft = assemble("");
        let mut canonical = Vec::with_capacity(signed_info.len() + 128);
        c14n::canonicalize(
            &draft,
            Subset::Element {
                start: at + open.len(),
            },
            &c14n,
            &mut |b| canonical.extend_from_slice(b),
        )
        .map_err(|e| SignError::Other(e.to_string()))?;
        let value = b64.encode(self.sign_bytes(&canonical)?);
        Ok(assemble(&value))
    }
}

/// Byte offset of the `</edXMLHeader>` end tag (where the Signature goes).
fn header_end(packet: &[u8]) -> Result<usize, SignError> {
    let mut reader = Reader::from_reader(packet);
    let mut depth = 0usize;
    let mut in_header = false;
    loop {
        let pos = reader.buffer_position() as usize;
        match reader
            .read_event()
            .map_err(|e| SignError::Other(e.to_string()))?
        {
            Event::Start(e) => {
                depth += 1;
                if depth == 3 && e.local_name().as_ref() == b"edXMLHeader" {
                    in_header = true;
                }
            }
            Event::End(_) => {
                if depth == 3 && in_header {
                    return Ok(pos);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Err(SignError::Other(
        "the packet has no edXMLHeader element with content".into(),
    ))
}
