//! [`PgStore`]: the storage interface on PostgreSQL, for high availability with synchronous
//! streaming replication (docs/ha.md). It keeps the promises of [`Storage`] (the same
//! conformance suite runs on it): writes are one transaction per commit group, durable when
//! COMMIT returns (`synchronous_commit = on` with a synchronous standby confirms the
//! standby has it too); audit indexes come from one sequencer row locked by each writing
//! transaction, so they are dense and in commit order across hub processes (a SEQUENCE
//! would leave gaps on rollback); guards are conditional UPDATE/DELETE statements.

mod listen;
mod reads;
mod stage;
mod stats;
mod tls;
mod write;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use postgres::{Client, NoTls};

use super::StoreError;

/// Hub ids reserved per round trip (as the RocksDB store does: gaps after a crash are fine,
/// reuse never is).
const SEQ_BLOCK: i64 = 1000;
/// Read connections kept open.
const POOL: usize = 8;

/// Why a staged change did not go in.
#[derive(Debug)]
pub(super) enum PgError {
    /// A guard did not hold.
    Conflict,
    /// The database failed the statement (the transaction is lost).
    Db(String),
}

pub(super) fn pg_err(e: postgres::Error) -> PgError {
    PgError::Db(e.to_string())
}

fn store_err(e: postgres::Error) -> StoreError {
    StoreError::Failed(format!("PostgreSQL: {}", describe(&e)))
}

/// What went wrong, with the server's message or the underlying cause (`postgres::Error`
/// displays only "db error" for everything the server said).
pub(super) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Where the store connects: the URL for tokio-postgres and, when the URL asks for TLS,
/// the connector — both read once at open (certificate files included), not per connection.
#[derive(Clone)]
pub(super) struct Target {
    config: postgres::Config,
    tls: Option<tls::RustlsConnect>,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (url, tls) = tls::split(url)?;
        let config = url.parse().map_err(|e| describe(&e))?;
        Ok(Target { config, tls })
    }
}

/// A connection to `target`; with `unreplicated`, a notice saying a commit was not
/// replicated sets it.
pub(super) fn connect(
    target: &Target,
    unreplicated: Option<Arc<AtomicBool>>,
) -> Result<Client, String> {
    let mut config = target.config.clone();
    config.notice_callback(move |notice| {
        if notice.message().contains("might not have been replicated") {
            if let Some(flag) = &unreplicated {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            tracing::error!(
                notice = notice.message(),
                "PostgreSQL: commit not replicated"
            );
        } else {
            tracing::debug!(notice = notice.message(), "PostgreSQL notice");
        }
    });
    match target.tls.clone() {
        Some(tls) => config.connect(tls),
        None => config.connect(NoTls),
    }
    .map_err(|e| describe(&e))
}

fn connect_err(e: String) -> StoreError {
    StoreError::Failed(format!("PostgreSQL: {e}"))
}

/// Runs `f`, which blocks on PostgreSQL, from any thread: the `postgres` client drives its
/// own runtime, which may not be entered from a thread running async tasks (the hub calls
/// storage from its blocking pool, but start-up and shutdown call it from async code).
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The write connection with its prepared statements: each statement is parsed once per
/// connection, so a staged change costs one round trip, not two.
pub(super) struct Conn {
    client: Client,
    stmts: std::collections::HashMap<&'static str, postgres::Statement>,
}

type Params<'a> = &'a [&'a (dyn postgres::types::ToSql + Sync)];

impl Conn {
    pub(super) fn new(client: Client) -> Conn {
        Conn {
            client,
            stmts: std::collections::HashMap::new(),
        }
    }

    fn prepared(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.stmts.insert(sql, s.clone());
        Ok(s)
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        p: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.execute(&s, p)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        p: Params<'_>,
    ) -> Result<Option<postgres::Row>, postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.query_opt(&s, p)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &'static str,
        p: Params<'_>,
    ) -> Result<postgres::Row, postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.query_one(&s, p)
    }

    pub(super) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.client.batch_execute(sql)
    }
}

