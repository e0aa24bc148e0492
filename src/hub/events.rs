//! The audit events each kind of state change records (see [`crate::audit`]).

use serde_json::json;

use crate::audit::AuditEvent;
use crate::store::Change;

use super::rfc3339;

/// The log entries for a set of changes, in order: an accepted packet gives `accepted` then
/// one `enqueued` naming all its recipients (a fan-out to 519 is one entry, not 519); every
/// leased and acked item gives its own `leased` / `delivered`.
pub fn for_changes(changes: &[Change<'_>], at_ms: u64) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    let mut enqueued: Vec<(u64, Vec<&str>)> = Vec::new();
    for c in changes {
        match c {
            Change::Accept { record, .. } => out.push(
                AuditEvent::new("accepted", at_ms)
                    .agency(&record.from)
                    .document(record.seq)
                    .detail(json!({
                        "kind": record.kind.as_str(),
                        "document_id": record.document_id,
                        "business_type": record.business_type,
                        "sha256": record.sha256,
                        "size": record.size,
                        "signature": record.verdict,
                        "signer_sha256": record.signer_sha256,
                    })),
            ),
            Change::Enqueue { agency, seq, .. } => {
                match enqueued.iter_mut().find(|(s, _)| s == seq) {
                    Some((_, list)) => list.push(agency),
                    None => enqueued.push((*seq, vec![agency])),
                }
            }
            Change::Lease {
                agency, seq, entry, ..
            } => out.push(
                AuditEvent::new("leased", at_ms)
                    .agency(agency)
                    .document(*seq)
                    .detail(json!({
                        "deliveries": entry.deliveries,
                        "lease_until": rfc3339(entry.lease_until_ms),
                    })),
            ),
            Change::Fetch { agency, seq, .. } => out.push(
                AuditEvent::new("fetched", at_ms)
                    .agency(agency)
                    .document(*seq),
            ),
            // The ack's own time: the delivery receipt answered at once carries it, and one
            // signed later from this entry must say the same.
            Change::Ack {
                agency,
                seq,
                at_ms: acked_at,
                ..
            } => out.push(
                AuditEvent::new("delivered", *acked_at)
                    .agency(agency)
                    .document(*seq),
            ),
            // Described by the caller's own events (revoked, recipient removed, expired…).
            Change::Dequeue { .. }
            | Change::Rewrite { .. }
            | Change::Purge { .. }
            | Change::Reschedule { .. }
            | Change::Push { .. }
            | Change::Release { .. }
            | Change::PullOnly { .. } => {}
        }
    }
    for (seq, recipients) in enqueued {
        out.push(
            AuditEvent::new("enqueued", at_ms)
                .document(seq)
                .detail(json!({ "recipients": recipients })),
        );
    }
    out
}
