//! How the writer turns a group of jobs into one RocksDB write (see [`writer`](super::writer)).
//!
//! Each job's batch is built by its caller; the writer checks the job's guards, appends its
//! log entries, and concatenates its records into the group's batch. One write per group
//! means one WAL record and one write(2) instead of one per job — the writer's largest cost
//! when 64 committers stream (docs/performance.md). The catch is the compare-and-set: a
//! guard is checked against the database, which does not yet hold the merged batch, so a
//! guard on a key a merged job writes first writes the merged batch (see [`Group::admit`]);
//! which keys those are is worked out by the committing threads ([`Prints`]).

use std::collections::HashSet;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use rocksdb::{DB, WriteBatch, WriteOptions};

use super::writer::{Answer, Guard, Health, Job, TreeState};
use super::{CF_DEDUP, CF_DELIVERY, CF_DUE, CF_QUEUE, StoreError};

/// The families guards may name: the writer notes the keys merged jobs write there.
const GUARDED_CFS: [&str; 4] = [CF_DEDUP, CF_QUEUE, CF_DELIVERY, CF_DUE];

/// A job's batch larger than this is written without waiting for more jobs to merge with
/// (for 1 MiB bodies one more copy costs more than the write it would save).
const MERGE_LIMIT: usize = 256 * 1024;

/// The column-family ids of the families guards name. A write batch reports the ids of
/// its writes, not names, and this binding has no lookup from a handle to its id, so they
/// are read back from a probe batch (nothing is written).
pub(super) struct GuardedIds(Vec<(&'static str, u32)>);

impl GuardedIds {
    pub(super) fn probe(db: &DB) -> GuardedIds {
        let mut out = Vec::new();
        for name in GUARDED_CFS {
            let mut probe = WriteBatch::default();
            probe.put_cf(db.cf_handle(name).expect("guarded column family"), [], []);
            let mut seen = Keys::default();
            probe.iterate_cf(&mut seen);
            out.push((name, seen.cf.expect("a probe write reports its family")));
        }
        GuardedIds(out)
    }

    fn of(&self, cf: &str) -> Option<u32> {
        self.0.iter().find(|(n, _)| *n == cf).map(|(_, id)| *id)
    }

    fn tracks(&self, cf_id: u32) -> bool {
        self.0.iter().any(|(_, id)| *id == cf_id)
    }
}

/// What the writer compares to decide whether a job depends on the jobs merged before it:
/// fingerprints of the keys its batch writes in the guarded families, and of the keys its
/// guards name (`None`: a family not tracked, which depends on anything). Computed by the
/// committing thread, so the single writer only looks them up.
pub(super) struct Prints {
    writes: Vec<u64>,
    guards: Vec<Option<u64>>,
}

impl Prints {
    pub(super) fn of(ids: &GuardedIds, batch: &WriteBatch, guards: &[Guard]) -> Prints {
        let mut keys = Keys {
            ids: Some(ids),
            ..Keys::default()
        };
        batch.iterate_cf(&mut keys);
        let guards = guards
            .iter()
            .map(|g| ids.of(g.cf).map(|id| fingerprint(id, &g.key)))
            .collect();
        Prints {
            writes: keys.seen,
            guards,
        }
    }
}

/// Collects fingerprints of the keys a batch writes in the guarded families (with no ids,
/// only the family of the last write: the probe).
#[derive(Default)]
struct Keys<'a> {
    cf: Option<u32>,
    ids: Option<&'a GuardedIds>,
    seen: Vec<u64>,
}

impl Keys<'_> {
    fn note(&mut self, cf_id: u32, key: &[u8]) {
        self.cf = Some(cf_id);
        if self.ids.is_some_and(|ids| ids.tracks(cf_id)) {
            self.seen.push(fingerprint(cf_id, key));
        }
    }
}

impl rocksdb::WriteBatchIteratorCf for Keys<'_> {
    fn put_cf(&mut self, cf_id: u32, key: &[u8], _: &[u8]) {
        self.note(cf_id, key);
    }
    fn delete_cf(&mut self, cf_id: u32, key: &[u8]) {
        self.note(cf_id, key);
    }
    fn merge_cf(&mut self, cf_id: u32, key: &[u8], _: &[u8]) {
        self.note(cf_id, key);
    }
}

fn fingerprint(cf_id: u32, key: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one((cf_id, key))
}

/// RocksDB's batch format: an 8-byte sequence number and a 4-byte count (little-endian),
/// then the records. Batches merge by concatenating their records.
const BATCH_HEADER: usize = 12;

