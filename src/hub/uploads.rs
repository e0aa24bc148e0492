//! Memory and fairness for uploads: what a submission's body may hold, and how slowly it may
//! come. One budget per hub, shared by every transport (each hands its body over as a
//! [`BodySource`]).
//!
//! A body is reserved as its bytes arrive, never up front for a declared (or absent) length,
//! so a client that announces 64 MiB and trickles holds only what it has sent. Small bodies
//! (a declared length up to `small_body_bytes`) draw from a pool of their own, so however the
//! large pool is used, an agency's ordinary 2 KiB submit never waits behind another agency's
//! upload. Per agency, concurrent submissions and body bytes in flight are capped; a caller
//! over its share gets 429 at once rather than a queue. An upload slower than
//! `min_upload_bytes_per_sec` (after a grace period) is cut with 408, so a trickle cannot hold
//! memory or a slot for long. Every reservation is released when the request ends, however it
//! ends (answered, timed out, or dropped by a client that left).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::HubError;

/// Where a body's bytes come from: an HTTP/1.1 or HTTP/2 body, an HTTP/3 stream.
pub trait BodySource: Send {
    /// The next chunk of data (`None` at the end; an `Err` says why reading failed).
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<Bytes, String>>> + Send;
}

/// Permits are KiB, so a 64 MiB body is 65,536 permits (well within `u32`).
const PERMIT_BYTES: u64 = 1024;

fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(PERMIT_BYTES).min(u32::MAX as u64) as u32
}

/// The configured limits (`[server]`).
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub max_body_bytes: u64,
    /// The large pool: bytes of bodies held at once across all connections.
    pub max_inflight_body_bytes: u64,
    /// Bodies declared at most this long use the small pool.
    pub small_body_bytes: u64,
    pub small_pool_bytes: u64,
    /// Per agency: bytes of bodies in flight, and concurrent submissions.
    pub agency_inflight_body_bytes: u64,
    pub agency_concurrent_submits: u32,
    /// The slowest upload kept after `upload_grace`.
    pub min_upload_bytes_per_sec: u64,
    pub upload_grace: Duration,
}

/// One agency's share.
struct Share {
    bytes: Arc<Semaphore>,
    submits: Arc<Semaphore>,
}

pub struct BodyBudget {
    limits: BodyLimits,
    large: Arc<Semaphore>,
    /// The one upload allowed to wait for the large pool (see [`Pools::reserve`]).
    waiter: Arc<tokio::sync::Mutex<()>>,
    small: Arc<Semaphore>,
    shares: Mutex<HashMap<String, Share>>,
}

/// What a body holds while its request runs; dropping it gives everything back.
pub struct Held {
    permits: Vec<OwnedSemaphorePermit>,
    /// KiB reserved so far from the agency's share and from the large pool.
    agency_kib: u32,
    large_kib: u32,
    _counted: crate::stats::GaugeGuard,
}

/// 429: the caller is over its own share.
fn too_many(what: &str) -> HubError {
    HubError::TooMany {
        why: format!("{what}; retry later"),
        retry_after: 1,
    }
}

/// 503: the hub's shared memory for uploads is in use.
fn server_busy() -> HubError {
    HubError::UploadsBusy
}

impl BodyBudget {
    pub fn new(limits: BodyLimits) -> BodyBudget {
        BodyBudget {
            large: Arc::new(Semaphore::new(kib(limits.max_inflight_body_bytes) as usize)),
            waiter: Arc::default(),
            small: Arc::new(Semaphore::new(kib(limits.small_pool_bytes) as usize)),
            shares: Mutex::new(HashMap::new()),
            limits,
        }
    }

    fn share(&self, agency: &str) -> (Arc<Semaphore>, Arc<Semaphore>) {
        let mut shares = self.shares.lock().expect("budget lock");
        // Forget agencies with nothing in flight, so the map stays as small as the activity.
        if shares.len() > 4096 {
            let (b, s) = (
                kib(self.limits.agency_inflight_body_bytes) as usize,
                self.limits.agency_concurrent_submits as usize,
            );
            shares.retain(|_, v| {
                v.bytes.available_permits() < b || v.submits.available_permits() < s
            });
        }
        let s = shares.entry(agency.to_owned()).or_insert_with(|| Share {
            bytes: Arc::new(Semaphore::new(
                kib(self.limits.agency_inflight_body_bytes) as usize
            )),
            submits: Arc::new(Semaphore::new(
                self.limits.agency_concurrent_submits as usize,
            )),
        });
        (s.bytes.clone(), s.submits.clone())
    }

    /// Reads the body of `agency`'s submission within the budget. The body counts twice once
    /// whole (the request buffer and the write batch's copy while it is stored), so the
    /// second count is taken when reading ends. An empty body is refused here too.
    pub async fn read<S: BodySource>(
        &self,
        agency: &str,
        body: &mut S,
        declared: Option<u64>,
    ) -> Result<(Bytes, Held), HubError> {
        let (bytes, held) = self.read_within(agency, body, declared).await?;
        if bytes.is_empty() {
            return Err(HubError::EmptyBody);
        }
        Ok((bytes, held))
    }

