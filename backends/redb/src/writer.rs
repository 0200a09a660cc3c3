//! The writer thread: the only place the database is written.
//!
//! redb runs one write transaction at a time, so writes queue here instead
//! of contending for it. The thread takes every write waiting (up to
//! [`MAX_GROUP`]), applies them in order in one transaction, commits once
//! and only then answers each: a group commit, so one fsync covers every
//! write that arrived while the last one was on disk. Each write still
//! stands alone: its precondition is checked against everything before it
//! in the group, a refused write changes nothing, and if the transaction
//! itself fails the group is retried one write per transaction, so one bad
//! write never fails its neighbours.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use persistence_core::backend::{DocumentWrite, Precondition, TxOutcome, TxWrite, Version};
use persistence_core::{Error, Result};
use persistence_ordered_layout::now_ms;
use redb::ReadableTable;
use tokio::sync::oneshot;

use crate::engine::{self, storage, Outcome};
use crate::{Durability, Shared};

/// Most writes committed in one transaction.
pub const MAX_GROUP: usize = 256;

/// Expired documents freed per write, at most: bounded work per commit.
const PURGE_PER_WRITE: usize = 16;

/// One write and where its answer goes.
#[derive(Debug)]
pub enum Job {
    Put {
        ns: String,
        key: String,
        write: DocumentWrite,
        precondition: Precondition,
        reply: oneshot::Sender<Result<Version>>,
    },
    Remove {
        ns: String,
        key: String,
        precondition: Precondition,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// Writes applied all-or-nothing (checked by `check_transaction`).
    Transact {
        writes: Vec<TxWrite>,
        reply: oneshot::Sender<Result<Vec<TxOutcome>>>,
    },
    /// Make every write so far durable.
    Flush { reply: oneshot::Sender<Result<()>> },
    /// A write to the event streams.
    Stream {
        op: crate::streams::StreamOp,
        reply: oneshot::Sender<Result<crate::streams::StreamAnswer>>,
    },
    /// A batch of run-queue records to write and remove.
    Queue {
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        removes: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Give free space back: durable commit, then compaction.
    Compact { reply: oneshot::Sender<Result<()>> },
    /// Free up to `max` expired documents.
    Purge {
        max: usize,
        reply: oneshot::Sender<Result<usize>>,
    },
}

/// What a job answers once its transaction committed.
enum Answer {
    Version(Result<Version>),
    Removed(Result<bool>),
    Done,
    Purged(usize),
    Stream(Result<crate::streams::StreamAnswer>),
    Transact(Result<Vec<TxOutcome>>),
}

impl Job {
    fn answer(self, answer: Result<Answer>) {
        // a caller that gave up (timed out, cancelled) no longer listens
        match (self, answer) {
            (Job::Put { reply, .. }, Ok(Answer::Version(r))) => drop(reply.send(r)),
            (Job::Remove { reply, .. }, Ok(Answer::Removed(r))) => drop(reply.send(r)),
            (Job::Flush { reply } | Job::Compact { reply } | Job::Queue { reply, .. }, Ok(_)) => {
                drop(reply.send(Ok(())))
            }
            (Job::Purge { reply, .. }, Ok(Answer::Purged(n))) => drop(reply.send(Ok(n))),
            (Job::Stream { reply, .. }, Ok(Answer::Stream(r))) => drop(reply.send(r)),
            (Job::Stream { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (Job::Transact { reply, .. }, Ok(Answer::Transact(r))) => drop(reply.send(r)),
            (Job::Transact { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (Job::Put { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (Job::Remove { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (Job::Flush { reply } | Job::Compact { reply } | Job::Queue { reply, .. }, Err(e)) => {
                drop(reply.send(Err(e)))
            }
            (Job::Purge { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (job, Ok(_)) => unreachable!("answer of another kind for {job:?}"),
        }
    }
}

/// The thread's state: the next id to hand out and what is not yet durable.
pub struct WriterThread {
    pub shared: Arc<Shared>,
    pub next_id: u64,
    /// When a commit that is not yet durable happened first (periodic mode).
    pub dirty_since: Option<Instant>,
}

impl WriterThread {
    /// Serves jobs until every sender is gone, then makes everything durable.
    pub fn run(mut self, jobs: Receiver<Job>) {
        loop {
            let first = match self.flush_due() {
                None => jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => jobs.recv_timeout(wait),
            };
            let first = match first {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.commit(Vec::new(), true) {
                        tracing::error!(error = %e, "redb periodic flush failed");
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.serve(group);
        }
        if self.dirty_since.is_some() {
            if let Err(e) = self.commit(Vec::new(), true) {
                tracing::error!(error = %e, "redb final flush failed");
            }
        }
    }

    /// How long until the periodic flush is due; `None` when nothing waits for one.
    fn flush_due(&self) -> Option<Duration> {
        let (Durability::Periodic { every }, Some(since)) =
            (self.shared.durability, self.dirty_since)
        else {
            return None;
        };
        Some(every.saturating_sub(since.elapsed()))
    }

    /// Commits `group`, or, when its transaction fails, each job alone.
    fn serve(&mut self, group: Vec<Job>) {
        if group.len() == 1 {
            return self.commit_answering(group);
        }
        let durable = group
            .iter()
            .any(|j| matches!(j, Job::Flush { .. } | Job::Compact { .. }));
        match self.guarded(&group, durable) {
            Ok(answers) => {
                for (job, answer) in group.into_iter().zip(answers) {
                    job.answer(Ok(answer));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = group.len(), "a group commit failed; retrying each write alone");
                for job in group {
                    self.commit_answering(vec![job]);
                }
            }
        }
    }

    fn commit_answering(&mut self, group: Vec<Job>) {
        let durable = matches!(group[0], Job::Flush { .. } | Job::Compact { .. });
        match self.guarded(&group, durable) {
            Ok(answers) => {
                for (job, answer) in group.into_iter().zip(answers) {
                    job.answer(Ok(answer));
                }
            }
            Err(e) => {
                for job in group {
                    job.answer(Err(e.clone()));
                }
            }
        }
    }

    /// [`commit`](Self::commit), with a panic inside redb turned into an
    /// error (the transaction is dropped, so aborted).
    fn guarded(&mut self, group: &[Job], durable: bool) -> Result<Vec<Answer>> {
        match catch_unwind(AssertUnwindSafe(|| self.commit_jobs(group, durable))) {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "redb panicked".into());
                Err(Error::Internal {
                    backend: "redb".into(),
                    message: format!("write transaction panicked: {what}"),
                })
            }
        }
    }

    fn commit(&mut self, group: Vec<Job>, durable: bool) -> Result<()> {
        self.guarded(&group, durable).map(drop)
    }

    /// Applies `group` in one transaction and commits it.
    fn commit_jobs(&mut self, group: &[Job], durable: bool) -> Result<Vec<Answer>> {
        let shared = &self.shared;
        let db = shared.db.read();
        let mut txn = db.begin_write().map_err(|e| storage("begin", e))?;
        let durable = durable || shared.durability == Durability::Immediate;
        txn.set_durability(if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .map_err(|e| storage("set durability", e))?;
        // versions and creation stamps are Unix microseconds, unique and
        // increasing (the stored counter holds the next one)
        let first_id = persistence_core::backend::next_stamp(self.next_id.saturating_sub(1));
        let mut next_id = first_id;
        let mut answers = Vec::with_capacity(group.len());
        let mut wrote_expiry = false;
        {
            let mut table = txn
                .open_table(engine::DATA)
                .map_err(|e| storage("open table", e))?;
            let mut w = engine::Writer {
                table: &mut table,
                now: now_ms(),
            };
            let mut writes = 0;
            for job in group {
                answers.push(match job {
                    Job::Put {
                        ns,
                        key,
                        write,
                        precondition,
                        ..
                    } => {
                        writes += 1;
                        wrote_expiry |= write.ttl.is_some();
                        let out: Outcome<Version> = w.put(ns, key, write, *precondition, next_id);
                        let out = out?;
                        if out.is_ok() {
                            next_id += 1;
                        }
                        Answer::Version(out)
                    }
                    Job::Remove {
                        ns,
                        key,
                        precondition,
                        ..
                    } => {
                        writes += 1;
                        Answer::Removed(w.remove(ns, key, *precondition)?)
                    }
                    Job::Transact { writes: tx, .. } => {
                        writes += tx.len();
                        Answer::Transact(transact(&mut w, tx, &mut next_id, &mut wrote_expiry)?)
                    }
                    Job::Flush { .. } | Job::Compact { .. } => Answer::Done,
                    Job::Purge { max, .. } => Answer::Purged(w.purge(*max)?),
                    Job::Stream { op, .. } => {
                        Answer::Stream(crate::streams::apply(&txn, op, w.now)?)
                    }
                    Job::Queue { puts, removes, .. } => {
                        crate::queue::apply(&txn, puts, removes)?;
                        Answer::Done
                    }
                });
            }
            if writes > 0 && shared.has_expiry.load(Ordering::Relaxed) {
                w.purge(PURGE_PER_WRITE * writes)?;
            }
            if wrote_expiry || shared.has_expiry.load(Ordering::Relaxed) {
                let reader = engine::Reader {
                    table: &*w.table,
                    now: w.now,
                };
                shared
                    .has_expiry
                    .store(reader.has_expiry()?, Ordering::Relaxed);
            }
        }
        if next_id != first_id {
            let mut meta = txn
                .open_table(engine::META)
                .map_err(|e| storage("open table", e))?;
            meta.insert(engine::NEXT_ID, next_id)
                .map_err(|e| storage("write", e))?;
        }
        txn.commit().map_err(|e| storage("commit", e))?;
        drop(db);
        self.next_id = next_id;
        self.dirty_since = match (durable, self.dirty_since) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(Instant::now()),
        };
        if group.iter().any(|j| matches!(j, Job::Compact { .. })) {
            self.compact()?;
        }
        Ok(answers)
    }

    /// Compacts until redb says nothing more can be gained, with the
    /// database alone (reads wait on the blocking pool meanwhile).
    fn compact(&self) -> Result<()> {
        let mut db = self.shared.db.write();
        for _ in 0..COMPACT_PASSES {
            if !db.compact().map_err(|e| storage("compact", e))? {
                break;
            }
        }
        Ok(())
    }
}

/// Most compaction passes per request (each moves pages toward the start).
const COMPACT_PASSES: usize = 64;

/// The id to start from when opening: past every id a lost, not yet
/// durable commit may have handed out (periodic mode), so versions never
/// repeat.
pub fn first_id(stored: Option<u64>) -> u64 {
    const JUMP: u64 = 1 << 24;
    stored.map_or(1, |n| n.saturating_add(JUMP))
}

/// One transaction inside the group's redb transaction: every
/// precondition first, then every write (the writer thread runs alone, so
/// nothing comes in between). A precondition failure is the answer and
/// nothing is written; a storage failure fails the whole group.
fn transact(
    w: &mut engine::Writer<'_, '_>,
    tx: &[TxWrite],
    next_id: &mut u64,
    wrote_expiry: &mut bool,
) -> Result<Result<Vec<TxOutcome>>> {
    for write in tx {
        let (ns, key) = write.target();
        if let Err(e) = w.check(ns, key, write.precondition())? {
            return Ok(Err(e));
        }
    }
    let mut out = Vec::with_capacity(tx.len());
    for write in tx {
        out.push(match write {
            TxWrite::Put {
                namespace,
                key,
                write,
                ..
            } => {
                *wrote_expiry |= write.ttl.is_some();
                let v = w.put(namespace, key, write, Precondition::Any, *next_id)??;
                *next_id += 1;
                TxOutcome::Put(v)
            }
            TxWrite::Remove { namespace, key, .. } => {
                TxOutcome::Removed(w.remove(namespace, key, Precondition::Any)??)
            }
        });
    }
    Ok(Ok(out))
}

/// Reads the stored next id.
pub fn stored_id(table: &impl ReadableTable<&'static str, u64>) -> Result<Option<u64>> {
    Ok(table
        .get(engine::NEXT_ID)
        .map_err(|e| storage("open", e))?
        .map(|g| g.value()))
}
