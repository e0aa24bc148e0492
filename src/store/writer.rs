//! The single writer: compare-and-set, group commit and the audit log's order.
//!
//! Callers build their `WriteBatch` on their own thread (copying bodies there, in parallel)
//! and hand it over with the audit events it causes and the **guards** it relies on. One
//! thread takes whatever jobs are waiting; for each it checks the guards against the current
//! state and gives its events the next log indexes (and the Merkle nodes they complete); the
//! group's batches are merged and written with one RocksDB write, without syncing (see
//! [`Group`](super::group::Group)); a second thread then syncs the WAL **once** for every group written
//! meanwhile and answers everyone, while the writer goes on with the next group.
//! So:
//! - every state change of a queue entry is a compare-and-set: the guards are checked by the
//!   only thread that writes, right before it writes, so nothing can change in between. A
//!   job whose guard fails writes nothing and is answered [`StoreError::Conflict`] — after
//!   the sync that covers the change it lost to, so nobody hears "already done" before that
//!   change is durable;
//! - concurrent submissions share one fsync (the disk's fsync rate no longer caps them);
//! - log indexes are dense and in commit order, and an entry is durable exactly when the
//!   change it records is (same batch); the committed size (what readers and proofs see)
//!   moves only after a sync succeeded;
//! - a failed sync stops the store: RocksDB cannot tell which writes reached the disk, so
//!   nothing more is written or answered as done (see [`Health`]). A sync that does not
//!   return within the deadline makes new writes fail fast instead of queueing forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::{DB, WriteBatch, WriteOptions};

use super::group::{Group, GuardedIds, Prints};
use super::{CF_AUDIT, CF_DOC_AUDIT, CF_MERKLE, StoreError, merkle_key};
use crate::audit::AuditEvent;
use crate::audit::merkle::{Hash, completed_nodes, leaf_hash};

/// Most jobs one sync covers (bounds the latency the first of them waits).
const MAX_GROUP: usize = 512;
/// How long written but unsynced log entries (from non-durable changes) may wait for a
/// durable change to carry them to disk before the syncer syncs for them alone.
const LAZY_SYNC: Duration = Duration::from_millis(20);

/// What a guarded key must hold when the writer comes to write the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Absent,
    Present,
    /// Exactly these bytes.
    Equals(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Guard {
    pub cf: &'static str,
    pub key: Vec<u8>,
    pub expect: Expect,
}

impl Guard {
    pub(super) fn holds(&self, db: &DB) -> Result<bool, StoreError> {
        let cf = db.cf_handle(self.cf).expect("guarded column family");
        let now = db.get_pinned_cf(cf, &self.key)?;
        Ok(match (&self.expect, now) {
            (Expect::Absent, v) => v.is_none(),
            (Expect::Present, v) => v.is_some(),
            (Expect::Equals(want), Some(v)) => v.as_ref() == want.as_slice(),
            (Expect::Equals(_), None) => false,
        })
    }
}

/// Settings of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// A WAL sync that has not returned after this long fails new writes fast (503).
    pub sync_deadline: Duration,
    /// Jobs waiting for the writer beyond which new ones are refused (503 server_busy).
    pub max_pending: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            sync_deadline: Duration::from_secs(10),
            max_pending: 4096,
        }
    }
}

/// Whether the store can take writes, shared by the writer, the syncer and `/readyz`.
#[derive(Default)]
pub struct Health {
    /// The first failed write or sync; cleared only by a restart. A full disk stays
    /// `NoSpace` (507), anything else is `Failed` (503).
    failed: Mutex<Option<StoreError>>,
    /// When the running sync started (ms since the epoch), 0 when none runs.
    sync_started_ms: AtomicU64,
}

impl Health {
    /// Records the store's first failure and returns what every later write will hear.
    pub(super) fn fail(&self, e: StoreError) -> StoreError {
        let mut f = self.failed.lock().expect("health lock");
        f.get_or_insert_with(|| {
            tracing::error!(error = %e, "storage failed: refusing writes until restart");
            metrics::counter!("lienthong_storage_failures_total").increment(1);
            match e {
                StoreError::NoSpace(_) | StoreError::Failed(_) => e,
                other => StoreError::Failed(other.to_string()),
            }
        })
        .clone()
    }

    /// Why writes cannot be taken now, if they cannot.
    pub fn check(&self, deadline: Duration) -> Result<(), StoreError> {
        if let Some(e) = self.failed.lock().expect("health lock").as_ref() {
            return Err(e.clone());
        }
        let started = self.sync_started_ms.load(Ordering::SeqCst);
        let waited = crate::ids::now_ms().saturating_sub(started);
        let limit = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        if started != 0 && waited > limit {
            return Err(StoreError::Stalled(waited / 1000));
        }
        Ok(())
    }
}

