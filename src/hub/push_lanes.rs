//! What the hub keeps in memory about each agency's push endpoint: whether it is backing
//! off after failures (so a dead endpoint is probed a few items at a time on the retry
//! schedule, not hammered with its whole backlog), whether a 410 made it pull-only, and
//! the figures ops staff see in `/v1/stats` and the dashboard.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::Duration;

use serde::Serialize;

use super::push::PushOutcome;
use super::rfc3339;
use crate::directory::Directory;

/// The retry schedule and switches of `[push]` the core needs.
#[derive(Debug, Clone)]
pub struct PushPolicy {
    /// Whether agencies with a `push_url` are pushed to at all.
    pub enabled: bool,
    /// The wait before attempt n+1 is `retry[n-1]`; the last one repeats until the item
    /// expires.
    pub retry: Vec<Duration>,
    /// Each wait is spread by up to ± this share, so the retries of a burst do not all come
    /// back at once.
    pub jitter: f64,
}

impl Default for PushPolicy {
    fn default() -> Self {
        PushPolicy {
            enabled: true,
            retry: [5, 30, 120, 600, 3600].map(Duration::from_secs).to_vec(),
            jitter: 0.1,
        }
    }
}

impl PushPolicy {
    /// The schedule's wait after `attempts` failed attempts, without jitter.
    fn base(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry.len().saturating_sub(1));
        self.retry
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }

    /// How long (ms) until the attempt after failed attempt `attempt` of item `seq`: the
    /// schedule's wait with jitter, or the endpoint's `Retry-After` if that is longer.
    pub fn delay(&self, attempt: u32, seq: u64, retry_after: Option<Duration>) -> u64 {
        let base = self.base(attempt).as_millis() as f64;
        // A per-process random hasher: a spread that differs per item and attempt.
        let r = std::collections::hash_map::RandomState::new().hash_one((seq, attempt));
        let unit = (r % 20_001) as f64 / 10_000.0 - 1.0; // -1.0 ..= 1.0
        let jittered = (base * (1.0 + self.jitter.clamp(0.0, 1.0) * unit)).max(0.0) as u64;
        let asked = retry_after.map_or(0, |d| d.as_millis() as u64);
        jittered.max(asked)
    }
}

/// One agency's push state.
#[derive(Debug, Default)]
struct Lane {
    /// The URL of the last attempt.
    url: String,
    /// The URL that answered 410 Gone (the agency is pull-only while it is configured).
    gone_url: Option<String>,
    consecutive_failures: u32,
    held_until_ms: u64,
    last_attempt_ms: Option<u64>,
    last_success_ms: Option<u64>,
    last_error: Option<String>,
    attempts: u64,
    delivered: u64,
    failed: u64,
}

/// One agency's line in the push status.
#[derive(Debug, Clone, Serialize)]
pub struct LaneStatus {
    pub agency: String,
    pub url: String,
    /// `active`, `backing_off` (after failures) or `pull_only` (after 410 Gone).
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub held_until: Option<String>,
    pub last_attempt: Option<String>,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    /// Since the hub started.
    pub attempts: u64,
    pub delivered: u64,
    pub failed: u64,
}

#[derive(Debug, Default)]
pub(super) struct PushLanes {
    lanes: HashMap<String, Lane>,
    /// Agencies with pushes scheduled since the worker last looked.
    dirty: HashSet<String>,
}

impl PushLanes {
    pub fn pull_only(&self, agency: &str, url: &str) -> bool {
        self.lanes
            .get(agency)
            .and_then(|l| l.gone_url.as_deref())
            .is_some_and(|g| g == url)
    }

    pub fn gone_url(&self, agency: &str) -> Option<String> {
        self.lanes.get(agency).and_then(|l| l.gone_url.clone())
    }

    pub fn set_gone(&mut self, agency: &str, url: Option<String>) {
        metrics::gauge!("lienthong_push_pull_only", "agency" => agency.to_owned())
            .set(if url.is_some() { 1.0 } else { 0.0 });
        let lane = self.lanes.entry(agency.to_owned()).or_default();
        lane.gone_url = url;
        lane.consecutive_failures = 0;
        lane.held_until_ms = 0;
    }

    pub fn mark_dirty(&mut self, agency: &str) {
        if !self.dirty.contains(agency) {
            self.dirty.insert(agency.to_owned());
        }
    }

    pub fn take_dirty(&mut self) -> Vec<String> {
        self.dirty.drain().collect()
    }

    /// Until when (ms) `agency`'s pushes to `url` are held, if they are now.
    pub fn held(&self, agency: &str, url: &str, now: u64) -> Option<u64> {
        let lane = self.lanes.get(agency)?;
        if lane.gone_url.as_deref() == Some(url) {
            return Some(u64::MAX);
        }
        (lane.held_until_ms > now).then_some(lane.held_until_ms)
    }

