//! The changes a queue and its documents go through, and how one list of them becomes one
//! atomic, guarded write (see [`writer`](super::writer) for the compare-and-set).

use rocksdb::WriteBatch;

use super::due::{Due, DueKind, due_key};
use super::writer::{Expect, Guard};
use super::{
    CF_BODIES, CF_DEDUP, CF_DELIVERY, CF_DOCS, CF_DUE, CF_QUEUE, CF_SENT, DocRecord, Store,
    StoreError, delivery_key, queue_key,
};

/// A recipient's queue entry: when its current lease ends, how often it was listed, and
/// whether the recipient has fetched the body (its first fetch leaves a `fetched` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueEntry {
    pub lease_until_ms: u64,
    pub deliveries: u32,
    pub fetched: bool,
}

impl QueueEntry {
    pub(super) fn encode(&self) -> [u8; 13] {
        let mut b = [0u8; 13];
        b[..8].copy_from_slice(&self.lease_until_ms.to_be_bytes());
        b[8..12].copy_from_slice(&self.deliveries.to_be_bytes());
        b[12] = self.fetched as u8;
        b
    }

    /// Entries written before the fetched flag existed are 12 bytes: not fetched.
    pub(super) fn decode(b: &[u8]) -> Option<QueueEntry> {
        Some(QueueEntry {
            lease_until_ms: u64::from_be_bytes(b.get(..8)?.try_into().ok()?),
            deliveries: u32::from_be_bytes(b.get(8..12)?.try_into().ok()?),
            fetched: b.get(12) == Some(&1),
        })
    }
}

