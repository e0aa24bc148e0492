//! The hub's core: what an agency may do, and every state change it causes.
//!
//! Transports authenticate, decode and call one method here; they never touch storage. Each
//! state change is committed through [`Hub::commit`], the single place a later audit log or
//! metrics hook observes. Methods here block (RocksDB, hashing): call them from
//! `spawn_blocking`, or through the async wrappers at the bottom.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::directory::SharedDirectory;
use crate::edxml::{self, EdxmlError, Kind};
use crate::stats::Counters;
use crate::store::{Change, Storage, StoreError};

mod admission;
mod amendments;
mod backup;
mod delivery;
mod delivery_state;
pub mod events;
mod forwarding;
mod hop_reports;
mod identity;
pub mod jobs;
mod observe;
mod pdf_gate;
mod peer_stats;
pub mod push;
mod push_lanes;
mod receipts_and_proofs;
mod report;
mod service;
mod signatures;
pub mod submit;
mod upkeep;
pub mod uploads;
pub mod worker;

pub use crate::ids::{format_id, now_ms, parse_id, rfc3339};
pub use admission::{AdmissionLimits, AgencySlot, as_agency};
pub use hop_reports::ReportAnswer;
pub use identity::{AgencyId, Principal};
pub use peer_stats::PeerFigures;
pub use receipts_and_proofs::{AuditFilter, Reader};
pub use report::{Scope, Window};
pub use service::Service;
pub use signatures::{Gate, Signatures};
pub use uploads::{BodyLimits, BodySource};

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
    #[error("the client certificate has no subject CN")]
    NoIdentity,
    #[error("certificate CN={0} is not an agency in the directory")]
    UnknownAgency(String),
    #[error("agency {agency} is pinned to another certificate (presented sha256 {presented})")]
    CertificateNotPinned { agency: String, presented: String },
    #[error(
        "this endpoint is for agencies; role certificates may read /v1/stats (and auditors /v1/audit)"
    )]
    NotAnAgency,
    #[error("the audit log is for auditors (and agencies, for their own documents)")]
    NotAnAuditor,
    #[error("this endpoint is for peer hubs ([[peer]] cert_cn)")]
    NotAPeer,
    #[error(
        "From {from} is not an agency behind peer {peer}: a peer forwards only its side's mail"
    )]
    SenderNotBehindPeer { from: String, peer: String },
    #[error("{recipient} is not a recipient behind peer {peer}: a peer reports only on its side")]
    RecipientNotBehindPeer { recipient: String, peer: String },
    #[error("{0}; it has not arrived from the peer yet: send this again later")]
    OriginalPending(String),
    #[error("routing loop: the packet already passed {route} (at most {max_hops} hops)")]
    RoutingLoop { route: String, max_hops: usize },
    #[error("the hub is busy: too many requests are waiting; retry shortly")]
    Busy,
    #[error("{why}")]
    TooMany { why: String, retry_after: u32 },
    #[error("the main PDF {name:?} is not two-layer signed ({verdict}): {message}")]
    PdfNotTwoLayer {
        name: String,
        verdict: &'static str,
        message: String,
    },
    #[error("the memory budget for uploads is in use; retry later")]
    UploadsBusy,
    #[error("the body exceeds the limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("the upload fell below the minimum rate of {0} bytes/s")]
    UploadTooSlow(u64),
    #[error("reading the body failed: {0}")]
    BodyReadFailed(String),
    #[error("POST /v1/documents takes an edXML packet as its body")]
    EmptyBody,
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
            HubError::NoIdentity => "no_identity",
            HubError::UnknownAgency(_) => "unknown_agency",
            HubError::CertificateNotPinned { .. } => "certificate_not_pinned",
            HubError::NotAnAgency => "not_an_agency",
            HubError::NotAnAuditor => "not_an_auditor",
            HubError::NotAPeer => "not_a_peer",
            HubError::SenderNotBehindPeer { .. } => "sender_not_behind_peer",
            HubError::RecipientNotBehindPeer { .. } => "recipient_not_behind_peer",
            HubError::OriginalPending(_) => "original_pending",
            HubError::RoutingLoop { .. } => "routing_loop",
            HubError::Purged(_) => "body_purged",
            HubError::UnknownDocument(_) => "unknown_document",
            HubError::Cancelled => "request_cancelled",
            HubError::Busy => "server_busy",
            HubError::TooMany { .. } => "too_many_requests",
            HubError::PdfNotTwoLayer { .. } => "pdf_not_two_layer",
            HubError::UploadsBusy => "server_busy",
            HubError::BodyTooLarge(_) => "body_too_large",
            HubError::UploadTooSlow(_) => "upload_too_slow",
            HubError::BodyReadFailed(_) => "body_read_failed",
            HubError::EmptyBody => "empty_body",
            HubError::Invalid(_) => "bad_request",
            HubError::Notary(_) => "signing_failed",
            HubError::Store(StoreError::NoSpace(_)) => "insufficient_storage",
            HubError::Store(StoreError::Busy | StoreError::Conflict) => "server_busy",
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

