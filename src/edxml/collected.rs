//! What the reader has collected from a packet, and the checks on the packet as a whole.

use super::fields::{Field, LIMIT_DOCUMENT_ID, LIMIT_SUBJECT, STATUS_CODES};
use super::{EdxmlError, Kind, Packet, ResponseFor, is_valid_organ_id};

/// What has been read so far.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) from: Option<String>,
    pub(super) to: Vec<String>,
    pub(super) document_id: Option<String>,
    pub(super) subject: Option<String>,
    pub(super) status_code: Option<String>,
    pub(super) response_for: Vec<ResponseFor>,
    pub(super) business_type: Option<String>,
    pub(super) business_document_id: Option<String>,
    /// (OrganId, ReceiverType) of `ReceiverList/Receiver`.
    pub(super) receivers: Vec<(String, String)>,
    pub(super) replaces: Vec<String>,
    pub(super) paper: bool,
    pub(super) has_signature: bool,
    pub(super) attachments: usize,
}

impl Collected {
    pub(super) fn store(&mut self, field: Field, value: String) -> Result<(), EdxmlError> {
        let value = value.trim().to_owned();
        let chars = value.chars().count();
        let limit = |name: &'static str, limit: usize| {
            if chars > limit {
                Err(EdxmlError::FieldTooLong {
                    field: name,
                    len: chars,
                    limit,
                })
            } else {
                Ok(())
            }
        };
        match field {
            Field::FromOrganId => self.from = Some(value),
            Field::ToOrganId => self.to.push(value),
            Field::ResponseOrganId => {
                if let Some(r) = self.response_for.last_mut() {
                    r.organ_id = value;
                }
            }
            Field::ResponseDocumentId => {
                limit("ResponseFor/DocumentId", LIMIT_DOCUMENT_ID)?;
                if let Some(r) = self.response_for.last_mut() {
                    r.document_id = value;
                }
            }
            Field::DocumentId => {
                limit("DocumentId", LIMIT_DOCUMENT_ID)?;
                self.document_id = Some(value);
            }
            Field::Subject => {
                limit("Subject", LIMIT_SUBJECT)?;
                self.subject = Some(value);
            }
            Field::StatusCode => self.status_code = Some(value),
            Field::BusinessDocType => self.business_type = Some(value),
            Field::BusinessDocumentId => {
                limit("Bussiness/DocumentId", LIMIT_DOCUMENT_ID)?;
                self.business_document_id = Some(value);
            }
            Field::ReceiverOrganId => {
                if let Some(r) = self.receivers.last_mut() {
                    r.0 = value;
                }
            }
            Field::ReceiverType => {
                if let Some(r) = self.receivers.last_mut() {
                    r.1 = value;
                }
            }
            Field::ReplacedDocumentId => {
                limit("ReplacementInfo/DocumentId", LIMIT_DOCUMENT_ID)?;
                if !value.is_empty() && !self.replaces.contains(&value) {
                    self.replaces.push(value);
                }
            }
            Field::Paper => self.paper = value == "1",
            Field::Limited(name, max) => limit(name, max)?,
        }
        Ok(())
    }

    /// Checks the packet as a whole and produces its summary.
    pub(super) fn finish(mut self) -> Result<Packet, EdxmlError> {
        let from = self
            .from
            .take()
            .filter(|s| !s.is_empty())
            .ok_or(EdxmlError::MissingField("From/OrganId"))?;
        organ_id("From/OrganId", &from)?;
        let business_type = business_type(self.business_type.as_deref())?;
        let kind = if self.status_code.is_some() {
            Kind::Status
        } else {
            Kind::Edoc
        };
        let (to, document_id) = match kind {
            Kind::Status => {
                self.check_status()?;
                // A status notice's identity is the document it answers.
                (Vec::new(), None)
            }
            _ => self.document_recipients()?,
        };
        let receiver_changes = receiver_changes(std::mem::take(&mut self.receivers))?;
        if business_type == 3 && self.replaces.is_empty() {
            return Err(EdxmlError::MissingField("ReplacementInfo/DocumentId"));
        }
        Ok(Packet {
            kind,
            from,
            to,
            business_document_id: self.business_document_id.filter(|s| !s.is_empty()),
            receiver_changes,
            replaces: self.replaces,
            document_id,
            subject: self.subject.filter(|s| !s.is_empty()),
            status_code: self.status_code,
            response_for: self.response_for,
            business_type,
            has_signature: self.has_signature,
            attachments: self.attachments,
            paper: self.paper,
        })
    }

    /// A document's To list (valid, without repeats) and its DocumentId, both required.
    fn document_recipients(&mut self) -> Result<(Vec<String>, Option<String>), EdxmlError> {
        if self.to.is_empty() {
            return Err(EdxmlError::MissingField("To/OrganId"));
        }
        let mut to = Vec::with_capacity(self.to.len());
        // A set, not `to.contains`: a list of n recipients must not cost n² comparisons.
        let mut seen = std::collections::HashSet::with_capacity(self.to.len());
        for id in std::mem::take(&mut self.to) {
            organ_id("To/OrganId", &id)?;
            if seen.insert(id.clone()) {
                to.push(id);
            }
        }
        let document_id = self.document_id.take().filter(|s| !s.is_empty());
        if document_id.is_none() {
            return Err(EdxmlError::MissingField("DocumentId"));
        }
        Ok((to, document_id))
    }

    /// A status notice: a known code, and the document it answers named.
    fn check_status(&self) -> Result<(), EdxmlError> {
        let code = self.status_code.clone().unwrap_or_default();
        if !STATUS_CODES.contains(&code.as_str()) {
            return Err(EdxmlError::InvalidField {
                field: "StatusCode",
                value: code,
                why: "must be one of 01-06, 13, 15, 16",
            });
        }
        let first = self
            .response_for
            .first()
            .ok_or(EdxmlError::MissingField("ResponseFor"))?;
        if first.document_id.is_empty() {
            return Err(EdxmlError::MissingField("ResponseFor/DocumentId"));
        }
        organ_id("ResponseFor/OrganId", &first.organ_id)
    }
}

