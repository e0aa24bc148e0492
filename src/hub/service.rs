//! The hub's one async API, called by every transport (HTTP/1.1 and HTTP/2 today; HTTP/3,
//! push workers and peer hubs next). One method per operation; each one checks what the
//! [`Principal`] may do, runs the blocking work through admission ([`Hub::request`]), and
//! records what the operation itself must record (a refused packet's audit entry, the submit
//! histogram), so no transport can forget or do it twice. Transports decode requests into
//! these calls and encode the typed answers; only they know status codes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::delivery_state::{DocumentStatus, SentPage};
use super::receipts_and_proofs::{AuditPage, ConsistencyProof, InclusionProof};
use super::report::Report;
use super::{
    Accepted, Acked, AckedMany, AuditFilter, BodySource, Hub, HubError, InboxItem, Principal,
    Reader, Scope, Window,
};
use crate::store::DocRecord;

/// The async service over one hub; cheap to clone.
#[derive(Clone)]
pub struct Service {
    hub: Arc<Hub>,
}

impl Service {
    pub fn new(hub: Arc<Hub>) -> Service {
        Service { hub }
    }

    /// Submits a packet: reads its body from `body` within the hub's upload budget (one
    /// for every transport), then verifies and stores it. The body's memory reservation is
    /// released with the work, not with the request: a request given up frees its memory
    /// only once the work has stopped. A refusal is logged (aggregated, see `observe.rs`); a
    /// request cancelled before a decision is not a refusal.
    pub async fn submit<S: BodySource>(
        &self,
        who: &Principal,
        declared: Option<u64>,
        body: &mut S,
    ) -> Result<Accepted, HubError> {
        let agency = who.agency()?.clone();
        let (bytes, hold) = match self
            .hub
            .uploads
            .read(&agency.organ_id, body, declared)
            .await
        {
            Ok(read) => read,
            Err(e) => {
                self.refused(who, e.code()).await;
                return Err(e);
            }
        };
        let started = std::time::Instant::now();
        let result = self
            .hub
            .request(move |h| {
                let _hold = hold;
                h.submit(&agency, &bytes)
            })
            .await;
        match &result {
            Ok(_) => metrics::histogram!("lienthong_submit_duration_seconds")
                .record(started.elapsed().as_secs_f64()),
            Err(HubError::Cancelled) => {}
            Err(e) => self.refused(who, e.code()).await,
        }
        result
    }

    /// A packet a peer hub forwards (`POST /v1/federation/packets`): read within the same
    /// upload budget as a submission (the peer's share), then checked and stored as one.
    pub async fn forwarded<S: BodySource>(
        &self,
        who: &Principal,
        route: Vec<crate::federation::Hop>,
        recipients: Vec<String>,
        declared: Option<u64>,
        body: &mut S,
    ) -> Result<Accepted, HubError> {
        let Principal::PeerHub(peer) = who else {
            return Err(HubError::NotAPeer);
        };
        let peer = peer.clone();
        let (bytes, hold) = self.hub.uploads.read(&peer, body, declared).await?;
        self.hub
            .request(move |h| {
                let _hold = hold;
                let origin = super::submit::Origin::Peer {
                    id: &peer,
                    route: &route,
                    recipients: &recipients,
                };
                let accepted = h.submit_from(origin, &bytes)?;
                if accepted.created {
                    h.observe_peer(&peer, super::peer_stats::PeerEvent::Received);
                }
                Ok(accepted)
            })
            .await
    }

    /// A peer hub's delivery report (`POST /v1/federation/reports`).
    pub async fn report<S: BodySource>(
        &self,
        who: &Principal,
        declared: Option<u64>,
        body: &mut S,
    ) -> Result<super::hop_reports::ReportAnswer, HubError> {
        let Principal::PeerHub(peer) = who else {
            return Err(HubError::NotAPeer);
        };
        let peer = peer.clone();
        if declared.is_some_and(|n| n > super::hop_reports::REPORT_MAX as u64) {
            return Err(HubError::Invalid(format!(
                "a report is at most {} bytes",
                super::hop_reports::REPORT_MAX
            )));
        }
        let (bytes, hold) = self.hub.uploads.read(&peer, body, declared).await?;
        self.hub
            .request(move |h| {
                let _hold = hold;
                h.receive_report(&peer, &bytes)
            })
            .await
    }

    /// Records a refusal of `who`'s request (aggregated per agency, reason and minute).
    async fn refused(&self, who: &Principal, code: &'static str) {
        if let Principal::Agency(a) = who {
            let agency = a.organ_id.clone();
            self.hub
                .blocking(move |h| h.observe_refusal(Some(&agency), code))
                .await
        }
    }

