//! The daemon's background workers: the hub's own ([`crate::hub::jobs`]) and statistics
//! upkeep, which also drives the Prometheus exporter. All run under one
//! [`Workers`](crate::hub::worker::Workers) runner.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::worker::{Pace, Worker};
use crate::hub::{Hub, HubError};

/// Every `every`: flush statistics, refresh gauges, let the exporter do its upkeep; every
/// ten minutes, the days left on the hub's certificates.
pub(super) struct StatsUpkeep {
    pub hub: Arc<Hub>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub every: Duration,
    /// (label, file) of each certificate (or directory of them) whose expiry is watched.
    pub certificates: Vec<(String, std::path::PathBuf)>,
    pub certificates_checked: Option<std::time::Instant>,
}

/// How often certificate files are read again for their expiry.
const CERTIFICATE_CHECK: Duration = Duration::from_secs(600);

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
        if self
            .certificates_checked
            .is_none_or(|t| t.elapsed() >= CERTIFICATE_CHECK)
        {
            self.certificates_checked = Some(std::time::Instant::now());
            let certs = self.certificates.clone();
            tokio::task::spawn_blocking(move || super::expiry::publish(&certs))
                .await
                .ok();
        }
        res.map(|()| Pace::Idle)
    }
}
