//! The hub's core: what an agency may do, and every state change it causes.
//!
//! Transports authenticate, decode and call one method here; they never touch storage. Each
//! state change is committed through [`Hub::commit`], the single place a later audit log or
//! metrics hook observes. Methods here block (RocksDB, hashing): call them from
//! `spawn_blocking`, or through the async wrappers at the bottom.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::digest::sha256_hex;
use crate::directory::SharedDirectory;
use crate::edxml::{self, EdxmlError, Kind};
use crate::stats::Counters;
use crate::store::{Change, DocRecord, QueueEntry, Store, StoreError, dedup_key};

mod business;
pub mod events;
mod notary;
mod observe;
mod report;
mod signatures;
mod state;
mod upkeep;

pub use notary::{AuditFilter, Reader};
pub use report::{Scope, Window};
pub use signatures::{Gate, Signatures};

/// Who is calling: an agency, identified by its OrganId (from its client certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub organ_id: String,
}

/// Why the hub refused a request. The transport maps each code to its status.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Edxml(#[from] EdxmlError),
    #[error(
        "From/OrganId {from} does not match the caller {caller}: agencies send only as themselves"
    )]
    SenderMismatch { from: String, caller: String },
    #[error("recipients not in the directory: {}", .0.join(", "))]
    UnknownRecipients(Vec<String>),
    #[error(
        "DocumentId {document_id:?} was already submitted by {sender} with a different body (id {existing})"
    )]
    DuplicateDocumentId {
        sender: String,
        document_id: String,
        existing: String,
    },
    #[error("signature refused: {0}")]
    Signature(#[from] crate::dsig::SigFailure),
    #[error("{0}")]
    UnknownDocument(String),
    #[error("no such item")]
    NotFound,
    #[error("the request was cancelled (the client left or it timed out) before it was decided")]
    Cancelled,
    #[error(
        "the body of {0} was purged after the retention period; its record, receipts and audit entries remain"
    )]
    Purged(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the hub could not sign: {0}")]
    Notary(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HubError {
    pub fn code(&self) -> &'static str {
        match self {
            HubError::Edxml(e) => e.code(),
            HubError::SenderMismatch { .. } => "sender_mismatch",
            HubError::UnknownRecipients(_) => "unknown_recipient",
            HubError::DuplicateDocumentId { .. } => "duplicate_document_id",
            HubError::Signature(f) => f.code.as_str(),
            HubError::NotFound => "not_found",
            HubError::Purged(_) => "body_purged",
            HubError::UnknownDocument(_) => "unknown_document",
            HubError::Cancelled => "request_cancelled",
            HubError::Invalid(_) => "bad_request",
            HubError::Notary(_) => "signing_failed",
            HubError::Store(StoreError::NoSpace(_)) => "insufficient_storage",
            HubError::Store(_) => "storage_error",
        }
    }
}

/// The answer to an accepted submission.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Accepted {
    pub id: String,
    pub document_id: Option<String>,
    pub sha256: String,
    pub recipients: Vec<String>,
    /// False when this exact packet had been accepted before (nothing new was queued).
    pub created: bool,
    /// The hub-signed submission receipt (JWS compact; see docs/audit.md).
    pub receipt: String,
}

/// The answer to an acknowledgement.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Acked {
    pub id: String,
    pub acked: bool,
    /// False when it had been acked before.
    pub removed: bool,
    /// The hub-signed delivery receipt (JWS compact); in a batch acknowledgement, items it
    /// removed are covered by the batch's receipt instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// The outcome of a batch acknowledgement.
#[derive(Debug)]
pub struct AckedMany {
    /// One per id given, in order.
    pub results: Vec<Result<Acked, HubError>>,
    /// The signed delivery receipt of every item this call removed (`None` if none).
    pub receipt: Option<String>,
}

/// One inbox line: metadata only; the body is fetched separately.
#[derive(Debug, Clone, Serialize)]
pub struct InboxItem {
    pub id: String,
    pub kind: Kind,
    pub from: String,
    pub document_id: Option<String>,
    pub subject: Option<String>,
    pub status_code: Option<String>,
    pub response_for: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub received_at: String,
    pub has_signature: bool,
    /// `verified`, or the reason code the signature failed with (policy `record`).
    pub verdict: Option<String>,
    /// Subject CN of the signing certificate, when the signature verified.
    pub signer: Option<String>,
    /// The hub id of the document a status notice, revoke or update acts on.
    pub acts_on: Option<String>,
    /// The hub ids of the documents a replacement replaces.
    pub replaces: Vec<String>,
    pub lease_expires_at: String,
    /// How many times this item has been listed (1 on first delivery).
    pub deliveries: u32,
}

