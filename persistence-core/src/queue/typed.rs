//! JSON jobs over any queue engine.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Enqueued, Lease, NewJob, Priority, SharedQueue};
use crate::error::{Error, Result};

/// A claimed job with its payload decoded.
#[derive(Debug, Clone)]
pub struct JsonLease<T> {
    /// The lease, for heartbeat, complete, fail and release.
    pub lease: Lease,
    /// The decoded payload.
    pub job: T,
}

/// A run queue of JSON jobs of type `T` over any engine.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use persistence_core::queue::{JsonQueue, MemoryQueue, Priority, RunQueue};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let queue = Arc::new(MemoryQueue::new(Default::default()));
/// let runs = JsonQueue::<serde_json::Value>::new(queue.clone());
/// runs.enqueue("run-1", &serde_json::json!({"assistant": "a1"}), Priority::High).await.unwrap();
/// let claimed = runs.claim("w1", Duration::from_secs(60), Duration::ZERO).await.unwrap().unwrap();
/// assert_eq!(claimed.job["assistant"], "a1");
/// queue.complete(&claimed.lease, None).await.unwrap();
/// # });
/// ```
#[derive(Debug)]
pub struct JsonQueue<T> {
    queue: SharedQueue,
    _jobs: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonQueue<T> {
    fn clone(&self) -> Self {
        JsonQueue {
            queue: self.queue.clone(),
            _jobs: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> JsonQueue<T> {
    /// JSON jobs over `queue`.
    pub fn new(queue: SharedQueue) -> Self {
        JsonQueue {
            queue,
            _jobs: PhantomData,
        }
    }

    /// The engine underneath, for the calls that take no payload.
    pub fn engine(&self) -> &SharedQueue {
        &self.queue
    }

    /// Queues `job` as `id` with `priority`.
    pub async fn enqueue(&self, id: &str, job: &T, priority: Priority) -> Result<Enqueued> {
        let bytes = serde_json::to_vec(job)
            .map_err(|e| Error::InvalidInput(format!("job {id:?} does not serialize: {e}")))?;
        self.queue
            .enqueue(NewJob::new(id, bytes).priority(priority))
            .await
    }

    /// Claims the next job and decodes it. A payload that does not decode
    /// is failed at once (retried, then dead-lettered, kept for
    /// inspection) and reported as [`Error::Corrupted`].
    pub async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<JsonLease<T>>> {
        let Some(lease) = self.queue.claim(worker, lease, wait).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&lease.payload) {
            Ok(job) => Ok(Some(JsonLease { lease, job })),
            Err(e) => {
                let reason = format!("payload is not the job type: {e}");
                self.queue.fail(&lease, &reason).await?;
                Err(Error::Corrupted {
                    namespace: "queue".into(),
                    key: lease.id.clone(),
                    reason,
                    len: lease.payload.len(),
                })
            }
        }
    }
}
