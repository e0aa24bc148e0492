//! Time-driven changes: items that were never acknowledged expire, and bodies past the
//! retention period are purged. Both go through [`Hub::commit`] like any other change, so the
//! audit log records them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde_json::json;

use super::{Hub, HubError, format_id, now_ms, rfc3339};
use crate::audit::AuditEvent;
use crate::edxml::Kind;
use crate::store::{Change, DocRecord, QueueEntry};

/// The most items expired or bodies purged in one pass (the next pass continues).
const PASS_MAX: usize = 10_000;
/// Who hub notices come from.
pub const HUB_SENDER: &str = "lienthong";

impl Hub {
    /// Expires items whose document was accepted longer than `settings.expiry` ago and that
    /// nobody acknowledged; each sender gets one hub-signed notice per document. Returns how
    /// many items expired.
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
        // document -> agencies whose item expired
        let mut expired: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let mut count = 0;
        for agency in &agencies {
            let _guard = self.lease_locks[super::stripe(agency.as_str())]
                .lock()
                .expect("lease lock poisoned");
            let mut old: Vec<(u64, QueueEntry)> = Vec::new();
            let mut failure = None;
            self.store.scan_queue(agency, |seq, entry| {
                // Queues are in acceptance order: stop at the first item still in time.
                match self.store.doc(seq) {
                    Ok(Some(d)) if d.received_at_ms < cutoff => {
                        old.push((seq, entry));
                        count + old.len() < PASS_MAX
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
            if old.is_empty() {
                continue;
            }
            let changes: Vec<Change<'_>> = old
                .iter()
                .map(|(seq, _)| Change::Dequeue { agency, seq: *seq })
                .collect();
            let events = old
                .iter()
                .map(|(seq, e)| {
                    AuditEvent::new("expired", now)
                        .agency(agency)
                        .document(*seq)
                        .detail(json!({"deliveries": e.deliveries}))
                })
                .collect();
            self.commit(&changes, events, true)?;
            for (seq, _) in &old {
                expired.entry(*seq).or_default().push(agency.clone());
            }
            count += old.len();
            if count >= PASS_MAX {
                break;
            }
        }
        for (seq, recipients) in expired {
            if let Some(doc) = self.store.doc(seq)? {
                self.notify_expired(&doc, &recipients, now)?;
            }
        }
        Ok(count)
    }

    /// Queues for the sender a hub-signed notice that `recipients` never acknowledged `doc`.
    fn notify_expired(
        &self,
        doc: &DocRecord,
        recipients: &[String],
        now: u64,
    ) -> Result<(), HubError> {
        if doc.kind == Kind::Notice {
            return Ok(());
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
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
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
        self.commit(
            &[
                Change::Accept {
                    record: &record,
                    body: jws.as_bytes(),
                    dedup_key: &dkey,
                },
                Change::Enqueue {
                    agency: &doc.from,
                    seq,
                },
            ],
            vec![],
            true,
        )?;
        self.wake(&doc.from);
        Ok(())
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
