//! Delivery to recipients: listing with leases (and long polls), fetching the body (a
//! recipient's first fetch leaves a trace), acknowledging one item or a page.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{
    Acked, AckedMany, AgencyId, CONFLICT_RETRIES, Hub, HubError, InboxItem, format_id, now_ms,
    parse_id, rfc3339, stripe,
};
use crate::store::{Change, DocRecord, QueueEntry, StoreError};

/// The most body bytes one `include=body` page carries (before base64); the items after
/// it are listed without their bodies. One packet larger than this still comes alone.
pub const PAGE_BODY_BUDGET: u64 = 8 << 20;

impl Hub {
    /// Lists and leases up to `limit` of the caller's pending items, oldest first; with
    /// `bodies`, each with its packet (up to [`PAGE_BODY_BUDGET`] bytes in all), as if the
    /// caller had fetched each one: the first such listing leaves the `fetched` traces, all
    /// in one commit.
    pub fn list_inbox(
        &self,
        caller: &AgencyId,
        limit: usize,
        bodies: bool,
    ) -> Result<Vec<InboxItem>, HubError> {
        let limit = limit.clamp(1, self.settings.max_inbox_limit);
        let agency = caller.organ_id.as_str();
        let _guard = self.lease_locks[stripe(agency)]
            .lock()
            .expect("lease lock poisoned");
        self.last_pull
            .lock()
            .expect("last-pull lock poisoned")
            .insert(agency.to_owned(), now_ms());
        // An ack or expiry (which take no lease lock) may remove an item between the scan
        // and the commit: the leases are guarded by the entries the scan read, and a
        // listing that lost such a race reads again.
        let mut attempt = 0;
        let leased = loop {
            match self.lease_pending(agency, limit) {
                Err(HubError::Store(StoreError::Conflict)) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                }
                r => break r?,
            }
        };
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<u64> = leased.iter().map(|(s, _)| *s).collect();
        let docs = self.store.docs(&seqs)?;
        let mut bodies = if bodies {
            self.page_bodies(agency, &docs, &leased)?
        } else {
            HashMap::new()
        };
        let entries: HashMap<u64, QueueEntry> = leased.into_iter().collect();
        Ok(docs
            .into_iter()
            .filter_map(|d| {
                let entry = entries.get(&d.seq)?;
                Some(inbox_item(entry, bodies.remove(&d.seq), d))
            })
            .collect())
    }

    /// One scan and one guarded commit of leases: each leased item with its entry as the
    /// lease left it.
    fn lease_pending(
        &self,
        agency: &str,
        limit: usize,
    ) -> Result<Vec<(u64, QueueEntry)>, HubError> {
        let now = now_ms();
        let mut picked: Vec<(u64, QueueEntry)> = Vec::new();
        self.store.scan_queue(agency, &mut |seq, entry| {
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
            .map(|&(seq, was)| {
                let entry = QueueEntry {
                    lease_until_ms: lease_until,
                    deliveries: was.deliveries + 1,
                    fetched: was.fetched,
                };
                (seq, entry)
            })
            .collect();
        let changes: Vec<Change<'_>> = picked
            .iter()
            .zip(&leased)
            .map(|(&(seq, was), &(_, entry))| Change::Lease {
                agency,
                seq,
                was,
                entry,
            })
            .collect();
        // A lost lease only means an earlier redelivery, so leases need not wait for a sync.
        self.commit(&changes, vec![], false)?;
        Ok(leased)
    }

    /// The packet, byte for byte, for its sender or one of its recipients; `NotFound` to
    /// anyone else so that nothing leaks about other agencies' documents.
    pub fn fetch(&self, caller: &AgencyId, id: &str) -> Result<(DocRecord, Vec<u8>), HubError> {
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

    /// The bodies of a listed page, oldest first until [`PAGE_BODY_BUDGET`], and their
    /// `fetched` traces in one commit (built from the entries the lease just wrote: no
    /// second read). The caller holds the agency's lease lock.
    fn page_bodies(
        &self,
        agency: &str,
        docs: &[DocRecord],
        leased: &[(u64, QueueEntry)],
    ) -> Result<HashMap<u64, Vec<u8>>, HubError> {
        let mut out = HashMap::new();
        let mut spent = 0u64;
        for d in docs {
            if spent > 0 && spent + d.size > PAGE_BODY_BUDGET {
                break;
            }
            // Purged meanwhile (retention): the item is listed without it; a fetch says 410.
            let Some(body) = self.store.body(d.seq)? else {
                continue;
            };
            spent += body.len() as u64;
            self.observe_fetch(agency, body.len() as u64);
            out.insert(d.seq, body);
        }
        // In page order, so the `fetched` entries are too.
        let fetched = leased
            .iter()
            .filter(|(seq, _)| out.contains_key(seq))
            .copied()
            .collect();
        if let Err(e) = self.mark_fetched_locked(agency, fetched) {
            tracing::warn!(agency, error = %e, "could not log the fetches of a page");
        }
        Ok(out)
    }

    /// A recipient's first fetch of a queued item leaves a `fetched` entry and counts as a
    /// delivery (revoke and delivery state then treat it as pulled), in one commit with the
    /// flag that keeps later fetches from logging again. Under the agency's lease lock, so a
    /// listing cannot overwrite the flag.
    fn mark_fetched(&self, agency: &str, seq: u64) -> Result<(), HubError> {
        let _guard = self.lease_locks[stripe(agency)]
            .lock()
            .expect("lease lock poisoned");
        match self.store.queue_entry(agency, seq)? {
            Some(e) => self.mark_fetched_locked(agency, vec![(seq, e)]),
            None => Ok(()), // Acked (delivered) already, or withdrawn.
        }
    }

    /// [`Hub::mark_fetched`] for several items in one commit, the lease lock held, from
    /// their entries as last read. An item acked or expired since fails the guard: the
    /// entries are read again (those gone dropped) and the commit retried.
    fn mark_fetched_locked(
        &self,
        agency: &str,
        mut entries: Vec<(u64, QueueEntry)>,
    ) -> Result<(), HubError> {
        for _ in 0..=CONFLICT_RETRIES {
            let changes: Vec<Change<'_>> = entries
                .iter()
                .filter(|(_, e)| !e.fetched)
                .map(|&(seq, e)| Change::Fetch {
                    agency,
                    seq,
                    was: e,
                    entry: QueueEntry {
                        deliveries: e.deliveries.max(1),
                        fetched: true,
                        ..e
                    },
                    first_delivery: e.deliveries == 0,
                })
                .collect();
            if changes.is_empty() {
                return Ok(());
            }
            // Like a lease, not synced: the ack that follows is, and carries it to disk.
            match self.commit(&changes, vec![], false) {
                Err(HubError::Store(StoreError::Conflict)) => {
                    let mut now = Vec::with_capacity(entries.len());
                    for (seq, _) in entries {
                        if let Some(e) = self.store.queue_entry(agency, seq)? {
                            now.push((seq, e));
                        }
                    }
                    entries = now;
                }
                r => return r.map(|_| ()),
            }
        }
        Err(HubError::Store(StoreError::Conflict))
    }

    /// Removes an item from the caller's queue. Acking twice is fine; acking what was never
    /// queued for the caller is `NotFound`. Returns whether this call removed it.
    pub fn ack(&self, caller: &AgencyId, id: &str) -> Result<Acked, HubError> {
        let seq = parse_id(id).ok_or(HubError::NotFound)?;
        let agency = caller.organ_id.as_str();
        if self.store.queue_entry(agency, seq)?.is_some() {
            let at_ms = now_ms();
            let doc = self.store.doc(seq)?;
            let change = Change::Ack {
                agency,
                seq,
                at_ms,
                accepted_ms: doc.as_ref().map_or(0, |d| d.received_at_ms),
            };
            let indexes = match self.commit(&[change], vec![], true) {
                // Another ack (or an expiry) removed it first: answered below.
                Err(HubError::Store(StoreError::Conflict)) => {
                    return self.acked_before(id, seq, caller);
                }
                r => r?,
            };
            let mut receipt = None;
            if let Some(doc) = doc {
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
        self.acked_before(id, seq, caller)
    }

    /// The answer for an item no longer in the caller's queue: acked before (by this
    /// agency, perhaps by a request still waiting for its sync — so this waits for the disk
    /// too), or never the caller's.
    fn acked_before(&self, id: &str, seq: u64, caller: &AgencyId) -> Result<Acked, HubError> {
        let agency = caller.organ_id.as_str();
        self.store.barrier()?;
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
    pub fn ack_many(&self, caller: &AgencyId, ids: &[String]) -> Result<AckedMany, HubError> {
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
            let seqs: Vec<u64> = to_ack.iter().map(|(_, s)| *s).collect();
            let Some(receipt) = self.ack_together(agency, &seqs)? else {
                // Another request removed one of them first: one by one, each with its own
                // answer.
                return Ok(AckedMany {
                    results: ids.iter().map(|id| self.ack(caller, id)).collect(),
                    receipt: None,
                });
            };
            for &(i, _) in &to_ack {
                outcomes[i] = Some(Ok(Acked {
                    id: ids[i].clone(),
                    acked: true,
                    removed: true,
                    receipt: None,
                }));
            }
            batch_receipt = Some(receipt);
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

    /// Acks `seqs` (all in the caller's queue when read) in one commit and signs one batch
    /// receipt for them; `None` when another request removed one of them first (nothing
    /// was written).
    fn ack_together(&self, agency: &str, seqs: &[u64]) -> Result<Option<String>, HubError> {
        let at_ms = now_ms();
        let docs: HashMap<u64, DocRecord> = self
            .store
            .docs(seqs)?
            .into_iter()
            .map(|d| (d.seq, d))
            .collect();
        let changes: Vec<Change<'_>> = seqs
            .iter()
            .map(|&seq| Change::Ack {
                agency,
                seq,
                at_ms,
                accepted_ms: docs.get(&seq).map_or(0, |d| d.received_at_ms),
            })
            .collect();
        let indexes = match self.commit(&changes, vec![], true) {
            Err(HubError::Store(StoreError::Conflict)) => return Ok(None),
            r => r?,
        };
        let mut covered = Vec::with_capacity(seqs.len());
        for (k, seq) in seqs.iter().enumerate() {
            if let Some(doc) = docs.get(seq) {
                self.observe_delivery_latency(at_ms.saturating_sub(doc.received_at_ms));
                covered.push((doc, indexes[k]));
            }
        }
        self.delivery_batch_receipt(agency, at_ms, &covered)
            .map(Some)
    }

    fn waiter(&self, agency: &str) -> Arc<Notify> {
        let mut w = self.waiters.lock().expect("waiters lock poisoned");
        w.entry(agency.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Wakes long polls here when another hub process on the same storage queued something
    /// (PostgreSQL's LISTEN/NOTIFY).
    pub fn listen_to_store(self: &Arc<Self>) {
        let hub = Arc::downgrade(self);
        self.store.subscribe(Arc::new(move |agency: &str| {
            if let Some(h) = hub.upgrade() {
                h.wake(agency);
            }
        }));
    }

    pub(super) fn wake(&self, agency: &str) {
        let w = self.waiters.lock().expect("waiters lock poisoned");
        if let Some(n) = w.get(agency) {
            n.notify_waiters();
        }
    }
}

/// An inbox line: the document's record, its queue entry as the listing's lease left it,
/// and its body when the page carries it.
fn inbox_item(entry: &QueueEntry, body: Option<Vec<u8>>, d: DocRecord) -> InboxItem {
    InboxItem {
        body,
        id: format_id(d.seq),
        deliveries: entry.deliveries,
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
        pdf_signatures: d.pdf,
        acts_on: d.acts_on.map(format_id),
        replaces: d.replaces.iter().map(|s| format_id(*s)).collect(),
        route: d.route,
        lease_expires_at: rfc3339(entry.lease_until_ms),
    }
}

/// The async entry points of delivery.
impl Hub {
    /// Lists the inbox (with bodies: see [`Hub::list_inbox`]), waiting up to `wait`
    /// for something to arrive while it is empty.
    pub async fn inbox_async(
        self: &Arc<Self>,
        caller: AgencyId,
        limit: usize,
        wait: Duration,
        bodies: bool,
    ) -> Result<Vec<InboxItem>, HubError> {
        let deadline = tokio::time::Instant::now() + wait.min(self.settings.max_wait);
        let notify = self.waiter(&caller.organ_id);
        // Counted while it may wait (`lienthong_long_polls_waiting`).
        let _parked = (!wait.is_zero())
            .then(|| crate::stats::GaugeGuard::new("lienthong_long_polls_waiting"));
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let c = caller.clone();
            let items = self
                .request(move |hub| hub.list_inbox(&c, limit, bodies))
                .await?;
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
}
