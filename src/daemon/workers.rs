//! The daemon's background workers: statistics upkeep, expiry and retention, tree-head
//! signing. Each runs a step on a period until shutdown.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Runs `step` every `period` until shutdown (a tick that falls behind is delayed, not
/// repeated).
async fn periodically<F, Fut>(period: std::time::Duration, shutdown: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        step().await;
    }
}

/// Every `every`: flush statistics, refresh gauges, let the exporter do its upkeep.
pub(super) async fn maintain(
    hub: Arc<Hub>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    periodically(every, shutdown, || async {
        let res = hub
            .blocking(|h| h.flush_stats().and_then(|()| h.refresh_gauges()))
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "statistics upkeep failed; will retry");
        }
        if let Some(m) = &metrics {
            m.run_upkeep();
        }
    })
    .await
}

/// Expires undelivered items and purges old bodies every `every`.
pub(super) async fn upkeep(hub: Arc<Hub>, every: std::time::Duration, shutdown: CancellationToken) {
    periodically(every, shutdown, || async {
        match hub.blocking(|h| h.expire()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(items = n, "expired undelivered items"),
            Err(e) => tracing::warn!(error = %e, "expiry failed; will retry"),
        }
        match hub.blocking(|h| h.purge_bodies()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(bodies = n, "purged bodies past retention"),
            Err(e) => tracing::warn!(error = %e, "retention purge failed; will retry"),
        }
    })
    .await
}

/// Signs audit tree heads: every `interval` while the log grows, and whenever `every` entries
/// have been added since the last head (checked each second).
pub(super) async fn sign_heads(
    hub: Arc<Hub>,
    interval: std::time::Duration,
    every: u64,
    shutdown: CancellationToken,
) {
    let last = std::sync::Mutex::new(tokio::time::Instant::now());
    periodically(std::time::Duration::from_secs(1), shutdown, || async {
        let due = last.lock().expect("head clock").elapsed() >= interval;
        match hub.blocking(move |h| h.maybe_sign_head(due, every)).await {
            Ok(Some(_)) => *last.lock().expect("head clock") = tokio::time::Instant::now(),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "signing a tree head failed; will retry"),
        }
    })
    .await
}
