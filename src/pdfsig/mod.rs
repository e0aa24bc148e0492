//! PDF signatures as Decree 30/2020/NĐ-CP requires them on an electronic document: the
//! competent person's personal signature, then the issuing agency's organisation signature
//! over a later revision that covers it (docs/pdf-signatures.md).
//!
//! For each signature field: the byte range ([`byterange`]), the CMS SignedData over it
//! ([`cms_check`]), the signer's chain to the PDF trust store, the signer's layer
//! ([`layer`]); then what changed after each signed revision ([`revisions`]); then one
//! verdict for the file. Parsing is lopdf's, under a size limit and `catch_unwind` (a crafted
//! PDF must not take the hub down).

mod byterange;
mod cms_check;
mod fields;
mod layer;
mod revisions;
mod timestamp;

use std::time::SystemTime;

use serde::Serialize;

use crate::dsig::TrustStore;
pub use layer::{Layer, LayerOverride};

/// The verdict on a PDF, or why a signature does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    TwoLayer,
    NoSignature,
    OnlyPersonal,
    OnlyOrganisation,
    OrderReversed,
    ByterangeMalformed,
    DigestMismatch,
    SignatureInvalid,
    ChainUntrusted,
    Revoked,
    DisallowedChange,
    OrganisationMismatch,
    Unsupported,
    ParseError,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::TwoLayer => "two_layer",
            Verdict::NoSignature => "no_signature",
            Verdict::OnlyPersonal => "only_personal",
            Verdict::OnlyOrganisation => "only_organisation",
            Verdict::OrderReversed => "order_reversed",
            Verdict::ByterangeMalformed => "byterange_malformed",
            Verdict::DigestMismatch => "digest_mismatch",
            Verdict::SignatureInvalid => "signature_invalid",
            Verdict::ChainUntrusted => "chain_untrusted",
            Verdict::Revoked => "revoked",
            Verdict::DisallowedChange => "disallowed_change",
            Verdict::OrganisationMismatch => "organisation_mismatch",
            Verdict::Unsupported => "unsupported",
            Verdict::ParseError => "parse_error",
        }
    }
}

/// Why something does not hold: a verdict code and words for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub code: Verdict,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(code: Verdict, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
        }
    }
}

/// One signature of a PDF, as read and checked.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureReport {
    /// The field's fully qualified name.
    pub field: String,
    pub sub_filter: String,
    pub byte_range: Vec<i64>,
    /// Where the revision this signature signs ends (a byte offset of the file).
    pub revision_end: usize,
    /// The signer certificate's subject CN, O and layer.
    pub signer: Option<String>,
    pub organisation: Option<String>,
    pub layer: Layer,
    pub digest_algorithm: Option<&'static str>,
    /// SHA-1: accepted, but reported as weak.
    pub weak_digest: bool,
    /// The signing time the signature claims (RFC 3339).
    pub signing_time: Option<String>,
    /// The time a trusted RFC 3161 time stamp puts on the signature (RFC 3339); when present,
    /// the certificate's validity is checked at it, else at the claimed signing time.
    pub timestamp: Option<String>,
    /// Why this signature does not hold (`None`: it does).
    pub problem: Option<Problem>,
}

/// The verdict on one PDF and its signatures, in revision order.
#[derive(Debug, Clone, Serialize)]
pub struct PdfReport {
    pub verdict: Verdict,
    pub message: String,
    pub signatures: Vec<SignatureReport>,
}

/// Bounds on the work one PDF may cause. One parse is linear in the file (and stream
/// inflation is capped), so the time a file can take is bounded by its size, the number of
/// signatures (each loads its revision once) and `max_duration`, checked between those steps
/// (with the request's cancellation).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_signatures: usize,
    pub max_duration: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 64 << 20,
            max_signatures: 16,
            max_duration: std::time::Duration::from_secs(10),
        }
    }
}

/// Whether the time for one PDF is up (or its request was given up).
fn out_of_time(started: std::time::Instant, limits: &Limits) -> Option<Problem> {
    if crate::cancel::cancelled() {
        return Some(Problem::new(Verdict::ParseError, "the check was cancelled"));
    }
    (started.elapsed() > limits.max_duration).then(|| {
        Problem::new(
            Verdict::ParseError,
            format!("checking took longer than {:?}", limits.max_duration),
        )
    })
}

/// What the file must show beyond valid signatures.
#[derive(Debug, Clone, Default)]
pub struct Expect<'a> {
    /// The names (certificate O or CN) the issuing agency signs under; empty: not checked.
    pub organisation_names: &'a [String],
    /// Layers configured for certificates whose subject does not show one.
    pub layers: &'a [LayerOverride],
}

