//! This process's wake-up and cancellation signals of a stream engine.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::Cancellation;

/// An engine's in-process signals, by stream and by run: the wake-up its
/// subscriptions wait on ([`Tail::wake_ups`](super::Tail::wake_ups)) and
/// the cancellation its workers listen to. Engines that keep streams in
/// one process (memory's cancellations, redb, sled) keep one of these; what
/// is stored stays the engine's business.
#[derive(Debug, Default)]
pub struct Signals {
    wakes: Mutex<HashMap<String, watch::Sender<()>>>,
    cancels: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Signals {
    /// No signals yet.
    pub fn new() -> Self {
        Signals::default()
    }

    /// Wakes `stream`'s subscriptions: call once what changed is readable.
    pub fn wake(&self, stream: &str) {
        if let Some(w) = self.wakes.lock().get(stream) {
            w.send_replace(());
        }
    }

    /// The wake-up signal of `stream` (for [`Tail::wake_ups`](super::Tail::wake_ups)).
    pub fn wake_ups(&self, stream: &str) -> watch::Receiver<()> {
        self.wakes
            .lock()
            .entry(stream.to_string())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    /// Forgets `stream` and its run's cancellation (it was deleted): its
    /// subscriptions end, since their wake-up sender is gone.
    pub fn forget(&self, stream: &str) {
        self.wakes.lock().remove(stream);
        self.cancels.lock().remove(stream);
    }

    /// Marks `run` cancelled for its listeners in this process.
    pub fn cancel(&self, run: &str) {
        self.cancels
            .lock()
            .entry(run.to_string())
            .or_insert_with(|| watch::channel(false).0)
            .send_replace(true);
    }

    /// `run`'s cancellation signal. Take it before reading a stored
    /// cancel, then [`cancel`](Self::cancel) if one is stored: a cancel
    /// made in between is seen by one or the other.
    pub fn cancellation(&self, run: &str) -> Cancellation {
        Cancellation::new(
            self.cancels
                .lock()
                .entry(run.to_string())
                .or_insert_with(|| watch::channel(false).0)
                .subscribe(),
        )
    }

    /// `run`'s cancellation for an engine that also stores cancels:
    /// the in-process signal is taken first, then `stored` (whether a
    /// cancel is stored) is awaited, so a cancel made in between is seen
    /// by one or the other.
    pub async fn cancellation_or_stored(
        &self,
        run: &str,
        stored: impl std::future::Future<Output = crate::Result<bool>>,
    ) -> crate::Result<Cancellation> {
        let signal = self.cancellation(run);
        if stored.await? {
            self.cancel(run);
        }
        Ok(signal)
    }

    /// Streams with a wake-up signal (followed, or followed lately).
    pub fn followed(&self) -> usize {
        self.wakes.lock().len()
    }
}
