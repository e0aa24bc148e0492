//! Persisted statistics counters (`stats` column family, see [`crate::stats`]): merged
//! increments and last-pull times, written unsynced (statistics only) and read by reports.

use std::collections::HashMap;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::{CF_STATS, Store, StoreError};

fn last_pull_key(agency: &str) -> Vec<u8> {
    let mut k = vec![b'p'];
    k.extend_from_slice(agency.as_bytes());
    k
}

impl Store {
    /// Merges counter increments and records last-pull times (not synced: statistics only),
    /// dropping buckets older than the retention.
    pub fn apply_stats(
        &self,
        counters: &HashMap<Vec<u8>, u64>,
        last_pulls: &HashMap<String, u64>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        use crate::stats::{HOUR, KEEP_HOURS, KEEP_MINUTES, MINUTE};
        let cf = self.cf(CF_STATS);
        let mut batch = WriteBatch::default();
        for (k, n) in counters {
            batch.merge_cf(cf, k, n.to_le_bytes());
        }
        for (agency, ms) in last_pulls {
            batch.put_cf(cf, last_pull_key(agency), ms.to_be_bytes());
        }
        let minute = (now_ms / 60_000) as u32;
        let hour = (now_ms / 3_600_000) as u32;
        for (res, cutoff) in [
            (MINUTE, minute.saturating_sub(KEEP_MINUTES)),
            (HOUR, hour.saturating_sub(KEEP_HOURS)),
        ] {
            let mut to = vec![res];
            to.extend_from_slice(&cutoff.to_be_bytes());
            batch.delete_range_cf(cf, vec![res], to);
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Calls `f(bucket, metric, agency, count)` for every counter of resolution `res` in
    /// buckets `from..`.
    pub fn scan_stats(
        &self,
        res: u8,
        from_bucket: u32,
        mut f: impl FnMut(u32, &str, &str, u64),
    ) -> Result<(), StoreError> {
        let mut start = vec![res];
        start.extend_from_slice(&from_bucket.to_be_bytes());
        let it = self.db.iterator_cf(
            self.cf(CF_STATS),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if k.first() != Some(&res) {
                break;
            }
            if let Some((_, bucket, metric, agency)) = crate::stats::parse_key(&k) {
                let n = v.as_ref().try_into().map(u64::from_le_bytes).unwrap_or(0);
                f(bucket, metric, agency, n);
            }
        }
        Ok(())
    }

    /// Last time each agency listed its inbox (ms), as last flushed.
    pub fn last_pulls(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut out = HashMap::new();
        let it = self.db.iterator_cf(
            self.cf(CF_STATS),
            IteratorMode::From(b"p", Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if k.first() != Some(&b'p') {
                break;
            }
            if let Ok(b) = v.as_ref().try_into() {
                out.insert(
                    String::from_utf8_lossy(&k[1..]).into_owned(),
                    u64::from_be_bytes(b),
                );
            }
        }
        Ok(out)
    }
}
