//! What a packet does besides being delivered: a status notice moves the state of the document
//! it answers; revoke, update and replace act on an earlier document of the same sender.
//!
//! Rules (docs/audit.md):
//! - A status notice must answer a document of the hub's: codes 01–06, 15, 16 come from a
//!   recipient of `ResponseFor` = (its sender's OrganId, DocumentId); code 13 comes from the
//!   sender itself, with `ResponseFor/OrganId` naming the recipient. Anything else is
//!   `unknown_document`.
//! - Revoke (1) and update (2) act on the document named by `Bussiness/DocumentId`, else by the
//!   packet's own `DocumentId`; replace (3) on each `ReplacementInfo/DocumentId`. The document
//!   must be one the caller sent (`unknown_document` otherwise, whether another agency sent it
//!   or nobody did: the answer is no existence oracle).
//! - Revoke: recipients that have not pulled the document lose it from their queue; those that
//!   have get the revocation packet.
//! - Update: `ReceiverType` 1 queues the original for a new recipient, 0 takes it back from a
//!   recipient that has not pulled it yet. The update packet goes to its own `To` list.
//! - A recipient whose copy was taken back stays a recipient (for the record and its notices,
//!   e.g. 15/16 answering the revocation) but is `withdrawn`: it may no longer fetch the body.

use serde_json::json;

use super::{Hub, HubError, now_ms};
use crate::audit::AuditEvent;
use crate::directory::Directory;
use crate::edxml::{Kind, Packet};
use crate::store::{DocRecord, dedup_key};

/// What submitting a packet changes beyond storing it.
#[derive(Default)]
pub(super) struct Plan {
    /// Who gets this packet.
    pub recipients: Vec<String>,
    /// Status notices: the DocumentId answered.
    pub response_for: Option<String>,
    /// The document acted on (status, revoke, update), with its record as it will be.
    pub original: Option<DocRecord>,
    /// Whether `original` changed and must be rewritten.
    pub rewrite: bool,
    /// Recipients whose queue entry for the original is removed.
    pub dequeue: Vec<String>,
    /// Recipients the original is newly queued for.
    pub add: Vec<String>,
    /// Documents a replacement replaces.
    pub replaces: Vec<u64>,
    /// Events about the original(s), logged with the packet.
    pub events: Vec<AuditEvent>,
}

/// A status notice that answers no document the caller may answer. Whether the document
/// exists is not said (the same words either way).
fn not_answerable(rf: &crate::edxml::ResponseFor) -> HubError {
    HubError::UnknownDocument(format!(
        "ResponseFor ({}, {:?}) names no document this agency may answer",
        rf.organ_id, rf.document_id
    ))
}

/// The name of a state a status code moves a recipient to.
pub fn status_state(code: &str) -> &'static str {
    match code {
        "01" => "arrived",
        "02" => "refused",
        "03" => "accepted",
        "04" => "assigned",
        "05" => "in_progress",
        "06" => "completed",
        "13" => "take_back_requested",
        "15" => "update_agreed",
        "16" => "update_refused",
        _ => "status",
    }
}

impl Hub {
    /// The document (`sender`, `document_id`) the caller sent. Another agency's document and
    /// one that does not exist get the same answer, word for word: the answer must not tell
    /// a caller which DocumentIds exist.
    fn own_document(&self, caller: &str, document_id: &str) -> Result<DocRecord, HubError> {
        if let Some(seq) = self.store.dedup(&dedup_key(caller, document_id))? {
            if let Some(doc) = self.store.doc(seq)? {
                return Ok(doc);
            }
        }
        Err(HubError::UnknownDocument(format!(
            "{caller} sent no document with DocumentId {document_id:?} through this hub"
        )))
    }

    /// Works out recipients and side effects of a validated packet from `packet.from`.
    pub(super) fn plan(&self, packet: &Packet, directory: &Directory) -> Result<Plan, HubError> {
        let mut plan = Plan::default();
        if packet.kind == Kind::Status {
            self.plan_status(packet, &mut plan)?;
            return Ok(plan);
        }
        plan.recipients = packet.to.clone();
        let target = || {
            packet
                .business_document_id
                .clone()
                .or_else(|| packet.document_id.clone())
                .unwrap_or_default()
        };
        let from = packet.from.as_str();
        match packet.business_type {
            1 => {
                let doc = self.own_document(from, &target())?;
                self.plan_revoke(doc, directory, &mut plan)?
            }
            2 => {
                let doc = self.own_document(from, &target())?;
                self.plan_update(packet, doc, directory, &mut plan)?;
            }
            3 => {
                for id in &packet.replaces {
                    plan.replaces.push(self.own_document(from, id)?.seq);
                }
            }
            _ => {}
        }
        Ok(plan)
    }

