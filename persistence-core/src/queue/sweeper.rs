//! The background sweep: expired leases back to the queue, stale pending
//! jobs failed, ended jobs past retention removed.

use std::time::Duration;

use super::{SharedQueue, SweepReport};

/// A running sweeper: calls [`sweep_once`](super::RunQueue::sweep_once)
/// every interval until dropped or [`stop`](Self::stop)ped. Engines make a
/// sweep atomic, so sweepers in several processes never do a job's work twice.
#[derive(Debug)]
pub struct Sweeper {
    task: tokio::task::JoinHandle<()>,
}

impl Sweeper {
    /// Starts sweeping `queue` every `interval` (the first sweep at once).
    pub fn spawn(queue: SharedQueue, interval: Duration) -> Sweeper {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match queue.sweep_once().await {
                    Ok(report) if report != SweepReport::default() => tracing::info!(
                        queue = queue.name(),
                        requeued = report.requeued,
                        dead = report.dead,
                        cancelled = report.cancelled,
                        failed = report.failed,
                        purged = report.purged,
                        "sweep complete"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(queue = queue.name(), error = %e, "sweep failed; trying again next interval")
                    }
                }
            }
        });
        Sweeper { task }
    }

    /// Stops sweeping.
    pub fn stop(self) {}
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