/// The storage interface on PostgreSQL.
pub struct PgStore {
    target: Target,
    writer: Arc<write::Writer>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pool: Mutex<Vec<Client>>,
    /// Reserved hub ids: (next, end).
    seq: Mutex<(u64, u64)>,
    /// The session holding the leader's advisory lock, when this process holds it.
    leader: Mutex<Option<Client>>,
    /// Stops the LISTEN thread.
    stopping: Arc<AtomicBool>,
}

impl PgStore {
    /// Connects to `url` (e.g. `postgresql://h1,h2/lienthong?target_session_attrs=read-write`),
    /// creates the schema if missing and starts the committer.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_with(url, std::time::Duration::from_secs(10))
    }

    /// [`PgStore::open`] with the deadline a write waits for its COMMIT (`[storage]
    /// sync_deadline_secs`) before it answers `Stalled` (503, outcome unknown).
    pub fn open_with(url: &str, deadline: std::time::Duration) -> Result<PgStore, StoreError> {
        let target = Target::parse(url).map_err(connect_err)?;
        let client = blocking(|| {
            let mut client = connect(&target, None).map_err(connect_err)?;
            client
                .batch_execute(include_str!("schema.sql"))
                .map_err(store_err)?;
            warn_unless_synchronous(&mut client);
            Ok::<_, StoreError>(client)
        })?;
        let writer = write::Writer::new(target.clone(), deadline);
        let committer = writer.start();
        Ok(PgStore {
            target,
            writer,
            committer: Mutex::new(Some(committer)),
            pool: Mutex::new(vec![client]),
            seq: Mutex::new((0, 0)),
            leader: Mutex::new(None),
            stopping: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Runs `f` on a read connection (made if none is free; dropped after an error, so a
    /// failover leaves no connection to the old primary behind).
    fn read<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let pooled = self.pool.lock().expect("pool lock").pop();
        let (client, out) = blocking(|| {
            let mut client = match pooled {
                Some(c) if !c.is_closed() => c,
                _ => connect(&self.target, None).map_err(connect_err)?,
            };
            let out = f(&mut client).map_err(store_err)?;
            Ok::<_, StoreError>((client, out))
        })?;
        let mut pool = self.pool.lock().expect("pool lock");
        if pool.len() < POOL {
            pool.push(client);
        } else {
            drop(pool);
            // Closing a connection blocks too.
            blocking(move || drop(client));
        }
        Ok(out)
    }

    fn next_seq_reserved(&self) -> Result<u64, StoreError> {
        let mut s = self.seq.lock().expect("seq lock");
        if s.0 >= s.1 {
            // Committed (synchronously) before any id of the block is used.
            let end = self.read(|c| {
                let row = c.query_one(
                    "UPDATE lt_meta SET v = v + $1 WHERE k = 'seq' RETURNING v",
                    &[&SEQ_BLOCK],
                )?;
                Ok(row.get::<_, i64>(0) as u64)
            })?;
            *s = (end - SEQ_BLOCK as u64, end);
        }
        let seq = s.0;
        s.0 += 1;
        Ok(seq)
    }

    fn close(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        blocking(|| {
            self.leader.lock().expect("leader lock").take();
            self.writer.stop();
            if let Some(t) = self.committer.lock().expect("committer lock").take() {
                let _ = t.join();
            }
            self.writer.disconnect();
            self.pool.lock().expect("pool lock").clear();
        });
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Says so in the log when commits would not wait for a standby (a single PostgreSQL, as in
/// development): the hub still works, but a machine's loss can lose acknowledged documents.
fn warn_unless_synchronous(client: &mut Client) {
    let show = |c: &mut Client, what: &str| -> String {
        c.query_one(&format!("SHOW {what}"), &[])
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_default()
    };
    let commit = show(client, "synchronous_commit");
    let standbys = show(client, "synchronous_standby_names");
    if standbys.is_empty() || !matches!(commit.as_str(), "on" | "remote_apply") {
        tracing::warn!(
            synchronous_commit = commit,
            synchronous_standby_names = standbys,
            "PostgreSQL does not wait for a synchronous standby: an acknowledged document \
             lives on one machine only (docs/ha.md)"
        );
    }
}
