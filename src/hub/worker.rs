//! Background workers: one small trait and one runner, so upkeep, tree-head signing and
//! (next) push delivery share how they pace themselves, report failures and stop.
//!
//! A worker does its job in steps. After a step that found more waiting ([`Pace::Busy`]) it
//! runs again at once; after an idle or failed step it rests for its period. Shutdown is
//! seen between steps: a step in progress is not interrupted (it may be halfway through a
//! commit), but [`Workers::stop`] waits for it only until a deadline and then abandons it,
//! so one stuck worker cannot hold the daemon's exit.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::HubError;

/// What a step found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// More work is waiting: step again right away.
    Busy,
    /// Nothing more for now: rest for the worker's period.
    Idle,
}

/// A background job done in steps (see the module docs).
pub trait Worker: Send + 'static {
    /// Names the worker in logs and in `lienthong_worker_failures_total`.
    fn name(&self) -> &'static str;
    /// How long to rest after an idle or failed step.
    fn period(&self) -> Duration;
    /// One unit of work.
    fn step(&mut self) -> impl Future<Output = Result<Pace, HubError>> + Send;
}

/// The running workers of one daemon.
pub struct Workers {
    set: JoinSet<()>,
    shutdown: CancellationToken,
}

impl Workers {
    /// Workers that stop stepping once `shutdown` fires.
    pub fn new(shutdown: CancellationToken) -> Workers {
        Workers {
            set: JoinSet::new(),
            shutdown,
        }
    }

    pub fn spawn<W: Worker>(&mut self, worker: W) {
        self.set.spawn(run(worker, self.shutdown.clone()));
    }

    /// Fires shutdown and waits up to `deadline` for the steps in progress to end; the
    /// workers still running then are abandoned. Returns how many were.
    pub async fn stop(mut self, deadline: Duration) -> usize {
        self.shutdown.cancel();
        let all_done = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all_done).await.is_ok() {
            return 0;
        }
        let left = self.set.len();
        tracing::warn!(
            workers = left,
            "background workers did not finish within the shutdown deadline; abandoned"
        );
        self.set.abort_all();
        left
    }
}

async fn run<W: Worker>(mut worker: W, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let rest = match worker.step().await {
            Ok(Pace::Busy) => {
                tokio::task::yield_now().await;
                continue;
            }
            Ok(Pace::Idle) => worker.period(),
            Err(e) => {
                tracing::warn!(worker = worker.name(), error = %e, "background step failed; will retry");
                metrics::counter!("lienthong_worker_failures_total", "worker" => worker.name())
                    .increment(1);
                worker.period()
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(rest) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Busy for `busy` steps, then idle; counts its steps.
    struct Counting {
        steps: Arc<AtomicUsize>,
        busy: usize,
        block: bool,
    }

    impl Worker for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn period(&self) -> Duration {
            Duration::from_secs(3600)
        }
        async fn step(&mut self) -> Result<Pace, HubError> {
            let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
            if self.block {
                std::future::pending::<()>().await;
            }
            Ok(if n <= self.busy {
                Pace::Busy
            } else {
                Pace::Idle
            })
        }
    }

    #[tokio::test]
    async fn busy_steps_run_back_to_back_and_idle_ones_rest() {
        let steps = Arc::new(AtomicUsize::new(0));
        let mut w = Workers::new(CancellationToken::new());
        w.spawn(Counting {
            steps: steps.clone(),
            busy: 5,
            block: false,
        });
        while steps.load(Ordering::SeqCst) < 6 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Five busy steps and the idle one; the next is an hour away.
        assert_eq!(steps.load(Ordering::SeqCst), 6);
        assert_eq!(w.stop(Duration::from_secs(5)).await, 0);
    }

    #[tokio::test]
    async fn a_stuck_step_is_abandoned_at_the_deadline() {
        let steps = Arc::new(AtomicUsize::new(0));
        let mut w = Workers::new(CancellationToken::new());
        w.spawn(Counting {
            steps: steps.clone(),
            busy: 0,
            block: true,
        });
        while steps.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(w.stop(Duration::from_millis(100)).await, 1);
    }
}
