//! Push delivery, the core's side: which pushes are scheduled, what one attempt commits
//! before and after it talks to the endpoint, and the schedule of retries. The HTTP side
//! (connections, timeouts, the worker that drives attempts) is [`crate::push`].
//!
//! An attempt is a delivery like a pull: it leases the item (the `leased` entry, a
//! delivery attempt counted like a listing), and a 2xx acks it in one commit with its
//! `delivered` entry and signed delivery receipt, exactly as `POST /v1/inbox/{id}/ack`
//! would. A failed attempt gives the lease back at once, so the item is pullable while the
//! next attempt waits in the push index. Pull stays the truth: a pull lease defers the push
//! of that item to the lease's end, an ack ends its pushes.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::peer_stats::PeerEvent;
use super::{CONFLICT_RETRIES, Hub, HubError, format_id, now_ms, rfc3339, stripe};
use crate::audit::AuditEvent;
use crate::store::{Change, DocRecord, PushDue, QueueEntry, StoreError};

pub use super::push_lanes::{LaneStatus, PushPolicy};

/// One attempt, between its lease and its outcome.
#[derive(Debug)]
pub struct PushJob {
    pub agency: String,
    pub seq: u64,
    /// The endpoint it goes to (the directory's `push_url` when it began).
    pub url: String,
    pub doc: DocRecord,
    pub body: Vec<u8>,
    /// The Standard Webhooks headers, signed for this attempt.
    pub signature: crate::webhook::Headers,
    /// To a peer hub: the route so far and the recipients behind it.
    pub forward: Option<Forward>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The push-index entry this attempt came from.
    due_at: u64,
    /// The queue entry the attempt's lease wrote.
    lease: QueueEntry,
    started_ms: u64,
}

impl PushJob {
    /// The change that moves this attempt's push entry to `next` (`None`: ends it).
    pub(super) fn moved(&self, next: Option<(u64, u32)>) -> Change<'_> {
        Change::Push {
            agency: &self.agency,
            seq: self.seq,
            was: Some(self.due_at),
            next,
        }
    }
}

/// What a forward to a peer hub carries besides the packet.
#[derive(Debug, Clone)]
pub struct Forward {
    pub route: Vec<crate::federation::Hop>,
    pub recipients: Vec<String>,
}

/// What the endpoint did with an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// A 2xx: delivered (a peer hub answers with its signed receipt).
    Delivered {
        status: u16,
        receipt: Option<String>,
    },
    /// 410 Gone: the endpoint is retired; the agency becomes pull-only.
    Gone,
    /// Anything else: tried again on the schedule. `reason` is a metric label (`connect`,
    /// `tls`, `timeout`, `protocol`, `redirect`, `status_4xx`, `status_5xx`).
    Failed {
        reason: &'static str,
        status: Option<u16>,
        detail: String,
        /// The error code a hub's answer carried (a peer hub's refusal).
        code: Option<String>,
        /// The endpoint's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl PushOutcome {
    pub fn reason(&self) -> &'static str {
        match self {
            PushOutcome::Delivered { .. } => "delivered",
            PushOutcome::Gone => "gone",
            PushOutcome::Failed { reason, .. } => reason,
        }
    }
}