pub(super) struct Job {
    pub batch: WriteBatch,
    pub events: Vec<AuditEvent>,
    pub guards: Vec<Guard>,
    pub durable: bool,
    pub reply: SyncSender<Answer>,
    pub prints: Prints,
}

/// Where the log's Merkle tree stands: its size and, per level, the newest perfect node (the
/// only left siblings a new leaf can need).
#[derive(Clone)]
pub(super) struct TreeState {
    pub size: u64,
    pub last: Vec<Option<(u64, Hash)>>,
}

impl TreeState {
    /// Adds `events` to `batch` as log entries `size..`; returns their indexes.
    pub(super) fn append(
        &mut self,
        db: &DB,
        batch: &mut WriteBatch,
        events: &[AuditEvent],
    ) -> Vec<u64> {
        let audit = db.cf_handle(CF_AUDIT).expect("audit cf");
        let merkle = db.cf_handle(CF_MERKLE).expect("merkle cf");
        let by_doc = db.cf_handle(CF_DOC_AUDIT).expect("doc_audit cf");
        let mut indexes = Vec::with_capacity(events.len());
        for e in events {
            let index = self.size;
            let line = e.encode(index);
            let leaf = leaf_hash(&line);
            let last = &self.last;
            let nodes = completed_nodes(index, leaf, |level, i| {
                last.get(level as usize)
                    .copied()
                    .flatten()
                    .filter(|(at, _)| *at == i)
                    .map(|(_, h)| h)
            });
            batch.put_cf(audit, index.to_be_bytes(), &line);
            for (level, i, h) in nodes {
                batch.put_cf(merkle, merkle_key(level, i), h);
                if self.last.len() <= level as usize {
                    self.last.resize(level as usize + 1, None);
                }
                self.last[level as usize] = Some((i, h));
            }
            if let Some(seq) = e.document {
                let mut k = seq.to_be_bytes().to_vec();
                k.extend_from_slice(&index.to_be_bytes());
                batch.put_cf(by_doc, k, []);
            }
            self.size += 1;
            indexes.push(index);
        }
        indexes
    }
}

pub(super) struct Writer {
    tx: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Log entries written and synced (what readers and proofs may cover).
    pub committed: Arc<AtomicU64>,
    /// Log entries written (synced or not).
    pub written: Arc<AtomicU64>,
    pub health: Arc<Health>,
    pub options: WriterOptions,
    /// The guarded families' ids, for each job's [`Prints`].
    ids: GuardedIds,
}

