//! What the edXML reader looks for: the element names it knows, where each field sits (by path
//! of local names), which fields may repeat, where the namespace is enforced, and the length
//! limits of the fields.

/// Length limits (in characters) one vendor enforces, believed to mirror the standard.
pub(super) const LIMIT_ORGAN_NAME: usize = 200;
pub(super) const LIMIT_ORGAN_ADD: usize = 250;
pub(super) const LIMIT_EMAIL: usize = 100;
pub(super) const LIMIT_PHONE: usize = 20;
pub(super) const LIMIT_CODE_NUMBER: usize = 11;
pub(super) const LIMIT_CODE_NOTATION: usize = 30;
pub(super) const LIMIT_PLACE: usize = 50;
pub(super) const LIMIT_SUBJECT: usize = 500;
pub(super) const LIMIT_FULL_NAME: usize = 50;
pub(super) const LIMIT_TYPER_NOTATION: usize = 10;
pub(super) const LIMIT_APPENDIX: usize = 250;
pub(super) const LIMIT_ATTACHMENT_NAME: usize = 200;
/// Not in the vendor's list; generous enough for `OrganId,yyyy/MM/dd,Number/Notation` and UUIDs.
pub(super) const LIMIT_DOCUMENT_ID: usize = 200;

/// Status codes of QCVN 102 (see DOMAIN.md).
pub(super) const STATUS_CODES: [&str; 9] = ["01", "02", "03", "04", "05", "06", "13", "15", "16"];

/// Element local names the reader gives meaning to; in any other namespace they are an error.
pub(super) const STRUCTURAL: &[&str] = &[
    "edXML",
    "edXMLEnvelope",
    "edXMLHeader",
    "MessageHeader",
    "From",
    "To",
    "DocumentId",
    "Subject",
    "StatusCode",
    "ResponseFor",
    "TraceHeaderList",
    "edXMLBody",
    "AttachmentEncoded",
];

/// A text field being collected, with where it goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    FromOrganId,
    ToOrganId,
    ResponseOrganId,
    ResponseDocumentId,
    DocumentId,
    Subject,
    StatusCode,
    BusinessDocType,
    /// `Bussiness/DocumentId`: the document an update acts on.
    BusinessDocumentId,
    ReceiverOrganId,
    ReceiverType,
    ReplacedDocumentId,
    Paper,
    /// Only checked against a length limit.
    Limited(&'static str, usize),
}

/// Every element name a path pattern below mentions. Paths hold these interned names (and
/// [`UNKNOWN`] for anything else), so walking a packet allocates nothing per element.
pub(super) const KNOWN: &[&str] = &[
    "edXMLEnvelope",
    "edXMLHeader",
    "MessageHeader",
    "From",
    "To",
    "OrganId",
    "OrganName",
    "OrganizationInCharge",
    "OrganAdd",
    "Email",
    "Telephone",
    "Fax",
    "ResponseFor",
    "DocumentId",
    "Subject",
    "Content",
    "StatusCode",
    "Code",
    "CodeNumber",
    "CodeNotation",
    "PromulgationInfo",
    "Place",
    "SignerInfo",
    "FullName",
    "OtherInfo",
    "TyperNotation",
    "Appendixes",
    "Appendix",
    "TraceHeaderList",
    "Bussiness",
    "BussinessDocType",
    "Paper",
    "edXMLBody",
    "edXMLManifest",
    "Reference",
    "AttachmentName",
    "AttachmentEncoded",
    "Attachment",
    "Signature",
    "BussinessDocumentInfo",
    "ReceiverList",
    "Receiver",
    "ReceiverType",
    "ReplacementInfoList",
    "ReplacementInfo",
];
pub(super) const UNKNOWN: &str = "?";
// Seen-child sets are bitmasks over KNOWN.
const _: () = assert!(KNOWN.len() <= 64);

pub(super) fn intern(local: &[u8]) -> (&'static str, Option<usize>) {
    match KNOWN.iter().position(|k| k.as_bytes() == local) {
        Some(i) => (KNOWN[i], Some(i)),
        None => (UNKNOWN, None),
    }
}

/// Header elements that may repeat under their parent; every other known element of the
/// header is single-valued, so a packet has one reading (one From, one DocumentId, …).
pub(super) const REPEATABLE: &[&str] = &[
    "To",
    "ResponseFor",
    "Appendix",
    "Receiver",
    "ReplacementInfo",
];

