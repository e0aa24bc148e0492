//! Group commit on PostgreSQL: one open transaction collects the changes of every caller
//! that arrives while the previous one commits, and one COMMIT (which waits for the
//! synchronous standby) makes them all durable.
//!
//! A caller takes the writer (a mutex over the one write connection), opens the transaction
//! if none is open — `BEGIN`, then the audit sequencer row `FOR UPDATE`, which orders every
//! writing transaction of every hub process on this database — stages its changes inside a
//! SAVEPOINT (a guard that fails rolls back only that caller's changes: `Conflict`), appends
//! its audit entries at the next indexes, and waits. The committer thread takes the writer
//! as soon as it is free, writes the new log size to the sequencer row and COMMITs; callers
//! queued behind it meanwhile form the next group. An error of the transaction or of its
//! COMMIT fails the whole group (its outcome is unknown to the callers: 503, and a retry is
//! deduplicated), and the connection is dropped and made again (after a failover, to the
//! new primary).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::Conn;

use super::stage::stage;
use super::{PgError, Target, connect, pg_err};
use crate::audit::AuditEvent;
use crate::audit::merkle::{Hash, completed_nodes, leaf_hash};
use crate::store::{Change, StoreError};

/// The write connection and the transaction open on it.
struct Open {
    client: Conn,
    /// A transaction is open (callers have staged into it).
    active: bool,
    /// The open transaction's number; callers wait for it to end.
    epoch: u64,
    /// The next audit index in the open transaction.
    audit_next: u64,
    /// Merkle nodes written in the open transaction (completed nodes need their left
    /// siblings, often written by the same group).
    nodes: HashMap<(u32, u64), Hash>,
    /// Agencies the open transaction queues items for: notified at COMMIT
    /// (`NOTIFY lt_wake`), so long polls in other hub processes answer at once.
    wake: std::collections::BTreeSet<String>,
}

/// How each group ended.
#[derive(Default)]
struct Ended {
    /// Every group up to this one has ended.
    upto: u64,
    /// The groups that failed, with why (kept until their callers have read it).
    failed: HashMap<u64, String>,
}

/// The write connection, and whether the committer has it (COMMIT in progress).
#[derive(Default)]
struct Slot {
    open: Option<Open>,
    committing: bool,
}

pub(super) struct Writer {
    target: Target,
    conn: Mutex<Slot>,
    /// Signalled when a transaction becomes active (the committer waits for it).
    work: Condvar,
    /// Signalled when a COMMIT returned (callers wait to stage into the next group).
    free: Condvar,
    /// How long a caller waits for its group's COMMIT (and for the writer) before it gives
    /// up with `Stalled`: the outcome is then unknown to it, and its retry is deduplicated.
    deadline: std::time::Duration,
    ended: Mutex<Ended>,
    /// Signalled when a group ended.
    done: Condvar,
    next_epoch: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
    /// Set by the connection's notice callback when PostgreSQL reports a commit that was
    /// not replicated ("committed locally, but might not have been replicated").
    unreplicated: Arc<AtomicBool>,
}

