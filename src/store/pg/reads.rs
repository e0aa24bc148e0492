//! [`Storage`] for [`PgStore`]: the reads (each one statement on a pooled connection, seeing
//! committed data only) and the delegation of writes to the group committer.

use std::collections::HashMap;

use super::PgStore;
use super::stage::{kind_code, kind_of};
use crate::audit::AuditEvent;
use crate::audit::merkle::{Hash, NodeSource};
use crate::store::{
    Change, DocRecord, Due, DueKind, PushDue, QueueEntry, Storage, StoreError, decode_doc,
};

fn i(v: u64) -> i64 {
    v as i64
}

fn u(v: i64) -> u64 {
    v as u64
}

/// Rows read in one page of a queue walk.
const PAGE: i64 = 500;

impl NodeSource for PgStore {
    type Error = StoreError;
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let row = self.read(|c| {
            c.query_opt(
                "SELECT h FROM lt_merkle WHERE level = $1 AND i = $2",
                &[&(level as i32), &(index as i64)],
            )
        })?;
        row.and_then(|r| r.get::<_, Vec<u8>>(0).try_into().ok())
            .ok_or_else(|| StoreError::Corrupt {
                key: format!("merkle/{level}/{index}"),
                why: "missing Merkle node".into(),
            })
    }
}

