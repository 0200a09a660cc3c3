//! Event streams in the sled database: durable, one process.
//!
//! Everything lives in one tree, `streams`, so a stream's event, its
//! bookkeeping and its trims change in one atomic `apply_batch`: `m stream`
//! holds the stream's [`StreamMeta`], `v lp(stream) seq` its events (the
//! layout `persistence_ordered_layout::streams` shares with redb), and
//! `x run` a run's cancellation. Writes to one stream are serialized by an
//! in-process lock while they read and write its bookkeeping; every call
//! runs on the blocking pool under the backend's deadline (sled 0.34 can
//! deadlock under load), and an append is durable when it returns only
//! with `flush_on_write` (as documents: `docs/sled.md`). Subscribers in
//! this process are woken once a write is applied.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use persistence_core::backend::{Health, Stats};
use persistence_core::streams::{
    follow, Cancellation, Event, EventPage, EventStreams, Followers, Offset, Retention, Signals,
    StartAt, Subscription, Tail,
};
use persistence_core::{Error, Result};
use persistence_ordered_layout::now_ms;
use persistence_ordered_layout::streams::{
    event_data, event_key, event_seq, event_time, event_value, read_page, stream_prefix, StreamMeta,
};
use tokio::sync::watch;

use crate::{Engine, SledBackend};

const META: u8 = b'm';
const EVENT: u8 = b'v';
const CANCEL: u8 = b'x';

/// Stripes of the per-stream writer lock.
const STREAM_LOCKS: usize = 64;

fn tagged(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + rest.len());
    out.push(tag);
    out.extend_from_slice(rest);
    out
}

fn meta_key(stream: &str) -> Vec<u8> {
    tagged(META, stream.as_bytes())
}

fn ev_key(stream: &str, seq: u64) -> Vec<u8> {
    tagged(EVENT, &event_key(stream, seq))
}

/// Event streams in a sled database, sharing its handle, deadline and
/// durability with the documents of a [`SledBackend`]. Made by
/// [`SledBackend::streams`].
#[derive(Debug, Clone)]
pub struct SledStreams {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<SledBackend>,
    /// What the blocking calls need.
    log: Arc<Log>,
    signals: Signals,
    followers: Followers,
    appended: AtomicU64,
}

/// The streams tree and its writer locks; its methods block.
#[derive(Debug)]
struct Log {
    tree: sled::Tree,
    retention: Retention,
    locks: Box<[Mutex<()>]>,
}

impl SledBackend {
    /// Event streams in this database (the same handle, deadline and
    /// durability), each stream keeping what `retention` allows.
    pub fn streams(self: &Arc<Self>, retention: Retention) -> Result<SledStreams> {
        let tree = self
            .engine
            .db
            .open_tree("streams")
            .map_err(|e| self.engine.io_error("open the streams tree", e))?;
        Ok(SledStreams {
            inner: Arc::new(Inner {
                backend: self.clone(),
                log: Arc::new(Log {
                    tree,
                    retention,
                    locks: (0..STREAM_LOCKS).map(|_| Mutex::new(())).collect(),
                }),
                signals: Signals::new(),
                followers: Followers::numbered(),
                appended: AtomicU64::new(0),
            }),
        })
    }
}

