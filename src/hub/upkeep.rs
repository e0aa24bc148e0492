//! Time-driven changes: items that were never acknowledged expire, and bodies past the
//! retention period are purged. Both go through [`Hub::commit`] like any other change, so the
//! audit log records them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::json;

use super::{Hub, HubError, format_id, now_ms, rfc3339};
use crate::audit::AuditEvent;
use crate::edxml::Kind;
use crate::store::{Change, DocRecord, StoreError};

/// The most items expired or bodies purged in one pass (the next pass continues).
const PASS_MAX: usize = 10_000;
/// Who hub notices come from.
pub const HUB_SENDER: &str = "lienthong";

impl Hub {
    /// Expires items whose document was accepted longer than `settings.expiry` ago and that
    /// nobody acknowledged; each sender gets one hub-signed notice per document, in the same
    /// commit as the items it reports (a crash cannot keep one without the other). Returns
    /// how many items expired.
    pub fn expire(&self) -> Result<usize, HubError> {
        let now = now_ms();
        let cutoff = now.saturating_sub(self.settings.expiry.as_millis() as u64);
        let mut agencies: Vec<String> = self
            .directory
            .snapshot()
            .agencies()
            .iter()
            .map(|a| a.id.clone())
            .collect();
        agencies.extend(self.depth.lock().expect("depth lock").keys().cloned());
        agencies.sort();
        agencies.dedup();
        // document -> (agency, deliveries) of its items past the cutoff
        let mut expired: BTreeMap<u64, Vec<(String, u32)>> = BTreeMap::new();
        let mut count = 0;
        for agency in &agencies {
            let mut failure = None;
            self.store.scan_queue(agency, &mut |seq, entry| {
                // Queues are in acceptance order: stop at the first item still in time.
                match self.store.doc(seq) {
                    Ok(Some(d)) if d.received_at_ms < cutoff => {
                        expired
                            .entry(seq)
                            .or_default()
                            .push((agency.clone(), entry.deliveries));
                        count += 1;
                        count < PASS_MAX
                    }
                    Ok(_) => false,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            if count >= PASS_MAX {
                break;
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
            let recipients: Vec<String> = items.iter().map(|(a, _)| a.clone()).collect();
            let notice = self.expiry_notice(doc, &recipients, now)?;
            if let Some((record, body, dkey)) = &notice {
                changes.push(Change::Accept {
                    record,
                    body: body.as_bytes(),
                    dedup_key: dkey,
                });
                changes.push(Change::Enqueue {
                    agency: &doc.from,
                    seq: record.seq,
                });
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

    /// The hub-signed notice telling `doc`'s sender that `recipients` never acknowledged it:
    /// (record, body, duplicate key). None for hub notices themselves.
    fn expiry_notice(
        &self,
        doc: &DocRecord,
        recipients: &[String],
        now: u64,
    ) -> Result<Option<(DocRecord, String, Vec<u8>)>, HubError> {
        if doc.kind == Kind::Notice {
            return Ok(None);
        }
        let jws = crate::jws::sign(
            &self.notary,
            &json!({
                "type": "expired",
                "id": format_id(doc.seq),
                "document_id": doc.document_id,
                "sha256": doc.sha256,
                "sender": doc.from,
                "recipients": recipients,
                "accepted_at": rfc3339(doc.received_at_ms),
                "expired_at": rfc3339(now),
            }),
        )
        .map_err(|e| HubError::Notary(e.to_string()))?;
        let seq = self.store.next_seq()?;
        let record = DocRecord {
            seq,
            kind: Kind::Notice,
            from: HUB_SENDER.to_owned(),
            recipients: vec![doc.from.clone()],
            document_id: None,
            subject: Some(format!(
                "Hết hạn: {} chưa nhận văn bản {}",
                recipients.join(", "),
                doc.document_id.as_deref().unwrap_or("")
            )),
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
        };
        let dkey = crate::store::dedup_key(HUB_SENDER, &format!("#expired:{seq}"));
        Ok(Some((record, jws, dkey)))
    }

    /// Deletes bodies accepted longer than the retention period ago that no queue holds.
    /// Returns how many were purged.
    pub fn purge_bodies(&self) -> Result<usize, HubError> {
        let Some(retention) = self.settings.body_retention else {
            return Ok(0);
        };
        let now = now_ms();
        let cutoff = now.saturating_sub(retention.as_millis() as u64);
        let mut next = self.purge_cursor.load(Ordering::Relaxed);
        let mut purged = 0;
        'scan: loop {
            let docs = self.store.docs_from(next, 512)?;
            if docs.is_empty() {
                break;
            }
            for d in docs {
                if d.received_at_ms >= cutoff || purged >= PASS_MAX {
                    break 'scan;
                }
                next = d.seq + 1;
                let queued = d
                    .recipients
                    .iter()
                    .map(|r| self.store.queue_entry(r, d.seq))
                    .collect::<Result<Vec<_>, _>>()?
                    .iter()
                    .any(Option::is_some);
                if queued {
                    // Still owed to someone: retried on a later pass.
                    next = d.seq;
                    break 'scan;
                }
                if !self.store.has_body(d.seq)? {
                    continue;
                }
                self.commit(
                    &[Change::Purge { seq: d.seq }],
                    vec![
                        AuditEvent::new("purged", now)
                            .agency(&d.from)
                            .document(d.seq)
                            .detail(json!({"sha256": d.sha256, "size": d.size})),
                    ],
                    true,
                )?;
                purged += 1;
            }
        }
        self.purge_cursor.store(next, Ordering::Relaxed);
        Ok(purged)
    }
}