impl Storage for PgStore {
    fn apply(
        &self,
        changes: &[Change<'_>],
        events: Vec<AuditEvent>,
        _durable: bool,
    ) -> Result<Vec<u64>, StoreError> {
        // Every commit waits for the standby: PostgreSQL has no cheaper unsynced write
        // that would keep the log dense across a failover.
        super::blocking(|| self.writer.apply(changes, &events))
    }
    fn next_seq(&self) -> Result<u64, StoreError> {
        self.next_seq_reserved()
    }
    fn barrier(&self) -> Result<(), StoreError> {
        // Every apply returned after its COMMIT: nothing written is pending.
        Ok(())
    }
    fn health(&self) -> Result<(), StoreError> {
        self.read(|c| c.simple_query("SELECT 1").map(|_| ()))
    }
    fn dedup(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        self.read(|c| {
            let row = c.query_opt("SELECT seq FROM lt_dedup WHERE k = $1", &[&key])?;
            Ok(row.map(|r| u(r.get(0))))
        })
    }
    fn doc(&self, seq: u64) -> Result<Option<DocRecord>, StoreError> {
        Ok(self.docs(&[seq])?.pop())
    }
    fn docs(&self, seqs: &[u64]) -> Result<Vec<DocRecord>, StoreError> {
        let keys: Vec<i64> = seqs.iter().map(|s| i(*s)).collect();
        let rows = self.read(|c| {
            c.query(
                "SELECT seq, record FROM lt_docs WHERE seq = ANY($1)",
                &[&keys],
            )
        })?;
        let mut by_seq: HashMap<u64, DocRecord> = HashMap::with_capacity(rows.len());
        for r in rows {
            let seq = u(r.get(0));
            by_seq.insert(seq, decode_doc(seq, r.get::<_, &[u8]>(1))?);
        }
        // In the order asked, as the RocksDB store answers.
        Ok(seqs.iter().filter_map(|s| by_seq.remove(s)).collect())
    }
    fn docs_from(&self, seq: u64, limit: usize) -> Result<Vec<DocRecord>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT seq, record FROM lt_docs WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &[&i(seq), &(limit.min(i64::MAX as usize) as i64)],
            )
        })?;
        rows.iter()
            .map(|r| decode_doc(u(r.get(0)), r.get::<_, &[u8]>(1)))
            .collect()
    }
    fn has_body(&self, seq: u64) -> Result<bool, StoreError> {
        self.read(|c| {
            let row = c.query_opt("SELECT 1 FROM lt_bodies WHERE seq = $1", &[&i(seq)])?;
            Ok(row.is_some())
        })
    }
    fn body(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            let row = c.query_opt("SELECT body FROM lt_bodies WHERE seq = $1", &[&i(seq)])?;
            Ok(row.map(|r| r.get(0)))
        })
    }
    fn queue_entry(&self, agency: &str, seq: u64) -> Result<Option<QueueEntry>, StoreError> {
        self.read(|c| {
            let row = c.query_opt(
                "SELECT lease_until, deliveries, fetched FROM lt_queue \
                 WHERE agency = $1 AND seq = $2",
                &[&agency, &i(seq)],
            )?;
            Ok(row.map(|r| entry(&r, 0)))
        })
    }
    fn scan_queue(
        &self,
        agency: &str,
        f: &mut dyn FnMut(u64, QueueEntry) -> bool,
    ) -> Result<(), StoreError> {
        let mut after = -1i64;
        loop {
            let rows = self.read(|c| {
                c.query(
                    "SELECT seq, lease_until, deliveries, fetched FROM lt_queue \
                     WHERE agency = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&agency, &after, &PAGE],
                )
            })?;
            for r in &rows {
                after = r.get(0);
                if !f(u(after), entry(r, 1)) {
                    return Ok(());
                }
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }
    fn acked_at(&self, seq: u64, agency: &str) -> Result<Option<u64>, StoreError> {
        self.read(|c| {
            let row = c.query_opt(
                "SELECT at_ms FROM lt_delivery WHERE seq = $1 AND agency = $2",
                &[&i(seq), &agency],
            )?;
            Ok(row.map(|r| u(r.get(0))))
        })
    }
    fn queue_depths(&self) -> Result<HashMap<String, u64>, StoreError> {
        let rows =
            self.read(|c| c.query("SELECT agency, count(*) FROM lt_queue GROUP BY agency", &[]))?;
        Ok(rows.iter().map(|r| (r.get(0), u(r.get(1)))).collect())
    }
    fn oldest_pending(&self, agency: &str) -> Result<Option<u64>, StoreError> {
        self.read(|c| {
            let row = c.query_one(
                "SELECT min(seq) FROM lt_queue WHERE agency = $1",
                &[&agency],
            )?;
            Ok(row.get::<_, Option<i64>>(0).map(u))
        })
    }
    fn sent(&self, sender: &str, from_seq: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT seq FROM lt_sent WHERE sender = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                &[
                    &sender,
                    &i(from_seq),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
        })?;
        Ok(rows.iter().map(|r| u(r.get(0))).collect())
    }
    fn apply_stats(
        &self,
        counters: &HashMap<Vec<u8>, u64>,
        last_pulls: &HashMap<String, u64>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        super::stats::apply(self, counters, last_pulls, now_ms)
    }
    fn scan_stats(
        &self,
        res: u8,
        from_bucket: u32,
        f: &mut dyn FnMut(u32, &str, &str, u64),
    ) -> Result<(), StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT bucket, metric, agency, n FROM lt_stats \
                 WHERE res = $1 AND bucket >= $2 ORDER BY bucket, metric, agency",
                &[&(res as i16), &(from_bucket as i32)],
            )
        })?;
        for r in &rows {
            f(r.get::<_, i32>(0) as u32, r.get(1), r.get(2), u(r.get(3)));
        }
        Ok(())
    }
    fn last_pulls(&self) -> Result<HashMap<String, u64>, StoreError> {
        let rows = self.read(|c| c.query("SELECT agency, at_ms FROM lt_last_pulls", &[]))?;
        Ok(rows.iter().map(|r| (r.get(0), u(r.get(1)))).collect())
    }
    fn size_figures(&self) -> (u64, u64) {
        let size = self.read(|c| {
            let row = c.query_one("SELECT pg_database_size(current_database())", &[])?;
            Ok(u(row.get(0)))
        });
        (size.unwrap_or(0), 0)
    }
    fn audit_size(&self) -> u64 {
        // The sequencer row as committed: readers see only committed (replicated) entries.
        self.read(|c| {
            let row = c.query_one("SELECT v FROM lt_meta WHERE k = 'audit'", &[])?;
            Ok(u(row.get(0)))
        })
        .unwrap_or(0)
    }
    fn audit_entries(
        &self,
        from: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let end = end.min(self.audit_size());
        let rows = self.read(|c| {
            c.query(
                "SELECT idx, line FROM lt_audit WHERE idx >= $1 AND idx < $2 ORDER BY idx LIMIT $3",
                &[&i(from), &i(end), &(limit.min(i64::MAX as usize) as i64)],
            )
        })?;
        Ok(rows.iter().map(|r| (u(r.get(0)), r.get(1))).collect())
    }
    fn document_audit(&self, seq: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT idx FROM lt_audit WHERE doc = $1 ORDER BY idx LIMIT $2",
                &[&i(seq), &(limit.min(i64::MAX as usize) as i64)],
            )
        })?;
        Ok(rows.iter().map(|r| u(r.get(0))).collect())
    }
    fn put_head(&self, size: u64, jws: &str) -> Result<(), StoreError> {
        self.read(|c| {
            c.execute(
                "INSERT INTO lt_heads (size, jws) VALUES ($1, $2) \
                 ON CONFLICT (size) DO UPDATE SET jws = EXCLUDED.jws",
                &[&i(size), &jws],
            )
            .map(|_| ())
        })
    }
    fn latest_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.read(|c| {
            let row = c.query_opt(
                "SELECT size, jws FROM lt_heads ORDER BY size DESC LIMIT 1",
                &[],
            )?;
            Ok(row.map(|r| (u(r.get(0)), r.get(1))))
        })
    }
    fn put_receipt(&self, seq: u64, recipient: &str, jws: &str) -> Result<(), StoreError> {
        self.read(|c| {
            c.execute(
                "INSERT INTO lt_receipts (seq, recipient, jws) VALUES ($1, $2, $3) \
                 ON CONFLICT (seq, recipient) DO UPDATE SET jws = EXCLUDED.jws",
                &[&i(seq), &recipient, &jws],
            )
            .map(|_| ())
        })
    }
    fn receipt(&self, seq: u64, recipient: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            let row = c.query_opt(
                "SELECT jws FROM lt_receipts WHERE seq = $1 AND recipient = $2",
                &[&i(seq), &recipient],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }
    fn due(&self, kind: DueKind, before_ms: u64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT kind, at_ms, seq, agency FROM lt_due WHERE kind = $1 AND at_ms < $2 \
                 ORDER BY at_ms, seq, agency LIMIT $3",
                &[
                    &kind_code(kind),
                    &i(before_ms.min(i64::MAX as u64)),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Due {
                    kind: kind_of(r.get(0))?,
                    at_ms: u(r.get(1)),
                    seq: u(r.get(2)),
                    agency: r.get(3),
                })
            })
            .collect())
    }
    fn pushes(&self, agency: &str, from_ms: u64, limit: usize) -> Result<Vec<PushDue>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT at_ms, seq, attempts FROM lt_pushes WHERE agency = $1 AND at_ms >= $2 \
                 ORDER BY at_ms, seq LIMIT $3",
                &[&agency, &i(from_ms), &(limit.min(i64::MAX as usize) as i64)],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| PushDue {
                at_ms: u(r.get(0)),
                seq: u(r.get(1)),
                attempts: r.get::<_, i32>(2) as u32,
            })
            .collect())
    }
    fn pull_only(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.read(|c| c.query("SELECT agency, url FROM lt_pull_only", &[]))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
    fn checkpoint(&self, _dir: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Failed(
            "on PostgreSQL, back up with pg_basebackup or the cluster's own tooling (docs/ha.md)"
                .into(),
        ))
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.close();
        Ok(())
    }
    fn shared(&self) -> bool {
        true
    }
    fn lead(&self) -> bool {
        self.try_lead()
    }
    fn subscribe(&self, wake: std::sync::Arc<dyn Fn(&str) + Send + Sync>) {
        self.listen(wake);
    }
}

/// A queue entry from columns `at..at+3` (lease_until, deliveries, fetched).
fn entry(r: &postgres::Row, at: usize) -> QueueEntry {
    QueueEntry {
        lease_until_ms: u(r.get(at)),
        deliveries: r.get::<_, i32>(at + 1) as u32,
        fetched: r.get(at + 2),
    }
}
