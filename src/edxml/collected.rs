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
    pub(super) fn finish(self) -> Result<Packet, EdxmlError> {
        let from = self
            .from
            .filter(|s| !s.is_empty())
            .ok_or(EdxmlError::MissingField("From/OrganId"))?;
        if !is_valid_organ_id(&from) {
            return Err(EdxmlError::InvalidOrganId {
                field: "From/OrganId",
                value: from,
            });
        }
        let business_type = match self.business_type.as_deref() {
            None | Some("") => 0,
            Some(v @ ("0" | "1" | "2" | "3")) => v.as_bytes()[0] - b'0',
            Some(v) => {
                return Err(EdxmlError::InvalidField {
                    field: "BussinessDocType",
                    value: v.to_owned(),
                    why: "must be 0 (new), 1 (revoke), 2 (update) or 3 (replace)",
                });
            }
        };
        let kind = if self.status_code.is_some() {
            Kind::Status
        } else {
            Kind::Edoc
        };
        let mut to = Vec::with_capacity(self.to.len());
        let mut document_id = self.document_id.filter(|s| !s.is_empty());
        match kind {
            Kind::Edoc => {
                if self.to.is_empty() {
                    return Err(EdxmlError::MissingField("To/OrganId"));
                }
                for id in self.to {
                    if !is_valid_organ_id(&id) {
                        return Err(EdxmlError::InvalidOrganId {
                            field: "To/OrganId",
                            value: id,
                        });
                    }
                    if !to.contains(&id) {
                        to.push(id);
                    }
                }
                if document_id.is_none() {
                    return Err(EdxmlError::MissingField("DocumentId"));
                }
            }
            Kind::Notice => unreachable!("the parser makes only documents and status notices"),
            Kind::Status => {
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
                if !is_valid_organ_id(&first.organ_id) {
                    return Err(EdxmlError::InvalidOrganId {
                        field: "ResponseFor/OrganId",
                        value: first.organ_id.clone(),
                    });
                }
                // A status notice's identity is the document it answers.
                document_id = None;
            }
        }
        let mut receiver_changes = Vec::with_capacity(self.receivers.len());
        for (id, kind) in self.receivers {
            if !is_valid_organ_id(&id) {
                return Err(EdxmlError::InvalidOrganId {
                    field: "ReceiverList/Receiver/OrganId",
                    value: id,
                });
            }
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
            receiver_changes.push((id, added));
        }
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
}
