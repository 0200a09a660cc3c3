//! Event streams in the redb database: durable, one process.
//!
//! Events live in their own table, keyed `lp(stream) seq`, so a stream's
//! events are one contiguous, ordered range; each stream's bookkeeping
//! (oldest kept, next number, close reason) is one row of a second table,
//! and cancellations a third. Appends, closes, deletes and cancels go
//! through the writer thread like document writes (group commit, the same
//! durability), and wake this process's subscribers only once committed.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use persistence_core::backend::{Health, Stats};
use persistence_core::streams::{
    follow, Cancellation, Event, EventPage, EventStreams, Followers, Offset, Retention, Signals,
    StartAt, Subscription, Tail,
};
use persistence_core::{Error, Result};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::{oneshot, watch};

use persistence_ordered_layout::streams::{
    event_data, event_key, event_seq, event_time, event_value, read_page, stream_prefix, StreamMeta,
};

use crate::engine::storage;
use crate::writer::Job;
use crate::RedbBackend;

const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("stream_events");
const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
const CANCELS: TableDefinition<&str, u64> = TableDefinition::new("stream_cancels");

/// A write to the streams, done by the writer thread.
#[derive(Debug)]
pub enum StreamOp {
    Append {
        stream: String,
        data: Bytes,
        retention: Retention,
    },
    Close {
        stream: String,
        reason: String,
    },
    Delete {
        stream: String,
    },
    Cancel {
        run: String,
    },
}

/// What a stream write answers.
#[derive(Debug)]
pub enum StreamAnswer {
    Appended(Offset),
    Done,
    Deleted(bool),
}

/// Applies `op` in the writer's transaction. The inner error is the
/// caller's (a closed stream); the outer one spoils the transaction.
pub fn apply(txn: &WriteTransaction, op: &StreamOp, now_ms: u64) -> Result<Result<StreamAnswer>> {
    let st = |e: redb::TableError| storage("streams", e);
    let sto = |e: redb::StorageError| storage("streams", e);
    match op {
        StreamOp::Append {
            stream,
            data,
            retention,
        } => {
            let mut streams = txn.open_table(STREAMS).map_err(st)?;
            let mut meta = match streams.get(stream.as_str()).map_err(sto)? {
                Some(b) => StreamMeta::decode(stream, b.value())?,
                None => StreamMeta::default(),
            };
            if let Some(reason) = meta.closed {
                return Ok(Err(Error::StreamClosed {
                    stream: stream.clone(),
                    reason,
                }));
            }
            let seq = meta.next;
            meta.next += 1;
            let mut events = txn.open_table(EVENTS).map_err(st)?;
            events
                .insert(
                    event_key(stream, seq).as_slice(),
                    event_value(now_ms, data).as_slice(),
                )
                .map_err(sto)?;
            let events = std::cell::RefCell::new(events);
            meta.trim(
                retention,
                now_ms,
                |seq| {
                    let events = events.borrow();
                    let value = events.get(event_key(stream, seq).as_slice()).map_err(sto)?;
                    Ok(value.map_or(0, |v| event_time(v.value())))
                },
                |seq| {
                    let mut events = events.borrow_mut();
                    events
                        .remove(event_key(stream, seq).as_slice())
                        .map_err(sto)?;
                    Ok(())
                },
            )?;
            streams
                .insert(stream.as_str(), meta.encode().as_slice())
                .map_err(sto)?;
            Ok(Ok(StreamAnswer::Appended(Offset::nth(seq))))
        }
        StreamOp::Close { stream, reason } => {
            let mut streams = txn.open_table(STREAMS).map_err(st)?;
            let mut meta = match streams.get(stream.as_str()).map_err(sto)? {
                Some(b) => StreamMeta::decode(stream, b.value())?,
                None => StreamMeta::default(),
            };
            if meta.closed.is_none() {
                meta.closed = Some(reason.clone());
                streams
                    .insert(stream.as_str(), meta.encode().as_slice())
                    .map_err(sto)?;
            }
            Ok(Ok(StreamAnswer::Done))
        }
        StreamOp::Delete { stream } => {
            let mut streams = txn.open_table(STREAMS).map_err(st)?;
            let existed = streams.remove(stream.as_str()).map_err(sto)?.is_some();
            let mut events = txn.open_table(EVENTS).map_err(st)?;
            let p = stream_prefix(stream);
            let upto = event_key(stream, u64::MAX);
            events
                .retain_in::<&[u8], _>(p.as_slice()..=upto.as_slice(), |_, _| false)
                .map_err(sto)?;
            txn.open_table(CANCELS)
                .map_err(st)?
                .remove(stream.as_str())
                .map_err(sto)?;
            Ok(Ok(StreamAnswer::Deleted(existed)))
        }
        StreamOp::Cancel { run } => {
            txn.open_table(CANCELS)
                .map_err(st)?
                .insert(run.as_str(), 1)
                .map_err(sto)?;
            Ok(Ok(StreamAnswer::Done))
        }
    }
}

/// Event streams in a redb database, sharing its file and writer with the
/// documents of a [`RedbBackend`]. Made by [`RedbBackend::streams`].
#[derive(Debug, Clone)]
pub struct RedbStreams {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<RedbBackend>,
    retention: Retention,
    signals: Signals,
    followers: Followers,
    appended: AtomicU64,
}