/// One group as the writer builds it: the jobs whose guards held are merged into one batch
/// and written with **one** RocksDB write (one WAL record, one write(2)), not one per job.
/// Guards are checked against the database, so before checking one on a key that a merged
/// job writes (by fingerprint: a false match only costs an early write), the merged batch
/// is written first, and the check sees it.
pub(super) struct Group {
    pub(super) results: Vec<(SyncSender<Answer>, Answer)>,
    pub(super) sync: bool,
    rep: Vec<u8>,
    count: u32,
    touched: HashSet<u64>,
    /// The merged jobs: where to answer, their log indexes, whether they need the sync.
    merged: Vec<(SyncSender<Answer>, Vec<u64>, bool)>,
    /// The tree as it stood before the merged jobs (restored if their write fails).
    before: Option<TreeState>,
}

impl Group {
    pub(super) fn new() -> Group {
        Group {
            results: Vec::new(),
            sync: false,
            rep: vec![0; BATCH_HEADER],
            count: 0,
            touched: HashSet::new(),
            merged: Vec::new(),
            before: None,
        }
    }

    /// Checks one job's guards and merges it; a large job is written at once, on its own.
    pub(super) fn take(
        &mut self,
        db: &DB,
        health: &Health,
        state: &mut TreeState,
        mut job: Job,
        opts: &WriteOptions,
    ) {
        if let Err(e) = self.admit(db, health, state, &job, opts) {
            match &e {
                // A lost race is answered after the winner is durable.
                StoreError::Conflict => self.sync = true,
                e => {
                    health.fail(e.clone());
                }
            }
            self.results.push((job.reply, Err(e)));
            return;
        }
        if job.batch.size_in_bytes() > MERGE_LIMIT {
            // Written alone, without copying it: the jobs merged so far go first.
            self.flush(db, health, state, opts);
            if let Err(e) = health.check(Duration::MAX) {
                self.results.push((job.reply, Err(e)));
                return;
            }
            self.before = Some(state.clone());
            let indexes = state.append(db, &mut job.batch, &job.events);
            self.merged.push((job.reply, indexes, job.durable));
            self.write(db, health, state, opts, job.batch);
            return;
        }
        if self.before.is_none() {
            self.before = Some(state.clone());
        }
        let indexes = state.append(db, &mut job.batch, &job.events);
        let data = job.batch.data();
        let count = u32::from_le_bytes(data[8..BATCH_HEADER].try_into().expect("4 bytes"));
        self.rep.extend_from_slice(&data[BATCH_HEADER..]);
        self.count += count;
        self.touched.extend(job.prints.writes);
        self.merged.push((job.reply, indexes, job.durable));
    }

    /// The job's guards, checked after writing the merged jobs they might depend on.
    fn admit(
        &mut self,
        db: &DB,
        health: &Health,
        state: &mut TreeState,
        job: &Job,
        opts: &WriteOptions,
    ) -> Result<(), StoreError> {
        health.check(Duration::MAX)?;
        // A family no merged job's keys were noted in: assume it depends (write first).
        let depends = job.prints.guards.iter().any(|g| match g {
            Some(print) => self.touched.contains(print),
            None => !self.merged.is_empty(),
        });
        if depends {
            self.flush(db, health, state, opts);
            health.check(Duration::MAX)?;
        }
        for g in &job.guards {
            if !g.holds(db)? {
                metrics::counter!("lienthong_write_conflicts_total").increment(1);
                return Err(StoreError::Conflict);
            }
        }
        Ok(())
    }

    /// Writes the merged jobs (one write) and moves their answers to the results; after a
    /// failure the log state is as before them and each of them hears the error.
    pub(super) fn flush(
        &mut self,
        db: &DB,
        health: &Health,
        state: &mut TreeState,
        opts: &WriteOptions,
    ) {
        if self.merged.is_empty() {
            return;
        }
        self.rep[8..BATCH_HEADER].copy_from_slice(&self.count.to_le_bytes());
        let batch = WriteBatch::from_data(&self.rep);
        self.write(db, health, state, opts, batch);
    }

    /// Writes `batch`, which holds the merged jobs, and answers them (see [`Group::flush`]).
    fn write(
        &mut self,
        db: &DB,
        health: &Health,
        state: &mut TreeState,
        opts: &WriteOptions,
        batch: WriteBatch,
    ) {
        let outcome = db.write_opt(batch, opts).map_err(StoreError::from);
        if let Err(e) = &outcome {
            *state = self
                .before
                .take()
                .expect("the state before the merged jobs");
            health.fail(e.clone());
        }
        for (reply, indexes, durable) in self.merged.drain(..) {
            match &outcome {
                Ok(()) => {
                    self.sync |= durable;
                    self.results.push((reply, Ok(indexes)));
                }
                Err(e) => self.results.push((reply, Err(e.clone()))),
            }
        }
        self.rep.truncate(BATCH_HEADER);
        self.count = 0;
        self.touched.clear();
        self.before = None;
    }
}
