//! What several hub processes on one PostgreSQL database share beyond the tables: wake-ups
//! of long polls (LISTEN/NOTIFY on `lt_wake`, sent by the committer at COMMIT) and one
//! leader for once-per-hub work (a session-level advisory lock: held while its connection
//! lives, so a process that dies gives it up and another takes it at its next try).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::{PgStore, Target, blocking, connect};

/// The advisory lock key of the leader ("lienthong" in ASCII, truncated).
const LEADER_KEY: i64 = 0x6c69_656e_7468_6f6e;

impl PgStore {
    /// Whether this process holds (or now takes) the leader's advisory lock.
    pub(super) fn try_lead(&self) -> bool {
        blocking(|| {
            let mut held = self.leader.lock().expect("leader lock");
            if held.as_ref().is_some_and(|c| !c.is_closed()) {
                // Still connected: the lock is still ours (a dropped session frees it).
                let alive = held
                    .as_mut()
                    .map(|c| c.simple_query("SELECT 1").is_ok())
                    .unwrap_or(false);
                if alive {
                    return true;
                }
            }
            *held = None;
            let Ok(mut client) = connect(&self.target, None) else {
                return false;
            };
            let got = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_KEY])
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
            if got {
                *held = Some(client);
            }
            got
        })
    }

    /// Starts the thread that LISTENs on `lt_wake` and calls `wake` for each agency named;
    /// it reconnects after errors (a failover) and ends when the store closes.
    pub(super) fn listen(&self, wake: Arc<dyn Fn(&str) + Send + Sync>) {
        let (target, stopping) = (self.target.clone(), self.stopping.clone());
        let spawned = std::thread::Builder::new()
            .name("pg-listen".into())
            .spawn(move || listen_loop(&target, &stopping, wake.as_ref()));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the PostgreSQL listener");
        }
    }
}

fn listen_loop(target: &Target, stopping: &AtomicBool, wake: &(dyn Fn(&str) + Send + Sync)) {
    while !stopping.load(Ordering::SeqCst) {
        let mut client = match connect(target, None) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "PostgreSQL listener: reconnecting");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = client.batch_execute("LISTEN lt_wake") {
            tracing::debug!(error = %e, "PostgreSQL listener: LISTEN failed");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        loop {
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let mut notifications = client.notifications();
            let mut it = notifications.timeout_iter(Duration::from_secs(1));
            match it.next() {
                Ok(Some(n)) => {
                    for agency in n.payload().split(',') {
                        wake(agency);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "PostgreSQL listener: connection lost");
                    break;
                }
            }
        }
    }
}