    /// A status notice: it goes to the sender of the document it answers, whose recipient's
    /// state it moves.
    fn plan_status(&self, packet: &Packet, plan: &mut Plan) -> Result<(), HubError> {
        let from = packet.from.as_str();
        let rf = &packet.response_for[0];
        let code = packet.status_code.clone().unwrap_or_default();
        let (doc, recipient) = if code == "13" {
            (
                self.own_document(from, &rf.document_id)?,
                rf.organ_id.clone(),
            )
        } else {
            let doc = self
                .store
                .dedup(&dedup_key(&rf.organ_id, &rf.document_id))?
                .and_then(|seq| self.store.doc(seq).ok().flatten())
                .ok_or_else(|| not_answerable(rf))?;
            (doc, from.to_owned())
        };
        if !doc.recipients.contains(&recipient) {
            return Err(not_answerable(rf));
        }
        plan.events.push(
            AuditEvent::new("status", now_ms())
                .agency(&recipient)
                .document(doc.seq)
                .detail(json!({"code": code, "state": status_state(&code), "by": from})),
        );
        plan.recipients = vec![rf.organ_id.clone()];
        plan.response_for = Some(rf.document_id.clone());
        plan.original = Some(doc);
        Ok(())
    }

    /// Whether `agency` still waits for `doc` without having been delivered it (so it can be
    /// taken back).
    fn not_pulled(&self, agency: &str, doc: &DocRecord) -> Result<bool, HubError> {
        Ok(self
            .store
            .queue_entry(agency, doc.seq)?
            .is_some_and(|e| e.deliveries == 0))
    }

    /// Revoke: recipients that have not pulled `doc` lose it; the others get the packet.
    /// A recipient behind a peer hub counts as pulled once the forward to that peer began
    /// (the revocation then follows the document there, and that hub takes it back);
    /// before that, the forward is simply taken back here.
    fn plan_revoke(
        &self,
        mut doc: DocRecord,
        directory: &Directory,
        plan: &mut Plan,
    ) -> Result<(), HubError> {
        let now = now_ms();
        let mut pulled = Vec::new();
        let mut taken_back = Vec::new();
        for r in &doc.recipients {
            let queue = self.queue_of(r, directory);
            let waiting = self.not_pulled(&queue, &doc)?;
            if waiting {
                if !plan.dequeue.contains(&queue) {
                    plan.dequeue.push(queue);
                }
                taken_back.push(r.clone());
            } else {
                pulled.push(r.clone());
            }
            plan.events.push(
                AuditEvent::new("revoked", now)
                    .agency(r)
                    .document(doc.seq)
                    .detail(json!({"pulled": !waiting})),
            );
        }
        plan.recipients = pulled;
        // Those who never saw it may no longer fetch it either.
        for r in &taken_back {
            if !doc.withdrawn.contains(r) {
                doc.withdrawn.push(r.clone());
                plan.rewrite = true;
            }
        }
        plan.original = Some(doc);
        Ok(())
    }

    /// Update: `ReceiverType` 1 queues `doc` for a new recipient, 0 takes it back from one
    /// that has not pulled it yet.
    fn plan_update(
        &self,
        packet: &Packet,
        mut doc: DocRecord,
        directory: &Directory,
        plan: &mut Plan,
    ) -> Result<(), HubError> {
        let now = now_ms();
        for (agency, added) in &packet.receiver_changes {
            if !directory.contains(agency) {
                return Err(HubError::UnknownRecipients(vec![agency.clone()]));
            }
            let is_recipient = doc.delivers_to(agency);
            if *added && !is_recipient {
                if !doc.recipients.contains(agency) {
                    doc.recipients.push(agency.clone());
                }
                doc.withdrawn.retain(|r| r != agency);
                plan.add.push(agency.clone());
                plan.rewrite = true;
                let event = AuditEvent::new("recipient_added", now);
                plan.events.push(event.agency(agency).document(doc.seq));
            } else if !*added && is_recipient {
                let waiting = self.not_pulled(agency, &doc)?;
                if waiting {
                    plan.dequeue.push(agency.clone());
                    doc.withdrawn.push(agency.clone());
                    plan.rewrite = true;
                }
                plan.events.push(
                    AuditEvent::new("recipient_removed", now)
                        .agency(agency)
                        .document(doc.seq)
                        .detail(json!({"pulled": !waiting})),
                );
            }
        }
        plan.original = Some(doc);
        Ok(())
    }
}
