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
    if let Some(rest) = p.strip_prefix(&header[..]) {
        return match rest {
            ["From", "OrganId"] => Some(Field::FromOrganId),
            ["To", "OrganId"] => Some(Field::ToOrganId),
            ["From" | "To", "OrganName"] => Some(Field::Limited("OrganName", LIMIT_ORGAN_NAME)),
            ["From" | "To", "OrganizationInCharge"] => {
                Some(Field::Limited("OrganizationInCharge", LIMIT_ORGAN_NAME))
            }
            ["From" | "To", "OrganAdd"] => Some(Field::Limited("OrganAdd", LIMIT_ORGAN_ADD)),
            ["From" | "To", "Email"] => Some(Field::Limited("Email", LIMIT_EMAIL)),
            ["From" | "To", "Telephone"] => Some(Field::Limited("Telephone", LIMIT_PHONE)),
            ["From" | "To", "Fax"] => Some(Field::Limited("Fax", LIMIT_PHONE)),
            ["ResponseFor", "OrganId"] => Some(Field::ResponseOrganId),
            ["ResponseFor", "DocumentId"] => Some(Field::ResponseDocumentId),
            ["DocumentId"] => Some(Field::DocumentId),
            ["Subject"] => Some(Field::Subject),
            ["Content"] => Some(Field::Limited("Content", LIMIT_SUBJECT)),
            ["StatusCode"] => Some(Field::StatusCode),
            ["Code", "CodeNumber"] => Some(Field::Limited("CodeNumber", LIMIT_CODE_NUMBER)),
            ["Code", "CodeNotation"] => Some(Field::Limited("CodeNotation", LIMIT_CODE_NOTATION)),
            ["PromulgationInfo", "Place"] => Some(Field::Limited("Place", LIMIT_PLACE)),
            ["SignerInfo", "FullName"] => Some(Field::Limited("FullName", LIMIT_FULL_NAME)),
            ["OtherInfo", "TyperNotation"] => {
                Some(Field::Limited("TyperNotation", LIMIT_TYPER_NOTATION))
            }
            ["OtherInfo", "Appendixes", "Appendix"] => {
                Some(Field::Limited("Appendix", LIMIT_APPENDIX))
            }
            _ => None,
        };
    }
    match p {
        [
            "edXMLEnvelope",
            "edXMLHeader",
            "TraceHeaderList",
            "Bussiness",
            "BussinessDocType",
        ] => Some(Field::BusinessDocType),
        [
            "edXMLEnvelope",
            "edXMLHeader",
            "TraceHeaderList",
            "Bussiness",
            "Paper",
        ] => Some(Field::Paper),
        [
            "edXMLEnvelope",
            "edXMLHeader",
            "TraceHeaderList",
            "Bussiness",
            "DocumentId",
        ] => Some(Field::BusinessDocumentId),
        [.., leaf] if p.len() == RECEIVER.len() + 1 && p.starts_with(&RECEIVER) => match *leaf {
            "OrganId" => Some(Field::ReceiverOrganId),
            "ReceiverType" => Some(Field::ReceiverType),
            _ => None,
        },
        [
            "edXMLEnvelope",
            "edXMLHeader",
            "TraceHeaderList",
            "Bussiness",
            "ReplacementInfoList",
            "ReplacementInfo",
            "DocumentId",
        ] => Some(Field::ReplacedDocumentId),
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
