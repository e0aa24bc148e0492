//! Push delivery's driver: the worker that reads each agency's push index, runs attempts
//! within the agency's and the hub's concurrency limits, and sleeps until the next one is
//! due or a commit schedules more. What an attempt commits, and the retry schedule, are the
//! core's ([`crate::hub::push`]); the HTTPS side is [`endpoint`].
//!
//! Agencies are served each on their own: one agency's slow or dead endpoint holds its own
//! permits only (and backs off, see `hub::push_lanes`), never another agency's pushes.

pub mod endpoint;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::directory::Directory;
use crate::hub::push::PushJob;
use crate::hub::worker::{Pace, Worker};
use crate::hub::{Hub, HubError, now_ms};
use crate::store::PushDue;
use endpoint::{Endpoint, Timeouts};

/// The worker's settings (`[push]`, `[outbound]`, `[tls] client_ca`).
#[derive(Debug, Clone)]
pub struct PushSettings {
    pub timeouts: Timeouts,
    pub concurrency_per_agency: usize,
    pub max_in_flight: usize,
    /// The hub's client certificate and key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Trust for endpoints without a `push_ca`: the hub's client CA.
    pub default_ca: PathBuf,
}

/// One agency with a push endpoint.
struct Lane {
    url: String,
    ca: PathBuf,
    endpoint: Arc<Endpoint>,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<u64>>>,
    /// When to read its push index again (ms; 0: at the next pass).
    next_at: u64,
    /// Where its next read of the push index starts (ms): no entry can be scheduled
    /// before it (see [`FLOOR_MARGIN`]), so the read skips the tombstones of the entries
    /// done. 0 (the whole index) at start and at every [`RESCAN`].
    floor_ms: u64,
}

/// How far below the earliest entry (or the time) of the last read the next one starts. A
/// push is scheduled at the time of its commit or later, and is readable a moment after
/// that time was taken; one that took longer is found by the next [`RESCAN`].
const FLOOR_MARGIN: u64 = 1_000;

/// How often every lane's index is read even if nothing said it changed.
const RESCAN: Duration = Duration::from_secs(10);
/// The longest the worker sleeps between passes.
const NAP: Duration = Duration::from_secs(1);

pub struct PushWorker {
    hub: Arc<Hub>,
    settings: PushSettings,
    lanes: HashMap<String, Lane>,
    all: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<String>,
    done_rx: mpsc::UnboundedReceiver<String>,
    directory: Option<Arc<Directory>>,
    rescanned: std::time::Instant,
    /// Lanes waiting for the hub-wide limit: woken when any attempt ends.
    starved: Vec<String>,
}

impl PushWorker {
    pub fn new(hub: Arc<Hub>, settings: PushSettings) -> PushWorker {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        PushWorker {
            all: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            hub,
            settings,
            lanes: HashMap::new(),
            done_tx,
            done_rx,
            directory: None,
            rescanned: std::time::Instant::now(),
            starved: Vec::new(),
        }
    }

