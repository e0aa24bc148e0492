//! Time-driven changes: items that were never acknowledged expire, and bodies past the
//! retention period are purged. Both find their work by a range scan of the due index
//! (`store::due`), and go through [`Hub::commit`] like any other change, so the audit log
//! records them.

use std::collections::BTreeMap;

use serde_json::json;

use super::hop_reports::RemoteState;
use super::{Hub, HubError, format_id, now_ms, rfc3339};
use crate::audit::AuditEvent;
use crate::edxml::Kind;
use crate::store::{Change, DocRecord, Due, DueKind, StoreError};

/// The most items expired or bodies purged in one pass (the next pass continues).
pub(super) const PASS_MAX: usize = 10_000;
/// How long a body past retention that is still queued waits before it is checked again.
const RECHECK_MS: u64 = 3_600_000;
/// Who hub notices come from.
pub const HUB_SENDER: &str = "lienthong";

/// A hub notice ready to store: (record, body, duplicate key).
pub(super) type Notice = (DocRecord, String, Vec<u8>);

/// The changes that store `notice` and queue it for `to`.
pub(super) fn notice_changes<'a>(notice: &'a Notice, to: &'a str) -> [Change<'a>; 2] {
    let (record, body, dkey) = notice;
    [
        Change::Accept {
            record,
            body: body.as_bytes(),
            dedup_key: dkey,
        },
        Change::Enqueue {
            agency: to,
            seq: record.seq,
            accepted_ms: record.received_at_ms,
        },
    ]
}

/// The record of a hub-signed statement `jws` about `doc`, addressed to `doc`'s sender: a
/// notice to a local sender, or a delivery report travelling to a remote one.
pub(super) fn hub_record(
    seq: u64,
    doc: &DocRecord,
    subject: String,
    jws: &str,
    now: u64,
    route: Vec<crate::federation::Hop>,
) -> DocRecord {
    DocRecord {
        seq,
        kind: Kind::Notice,
        from: HUB_SENDER.to_owned(),
        recipients: vec![doc.from.clone()],
        document_id: None,
        subject: Some(subject),
        status_code: None,
        response_for: doc.document_id.clone(),
        acts_on: Some(doc.seq),
        replaces: vec![],
        withdrawn: vec![],
        business_type: 0,
        size: jws.len() as u64,
        sha256: crate::digest::sha256_hex(jws.as_bytes()),
        received_at_ms: now,
        has_signature: true,
        verdict: Some("hub".into()),
        signer: Some(HUB_SENDER.into()),
        signer_sha256: None,
        paper: false,
        pdf: vec![],
        route,
    }
}

/// Why a hub notice says a document did not reach its recipients.
pub(super) enum Undelivered {
    /// Nobody acknowledged it before `[queue] expiry_secs`.
    Expired,
    /// A hub on the way (`by`) refused it for good, with its error code.
    Refused { by: String, code: String },
    /// The hub that held the copies (`hub`) reports they expired there.
    ExpiredAt { hub: String },
}

impl Undelivered {
    fn kind(&self) -> &'static str {
        match self {
            Undelivered::Expired | Undelivered::ExpiredAt { .. } => "expired",
            Undelivered::Refused { .. } => "refused",
        }
    }
}

impl Hub {
    /// Expires items whose document was accepted longer than `settings.expiry` ago and that
    /// nobody acknowledged; each sender gets one hub-signed notice per document, in the same
    /// commit as the items it reports (a crash cannot keep one without the other). Returns
    /// how many items expired.
    pub fn expire(&self) -> Result<usize, HubError> {
        let now = now_ms();
        let cutoff = now.saturating_sub(self.settings.expiry.as_millis() as u64);
        // document -> (agency, deliveries) of its items past the cutoff
        let mut expired: BTreeMap<u64, Vec<(String, u32)>> = BTreeMap::new();
        for due in self.store.due(DueKind::Expiry, cutoff, PASS_MAX)? {
            match self.store.queue_entry(&due.agency, due.seq)? {
                Some(e) => expired
                    .entry(due.seq)
                    .or_default()
                    .push((due.agency, e.deliveries)),
                None => self.unschedule(&due)?,
            }
        }
        let mut done = 0;
        for (seq, items) in expired {
            let Some(doc) = self.store.doc(seq)? else {
                continue;
            };
            done += self.expire_document(&doc, items, now)?;
        }
        Ok(done)
    }

