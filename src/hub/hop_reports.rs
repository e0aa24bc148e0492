//! Delivery reports between hubs: how a sender learns what became of its document at a
//! hub it never talks to.
//!
//! The hub that holds a recipient's copy of a document that came from a peer (the last hop),
//! or a hub in the middle whose forward was refused for good, writes a **report**: a
//! hub-signed JWS saying which recipients reached which state (`fetched`, `delivered`,
//! `expired`, `refused`), when, and at which hub. It is stored and queued for the peer
//! towards the document's sender in the same commit as the change it reports (an ack, a
//! first fetch, an expiry, a refusal), so a crash cannot keep one without the other, and it
//! travels like a packet: the push worker sends it to the peer's `/v1/federation/reports`
//! with the retry schedule. Each hub on the way back records the state on its copy of the
//! document (`remote_state` in its audit log, shown in `/status` and `/v1/sent`) and passes
//! the same signed bytes on; the sender's hub turns `expired` and `refused` into a notice in
//! the sender's inbox. A report is identified by its origin hub and number, so a retried
//! report is recorded once per hub.

use serde::Deserialize;
use serde_json::json;

use super::upkeep::{HUB_SENDER, Undelivered, notice_changes};
use super::{Hub, HubError, format_id, now_ms, rfc3339, stripe};
use crate::audit::AuditEvent;
use crate::edxml::Kind;
use crate::federation::{Hop, peer_queue};
use crate::store::{Change, DocRecord, dedup_key};

/// The largest report body a hub accepts (a report names recipients, not content).
pub const REPORT_MAX: usize = 64 * 1024;

/// What became of a forwarded document at the hub that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RemoteState {
    Fetched,
    Delivered,
    Expired,
    Refused,
}

impl RemoteState {
    fn as_str(self) -> &'static str {
        match self {
            RemoteState::Fetched => "fetched",
            RemoteState::Delivered => "delivered",
            RemoteState::Expired => "expired",
            RemoteState::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "fetched" => RemoteState::Fetched,
            "delivered" => RemoteState::Delivered,
            "expired" => RemoteState::Expired,
            "refused" => RemoteState::Refused,
            _ => return None,
        })
    }
}

/// A report ready to store and queue for `queue` (the peer towards the sender); `queue` is
/// `None` at the sender's own hub, where the report is recorded but travels no further.
pub(super) struct Report {
    record: DocRecord,
    body: String,
    dkey: Vec<u8>,
    queue: Option<String>,
}

impl Report {
    /// The changes that store the report (with its duplicate key) and queue it.
    pub(super) fn changes(&self) -> Vec<Change<'_>> {
        let mut out = vec![Change::Accept {
            record: &self.record,
            body: self.body.as_bytes(),
            dedup_key: &self.dkey,
        }];
        if let Some(q) = &self.queue {
            out.push(Change::Enqueue {
                agency: q,
                seq: self.record.seq,
                accepted_ms: self.record.received_at_ms,
            });
        }
        out
    }
}

/// The signed statement a report carries (its JWS payload).
#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    report_id: String,
    hub: String,
    state: String,
    at: String,
    recipients: Vec<String>,
    sender: String,
    document_id: String,
    sha256: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    refused_by: Option<String>,
}

/// How `POST /v1/federation/reports` went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportAnswer {
    pub report_id: String,
    /// False for a report this hub had recorded already (a retry).
    pub created: bool,
}

/// Whether `doc` is a report (a hub's statement travelling between hubs).
/// (Hub notices to agencies are never queued for a peer; reports only are.)
pub(super) fn is_report(doc: &DocRecord) -> bool {
    doc.kind == Kind::Notice && doc.from == HUB_SENDER
}

const REPORT_SUBJECT: &str = "Báo cáo chuyển phát";

impl Hub {
    /// Whether `doc` came from an agency behind a peer hub (so its recipients' states are
    /// reported back). Hub notices and reports are not reported on.
    pub(super) fn sent_from_behind_peer(&self, doc: &DocRecord) -> bool {
        doc.from != HUB_SENDER
            && self.settings.federation.route(&doc.from).is_some()
            && !self.directory.snapshot().contains(&doc.from)
    }

