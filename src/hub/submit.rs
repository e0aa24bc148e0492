//! Submission: a packet is parsed, checked against the caller and the directory, its
//! signature judged, its duplicate key looked up, and then planned and stored in one commit
//! with everything it changes (see `amendments.rs`).

use super::amendments::Plan;
use super::{
    Accepted, AgencyId, CONFLICT_RETRIES, Gate, Hub, HubError, cancelled, format_id, now_ms,
    rfc3339, stripe,
};
use crate::digest::sha256_hex;
use crate::directory::Directory;
use crate::edxml::{self, Kind, Packet};
use crate::federation::Hop;
use crate::store::{Change, DocRecord, PdfCheck, StoreError, dedup_key};

/// The signature gate's verdict as recorded: (verdict, signer CN, signer certificate hash).
type Verdict = (String, Option<String>, Option<String>);

/// Where a packet comes from: an agency of this hub, or a peer hub forwarding it (with the
/// route it travelled and the recipients this hub is to deliver or forward it to).
pub enum Origin<'a> {
    Agency(&'a AgencyId),
    Peer {
        id: &'a str,
        route: &'a [Hop],
        recipients: &'a [String],
    },
}

/// A checked packet on its way to the store.
struct Checked<'a> {
    packet: Packet,
    body: &'a [u8],
    sha256: String,
    verdict: Verdict,
    /// The duplicate-index key.
    dkey: Vec<u8>,
    /// The verdicts on its PDF attachments' legal signatures.
    pdf: Vec<PdfCheck>,
    /// The route it travelled, this hub last (forwarded packets only).
    route: Vec<Hop>,
    /// The recipients this hub handles (forwarded packets: those the peer named).
    only: Option<Vec<String>>,
}

impl Hub {
    /// Validates, routes and durably stores a packet; see the API docs for the rules.
    pub fn submit(&self, caller: &AgencyId, body: &[u8]) -> Result<Accepted, HubError> {
        self.submit_from(Origin::Agency(caller), body)
    }

