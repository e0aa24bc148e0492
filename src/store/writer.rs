//! The single writer: group commit and the audit log's order.
//!
//! Callers build their `WriteBatch` on their own thread (copying bodies there, in parallel)
//! and hand it over with the audit events it causes. One thread takes whatever batches are
//! waiting, gives each event the next log index (and the Merkle nodes it completes) and
//! writes the batches one after another without syncing; a second thread then syncs the WAL
//! **once** for every group written meanwhile and answers everyone, while the writer goes on
//! with the next group (copying into the WAL and waiting for the disk overlap). So:
//! - concurrent submissions share one fsync (the disk's fsync rate no longer caps them);
//! - log indexes are dense and in commit order, and an entry is durable exactly when the
//!   change it records is (same batch);
//! - a batch that fails takes its indexes back: nothing after it is numbered past a gap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rocksdb::{DB, WriteBatch, WriteOptions};

use super::{CF_AUDIT, CF_DOC_AUDIT, CF_MERKLE, StoreError, merkle_key};
use crate::audit::AuditEvent;
use crate::audit::merkle::{Hash, completed_nodes, leaf_hash};

/// Most batches one sync covers (bounds the latency the first of them waits).
const MAX_GROUP: usize = 512;

pub(super) struct Job {
    pub batch: WriteBatch,
    pub events: Vec<AuditEvent>,
    pub durable: bool,
    pub reply: SyncSender<Answer>,
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
    fn append(&mut self, db: &DB, batch: &mut WriteBatch, events: &[AuditEvent]) -> Vec<u64> {
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
    /// Log entries written and synced (what proofs may cover).
    pub committed: Arc<AtomicU64>,
}

impl Writer {
    pub fn start(db: Arc<DB>, state: TreeState) -> Writer {
        let (tx, rx) = sync_channel::<Job>(4096);
        let committed = Arc::new(AtomicU64::new(state.size));
        let c = committed.clone();
        let thread = std::thread::Builder::new()
            .name("lienthong-writer".into())
            .spawn(move || run(&db, rx, state, &c))
            .expect("spawn the writer thread");
        Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            committed,
        }
    }

    /// Hands a batch to the writer and waits until it is written (and synced, if `durable`).
    pub fn commit(
        &self,
        batch: WriteBatch,
        events: Vec<AuditEvent>,
        durable: bool,
    ) -> Result<Vec<u64>, StoreError> {
        let (reply, answer) = sync_channel(1);
        let tx = self
            .tx
            .lock()
            .expect("writer lock")
            .clone()
            .ok_or_else(|| StoreError::Rocks("the store is closed".into()))?;
        tx.send(Job {
            batch,
            events,
            durable,
            reply,
        })
        .map_err(|_| StoreError::Rocks("the writer thread has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| StoreError::Rocks("the writer thread has stopped".into()))?
    }

    /// Stops the thread after the batches already handed over.
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
type Answer = Result<Vec<u64>, StoreError>;

/// What the writer hands the syncer: one written group.
struct Written {
    results: Vec<(SyncSender<Answer>, Answer)>,
    sync: bool,
    /// The log's size after this group.
    size: u64,
}

fn run(db: &Arc<DB>, rx: Receiver<Job>, mut state: TreeState, committed: &Arc<AtomicU64>) {
    // Writing a group (copying it into the WAL and memtables) and syncing the WAL overlap:
    // while one thread waits for the disk, the other writes the next group. A sync covers
    // everything written before it starts, so a group is answered only after a sync that
    // began once it was written.
    let (to_syncer, written) = sync_channel::<Written>(64);
    let syncer = {
        let (db, committed) = (db.clone(), committed.clone());
        std::thread::Builder::new()
            .name("lienthong-sync".into())
            .spawn(move || sync_loop(&db, written, &committed))
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
        let mut results = Vec::with_capacity(group.len());
        let mut sync = false;
        for job in group {
            let snapshot = state.clone();
            let mut batch = job.batch;
            let indexes = state.append(db, &mut batch, &job.events);
            match db.write_opt(batch, &no_sync) {
                Ok(()) => {
                    sync |= job.durable;
                    results.push((job.reply, Ok(indexes)));
                }
                Err(e) => {
                    state = snapshot;
                    results.push((job.reply, Err(StoreError::from(e))));
                }
            }
        }
        metrics::histogram!("lienthong_commit_group_batches").record(results.len() as f64);
        let group = Written {
            results,
            sync,
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
fn sync_loop(db: &DB, rx: Receiver<Written>, committed: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(g) = rx.try_recv() {
            groups.push(g);
        }
        if groups.iter().any(|g| g.sync) {
            metrics::counter!("lienthong_wal_syncs_total").increment(1);
            if let Err(e) = db.flush_wal(true) {
                let e = StoreError::from(e);
                for (_, r) in groups.iter_mut().flat_map(|g| g.results.iter_mut()) {
                    if r.is_ok() {
                        *r = Err(e.clone());
                    }
                }
            }
        }
        let size = groups.last().map_or(0, |g| g.size);
        if size > committed.load(Ordering::SeqCst) {
            committed.store(size, Ordering::SeqCst);
        }
        for (reply, r) in groups.into_iter().flat_map(|g| g.results) {
            let _ = reply.send(r);
        }
    }
}
