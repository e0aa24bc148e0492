//! The edXML packet format (QCVN 102:2016/BTTTT, amended 2022): what the hub reads from a packet.
//!
//! The hub never rewrites a packet: it stores the submitted bytes as they are and keeps a
//! [`Packet`] summary beside them for routing and listing. This module only reads and composes;
//! it must never touch storage or the network.

mod attachments;
mod collected;
mod compose;
mod fields;
mod parse;

pub use attachments::{EncodedAttachment, attachments};
pub use compose::{Attachment, NewDocument, compose_document, compose_status};
pub use parse::{parse, parse_limited};

/// The edXML namespace every structural element must be in.
pub const NAMESPACE: &str = "http://www.mic.gov.vn/TBT/QCVN_102_2016";

/// What kind of packet this is: a document, or a status notice about one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A document (`edoc`): has `To` recipients.
    Edoc,
    /// A status notice: has `StatusCode` and `ResponseFor`, no `To`.
    Status,
    /// A notice from the hub itself (not edXML): a hub-signed JWS, e.g. that a document expired
    /// undelivered. Never submitted by agencies.
    Notice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Edoc => "edoc",
            Kind::Status => "status",
            Kind::Notice => "notice",
        }
    }
}

/// `ResponseFor`: the document a status notice (or a reply) answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFor {
    pub organ_id: String,
    pub document_id: String,
}

/// The routing-relevant summary of a valid packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: Kind,
    /// `From/OrganId`.
    pub from: String,
    /// `To/OrganId`, in packet order, without duplicates (empty for status packets).
    pub to: Vec<String>,
    /// `DocumentId` (documents); status packets have none.
    pub document_id: Option<String>,
    pub subject: Option<String>,
    /// `StatusCode` of a status packet (two digits, e.g. `01`).
    pub status_code: Option<String>,
    pub response_for: Vec<ResponseFor>,
    /// `TraceHeaderList/Bussiness/BussinessDocType`: 0 new, 1 revoke, 2 update, 3 replace.
    pub business_type: u8,
    /// `Bussiness/DocumentId`: the document an update (or revoke) acts on, when given.
    pub business_document_id: Option<String>,
    /// `BussinessDocumentInfo/ReceiverList/Receiver`: (OrganId, added) — ReceiverType 1 adds
    /// the agency as a recipient, 0 removes it.
    pub receiver_changes: Vec<(String, bool)>,
    /// `ReplacementInfoList/ReplacementInfo/DocumentId`: the documents a replacement replaces.
    pub replaces: Vec<String>,
    /// Whether `edXMLHeader` carries a `Signature` element (verification is a separate step).
    pub has_signature: bool,
    /// Number of `AttachmentEncoded/Attachment` elements.
    pub attachments: usize,
    /// `Bussiness/Paper` is 1: a paper copy is sent as well (the document is not
    /// electronic-only).
    pub paper: bool,
}

/// Why a packet was refused. Each variant has a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdxmlError {
    #[error("the body is not well-formed XML: {0}")]
    Malformed(String),
    #[error("the root element must be edXML in namespace {NAMESPACE}; found {0}")]
    WrongRoot(String),
    #[error("element {element} must be in namespace {NAMESPACE}, found {found}")]
    WrongNamespace { element: String, found: String },
    #[error("required field {0} is missing or empty")]
    MissingField(&'static str),
    #[error("field {field} is {len} characters long; the limit is {limit}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error(
        "{field} {value:?} is not a valid OrganId (at most 35 characters: digits, A-Z and dots)"
    )]
    InvalidOrganId { field: &'static str, value: String },
    #[error("{field} {value:?} is not valid: {why}")]
    InvalidField {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(
        "{0} appears more than once; it is single-valued, so the packet would have two readings"
    )]
    DuplicateField(String),
    #[error("the packet exceeds the limit {limit} = {max}")]
    LimitsExceeded { limit: &'static str, max: usize },
    #[error("element {0} is not XML-DSig: a Signature holds only signature elements")]
    SignatureContent(String),
    #[error("reading was cancelled: the request was given up")]
    Cancelled,
}

impl EdxmlError {
    /// The stable error code the API returns for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            EdxmlError::Malformed(_) => "malformed_xml",
            EdxmlError::WrongRoot(_) => "not_edxml",
            EdxmlError::WrongNamespace { .. } => "wrong_namespace",
            EdxmlError::MissingField(_) => "missing_field",
            EdxmlError::FieldTooLong { .. } => "field_too_long",
            EdxmlError::InvalidOrganId { .. } => "invalid_organ_id",
            EdxmlError::InvalidField { .. } => "invalid_field",
            EdxmlError::DuplicateField(_) => "duplicate_field",
            EdxmlError::LimitsExceeded { .. } => "limits_exceeded",
            EdxmlError::SignatureContent(_) => "malformed_signature",
            EdxmlError::Cancelled => "request_cancelled",
        }
    }
}

/// Bounds on a packet's structure (`[edxml]` in the configuration). They keep the work of
/// reading, canonicalizing and verifying a packet linear in its size: without them, namespace
/// declarations in scope multiply with elements, attributes with attributes, and depth with
/// everything that walks the open elements.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Elements open at once, the root included.
    pub max_depth: usize,
    /// Attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Namespace declarations in scope at any element.
    pub max_namespace_declarations: usize,
    /// Elements inside `edXMLHeader`.
    pub max_header_elements: usize,
    /// Elements in the whole packet. Attachments are base64 text, so real packets have a few
    /// hundred; this bounds the per-element work of a 64 MiB body (reading 16 million empty
    /// elements, each resolved against the namespaces in scope, costs seconds).
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 64,
            max_attributes: 64,
            max_namespace_declarations: 16,
            max_header_elements: 10_000,
            max_elements: 100_000,
        }
    }
}

/// An OrganId per Quyết định 20/2020/QĐ-TTg and the 2022 amendment: 1–35 characters, digits,
/// upper-case A–Z and dots, not starting or ending with a dot.
pub fn is_valid_organ_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 35
        && !id.starts_with('.')
        && !id.ends_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organ_id_syntax() {
        assert!(is_valid_organ_id("000.00.31.H14"));
        assert!(is_valid_organ_id("G22"));
        assert!(!is_valid_organ_id("vxp.saas.03"));
        assert!(!is_valid_organ_id("null"));
        assert!(!is_valid_organ_id(""));
        assert!(!is_valid_organ_id(".000"));
        assert!(!is_valid_organ_id(&"1".repeat(36)));
        assert!(!is_valid_organ_id("000 00"));
    }
}