    /// A packet from `origin`: the same checks and storage for an agency's submission and a
    /// peer hub's forward (whose sender must be behind that peer, and whose route must not
    /// loop).
    pub fn submit_from(&self, origin: Origin<'_>, body: &[u8]) -> Result<Accepted, HubError> {
        if crate::cancel::cancelled() {
            return Err(cancelled());
        }
        let packet = match edxml::parse_limited(body, &self.settings.limits) {
            Err(edxml::EdxmlError::Cancelled) => return Err(cancelled()),
            r => r?,
        };
        let directory = self.directory.snapshot();
        let (route, only) = self.check_origin(&origin, &packet, body, &directory)?;
        let named = only.clone().unwrap_or_else(|| named_recipients(&packet));
        self.known_recipients(&named, &directory)?;
        let verdict = self.verdict(body, &packet, &directory)?;
        let pdf = self.pdf_checks(body, &packet, &directory)?;
        let sha256 = sha256_hex(body);
        let dkey = dedup_key(&packet.from, &duplicate_key(&packet, &sha256));
        let checked = Checked {
            packet,
            body,
            sha256,
            verdict,
            dkey,
            pdf,
            route,
            only,
        };
        let _guard = self.submit_locks[stripe(&checked.dkey)]
            .lock()
            .expect("submit lock poisoned");
        if let Some(seq) = self.store.dedup(&checked.dkey)? {
            return self.replay(seq, checked);
        }
        // Revoke and update read queue states an ack may change before the commit, whose
        // guards then refuse it: read again and retry.
        let mut attempt = 0;
        loop {
            match self.store_packet(&checked) {
                Err(HubError::Store(StoreError::Conflict)) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    // Another hub process on the same database took the key meanwhile (the
                    // submit locks are per process): the same bytes are that acceptance.
                    if let Some(seq) = self.store.dedup(&checked.dkey)? {
                        return self.replay(seq, checked);
                    }
                }
                r => return r,
            }
        }
    }

    /// The sender matches the caller (an agency sends as itself; a peer forwards only
    /// packets from agencies that route through it, along a route without a loop). Returns
    /// the route to record and the recipients a peer named.
    fn check_origin(
        &self,
        origin: &Origin<'_>,
        packet: &Packet,
        body: &[u8],
        directory: &Directory,
    ) -> Result<(Vec<Hop>, Option<Vec<String>>), HubError> {
        let (peer, route, recipients) = match origin {
            Origin::Agency(caller) if packet.from == caller.organ_id => return Ok((vec![], None)),
            Origin::Agency(caller) => {
                return Err(HubError::SenderMismatch {
                    from: packet.from.clone(),
                    caller: caller.organ_id.clone(),
                });
            }
            Origin::Peer {
                id,
                route,
                recipients,
            } => (*id, *route, *recipients),
        };
        let fed = &self.settings.federation;
        // A loop first: a packet of this hub's own agency that came back is refused as a
        // loop (and its sender told), not as a forged sender.
        if route.iter().any(|h| h.hub == fed.hub_id) || route.len() >= fed.max_hops {
            let hubs: Vec<&str> = route.iter().map(|h| h.hub.as_str()).collect();
            let route = hubs.join(" → ");
            if directory.contains(&packet.from) {
                if let Err(e) = self.loop_returned(packet, &sha256_hex(body), &route) {
                    tracing::warn!(error = %e, "could not notify the sender of a routing loop");
                }
            }
            return Err(HubError::RoutingLoop {
                route,
                max_hops: fed.max_hops,
            });
        }
        let behind = !directory.contains(&packet.from)
            && fed.route(&packet.from).is_some_and(|p| p.id == peer);
        if !behind {
            return Err(HubError::SenderNotBehindPeer {
                from: packet.from.clone(),
                peer: peer.to_owned(),
            });
        }
        let named = named_recipients(packet);
        let named: std::collections::HashSet<&str> = named.iter().map(String::as_str).collect();
        if recipients.is_empty() || recipients.iter().any(|r| !named.contains(r.as_str())) {
            return Err(HubError::Invalid(
                "lienthong-recipients must name recipients of the packet".into(),
            ));
        }
        let mut route = route.to_vec();
        route.push(Hop {
            hub: fed.hub_id.clone(),
            at: rfc3339(now_ms()),
        });
        Ok((route, Some(recipients.to_vec())))
    }

    /// Refuses recipients neither in the directory nor behind a peer.
    fn known_recipients(&self, named: &[String], directory: &Directory) -> Result<(), HubError> {
        let fed = &self.settings.federation;
        let unknown: Vec<String> = named
            .iter()
            .filter(|r| !directory.contains(r) && fed.route(r).is_none())
            .cloned()
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(HubError::UnknownRecipients(unknown))
        }
    }

    /// The queue each recipient's copy goes to: its own inbox, or its peer hub's queue (one
    /// per peer, however many recipients are behind it).
    pub(super) fn queues_for(&self, recipients: &[String], directory: &Directory) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(recipients.len());
        // A set, not `out.contains`: a fan-out to 519 must not cost 519² comparisons.
        let mut seen = std::collections::HashSet::with_capacity(recipients.len());
        for r in recipients {
            let q = if directory.contains(r) {
                r.clone()
            } else {
                match self.settings.federation.route(r) {
                    Some(p) => crate::federation::peer_queue(&p.id),
                    None => r.clone(),
                }
            };
            if seen.insert(q.clone()) {
                out.push(q);
            }
        }
        out
    }

    /// The queue `recipient`'s copy goes to (see [`Hub::queues_for`]).
    pub(super) fn queue_of(&self, recipient: &str, directory: &Directory) -> String {
        self.queues_for(&[recipient.to_owned()], directory)
            .pop()
            .unwrap_or_else(|| recipient.to_owned())
    }

    /// The signature gate: verified (with its signer), recorded with the reason it did not
    /// verify, or refused.
    fn verdict(
        &self,
        body: &[u8],
        packet: &Packet,
        directory: &Directory,
    ) -> Result<Verdict, HubError> {
        let pins = directory
            .get(&packet.from)
            .map(|a| a.signing_cert_sha256.as_slice())
            .unwrap_or_default();
        let gate = self
            .signatures
            .check(body, packet.has_signature, &packet.from, pins);
        // A verification cut short by cancellation is no verdict on the packet.
        if crate::cancel::cancelled() {
            return Err(cancelled());
        }
        Ok(match gate? {
            Gate::Verified(v) => (
                crate::dsig::VERDICT_VERIFIED.to_owned(),
                v.signer_cn,
                Some(v.cert_sha256),
            ),
            Gate::Recorded(f) => (f.code.as_str().to_owned(), None, None),
        })
    }

    /// The legal signatures on the packet's PDFs (policy `[pdf_signature]`).
    fn pdf_checks(
        &self,
        body: &[u8],
        packet: &Packet,
        directory: &Directory,
    ) -> Result<Vec<PdfCheck>, HubError> {
        let names = directory
            .get(&packet.from)
            .map(|a| a.pdf_signer_names.as_slice())
            .unwrap_or_default();
        let checks = self.signatures.pdf.check(body, packet, names);
        // A check cut short by cancellation is no verdict on the packet.
        if crate::cancel::cancelled() {
            return Err(cancelled());
        }
        checks.map_err(|r| HubError::PdfNotTwoLayer {
            name: r.name,
            verdict: r.verdict,
            message: r.message,
        })
    }

    /// A packet whose duplicate key is taken: the same bytes again answer with the first
    /// acceptance; other bytes under the same DocumentId are refused.
    fn replay(&self, seq: u64, checked: Checked<'_>) -> Result<Accepted, HubError> {
        // The first submission may still be waiting for its sync (its caller gave up
        // waiting): "already accepted" is said only of what is on disk.
        self.store.barrier()?;
        let existing = self.store.doc(seq)?.ok_or(HubError::NotFound)?;
        if existing.sha256 != checked.sha256 {
            return Err(HubError::DuplicateDocumentId {
                document_id: duplicate_key(&checked.packet, &checked.sha256),
                sender: checked.packet.from,
                existing: format_id(seq),
            });
        }
        // The same sender (the key holds it): its submission receipt, not the delivery
        // receipts a fan-out may have hundreds of.
        let receipt = self.kept_submission_receipt(&existing)?;
        Ok(Accepted {
            id: format_id(seq),
            document_id: existing.document_id,
            sha256: checked.sha256,
            recipients: existing.recipients,
            created: false,
            receipt,
        })
    }

    /// Plans and commits an accepted packet (the caller holds its submit lock).
    fn store_packet(&self, c: &Checked<'_>) -> Result<Accepted, HubError> {
        let directory = self.directory.snapshot();
        // Revoke and update look at queue states: no listing may lease in between.
        let _leases: Vec<_> = if matches!(c.packet.business_type, 1 | 2) {
            self.lease_locks
                .iter()
                .map(|m| m.lock().expect("lease lock poisoned"))
                .collect()
        } else {
            Vec::new()
        };
        let mut plan = match self.plan(&c.packet, &directory) {
            // From a peer, a revoke, update or replace may overtake the document it acts on
            // (forwards run in parallel): the peer retries it (425) until it is here.
            Err(HubError::UnknownDocument(why))
                if c.only.is_some() && c.packet.business_type != 0 =>
            {
                return Err(HubError::OriginalPending(why));
            }
            r => r?,
        };
        if let Some(only) = &c.only {
            plan.recipients.retain(|r| only.contains(r));
        }
        let record = record_for(self.store.next_seq()?, c, &plan);
        let completion = self.completion_time(&c.packet, &record)?;
        let queues = Queues {
            new: self.queues_for(&record.recipients, &directory),
            add: self.queues_for(&plan.add, &directory),
        };
        let changes = changes_for(&record, c, &plan, &queues);
        let mut extra = plan.events.clone();
        for old in &plan.replaces {
            extra.push(
                crate::audit::AuditEvent::new("replaced", record.received_at_ms)
                    .agency(&record.from)
                    .document(*old)
                    .detail(serde_json::json!({ "by": format_id(record.seq) })),
            );
        }
        let indexes = self.commit(&changes, extra, true)?;
        drop(changes);
        for r in plan.add.iter().chain(&record.recipients) {
            self.wake(r);
        }
        if let Some(acked) = completion {
            self.observe_completion(&record.from, record.received_at_ms.saturating_sub(acked));
        }
        // The first entry of the commit is `accepted`.
        let receipt = self.submission_receipt(&record, indexes[0])?;
        Ok(Accepted {
            id: format_id(record.seq),
            document_id: record.document_id,
            sha256: record.sha256,
            recipients: record.recipients,
            created: true,
            receipt,
        })
    }

    /// For a "completed" (06) notice: when its sender acked the document it completes, if
    /// the hub saw that ack (the time between is a statistic).
    fn completion_time(
        &self,
        packet: &Packet,
        record: &DocRecord,
    ) -> Result<Option<u64>, HubError> {
        if record.kind != Kind::Status || record.status_code.as_deref() != Some("06") {
            return Ok(None);
        }
        let rf = &packet.response_for[0];
        Ok(
            match self
                .store
                .dedup(&dedup_key(&rf.organ_id, &rf.document_id))?
            {
                Some(doc) => self.store.acked_at(doc, &record.from)?,
                None => None,
            },
        )
    }
}

