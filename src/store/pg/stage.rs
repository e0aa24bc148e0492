//! Each [`Change`] as SQL inside the group's transaction, with its guard: a guard that does
//! not hold is [`PgError::Conflict`] (the caller's savepoint is rolled back). Under READ
//! COMMITTED a guarded UPDATE or DELETE that meets a row another hub process is changing
//! waits for that transaction and judges the row as it then is, so the compare-and-set holds
//! across processes too.

use super::Conn as Client;

use super::{PgError, pg_err};
use crate::store::{Change, DueKind, QueueEntry};

pub(super) fn kind_code(kind: DueKind) -> i16 {
    match kind {
        DueKind::Expiry => 1,
        DueKind::Retention => 2,
    }
}

/// Rows changed by `sql`: 0 means the guard did not hold.
fn exec(
    c: &mut Client,
    sql: &'static str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<u64, PgError> {
    c.execute(sql, params).map_err(pg_err)
}

fn must(n: u64) -> Result<(), PgError> {
    if n == 0 {
        Err(PgError::Conflict)
    } else {
        Ok(())
    }
}

fn i(v: u64) -> i64 {
    v as i64
}

/// Stages one change; `accepted` are the documents this group's caller creates (their queue
/// entries cannot exist yet).
pub(super) fn stage(c: &mut Client, ch: &Change<'_>, accepted: &[u64]) -> Result<(), PgError> {
    match *ch {
        Change::Accept {
            record,
            body,
            dedup_key,
        } => {
            let seq = i(record.seq);
            must(exec(
                c,
                "INSERT INTO lt_dedup (k, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&dedup_key, &seq],
            )?)?;
            let json = serde_json::to_vec(record).expect("record serializes");
            exec(
                c,
                "INSERT INTO lt_docs (seq, record) VALUES ($1, $2)",
                &[&seq, &json],
            )?;
            exec(
                c,
                "INSERT INTO lt_bodies (seq, body) VALUES ($1, $2)",
                &[&seq, &body],
            )?;
            exec(
                c,
                "INSERT INTO lt_sent (sender, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&record.from, &seq],
            )?;
            due_put(c, DueKind::Retention, record.received_at_ms, record.seq, "")?;
        }
        Change::Enqueue {
            agency,
            seq,
            accepted_ms,
        } => {
            if !accepted.contains(&seq) {
                let delivered = c
                    .query_opt(
                        "SELECT 1 FROM lt_delivery WHERE seq = $1 AND agency = $2",
                        &[&i(seq), &agency],
                    )
                    .map_err(pg_err)?;
                if delivered.is_some() {
                    return Err(PgError::Conflict);
                }
            }
            must(exec(
                c,
                "INSERT INTO lt_queue (agency, seq, lease_until, deliveries, fetched) \
                 VALUES ($1, $2, 0, 0, false) ON CONFLICT DO NOTHING",
                &[&agency, &i(seq)],
            )?)?;
            due_put(c, DueKind::Expiry, accepted_ms, seq, agency)?;
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
        } => must(swap(c, agency, seq, was, entry)?)?,
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
            must(exec(
                c,
                "DELETE FROM lt_queue WHERE agency = $1 AND seq = $2",
                &[&agency, &i(seq)],
            )?)?;
            due_delete(c, DueKind::Expiry, accepted_ms, seq, agency)?;
            if let Change::Ack { at_ms, .. } = *ch {
                exec(
                    c,
                    "INSERT INTO lt_delivery (seq, agency, at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (seq, agency) DO UPDATE SET at_ms = EXCLUDED.at_ms",
                    &[&i(seq), &agency, &i(at_ms)],
                )?;
            }
        }
        _ => stage_document(c, ch)?,
    }
    Ok(())
}