/// Tunables of the core, from the `[queue]` config section.
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub lease: Duration,
    pub max_inbox_limit: usize,
    pub max_wait: Duration,
    /// Unacknowledged items expire this long after acceptance.
    pub expiry: Duration,
    /// Bodies are purged this long after acceptance (`None`: kept forever).
    pub body_retention: Option<Duration>,
    /// Structural bounds on packets (`[edxml]`).
    pub limits: edxml::Limits,
}

const STRIPES: usize = 64;

pub struct Hub {
    store: Store,
    signatures: Signatures,
    /// The hub's own key: signs receipts and tree heads.
    notary: crate::dsig::Signer,
    directory: SharedDirectory,
    settings: HubSettings,
    next_seq: AtomicU64,
    /// Serializes the duplicate check and the write for the same (sender, key).
    submit_locks: Vec<Mutex<()>>,
    /// Serializes list-and-lease per agency, so two listings never lease the same item.
    lease_locks: Vec<Mutex<()>>,
    /// Wakes long-polling listings when something is queued for an agency.
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// Fires when the daemon starts draining: long polls answer at once instead of holding
    /// the drain up for their whole wait.
    shutdown: CancellationToken,
    /// Statistics not yet flushed (see [`crate::stats`]).
    counters: Counters,
    /// Last inbox listing per agency (ms), not yet flushed.
    last_pull: Mutex<HashMap<String, u64>>,
    /// Pending items per agency, kept exact by [`Hub::commit`].
    depth: Mutex<HashMap<String, u64>>,
    /// Per-agency Prometheus counter handles (see `observe.rs`).
    agency_metrics: Mutex<HashMap<String, observe::AgencyCounters>>,
    /// Set when a write failed for lack of disk space: RocksDB then refuses writes until the
    /// process restarts, and readiness reports it.
    storage_full: std::sync::atomic::AtomicBool,
    /// Where the retention purge continues (documents before it are done or kept).
    purge_cursor: AtomicU64,
}

/// Formats a sequence number as the public id.
/// Work stopped because its request was given up; counted, never recorded as a refusal.
fn cancelled() -> HubError {
    metrics::counter!("lienthong_requests_cancelled_total").increment(1);
    HubError::Cancelled
}

pub fn format_id(seq: u64) -> String {
    format!("{seq:016x}")
}

