//! Per-peer figures: what ops staff ask of a hub-to-hub link ("is the national hub taking
//! our mail? how far behind is it? how fast do we forward?"). Counted on the same paths as
//! the rest (`observe`), shown in `/metrics` with a `peer` label, in `/v1/stats` (`peers`)
//! and on the dashboard.

use metrics::{counter, gauge};
use serde::Serialize;

use super::report::Scope;
use super::{Hub, HubError, now_ms};
use crate::federation::{peer_queue, queue_peer};

/// What happened to a forward or a report, for the counters.
#[derive(Debug, Clone, Copy)]
pub(super) enum PeerEvent {
    /// A peer took a packet (its 2xx).
    Forwarded,
    /// An attempt failed and will be retried.
    ForwardFailed,
    /// A peer refused a packet for good.
    ForwardRefused,
    /// A peer forwarded a packet here that was stored.
    Received,
    /// A peer's delivery report was recorded here.
    ReportIn,
}

impl PeerEvent {
    fn metric(self) -> &'static str {
        match self {
            PeerEvent::Forwarded => "forwarded",
            PeerEvent::ForwardFailed => "forward_failed",
            PeerEvent::ForwardRefused => "forward_refused",
            PeerEvent::Received => "received_from_peer",
            PeerEvent::ReportIn => "reports_in",
        }
    }
}

/// One peer hub's line in `/v1/stats` (`peers`).
#[derive(Debug, Clone, Serialize)]
pub struct PeerFigures {
    pub peer: String,
    pub url: String,
    pub default: bool,
    pub routes: Vec<String>,
    /// Packets and reports waiting to go to it, and the age of the oldest.
    pub pending: u64,
    pub oldest_pending_secs: Option<u64>,
    /// In the report's window: packets it took, attempts that failed, packets it refused
    /// for good, packets it forwarded here, and reports from it.
    pub forwarded: u64,
    pub forwarded_per_min: f64,
    pub forward_failed: u64,
    pub forward_refused: u64,
    pub received: u64,
    pub reports_in: u64,
    /// `active` or `backing_off` (after failures), as the push worker sees the link.
    pub state: &'static str,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
}

impl Hub {
    /// Counts `event` for `peer` (a peer id or its queue `@id`): `/v1/stats` and
    /// `lienthong_forwards_total{peer,result}` / `lienthong_peer_received_total{peer,kind}`.
    pub(super) fn observe_peer(&self, peer: &str, event: PeerEvent) {
        let peer = queue_peer(peer).unwrap_or(peer);
        let now = now_ms();
        self.counters.add(now, event.metric(), &peer_queue(peer), 1);
        let peer = peer.to_owned();
        let (forward, label) = match event {
            PeerEvent::Forwarded => (true, "forwarded"),
            PeerEvent::ForwardFailed => (true, "failed"),
            PeerEvent::ForwardRefused => (true, "refused"),
            PeerEvent::Received => (false, "packet"),
            PeerEvent::ReportIn => (false, "report"),
        };
        if forward {
            counter!("lienthong_forwards_total", "peer" => peer, "result" => label).increment(1)
        } else {
            counter!("lienthong_peer_received_total", "peer" => peer, "kind" => label).increment(1)
        }
    }

    /// Sets `lienthong_peer_queue_depth{peer}` and `lienthong_peer_oldest_age_seconds{peer}`
    /// for every configured peer (zero when nothing waits).
    pub(super) fn refresh_peer_gauges(&self, now: u64) -> Result<(), HubError> {
        for p in &self.settings.federation.peers {
            let (pending, oldest) = self.peer_backlog(&p.id, now)?;
            gauge!("lienthong_peer_queue_depth", "peer" => p.id.clone()).set(pending as f64);
            gauge!("lienthong_peer_oldest_age_seconds", "peer" => p.id.clone())
                .set(oldest.unwrap_or(0) as f64);
        }
        Ok(())
    }

    /// How many items wait for `peer` and the oldest one's age in seconds.
    fn peer_backlog(&self, peer: &str, now: u64) -> Result<(u64, Option<u64>), HubError> {
        let queue = peer_queue(peer);
        let pending = self
            .depth
            .lock()
            .expect("depth lock")
            .get(&queue)
            .copied()
            .unwrap_or(0);
        let oldest = match pending {
            0 => None,
            _ => self.oldest_pending_secs(&queue, now)?,
        };
        Ok((pending, oldest))
    }

    /// The `peers` lines of a `/v1/stats` report (ops and auditors only).
    pub(super) fn peer_figures(
        &self,
        scope: &Scope,
        count: impl Fn(&str, &str) -> u64,
        covered_secs: u64,
    ) -> Result<Vec<PeerFigures>, HubError> {
        if *scope != Scope::Hub {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let lanes = self.push_status();
        let mut out = Vec::with_capacity(self.settings.federation.peers.len());
        for p in &self.settings.federation.peers {
            let queue = peer_queue(&p.id);
            let (pending, oldest) = self.peer_backlog(&p.id, now)?;
            let lane = lanes.iter().find(|l| l.agency == queue);
            let forwarded = count(PeerEvent::Forwarded.metric(), &queue);
            out.push(PeerFigures {
                peer: p.id.clone(),
                url: p.url.clone(),
                default: p.default,
                routes: p.routes.clone(),
                pending,
                oldest_pending_secs: oldest,
                forwarded,
                forwarded_per_min: per_min(forwarded, covered_secs),
                forward_failed: count(PeerEvent::ForwardFailed.metric(), &queue),
                forward_refused: count(PeerEvent::ForwardRefused.metric(), &queue),
                received: count(PeerEvent::Received.metric(), &queue),
                reports_in: count(PeerEvent::ReportIn.metric(), &queue),
                state: lane.map_or("active", |l| l.state),
                last_success: lane.and_then(|l| l.last_success.clone()),
                last_error: lane.and_then(|l| l.last_error.clone()),
            });
        }
        Ok(out)
    }
}

fn per_min(n: u64, secs: u64) -> f64 {
    if secs == 0 {
        return 0.0;
    }
    (n as f64 * 60.0 / secs as f64 * 100.0).round() / 100.0
}
