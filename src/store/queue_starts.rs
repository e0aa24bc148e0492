//! Where each agency's queue starts: scans skip the deleted entries below it.
//!
//! A queue is consumed from its head, so acked entries pile up as RocksDB tombstones in front
//! of the live ones until compaction drops them. A scan from the queue's first possible key
//! steps over every one of them, and an agency draining thousands of items pays for that on
//! each listing (listing took 7.7 % of the hub's CPU in `bench --mode pull`, 4.0 % with this). This remembers, per
//! agency, the first key the last scan found: nothing below it existed then, and only a new
//! queue entry can appear below it later — every put into the queue lowers the head once it
//! is written.
//!
//! A scan that raced with such a put must not raise the head past it: each put also bumps
//! the agency's version, and a scan records its head only if the version it started with
//! is still current; a scan that recorded its head before the put's lowering is corrected
//! by it. (A scan in the instant between the write and the lowering may miss the new entry;
//! the next one sees it, and waiting listeners are woken only after the lowering.) The map
//! is memory only; after a restart the first scan starts from the beginning.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(super) struct QueueStarts {
    map: Mutex<HashMap<String, Head>>,
}

#[derive(Clone, Copy)]
struct Head {
    /// No queue entry of the agency below this sequence number exists.
    seq: u64,
    version: u64,
}

/// What a scan starts from: the sequence number to seek to and the version to check.
#[derive(Clone, Copy)]
pub(super) struct Start {
    pub seq: u64,
    version: Option<u64>,
}

impl QueueStarts {
    /// Called after every put of `seq` into `agency`'s queue has been written.
    pub fn lower(&self, agency: &str, seq: u64) {
        let mut map = self.map.lock().expect("heads lock poisoned");
        match map.get_mut(agency) {
            Some(h) => {
                h.seq = h.seq.min(seq);
                h.version += 1;
            }
            // Not scanned yet: a head of 0 (scan everything) whose version tells a scan
            // running now that it raced with this put.
            None => {
                map.insert(agency.to_owned(), Head { seq: 0, version: 1 });
            }
        }
    }

    /// Where a scan of `agency`'s queue may start.
    pub fn start(&self, agency: &str) -> Start {
        let map = self.map.lock().expect("heads lock poisoned");
        match map.get(agency) {
            Some(h) => Start {
                seq: h.seq,
                version: Some(h.version),
            },
            None => Start {
                seq: 0,
                version: None,
            },
        }
    }

    /// Records what a scan that began at `start` found first (`None`: the queue was empty
    /// from `start.seq` on), unless a put happened since it began.
    pub fn found(&self, agency: &str, start: Start, first: Option<u64>) {
        let seq = first.unwrap_or(u64::MAX);
        let mut map = self.map.lock().expect("heads lock poisoned");
        match (map.get_mut(agency), start.version) {
            (Some(h), Some(v)) if h.version == v => h.seq = seq,
            (None, None) => {
                map.insert(agency.to_owned(), Head { seq, version: 0 });
            }
            // A put raced with the scan: keep the lower head.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_during_a_scan_keeps_the_head_below_it() {
        let h = QueueStarts::default();
        let s = h.start("A");
        assert_eq!(s.seq, 0);
        h.found("A", s, Some(10));
        assert_eq!(h.start("A").seq, 10);
        // A scan begins, an older document is queued again (update), the scan ends.
        let s = h.start("A");
        h.lower("A", 4);
        h.found("A", s, Some(12));
        assert_eq!(h.start("A").seq, 4);
        // An empty queue: the head jumps past everything until the next put.
        let s = h.start("A");
        h.found("A", s, None);
        assert_eq!(h.start("A").seq, u64::MAX);
        h.lower("A", 30);
        assert_eq!(h.start("A").seq, 30);
        // A put into a queue no scan has seen yet, during its first scan.
        let s = h.start("B");
        h.lower("B", 7);
        h.found("B", s, Some(9));
        assert_eq!(h.start("B").seq, 0);
    }
}