impl Hub {
    /// The first pushes of what `changes` enqueue for agencies with a push endpoint, to be
    /// committed in the same batch (so a crash cannot keep an item without its push).
    pub(super) fn with_pushes<'a>(
        &self,
        changes: &'a [Change<'a>],
        now: u64,
    ) -> Cow<'a, [Change<'a>]> {
        if !self.settings.push.enabled
            || !changes.iter().any(|c| matches!(c, Change::Enqueue { .. }))
        {
            return Cow::Borrowed(changes);
        }
        let directory = self.directory.snapshot();
        let lanes = self.push_lanes.lock().expect("push lanes lock");
        let mut pushes = Vec::new();
        for c in changes {
            if let Change::Enqueue { agency, seq, .. } = *c
                && let Some(url) = self.push_url(agency, &directory)
                && !lanes.pull_only(agency, &url)
            {
                pushes.push(Change::Push {
                    agency,
                    seq,
                    was: None,
                    next: Some((now, 0)),
                });
            }
        }
        if pushes.is_empty() {
            return Cow::Borrowed(changes);
        }
        let mut all = changes.to_vec();
        all.extend(pushes);
        Cow::Owned(all)
    }

    /// Where a queue's items are pushed: an agency's `push_url`, or a peer hub's federation
    /// endpoint for its queue (`@peer`).
    pub fn push_url(&self, queue: &str, directory: &crate::directory::Directory) -> Option<String> {
        match crate::federation::queue_peer(queue) {
            Some(peer) => self
                .settings
                .federation
                .peer(peer)
                .map(|p| p.endpoint("packets")),
            None => directory.get(queue).and_then(|a| a.push_url.clone()),
        }
    }

    /// Wakes the push worker after a commit that scheduled pushes.
    /// Runs after every commit: takes no lock unless the commit scheduled a first push.
    pub(super) fn pushes_scheduled(&self, changes: &[Change<'_>]) {
        let mut first = changes.iter().filter_map(|c| match c {
            Change::Push {
                agency, was: None, ..
            } => Some(*agency),
            _ => None,
        });
        let Some(one) = first.next() else {
            return;
        };
        let mut lanes = self.push_lanes.lock().expect("push lanes lock");
        for agency in std::iter::once(one).chain(first) {
            lanes.mark_dirty(agency);
        }
        drop(lanes);
        self.push_wake.notify_one();
    }

    /// `agency`'s scheduled pushes at or after `from_ms`, earliest first (due or not), at
    /// most `limit`.
    pub fn scheduled_pushes(
        &self,
        agency: &str,
        from_ms: u64,
        limit: usize,
    ) -> Result<Vec<PushDue>, HubError> {
        Ok(self.store.pushes(agency, from_ms, limit)?)
    }

    /// Starts an attempt of `due`: `None` when there is nothing to send now (the item was
    /// acked or expired — the entry goes; a pull holds its lease — the push waits for the
    /// lease's end; another lease won the race — the next pass sees it). Otherwise the item
    /// is leased for `lease`, long enough to cover the attempt's whole timeout.
    pub fn push_begin(
        &self,
        agency: &str,
        url: &str,
        due: PushDue,
        lease: Duration,
    ) -> Result<Option<PushJob>, HubError> {
        let _guard = self.lease_locks[stripe(agency)]
            .lock()
            .expect("lease lock poisoned");
        let now = now_ms();
        let end = |next| Change::Push {
            agency,
            seq: due.seq,
            was: Some(due.at_ms),
            next,
        };
        let Some(e) = self.store.queue_entry(agency, due.seq)? else {
            self.commit_quietly(&[end(None)])?;
            return Ok(None);
        };
        if e.lease_until_ms > now {
            self.commit_quietly(&[end(Some((e.lease_until_ms, due.attempts)))])?;
            return Ok(None);
        }
        let (Some(doc), Some(body)) = (self.store.doc(due.seq)?, self.store.body(due.seq)?) else {
            // No body to send (purged): the agency pulls the record's answer instead.
            self.commit_quietly(&[end(None)])?;
            return Ok(None);
        };
        let entry = QueueEntry {
            lease_until_ms: now + lease.as_millis() as u64,
            deliveries: e.deliveries + 1,
            fetched: e.fetched,
        };
        let lease_change = Change::Lease {
            agency,
            seq: due.seq,
            was: e,
            entry,
        };
        match self.commit(&[lease_change], vec![], false) {
            Err(HubError::Store(StoreError::Conflict)) => return Ok(None),
            r => r?,
        };
        let peer = crate::federation::queue_peer(agency);
        let forward = peer.map(|peer| self.forward_of(&doc, peer));
        // A report goes to the peer's report endpoint, not its packet endpoint.
        let url = match peer.and_then(|p| self.settings.federation.peer(p)) {
            Some(p) if super::hop_reports::is_report(&doc) => p.endpoint("reports"),
            _ => url.to_owned(),
        };
        let id = format_id(due.seq);
        let signature = crate::webhook::sign(&self.notary, &id, &body, SystemTime::now())
            .map_err(|e| HubError::Notary(e.to_string()))?;
        Ok(Some(PushJob {
            agency: agency.to_owned(),
            seq: due.seq,
            url,
            doc,
            body,
            signature,
            forward,
            attempt: due.attempts + 1,
            due_at: due.at_ms,
            lease: entry,
            started_ms: now,
        }))
    }

    /// Commits an attempt's outcome. Delivered: the ack, its `delivered` entry and receipt
    /// (durable, as an agency's ack is), with a `pushed` entry saying how. Failed: the lease
    /// is given back and the next attempt scheduled, with a `push_failed` entry. Gone: the
    /// same, and the agency is marked pull-only.
    pub fn push_end(&self, job: &PushJob, outcome: &PushOutcome) -> Result<(), HubError> {
        let now = now_ms();
        let ms = now.saturating_sub(job.started_ms);
        self.observe_push(&job.agency, outcome, ms);
        self.push_lanes.lock().expect("push lanes lock").record(
            &job.agency,
            &job.url,
            outcome,
            now,
            &self.settings.push,
        );
        let peer_event = |e| {
            if job.forward.is_some() {
                self.observe_peer(&job.agency, e);
            }
        };
        match outcome {
            PushOutcome::Delivered { status, receipt } => {
                peer_event(PeerEvent::Forwarded);
                self.push_delivered(job, *status, receipt.as_deref(), ms)
            }
            PushOutcome::Failed {
                status: Some(s),
                code,
                ..
            } if job.forward.is_some()
                && (400..500).contains(s)
                && !matches!(s, 408 | 425 | 429) =>
            {
                peer_event(PeerEvent::ForwardRefused);
                let code = code.clone().unwrap_or_else(|| format!("status {s}"));
                self.forward_refused(job, &code, now)
            }
            PushOutcome::Gone | PushOutcome::Failed { .. } => {
                peer_event(PeerEvent::ForwardFailed);
                self.push_failed(job, outcome, now)
            }
        }
    }

    fn push_delivered(
        &self,
        job: &PushJob,
        status: u16,
        receipt: Option<&str>,
        ms: u64,
    ) -> Result<(), HubError> {
        let at_ms = now_ms();
        let agency = job.agency.as_str();
        let changes = [
            Change::Ack {
                agency,
                seq: job.seq,
                at_ms,
                accepted_ms: job.doc.received_at_ms,
            },
            job.moved(None),
        ];
        let pushed = AuditEvent::new("pushed", at_ms)
            .agency(agency)
            .document(job.seq)
            .detail(json!({"attempt": job.attempt, "status": status, "ms": ms,
                "hop_receipt": receipt}));
        match self.commit(&changes, vec![pushed], true) {
            Ok(indexes) => {
                self.observe_delivery_latency(at_ms.saturating_sub(job.doc.received_at_ms));
                self.delivery_receipt(&job.doc, agency, at_ms, indexes[0])?;
                Ok(())
            }
            // Acked by a pull meanwhile (delivered twice, which a receiver dedups by id):
            // only the push entry is left to remove.
            Err(HubError::Store(StoreError::Conflict)) => self.commit_quietly(&changes[1..]),
            Err(e) => Err(e),
        }
    }

    fn push_failed(&self, job: &PushJob, outcome: &PushOutcome, now: u64) -> Result<(), HubError> {
        let agency = job.agency.as_str();
        let gone = *outcome == PushOutcome::Gone;
        let retry_after = match outcome {
            PushOutcome::Failed { retry_after, .. } => *retry_after,
            _ => None,
        };
        // Gone: the entry stays where it is, for when the agency names a new endpoint.
        let next_at = if gone {
            job.due_at
        } else {
            now + self.settings.push.delay(job.attempt, job.seq, retry_after)
        };
        let status = match outcome {
            PushOutcome::Failed { status, .. } => *status,
            _ => Some(410),
        };
        // The sender reads these entries too: the reason, not the endpoint's address or
        // its error text (those are in the hub's log and the agency's push status).
        let event = AuditEvent::new(if gone { "push_gone" } else { "push_failed" }, now)
            .agency(agency)
            .document(job.seq)
            .detail(json!({
                "attempt": job.attempt,
                "reason": outcome.reason(),
                "status": status,
                "next_attempt_at": (!gone).then(|| rfc3339(next_at)),
            }));
        let mut lease = job.lease;
        for _ in 0..=CONFLICT_RETRIES {
            let mut changes = Vec::with_capacity(3);
            let current = self.store.queue_entry(agency, job.seq)?;
            if current == Some(lease) {
                let entry = QueueEntry {
                    lease_until_ms: now,
                    ..lease
                };
                changes.push(Change::Release {
                    agency,
                    seq: job.seq,
                    was: lease,
                    entry,
                });
            }
            // Acked or expired meanwhile: the push ends with this attempt.
            let next = current.map(|_| (next_at, job.attempt));
            changes.push(job.moved(next));
            if gone {
                changes.push(Change::PullOnly {
                    agency,
                    url: Some(&job.url),
                });
            }
            match self.commit(&changes, vec![event.clone()], gone) {
                Err(HubError::Store(StoreError::Conflict)) => {
                    // A fetch flagged the entry, or a pull acked it: read it again.
                    if let Some(e) = current {
                        lease = e;
                    }
                }
                r => return r.map(|_| ()),
            }
        }
        Err(HubError::Store(StoreError::Conflict))
    }

    /// Commits bookkeeping of the push index; a conflict means another change already did
    /// what was needed (or will: the next pass reads again).
    pub(super) fn commit_quietly(&self, changes: &[Change<'_>]) -> Result<(), HubError> {
        match self.commit(changes, vec![], false) {
            Ok(_) | Err(HubError::Store(StoreError::Conflict)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes sure every item queued for `agency` has a push scheduled, for an agency that
    /// just got a push endpoint (or a new one after a 410): what was queued before is
    /// pushed too. Lifts the pull-only mark of an agency whose endpoint changed. Returns how
    /// many pushes it scheduled.
    pub fn push_resume(&self, agency: &str, url: &str) -> Result<usize, HubError> {
        let gone_url = self
            .push_lanes
            .lock()
            .expect("push lanes lock")
            .gone_url(agency);
        match gone_url {
            Some(gone) if gone == url => return Ok(0),
            Some(_) => {
                self.commit(&[Change::PullOnly { agency, url: None }], vec![], true)?;
                self.push_lanes
                    .lock()
                    .expect("push lanes lock")
                    .set_gone(agency, None);
                tracing::info!(agency, url, "push endpoint changed: pushing again");
            }
            None => {}
        }
        let scheduled: std::collections::HashSet<u64> = self
            .store
            .pushes(agency, 0, usize::MAX)?
            .into_iter()
            .map(|p| p.seq)
            .collect();
        let mut missing = Vec::new();
        self.store.scan_queue(agency, &mut |seq, _| {
            if !scheduled.contains(&seq) {
                missing.push(seq);
            }
            true
        })?;
        let now = now_ms();
        for chunk in missing.chunks(1000) {
            let changes: Vec<Change<'_>> = chunk
                .iter()
                .map(|&seq| Change::Push {
                    agency,
                    seq,
                    was: None,
                    next: Some((now, 0)),
                })
                .collect();
            self.commit_quietly(&changes)?;
        }
        Ok(missing.len())
    }

    /// Loads the pull-only marks (at start).
    pub fn load_push_state(&self) -> Result<(), HubError> {
        let gone = self.store.pull_only()?;
        let mut lanes = self.push_lanes.lock().expect("push lanes lock");
        for (agency, url) in gone {
            lanes.set_gone(&agency, Some(url));
        }
        Ok(())
    }

    /// Whether `agency`'s pushes are held back now (pull-only for `url`, or backing off
    /// after failures), and until when (ms) for a back-off.
    pub fn push_held(&self, agency: &str, url: &str, now: u64) -> Option<u64> {
        self.push_lanes
            .lock()
            .expect("push lanes lock")
            .held(agency, url, now)
    }

    /// Agencies the worker should read the push index of now: marked by new pushes since
    /// the last call (then unmarked).
    pub fn take_dirty_push_lanes(&self) -> Vec<String> {
        self.push_lanes
            .lock()
            .expect("push lanes lock")
            .take_dirty()
    }

    /// Push state per agency, for `/v1/stats` and the dashboard.
    pub fn push_status(&self) -> Vec<LaneStatus> {
        let directory = self.directory.snapshot();
        self.push_lanes
            .lock()
            .expect("push lanes lock")
            .status(&directory)
    }

    /// Resolves when a commit scheduled new pushes (or at once if one did since the last
    /// wait).
    pub async fn pushes_waiting(&self) {
        self.push_wake.notified().await
    }
}
