//! Persistence in RocksDB: documents, bodies, the duplicate index and per-recipient queues.
//!
//! Key design (all integers big-endian so byte order is numeric order):
//! - `docs`   `seq`                      → [`DocRecord`] (JSON)
//! - `bodies` `seq`                      → the packet exactly as submitted, stored once
//! - `dedup`  `sender 0x00 key`          → `seq` (key: DocumentId, or `#…:sha256` for packets
//!   that have no identity of their own)
//! - `queue`  `recipient 0x00 seq`       → [`QueueEntry`]; a prefix scan lists an inbox oldest
//!   first.
//! - `delivery` `seq recipient`          → acked-at (ms), for "delivery to completion" times
//! - `stats`  see [`crate::stats`]: counter buckets (merge-added u64) and `p agency` → last pull
//! - `audit`  `index`                    → one audit log entry (a JSON line, see [`crate::audit`])
//! - `merkle` `level(1) index(8)`        → hash of a perfect subtree of the log (RFC 6962)
//! - `doc_audit` `seq index`             → "" : the log entries about a document
//! - `heads`  `tree_size`                → a signed tree head (JWS)
//! - `receipts` `seq recipient`          → a signed receipt (JWS; recipient empty: submission)
//! - `sent`   `sender 0x00 seq`          → "" : a sender's documents, oldest first
//! - `meta`   `seq_reserved`             → the sequence numbers handed out stay below it
//! - `due`    `kind at seq agency`       → "" : what upkeep must do when (see [`due`]); and
//!   `3 agency 0x00 at seq` → attempts: pushes still to make (see [`push_index`])
//!
//! Every change goes through [`Store::apply`] as one atomic `WriteBatch` together with the
//! audit entries it causes, written by the single writer thread ([`writer`]) that groups
//! concurrent batches under one WAL sync; durable changes are synced before it returns. This
//! module knows nothing of HTTP or of who may do what.

mod api;
mod changes;
pub mod conformance;
mod counters;
mod due;
mod group;
mod log;
pub mod pg;
mod push_index;
mod queue_starts;
mod record;
#[cfg(test)]
mod tests;
mod writer;

pub use api::Storage;
pub use changes::{Change, QueueEntry};
pub use due::{Due, DueKind};
pub use pg::PgStore;
pub use push_index::PushDue;
pub use record::{DocRecord, PdfCheck};

pub use writer::WriterOptions;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch};

const CF_DOCS: &str = "docs";
const CF_BODIES: &str = "bodies";
const CF_DEDUP: &str = "dedup";
const CF_QUEUE: &str = "queue";
const CF_DELIVERY: &str = "delivery";
const CF_STATS: &str = "stats";
const CF_AUDIT: &str = "audit";
const CF_MERKLE: &str = "merkle";
const CF_DOC_AUDIT: &str = "doc_audit";
const CF_HEADS: &str = "heads";
const CF_RECEIPTS: &str = "receipts";
const CF_SENT: &str = "sent";
const CF_META: &str = "meta";
const CF_DUE: &str = "due";
const ALL_CFS: [&str; 14] = [
    CF_DOCS,
    CF_BODIES,
    CF_DEDUP,
    CF_QUEUE,
    CF_DELIVERY,
    CF_STATS,
    CF_AUDIT,
    CF_MERKLE,
    CF_DOC_AUDIT,
    CF_HEADS,
    CF_RECEIPTS,
    CF_SENT,
    CF_META,
    CF_DUE,
];

/// `meta` key: sequence numbers below this may have been handed out (see [`Store::next_seq`]).
const SEQ_RESERVED: &[u8] = b"seq_reserved";
/// Sequence numbers reserved by one synced write.
const SEQ_BLOCK: u64 = 4096;