impl RedbBackend {
    /// Event streams in this database (the same file, writer and
    /// durability), each stream keeping what `retention` allows.
    pub fn streams(self: &Arc<Self>, retention: Retention) -> RedbStreams {
        RedbStreams {
            inner: Arc::new(Inner {
                backend: self.clone(),
                retention,
                signals: Signals::new(),
                followers: Followers::numbered(),
                appended: AtomicU64::new(0),
            }),
        }
    }
}

impl Inner {
    async fn write(&self, operation: &'static str, op: StreamOp) -> Result<StreamAnswer> {
        self.backend
            .submit(operation, |reply: oneshot::Sender<Result<StreamAnswer>>| {
                Job::Stream { op, reply }
            })
            .await
    }

    fn read_now(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        let db = self.backend.shared.db.read();
        let txn = db.begin_read().map_err(|e| storage("streams", e))?;
        let meta = match txn.open_table(STREAMS) {
            Ok(t) => match t.get(stream).map_err(|e| storage("streams", e))? {
                Some(b) => Some(StreamMeta::decode(stream, b.value())?),
                None => None,
            },
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(EventPage::default()),
            Err(e) => return Err(storage("streams", e)),
        };
        read_page(stream, meta, after, limit, |from, to, limit| {
            let table = txn.open_table(EVENTS).map_err(|e| storage("streams", e))?;
            let (start, end) = (event_key(stream, from), event_key(stream, to));
            let range = table
                .range::<&[u8]>((
                    Bound::Included(start.as_slice()),
                    Bound::Excluded(end.as_slice()),
                ))
                .map_err(|e| storage("streams", e))?;
            let mut events = Vec::new();
            for entry in range.take(limit) {
                let (k, v) = entry.map_err(|e| storage("streams", e))?;
                events.push(Event {
                    offset: Offset::nth(event_seq(k.value())),
                    data: Bytes::copy_from_slice(event_data(v.value())),
                });
            }
            Ok(events)
        })
    }
}

#[async_trait]
impl Tail for Inner {
    async fn read_after(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        self.read_now(stream, after, limit)
    }

    fn wake_ups(&self, stream: &str) -> watch::Receiver<()> {
        self.signals.wake_ups(stream)
    }
}

#[async_trait]
impl EventStreams for RedbStreams {
    fn name(&self) -> &str {
        "redb"
    }

    async fn append(&self, stream: &str, data: Bytes) -> Result<Offset> {
        let op = StreamOp::Append {
            stream: stream.to_string(),
            data,
            retention: self.inner.retention,
        };
        match self.inner.write("append", op).await? {
            StreamAnswer::Appended(offset) => {
                self.inner.signals.wake(stream);
                self.inner.appended.fetch_add(1, Ordering::Relaxed);
                Ok(offset)
            }
            other => Err(internal(other)),
        }
    }

    async fn read(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        self.inner.read_now(stream, after, limit)
    }

    async fn subscribe(&self, stream: &str, from: StartAt) -> Result<Subscription> {
        follow(self.inner.clone(), stream, from, &self.inner.followers).await
    }

    async fn close(&self, stream: &str, reason: &str) -> Result<()> {
        let op = StreamOp::Close {
            stream: stream.to_string(),
            reason: reason.to_string(),
        };
        self.inner.write("close", op).await?;
        self.inner.signals.wake(stream);
        Ok(())
    }

    async fn delete(&self, stream: &str) -> Result<bool> {
        let op = StreamOp::Delete {
            stream: stream.to_string(),
        };
        let existed = match self.inner.write("delete", op).await? {
            StreamAnswer::Deleted(existed) => existed,
            other => return Err(internal(other)),
        };
        // dropping the wake-up sender ends the subscribers
        self.inner.signals.forget(stream);
        Ok(existed)
    }

    async fn cancel(&self, run: &str) -> Result<()> {
        let op = StreamOp::Cancel {
            run: run.to_string(),
        };
        self.inner.write("cancel", op).await?;
        self.inner.signals.cancel(run);
        Ok(())
    }

    async fn cancellation(&self, run: &str) -> Result<Cancellation> {
        let stored = async {
            let db = self.inner.backend.shared.db.read();
            let txn = db.begin_read().map_err(|e| storage("streams", e))?;
            match txn.open_table(CANCELS) {
                Ok(t) => Ok(t.get(run).map_err(|e| storage("streams", e))?.is_some()),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
                Err(e) => Err(storage("streams", e)),
            }
        };
        self.inner.signals.cancellation_or_stored(run, stored).await
    }

    async fn health(&self) -> Health {
        let mut health = persistence_core::Backend::health(&*self.inner.backend).await;
        health.details.insert(
            "streams_followed".into(),
            self.inner.signals.followed().to_string(),
        );
        health
    }

    fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        stats.set("streams_followed", self.inner.signals.followed() as u64);
        stats.set(
            "events_appended",
            self.inner.appended.load(Ordering::Relaxed),
        );
        self.inner.followers.report(&mut stats);
        stats
    }
}

fn internal(answer: StreamAnswer) -> Error {
    Error::Internal {
        backend: "redb".into(),
        message: format!("unexpected writer answer {answer:?}"),
    }
}