    /// The reports `changes` call for: an ack or a first fetch by a local recipient of a
    /// document from behind a peer. Nothing (and no reads) on a hub without peers.
    pub(super) fn reports_for(&self, changes: &[Change<'_>]) -> Result<Vec<Report>, HubError> {
        if self.settings.federation.peers.is_empty() {
            return Ok(Vec::new());
        }
        // (document, state) -> recipients
        let mut due: Vec<(u64, RemoteState, Vec<String>)> = Vec::new();
        for c in changes {
            let (agency, seq, state) = match *c {
                Change::Ack { agency, seq, .. } => (agency, seq, RemoteState::Delivered),
                Change::Fetch {
                    agency, seq, was, ..
                } if !was.fetched => (agency, seq, RemoteState::Fetched),
                _ => continue,
            };
            if crate::federation::queue_peer(agency).is_some() {
                continue; // a hop to the next hub: that hub reports
            }
            match due.iter_mut().find(|(s, st, _)| *s == seq && *st == state) {
                Some((_, _, rs)) => rs.push(agency.to_owned()),
                None => due.push((seq, state, vec![agency.to_owned()])),
            }
        }
        let mut out = Vec::new();
        for (seq, state, recipients) in due {
            let Some(doc) = self.store.doc(seq)? else {
                continue;
            };
            if self.sent_from_behind_peer(&doc) {
                out.extend(self.report(&doc, &recipients, state, None)?);
            }
        }
        Ok(out)
    }

    /// A report that `recipients` of `doc` reached `state` here (for `Refused`: which hub
    /// refused and why), queued for the peer towards `doc`'s sender. `None` when no peer
    /// routes to the sender (nothing to tell, nobody to tell it to).
    pub(super) fn report(
        &self,
        doc: &DocRecord,
        recipients: &[String],
        state: RemoteState,
        refusal: Option<(&str, &str)>,
    ) -> Result<Option<Report>, HubError> {
        let fed = &self.settings.federation;
        let Some(towards) = fed.route(&doc.from) else {
            return Ok(None);
        };
        let now = now_ms();
        let seq = self.store.next_seq()?;
        let report_id = format!("{}:{}", fed.hub_id, format_id(seq));
        let payload = json!({
            "type": "report",
            "report_id": report_id,
            "hub": fed.hub_id,
            "state": state.as_str(),
            "at": rfc3339(now),
            "recipients": recipients,
            "sender": doc.from,
            "document_id": doc.document_id,
            "sha256": doc.sha256,
            "route": doc.route,
            "reason": refusal.map(|(_, code)| code),
            "refused_by": refusal.map(|(by, _)| by),
        });
        let jws = crate::jws::sign(&self.notary, &payload)
            .map_err(|e| HubError::Notary(e.to_string()))?;
        let hop = Hop {
            hub: fed.hub_id.clone(),
            at: rfc3339(now),
        };
        let record = report_record(seq, doc, &jws, now, vec![hop]);
        Ok(Some(Report {
            record,
            dkey: report_key(&report_id),
            body: jws,
            queue: Some(peer_queue(&towards.id)),
        }))
    }

    /// A report a peer hub sends (`POST /v1/federation/reports`): it must be about a
    /// document this hub holds (same sender, DocumentId and SHA-256) and about recipients
    /// behind that peer. Recorded once (a retry is answered `created: false`); passed on
    /// towards the sender, or, at the sender's hub, an `expired` or `refused` report becomes
    /// a notice in the sender's inbox.
    pub fn receive_report(&self, peer: &str, body: &[u8]) -> Result<ReportAnswer, HubError> {
        if body.len() > REPORT_MAX {
            return Err(HubError::Invalid(format!(
                "a report is at most {REPORT_MAX} bytes"
            )));
        }
        let jws = std::str::from_utf8(body)
            .map_err(|_| HubError::Invalid("a report is a JWS compact serialization".into()))?;
        let p: Payload = crate::jws::payload_unverified(jws)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| HubError::Invalid("not a hub report".into()))?;
        let state = RemoteState::parse(&p.state)
            .filter(|_| p.kind == "report")
            .ok_or_else(|| HubError::Invalid(format!("unknown report state {:?}", p.state)))?;
        let doc = self.reported_document(&p)?;
        self.check_reporter(peer, &doc, &p)?;
        let dkey = report_key(&p.report_id);
        let _guard = self.submit_locks[stripe(&dkey)]
            .lock()
            .expect("submit lock poisoned");
        if self.store.dedup(&dkey)?.is_some() {
            return Ok(ReportAnswer {
                report_id: p.report_id,
                created: false,
            });
        }
        self.record_report(peer, &doc, &p, state, jws, dkey)?;
        self.observe_peer(peer, super::peer_stats::PeerEvent::ReportIn);
        Ok(ReportAnswer {
            report_id: p.report_id,
            created: true,
        })
    }

