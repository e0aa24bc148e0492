//! The signature trust store: anchors from `certs/trust/*.pem`, CRLs, and a verdict cache.
//!
//! Separate from the TLS client CA on purpose: who may connect (agency systems) and who may
//! sign official documents (CA-issued signing certificates of officials and agencies) are
//! decided by different authorities. Chains are built by rustls-webpki with the same crypto
//! provider as TLS. Chain verdicts are cached per certificate fingerprint: an agency signs
//! thousands of packets with one certificate, and building its chain each time is waste.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use der::Decode;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyPurposeIdIter, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_cert::ext::pkix::KeyUsage;

use super::{SigCode, SigFailure};

/// The most chain verdicts kept; the cache is emptied when it is full (simple and bounded).
const CACHE_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("signature trust store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signature trust store {path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// A chain verdict and until when it may be reused.
type CachedVerdict = (Result<(), SigFailure>, Instant);

/// (certificate SHA-256, signature method).
type KeyId = ([u8; 32], u8);

/// A signer certificate's public key, parsed once, with what a verdict reports about it.
pub struct SignerKey {
    pub key: aws_lc_rs::signature::ParsedPublicKey,
    /// "RSA" or "EC P-256", for messages.
    pub kind: &'static str,
    pub common_name: Option<String>,
    pub cert_sha256: String,
}

/// Trust anchors, CRLs and cached chain verdicts. Immutable once loaded except for the cache;
/// a reload builds a new store (and so an empty cache).
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    cache: Mutex<HashMap<[u8; 32], CachedVerdict>>,
    /// Parsed signer keys by (certificate SHA-256, signature method): parsing the certificate
    /// and setting up an RSA key cost more than the signature check itself.
    keys: Mutex<HashMap<KeyId, Arc<SignerKey>>>,
    ttl: Duration,
    /// CRL files that could not be read (logged and counted by the caller; never fatal).
    pub crl_errors: Vec<String>,
}

/// webpki checks extended key usage for TLS; document signing certificates carry whatever
/// EKUs their CA chose, and the issue is their *key usage*, checked separately.
struct AnyExtendedKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, _: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

fn is_pem_or_der(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Reads every CRL in a PEM or DER file.
pub(crate) fn read_crls(path: &Path) -> Result<Vec<OwnedCertRevocationList>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let ders: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad PEM: {e:?}"))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if ders.is_empty() {
        return Err("no CRL in the file".into());
    }
    ders.iter()
        .map(|d| OwnedCertRevocationList::from_der(d.as_ref()).map_err(|e| format!("{e:?}")))
        .collect()
}

impl TrustStore {
    /// A store that trusts nothing (every signer is `cert_untrusted`).
    pub fn empty() -> TrustStore {
        TrustStore {
            anchors: Vec::new(),
            crls: Vec::new(),
            cache: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(300),
            crl_errors: Vec::new(),
        }
    }