    async fn read_within<S: BodySource>(
        &self,
        agency: &str,
        body: &mut S,
        declared: Option<u64>,
    ) -> Result<(Bytes, Held), HubError> {
        let max = self.limits.max_body_bytes;
        if declared.is_some_and(|n| n > max) {
            return Err(HubError::BodyTooLarge(max));
        }
        let (agency_bytes, agency_submits) = self.share(agency);
        let slot = agency_submits.try_acquire_owned().map_err(|_| {
            too_many(&format!(
                "agency {agency} already has {} submissions in flight",
                self.limits.agency_concurrent_submits
            ))
        })?;
        let mut held = Held {
            permits: vec![slot],
            agency_kib: 0,
            large_kib: 0,
            _counted: crate::stats::GaugeGuard::new("lienthong_uploads_in_progress"),
        };
        if let Some(n) = declared.filter(|&n| n <= self.limits.small_body_bytes) {
            // Small and declared: reserve both counts at once from the small pool.
            let want = kib(2 * n).max(1);
            let p = self
                .small
                .clone()
                .try_acquire_many_owned(want)
                .map_err(|_| server_busy())?;
            held.permits.push(p);
            let body = self.collect(body, declared, None, &mut held).await?;
            return Ok((body, held));
        }
        let pools = Pools {
            large: self.large.clone(),
            waiter: self.waiter.clone(),
            agency: agency_bytes,
            large_cap: kib(self.limits.max_inflight_body_bytes),
            agency_cap: kib(self.limits.agency_inflight_body_bytes),
        };
        let body = self
            .collect(body, declared, Some(&pools), &mut held)
            .await?;
        // The second count: the write batch's copy.
        pools
            .reserve(2 * body.len() as u64, &mut held, None)
            .await?;
        Ok((body, held))
    }

    /// Reads frames until the end, reserving from `pools` (when given) as bytes arrive and
    /// cutting an upload that falls below the minimum rate.
    async fn collect<S: BodySource>(
        &self,
        body: &mut S,
        declared: Option<u64>,
        pools: Option<&Pools>,
        held: &mut Held,
    ) -> Result<Bytes, HubError> {
        let max = self.limits.max_body_bytes;
        let start = Instant::now();
        let rate = self.limits.min_upload_bytes_per_sec.max(1);
        let grace = self.limits.upload_grace;
        // A declared length is trusted only up to what has come.
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(64 * 1024) as usize);
        loop {
            // By now at least `received / rate` seconds past the grace may have passed.
            let deadline = start + grace + Duration::from_secs_f64(buf.len() as f64 / rate as f64);
            let data = match tokio::time::timeout_at(deadline, body.next_chunk()).await {
                Err(_) => return Err(HubError::UploadTooSlow(rate)),
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.map_err(HubError::BodyReadFailed)?,
            };
            if (buf.len() + data.len()) as u64 > max {
                return Err(HubError::BodyTooLarge(max));
            }
            if let Some(p) = pools {
                p.reserve((buf.len() + data.len()) as u64, held, Some(deadline))
                    .await?;
            }
            // Grows by doubling: capacity stays within twice what has arrived (and been
            // reserved), whatever length was declared.
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    }
}

/// The large pool and the agency's share, reserved together. One body never reserves more
/// than a whole pool: a body larger than the budget takes all of it (and so goes alone).
struct Pools {
    large: Arc<Semaphore>,
    waiter: Arc<tokio::sync::Mutex<()>>,
    agency: Arc<Semaphore>,
    large_cap: u32,
    agency_cap: u32,
}

impl Pools {
    /// Brings the reservation up to `total` bytes (rounded up to KiB once, not per frame, so
    /// a trickle of 1-byte frames reserves what it sent): from the agency's share at once, or
    /// 429; from the large pool waiting at most until `deadline`, then 503 (the hub is busy,
    /// not the caller wrong).
    async fn reserve(
        &self,
        total: u64,
        held: &mut Held,
        deadline: Option<Instant>,
    ) -> Result<(), HubError> {
        let want = kib(total);
        let mine = want.min(self.agency_cap).saturating_sub(held.agency_kib);
        if mine > 0 {
            let p = self
                .agency
                .clone()
                .try_acquire_many_owned(mine)
                .map_err(|_| {
                    too_many("this agency's uploads in flight exceed its share of the body budget")
                })?;
            held.permits.push(p);
            held.agency_kib += mine;
        }
        let shared = want.min(self.large_cap).saturating_sub(held.large_kib);
        if shared == 0 {
            return Ok(());
        }
        if let Ok(p) = self.large.clone().try_acquire_many_owned(shared) {
            held.permits.push(p);
            held.large_kib += shared;
            return Ok(());
        }
        // Uploads that each hold part of the pool and wait for more would wait on each other
        // for ever. So only one upload at a time may wait (until its deadline); any other
        // that finds the pool full is answered 503 at once and gives back what it holds, so
        // the one waiting always gets through.
        let Ok(_turn) = self.waiter.clone().try_lock_owned() else {
            return Err(server_busy());
        };
        let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
        let acquire = self.large.clone().acquire_many_owned(shared);
        match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(p)) => {
                held.permits.push(p);
                held.large_kib += shared;
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(server_busy()),
        }
    }
}