    /// Removes a due-index entry with nothing left to do (its item acked or withdrawn by a
    /// change that named another key). Lost to a re-enqueue: then the entry stays, rightly.
    fn unschedule(&self, due: &Due) -> Result<(), HubError> {
        let change = Change::Reschedule { due, to_ms: None };
        match self.commit(&[change], vec![], false) {
            Ok(_) | Err(HubError::Store(StoreError::Conflict)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Expires `items` of one document with the notice to its sender in one commit. Each
    /// dequeue is guarded: an item acked meanwhile makes the commit fail, and the items
    /// still queued are read again (a delivered item is never also expired).
    fn expire_document(
        &self,
        doc: &DocRecord,
        mut items: Vec<(String, u32)>,
        now: u64,
    ) -> Result<usize, HubError> {
        for _ in 0..=super::CONFLICT_RETRIES {
            if items.is_empty() {
                return Ok(0);
            }
            let mut changes: Vec<Change<'_>> = items
                .iter()
                .map(|(agency, _)| Change::Dequeue {
                    agency,
                    seq: doc.seq,
                    accepted_ms: doc.received_at_ms,
                })
                .collect();
            let events: Vec<AuditEvent> = items
                .iter()
                .map(|(agency, deliveries)| {
                    AuditEvent::new("expired", now)
                        .agency(agency)
                        .document(doc.seq)
                        .detail(json!({"deliveries": deliveries}))
                })
                .collect();
            let recipients = self.recipients_in(doc, items.iter().map(|(a, _)| a.as_str()));
            // A sender here gets a notice; one behind a peer hub a report that travels back.
            let (notice, report) = if self.sent_from_behind_peer(doc) {
                let r = self.report(doc, &recipients, RemoteState::Expired, None)?;
                (None, r)
            } else {
                let n = self.undelivered_notice(doc, &recipients, now, &Undelivered::Expired)?;
                (n, None)
            };
            if let Some(n) = &notice {
                changes.extend(notice_changes(n, &doc.from));
            }
            if let Some(r) = &report {
                changes.extend(r.changes());
            }
            match self.commit(&changes, events, true) {
                Ok(_) => {
                    if notice.is_some() {
                        self.wake(&doc.from);
                    }
                    return Ok(items.len());
                }
                Err(HubError::Store(StoreError::Conflict)) => {
                    let mut still = Vec::with_capacity(items.len());
                    for (agency, d) in items {
                        if self.store.queue_entry(&agency, doc.seq)?.is_some() {
                            still.push((agency, d));
                        }
                    }
                    items = still;
                }
                Err(e) => return Err(e),
            }
        }
        Err(HubError::Store(StoreError::Conflict))
    }

    /// The recipients behind `queues` of `doc`: an agency's queue is that agency, a peer
    /// hub's queue the recipients that route through that peer.
    fn recipients_in<'q>(
        &self,
        doc: &DocRecord,
        queues: impl Iterator<Item = &'q str>,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for q in queues {
            let behind = match crate::federation::queue_peer(q) {
                Some(peer) => self.forward_of(doc, peer).recipients,
                None => vec![q.to_owned()],
            };
            for r in behind {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// The hub-signed notice telling `doc`'s sender that `recipients` did not get it
    /// (they never acknowledged it, or a peer hub refused it): (record, body, duplicate key).
    /// None for hub notices themselves.
    pub(super) fn undelivered_notice(
        &self,
        doc: &DocRecord,
        recipients: &[String],
        now: u64,
        why: &Undelivered,
    ) -> Result<Option<Notice>, HubError> {
        if doc.kind == Kind::Notice {
            return Ok(None);
        }
        let mut payload = json!({
            "type": why.kind(),
            "id": format_id(doc.seq),
            "document_id": doc.document_id,
            "sha256": doc.sha256,
            "sender": doc.from,
            "recipients": recipients,
            "accepted_at": rfc3339(doc.received_at_ms),
        });
        match why {
            Undelivered::Expired => payload["expired_at"] = rfc3339(now).into(),
            Undelivered::ExpiredAt { hub } => {
                payload["expired_at"] = rfc3339(now).into();
                payload["reported_by"] = hub.as_str().into();
            }
            Undelivered::Refused { by, code } => {
                payload["refused_at"] = rfc3339(now).into();
                payload["refused_by"] = by.as_str().into();
                payload["reason"] = code.as_str().into();
            }
        }
        let jws = crate::jws::sign(&self.notary, &payload)
            .map_err(|e| HubError::Notary(e.to_string()))?;
        let subject = match why {
            Undelivered::Expired | Undelivered::ExpiredAt { .. } => "Hết hạn",
            Undelivered::Refused { .. } => "Không chuyển được",
        };
        let seq = self.store.next_seq()?;
        let subject = format!(
            "{subject}: {} chưa nhận văn bản {}",
            recipients.join(", "),
            doc.document_id.as_deref().unwrap_or("")
        );
        let record = hub_record(seq, doc, subject, &jws, now, vec![]);
        let dkey = crate::store::dedup_key(HUB_SENDER, &format!("#{}:{seq}", why.kind()));
        Ok(Some((record, jws, dkey)))
    }

    /// Deletes bodies accepted longer than the retention period ago that no queue holds; a
    /// body still owed to someone is checked again later. Returns how many were purged.
    pub fn purge_bodies(&self) -> Result<usize, HubError> {
        let Some(retention) = self.settings.body_retention else {
            return Ok(0);
        };
        let period = retention.as_millis() as u64;
        let now = now_ms();
        let mut purged = 0;
        for due in self
            .store
            .due(DueKind::Retention, now.saturating_sub(period), PASS_MAX)?
        {
            let Some(d) = self.store.doc(due.seq)? else {
                self.unschedule(&due)?;
                continue;
            };
            if self.still_queued(&d)? {
                // Not on every pass: again after RECHECK (or the period, if shorter).
                let to_ms = Some((now + period.min(RECHECK_MS)).saturating_sub(period));
                let change = Change::Reschedule { due: &due, to_ms };
                self.commit(&[change], vec![], false)?;
                continue;
            }
            if !self.store.has_body(d.seq)? {
                self.unschedule(&due)?;
                continue;
            }
            let change = Change::Purge {
                seq: d.seq,
                accepted_ms: due.at_ms,
            };
            let event = AuditEvent::new("purged", now)
                .agency(&d.from)
                .document(d.seq)
                .detail(json!({"sha256": d.sha256, "size": d.size}));
            self.commit(&[change], vec![event], true)?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Whether any recipient still holds `d` in its queue.
    fn still_queued(&self, d: &DocRecord) -> Result<bool, HubError> {
        for r in &d.recipients {
            if self.store.queue_entry(r, d.seq)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