fn merkle_key(level: u32, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level as u8;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the disk is full: {0}")]
    NoSpace(String),
    #[error("storage error: {0}")]
    Rocks(String),
    #[error("corrupt record under key {key}: {why}")]
    Corrupt { key: String, why: String },
    /// A guarded change found the state it relied on changed (another request won).
    #[error("the item changed meanwhile")]
    Conflict,
    /// Too many writes are waiting for the disk.
    #[error("too many writes are waiting for the disk")]
    Busy,
    /// A write or sync failed: nothing is written any more until the hub restarts.
    #[error("storage failed ({0}); restart the hub after fixing the disk")]
    Failed(String),
    /// The running WAL sync has not returned for this many seconds.
    #[error("the disk has not confirmed a write for {0} s")]
    Stalled(u64),
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        let s = e.into_string();
        if s.contains("No space left") || s.contains("ENOSPC") {
            StoreError::NoSpace(s)
        } else {
            StoreError::Rocks(s)
        }
    }
}

pub struct Store {
    db: Arc<DB>,
    writer: writer::Writer,
    heads: queue_starts::QueueStarts,
    /// (next sequence number, first one not yet reserved on disk)
    seq: std::sync::Mutex<(u64, u64)>,
}

fn queue_key(agency: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.len() + 9);
    k.extend_from_slice(agency.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn decode_doc(seq: u64, bytes: &[u8]) -> Result<DocRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("docs/{seq}"),
        why: e.to_string(),
    })
}

fn delivery_key(seq: u64, agency: &str) -> Vec<u8> {
    let mut k = seq.to_be_bytes().to_vec();
    k.extend_from_slice(agency.as_bytes());
    k
}