    /// The document a report is about; the same answer for one this hub never held and
    /// one with other bytes.
    fn reported_document(&self, p: &Payload) -> Result<DocRecord, HubError> {
        self.store
            .dedup(&dedup_key(&p.sender, &p.document_id))?
            .and_then(|seq| self.store.doc(seq).ok().flatten())
            .filter(|d| d.sha256 == p.sha256)
            .ok_or_else(|| {
                HubError::UnknownDocument(format!(
                    "no document {:?} of {} with that SHA-256 passed this hub",
                    p.document_id, p.sender
                ))
            })
    }

    /// A peer reports only on recipients of the document that route through it.
    fn check_reporter(&self, peer: &str, doc: &DocRecord, p: &Payload) -> Result<(), HubError> {
        let fed = &self.settings.federation;
        let directory = self.directory.snapshot();
        let stranger = p.recipients.iter().find(|r| {
            !doc.recipients.contains(r)
                || directory.contains(r)
                || fed.route(r).is_none_or(|q| q.id != peer)
        });
        match (p.recipients.is_empty(), stranger) {
            (true, _) => Err(HubError::Invalid("a report names its recipients".into())),
            (false, Some(r)) => Err(HubError::RecipientNotBehindPeer {
                recipient: r.clone(),
                peer: peer.to_owned(),
            }),
            (false, None) => Ok(()),
        }
    }

    /// Stores a new report: its `remote_state` entries on the document, and either the
    /// report queued on towards the sender or (the sender is local) the sender's notice.
    fn record_report(
        &self,
        peer: &str,
        doc: &DocRecord,
        p: &Payload,
        state: RemoteState,
        jws: &str,
        dkey: Vec<u8>,
    ) -> Result<(), HubError> {
        let now = now_ms();
        let local_sender = self.directory.snapshot().contains(&doc.from);
        let queue = match self.settings.federation.route(&doc.from) {
            Some(towards) if !local_sender => Some(peer_queue(&towards.id)),
            _ => None,
        };
        let hop = Hop {
            hub: peer.to_owned(),
            at: rfc3339(now),
        };
        let seq = self.store.next_seq()?;
        let report = Report {
            record: report_record(seq, doc, jws, now, vec![hop]),
            body: jws.to_owned(),
            dkey,
            queue,
        };
        let notice = match state {
            RemoteState::Expired | RemoteState::Refused if local_sender => {
                let why = match state {
                    RemoteState::Expired => Undelivered::ExpiredAt { hub: p.hub.clone() },
                    _ => Undelivered::Refused {
                        by: p.refused_by.clone().unwrap_or_else(|| p.hub.clone()),
                        code: p.reason.clone().unwrap_or_default(),
                    },
                };
                self.undelivered_notice(doc, &p.recipients, now, &why)?
            }
            _ => None,
        };
        let mut changes = report.changes();
        if let Some(n) = &notice {
            changes.extend(notice_changes(n, &doc.from));
        }
        let events = p
            .recipients
            .iter()
            .map(|r| {
                AuditEvent::new("remote_state", now)
                    .agency(r)
                    .document(doc.seq)
                    .detail(json!({"state": state.as_str(), "hub": p.hub, "at": p.at,
                        "reason": p.reason, "refused_by": p.refused_by,
                        "report": p.report_id, "via": peer}))
            })
            .collect();
        self.commit(&changes, events, true)?;
        if notice.is_some() {
            self.wake(&doc.from);
        }
        Ok(())
    }
}

/// The duplicate key of the report `report_id` (origin hub and its number there).
fn report_key(report_id: &str) -> Vec<u8> {
    dedup_key(HUB_SENDER, &format!("#report:{report_id}"))
}

/// The record of a report about `doc`, addressed to `doc`'s sender.
fn report_record(seq: u64, doc: &DocRecord, jws: &str, now: u64, route: Vec<Hop>) -> DocRecord {
    let subject = format!(
        "{REPORT_SUBJECT}: {}",
        doc.document_id.as_deref().unwrap_or("")
    );
    super::upkeep::hub_record(seq, doc, subject, jws, now, route)
}
