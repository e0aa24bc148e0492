//! The push index: which queued items the hub still has to push to their agency's endpoint,
//! and when, kept in the due column family next to the expiry and retention entries so that
//! a restart resumes every retry where it was.
//!
//! Key: `3 agency 0x00 at_ms(8) seq(8)` → `attempts(4)`, integers big-endian. Unlike the
//! other due kinds the agency comes before the time: the push worker serves each agency on
//! its own (its own concurrency limit, its own back-off), so it reads one agency's entries
//! oldest first with one seek, and an agency whose endpoint is down and has a long backlog
//! never stands in front of another's (see docs/push.md).
//!
//! `at_ms` is when the next attempt is due. An ack does not name the entry (its time moves
//! with every retry): the worker removes an entry whose item has left the queue when it
//! comes to it, as upkeep does for expiry entries.
//!
//! Key `4 agency` → the push URL that answered 410 Gone: the agency is pull-only until its
//! directory entry names another URL.

use rocksdb::{Direction, IteratorMode};

use super::{CF_DUE, Store, StoreError};

const PUSH: u8 = 3;
const GONE: u8 = 4;

/// One scheduled push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushDue {
    /// When the next attempt is due.
    pub at_ms: u64,
    pub seq: u64,
    /// Attempts made so far.
    pub attempts: u32,
}

fn agency_prefix(agency: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.len() + 18);
    k.push(PUSH);
    k.extend_from_slice(agency.as_bytes());
    k.push(0);
    k
}

/// The key of `agency`'s push of `seq` due at `at_ms`.
pub(super) fn push_key(agency: &str, at_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = agency_prefix(agency);
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The key of `agency`'s pull-only mark.
pub(super) fn gone_key(agency: &str) -> Vec<u8> {
    let mut k = vec![GONE];
    k.extend_from_slice(agency.as_bytes());
    k
}

impl Store {
    /// `agency`'s scheduled pushes at or after `from_ms`, earliest first, at most `limit`
    /// (due or not: the first one says when the agency next has work). Starting past the
    /// entries already done matters: each one done leaves a tombstone that a seek from the
    /// agency's first key would step over until compaction (see docs/federation.md).
    pub fn pushes(
        &self,
        agency: &str,
        from_ms: u64,
        limit: usize,
    ) -> Result<Vec<PushDue>, StoreError> {
        let prefix = agency_prefix(agency);
        let mut start = prefix.clone();
        start.extend_from_slice(&from_ms.to_be_bytes());
        let bad = |k: &[u8]| StoreError::Corrupt {
            key: format!("due/push/{}", String::from_utf8_lossy(k)),
            why: "bad push entry".into(),
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_DUE),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let rest = &k[prefix.len()..];
            if rest.len() != 16 {
                return Err(bad(&k));
            }
            out.push(PushDue {
                at_ms: u64::from_be_bytes(rest[..8].try_into().map_err(|_| bad(&k))?),
                seq: u64::from_be_bytes(rest[8..].try_into().map_err(|_| bad(&k))?),
                attempts: v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| bad(&k))?,
            });
        }
        Ok(out)
    }

    /// Agencies marked pull-only, with the push URL that answered 410 Gone.
    pub fn pull_only(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let start = [GONE];
        let it = self.db.iterator_cf(
            self.cf(CF_DUE),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in it {
            let (k, v) = item?;
            if k.first() != Some(&GONE) {
                break;
            }
            out.push((
                String::from_utf8_lossy(&k[1..]).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            ));
        }
        Ok(out)
    }
}
