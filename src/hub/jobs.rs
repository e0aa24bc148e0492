//! The hub's own background workers (see [`super::worker`]): upkeep (expiry and
//! retention, from the due index) and tree-head signing.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::worker::{Pace, Worker};
use super::{Hub, HubError, upkeep::PASS_MAX};

/// Expires undelivered items and purges bodies past retention.
pub struct Upkeep {
    pub hub: Arc<Hub>,
    pub every: Duration,
}

impl Worker for Upkeep {
    fn name(&self) -> &'static str {
        "upkeep"
    }

    fn period(&self) -> Duration {
        self.every
    }

    /// Both jobs run each step (a failing expiry does not hold up retention); a full pass
    /// of either means more is due, so the next step follows at once.
    async fn step(&mut self) -> Result<Pace, HubError> {
        let (expired, purged) = self.hub.blocking(|h| (h.expire(), h.purge_bodies())).await;
        let (expired, purged) = (expired?, purged?);
        if expired > 0 {
            tracing::info!(items = expired, "expired undelivered items");
        }
        if purged > 0 {
            tracing::info!(bodies = purged, "purged bodies past retention");
        }
        let full = expired >= PASS_MAX || purged >= PASS_MAX;
        Ok(if full { Pace::Busy } else { Pace::Idle })
    }
}

/// Signs audit tree heads: every `interval` while the log grows, and whenever `every`
/// entries have been added since the last head (checked each second).
pub struct HeadSigner {
    pub hub: Arc<Hub>,
    pub interval: Duration,
    pub every: u64,
    last: Instant,
}

impl HeadSigner {
    pub fn new(hub: Arc<Hub>, interval: Duration, every: u64) -> HeadSigner {
        HeadSigner {
            hub,
            interval,
            every,
            last: Instant::now(),
        }
    }
}

impl Worker for HeadSigner {
    fn name(&self) -> &'static str {
        "tree_heads"
    }

    fn period(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn step(&mut self) -> Result<Pace, HubError> {
        let due = self.last.elapsed() >= self.interval;
        let every = self.every;
        if self
            .hub
            .blocking(move |h| h.maybe_sign_head(due, every))
            .await?
            .is_some()
        {
            self.last = Instant::now();
        }
        Ok(Pace::Idle)
    }
}
