//! The storage interface the hub core talks to. RocksDB ([`Store`]) is its one
//! implementation today; a replicated engine (PostgreSQL, issue 19) implements the same
//! trait and must pass the same conformance suite ([`super::conformance`]).
//!
//! What an implementation promises (the suite checks each):
//! - `apply` is atomic and guarded: every change's precondition (see [`Change`]) holds when
//!   it is written, or nothing is written and the answer is [`StoreError::Conflict`];
//!   with `durable`, the answer comes after the change (and its audit entries) is durable;
//! - audit entries get dense indexes in commit order; readers see only durable entries
//!   (`audit_size`), and never an index twice;
//! - `next_seq` never hands out a number twice, across crashes too;
//! - `barrier` returns once everything written before it is durable;
//! - the due index changes with the state it schedules: an enqueue adds the item's expiry,
//!   an ack or dequeue removes it, an accept adds the body's retention, a purge removes it;
//! - a push entry moves only from the time it is at (`Change::Push` is guarded by it).

use std::collections::HashMap;

use super::{Change, DocRecord, Due, DueKind, PushDue, QueueEntry, Store, StoreError};
use crate::audit::AuditEvent;
use crate::audit::merkle::NodeSource;

/// Queues, records, bodies, the audit log, counters and group commit.
pub trait Storage: NodeSource<Error = StoreError> + Send + Sync {
    /// Applies `changes` with `events` atomically (see the module docs).
    fn apply(
        &self,
        changes: &[Change<'_>],
        events: Vec<AuditEvent>,
        durable: bool,
    ) -> Result<Vec<u64>, StoreError>;
    fn next_seq(&self) -> Result<u64, StoreError>;
    fn barrier(&self) -> Result<(), StoreError>;
    /// Why writes cannot be taken now, if they cannot.
    fn health(&self) -> Result<(), StoreError>;
    fn dedup(&self, key: &[u8]) -> Result<Option<u64>, StoreError>;
    fn doc(&self, seq: u64) -> Result<Option<DocRecord>, StoreError>;
    fn docs(&self, seqs: &[u64]) -> Result<Vec<DocRecord>, StoreError>;
    fn docs_from(&self, seq: u64, limit: usize) -> Result<Vec<DocRecord>, StoreError>;
    fn has_body(&self, seq: u64) -> Result<bool, StoreError>;
    fn body(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
    fn queue_entry(&self, agency: &str, seq: u64) -> Result<Option<QueueEntry>, StoreError>;
    /// Walks `agency`'s queue oldest first until `f` returns false.
    fn scan_queue(
        &self,
        agency: &str,
        f: &mut dyn FnMut(u64, QueueEntry) -> bool,
    ) -> Result<(), StoreError>;
    fn acked_at(&self, seq: u64, agency: &str) -> Result<Option<u64>, StoreError>;
    fn queue_depths(&self) -> Result<HashMap<String, u64>, StoreError>;
    fn oldest_pending(&self, agency: &str) -> Result<Option<u64>, StoreError>;
    fn sent(&self, sender: &str, from_seq: u64, limit: usize) -> Result<Vec<u64>, StoreError>;
    fn apply_stats(
        &self,
        counters: &HashMap<Vec<u8>, u64>,
        last_pulls: &HashMap<String, u64>,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    fn scan_stats(
        &self,
        res: u8,
        from_bucket: u32,
        f: &mut dyn FnMut(u32, &str, &str, u64),
    ) -> Result<(), StoreError>;
    fn last_pulls(&self) -> Result<HashMap<String, u64>, StoreError>;
    /// (stored bytes, pending maintenance bytes) for the metrics.
    fn size_figures(&self) -> (u64, u64);
    fn audit_size(&self) -> u64;
    fn audit_entries(
        &self,
        from: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    fn document_audit(&self, seq: u64, limit: usize) -> Result<Vec<u64>, StoreError>;
    fn put_head(&self, size: u64, jws: &str) -> Result<(), StoreError>;
    fn latest_head(&self) -> Result<Option<(u64, String)>, StoreError>;
    fn put_receipt(&self, seq: u64, recipient: &str, jws: &str) -> Result<(), StoreError>;
    fn receipt(&self, seq: u64, recipient: &str) -> Result<Option<String>, StoreError>;
    /// Due-index entries of `kind` whose period started before `before_ms`, oldest first.
    fn due(&self, kind: DueKind, before_ms: u64, limit: usize) -> Result<Vec<Due>, StoreError>;
    /// `agency`'s scheduled pushes at or after `from_ms`, earliest first (due or not), at
    /// most `limit`.
    fn pushes(&self, agency: &str, from_ms: u64, limit: usize) -> Result<Vec<PushDue>, StoreError>;
    /// Agencies whose push endpoint answered 410 Gone, with that URL.
    fn pull_only(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Writes a consistent copy of the database, as it is now, into the new directory
    /// `dir` (online backup: writes go on meanwhile).
    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StoreError>;
    /// Makes everything durable and stops writing (shutdown).
    fn flush(&self) -> Result<(), StoreError>;
    /// Whether other hub processes may write to the same storage (PostgreSQL): then what a
    /// process keeps in memory about queues is refreshed from storage.
    fn shared(&self) -> bool {
        false
    }
    /// Whether this process is the one that does once-per-hub work (signing tree heads)
    /// now. Always on an engine only one process opens.
    fn lead(&self) -> bool {
        true
    }
    /// Calls `wake(agency)` when another process queued something for `agency` (so its
    /// long polls here answer at once). Nothing to do on an engine one process opens.
    fn subscribe(&self, wake: std::sync::Arc<dyn Fn(&str) + Send + Sync>) {
        let _ = wake;
    }
}

impl Storage for Store {
    fn apply(
        &self,
        changes: &[Change<'_>],
        events: Vec<AuditEvent>,
        durable: bool,
    ) -> Result<Vec<u64>, StoreError> {
        Store::apply(self, changes, events, durable)
    }
    fn next_seq(&self) -> Result<u64, StoreError> {
        Store::next_seq(self)
    }
    fn barrier(&self) -> Result<(), StoreError> {
        Store::barrier(self)
    }
    fn health(&self) -> Result<(), StoreError> {
        Store::health(self)
    }
    fn dedup(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        Store::dedup(self, key)
    }
    fn doc(&self, seq: u64) -> Result<Option<DocRecord>, StoreError> {
        Store::doc(self, seq)
    }
    fn docs(&self, seqs: &[u64]) -> Result<Vec<DocRecord>, StoreError> {
        Store::docs(self, seqs)
    }
    fn docs_from(&self, seq: u64, limit: usize) -> Result<Vec<DocRecord>, StoreError> {
        Store::docs_from(self, seq, limit)
    }
    fn has_body(&self, seq: u64) -> Result<bool, StoreError> {
        Store::has_body(self, seq)
    }
    fn body(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Store::body(self, seq)
    }
    fn queue_entry(&self, agency: &str, seq: u64) -> Result<Option<QueueEntry>, StoreError> {
        Store::queue_entry(self, agency, seq)
    }
    fn scan_queue(
        &self,
        agency: &str,
        f: &mut dyn FnMut(u64, QueueEntry) -> bool,
    ) -> Result<(), StoreError> {
        Store::scan_queue(self, agency, f)
    }
    fn acked_at(&self, seq: u64, agency: &str) -> Result<Option<u64>, StoreError> {
        Store::acked_at(self, seq, agency)
    }
    fn queue_depths(&self) -> Result<HashMap<String, u64>, StoreError> {
        Store::queue_depths(self)
    }
    fn oldest_pending(&self, agency: &str) -> Result<Option<u64>, StoreError> {
        Store::oldest_pending(self, agency)
    }
    fn sent(&self, sender: &str, from_seq: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        Store::sent(self, sender, from_seq, limit)
    }
    fn apply_stats(
        &self,
        counters: &HashMap<Vec<u8>, u64>,
        last_pulls: &HashMap<String, u64>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        Store::apply_stats(self, counters, last_pulls, now_ms)
    }
    fn scan_stats(
        &self,
        res: u8,
        from_bucket: u32,
        f: &mut dyn FnMut(u32, &str, &str, u64),
    ) -> Result<(), StoreError> {
        Store::scan_stats(self, res, from_bucket, f)
    }
    fn last_pulls(&self) -> Result<HashMap<String, u64>, StoreError> {
        Store::last_pulls(self)
    }
    fn size_figures(&self) -> (u64, u64) {
        Store::size_figures(self)
    }
    fn audit_size(&self) -> u64 {
        Store::audit_size(self)
    }
    fn audit_entries(
        &self,
        from: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Store::audit_entries(self, from, end, limit)
    }
    fn document_audit(&self, seq: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        Store::document_audit(self, seq, limit)
    }
    fn put_head(&self, size: u64, jws: &str) -> Result<(), StoreError> {
        Store::put_head(self, size, jws)
    }
    fn latest_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        Store::latest_head(self)
    }
    fn put_receipt(&self, seq: u64, recipient: &str, jws: &str) -> Result<(), StoreError> {
        Store::put_receipt(self, seq, recipient, jws)
    }
    fn receipt(&self, seq: u64, recipient: &str) -> Result<Option<String>, StoreError> {
        Store::receipt(self, seq, recipient)
    }
    fn due(&self, kind: DueKind, before_ms: u64, limit: usize) -> Result<Vec<Due>, StoreError> {
        Store::due(self, kind, before_ms, limit)
    }
    fn pushes(&self, agency: &str, from_ms: u64, limit: usize) -> Result<Vec<PushDue>, StoreError> {
        Store::pushes(self, agency, from_ms, limit)
    }
    fn pull_only(&self) -> Result<Vec<(String, String)>, StoreError> {
        Store::pull_only(self)
    }
    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StoreError> {
        Store::checkpoint(self, dir)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Store::flush(self)
    }
}