    /// Loads every `*.pem`/`*.crt`/`*.der` certificate in `dir` as a trust anchor and the
    /// given CRL files. A missing or unreadable directory is an error; a CRL that cannot be
    /// read is reported in [`TrustStore::crl_errors`] and skipped.
    pub fn load(
        dir: &Path,
        crl_files: &[PathBuf],
        ttl: Duration,
    ) -> Result<TrustStore, TrustError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TrustError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_pem_or_der(p, &["pem", "crt", "cer", "der"]))
            .collect();
        files.sort();
        let mut anchors = Vec::new();
        for path in files {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let ders: Vec<CertificateDer<'static>> = if bytes.starts_with(b"-----") {
                CertificateDer::pem_slice_iter(&bytes)
                    .collect::<Result<_, _>>()
                    .map_err(|e| TrustError::Invalid {
                        path: path.clone(),
                        why: format!("bad PEM: {e:?}"),
                    })?
            } else {
                vec![CertificateDer::from(bytes)]
            };
            for der in ders {
                let anchor =
                    webpki::anchor_from_trusted_cert(&der).map_err(|e| TrustError::Invalid {
                        path: path.clone(),
                        why: format!("not a usable certificate: {e:?}"),
                    })?;
                anchors.push(anchor.to_owned());
            }
        }
        let mut crls = Vec::new();
        let mut crl_errors = Vec::new();
        for path in crl_files {
            match read_crls(path) {
                Ok(list) => crls.extend(list.into_iter().map(CertRevocationList::from)),
                Err(why) => crl_errors.push(format!("{}: {why}", path.display())),
            }
        }
        Ok(TrustStore {
            anchors,
            crls,
            cache: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            ttl,
            crl_errors,
        })
    }

    /// The parsed key of a signer certificate for a signature method, built by `build` on a
    /// miss. Failures are not cached (they are rare and cheap to recompute).
    pub(super) fn signer_key(
        &self,
        fingerprint: [u8; 32],
        method: u8,
        build: impl FnOnce() -> Result<SignerKey, SigFailure>,
    ) -> Result<Arc<SignerKey>, SigFailure> {
        if let Some(k) = self
            .keys
            .lock()
            .expect("key cache")
            .get(&(fingerprint, method))
        {
            return Ok(k.clone());
        }
        let key = Arc::new(build()?);
        let mut keys = self.keys.lock().expect("key cache");
        if keys.len() >= CACHE_MAX {
            keys.clear();
        }
        keys.insert((fingerprint, method), key.clone());
        Ok(key)
    }

    pub fn anchor_count(&self) -> usize {
        self.anchors.len()
    }

    pub fn crl_count(&self) -> usize {
        self.crls.len()
    }

    /// Checks that `leaf` may sign documents: it chains through `intermediates` to an anchor,
    /// every certificate is valid at `now` and not revoked, and the leaf's key usage allows
    /// digitalSignature or nonRepudiation. Cached per fingerprint of the chain given.
    pub fn check(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<(), SigFailure> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(leaf);
        for i in intermediates {
            ctx.update(&(i.len() as u64).to_be_bytes());
            ctx.update(i);
        }
        let key: [u8; 32] = ctx
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let instant = Instant::now();
        if let Some((verdict, until)) = self.cache.lock().expect("trust cache").get(&key)
            && *until > instant
        {
            metrics::counter!("lienthong_signature_chain_cache_total", "result" => "hit")
                .increment(1);
            return verdict.clone();
        }
        metrics::counter!("lienthong_signature_chain_cache_total", "result" => "miss").increment(1);
        let (verdict, valid_for) = self.check_uncached(leaf, intermediates, now);
        let until = instant + valid_for.min(self.ttl);
        let mut cache = self.cache.lock().expect("trust cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (verdict.clone(), until));
        verdict
    }

    /// The verdict, and how long it may be cached (never past the leaf's notAfter).
    fn check_uncached(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        now: SystemTime,
    ) -> (Result<(), SigFailure>, Duration) {
        let untrusted = |msg: String| (Err(SigFailure::new(SigCode::CertUntrusted, msg)), self.ttl);
        let cert = match x509_cert::Certificate::from_der(leaf) {
            Ok(c) => c,
            Err(e) => {
                return (
                    Err(SigFailure::new(
                        SigCode::Malformed,
                        format!("the signer certificate is not valid DER: {e}"),
                    )),
                    self.ttl,
                );
            }
        };
        let remaining = cert
            .tbs_certificate()
            .validity()
            .not_after
            .to_system_time()
            .duration_since(now)
            .unwrap_or_default();
        match cert.tbs_certificate().get_extension::<KeyUsage>() {
            Ok(Some((_, ku))) if ku.digital_signature() || ku.non_repudiation() => {}
            Ok(Some(_)) => {
                return untrusted(
                    "the signer certificate's key usage allows neither digitalSignature nor nonRepudiation".into(),
                );
            }
            Ok(None) => {
                return untrusted(
                    "the signer certificate has no key usage extension (digitalSignature or nonRepudiation is required)".into(),
                );
            }
            Err(e) => return untrusted(format!("unreadable key usage extension: {e}")),
        }
        let leaf_der = CertificateDer::from(leaf);
        let ee = match EndEntityCert::try_from(&leaf_der) {
            Ok(ee) => ee,
            Err(e) => return untrusted(format!("the signer certificate is not usable: {e:?}")),
        };
        let inter: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .with_expiration_policy(ExpirationPolicy::Ignore)
                .build()
        });
        let time = UnixTime::since_unix_epoch(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        let result = ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &inter,
            time,
            AnyExtendedKeyUsage,
            revocation,
            None,
        );
        match result {
            Ok(_) => (Ok(()), remaining),
            Err(e) => (Err(chain_failure(e)), self.ttl),
        }
    }
}

fn chain_failure(e: webpki::Error) -> SigFailure {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => SigFailure::new(
            SigCode::CertExpired,
            "the signer certificate (or one in its chain) has expired",
        ),
        E::CertNotValidYet { .. } => SigFailure::new(
            SigCode::CertExpired,
            "the signer certificate (or one in its chain) is not valid yet",
        ),
        E::CertRevoked => SigFailure::new(
            SigCode::CertRevoked,
            "a configured CRL revokes the signer certificate (or one in its chain)",
        ),
        E::UnknownIssuer => SigFailure::new(
            SigCode::CertUntrusted,
            "the signer certificate does not chain to the signature trust store",
        ),
        other => SigFailure::new(
            SigCode::CertUntrusted,
            format!("the signer certificate chain is not valid: {other:?}"),
        ),
    }
}
