//! The plugin libraries the tests load, built if needed, and what the
//! tests of a blocking plugin share.

pub use persistence_conformance::plugin_library as library;

/// A task ticking every 10 ms on the current runtime, and its tick count:
/// whether the runtime's thread stayed free while a call was in flight.
/// Dropping the heartbeat stops the task.
#[allow(dead_code)] // not every test binary that shares this module uses it
pub struct Heartbeat {
    ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[allow(dead_code)]
impl Heartbeat {
    /// Starts ticking.
    pub fn start() -> Self {
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = ticks.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Heartbeat { ticks, task }
    }

    /// The ticks so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