/// Refuses `value` in `field` unless it is a well-formed OrganId.
fn organ_id(field: &'static str, value: &str) -> Result<(), EdxmlError> {
    if is_valid_organ_id(value) {
        Ok(())
    } else {
        Err(EdxmlError::InvalidOrganId {
            field,
            value: value.to_owned(),
        })
    }
}

/// `BussinessDocType`: 0 (new, also when absent), 1 (revoke), 2 (update), 3 (replace).
fn business_type(v: Option<&str>) -> Result<u8, EdxmlError> {
    match v {
        None | Some("") => Ok(0),
        Some(v @ ("0" | "1" | "2" | "3")) => Ok(v.as_bytes()[0] - b'0'),
        Some(v) => Err(EdxmlError::InvalidField {
            field: "BussinessDocType",
            value: v.to_owned(),
            why: "must be 0 (new), 1 (revoke), 2 (update) or 3 (replace)",
        }),
    }
}

/// An update's receiver changes: (OrganId, added).
fn receiver_changes(receivers: Vec<(String, String)>) -> Result<Vec<(String, bool)>, EdxmlError> {
    let mut out = Vec::with_capacity(receivers.len());
    for (id, kind) in receivers {
        organ_id("ReceiverList/Receiver/OrganId", &id)?;
        let added = match kind.as_str() {
            "1" => true,
            "0" => false,
            _ => {
                return Err(EdxmlError::InvalidField {
                    field: "ReceiverType",
                    value: kind,
                    why: "must be 0 (removed) or 1 (added)",
                });
            }
        };
        out.push((id, added));
    }
    Ok(out)
}
