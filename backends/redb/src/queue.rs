//! The run queue in the redb database: durable, one process.
//!
//! The queue's state machine runs in this process
//! ([`LocalQueue`](persistence_core::queue::LocalQueue)); every record a
//! call changes is written through the writer thread (group commit, the
//! database's durability) before the call returns, one row per job in the
//! table `queue_jobs`, keyed `{len}:{queue}:{id}`. Opening reads the
//! queue's rows back: pending jobs stay pending, leased ones keep their
//! lease and come back once it expires.

use std::ops::Bound;
use std::sync::Arc;

use persistence_core::queue::{JobRecord, Journal, LocalQueue, QueueOptions};
use persistence_core::{Error, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use crate::engine::storage;
use crate::writer::Job;
use crate::RedbBackend;

const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queue_jobs");

/// The run queue in a redb database.
pub type RedbRunQueue = LocalQueue<RedbJournal>;

/// Where a [`RedbRunQueue`] keeps its jobs.
#[derive(Debug)]
pub struct RedbJournal {
    backend: Arc<RedbBackend>,
    prefix: Vec<u8>,
}

fn prefix(queue: &str) -> Vec<u8> {
    format!("{}:{queue}:", queue.len()).into_bytes()
}

/// Writes one journal batch in the writer's transaction.
pub fn apply(
    txn: &WriteTransaction,
    puts: &[(Vec<u8>, Vec<u8>)],
    removes: &[Vec<u8>],
) -> Result<()> {
    let mut table = txn.open_table(JOBS).map_err(|e| storage("queue", e))?;
    for (k, v) in puts {
        table
            .insert(k.as_slice(), v.as_slice())
            .map_err(|e| storage("queue", e))?;
    }
    for k in removes {
        table
            .remove(k.as_slice())
            .map_err(|e| storage("queue", e))?;
    }
    Ok(())
}

impl RedbJournal {
    fn key(&self, id: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(id.as_bytes());
        k
    }
}

impl Journal for RedbJournal {
    fn name(&self) -> &str {
        "redb"
    }

    fn load(&self) -> Result<Vec<JobRecord>> {
        let db = self.backend.shared.db.read();
        let txn = db.begin_read().map_err(|e| storage("queue", e))?;
        let table = match txn.open_table(JOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage("queue", e)),
        };
        let mut end = self.prefix.clone();
        *end.last_mut().expect("a prefix ends with ':'") += 1;
        let range = table
            .range::<&[u8]>((
                Bound::Included(self.prefix.as_slice()),
                Bound::Excluded(end.as_slice()),
            ))
            .map_err(|e| storage("queue", e))?;
        let mut out = Vec::new();
        for entry in range {
            let (k, v) = entry.map_err(|e| storage("queue", e))?;
            let id = String::from_utf8_lossy(&k.value()[self.prefix.len()..]).into_owned();
            out.push(JobRecord::decode(&id, v.value())?);
        }
        Ok(out)
    }

    fn write(&self, puts: Vec<(String, Vec<u8>)>, removes: Vec<String>) -> Result<()> {
        let puts = puts.into_iter().map(|(id, v)| (self.key(&id), v)).collect();
        let removes = removes.iter().map(|id| self.key(id)).collect();
        let (reply, answer) = oneshot::channel();
        self.backend.send(Job::Queue {
            puts,
            removes,
            reply,
        })?;
        answer.blocking_recv().map_err(|_| Error::Unavailable {
            backend: "redb".into(),
            reason: "the writer thread stopped".into(),
        })?
    }
}

impl RedbBackend {
    /// The names of the queues with jobs stored in this database.
    pub fn queue_names(&self) -> Result<Vec<String>> {
        let db = self.shared.db.read();
        let txn = db.begin_read().map_err(|e| storage("queue", e))?;
        let table = match txn.open_table(JOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage("queue", e)),
        };
        let mut names: Vec<String> = Vec::new();
        for entry in table.iter().map_err(|e| storage("queue", e))? {
            let (k, _) = entry.map_err(|e| storage("queue", e))?;
            let k = k.value();
            let name = std::str::from_utf8(k)
                .ok()
                .and_then(|k| k.split_once(':'))
                .and_then(|(len, rest)| rest.get(..len.parse::<usize>().ok()?))
                .map(str::to_string);
            if let Some(name) = name {
                if names.last() != Some(&name) {
                    names.push(name);
                }
            }
        }
        names.dedup();
        Ok(names)
    }

    /// The run queue `name` in this database, with `options`: one per
    /// name and backend, so a second call returns the first queue.
    pub async fn queue(
        self: &Arc<Self>,
        name: &str,
        options: QueueOptions,
    ) -> Result<RedbRunQueue> {
        let mut queues = self.queues.lock().await;
        if let Some(q) = queues.get(name).and_then(|q| q.upgrade()) {
            return Ok(q);
        }
        let journal = RedbJournal {
            backend: self.clone(),
            prefix: prefix(name),
        };
        let queue = LocalQueue::open(journal, options, self.call_timeout).await?;
        queues.insert(name.to_string(), queue.downgrade());
        Ok(queue)
    }
}
