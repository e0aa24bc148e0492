//! The due index: what must happen at some time, so that upkeep is a range scan over what is
//! due instead of a walk over every queue. Entries are written and removed in the same atomic
//! batch as the state they schedule (an enqueue schedules its expiry, an ack or expiry
//! removes it), so the index never disagrees with the queues after a crash.
//!
//! Key: `kind(1) at_ms(8) seq(8) agency`, integers big-endian. The kind comes first because
//! each kind is scanned with its own cutoff: with the time first, an expiry scan would read
//! past every retention entry (kept for years) to find the expiry entries (kept for days).
//!
//! `at_ms` is when the clock of the kind's configured period started (a document's
//! acceptance for both expiry and retention); an entry is due once `at_ms + period <= now`.
//! Keeping the period out of the key means no key depends on the configuration: a changed
//! `expiry_secs` applies to what is already queued, and a remover can always name the key
//! from the document record alone.
//!
//! Lease ends have no entries: a lapsed lease changes no state (a listing compares times
//! while it scans the queue it reads anyway), so there is nothing to schedule.

use rocksdb::{DB, Direction, IteratorMode, WriteBatch};

use super::{CF_BODIES, CF_DOCS, CF_DUE, CF_META, CF_QUEUE, Store, StoreError, decode_doc};

/// What an entry schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DueKind {
    /// A queued item expires undelivered (`agency`, `seq`).
    Expiry,
    /// A document's body is purged (`seq`; `agency` empty).
    Retention,
}

impl DueKind {
    fn byte(self) -> u8 {
        match self {
            DueKind::Expiry => 1,
            DueKind::Retention => 2,
        }
    }
}

/// One entry of the due index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub kind: DueKind,
    /// When the period started (see the module docs).
    pub at_ms: u64,
    pub seq: u64,
    /// The recipient, for per-recipient kinds; empty otherwise.
    pub agency: String,
}

/// The key of one entry.
pub(super) fn due_key(kind: DueKind, at_ms: u64, seq: u64, agency: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + agency.len());
    k.push(kind.byte());
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(agency.as_bytes());
    k
}

fn decode(kind: DueKind, k: &[u8]) -> Result<Due, StoreError> {
    let bad = || StoreError::Corrupt {
        key: format!("due/{k:?}"),
        why: "bad due key".into(),
    };
    if k.len() < 17 || k[0] != kind.byte() {
        return Err(bad());
    }
    Ok(Due {
        kind,
        at_ms: u64::from_be_bytes(k[1..9].try_into().map_err(|_| bad())?),
        seq: u64::from_be_bytes(k[9..17].try_into().map_err(|_| bad())?),
        agency: String::from_utf8(k[17..].to_vec()).map_err(|_| bad())?,
    })
}

impl Due {
    pub(super) fn key(&self) -> Vec<u8> {
        due_key(self.kind, self.at_ms, self.seq, &self.agency)
    }
}

/// `meta` key: present once the due index covers every queue entry and body.
const DUE_INDEX_BUILT: &[u8] = b"due_index_v1";

impl Store {
    /// Entries of `kind` whose period started before `before_ms`, oldest first, at most
    /// `limit`: one range scan.
    pub fn due(&self, kind: DueKind, before_ms: u64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let start = [kind.byte()];
        let end = due_key(kind, before_ms, 0, "");
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_DUE),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in it {
            let (k, _) = item?;
            if k.as_ref() >= end.as_slice() || out.len() >= limit {
                break;
            }
            out.push(decode(kind, &k)?);
        }
        Ok(out)
    }
}

/// Builds the due index of a database written before it existed (once, at open, before the
/// writer starts): an expiry entry per queue entry, a retention entry per stored body.
pub(super) fn build_if_missing(db: &DB) -> Result<(), StoreError> {
    let cf = |name| db.cf_handle(name).expect("column family created at open");
    if db.get_cf(cf(CF_META), DUE_INDEX_BUILT)?.is_some() {
        return Ok(());
    }
    let accepted = |seq: u64| -> Result<Option<u64>, StoreError> {
        Ok(match db.get_pinned_cf(cf(CF_DOCS), seq.to_be_bytes())? {
            Some(v) => Some(decode_doc(seq, &v)?.received_at_ms),
            None => None,
        })
    };
    let mut batch = WriteBatch::default();
    for item in db.iterator_cf(cf(CF_QUEUE), IteratorMode::Start) {
        let (k, _) = item?;
        let Some(split) = k.len().checked_sub(9) else {
            continue;
        };
        let seq = u64::from_be_bytes(k[split + 1..].try_into().expect("8 bytes"));
        let agency = String::from_utf8_lossy(&k[..split]);
        if let Some(at) = accepted(seq)? {
            batch.put_cf(cf(CF_DUE), due_key(DueKind::Expiry, at, seq, &agency), []);
        }
    }
    for item in db.iterator_cf(cf(CF_BODIES), IteratorMode::Start) {
        let (k, _) = item?;
        let Ok(bytes) = k.as_ref().try_into() else {
            continue;
        };
        let seq = u64::from_be_bytes(bytes);
        if let Some(at) = accepted(seq)? {
            batch.put_cf(cf(CF_DUE), due_key(DueKind::Retention, at, seq, ""), []);
        }
    }
    batch.put_cf(cf(CF_META), DUE_INDEX_BUILT, []);
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)?;
    Ok(())
}