    /// Lists and leases pending items, long-polling up to `wait` while there are none;
    /// with `bodies`, each item carries its packet (and counts as fetched).
    pub async fn inbox(
        &self,
        who: &Principal,
        limit: usize,
        wait: Duration,
        bodies: bool,
    ) -> Result<Vec<InboxItem>, HubError> {
        let agency = who.agency()?.clone();
        self.hub.inbox_async(agency, limit, wait, bodies).await
    }

    /// The packet as submitted, with its record.
    pub async fn fetch(&self, who: &Principal, id: &str) -> Result<(DocRecord, Vec<u8>), HubError> {
        let agency = who.agency()?.clone();
        let id = id.to_owned();
        self.hub.request(move |h| h.fetch(&agency, &id)).await
    }

    pub async fn ack(&self, who: &Principal, id: &str) -> Result<Acked, HubError> {
        let agency = who.agency()?.clone();
        let id = id.to_owned();
        self.hub.request(move |h| h.ack(&agency, &id)).await
    }

    pub async fn ack_many(&self, who: &Principal, ids: Vec<String>) -> Result<AckedMany, HubError> {
        let agency = who.agency()?.clone();
        self.hub.request(move |h| h.ack_many(&agency, &ids)).await
    }

    pub async fn document_status(
        &self,
        who: &Principal,
        id: &str,
    ) -> Result<DocumentStatus, HubError> {
        let agency = who.agency()?.clone();
        let id = id.to_owned();
        self.hub
            .request(move |h| h.document_status(&agency, &id))
            .await
    }

    pub async fn sent(
        &self,
        who: &Principal,
        since_ms: u64,
        cursor: u64,
        limit: usize,
    ) -> Result<SentPage, HubError> {
        let agency = who.agency()?.clone();
        self.hub
            .request(move |h| h.sent(&agency, since_ms, cursor, limit))
            .await
    }

    pub async fn receipts(&self, who: &Principal, id: &str) -> Result<Vec<String>, HubError> {
        let agency = who.agency()?.clone();
        let id = id.to_owned();
        self.hub.request(move |h| h.receipts(&agency, &id)).await
    }

    /// The latest signed tree head (any caller).
    pub async fn tree_head(&self) -> Result<String, HubError> {
        self.hub.request(|h| h.tree_head()).await
    }

    pub async fn inclusion_proof(
        &self,
        who: &Principal,
        index: u64,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, HubError> {
        let reader = who.audit_reader()?.cloned();
        self.hub
            .request(move |h| h.inclusion_proof(Reader::of(reader.as_ref()), index, tree_size))
            .await
    }

    /// Consistency proof between two tree sizes (any caller).
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, HubError> {
        self.hub
            .request(move |h| h.consistency_proof(from, to))
            .await
    }

    pub async fn audit_page(
        &self,
        who: &Principal,
        filter: AuditFilter,
        cursor: u64,
        limit: usize,
    ) -> Result<AuditPage, HubError> {
        let reader = who.audit_reader()?.cloned();
        self.hub
            .request(move |h| h.audit_page(Reader::of(reader.as_ref()), &filter, cursor, limit))
            .await
    }

    /// Backs the running hub up into the new directory `to` (ops staff, through the ops
    /// listener); see `crate::backup`.
    pub async fn backup(
        &self,
        to: std::path::PathBuf,
    ) -> Result<crate::backup::Manifest, HubError> {
        self.hub.blocking(move |h| h.backup(&to)).await
    }

    /// The statistics `who` may see (hub-wide in a role, its own as an agency).
    pub async fn stats(&self, who: &Principal, window: Window) -> Result<Report, HubError> {
        self.stats_of(who.stats_scope(), window).await
    }

    /// The statistics of `scope` (the ops listener asks hub-wide without a certificate).
    pub async fn stats_of(&self, scope: Scope, window: Window) -> Result<Report, HubError> {
        self.hub.request(move |h| h.stats(window, &scope)).await
    }

    /// Starts an export of the first `size` log entries (default: all) for an auditor:
    /// the size, and the JSON lines in chunks as they are read (the channel ends early if
    /// reading fails midway; `audit verify` then says so).
    pub async fn export(
        &self,
        who: &Principal,
        size: Option<u64>,
    ) -> Result<(u64, tokio::sync::mpsc::Receiver<Bytes>), HubError> {
        who.may_export_log()?;
        let size = self
            .hub
            .request(move |h| {
                let size = size.unwrap_or_else(|| h.audit_size());
                h.check_export(size).map(|()| size)
            })
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = hub.audit_export(size, |chunk| tx.blocking_send(chunk).is_ok()) {
                tracing::error!(error = %e, "audit export failed midway");
            }
        });
        Ok((size, rx))
    }
}