/// Whether an element whose parent path is `parent` is checked for repetition: the header and
/// the envelope's own children.
pub(super) fn single_checked(parent: &[&'static str]) -> bool {
    matches!(
        parent,
        [] | ["edXMLEnvelope"] | ["edXMLEnvelope", "edXMLHeader", ..]
    )
}

/// Whether an element under `parent` must be in the edXML namespace: everything inside
/// MessageHeader and TraceHeaderList (including Bussiness) is read by agency software, so no
/// look-alike may stand there in another namespace.
pub(super) fn ns_enforced(parent: &[&'static str]) -> bool {
    matches!(
        parent,
        [
            "edXMLEnvelope",
            "edXMLHeader",
            "MessageHeader" | "TraceHeaderList",
            ..
        ]
    )
}

/// Which field, if any, the element at `path` (local names below the root) holds.
pub(super) fn field_at(p: &[&'static str]) -> Option<Field> {
    let header = ["edXMLEnvelope", "edXMLHeader", "MessageHeader"];
    let business = [
        "edXMLEnvelope",
        "edXMLHeader",
        "TraceHeaderList",
        "Bussiness",
    ];
    if let Some(rest) = p.strip_prefix(&header[..]) {
        return message_header_field(rest);
    }
    if let Some(rest) = p.strip_prefix(&business[..]) {
        return match rest {
            ["BussinessDocType"] => Some(Field::BusinessDocType),
            ["Paper"] => Some(Field::Paper),
            ["DocumentId"] => Some(Field::BusinessDocumentId),
            ["ReplacementInfoList", "ReplacementInfo", "DocumentId"] => {
                Some(Field::ReplacedDocumentId)
            }
            _ => receiver_field(p),
        };
    }
    match p {
        [
            "edXMLEnvelope",
            "edXMLBody",
            "edXMLManifest",
            "Reference",
            "AttachmentName",
        ]
        | ["AttachmentEncoded", "Attachment", "AttachmentName"] => {
            Some(Field::Limited("AttachmentName", LIMIT_ATTACHMENT_NAME))
        }
        _ => None,
    }
}

/// A field of an update's `ReceiverList/Receiver`.
fn receiver_field(p: &[&'static str]) -> Option<Field> {
    if p.len() != RECEIVER.len() + 1 || !p.starts_with(&RECEIVER) {
        return None;
    }
    match p[RECEIVER.len()] {
        "OrganId" => Some(Field::ReceiverOrganId),
        "ReceiverType" => Some(Field::ReceiverType),
        _ => None,
    }
}

/// A field under `MessageHeader` (`rest`: the path below it).
fn message_header_field(rest: &[&'static str]) -> Option<Field> {
    let limited = |name, max| Some(Field::Limited(name, max));
    match rest {
        ["From", "OrganId"] => Some(Field::FromOrganId),
        ["To", "OrganId"] => Some(Field::ToOrganId),
        ["From" | "To", "OrganName"] => limited("OrganName", LIMIT_ORGAN_NAME),
        ["From" | "To", "OrganizationInCharge"] => {
            limited("OrganizationInCharge", LIMIT_ORGAN_NAME)
        }
        ["From" | "To", "OrganAdd"] => limited("OrganAdd", LIMIT_ORGAN_ADD),
        ["From" | "To", "Email"] => limited("Email", LIMIT_EMAIL),
        ["From" | "To", "Telephone"] => limited("Telephone", LIMIT_PHONE),
        ["From" | "To", "Fax"] => limited("Fax", LIMIT_PHONE),
        ["ResponseFor", "OrganId"] => Some(Field::ResponseOrganId),
        ["ResponseFor", "DocumentId"] => Some(Field::ResponseDocumentId),
        ["DocumentId"] => Some(Field::DocumentId),
        ["Subject"] => Some(Field::Subject),
        ["Content"] => limited("Content", LIMIT_SUBJECT),
        ["StatusCode"] => Some(Field::StatusCode),
        ["Code", "CodeNumber"] => limited("CodeNumber", LIMIT_CODE_NUMBER),
        ["Code", "CodeNotation"] => limited("CodeNotation", LIMIT_CODE_NOTATION),
        ["PromulgationInfo", "Place"] => limited("Place", LIMIT_PLACE),
        ["SignerInfo", "FullName"] => limited("FullName", LIMIT_FULL_NAME),
        ["OtherInfo", "TyperNotation"] => limited("TyperNotation", LIMIT_TYPER_NOTATION),
        ["OtherInfo", "Appendixes", "Appendix"] => limited("Appendix", LIMIT_APPENDIX),
        _ => None,
    }
}

/// Where `ReceiverList/Receiver` elements of an update packet sit.
pub(super) const RECEIVER: [&str; 7] = [
    "edXMLEnvelope",
    "edXMLHeader",
    "TraceHeaderList",
    "Bussiness",
    "BussinessDocumentInfo",
    "ReceiverList",
    "Receiver",
];
