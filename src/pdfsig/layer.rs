//! Whose signature it is: a person's (the competent signer) or an organisation's (the
//! issuing agency), read from the certificate subject as Vietnamese CAs write it.
//!
//! Personal certificates carry a personal identity number in the subject, usually in `UID`:
//! `CCCD:` (citizen identity card), `CMND:` (the older identity card) or `HC:` (passport).
//! Organisation certificates carry the agency's tax or budget-relationship code: `MST:` or
//! `MNS:`, and no personal number.

use serde::Serialize;
use x509_cert::Certificate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// The layer of a signer certificate.
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