/// One state change; a list of them is applied atomically by [`Store::apply`].
#[derive(Debug)]
pub enum Change<'a> {
    /// A new packet: its record, its body and its duplicate-index key.
    Accept {
        record: &'a DocRecord,
        body: &'a [u8],
        dedup_key: &'a [u8],
    },
    /// Queue `seq` for `agency`. For a document accepted earlier (an update adding
    /// recipients) only if the agency holds no entry for it and never acked it.
    /// `accepted_ms` is the document's acceptance time (its expiry's due-index key).
    Enqueue {
        agency: &'a str,
        seq: u64,
        accepted_ms: u64,
    },
    /// A listing leased an item that held `was` when it was read (written only if it still
    /// does).
    Lease {
        agency: &'a str,
        seq: u64,
        was: QueueEntry,
        entry: QueueEntry,
    },
    /// The recipient fetched the body for the first time; `first_delivery` when no listing
    /// had delivered it before (the fetch is then what delivered it). Written only if the
    /// entry still holds `was`.
    Fetch {
        agency: &'a str,
        seq: u64,
        was: QueueEntry,
        entry: QueueEntry,
        first_delivery: bool,
    },
    /// The recipient acknowledged an item at `at_ms`: it leaves the queue (only if it is
    /// still there: an item is acked once).
    Ack {
        agency: &'a str,
        seq: u64,
        at_ms: u64,
        accepted_ms: u64,
    },
    /// The item leaves the queue undelivered (revoked, recipient removed, expired); only if
    /// it is still there, so nothing acked is also expired.
    Dequeue {
        agency: &'a str,
        seq: u64,
        accepted_ms: u64,
    },
    /// A document's record changes (an update adds recipients).
    Rewrite { record: &'a DocRecord },
    /// The body is deleted (retention); the record stays.
    Purge { seq: u64, accepted_ms: u64 },
    /// A due-index entry moves to a new start time (`Some`) or goes (`None`): a check found
    /// it not due yet, or found nothing left to do.
    Reschedule { due: &'a Due, to_ms: Option<u64> },
}

impl Store {
    /// Applies `changes` as one atomic batch, with `events` appended to the audit log in the
    /// same batch; returns the events' log indexes. With `durable`, the WAL is synced before
    /// return, so the changes survive a crash or power loss from then on. Each change is
    /// guarded (see [`Change`]): if any finds the state it relies on changed, nothing is
    /// written and the answer is [`StoreError::Conflict`] (the caller reads again).
    pub fn apply(
        &self,
        changes: &[Change<'_>],
        events: Vec<crate::audit::AuditEvent>,
        durable: bool,
    ) -> Result<Vec<u64>, StoreError> {
        let mut batch = WriteBatch::default();
        let mut puts: Vec<(&str, u64)> = Vec::new();
        let mut guards = Vec::new();
        // Documents this batch creates: their queue entries cannot exist yet, so a fan-out
        // to 519 needs no guard per recipient.
        let accepted: Vec<u64> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Accept { record, .. } => Some(record.seq),
                _ => None,
            })
            .collect();
        let guard = |cf, key, expect| Guard { cf, key, expect };
        for c in changes {
            match c {
                Change::Accept {
                    record,
                    body,
                    dedup_key,
                } => {
                    guards.push(guard(CF_DEDUP, dedup_key.to_vec(), Expect::Absent));
                    let key = record.seq.to_be_bytes();
                    let json = serde_json::to_vec(record).expect("record serializes");
                    batch.put_cf(self.cf(CF_DOCS), key, json);
                    batch.put_cf(self.cf(CF_BODIES), key, body);
                    batch.put_cf(self.cf(CF_DEDUP), dedup_key, key);
                    batch.put_cf(self.cf(CF_SENT), queue_key(&record.from, record.seq), []);
                    let at = record.received_at_ms;
                    let due = due_key(DueKind::Retention, at, record.seq, "");
                    batch.put_cf(self.cf(CF_DUE), due, []);
                }
                Change::Enqueue {
                    agency,
                    seq,
                    accepted_ms,
                } => {
                    puts.push((*agency, *seq));
                    if !accepted.contains(seq) {
                        let q = queue_key(agency, *seq);
                        guards.push(guard(CF_QUEUE, q, Expect::Absent));
                        let d = delivery_key(*seq, agency);
                        guards.push(guard(CF_DELIVERY, d, Expect::Absent));
                    }
                    batch.put_cf(
                        self.cf(CF_QUEUE),
                        queue_key(agency, *seq),
                        QueueEntry::default().encode(),
                    );
                    let due = due_key(DueKind::Expiry, *accepted_ms, *seq, agency);
                    batch.put_cf(self.cf(CF_DUE), due, []);
                }
                Change::Lease {
                    agency,
                    seq,
                    was,
                    entry,
                }
                | Change::Fetch {
                    agency,
                    seq,
                    was,
                    entry,
                    ..
                } => {
                    puts.push((*agency, *seq));
                    let q = queue_key(agency, *seq);
                    guards.push(guard(CF_QUEUE, q, Expect::Equals(was.encode().to_vec())));
                    batch.put_cf(self.cf(CF_QUEUE), queue_key(agency, *seq), entry.encode());
                }
                Change::Dequeue {
                    agency,
                    seq,
                    accepted_ms,
                } => {
                    guards.push(guard(CF_QUEUE, queue_key(agency, *seq), Expect::Present));
                    batch.delete_cf(self.cf(CF_QUEUE), queue_key(agency, *seq));
                    let due = due_key(DueKind::Expiry, *accepted_ms, *seq, agency);
                    batch.delete_cf(self.cf(CF_DUE), due);
                }
                Change::Purge { seq, accepted_ms } => {
                    batch.delete_cf(self.cf(CF_BODIES), seq.to_be_bytes());
                    let due = due_key(DueKind::Retention, *accepted_ms, *seq, "");
                    batch.delete_cf(self.cf(CF_DUE), due);
                }
                Change::Reschedule { due, to_ms } => {
                    if to_ms.is_none() && due.kind == DueKind::Expiry {
                        // Only an expiry whose item is gone: never one a re-enqueue restored.
                        let q = queue_key(&due.agency, due.seq);
                        guards.push(guard(CF_QUEUE, q, Expect::Absent));
                    }
                    batch.delete_cf(self.cf(CF_DUE), due.key());
                    if let Some(at) = to_ms {
                        let moved = due_key(due.kind, *at, due.seq, &due.agency);
                        batch.put_cf(self.cf(CF_DUE), moved, []);
                    }
                }
                Change::Rewrite { record } => {
                    let json = serde_json::to_vec(record).expect("record serializes");
                    batch.put_cf(self.cf(CF_DOCS), record.seq.to_be_bytes(), json);
                }
                Change::Ack {
                    agency,
                    seq,
                    at_ms,
                    accepted_ms,
                } => {
                    guards.push(guard(CF_QUEUE, queue_key(agency, *seq), Expect::Present));
                    batch.delete_cf(self.cf(CF_QUEUE), queue_key(agency, *seq));
                    let due = due_key(DueKind::Expiry, *accepted_ms, *seq, agency);
                    batch.delete_cf(self.cf(CF_DUE), due);
                    batch.put_cf(
                        self.cf(CF_DELIVERY),
                        delivery_key(*seq, agency),
                        at_ms.to_be_bytes(),
                    );
                }
            }
        }
        let indexes = self.writer.commit(batch, events, guards, durable)?;
        // After the puts are visible, so that a scan running meanwhile cannot move a queue's
        // head past them (see `heads`).
        for (agency, seq) in puts {
            self.heads.lower(agency, seq);
        }
        Ok(indexes)
    }
}
