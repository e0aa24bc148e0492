//! Admission: how much work the hub takes on, so that overload degrades instead of
//! collapsing.
//!
//! Two gates, both answering at once instead of queueing without bound:
//! - **per agency** ([`Hub::agency_slot`]): requests in progress (long polls included) and,
//!   optionally, a sustained rate (token bucket, two seconds of burst). Over either: 429
//!   `too_many_requests` with `Retry-After`. One agency flooding the hub only fills its own
//!   share;
//! - **hub-wide** ([`Hub::request`]): the blocking work (parsing, verifying, RocksDB) runs
//!   at most `max_running` at a time; up to `max_queued` more wait, each at most
//!   `max_queue_wait`; beyond that, 503 `server_busy` with `Retry-After`. A request whose
//!   client leaves while it waits leaves the queue with its memory (the queue is this
//!   future, not tokio's unbounded blocking-pool queue), and work already running stops at
//!   its next cancellation check (see [`crate::cancel`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::{Hub, HubError};

/// The admission settings (`[overload]`).
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    pub max_running: usize,
    pub max_queued: usize,
    pub max_queue_wait: Duration,
    pub agency_concurrent_requests: usize,
    /// 0: no rate limit.
    pub agency_requests_per_sec: f64,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_running: 128,
            max_queued: 8192,
            max_queue_wait: Duration::from_secs(1),
            agency_concurrent_requests: 256,
            agency_requests_per_sec: 0.0,
        }
    }
}

pub(super) struct Admission {
    limits: AdmissionLimits,
    running: Arc<Semaphore>,
    queued: AtomicUsize,
    agencies: Mutex<HashMap<String, AgencyState>>,
}

#[derive(Default)]
struct AgencyState {
    in_progress: usize,
    /// Token bucket: tokens left and when they were counted.
    tokens: f64,
    at: Option<Instant>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            running: Arc::new(Semaphore::new(limits.max_running.max(1))),
            queued: AtomicUsize::new(0),
            agencies: Mutex::new(HashMap::new()),
            limits,
        }
    }
}

/// An agency's request in progress; dropping it frees the agency's slot.
pub struct AgencySlot {
    hub: Arc<Hub>,
    agency: String,
}

impl Drop for AgencySlot {
    fn drop(&mut self) {
        let mut map = self.hub.admission.agencies.lock().expect("admission lock");
        if let Some(s) = map.get_mut(&self.agency) {
            s.in_progress = s.in_progress.saturating_sub(1);
            if s.in_progress == 0 && self.hub.admission.limits.agency_requests_per_sec <= 0.0 {
                map.remove(&self.agency);
            }
        }
    }
}

tokio::task_local! {
    /// The agency a request future works for (set by the transport), for fair queueing.
    static AGENCY: String;
}

/// Runs `f` as work for `agency`: its hub work is queued under the agency's fair share.
pub async fn as_agency<F: std::future::Future>(agency: String, f: F) -> F::Output {
    AGENCY.scope(agency, f).await
}

fn too_many(why: String, retry_after: u32) -> HubError {
    metrics::counter!("lienthong_requests_shed_total", "reason" => "agency_limit").increment(1);
    HubError::TooMany { why, retry_after }
}

impl Hub {
    /// Admits one request of `agency` or answers 429 (see the module docs).
    pub fn agency_slot(self: &Arc<Self>, agency: &str) -> Result<AgencySlot, HubError> {
        let limits = &self.admission.limits;
        let mut map = self.admission.agencies.lock().expect("admission lock");
        let s = map.entry(agency.to_owned()).or_default();
        if s.in_progress >= limits.agency_concurrent_requests.max(1) {
            return Err(too_many(
                format!(
                    "agency {agency} has {} requests in progress (the most allowed)",
                    s.in_progress
                ),
                1,
            ));
        }
        let rate = limits.agency_requests_per_sec;
        if rate > 0.0 {
            let now = Instant::now();
            let burst = (rate * 2.0).max(1.0);
            let refill = s.at.map_or(burst, |t| {
                (s.tokens + now.duration_since(t).as_secs_f64() * rate).min(burst)
            });
            s.at = Some(now);
            if refill < 1.0 {
                s.tokens = refill;
                let wait = ((1.0 - refill) / rate).ceil().max(1.0) as u32;
                return Err(too_many(
                    format!("agency {agency} is over its rate of {rate} requests/s"),
                    wait,
                ));
            }
            s.tokens = refill - 1.0;
        }
        s.in_progress += 1;
        Ok(AgencySlot {
            hub: self.clone(),
            agency: agency.to_owned(),
        })
    }

    /// Runs request work on the blocking pool once a running slot is free, or answers
    /// 503 `server_busy` when the queue is full or the wait too long.
    pub async fn request<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Hub) -> Result<T, HubError> + Send + 'static,
    ) -> Result<T, HubError> {
        let adm = &self.admission;
        let permit = match adm.running.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if adm.queued.fetch_add(1, Ordering::SeqCst) >= adm.limits.max_queued
                    && !self.under_fair_share()
                {
                    adm.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(busy("queue_full"));
                }
                let waited = tokio::time::timeout(
                    adm.limits.max_queue_wait,
                    adm.running.clone().acquire_owned(),
                )
                .await;
                adm.queued.fetch_sub(1, Ordering::SeqCst);
                match waited {
                    Ok(Ok(p)) => p,
                    _ => return Err(busy("queue_wait")),
                }
            }
        };
        self.blocking(move |h| {
            let _permit = permit;
            f(h)
        })
        .await
    }
}

impl Hub {
    /// Whether the current request's agency holds no more than its fair share of the work
    /// slots (running and queued, divided among the agencies with requests in progress).
    /// Such a request is queued even when the queue is full, so a well-behaved agency is
    /// not shut out by others' floods; the overshoot is at most one request per agency.
    fn under_fair_share(&self) -> bool {
        let Ok(agency) = AGENCY.try_with(Clone::clone) else {
            return false;
        };
        let map = self.admission.agencies.lock().expect("admission lock");
        let active = map.values().filter(|s| s.in_progress > 0).count().max(1);
        let slots = self.admission.limits.max_running + self.admission.limits.max_queued;
        let mine = map.get(&agency).map_or(0, |s| s.in_progress);
        mine <= (slots / active).max(1)
    }
}

fn busy(reason: &'static str) -> HubError {
    metrics::counter!("lienthong_requests_shed_total", "reason" => reason).increment(1);
    HubError::Busy
}
