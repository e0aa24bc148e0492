//! What happens to a forward to a peer hub besides its delivery: what it carries (route,
//! recipients behind that peer), a peer's final refusal, and a packet that comes back to
//! the hub it started from. The transfer itself is a push (`push.rs`).

use serde_json::json;

use super::hop_reports::RemoteState;
use super::push::{Forward, PushJob};
use super::upkeep::{Undelivered, notice_changes};
use super::{Hub, HubError, now_ms, rfc3339};
use crate::audit::AuditEvent;
use crate::store::{Change, DocRecord, StoreError};

impl Hub {
    /// What a forward of `doc` to `peer` carries: the route (this hub first, for local
    /// mail) and the recipients that route through that peer.
    pub(super) fn forward_of(&self, doc: &DocRecord, peer: &str) -> Forward {
        let fed = &self.settings.federation;
        let directory = self.directory.snapshot();
        let recipients = doc
            .recipients
            .iter()
            .filter(|r| !directory.contains(r) && fed.route(r).is_some_and(|p| p.id == peer))
            .cloned()
            .collect();
        let route = if doc.route.is_empty() {
            vec![crate::federation::Hop {
                hub: fed.hub_id.clone(),
                at: rfc3339(doc.received_at_ms),
            }]
        } else {
            doc.route.clone()
        };
        Forward { route, recipients }
    }

    /// A peer hub refused a forward for good (a 4xx: a loop, a signature it does not
    /// accept, a sender it does not route back): retrying cannot help. The item leaves the
    /// peer's queue, the `forward_refused` entry says why, and a sender of this hub gets a
    /// hub notice (a sender behind another hub learns it when its copy expires).
    pub(super) fn forward_refused(
        &self,
        job: &PushJob,
        code: &str,
        now: u64,
    ) -> Result<(), HubError> {
        let agency = job.agency.as_str();
        let peer = crate::federation::queue_peer(agency)
            .unwrap_or(agency)
            .to_owned();
        let recipients = job
            .forward
            .as_ref()
            .map(|f| f.recipients.clone())
            .unwrap_or_default();
        let local_sender = self.directory.snapshot().contains(&job.doc.from);
        let why = Undelivered::Refused {
            by: peer.clone(),
            code: code.to_owned(),
        };
        // A sender here gets a notice; one behind another hub a report that travels back.
        let notice = if local_sender {
            self.undelivered_notice(&job.doc, &recipients, now, &why)?
        } else {
            None
        };
        let report = if !local_sender && self.sent_from_behind_peer(&job.doc) {
            self.report(
                &job.doc,
                &recipients,
                RemoteState::Refused,
                Some((&peer, code)),
            )?
        } else {
            None
        };
        let mut changes = vec![
            Change::Dequeue {
                agency,
                seq: job.seq,
                accepted_ms: job.doc.received_at_ms,
            },
            job.moved(None),
        ];
        if let Some(n) = &notice {
            changes.extend(notice_changes(n, &job.doc.from));
        }
        if let Some(r) = &report {
            changes.extend(r.changes());
        }
        let event = AuditEvent::new("forward_refused", now)
            .agency(agency)
            .document(job.seq)
            .detail(
                json!({"peer": peer, "reason": code, "recipients": recipients,
                "attempt": job.attempt}),
            );
        tracing::warn!(peer, id = %job.signature.id, reason = code, "a peer hub refused a forward");
        match self.commit(&changes, vec![event], true) {
            Ok(_) => {
                if notice.is_some() {
                    self.wake(&job.doc.from);
                }
                Ok(())
            }
            // Acked or withdrawn meanwhile: nothing left to refuse.
            Err(HubError::Store(StoreError::Conflict)) => self.commit_quietly(&changes[1..2]),
            Err(e) => Err(e),
        }
    }

    /// A hub's own packet came back to it (a routing loop): its local sender gets the
    /// notice at once (the hub that sent it back learns of it from the refusal). Only for
    /// the very bytes this hub accepted, so a peer cannot make up notices about an agency's
    /// documents.
    pub(super) fn loop_returned(
        &self,
        packet: &crate::edxml::Packet,
        sha256: &str,
        route: &str,
    ) -> Result<(), HubError> {
        let key = match (&packet.document_id, packet.business_type) {
            (Some(id), 0) => crate::store::dedup_key(&packet.from, id),
            _ => return Ok(()),
        };
        let Some(doc) = self
            .store
            .dedup(&key)?
            .and_then(|s| self.store.doc(s).ok().flatten())
        else {
            return Ok(());
        };
        if doc.sha256 != sha256 {
            return Ok(());
        }
        let now = now_ms();
        let why = Undelivered::Refused {
            by: self.settings.federation.hub_id.clone(),
            code: format!("routing_loop ({route})"),
        };
        let to: Vec<String> = packet.to.clone();
        let Some(notice) = self.undelivered_notice(&doc, &to, now, &why)? else {
            return Ok(());
        };
        let changes = notice_changes(&notice, &doc.from);
        self.commit(&changes, vec![], true)?;
        self.wake(&doc.from);
        Ok(())
    }
}
