//! Statistics counters on PostgreSQL: increments added with an upsert, buckets past the
//! retention deleted, last-pull times kept at their latest (statistics only: on the read
//! connection, outside the commit groups).

use std::collections::HashMap;

use super::PgStore;
use crate::store::StoreError;

pub(super) fn apply(
    store: &PgStore,
    counters: &HashMap<Vec<u8>, u64>,
    last_pulls: &HashMap<String, u64>,
    now_ms: u64,
) -> Result<(), StoreError> {
    use crate::stats::{HOUR, KEEP_HOURS, KEEP_MINUTES, MINUTE};
    let minute = (now_ms / 60_000) as u32;
    let hour = (now_ms / 3_600_000) as u32;
    store.read(|c| {
        let mut tx = c.transaction()?;
        let add = tx.prepare(
            "INSERT INTO lt_stats (res, bucket, metric, agency, n) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (res, bucket, metric, agency) DO UPDATE SET n = lt_stats.n + EXCLUDED.n",
        )?;
        for (k, n) in counters {
            if let Some((res, bucket, metric, agency)) = crate::stats::parse_key(k) {
                tx.execute(
                    &add,
                    &[&(res as i16), &(bucket as i32), &metric, &agency, &(*n as i64)],
                )?;
            }
        }
        for (agency, ms) in last_pulls {
            tx.execute(
                "INSERT INTO lt_last_pulls (agency, at_ms) VALUES ($1, $2) \
                 ON CONFLICT (agency) DO UPDATE SET at_ms = GREATEST(lt_last_pulls.at_ms, EXCLUDED.at_ms)",
                &[agency, &(*ms as i64)],
            )?;
        }
        for (res, cutoff) in [
            (MINUTE, minute.saturating_sub(KEEP_MINUTES)),
            (HOUR, hour.saturating_sub(KEEP_HOURS)),
        ] {
            tx.execute(
                "DELETE FROM lt_stats WHERE res = $1 AND bucket < $2",
                &[&(res as i16), &(cutoff as i32)],
            )?;
        }
        tx.commit()
    })
}