/// One inbox line: metadata; the body is fetched separately, or (`include=body`) comes with it.
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
    /// The hubs a forwarded packet passed, its origin first (empty for local mail).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<crate::federation::Hop>,
    pub lease_expires_at: String,
    /// How many times this item has been listed (1 on first delivery).
    pub deliveries: u32,
    /// The legal signatures on each PDF attachment (`two_layer` or why not).
    pub pdf_signatures: Vec<crate::store::PdfCheck>,
    /// With `include=body`: the packet byte for byte, as a fetch returns it, so that a page
    /// is one request (the API writes it as `body`, standard base64). `None` when the
    /// page's body budget was spent: that item is fetched as usual.
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
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
    /// How much work is taken on at once (`[overload]`).
    pub admission: AdmissionLimits,
    /// Memory and rate limits for uploads (`[server]`).
    pub uploads: BodyLimits,
    /// Certificate CNs that act in a role instead of as an agency (`[roles]`).
    pub roles: crate::config::Roles,
    /// Push delivery's schedule (`[push]`).
    pub push: push::PushPolicy,
    /// Peer hubs and routes (`[federation]`, `[[peer]]`).
    pub federation: crate::federation::Router,
}

const STRIPES: usize = 64;

pub struct Hub {
    /// The storage engine (RocksDB today), behind the interface every engine implements.
    store: Box<dyn Storage>,
    signatures: Signatures,
    /// The hub's own key: signs receipts and tree heads.
    notary: crate::dsig::Signer,
    directory: SharedDirectory,
    settings: HubSettings,
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
    /// The gates in front of request work (see `admission.rs`).
    admission: admission::Admission,
    /// Memory and per-agency shares for uploads, one for every transport.
    uploads: uploads::BodyBudget,
    /// When the client certificate each agency last presented expires (see `identity.rs`).
    agency_certificates: Mutex<HashMap<String, std::time::SystemTime>>,
    /// Refusals per (agency, reason) this minute, logged in one entry (see `observe.rs`).
    refusals: Mutex<std::collections::BTreeMap<(String, String), observe::RefusalTally>>,
    /// Each agency's push endpoint state (see `push_lanes.rs`).
    push_lanes: Mutex<push_lanes::PushLanes>,
    /// Wakes the push worker when a commit scheduled pushes.
    push_wake: Notify,
}

/// How often a change whose guards found the state moved is read and tried again before
/// the request is answered 503 (each retry sees the change that beat it).
const CONFLICT_RETRIES: u32 = 8;

/// Work stopped because its request was given up; counted, never recorded as a refusal.
fn cancelled() -> HubError {
    metrics::counter!("lienthong_requests_cancelled_total").increment(1);
    HubError::Cancelled
}

fn stripe<T: Hash + ?Sized>(v: &T) -> usize {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    (h.finish() as usize) % STRIPES
}

impl Hub {
    pub fn new(
        store: impl Storage + 'static,
        directory: SharedDirectory,
        settings: HubSettings,
        signatures: Signatures,
        notary: crate::dsig::Signer,
        shutdown: CancellationToken,
    ) -> Result<Hub, HubError> {
        let depth = store.queue_depths()?;
        Ok(Hub {
            counters: Counters::default(),
            last_pull: Mutex::new(HashMap::new()),
            depth: Mutex::new(depth),
            agency_metrics: Mutex::new(HashMap::new()),
            refusals: Mutex::new(std::collections::BTreeMap::new()),
            agency_certificates: Mutex::new(HashMap::new()),
            push_lanes: Mutex::new(push_lanes::PushLanes::default()),
            push_wake: Notify::new(),
            admission: admission::Admission::new(settings.admission.clone()),
            uploads: uploads::BodyBudget::new(settings.uploads.clone()),
            store: Box::new(store),
            signatures,
            notary,
            directory,
            settings,
            submit_locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            lease_locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            waiters: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    pub fn directory(&self) -> &SharedDirectory {
        &self.directory
    }

    /// A consistent copy of the database, as it is now, in the new directory `dir` (online
    /// backup, see `crate::backup`).
    pub fn checkpoint(&self, dir: &std::path::Path) -> Result<(), HubError> {
        Ok(self.store.checkpoint(dir)?)
    }

    /// The hub's signing certificate (DER): receipts and tree heads verify with it.
    pub fn notary_certificate(&self) -> &[u8] {
        self.notary.certificate()
    }

    /// Why the hub cannot take writes now, if it cannot: the disk filled up, a write or
    /// sync failed (RocksDB then refuses writes until a restart), or a sync hangs.
    pub fn storage_problem(&self) -> Option<String> {
        self.store.health().err().map(|e| match e {
            StoreError::NoSpace(_) => "the disk filled up; free space and restart the hub".into(),
            e => e.to_string(),
        })
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
        let now = now_ms();
        // Items queued for agencies with a push endpoint get their first push in the same
        // batch (see `push.rs`).
        // Acks and first fetches of documents from behind a peer hub report back in the
        // same batch (see `hop_reports.rs`).
        let reports = self.reports_for(changes)?;
        let with_reports: Vec<Change<'_>>;
        let changes = if reports.is_empty() {
            changes
        } else {
            with_reports = changes
                .iter()
                .cloned()
                .chain(reports.iter().flat_map(|r| r.changes()))
                .collect();
            &with_reports[..]
        };
        let changes = &*self.with_pushes(changes, now);
        let mut events = events::for_changes(changes, now);
        events.extend(extra);
        let indexes = self.store.apply(changes, events, durable)?;
        self.observe(changes);
        self.pushes_scheduled(changes);
        Ok(indexes)
    }

    /// Records an event that changes no state (a refusal, a reload). Not synced: losing the
    /// last of these in a crash loses no document.
    pub fn record(&self, event: crate::audit::AuditEvent) -> Result<u64, HubError> {
        let idx = self.commit(&[], vec![event], false)?;
        Ok(idx.first().copied().unwrap_or_default())
    }

    /// Flushes storage (on shutdown).
    pub fn flush(&self) -> Result<(), HubError> {
        self.flush_refusals(true);
        Ok(self.store.flush()?)
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
}