impl Writer {
    pub(super) fn new(target: Target, deadline: std::time::Duration) -> Arc<Writer> {
        Arc::new(Writer {
            target,
            conn: Mutex::new(Slot::default()),
            work: Condvar::new(),
            free: Condvar::new(),
            deadline,
            ended: Mutex::new(Ended::default()),
            done: Condvar::new(),
            next_epoch: std::sync::atomic::AtomicU64::new(1),
            stop: AtomicBool::new(false),
            unreplicated: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs the committer until [`Writer::stop`].
    pub(super) fn start(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let w = self.clone();
        std::thread::Builder::new()
            .name("pg-commit".into())
            .spawn(move || w.committer())
            .expect("spawn the committer")
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _guard = self.conn.lock().expect("writer lock");
        self.work.notify_all();
    }

    /// Closes the write connection (after [`Writer::stop`] and the committer's end): an
    /// open transaction is rolled back by the server.
    pub(super) fn disconnect(&self) {
        self.conn.lock().expect("writer lock").open.take();
    }

    /// Stages `changes` and `events` into the open group and waits for its COMMIT.
    pub(super) fn apply(
        &self,
        changes: &[Change<'_>],
        events: &[AuditEvent],
    ) -> Result<Vec<u64>, StoreError> {
        let until = std::time::Instant::now() + self.deadline;
        let (epoch, indexes) = {
            let mut guard = self.conn.lock().expect("writer lock");
            while guard.committing {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(StoreError::Stalled(self.deadline.as_secs()));
                }
                guard = self.free.wait_timeout(guard, left).expect("writer lock").0;
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(StoreError::Failed("the store is closed".into()));
            }
            let open = self.open(&mut guard.open)?;
            match self.stage_job(open, changes, events) {
                Ok(indexes) => {
                    let epoch = open.epoch;
                    self.work.notify_one();
                    (epoch, indexes)
                }
                Err(PgError::Conflict) => return Err(StoreError::Conflict),
                Err(PgError::Db(e)) => {
                    // The transaction is lost: its whole group fails.
                    let epoch = open.epoch;
                    guard.open = None;
                    self.end(epoch, Some(e.clone()));
                    return Err(StoreError::Failed(e));
                }
            }
        };
        self.wait(epoch, until)?;
        Ok(indexes)
    }

    /// The write connection with a transaction open on it (made if needed).
    fn open<'a>(&self, slot: &'a mut Option<Open>) -> Result<&'a mut Open, StoreError> {
        if slot.is_none() {
            let client = connect(&self.target, Some(self.unreplicated.clone()))
                .map_err(|e| StoreError::Failed(format!("PostgreSQL: {e}")))?;
            *slot = Some(Open {
                client: Conn::new(client),
                active: false,
                epoch: 0,
                audit_next: 0,
                nodes: HashMap::new(),
                wake: Default::default(),
            });
        }
        let open = slot.as_mut().expect("just set");
        if !open.active {
            let begin = (|| -> Result<u64, postgres::Error> {
                open.client.batch_execute("BEGIN")?;
                let row = open
                    .client
                    .query_one("SELECT v FROM lt_meta WHERE k = 'audit' FOR UPDATE", &[])?;
                Ok(row.get::<_, i64>(0) as u64)
            })();
            match begin {
                Ok(next) => {
                    open.audit_next = next;
                    open.nodes.clear();
                    open.wake.clear();
                    open.active = true;
                    open.epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    *slot = None;
                    return Err(StoreError::Failed(format!("PostgreSQL: {e}")));
                }
            }
        }
        Ok(slot.as_mut().expect("open"))
    }

    /// One caller's changes under a savepoint, then its audit entries.
    fn stage_job(
        &self,
        open: &mut Open,
        changes: &[Change<'_>],
        events: &[AuditEvent],
    ) -> Result<Vec<u64>, PgError> {
        let c = &mut open.client;
        c.batch_execute("SAVEPOINT job").map_err(pg_err)?;
        let accepted: Vec<u64> = changes
            .iter()
            .filter_map(|ch| match ch {
                Change::Accept { record, .. } => Some(record.seq),
                _ => None,
            })
            .collect();
        for ch in changes {
            match stage(c, ch, &accepted) {
                Ok(()) => {}
                Err(PgError::Conflict) => {
                    c.batch_execute("ROLLBACK TO SAVEPOINT job")
                        .map_err(pg_err)?;
                    return Err(PgError::Conflict);
                }
                Err(e) => return Err(e),
            }
        }
        c.batch_execute("RELEASE SAVEPOINT job").map_err(pg_err)?;
        for ch in changes {
            if let Change::Enqueue { agency, .. } = ch {
                open.wake.insert((*agency).to_owned());
            }
        }
        append(open, events)
    }

    /// Waits until group `epoch` ended (its error, if it failed), or until `until`.
    fn wait(&self, epoch: u64, until: std::time::Instant) -> Result<(), StoreError> {
        let mut ended = self.ended.lock().expect("ended lock");
        while ended.upto < epoch {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                // The COMMIT may still succeed: the answer is "unknown" (503), and the
                // client's retry finds the document if it did.
                return Err(StoreError::Stalled(self.deadline.as_secs()));
            }
            ended = self.done.wait_timeout(ended, left).expect("ended lock").0;
        }
        match ended.failed.get(&epoch) {
            Some(e) => Err(StoreError::Failed(e.clone())),
            None => Ok(()),
        }
    }

    /// Records how group `epoch` ended and wakes its callers.
    fn end(&self, epoch: u64, error: Option<String>) {
        let mut ended = self.ended.lock().expect("ended lock");
        if let Some(e) = error {
            ended.failed.insert(epoch, e);
        }
        ended.upto = ended.upto.max(epoch);
        // Old failures nobody waits for any more.
        let floor = ended.upto.saturating_sub(10_000);
        ended.failed.retain(|e, _| *e > floor);
        self.done.notify_all();
    }

    /// Commits each group as soon as the writer is free. The connection is taken out of the
    /// slot for the COMMIT, so callers waiting for the next group can give up at their
    /// deadline instead of queueing behind a COMMIT that waits for a lost standby.
    fn committer(&self) {
        loop {
            let mut guard = self.conn.lock().expect("writer lock");
            while !guard.open.as_ref().is_some_and(|o| o.active) {
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                guard = self.work.wait(guard).expect("writer lock");
            }
            let mut open = guard.open.take().expect("active");
            guard.committing = true;
            drop(guard);
            let epoch = open.epoch;
            self.unreplicated.store(false, Ordering::SeqCst);
            let result = commit(&mut open);
            let result = match result {
                Ok(()) if self.unreplicated.load(Ordering::SeqCst) => Err(
                    "the commit was not confirmed by the synchronous standby (committed \
                     locally only): its outcome is unknown"
                        .to_owned(),
                ),
                r => r,
            };
            let mut guard = self.conn.lock().expect("writer lock");
            guard.committing = false;
            match result {
                Ok(()) => {
                    open.active = false;
                    guard.open = Some(open);
                    self.end(epoch, None);
                }
                Err(e) => {
                    tracing::error!(error = %e, "PostgreSQL commit failed; reconnecting");
                    drop(open);
                    self.end(epoch, Some(e));
                }
            }
            self.free.notify_all();
        }
    }
}

/// The largest NOTIFY payload sent (PostgreSQL's limit is 8,000 bytes).
const NOTIFY_MAX: usize = 7_000;

/// Writes the new log size to the sequencer row, notifies the agencies the group queued
/// for (delivered at COMMIT, to every listening process), and commits.
fn commit(open: &mut Open) -> Result<(), String> {
    let size = open.audit_next as i64;
    open.client
        .execute("UPDATE lt_meta SET v = $1 WHERE k = 'audit'", &[&size])
        .map_err(|e| e.to_string())?;
    let mut payload = String::new();
    let wake = std::mem::take(&mut open.wake);
    for (k, agency) in wake.iter().enumerate() {
        if !payload.is_empty() {
            payload.push(',');
        }
        payload.push_str(agency);
        if payload.len() > NOTIFY_MAX || k + 1 == wake.len() {
            open.client
                .execute("SELECT pg_notify('lt_wake', $1)", &[&payload])
                .map_err(|e| e.to_string())?;
            payload.clear();
        }
    }
    open.client
        .batch_execute("COMMIT")
        .map_err(|e| e.to_string())
}

/// Appends `events` as log entries at the next indexes, with their Merkle nodes.
fn append(open: &mut Open, events: &[AuditEvent]) -> Result<Vec<u64>, PgError> {
    let mut indexes = Vec::with_capacity(events.len());
    for e in events {
        let index = open.audit_next;
        let line = e.encode(index);
        let leaf = leaf_hash(&line);
        let mut missing = None;
        let nodes = {
            let (client, known) = (&mut open.client, &open.nodes);
            completed_nodes(index, leaf, |level, i| {
                if let Some(h) = known.get(&(level, i)) {
                    return Some(*h);
                }
                match node(client, level, i) {
                    Ok(h) => h,
                    Err(e) => {
                        missing = Some(e);
                        None
                    }
                }
            })
        };
        if let Some(e) = missing {
            return Err(e);
        }
        let doc = e.document.map(|d| d as i64);
        open.client
            .execute(
                "INSERT INTO lt_audit (idx, line, doc) VALUES ($1, $2, $3)",
                &[&(index as i64), &line, &doc],
            )
            .map_err(pg_err)?;
        for (level, i, h) in nodes {
            open.client
                .execute(
                    "INSERT INTO lt_merkle (level, i, h) VALUES ($1, $2, $3)",
                    &[&(level as i32), &(i as i64), &h.as_slice()],
                )
                .map_err(pg_err)?;
            open.nodes.insert((level, i), h);
        }
        open.audit_next += 1;
        indexes.push(index);
    }
    Ok(indexes)
}

/// A stored Merkle node (within the open transaction).
fn node(client: &mut Conn, level: u32, i: u64) -> Result<Option<Hash>, PgError> {
    let row = client
        .query_opt(
            "SELECT h FROM lt_merkle WHERE level = $1 AND i = $2",
            &[&(level as i32), &(i as i64)],
        )
        .map_err(pg_err)?;
    Ok(row.and_then(|r| r.get::<_, Vec<u8>>(0).try_into().ok()))
}