impl Writer {
    pub fn start(db: Arc<DB>, state: TreeState, options: WriterOptions) -> Writer {
        let (tx, rx) = sync_channel::<Job>(options.max_pending.max(1));
        let committed = Arc::new(AtomicU64::new(state.size));
        let written = Arc::new(AtomicU64::new(state.size));
        let health = Arc::new(Health::default());
        let (c, w, h) = (committed.clone(), written.clone(), health.clone());
        let ids = GuardedIds::probe(&db);
        let thread = std::thread::Builder::new()
            .name("lienthong-writer".into())
            .spawn(move || run(&db, rx, state, (&c, &w), &h))
            .expect("spawn the writer thread");
        Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            committed,
            written,
            health,
            options,
            ids,
        }
    }

    /// Hands a job to the writer and waits until it is written (and synced, if `durable`).
    /// Fails fast when the store has failed, a sync hangs or too many jobs wait; a caller
    /// that gives up waiting (the sync deadline passed) leaves its job to complete or fail
    /// on its own: the answer was "not done", and a retry meets the job's guards.
    pub fn commit(
        &self,
        batch: WriteBatch,
        events: Vec<AuditEvent>,
        guards: Vec<Guard>,
        durable: bool,
    ) -> Result<Vec<u64>, StoreError> {
        self.health.check(self.options.sync_deadline)?;
        let (reply, answer) = sync_channel(1);
        let tx = self
            .tx
            .lock()
            .expect("writer lock")
            .clone()
            .ok_or_else(|| StoreError::Rocks("the store is closed".into()))?;
        // On this thread, not the writer's: what the writer needs to merge the job.
        let prints = Prints::of(&self.ids, &batch, &guards);
        let job = Job {
            batch,
            events,
            guards,
            durable,
            reply,
            prints,
        };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("lienthong_writes_refused_total", "reason" => "queue_full")
                    .increment(1);
                return Err(StoreError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(StoreError::Rocks("the writer thread has stopped".into()));
            }
        }
        // Waits in slices so that a sync that hangs turns into a fast "not now".
        let slice = Duration::from_millis(250).min(self.options.sync_deadline);
        loop {
            match answer.recv_timeout(slice) {
                Ok(r) => return r,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(StoreError::Rocks("the writer thread has stopped".into()));
                }
                Err(RecvTimeoutError::Timeout) => self.health.check(self.options.sync_deadline)?,
            }
        }
    }

    /// Stops the thread after the jobs already handed over.
    pub fn stop(&self) {
        self.tx.lock().expect("writer lock").take();
        if let Some(t) = self.thread.lock().expect("writer lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A committer's answer: its log indexes, or why its change was not stored.
pub(super) type Answer = Result<Vec<u64>, StoreError>;

/// What the writer hands the syncer: one written group.
struct Written {
    results: Vec<(SyncSender<Answer>, Answer)>,
    sync: bool,
    /// The log's size after this group.
    size: u64,
}

fn run(
    db: &Arc<DB>,
    rx: Receiver<Job>,
    mut state: TreeState,
    (committed, written_size): (&Arc<AtomicU64>, &Arc<AtomicU64>),
    health: &Arc<Health>,
) {
    // Writing a group (copying it into the WAL and memtables) and syncing the WAL overlap:
    // while one thread waits for the disk, the other writes the next group. A sync covers
    // everything written before it starts, so a group is answered only after a sync that
    // began once it was written.
    let (to_syncer, written) = sync_channel::<Written>(64);
    let syncer = {
        let (db, committed, health) = (db.clone(), committed.clone(), health.clone());
        std::thread::Builder::new()
            .name("lienthong-sync".into())
            .spawn(move || sync_loop(&db, written, &committed, &health))
            .expect("spawn the WAL sync thread")
    };
    let mut no_sync = WriteOptions::default();
    no_sync.set_sync(false);
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let jobs = group.len();
        let mut out = Group::new();
        for job in group {
            out.take(db, health, &mut state, job, &no_sync);
        }
        out.flush(db, health, &mut state, &no_sync);
        metrics::histogram!("lienthong_commit_group_batches").record(jobs as f64);
        written_size.store(state.size, Ordering::SeqCst);
        let group = Written {
            results: out.results,
            sync: out.sync,
            size: state.size,
        };
        if to_syncer.send(group).is_err() {
            break;
        }
    }
    drop(to_syncer);
    let _ = syncer.join();
}

/// Syncs the WAL once for every group written while the previous sync ran, then answers.
/// Groups that need no sync are answered at once, but their log entries count as committed
/// only after a later sync (one comes within [`LAZY_SYNC`] if no durable change brings it).
fn sync_loop(db: &DB, rx: Receiver<Written>, committed: &AtomicU64, health: &Health) {
    let mut written = committed.load(Ordering::SeqCst);
    // Since when entries have been written that no sync covers yet.
    let mut lag_since: Option<Instant> = None;
    loop {
        let first = if let Some(since) = lag_since {
            match rx.recv_timeout(LAZY_SYNC.saturating_sub(since.elapsed())) {
                Ok(g) => Some(g),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(g) => Some(g),
                Err(_) => break,
            }
        };
        let mut groups: Vec<Written> = first.into_iter().collect();
        while let Ok(g) = rx.try_recv() {
            groups.push(g);
        }
        if let Some(last) = groups.last() {
            written = written.max(last.size);
        }
        if written > committed.load(Ordering::SeqCst) {
            lag_since.get_or_insert_with(Instant::now);
        }
        let overdue = lag_since.is_some_and(|t| t.elapsed() >= LAZY_SYNC);
        let mut outcome = Ok(());
        if groups.iter().any(|g| g.sync) || overdue {
            outcome = sync_wal(db, health);
            if outcome.is_ok() {
                committed.fetch_max(written, Ordering::SeqCst);
            }
            // After a failure nothing more is written, so nothing more to sync for.
            lag_since = None;
        }
        for g in groups {
            for (reply, mut r) in g.results {
                if let (Err(e), Ok(_)) = (&outcome, &r) {
                    // Written, but not known to be on disk: not done.
                    r = Err(e.clone());
                }
                let _ = reply.send(r);
            }
        }
    }
    // Closing: whatever was written is synced by the store's flush.
}

/// One WAL sync, timed for the health check; a failure stops the store.
fn sync_wal(db: &DB, health: &Health) -> Result<(), StoreError> {
    metrics::counter!("lienthong_wal_syncs_total").increment(1);
    health
        .sync_started_ms
        .store(crate::ids::now_ms().max(1), Ordering::SeqCst);
    let r = db.flush_wal(true).map_err(StoreError::from);
    health.sync_started_ms.store(0, Ordering::SeqCst);
    match r {
        Err(StoreError::NoSpace(m)) => Err(health.fail(StoreError::NoSpace(m))),
        Err(e) => Err(health.fail(StoreError::Failed(format!("WAL sync failed: {e}")))),
        Ok(()) => Ok(()),
    }
}
