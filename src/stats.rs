//! Rate counters behind `GET /v1/stats`: per-minute and per-hour buckets, persisted in RocksDB.
//!
//! Counting happens in memory on the hot path (a hash-map add under a mutex) and is flushed to
//! the `stats` column family every few seconds and on shutdown as RocksDB merge operands, so a
//! restart loses nothing and a crash at most the last flush interval of *statistics* (never a
//! document). Minute buckets cover the 1m/1h/24h windows, hour buckets the 30d window.

use std::collections::HashMap;
use std::sync::Mutex;

/// The agency key of hub-wide counters.
pub const HUB: &str = "";

/// Bucket resolutions.
pub const MINUTE: u8 = b'm';
pub const HOUR: u8 = b'h';

/// How long buckets are kept: a little over the longest window that reads them.
pub const KEEP_MINUTES: u32 = 25 * 60;
pub const KEEP_HOURS: u32 = 31 * 24;

/// Encodes a counter key: resolution, bucket (big-endian, so time-ordered), metric, agency.
pub fn key(res: u8, bucket: u32, metric: &str, agency: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + metric.len() + agency.len());
    write_key(&mut k, res, bucket, metric, agency);
    k
}

fn write_key(k: &mut Vec<u8>, res: u8, bucket: u32, metric: &str, agency: &str) {
    k.clear();
    k.push(res);
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(metric.as_bytes());
    k.push(0);
    k.extend_from_slice(agency.as_bytes());
}

/// Decodes a counter key into (resolution, bucket, metric, agency).
pub fn parse_key(k: &[u8]) -> Option<(u8, u32, &str, &str)> {
    let res = *k.first()?;
    let bucket = u32::from_be_bytes(k.get(1..5)?.try_into().ok()?);
    let rest = std::str::from_utf8(k.get(5..)?).ok()?;
    let (metric, agency) = rest.split_once('\0')?;
    Some((res, bucket, metric, agency))
}

/// The RocksDB merge operator: counters are little-endian u64 sums.
pub fn merge_add(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let read = |b: &[u8]| b.try_into().map(u64::from_le_bytes).unwrap_or(0);
    let mut total = existing.map_or(0, read);
    for op in operands {
        total = total.wrapping_add(read(op));
    }
    Some(total.to_le_bytes().to_vec())
}

/// Holds one unit of a Prometheus gauge while it lives (requests in some state right now).
pub struct GaugeGuard(&'static str);

impl GaugeGuard {
    pub fn new(gauge: &'static str) -> GaugeGuard {
        metrics::gauge!(gauge).increment(1.0);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// Counts not yet flushed.
#[derive(Default)]
pub struct Counters {
    pending: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Counters {
    /// Adds `n` to `metric` for `agency` and hub-wide, at time `now_ms`.
    pub fn add(&self, now_ms: u64, metric: &str, agency: &str, n: u64) {
        self.add_each(now_ms, metric, std::iter::once(agency), n);
    }

    /// Adds `n` to `metric` for each of `agencies`, and `n` per agency hub-wide, under one
    /// lock. Keys are built in one reused buffer, so an existing counter costs no allocation:
    /// a fan-out to 519 agencies stays cheap.
    pub fn add_each<'a>(
        &self,
        now_ms: u64,
        metric: &str,
        agencies: impl IntoIterator<Item = &'a str>,
        n: u64,
    ) {
        let buckets = [
            (MINUTE, (now_ms / 60_000) as u32),
            (HOUR, (now_ms / 3_600_000) as u32),
        ];
        let mut p = self.pending.lock().expect("counters lock poisoned");
        let mut buf = Vec::with_capacity(64);
        let mut bump = |buf: &Vec<u8>, by: u64| match p.get_mut(buf.as_slice()) {
            Some(v) => *v += by,
            None => {
                p.insert(buf.clone(), by);
            }
        };
        let mut total = 0;
        for agency in agencies {
            total += n;
            if agency == HUB {
                continue;
            }
            for (res, bucket) in buckets {
                write_key(&mut buf, res, bucket, metric, agency);
                bump(&buf, n);
            }
        }
        for (res, bucket) in buckets {
            write_key(&mut buf, res, bucket, metric, HUB);
            bump(&buf, total);
        }
    }

    /// Adds to an already-encoded key (to put back a batch that failed to flush).
    pub fn add_raw(&self, key: Vec<u8>, n: u64) {
        *self
            .pending
            .lock()
            .expect("counters lock poisoned")
            .entry(key)
            .or_default() += n;
    }

    /// A copy of what is counted but not yet flushed (for reports, which write nothing).
    pub fn snapshot(&self) -> Vec<(Vec<u8>, u64)> {
        let p = self.pending.lock().expect("counters lock poisoned");
        p.iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    /// Takes everything counted since the last call.
    pub fn drain(&self) -> HashMap<Vec<u8>, u64> {
        std::mem::take(&mut *self.pending.lock().expect("counters lock poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_time() {
        let k = key(MINUTE, 7, "accepted", "000.00.01.H13");
        assert_eq!(
            parse_key(&k),
            Some((MINUTE, 7, "accepted", "000.00.01.H13"))
        );
        assert!(key(MINUTE, 7, "z", "") < key(MINUTE, 8, "a", ""));
        let c = Counters::default();
        c.add(120_000, "accepted", "A", 2);
        c.add(120_001, "accepted", "A", 1);
        let d = c.drain();
        assert_eq!(d[&key(MINUTE, 2, "accepted", "A")], 3);
        assert_eq!(d[&key(MINUTE, 2, "accepted", HUB)], 3);
        assert_eq!(d.len(), 4);
        assert!(c.drain().is_empty());
        c.add_each(120_000, "received", ["A", "B"], 1);
        let d = c.drain();
        assert_eq!(d[&key(HOUR, 0, "received", "B")], 1);
        assert_eq!(d[&key(MINUTE, 2, "received", HUB)], 2);
        assert_eq!(d.len(), 6);
    }
}