/// The duplicate-index key for `sender` and `key`.
pub fn dedup_key(sender: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(sender.len() + key.len() + 1);
    k.extend_from_slice(sender.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Bodies at least this large are kept in blob files (smaller ones stay inline in the SST).
const BLOB_MIN_BYTES: u64 = 1024;
/// All memtables together; one family's memtable; the shared block cache.
const MEMTABLE_BUDGET: usize = 96 << 20;
const MEMTABLE_BYTES: usize = 32 << 20;
const BLOCK_CACHE_BYTES: usize = 32 << 20;

impl Store {
    /// Opens (creating if needed) the database at `path`, with the default writer settings.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, WriterOptions::default())
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open_with(path: &Path, options: WriterOptions) -> Result<Store, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // Bounded, so the daemon's RLIMIT_NOFILE reserve (2048) covers RocksDB's files.
        opts.set_max_open_files(1024);
        // One memory budget for the whole database, not one per column family: by default
        // each of the twelve families may hold two 64 MiB memtables and its own block cache,
        // and a 60 s run at full load pushed the hub to 300 MiB. The memtables of all
        // families together are flushed at MEMTABLE_BUDGET, and all share one block cache
        // that holds index and filter blocks too.
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        let cfs = ALL_CFS.map(|name| {
            let mut cf = Options::default();
            cf.set_block_based_table_factory(&table);
            cf.set_write_buffer_size(MEMTABLE_BYTES);
            if name == CF_BODIES {
                // Bodies are written once, read a few times and deleted whole: keep them out
                // of the LSM tree. At flush they go to blob files and compaction moves only
                // their small index entries, so a body reaches the disk twice (WAL, blob
                // file) instead of once per level it is compacted through.
                cf.set_compression_type(rocksdb::DBCompressionType::None);
                cf.set_enable_blob_files(true);
                cf.set_min_blob_size(BLOB_MIN_BYTES);
                cf.set_blob_compression_type(rocksdb::DBCompressionType::None);
                // Purged bodies leave garbage in old blob files; compaction rewrites what is
                // still live out of the oldest quarter of them.
                cf.set_enable_blob_gc(true);
            } else {
                cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            }
            if name == CF_STATS {
                cf.set_merge_operator_associative("add_u64", crate::stats::merge_add);
            }
            ColumnFamilyDescriptor::new(name, cf)
        });
        let db = Arc::new(DB::open_cf_descriptors(&opts, path, cfs)?);
        due::build_if_missing(&db)?;
        let state = Self::tree_state(&db)?;
        let writer = writer::Writer::start(db.clone(), state, options);
        let store = Store {
            db,
            writer,
            heads: queue_starts::QueueStarts::default(),
            seq: std::sync::Mutex::new((0, 0)),
        };
        let reserved = store
            .db
            .get_cf(store.cf(CF_META), SEQ_RESERVED)?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let next = (store.max_seq()? + 1).max(reserved);
        *store.seq.lock().expect("seq lock") = (next, next);
        Ok(store)
    }

    /// A new document sequence number, never handed out before — not even one a crash
    /// lost before its document was synced, which readers may have seen (and acked) all the
    /// same. Numbers are reserved in blocks by a synced write before any of them is used, and
    /// a restart continues after the last reserved block; a crash leaves a gap, never a reuse.
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        let mut s = self.seq.lock().expect("seq lock");
        if s.0 >= s.1 {
            let until = s.0 + SEQ_BLOCK;
            let mut sync = rocksdb::WriteOptions::default();
            sync.set_sync(true);
            self.db
                .put_cf_opt(self.cf(CF_META), SEQ_RESERVED, until.to_be_bytes(), &sync)?;
            s.1 = until;
        }
        s.0 += 1;
        Ok(s.0 - 1)
    }

    /// Returns once every change written so far is synced (after a failed sync: the error).
    /// Answers that report state another request wrote ("already acked", "duplicate") wait
    /// for it, so that nobody hears of a change a crash could still undo.
    pub fn barrier(&self) -> Result<(), StoreError> {
        self.writer
            .commit(WriteBatch::default(), vec![], vec![], true)
            .map(|_| ())
    }

    /// Why the store cannot take writes now, if it cannot (for `/readyz`).
    pub fn health(&self) -> Result<(), StoreError> {
        self.writer.health.check(self.writer.options.sync_deadline)
    }

    /// Where the audit log's Merkle tree stands, read back at open: its size (one seek) and
    /// the newest perfect node of each level (one seek per level).
    fn tree_state(db: &DB) -> Result<writer::TreeState, StoreError> {
        let audit = db.cf_handle(CF_AUDIT).expect("audit cf");
        let size = match db.iterator_cf(audit, IteratorMode::End).next() {
            None => 0,
            Some(item) => {
                let (k, _) = item?;
                u64::from_be_bytes(k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: format!("audit/{k:?}"),
                    why: "audit key is not 8 bytes".into(),
                })?) + 1
            }
        };
        let merkle = db.cf_handle(CF_MERKLE).expect("merkle cf");
        let mut last = Vec::new();
        for level in 0..64u32 {
            let mut it = db.raw_iterator_cf(merkle);
            it.seek_for_prev(merkle_key(level, u64::MAX));
            let found = match (it.key(), it.value()) {
                (Some(k), Some(v)) if k.len() == 9 && k[0] == level as u8 && v.len() == 32 => {
                    let i = u64::from_be_bytes(k[1..].try_into().expect("8 bytes"));
                    Some((i, v.try_into().expect("32 bytes")))
                }
                _ => None,
            };
            if found.is_none() && level > 0 && last.iter().all(Option::is_none) {
                break;
            }
            last.push(found);
        }
        Ok(writer::TreeState { size, last })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// The highest sequence number in use (0 when empty): one seek, whatever the size.
    pub fn max_seq(&self) -> Result<u64, StoreError> {
        let mut it = self.db.iterator_cf(self.cf(CF_DOCS), IteratorMode::End);
        match it.next() {
            None => Ok(0),
            Some(item) => {
                let (k, _) = item?;
                let bytes: [u8; 8] = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: format!("{k:?}"),
                    why: "document key is not 8 bytes".into(),
                })?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }

    pub fn dedup(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_DEDUP), key)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    pub fn doc(&self, seq: u64) -> Result<Option<DocRecord>, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_DOCS), seq.to_be_bytes())? {
            None => Ok(None),
            Some(v) => decode_doc(seq, &v).map(Some),
        }
    }

    /// Records for many sequence numbers in one call (missing ones are skipped).
    pub fn docs(&self, seqs: &[u64]) -> Result<Vec<DocRecord>, StoreError> {
        let cf = self.cf(CF_DOCS);
        let keys: Vec<[u8; 8]> = seqs.iter().map(|s| s.to_be_bytes()).collect();
        let mut out = Vec::with_capacity(seqs.len());
        for (seq, v) in seqs
            .iter()
            .zip(self.db.batched_multi_get_cf(cf, &keys, false))
        {
            if let Some(v) = v? {
                out.push(decode_doc(*seq, &v)?);
            }
        }
        Ok(out)
    }

    /// Records from `seq` on, in order, at most `limit`.
    pub fn docs_from(&self, seq: u64, limit: usize) -> Result<Vec<DocRecord>, StoreError> {
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_DOCS),
            IteratorMode::From(&seq.to_be_bytes(), Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            let s = u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]));
            out.push(decode_doc(s, &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn has_body(&self, seq: u64) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_BODIES), seq.to_be_bytes())?
            .is_some())
    }

    pub fn body(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_BODIES), seq.to_be_bytes())?)
    }

    pub fn queue_entry(&self, agency: &str, seq: u64) -> Result<Option<QueueEntry>, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_QUEUE), queue_key(agency, seq))?
            .and_then(|v| QueueEntry::decode(&v)))
    }

    /// Walks `agency`'s queue oldest first, calling `f(seq, entry)` until it returns false.
    pub fn scan_queue(
        &self,
        agency: &str,
        mut f: impl FnMut(u64, QueueEntry) -> bool,
    ) -> Result<(), StoreError> {
        let mut prefix = agency.as_bytes().to_vec();
        prefix.push(0);
        let start = self.heads.start(agency);
        let it = self.db.iterator_cf(
            self.cf(CF_QUEUE),
            IteratorMode::From(&queue_key(agency, start.seq), Direction::Forward),
        );
        let mut first = None;
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let seq = k[prefix.len()..]
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    key: format!("queue/{agency}"),
                    why: "bad key".into(),
                })?;
            first.get_or_insert(seq);
            let entry = QueueEntry::decode(&v).ok_or_else(|| StoreError::Corrupt {
                key: format!("queue/{agency}/{seq}"),
                why: "bad entry".into(),
            })?;
            if !f(seq, entry) {
                break;
            }
        }
        self.heads.found(agency, start, first);
        Ok(())
    }

    /// When `agency` acked `seq`, if it did.
    pub fn acked_at(&self, seq: u64, agency: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_DELIVERY), delivery_key(seq, agency))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Pending items per agency: one pass over the queue keys (at start-up only).
    pub fn queue_depths(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for item in self.db.iterator_cf(self.cf(CF_QUEUE), IteratorMode::Start) {
            let (k, _) = item?;
            let agency = &k[..k.len().saturating_sub(9)];
            *out.entry(String::from_utf8_lossy(agency).into_owned())
                .or_default() += 1;
        }
        Ok(out)
    }

    /// The oldest pending sequence number in `agency`'s queue: one seek.
    pub fn oldest_pending(&self, agency: &str) -> Result<Option<u64>, StoreError> {
        let mut first = None;
        self.scan_queue(agency, |seq, _| {
            first = Some(seq);
            false
        })?;
        Ok(first)
    }

    /// (live SST bytes, estimated pending compaction bytes) for the metrics.
    pub fn size_figures(&self) -> (u64, u64) {
        let prop = |name: &str| {
            ALL_CFS
                .iter()
                .filter_map(|cf| {
                    self.db
                        .property_int_value_cf(self.cf(cf), name)
                        .ok()
                        .flatten()
                })
                .sum()
        };
        (
            prop("rocksdb.live-sst-files-size"),
            prop("rocksdb.estimate-pending-compaction-bytes"),
        )
    }

    /// A sender's documents from `from_seq` on, oldest first, at most `limit`.
    pub fn sent(&self, sender: &str, from_seq: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let start = queue_key(sender, from_seq);
        let prefix_len = sender.len() + 1;
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_SENT),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in it {
            let (k, _) = item?;
            if k.len() != prefix_len + 8 || k[..prefix_len] != start[..prefix_len] {
                break;
            }
            out.push(u64::from_be_bytes(
                k[prefix_len..].try_into().expect("8 bytes"),
            ));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// A RocksDB checkpoint in the new directory `dir`: SST files hard-linked (copied across
    /// file systems), memtables flushed first, so the copy is one consistent point in time
    /// that includes every synced write.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        self.barrier()?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// Flushes memtables so the next start replays little WAL.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.writer.stop();
        self.db.flush_wal(true)?;
        for cf in ALL_CFS {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }
}