/// The agencies a packet names: its To list, or the agency a status notice answers.
fn named_recipients(packet: &Packet) -> Vec<String> {
    match packet.kind {
        Kind::Edoc | Kind::Notice => packet.to.clone(),
        Kind::Status => vec![packet.response_for[0].organ_id.clone()],
    }
}

/// The queues a submission writes to (see [`Hub::queues_for`]).
struct Queues {
    new: Vec<String>,
    add: Vec<String>,
}

/// Identity for duplicate detection: the DocumentId of a new document; the body's hash for
/// status notices and revoke/update/replace packets, which in practice reuse the DocumentId
/// of the document they act on (the SDK samples do).
fn duplicate_key(packet: &Packet, sha256: &str) -> String {
    match (&packet.document_id, packet.business_type) {
        (Some(id), 0) => id.clone(),
        _ => format!("#{}{}:{sha256}", packet.kind.as_str(), packet.business_type),
    }
}

/// The record of an accepted packet.
fn record_for(seq: u64, c: &Checked<'_>, plan: &Plan) -> DocRecord {
    let packet = &c.packet;
    let (verdict, signer, signer_sha256) = c.verdict.clone();
    DocRecord {
        seq,
        kind: packet.kind,
        from: packet.from.clone(),
        recipients: plan.recipients.clone(),
        document_id: packet.document_id.clone(),
        subject: packet.subject.clone(),
        status_code: packet.status_code.clone(),
        response_for: plan.response_for.clone(),
        acts_on: plan.original.as_ref().map(|d| d.seq),
        replaces: plan.replaces.clone(),
        withdrawn: vec![],
        business_type: packet.business_type,
        size: c.body.len() as u64,
        sha256: c.sha256.clone(),
        received_at_ms: now_ms(),
        has_signature: packet.has_signature,
        verdict: Some(verdict),
        signer,
        signer_sha256,
        paper: packet.paper,
        pdf: c.pdf.clone(),
        route: c.route.clone(),
    }
}

/// Everything one submission changes: the packet and its queue entries, and what it does to
/// the document it acts on.
fn changes_for<'a>(
    record: &'a DocRecord,
    c: &'a Checked<'_>,
    plan: &'a Plan,
    queues: &'a Queues,
) -> Vec<Change<'a>> {
    let mut changes = Vec::with_capacity(record.recipients.len() + 1);
    changes.push(Change::Accept {
        record,
        body: c.body,
        dedup_key: &c.dkey,
    });
    for r in &queues.new {
        changes.push(Change::Enqueue {
            agency: r,
            seq: record.seq,
            accepted_ms: record.received_at_ms,
        });
    }
    if let Some(orig) = &plan.original {
        for r in &queues.add {
            changes.push(Change::Enqueue {
                agency: r,
                seq: orig.seq,
                accepted_ms: orig.received_at_ms,
            });
        }
        for r in &plan.dequeue {
            changes.push(Change::Dequeue {
                agency: r,
                seq: orig.seq,
                accepted_ms: orig.received_at_ms,
            });
        }
        if plan.rewrite {
            changes.push(Change::Rewrite { record: orig });
        }
    }
    changes
}
