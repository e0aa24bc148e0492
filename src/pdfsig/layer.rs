//! Whose signature it is: a person's (the competent signer) or an organisation's (the
//! issuing agency), read from the certificate subject as Vietnamese CAs write it.
//!
//! Personal certificates carry a personal identity number in the subject, usually in `UID`:
//! `CCCD:` (citizen identity card), `CMND:` (the older identity card) or `HC:` (passport).
//! Organisation certificates carry the agency's tax or budget-relationship code: `MST:` or
//! `MNS:`, and no personal number.

use serde::{Deserialize, Serialize};
use x509_cert::Certificate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Personal,
    Organisation,
    Unknown,
}

const PERSONAL: [&str; 3] = ["CCCD:", "CMND:", "HC:"];
const ORGANISATION: [&str; 2] = ["MST:", "MNS:"];

/// The text of every attribute of the certificate's subject.
pub(super) fn subject_texts(cert: &Certificate) -> Vec<String> {
    cert.tbs_certificate()
        .subject()
        .iter()
        .filter_map(|atv| text(&atv.value))
        .collect()
}

/// A directory string's text (UTF8String, PrintableString or IA5String).
pub(super) fn text(v: &der::Any) -> Option<String> {
    use der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    if let Ok(s) = Utf8StringRef::try_from(v) {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = PrintableStringRef::try_from(v) {
        return Some(s.as_str().to_owned());
    }
    Ia5StringRef::try_from(v)
        .ok()
        .map(|s| s.as_str().to_owned())
}

/// A certificate whose subject shows no layer (or shows a misleading one), named in the
/// configuration (`[[pdf_signature.layer]]`): by issuer and serial number, or by subject
/// (RFC 4514 strings as `openssl x509 -nameopt RFC2253` prints them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerOverride {
    #[serde(default)]
    pub issuer: Option<String>,
    /// Hex, with or without colons.
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    pub layer: Layer,
}

impl LayerOverride {
    fn matches(&self, cert: &Certificate) -> bool {
        let tbs = cert.tbs_certificate();
        let hex = |s: &str| {
            s.chars()
                .filter(|c| c.is_ascii_hexdigit())
                .collect::<String>()
                .trim_start_matches('0')
                .to_ascii_lowercase()
        };
        let by_serial = match (&self.issuer, &self.serial) {
            (Some(issuer), Some(serial)) => {
                tbs.issuer().to_string() == *issuer
                    && hex(serial) == hex(&crate::digest::hex(tbs.serial_number().as_bytes()))
            }
            _ => false,
        };
        let by_subject = self
            .subject
            .as_ref()
            .is_some_and(|s| tbs.subject().to_string() == *s);
        by_serial || by_subject
    }
}

/// The layer of a signer certificate: as configured for it, else read from its subject.
pub fn classify_with(cert: &Certificate, overrides: &[LayerOverride]) -> Layer {
    match overrides.iter().find(|o| o.matches(cert)) {
        Some(o) => o.layer,
        None => classify(cert),
    }
}

/// The layer a certificate's subject shows.
pub fn classify(cert: &Certificate) -> Layer {
    let texts = subject_texts(cert);
    let has = |prefixes: &[&str]| {
        texts
            .iter()
            .any(|t| prefixes.iter().any(|p| t.trim_start().starts_with(p)))
    };
    if has(&PERSONAL) {
        Layer::Personal
    } else if has(&ORGANISATION) {
        Layer::Organisation
    } else {
        Layer::Unknown
    }
}