    /// Follows the directory: a lane per agency with a `push_url`, rebuilt when its URL or
    /// CA changes; a new lane first schedules what was queued before it existed.
    async fn sync_lanes(&mut self) {
        let directory = self.hub.directory().snapshot();
        if self
            .directory
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, &directory))
        {
            return;
        }
        self.directory = Some(directory.clone());
        let default_ca = &self.settings.default_ca;
        let per_agency = self.settings.concurrency_per_agency;
        let mut wanted: HashMap<String, (String, PathBuf, usize)> = directory
            .agencies()
            .iter()
            .filter_map(|a| {
                let url = a.push_url.clone()?;
                let ca = a.push_ca.clone().unwrap_or(default_ca.clone());
                Some((a.id.clone(), (url, ca, per_agency)))
            })
            .collect();
        // Peer hubs: their queues (`@peer`) go to their federation endpoint.
        for p in &self.hub.settings().federation.peers {
            let queue = crate::federation::peer_queue(&p.id);
            if let Some(url) = self.hub.push_url(&queue, &directory) {
                let ca = p.ca.clone().unwrap_or(default_ca.clone());
                wanted.insert(queue, (url, ca, p.concurrency()));
            }
        }
        self.lanes.retain(|id, lane| {
            wanted
                .get(id.as_str())
                .is_some_and(|(url, ca, _)| *url == lane.url && *ca == lane.ca)
        });
        for (id, (url, ca, concurrency)) in &wanted {
            let (id, url) = (id.as_str(), url.as_str());
            if self.lanes.contains_key(id) {
                continue;
            }
            match self.lane(url, ca, *concurrency) {
                Ok(lane) => {
                    self.lanes.insert(id.to_owned(), lane);
                    let (agency, owned_url) = (id.to_owned(), url.to_owned());
                    let resumed = self
                        .hub
                        .blocking(move |h| h.push_resume(&agency, &owned_url))
                        .await;
                    match resumed {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            agency = id,
                            url,
                            pushes = n,
                            "scheduled pushes of items queued before"
                        ),
                        Err(e) => {
                            tracing::warn!(agency = id, error = %e, "could not schedule earlier items")
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(agency = id, url, error = %e, "push endpoint unusable; the agency pulls")
                }
            }
        }
    }

    fn lane(
        &self,
        url: &str,
        ca: &std::path::Path,
        concurrency: usize,
    ) -> Result<Lane, endpoint::EndpointError> {
        let s = &self.settings;
        let tls =
            crate::tls::client_config(ca, &s.client_cert, &s.client_key, &[b"h2", b"http/1.1"])?;
        Ok(Lane {
            url: url.to_owned(),
            ca: ca.to_owned(),
            endpoint: Arc::new(Endpoint::new(url, tls, s.timeouts)?),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
            next_at: 0,
            floor_ms: 0,
        })
    }

    /// Sleeps until a lane is due, an attempt ended, or a commit scheduled pushes.
    async fn wait(&mut self) {
        let now = now_ms();
        let next = self
            .lanes
            .values()
            .map(|l| l.next_at)
            .min()
            .unwrap_or(u64::MAX);
        let nap = Duration::from_millis(next.saturating_sub(now)).min(NAP);
        if nap.is_zero() {
            return;
        }
        tokio::select! {
            _ = self.hub.pushes_waiting() => {}
            Some(agency) = self.done_rx.recv() => self.wake_lane(&agency),
            _ = tokio::time::sleep(nap) => {}
        }
    }

    /// An attempt of `agency` ended (or pushes were scheduled for it): read its index
    /// again, and let lanes waiting for the hub-wide limit try again.
    fn wake_lane(&mut self, agency: &str) {
        for a in std::mem::take(&mut self.starved)
            .iter()
            .chain(std::iter::once(&agency.to_owned()))
        {
            if let Some(l) = self.lanes.get_mut(a) {
                l.next_at = 0;
            }
        }
    }

    /// One pass: reads the push index of every lane that may have work and starts what is
    /// due, within the limits.
    async fn dispatch(&mut self) -> Result<(), HubError> {
        let now = now_ms();
        let mut wanted = Vec::new();
        for (agency, lane) in &mut self.lanes {
            if lane.next_at > now {
                continue;
            }
            if let Some(until) = self.hub.push_held(agency, &lane.url, now) {
                lane.next_at = until;
                continue;
            }
            let free = lane
                .permits
                .available_permits()
                .min(self.all.available_permits());
            if free == 0 {
                // Woken again when one of its attempts (or any, for the hub's limit) ends.
                lane.next_at = u64::MAX;
                if lane.permits.available_permits() > 0 {
                    self.starved.push(agency.clone());
                }
                continue;
            }
            let in_flight = lane.in_flight.lock().expect("in-flight lock").len();
            wanted.push((agency.clone(), lane.floor_ms, in_flight + free + 1));
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let found = self
            .hub
            .blocking(move |h| {
                wanted
                    .into_iter()
                    .map(|(a, from, limit)| h.scheduled_pushes(&a, from, limit).map(|p| (a, p)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        for (agency, entries) in found {
            self.start_due(&agency, entries, now);
        }
        Ok(())
    }

    /// Starts the attempts of `entries` (one agency's, earliest first) that are due and not
    /// in progress, while permits last; notes when the lane next has work.
    fn start_due(&mut self, agency: &str, entries: Vec<PushDue>, now: u64) {
        let Some(lane) = self.lanes.get_mut(agency) else {
            return;
        };
        lane.next_at = u64::MAX;
        let earliest = entries.first().map_or(now, |d| d.at_ms.min(now));
        lane.floor_ms = earliest.saturating_sub(FLOOR_MARGIN);
        for due in entries {
            if lane
                .in_flight
                .lock()
                .expect("in-flight lock")
                .contains(&due.seq)
            {
                continue;
            }
            if due.at_ms > now {
                lane.next_at = due.at_ms;
                break;
            }
            let Ok(own) = lane.permits.clone().try_acquire_owned() else {
                break; // woken when an attempt of this lane ends
            };
            let Ok(all) = self.all.clone().try_acquire_owned() else {
                self.starved.push(agency.to_owned());
                break;
            };
            lane.in_flight
                .lock()
                .expect("in-flight lock")
                .insert(due.seq);
            let attempt = Attempt {
                hub: self.hub.clone(),
                agency: agency.to_owned(),
                endpoint: lane.endpoint.clone(),
                in_flight: lane.in_flight.clone(),
                lease: self.settings.timeouts.total + Duration::from_secs(5),
                done: self.done_tx.clone(),
                _permits: (own, all),
            };
            tokio::spawn(attempt.run(due));
        }
    }
}

impl Worker for PushWorker {
    fn name(&self) -> &'static str {
        "push"
    }

    fn period(&self) -> Duration {
        NAP
    }

    async fn step(&mut self) -> Result<Pace, HubError> {
        self.wait().await;
        self.sync_lanes().await;
        for agency in self.hub.take_dirty_push_lanes() {
            self.wake_lane(&agency);
        }
        while let Ok(agency) = self.done_rx.try_recv() {
            self.wake_lane(&agency);
        }
        if self.rescanned.elapsed() >= RESCAN {
            self.rescanned = std::time::Instant::now();
            for lane in self.lanes.values_mut() {
                lane.next_at = lane.next_at.min(now_ms());
                lane.floor_ms = 0;
            }
        }
        self.dispatch().await?;
        // The step waits for work itself (above): run again at once.
        Ok(Pace::Busy)
    }
}

/// One attempt in progress, holding its agency's and the hub's permit.
struct Attempt {
    hub: Arc<Hub>,
    agency: String,
    endpoint: Arc<Endpoint>,
    in_flight: Arc<Mutex<HashSet<u64>>>,
    lease: Duration,
    done: mpsc::UnboundedSender<String>,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Attempt {
    async fn run(self, due: PushDue) {
        let result = self.push(due).await;
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .remove(&due.seq);
        match result {
            Ok(()) => {
                let _ = self.done.send(self.agency.clone());
            }
            // Not woken at once: a failing store would make it a busy loop; the periodic
            // rescan tries again.
            Err(e) => {
                tracing::warn!(agency = %self.agency, id = %crate::hub::format_id(due.seq), error = %e, "push attempt failed to commit")
            }
        }
    }

    async fn push(&self, due: PushDue) -> Result<(), HubError> {
        let (agency, url, lease) = (
            self.agency.clone(),
            self.endpoint.url().to_owned(),
            self.lease,
        );
        let job = self
            .hub
            .blocking(move |h| h.push_begin(&agency, &url, due, lease))
            .await?;
        let Some(mut job) = job else {
            return Ok(());
        };
        let body = Bytes::from(std::mem::take(&mut job.body));
        let outcome = self.endpoint.post(&job.url, &headers(&job), body).await;
        if let crate::hub::push::PushOutcome::Failed { detail, .. } = &outcome {
            tracing::info!(agency = %job.agency, id = %job.signature.id, attempt = job.attempt, error = %detail, "push failed");
        }
        self.hub.blocking(move |h| h.push_end(&job, &outcome)).await
    }
}

/// The request headers of one attempt: Standard Webhooks' three (and the signer), and the
/// item's identity for receivers that do not parse the packet.
fn headers(job: &PushJob) -> Vec<(&'static str, String)> {
    let s = &job.signature;
    let mut h = vec![
        ("content-type", "application/xml".to_owned()),
        ("webhook-id", s.id.clone()),
        ("webhook-timestamp", s.timestamp.to_string()),
        ("webhook-signature", s.signature.clone()),
        ("webhook-signer", s.signer.clone()),
        ("lienthong-id", s.id.clone()),
        ("lienthong-sender", job.doc.from.clone()),
        ("lienthong-sha256", job.doc.sha256.clone()),
        ("lienthong-kind", job.doc.kind.as_str().to_owned()),
        ("lienthong-attempt", job.attempt.to_string()),
    ];
    if let Some(d) = &job.doc.document_id {
        h.push(("lienthong-document-id", header_safe(d)));
    }
    if let Some(f) = &job.forward {
        let route = serde_json::to_string(&f.route).expect("hops serialize");
        h.push(("lienthong-route", header_safe(&route)));
        h.push(("lienthong-recipients", f.recipients.join(",")));
    }
    h
}

/// A value as a header may carry it: visible ASCII and spaces as they are, any other byte
/// percent-encoded (so a DocumentId with Vietnamese letters still travels, reversibly).
fn header_safe(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (b == b' ' || b.is_ascii_graphic()) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_values_are_percent_encoded_beyond_visible_ascii() {
        assert_eq!(super::header_safe("12/QĐ-UBND 5%"), "12/Q%C4%90-UBND 5%25");
    }
}
