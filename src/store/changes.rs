//! The changes a queue and its documents go through, and how one list of them becomes one
//! atomic, guarded write (see [`writer`](super::writer) for the compare-and-set).

use rocksdb::WriteBatch;

use super::due::{Due, DueKind, due_key};
use super::push_index::{gone_key, push_key};
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
#[derive(Debug, Clone)]
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
    /// `agency`'s push of `seq` (see [`push_index`](super::push_index)): the entry due at
    /// `was` (which must still be there) goes, and one due at `next` = (time, attempts made)
    /// is written. `was: None, next: Some` schedules a first push; `Some, None` ends it.
    Push {
        agency: &'a str,
        seq: u64,
        was: Option<u64>,
        next: Option<(u64, u32)>,
    },
    /// A push attempt that failed gives its lease back (so a pull lists the item at once);
    /// like [`Change::Lease`], written only if the entry still holds `was`, but no delivery
    /// attempt of its own.
    Release {
        agency: &'a str,
        seq: u64,
        was: QueueEntry,
        entry: QueueEntry,
    },
    /// `agency`'s endpoint `url` answered 410 Gone (`Some`): pushes to it stop; `None` lifts
    /// the mark.
    PullOnly {
        agency: &'a str,
        url: Option<&'a str>,
    },
}

/// A batch being built: the writes, the guards they rely on, and the queue entries put
/// (whose queue starts move once they are visible).
struct Staged<'a> {
    batch: WriteBatch,
    guards: Vec<Guard>,
    puts: Vec<(&'a str, u64)>,
}

impl Staged<'_> {
    fn guard(&mut self, cf: &'static str, key: Vec<u8>, expect: Expect) {
        self.guards.push(Guard { cf, key, expect });
    }
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
        let mut st = Staged {
            batch: WriteBatch::default(),
            guards: Vec::new(),
            puts: Vec::new(),
        };
        // Documents this batch creates: their queue entries cannot exist yet, so a fan-out
        // to 519 needs no guard per recipient.
        let accepted: Vec<u64> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Accept { record, .. } => Some(record.seq),
                _ => None,
            })
            .collect();
        for c in changes {
            if !self.stage_queue(c, &accepted, &mut st) {
                self.stage_document(c, &mut st);
            }
        }
        let indexes = self.writer.commit(st.batch, events, st.guards, durable)?;
        // After the puts are visible, so that a scan running meanwhile cannot move a queue's
        // head past them (see `queue_starts`).
        for (agency, seq) in st.puts {
            self.heads.lower(agency, seq);
        }
        Ok(indexes)
    }

    /// Stages a change of a queue entry (with its due-index entry); false for other changes.
    fn stage_queue<'a>(&self, c: &Change<'a>, accepted: &[u64], st: &mut Staged<'a>) -> bool {
        let (queue, due) = (self.cf(CF_QUEUE), self.cf(CF_DUE));
        match *c {
            Change::Enqueue {
                agency,
                seq,
                accepted_ms,
            } => {
                st.puts.push((agency, seq));
                if !accepted.contains(&seq) {
                    st.guard(CF_QUEUE, queue_key(agency, seq), Expect::Absent);
                    st.guard(CF_DELIVERY, delivery_key(seq, agency), Expect::Absent);
                }
                let entry = QueueEntry::default().encode();
                st.batch.put_cf(queue, queue_key(agency, seq), entry);
                let key = due_key(DueKind::Expiry, accepted_ms, seq, agency);
                st.batch.put_cf(due, key, []);
            }
            Change::Lease {
                agency,
                seq,
                was,
                entry,
            }
            | Change::Release {
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
                st.puts.push((agency, seq));
                let was = Expect::Equals(was.encode().to_vec());
                st.guard(CF_QUEUE, queue_key(agency, seq), was);
                st.batch
                    .put_cf(queue, queue_key(agency, seq), entry.encode());
            }
            Change::Ack {
                agency,
                seq,
                accepted_ms,
                ..
            }
            | Change::Dequeue {
                agency,
                seq,
                accepted_ms,
            } => {
                st.guard(CF_QUEUE, queue_key(agency, seq), Expect::Present);
                st.batch.delete_cf(queue, queue_key(agency, seq));
                let key = due_key(DueKind::Expiry, accepted_ms, seq, agency);
                st.batch.delete_cf(due, key);
                if let Change::Ack { at_ms, .. } = *c {
                    let delivered = delivery_key(seq, agency);
                    let cf = self.cf(CF_DELIVERY);
                    st.batch.put_cf(cf, delivered, at_ms.to_be_bytes());
                }
            }
            _ => return false,
        }
        true
    }

    /// Stages a change of a document (its record, body, indexes) or of the due index.
    fn stage_document(&self, c: &Change<'_>, st: &mut Staged<'_>) {
        let due = self.cf(CF_DUE);
        match *c {
            Change::Accept {
                record,
                body,
                dedup_key,
            } => {
                st.guard(CF_DEDUP, dedup_key.to_vec(), Expect::Absent);
                let key = record.seq.to_be_bytes();
                let json = serde_json::to_vec(record).expect("record serializes");
                st.batch.put_cf(self.cf(CF_DOCS), key, json);
                st.batch.put_cf(self.cf(CF_BODIES), key, body);
                st.batch.put_cf(self.cf(CF_DEDUP), dedup_key, key);
                let sent = queue_key(&record.from, record.seq);
                st.batch.put_cf(self.cf(CF_SENT), sent, []);
                let at = record.received_at_ms;
                let retention = due_key(DueKind::Retention, at, record.seq, "");
                st.batch.put_cf(due, retention, []);
            }
            Change::Rewrite { record } => {
                let json = serde_json::to_vec(record).expect("record serializes");
                let key = record.seq.to_be_bytes();
                st.batch.put_cf(self.cf(CF_DOCS), key, json);
            }
            Change::Purge { seq, accepted_ms } => {
                st.batch.delete_cf(self.cf(CF_BODIES), seq.to_be_bytes());
                let retention = due_key(DueKind::Retention, accepted_ms, seq, "");
                st.batch.delete_cf(due, retention);
            }
            Change::Reschedule { due: d, to_ms } => {
                if to_ms.is_none() && d.kind == DueKind::Expiry {
                    // Only an expiry whose item is gone: never one a re-enqueue restored.
                    st.guard(CF_QUEUE, queue_key(&d.agency, d.seq), Expect::Absent);
                }
                st.batch.delete_cf(due, d.key());
                if let Some(at) = to_ms {
                    let moved = due_key(d.kind, at, d.seq, &d.agency);
                    st.batch.put_cf(due, moved, []);
                }
            }
            Change::Push {
                agency,
                seq,
                was,
                next,
            } => {
                if let Some(at) = was {
                    let key = push_key(agency, at, seq);
                    st.guard(CF_DUE, key.clone(), Expect::Present);
                    st.batch.delete_cf(due, key);
                }
                if let Some((at, attempts)) = next {
                    let key = push_key(agency, at, seq);
                    st.batch.put_cf(due, key, attempts.to_be_bytes());
                }
            }
            Change::PullOnly { agency, url } => match url {
                Some(url) => st.batch.put_cf(due, gone_key(agency), url.as_bytes()),
                None => st.batch.delete_cf(due, gone_key(agency)),
            },
            _ => unreachable!("queue changes are staged by stage_queue"),
        }
    }
}
