//! The daemon's background workers: the hub's own ([`crate::hub::jobs`]) and statistics
//! upkeep, which also drives the Prometheus exporter. All run under one
//! [`Workers`](crate::hub::worker::Workers) runner.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::worker::{Pace, Worker};
use crate::hub::{Hub, HubError};

/// Every `every`: flush statistics, refresh gauges, let the exporter do its upkeep.
pub(super) struct StatsUpkeep {
    pub hub: Arc<Hub>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub every: Duration,
}

impl Worker for StatsUpkeep {
    fn name(&self) -> &'static str {
        "statistics"
    }

    fn period(&self) -> Duration {
        self.every
    }

    async fn step(&mut self) -> Result<Pace, HubError> {
        let res = self
            .hub
            .blocking(|h| h.flush_stats().and_then(|()| h.refresh_gauges()))
            .await;
        if let Some(m) = &self.metrics {
            m.run_upkeep();
        }
        res.map(|()| Pace::Idle)
    }
}
