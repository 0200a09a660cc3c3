//! The run queue in the sled database: durable, one process.
//!
//! The queue's state machine runs in this process
//! ([`LocalQueue`](persistence_core::queue::LocalQueue)); every record a
//! call changes is written in one atomic `apply_batch` on the tree
//! `queue` (one row per job, keyed `{len}:{queue}:{id}`) before the call
//! returns, on the blocking pool under the backend's deadline, flushed when
//! `flush_on_write` is on (as documents: `docs/sled.md`). Opening reads
//! the queue's rows back.

use std::sync::Arc;

use persistence_core::queue::{JobRecord, Journal, LocalQueue, QueueOptions};
use persistence_core::Result;

use crate::SledBackend;

/// The run queue in a sled database.
pub type SledRunQueue = LocalQueue<SledJournal>;

/// Where a [`SledRunQueue`] keeps its jobs.
#[derive(Debug)]
pub struct SledJournal {
    backend: Arc<SledBackend>,
    tree: sled::Tree,
    prefix: Vec<u8>,
}

impl SledJournal {
    fn key(&self, id: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(id.as_bytes());
        k
    }
}

impl Journal for SledJournal {
    fn name(&self) -> &str {
        "sled"
    }

    fn load(&self) -> Result<Vec<JobRecord>> {
        let e = &self.backend.engine;
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(&self.prefix) {
            let (k, v) = entry.map_err(|err| e.io_error("queue read", err))?;
            let id = String::from_utf8_lossy(&k[self.prefix.len()..]).into_owned();
            out.push(JobRecord::decode(&id, &v)?);
        }
        Ok(out)
    }

    fn write(&self, puts: Vec<(String, Vec<u8>)>, removes: Vec<String>) -> Result<()> {
        let e = &self.backend.engine;
        let mut batch = sled::Batch::default();
        for (id, v) in puts {
            batch.insert(self.key(&id), v);
        }
        for id in removes {
            batch.remove(self.key(&id));
        }
        self.tree
            .apply_batch(batch)
            .map_err(|err| e.io_error("queue write", err))?;
        if e.flush_on_write {
            e.flush()?;
        }
        Ok(())
    }
}

impl SledBackend {
    /// The run queue `name` in this database, with `options`: one per
    /// name and backend, so a second call returns the first queue.
    pub async fn queue(
        self: &Arc<Self>,
        name: &str,
        options: QueueOptions,
    ) -> Result<SledRunQueue> {
        let mut queues = self.queues.lock().await;
        if let Some(q) = queues.get(name).and_then(|q| q.upgrade()) {
            return Ok(q);
        }
        let tree = self
            .engine
            .db
            .open_tree("queue")
            .map_err(|e| self.engine.io_error("open the queue tree", e))?;
        let journal = SledJournal {
            backend: self.clone(),
            tree,
            prefix: format!("{}:{name}:", name.len()).into_bytes(),
        };
        let queue = LocalQueue::open(journal, options, self.call_timeout).await?;
        queues.insert(name.to_string(), queue.downgrade());
        Ok(queue)
    }
}
