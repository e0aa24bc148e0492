//! The hub's PDF signature gate: every PDF attachment of a document packet is checked for
//! the two legal signatures (`pdfsig`), under the configured policy (`[pdf_signature]`).
//! Its trust store is its own (it may differ from the XML signatures'), reloaded with the
//! directory on SIGHUP.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::config::{self, PdfPolicy};
use crate::dsig::{TrustError, TrustStore};
use crate::edxml::{self, Kind, Packet};
use crate::pdfsig::{self, Verdict};
use crate::store::PdfCheck;

/// How long a signer chain's verdict is cached.
const CHAIN_CACHE: std::time::Duration = std::time::Duration::from_secs(300);

pub struct PdfGate {
    policy: PdfPolicy,
    trust_dir: PathBuf,
    crl_files: Vec<PathBuf>,
    limits: pdfsig::Limits,
    layers: Vec<pdfsig::LayerOverride>,
    trust: RwLock<Arc<TrustStore>>,
}

/// Why a document was refused under policy `require`: its main PDF's verdict.
#[derive(Debug, Clone)]
pub struct NotTwoLayer {
    pub name: String,
    pub verdict: &'static str,
    pub message: String,
}

impl PdfGate {
    /// Loads the PDF trust store (`trust_dir`, else the XML signatures' `fallback_dir`). A
    /// missing store is a warning under `record` (every signer is then `chain_untrusted`)
    /// and an error under `require`.
    pub fn load(
        cfg: &config::PdfSignature,
        fallback_dir: &std::path::Path,
    ) -> Result<PdfGate, TrustError> {
        let trust_dir = if cfg.trust_dir.as_os_str().is_empty() {
            fallback_dir.to_owned()
        } else {
            cfg.trust_dir.clone()
        };
        let trust = match TrustStore::load(&trust_dir, &cfg.crl_files, CHAIN_CACHE) {
            Ok(t) => t,
            Err(e) if cfg.policy != PdfPolicy::Require => {
                if cfg.policy == PdfPolicy::Record {
                    tracing::warn!(error = %e, "no PDF signature trust store: every PDF signer will be chain_untrusted");
                }
                TrustStore::empty()
            }
            Err(e) => return Err(e),
        };
        Ok(PdfGate {
            policy: cfg.policy,
            trust_dir,
            crl_files: cfg.crl_files.clone(),
            limits: pdfsig::Limits {
                max_bytes: cfg.max_pdf_bytes,
                ..Default::default()
            },
            layers: cfg.layer.clone(),
            trust: RwLock::new(Arc::new(trust)),
        })
    }

    /// Re-reads the trust anchors and CRLs; on error the current store stays.
    pub fn reload(&self) -> Result<(), TrustError> {
        if self.policy == PdfPolicy::Off {
            return Ok(());
        }
        let fresh = TrustStore::load(&self.trust_dir, &self.crl_files, CHAIN_CACHE)?;
        *self.trust.write().expect("pdf trust lock") = Arc::new(fresh);
        Ok(())
    }

    /// The verdict on each PDF attachment of a new document from an agency whose
    /// organisation certificate carries one of `names` (empty: not checked). `Err` under
    /// policy `require` when the main (first) PDF is not two-layer signed.
    pub fn check(
        &self,
        body: &[u8],
        packet: &Packet,
        names: &[String],
    ) -> Result<Vec<PdfCheck>, NotTwoLayer> {
        if self.policy == PdfPolicy::Off || packet.kind != Kind::Edoc || packet.attachments == 0 {
            return Ok(vec![]);
        }
        let trust = self.trust.read().expect("pdf trust lock").clone();
        let expect = pdfsig::Expect {
            organisation_names: names,
            layers: &self.layers,
        };
        let mut out = Vec::new();
        let mut main_verdict = None;
        for a in edxml::attachments(body).into_iter().filter(|a| a.is_pdf()) {
            let report = match a.decode() {
                Ok(pdf) => pdfsig::verify(&pdf, &trust, &self.limits, &expect, SystemTime::now()),
                Err(why) => pdfsig::PdfReport {
                    verdict: Verdict::ParseError,
                    message: why,
                    signatures: vec![],
                },
            };
            metrics::counter!("lienthong_pdf_verdicts_total", "verdict" => report.verdict.as_str())
                .increment(1);
            main_verdict.get_or_insert(report.verdict);
            out.push(PdfCheck {
                name: a.name,
                verdict: report.verdict.as_str().to_owned(),
                message: report.message,
            });
        }
        match (out.first(), main_verdict) {
            (Some(main), Some(v))
                if self.policy == PdfPolicy::Require && v != Verdict::TwoLayer =>
            {
                Err(NotTwoLayer {
                    name: main.name.clone(),
                    verdict: v.as_str(),
                    message: main.message.clone(),
                })
            }
            _ => Ok(out),
        }
    }
}