/// Changes of records, bodies, the due and push indexes.
fn stage_document(c: &mut Client, ch: &Change<'_>) -> Result<(), PgError> {
    match *ch {
        Change::Rewrite { record } => {
            let json = serde_json::to_vec(record).expect("record serializes");
            exec(
                c,
                "UPDATE lt_docs SET record = $2 WHERE seq = $1",
                &[&i(record.seq), &json],
            )?;
        }
        Change::Purge { seq, accepted_ms } => {
            exec(c, "DELETE FROM lt_bodies WHERE seq = $1", &[&i(seq)])?;
            due_delete(c, DueKind::Retention, accepted_ms, seq, "")?;
        }
        Change::Reschedule { due, to_ms } => {
            if to_ms.is_none() && due.kind == DueKind::Expiry {
                // Only an expiry whose item is gone: never one a re-enqueue restored.
                let queued = c
                    .query_opt(
                        "SELECT 1 FROM lt_queue WHERE agency = $1 AND seq = $2",
                        &[&due.agency, &i(due.seq)],
                    )
                    .map_err(pg_err)?;
                if queued.is_some() {
                    return Err(PgError::Conflict);
                }
            }
            due_delete(c, due.kind, due.at_ms, due.seq, &due.agency)?;
            if let Some(at) = to_ms {
                due_put(c, due.kind, at, due.seq, &due.agency)?;
            }
        }
        Change::Push {
            agency,
            seq,
            was,
            next,
        } => {
            if let Some(at) = was {
                must(exec(
                    c,
                    "DELETE FROM lt_pushes WHERE agency = $1 AND at_ms = $2 AND seq = $3",
                    &[&agency, &i(at), &i(seq)],
                )?)?;
            }
            if let Some((at, attempts)) = next {
                exec(
                    c,
                    "INSERT INTO lt_pushes (agency, at_ms, seq, attempts) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (agency, at_ms, seq) DO UPDATE SET attempts = EXCLUDED.attempts",
                    &[&agency, &i(at), &i(seq), &(attempts as i32)],
                )?;
            }
        }
        Change::PullOnly { agency, url } => match url {
            Some(url) => {
                exec(
                    c,
                    "INSERT INTO lt_pull_only (agency, url) VALUES ($1, $2) \
                     ON CONFLICT (agency) DO UPDATE SET url = EXCLUDED.url",
                    &[&agency, &url],
                )?;
            }
            None => {
                exec(c, "DELETE FROM lt_pull_only WHERE agency = $1", &[&agency])?;
            }
        },
        _ => unreachable!("queue changes are staged by stage"),
    }
    Ok(())
}

/// Replaces a queue entry that still holds `was` by `entry`; rows changed.
fn swap(
    c: &mut Client,
    agency: &str,
    seq: u64,
    was: QueueEntry,
    entry: QueueEntry,
) -> Result<u64, PgError> {
    exec(
        c,
        "UPDATE lt_queue SET lease_until = $3, deliveries = $4, fetched = $5 \
         WHERE agency = $1 AND seq = $2 AND lease_until = $6 AND deliveries = $7 AND fetched = $8",
        &[
            &agency,
            &i(seq),
            &i(entry.lease_until_ms),
            &(entry.deliveries as i32),
            &entry.fetched,
            &i(was.lease_until_ms),
            &(was.deliveries as i32),
            &was.fetched,
        ],
    )
}

fn due_put(c: &mut Client, kind: DueKind, at: u64, seq: u64, agency: &str) -> Result<(), PgError> {
    exec(
        c,
        "INSERT INTO lt_due (kind, at_ms, seq, agency) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
        &[&kind_code(kind), &i(at), &i(seq), &agency],
    )?;
    Ok(())
}

fn due_delete(
    c: &mut Client,
    kind: DueKind,
    at: u64,
    seq: u64,
    agency: &str,
) -> Result<(), PgError> {
    exec(
        c,
        "DELETE FROM lt_due WHERE kind = $1 AND at_ms = $2 AND seq = $3 AND agency = $4",
        &[&kind_code(kind), &i(at), &i(seq), &agency],
    )?;
    Ok(())
}

pub(super) fn kind_of(code: i16) -> Option<DueKind> {
    match code {
        1 => Some(DueKind::Expiry),
        2 => Some(DueKind::Retention),
        _ => None,
    }
}