    /// Records an attempt's outcome. A failure of the endpoint (not of one item: a 4xx
    /// other than 429) holds the agency's pushes for the schedule's wait after its
    /// consecutive failures, so a dead endpoint is probed, not flooded.
    pub fn record(
        &mut self,
        agency: &str,
        url: &str,
        outcome: &PushOutcome,
        now: u64,
        policy: &PushPolicy,
    ) {
        let lane = self.lanes.entry(agency.to_owned()).or_default();
        lane.url = url.to_owned();
        lane.attempts += 1;
        lane.last_attempt_ms = Some(now);
        match outcome {
            PushOutcome::Delivered { .. } => {
                lane.delivered += 1;
                lane.consecutive_failures = 0;
                lane.held_until_ms = 0;
                lane.last_success_ms = Some(now);
            }
            PushOutcome::Gone => {
                metrics::gauge!("lienthong_push_pull_only", "agency" => agency.to_owned()).set(1.0);
                lane.failed += 1;
                lane.gone_url = Some(url.to_owned());
                lane.last_error = Some("410 Gone".into());
            }
            PushOutcome::Failed {
                status,
                detail,
                retry_after,
                ..
            } => {
                lane.failed += 1;
                lane.last_error = Some(detail.clone());
                let item_only = matches!(status, Some(s) if (400..500).contains(s) && *s != 429);
                if !item_only {
                    lane.consecutive_failures += 1;
                    let wait = policy
                        .base(lane.consecutive_failures)
                        .max(retry_after.unwrap_or_default());
                    lane.held_until_ms = now + wait.as_millis() as u64;
                }
            }
        }
    }

    /// Every agency with a push endpoint in `directory`, and its state.
    pub fn status(&self, directory: &Directory) -> Vec<LaneStatus> {
        let now = crate::ids::now_ms();
        let empty = Lane::default();
        let agencies = directory
            .agencies()
            .iter()
            .filter_map(|a| Some((a.id.clone(), a.push_url.clone()?)));
        // Peer hubs' queues (`@peer`), once they were pushed to.
        let mut peers: Vec<(String, String)> = self
            .lanes
            .iter()
            .filter(|(k, _)| k.starts_with('@'))
            .map(|(k, l)| (k.clone(), l.url.clone()))
            .collect();
        peers.sort();
        agencies
            .chain(peers)
            .map(|(id, url)| {
                let lane = self.lanes.get(&id).unwrap_or(&empty);
                let state = if lane.gone_url.as_deref() == Some(url.as_str()) {
                    "pull_only"
                } else if lane.held_until_ms > now {
                    "backing_off"
                } else {
                    "active"
                };
                LaneStatus {
                    agency: id,
                    url,
                    state,
                    consecutive_failures: lane.consecutive_failures,
                    held_until: (lane.held_until_ms > now).then(|| rfc3339(lane.held_until_ms)),
                    last_attempt: lane.last_attempt_ms.map(rfc3339),
                    last_success: lane.last_success_ms.map(rfc3339),
                    last_error: lane.last_error.clone(),
                    attempts: lane.attempts,
                    delivered: lane.delivered,
                    failed: lane.failed,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_repeats_its_last_wait_and_honours_retry_after() {
        let p = PushPolicy {
            jitter: 0.0,
            ..PushPolicy::default()
        };
        assert_eq!(p.delay(1, 7, None), 5_000);
        assert_eq!(p.delay(2, 7, None), 30_000);
        assert_eq!(p.delay(5, 7, None), 3_600_000);
        assert_eq!(p.delay(50, 7, None), 3_600_000);
        assert_eq!(p.delay(1, 7, Some(Duration::from_secs(90))), 90_000);
        let j = PushPolicy::default();
        for seq in 0..200 {
            let d = j.delay(1, seq, None);
            assert!((4_500..=5_500).contains(&d), "{d}");
        }
    }

    #[test]
    fn endpoint_failures_hold_the_agency_item_failures_do_not() {
        let p = PushPolicy::default();
        let mut lanes = PushLanes::default();
        let fail = |status: Option<u16>| PushOutcome::Failed {
            reason: "x",
            status,
            detail: "x".into(),
            code: None,
            retry_after: None,
        };
        lanes.record("A", "https://a", &fail(Some(400)), 1000, &p);
        assert_eq!(lanes.held("A", "https://a", 1000), None);
        lanes.record("A", "https://a", &fail(Some(503)), 1000, &p);
        assert_eq!(lanes.held("A", "https://a", 1000), Some(6000));
        lanes.record("A", "https://a", &fail(None), 1000, &p);
        assert_eq!(lanes.held("A", "https://a", 1000), Some(31_000));
        lanes.record(
            "A",
            "https://a",
            &PushOutcome::Delivered {
                status: 200,
                receipt: None,
            },
            2000,
            &p,
        );
        assert_eq!(lanes.held("A", "https://a", 2000), None);
        lanes.record("A", "https://a", &PushOutcome::Gone, 3000, &p);
        assert_eq!(lanes.held("A", "https://a", 3000), Some(u64::MAX));
        assert_eq!(lanes.held("A", "https://b", 3000), None);
    }
}