impl Log {
    fn lock(&self, stream: &str) -> parking_lot::MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        stream.hash(&mut h);
        self.locks[h.finish() as usize % STREAM_LOCKS].lock()
    }

    fn meta(&self, e: &Engine, stream: &str) -> Result<Option<StreamMeta>> {
        match self.tree.get(meta_key(stream)) {
            Ok(Some(b)) => StreamMeta::decode(stream, &b).map(Some),
            Ok(None) => Ok(None),
            Err(err) => Err(e.io_error("stream read", err)),
        }
    }

    fn apply(&self, e: &Engine, batch: sled::Batch) -> Result<()> {
        self.tree
            .apply_batch(batch)
            .map_err(|err| e.io_error("stream write", err))?;
        if e.flush_on_write {
            e.flush()?;
        }
        Ok(())
    }

    /// The inner error is the caller's (a closed stream).
    fn append(&self, e: &Engine, stream: &str, data: &[u8]) -> Result<Result<Offset>> {
        let _writer = self.lock(stream);
        let mut meta = self.meta(e, stream)?.unwrap_or_default();
        if let Some(reason) = meta.closed {
            return Ok(Err(Error::StreamClosed {
                stream: stream.to_string(),
                reason,
            }));
        }
        let now = now_ms();
        let seq = meta.next;
        meta.next += 1;
        let mut batch = sled::Batch::default();
        batch.insert(ev_key(stream, seq), event_value(now, data));
        meta.trim(
            &self.retention,
            now,
            |at| match at == seq {
                true => Ok(now),
                false => match self.tree.get(ev_key(stream, at)) {
                    Ok(v) => Ok(v.map_or(0, |v| event_time(&v))),
                    Err(err) => Err(e.io_error("stream read", err)),
                },
            },
            |at| {
                batch.remove(ev_key(stream, at));
                Ok(())
            },
        )?;
        batch.insert(meta_key(stream), meta.encode());
        self.apply(e, batch)?;
        Ok(Ok(Offset::nth(seq)))
    }

    fn close(&self, e: &Engine, stream: &str, reason: &str) -> Result<()> {
        let _writer = self.lock(stream);
        let mut meta = self.meta(e, stream)?.unwrap_or_default();
        if meta.closed.is_some() {
            return Ok(());
        }
        meta.closed = Some(reason.to_string());
        let mut batch = sled::Batch::default();
        batch.insert(meta_key(stream), meta.encode());
        self.apply(e, batch)
    }

    fn delete(&self, e: &Engine, stream: &str) -> Result<bool> {
        let _writer = self.lock(stream);
        let existed = self.meta(e, stream)?.is_some();
        let mut batch = sled::Batch::default();
        batch.remove(meta_key(stream));
        batch.remove(tagged(CANCEL, stream.as_bytes()));
        for entry in self.tree.scan_prefix(tagged(EVENT, &stream_prefix(stream))) {
            let (k, _) = entry.map_err(|err| e.io_error("stream delete", err))?;
            batch.remove(k);
        }
        self.apply(e, batch)?;
        Ok(existed)
    }

    fn cancel(&self, e: &Engine, run: &str) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(tagged(CANCEL, run.as_bytes()), &[1u8][..]);
        self.apply(e, batch)
    }

    fn cancelled(&self, e: &Engine, run: &str) -> Result<bool> {
        self.tree
            .contains_key(tagged(CANCEL, run.as_bytes()))
            .map_err(|err| e.io_error("stream read", err))
    }

    fn read(&self, e: &Engine, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        let meta = self.meta(e, stream)?;
        read_page(stream, meta, after, limit, |from, to, limit| {
            let range = self.tree.range(ev_key(stream, from)..ev_key(stream, to));
            let mut events = Vec::new();
            for entry in range.take(limit) {
                let (k, v) = entry.map_err(|err| e.io_error("stream read", err))?;
                events.push(Event {
                    offset: Offset::nth(event_seq(&k)),
                    data: Bytes::copy_from_slice(event_data(&v)),
                });
            }
            Ok(events)
        })
    }
}

impl Inner {
    /// Runs `call` on the log, on the blocking pool under the backend's deadline.
    async fn call<T: Send + 'static>(
        &self,
        operation: &'static str,
        call: impl FnOnce(&Log, &Engine) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let log = self.log.clone();
        self.backend
            .blocking(operation, move |engine| call(&log, engine))
            .await
    }

    async fn read_now(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        let stream = stream.to_string();
        self.call("stream read", move |log, e| {
            log.read(e, &stream, after, limit)
        })
        .await
    }
}

#[async_trait]
impl Tail for Inner {
    async fn read_after(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        self.read_now(stream, after, limit).await
    }

    fn wake_ups(&self, stream: &str) -> watch::Receiver<()> {
        self.signals.wake_ups(stream)
    }
}

#[async_trait]
impl EventStreams for SledStreams {
    fn name(&self) -> &str {
        "sled"
    }

    async fn append(&self, stream: &str, data: Bytes) -> Result<Offset> {
        let name = stream.to_string();
        let offset = self
            .inner
            .call("stream append", move |log, e| log.append(e, &name, &data))
            .await??;
        self.inner.appended.fetch_add(1, Ordering::Relaxed);
        self.inner.signals.wake(stream);
        Ok(offset)
    }

    async fn read(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        self.inner.read_now(stream, after, limit).await
    }

    async fn subscribe(&self, stream: &str, from: StartAt) -> Result<Subscription> {
        follow(self.inner.clone(), stream, from, &self.inner.followers).await
    }

    async fn close(&self, stream: &str, reason: &str) -> Result<()> {
        let (name, reason) = (stream.to_string(), reason.to_string());
        self.inner
            .call("stream close", move |log, e| log.close(e, &name, &reason))
            .await?;
        self.inner.signals.wake(stream);
        Ok(())
    }

    async fn delete(&self, stream: &str) -> Result<bool> {
        let name = stream.to_string();
        let existed = self
            .inner
            .call("stream delete", move |log, e| log.delete(e, &name))
            .await?;
        // dropping the wake-up sender ends the subscribers
        self.inner.signals.forget(stream);
        Ok(existed)
    }

    async fn cancel(&self, run: &str) -> Result<()> {
        let name = run.to_string();
        self.inner
            .call("stream cancel", move |log, e| log.cancel(e, &name))
            .await?;
        self.inner.signals.cancel(run);
        Ok(())
    }

    async fn cancellation(&self, run: &str) -> Result<Cancellation> {
        let name = run.to_string();
        let stored = self
            .inner
            .call("stream read", move |log, e| log.cancelled(e, &name));
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