/// Parses a public id; anything malformed is simply "not found".
pub fn parse_id(id: &str) -> Option<u64> {
    if id.len() != 16 {
        return None;
    }
    u64::from_str_radix(id, 16).ok()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC text for a millisecond timestamp.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn stripe<T: Hash + ?Sized>(v: &T) -> usize {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

impl Hub {
    pub fn new(
        store: Store,
        directory: SharedDirectory,
        settings: HubSettings,
        signatures: Signatures,
        notary: crate::dsig::Signer,
        shutdown: CancellationToken,
    ) -> Result<Hub, HubError> {
        let next = store.max_seq()? + 1;
        let depth = store.queue_depths()?;
        Ok(Hub {
            counters: Counters::default(),
            last_pull: Mutex::new(HashMap::new()),
            depth: Mutex::new(depth),
            agency_metrics: Mutex::new(HashMap::new()),
            storage_full: std::sync::atomic::AtomicBool::new(false),
            purge_cursor: AtomicU64::new(0),
            store,
            signatures,
            notary,
            directory,
            settings,
            next_seq: AtomicU64::new(next),
            submit_locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            lease_locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            waiters: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    pub fn directory(&self) -> &SharedDirectory {
        &self.directory
    }

    /// False once a write failed for lack of space (see `storage_full`).
    pub fn storage_ok(&self) -> bool {
        !self.storage_full.load(Ordering::SeqCst)
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    pub fn signatures(&self) -> &Signatures {
        &self.signatures
    }

    /// The one place state changes are committed, with their audit entries (plus `extra`
    /// ones) in the same batch; statistics and metrics observe them here. Returns the log
    /// indexes of the entries, in order.
    fn commit(
        &self,
        changes: &[Change<'_>],
        extra: Vec<crate::audit::AuditEvent>,
        durable: bool,
    ) -> Result<Vec<u64>, HubError> {
        let mut events = events::for_changes(changes, now_ms());
        events.extend(extra);
        let indexes = match self.store.apply(changes, events, durable) {
            Ok(i) => i,
            Err(e) => {
                if matches!(e, StoreError::NoSpace(_)) {
                    self.storage_full.store(true, Ordering::SeqCst);
                }
                return Err(e.into());
            }
        };
        self.observe(changes);
        Ok(indexes)
    }

    /// Records an event that changes no state (a refusal, a reload). Not synced: losing the
    /// last of these in a crash loses no document.
    pub fn record(&self, event: crate::audit::AuditEvent) -> Result<u64, HubError> {
        let idx = self.commit(&[], vec![event], false)?;
        Ok(idx.first().copied().unwrap_or_default())
    }

    /// Validates, routes and durably stores a packet; see the API docs for the rules.
    pub fn submit(&self, caller: &Principal, body: &[u8]) -> Result<Accepted, HubError> {
        if crate::cancel::cancelled() {
            return Err(cancelled());
        }
        let packet = match edxml::parse_limited(body, &self.settings.limits) {
            Err(edxml::EdxmlError::Cancelled) => return Err(cancelled()),
            r => r?,
        };
        if packet.from != caller.organ_id {
            return Err(HubError::SenderMismatch {
                from: packet.from,
                caller: caller.organ_id.clone(),
            });
        }
        let sha256 = sha256_hex(body);
        let directory = self.directory.snapshot();

        // Who it names: the To list, or the agency a status notice answers.
        let recipients: Vec<String> = match packet.kind {
            Kind::Edoc | Kind::Notice => packet.to.clone(),
            Kind::Status => vec![packet.response_for[0].organ_id.clone()],
        };
        let unknown: Vec<String> = recipients
            .iter()
            .filter(|r| !directory.contains(r))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(HubError::UnknownRecipients(unknown));
        }
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
        let (verdict, signer, signer_sha256) = match gate? {
            Gate::Verified(v) => (
                crate::dsig::VERDICT_VERIFIED.to_owned(),
                v.signer_cn,
                Some(v.cert_sha256),
            ),
            Gate::Recorded(f) => (f.code.as_str().to_owned(), None, None),
        };

        // Identity for duplicate detection: the DocumentId of a new document; the body's hash
        // for status notices and revoke/update/replace packets, which in practice reuse the
        // DocumentId of the document they act on (the SDK samples do).
        let key = match (&packet.document_id, packet.business_type) {
            (Some(id), 0) => id.clone(),
            _ => format!("#{}{}:{sha256}", packet.kind.as_str(), packet.business_type),
        };
        let dkey = dedup_key(&packet.from, &key);
        let _guard = self.submit_locks[stripe(&dkey)]
            .lock()
            .expect("submit lock poisoned");
        if let Some(seq) = self.store.dedup(&dkey)? {
            let existing = self.store.doc(seq)?.ok_or(HubError::NotFound)?;
            if existing.sha256 == sha256 {
                // The same sender (the key holds it): its submission receipt, not the
                // delivery receipts a fan-out may have hundreds of.
                let receipt = self.kept_submission_receipt(&existing)?;
                return Ok(Accepted {
                    id: format_id(seq),
                    document_id: existing.document_id,
                    sha256,
                    recipients: existing.recipients,
                    created: false,
                    receipt,
                });
            }
            return Err(HubError::DuplicateDocumentId {
                sender: packet.from,
                document_id: key,
                existing: format_id(seq),
            });
        }

        // Revoke and update look at queue states: no listing may lease in between.
        let _leases: Vec<_> = if matches!(packet.business_type, 1 | 2) {
            self.lease_locks
                .iter()
                .map(|m| m.lock().expect("lease lock poisoned"))
                .collect()
        } else {
            Vec::new()
        };
        let plan = self.plan(&packet, &directory)?;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let record = DocRecord {
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
            size: body.len() as u64,
            sha256,
            received_at_ms: now_ms(),
            has_signature: packet.has_signature,
            verdict: Some(verdict),
            signer,
            signer_sha256,
            paper: packet.paper,
        };
        // Time from the receiver's ack to its "completed" notice, when the hub saw both.
        let completion = match (&record.kind, record.status_code.as_deref()) {
            (Kind::Status, Some("06")) => {
                let rf = &packet.response_for[0];
                match self
                    .store
                    .dedup(&dedup_key(&rf.organ_id, &rf.document_id))?
                {
                    Some(doc) => self.store.acked_at(doc, &record.from)?,
                    None => None,
                }
            }
            _ => None,
        };
        let mut changes = Vec::with_capacity(record.recipients.len() + 1);
        changes.push(Change::Accept {
            record: &record,
            body,
            dedup_key: &dkey,
        });
        for r in &record.recipients {
            changes.push(Change::Enqueue { agency: r, seq });
        }
        if let Some(orig) = &plan.original {
            for r in &plan.add {
                changes.push(Change::Enqueue {
                    agency: r,
                    seq: orig.seq,
                });
            }
            for r in &plan.dequeue {
                changes.push(Change::Dequeue {
                    agency: r,
                    seq: orig.seq,
                });
            }
            if plan.rewrite {
                changes.push(Change::Rewrite { record: orig });
            }
        }
        let mut extra = plan.events.clone();
        for old in &plan.replaces {
            extra.push(
                crate::audit::AuditEvent::new("replaced", record.received_at_ms)
                    .agency(&record.from)
                    .document(*old)
                    .detail(serde_json::json!({ "by": format_id(seq) })),
            );
        }
        let indexes = self.commit(&changes, extra, true)?;
        drop(changes);
        for r in &plan.add {
            self.wake(r);
        }
        if let Some(acked) = completion {
            self.observe_completion(&record.from, record.received_at_ms.saturating_sub(acked));
        }
        for r in &record.recipients {
            self.wake(r);
        }
        // The first entry of the commit is `accepted`.
        let receipt = self.submission_receipt(&record, indexes[0])?;
        Ok(Accepted {
            id: format_id(seq),
            document_id: record.document_id,
            sha256: record.sha256,
            recipients: record.recipients,
            created: true,
            receipt,
        })
    }

    /// Lists and leases up to `limit` of the caller's pending items, oldest first.
    pub fn list_inbox(&self, caller: &Principal, limit: usize) -> Result<Vec<InboxItem>, HubError> {
        let limit = limit.clamp(1, self.settings.max_inbox_limit);
        let agency = caller.organ_id.as_str();
        let _guard = self.lease_locks[stripe(agency)]
            .lock()
            .expect("lease lock poisoned");
        let now = now_ms();
        self.last_pull
            .lock()
            .expect("last-pull lock poisoned")
            .insert(agency.to_owned(), now);
        let mut picked: Vec<(u64, QueueEntry)> = Vec::new();
        self.store.scan_queue(agency, |seq, entry| {
            if entry.lease_until_ms <= now {
                picked.push((seq, entry));
            }
            picked.len() < limit
        })?;
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let lease_until = now + self.settings.lease.as_millis() as u64;
        let leased: Vec<(u64, QueueEntry)> = picked
            .iter()
            .map(|&(seq, e)| {
                (
                    seq,
                    QueueEntry {
                        lease_until_ms: lease_until,
                        deliveries: e.deliveries + 1,
                        fetched: e.fetched,
                    },
                )
            })
            .collect();
        let changes: Vec<Change<'_>> = leased
            .iter()
            .map(|&(seq, entry)| Change::Lease { agency, seq, entry })
            .collect();
        // A lost lease only means an earlier redelivery, so leases need not wait for a sync.
        self.commit(&changes, vec![], false)?;
        let seqs: Vec<u64> = leased.iter().map(|(s, _)| *s).collect();
        let docs = self.store.docs(&seqs)?;
        let by_seq: HashMap<u64, u32> = leased.iter().map(|(s, e)| (*s, e.deliveries)).collect();
        Ok(docs
            .into_iter()
            .map(|d| InboxItem {
                id: format_id(d.seq),
                deliveries: by_seq.get(&d.seq).copied().unwrap_or(1),
                kind: d.kind,
                from: d.from,
                document_id: d.document_id,
                subject: d.subject,
                status_code: d.status_code,
                response_for: d.response_for,
                size: d.size,
                sha256: d.sha256,
                received_at: rfc3339(d.received_at_ms),
                has_signature: d.has_signature,
                verdict: d.verdict,
                signer: d.signer,
                acts_on: d.acts_on.map(format_id),
                replaces: d.replaces.iter().map(|s| format_id(*s)).collect(),
                lease_expires_at: rfc3339(lease_until),
            })
            .collect())
    }

    /// The packet, byte for byte, for its sender or one of its recipients; `NotFound` to
    /// anyone else so that nothing leaks about other agencies' documents.
    pub fn fetch(&self, caller: &Principal, id: &str) -> Result<(DocRecord, Vec<u8>), HubError> {
        let seq = parse_id(id).ok_or(HubError::NotFound)?;
        let doc = self.store.doc(seq)?.ok_or(HubError::NotFound)?;
        let me = &caller.organ_id;
        if &doc.from != me && !doc.delivers_to(me) {
            return Err(HubError::NotFound);
        }
        let body = self
            .store
            .body(seq)?
            .ok_or_else(|| HubError::Purged(format_id(seq)))?;
        // The trace is written when the disk allows; a full disk must not make accepted
        // documents unreadable (the fetch is then only in the logs and metrics).
        if &doc.from != me {
            if let Err(e) = self.mark_fetched(me, seq) {
                tracing::warn!(agency = %me, id = %format_id(seq), error = %e, "could not log a fetch");
            }
        }
        self.observe_fetch(me, body.len() as u64);
        Ok((doc, body))
    }

    /// A recipient's first fetch of a queued item leaves a `fetched` entry and counts as a
    /// delivery (revoke and delivery state then treat it as pulled), in one commit with the
    /// flag that keeps later fetches from logging again. Under the agency's lease lock, so a
    /// listing cannot overwrite the flag.
    fn mark_fetched(&self, agency: &str, seq: u64) -> Result<(), HubError> {
        let _guard = self.lease_locks[stripe(agency)]
            .lock()
            .expect("lease lock poisoned");
        let Some(e) = self.store.queue_entry(agency, seq)? else {
            return Ok(()); // Acked (delivered) already, or withdrawn.
        };
        if e.fetched {
            return Ok(());
        }
        let entry = QueueEntry {
            deliveries: e.deliveries.max(1),
            fetched: true,
            ..e
        };
        let change = Change::Fetch {
            agency,
            seq,
            entry,
            first_delivery: e.deliveries == 0,
        };
        // Like a lease, not synced: the ack that follows is, and carries it to disk.
        self.commit(&[change], vec![], false)?;
        Ok(())
    }

    /// Removes an item from the caller's queue. Acking twice is fine; acking what was never
    /// queued for the caller is `NotFound`. Returns whether this call removed it.
    pub fn ack(&self, caller: &Principal, id: &str) -> Result<Acked, HubError> {
        let seq = parse_id(id).ok_or(HubError::NotFound)?;
        let agency = caller.organ_id.as_str();
        if self.store.queue_entry(agency, seq)?.is_some() {
            let at_ms = now_ms();
            let indexes = self.commit(&[Change::Ack { agency, seq, at_ms }], vec![], true)?;
            let mut receipt = None;
            if let Some(doc) = self.store.doc(seq)? {
                self.observe_delivery_latency(at_ms.saturating_sub(doc.received_at_ms));
                receipt = Some(self.delivery_receipt(&doc, agency, at_ms, indexes[0])?);
            }
            return Ok(Acked {
                id: id.to_owned(),
                acked: true,
                removed: true,
                receipt,
            });
        }
        match self.store.doc(seq)? {
            Some(d) if d.delivers_to(agency) => {
                let receipt = self.receipts(caller, id)?.into_iter().next();
                Ok(Acked {
                    id: id.to_owned(),
                    acked: true,
                    removed: false,
                    receipt,
                })
            }
            _ => Err(HubError::NotFound),
        }
    }

    /// Acknowledges several items in one commit (one sync, one request): what an agency does
    /// after fetching a page of its inbox. Each id gets its own outcome, in order; ids that
    /// are not the caller's are `NotFound` without failing the others. The items this call
    /// removes share one signed batch receipt (one signature per page, not per item); items
    /// acked before carry their own delivery receipt as a single ack would.
    pub fn ack_many(&self, caller: &Principal, ids: &[String]) -> Result<AckedMany, HubError> {
        let agency = caller.organ_id.as_str();
        let mut outcomes: Vec<Option<Result<Acked, HubError>>> = Vec::with_capacity(ids.len());
        let mut to_ack: Vec<(usize, u64)> = Vec::new();
        // (position, position of the same id earlier in this batch)
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let Some(seq) = parse_id(id) else {
                outcomes.push(Some(Err(HubError::NotFound)));
                continue;
            };
            if let Some(&(first, _)) = to_ack.iter().find(|(_, s)| *s == seq) {
                repeats.push((i, first));
                outcomes.push(None);
            } else if self.store.queue_entry(agency, seq)?.is_some() {
                to_ack.push((i, seq));
                outcomes.push(None);
            } else {
                outcomes.push(Some(self.ack(caller, id)));
            }
        }
        let mut batch_receipt = None;
        if !to_ack.is_empty() {
            let at_ms = now_ms();
            let changes: Vec<Change<'_>> = to_ack
                .iter()
                .map(|&(_, seq)| Change::Ack { agency, seq, at_ms })
                .collect();
            let indexes = self.commit(&changes, vec![], true)?;
            let seqs: Vec<u64> = to_ack.iter().map(|(_, s)| *s).collect();
            let docs: HashMap<u64, DocRecord> = self
                .store
                .docs(&seqs)?
                .into_iter()
                .map(|d| (d.seq, d))
                .collect();
            let mut covered = Vec::with_capacity(to_ack.len());
            for (k, &(i, seq)) in to_ack.iter().enumerate() {
                if let Some(doc) = docs.get(&seq) {
                    self.observe_delivery_latency(at_ms.saturating_sub(doc.received_at_ms));
                    covered.push((doc, indexes[k]));
                }
                outcomes[i] = Some(Ok(Acked {
                    id: ids[i].clone(),
                    acked: true,
                    removed: true,
                    receipt: None,
                }));
            }
            batch_receipt = Some(self.delivery_batch_receipt(agency, at_ms, &covered)?);
        }
        for (i, first) in repeats {
            let again = match &outcomes[first] {
                Some(Ok(a)) => Ok(Acked {
                    removed: false,
                    ..a.clone()
                }),
                _ => Err(HubError::NotFound),
            };
            outcomes[i] = Some(again);
        }
        Ok(AckedMany {
            results: outcomes
                .into_iter()
                .map(|o| o.unwrap_or(Err(HubError::NotFound)))
                .collect(),
            receipt: batch_receipt,
        })
    }

    /// Flushes storage (on shutdown).
    pub fn flush(&self) -> Result<(), HubError> {
        Ok(self.store.flush()?)
    }

    fn waiter(&self, agency: &str) -> Arc<Notify> {
        let mut w = self.waiters.lock().expect("waiters lock poisoned");
        w.entry(agency.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    fn wake(&self, agency: &str) {
        let w = self.waiters.lock().expect("waiters lock poisoned");
        if let Some(n) = w.get(agency) {
            n.notify_waiters();
        }
    }
}

/// Async entry points: run the blocking core on the blocking pool.
impl Hub {
    /// Runs `f` on the blocking pool (RocksDB and hashing must not stall the async workers).
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Hub) -> T + Send + 'static,
    ) -> T {
        let hub = self.clone();
        // If this future is dropped (the client left, the request timed out), the guard
        // raises the flag the blocking work checks in its loops.
        let (_guard, flag) = crate::cancel::scope();
        tokio::task::spawn_blocking(move || flag.run(|| f(&hub)))
            .await
            .expect("hub task panicked")
    }

    /// Lists the inbox, waiting up to `wait` for something to arrive while it is empty.
    pub async fn inbox_async(
        self: &Arc<Self>,
        caller: Principal,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<InboxItem>, HubError> {
        let deadline = tokio::time::Instant::now() + wait.min(self.settings.max_wait);
        let notify = self.waiter(&caller.organ_id);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let c = caller.clone();
            let items = self.blocking(move |hub| hub.list_inbox(&c, limit)).await?;
            let now = tokio::time::Instant::now();
            if !items.is_empty() || now >= deadline || self.shutdown.is_cancelled() {
                return Ok(items);
            }
            // Wake on arrival, or at least every second to pick up expired leases.
            let nap = (deadline - now).min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::timeout(nap, notified) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    pub async fn fetch_async(
        self: &Arc<Self>,
        caller: Principal,
        id: String,
    ) -> Result<(DocRecord, Vec<u8>), HubError> {
        self.blocking(move |hub| hub.fetch(&caller, &id)).await
    }

    pub async fn ack_async(
        self: &Arc<Self>,
        caller: Principal,
        id: String,
    ) -> Result<Acked, HubError> {
        self.blocking(move |hub| hub.ack(&caller, &id)).await
    }
}