/// Verifies the signatures of `pdf` (see the module docs). `now` is used when a signature
/// claims no signing time.
pub fn verify(
    pdf: &[u8],
    trust: &TrustStore,
    limits: &Limits,
    expect: &Expect<'_>,
    now: SystemTime,
) -> PdfReport {
    let fail = |p: Problem, signatures| PdfReport {
        verdict: p.code,
        message: p.message,
        signatures,
    };
    let started = std::time::Instant::now();
    if pdf.len() > limits.max_bytes {
        let msg = format!("the PDF is larger than {} bytes", limits.max_bytes);
        return fail(Problem::new(Verdict::ParseError, msg), vec![]);
    }
    let doc = match revisions::load(pdf) {
        Ok(d) => d,
        Err(p) => return fail(p, vec![]),
    };
    let found = match fields::signatures(&doc, limits.max_signatures) {
        Ok(f) => f,
        Err(p) => return fail(p, vec![]),
    };
    let mut signatures: Vec<SignatureReport> = Vec::with_capacity(found.len());
    for f in &found {
        if let Some(p) = out_of_time(started, limits) {
            return fail(p, signatures);
        }
        signatures.push(check_one(pdf, f, trust, expect.layers, now));
    }
    signatures.sort_by_key(|s| s.revision_end);
    let mut timed_out = None;
    for s in signatures.iter_mut().filter(|s| s.problem.is_none()) {
        timed_out = out_of_time(started, limits);
        if timed_out.is_some() {
            break;
        }
        if let Err(p) = revisions::changes_after(pdf, s.revision_end, &doc) {
            s.problem = Some(p);
        }
    }
    if let Some(p) = timed_out {
        return fail(p, signatures);
    }
    match judge(&signatures, expect) {
        Ok(message) => PdfReport {
            verdict: Verdict::TwoLayer,
            message,
            signatures,
        },
        Err(p) => fail(p, signatures),
    }
}

/// One signature: its byte range, then its CMS and chain.
fn check_one(
    pdf: &[u8],
    f: &fields::SigField,
    trust: &TrustStore,
    layers: &[LayerOverride],
    now: SystemTime,
) -> SignatureReport {
    let mut report = SignatureReport {
        field: f.name.clone(),
        sub_filter: f.sub_filter.clone(),
        byte_range: f.byte_range.clone(),
        revision_end: 0,
        signer: None,
        organisation: None,
        layer: Layer::Unknown,
        digest_algorithm: None,
        weak_digest: false,
        signing_time: None,
        timestamp: None,
        problem: None,
    };
    let ranges = match byterange::check(pdf, f) {
        Ok(r) => r,
        Err(p) => {
            report.revision_end = usize::MAX;
            report.problem = Some(p);
            return report;
        }
    };
    report.revision_end = ranges.revision_end;
    if !matches!(
        f.sub_filter.as_str(),
        "adbe.pkcs7.detached" | "ETSI.CAdES.detached"
    ) {
        let msg = format!("SubFilter {} is not supported", f.sub_filter);
        report.problem = Some(Problem::new(Verdict::Unsupported, msg));
        return report;
    }
    if let Err(p) = cms_check::check(pdf, &ranges, &f.contents, trust, layers, now, &mut report) {
        report.problem = Some(p);
    }
    report
}

/// The verdict over checked signatures (in revision order): the first problem, else the
/// layers and their order.
fn judge(signatures: &[SignatureReport], expect: &Expect<'_>) -> Result<String, Problem> {
    if signatures.is_empty() {
        return Err(Problem::new(
            Verdict::NoSignature,
            "the PDF has no signature",
        ));
    }
    if let Some(p) = signatures.iter().find_map(|s| s.problem.clone()) {
        return Err(p);
    }
    let of = |l: Layer| signatures.iter().filter(move |s| s.layer == l);
    let first_personal = of(Layer::Personal).map(|s| s.revision_end).min();
    let organisation = of(Layer::Organisation).collect::<Vec<_>>();
    let covering = organisation
        .iter()
        .filter(|o| first_personal.is_some_and(|p| o.revision_end > p))
        .collect::<Vec<_>>();
    match (first_personal, organisation.is_empty()) {
        (None, true) => Err(Problem::new(
            Verdict::Unsupported,
            "no signer certificate is recognisably personal or organisational",
        )),
        (Some(_), true) => Err(Problem::new(
            Verdict::OnlyPersonal,
            "only a personal signature: the issuing agency has not signed",
        )),
        (None, false) => Err(Problem::new(
            Verdict::OnlyOrganisation,
            "only an organisation signature: no competent person's signature",
        )),
        (Some(_), false) if covering.is_empty() => Err(Problem::new(
            Verdict::OrderReversed,
            "the organisation signed before the person: it must sign last, over the personal signature",
        )),
        (Some(_), false) => {
            let names = expect.organisation_names;
            let belongs = |o: &SignatureReport| {
                names.is_empty()
                    || [&o.organisation, &o.signer]
                        .iter()
                        .any(|n| n.as_ref().is_some_and(|n| names.contains(n)))
            };
            match covering.iter().find(|o| belongs(o)) {
                Some(o) => Ok(format!(
                    "personal signature, then {} ({}) over it",
                    o.signer.as_deref().unwrap_or("?"),
                    o.field
                )),
                None => Err(Problem::new(
                    Verdict::OrganisationMismatch,
                    "the organisation certificate does not belong to the sending agency",
                )),
            }
        }
    }
}
