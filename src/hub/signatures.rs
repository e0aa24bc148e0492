//! The hub's signature gate: the configured policy, the current trust store, and reloading it.
//!
//! Verification itself is [`crate::dsig`]; this decides what a verdict means for a submission
//! (`require` refuses, `record` keeps the verdict) and swaps trust stores on reload without
//! blocking verifications in flight (they keep the `Arc` they started with).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{self, SignaturePolicy};
use crate::dsig::{self, SigFailure, TrustError, TrustStore, Verified};

pub struct Signatures {
    /// The legal signatures on PDF attachments (their own policy and trust store).
    pub pdf: super::pdf_gate::PdfGate,
    policy: SignaturePolicy,
    trust_dir: PathBuf,
    crl_files: Vec<PathBuf>,
    cache_ttl: Duration,
    trust: RwLock<Arc<TrustStore>>,
}

/// The outcome for one packet under the policy.
pub enum Gate {
    Verified(Verified),
    /// Policy `record`: accepted with this failure as its verdict.
    Recorded(SigFailure),
}

impl Signatures {
    /// Loads the trust store named by the config. Under `record` a missing store is only a
    /// warning (every signer is then `cert_untrusted`); under `require` it is an error, since
    /// the hub would refuse every packet.
    pub fn load(
        cfg: &config::Signature,
        pdf: &config::PdfSignature,
    ) -> Result<Signatures, TrustError> {
        let ttl = Duration::from_secs(cfg.cache_secs);
        let trust = match TrustStore::load(&cfg.trust_dir, &cfg.crl_files, ttl) {
            Ok(t) => t,
            Err(e) if cfg.policy == SignaturePolicy::Record => {
                tracing::warn!(error = %e, "no signature trust store: every signer will be cert_untrusted");
                TrustStore::empty()
            }
            Err(e) => return Err(e),
        };
        Self::report(&trust);
        Ok(Signatures {
            pdf: super::pdf_gate::PdfGate::load(pdf, &cfg.trust_dir)?,
            policy: cfg.policy,
            trust_dir: cfg.trust_dir.clone(),
            crl_files: cfg.crl_files.clone(),
            cache_ttl: ttl,
            trust: RwLock::new(Arc::new(trust)),
        })
    }

    fn report(trust: &TrustStore) {
        for e in &trust.crl_errors {
            tracing::error!(error = %e, "CRL not loaded");
            metrics::counter!("lienthong_crl_load_errors_total").increment(1);
        }
        if trust.anchor_count() == 0 {
            tracing::warn!("the signature trust store holds no certificate");
        }
        tracing::info!(
            anchors = trust.anchor_count(),
            crls = trust.crl_count(),
            "signature trust store loaded"
        );
    }

    /// Re-reads the trust anchors and CRLs (on SIGHUP, with the directory). On error the
    /// current store stays.
    pub fn reload(&self) -> Result<(), TrustError> {
        let fresh = TrustStore::load(&self.trust_dir, &self.crl_files, self.cache_ttl)?;
        Self::report(&fresh);
        *self.trust.write().expect("trust lock") = Arc::new(fresh);
        self.pdf.reload()
    }

    pub fn policy(&self) -> SignaturePolicy {
        self.policy
    }

    /// Verifies `body` as sent by `from` (whose directory pins are `pins`). `Err` means refuse.
    /// `signed` is what the edXML parse saw (a Signature in the header): without one there is
    /// nothing to read again.
    pub fn check(
        &self,
        body: &[u8],
        signed: bool,
        from: &str,
        pins: &[String],
    ) -> Result<Gate, SigFailure> {
        let verdict = if signed {
            let trust = self.trust.read().expect("trust lock").clone();
            dsig::verify_for_sender(body, from, pins, &trust, SystemTime::now())
        } else {
            Err(SigFailure::missing())
        };
        match verdict {
            Ok(v) => Ok(Gate::Verified(v)),
            Err(f) if self.policy == SignaturePolicy::Record => Ok(Gate::Recorded(f)),
            Err(f) => Err(f),
        }
    }
}
