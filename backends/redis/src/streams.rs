//! Event streams on Redis Streams: every process and host sharing the
//! Redis sees every event.
//!
//! A stream is one Redis stream, `{prefix}:~s:{len}:{name}` (one key, so on
//! a cluster one slot), its offsets Redis's own ids (`ms-seq`). Closing
//! appends a last entry whose field is `end` (the reason), so "append
//! unless closed" is one script on one key; appends made to one stream at
//! the same moment share that script call (`stream_appends`). Retention is `MAXLEN` (and
//! `MINID` for an age) at every append; `XINFO STREAM`'s
//! `max-deleted-entry-id` tells a reader that events after its offset were
//! trimmed. Cancellations are a stream per run, `{prefix}:~x:{len}:{run}`.
//!
//! Subscribers are woken by one watcher task per followed stream in this
//! process, blocking in `XREAD BLOCK` on a connection of its own (never the
//! shared multiplexed one), at most [`MAX_WATCHERS`] at a time; a watcher
//! reconnects by itself after Redis restarts and wakes its subscribers,
//! which then read on from their last offset.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use persistence_core::backend::{Health, Stats};
use persistence_core::streams::{
    follow, Cancellation, Event, EventPage, EventStreams, Followers, Offset, Retention, StartAt,
    Subscription, Tail,
};
use persistence_core::{Error, Result};
use redis::{Script, Value};
use tokio::sync::{watch, Semaphore};

use crate::backend::RedisBackend;
use crate::conn::Conn;
use crate::options::RedisOptions;

/// Streams followed live at once by this process (each holds a connection).
pub const MAX_WATCHERS: usize = 64;

/// How long one `XREAD BLOCK` waits before the watcher looks again.
const BLOCK_MS: u64 = 2000;

/// KEYS: the stream. ARGV: reason. Appends the end unless there is one.
static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] and last[1][2][1] == 'end' then return 0 end
redis.call('XADD', KEYS[1], '*', 'end', ARGV[1])
return 1
"#,
    )
});

/// KEYS: the stream. ARGV: after (exclusive id), count.
/// Returns {max deleted id, last event id, entries, close reason or ''}
/// (ids '0-0' when none); the end entry is never among the entries.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', '0-0', {}, ''} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local deleted = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
end
local reason, last = '', '0-0'
local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 2)
for _, e in ipairs(tail) do
  if e[2][1] == 'end' then reason = e[2][2] elseif last == '0-0' then last = e[1] end
end
local entries = {}
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])) do
  if e[2][1] ~= 'end' then entries[#entries + 1] = e end
end
return {deleted, last, entries, reason}
"#,
    )
});

fn lp(s: &str) -> String {
    format!("{}:{s}", s.len())
}

pub(crate) fn parse_id(id: &str) -> Result<Offset> {
    id.parse().map_err(|_| Error::Internal {
        backend: "redis".into(),
        message: format!("unexpected stream id {id:?}"),
    })
}

/// Event streams on the Redis a [`RedisBackend`] talks to. Made by
/// [`RedisBackend::streams`].
#[derive(Clone)]
pub struct RedisStreams {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreams")
            .field("retention", &self.inner.retention)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) backend: RedisBackend,
    pub(crate) retention: Retention,
    /// Per followed stream (and run): the wake-up sender its watcher feeds.
    wakes: Senders<()>,
    cancels: Senders<bool>,
    watchers: Arc<Semaphore>,
    /// Options for the watchers' own connections (a reply timeout longer
    /// than a block).
    blocking: RedisOptions,
    followers: Followers,
    pub(crate) appended: AtomicU64,
    /// Append script calls (one carries every append of its batch).
    pub(crate) append_calls: AtomicU64,
    pub(crate) batches: crate::stream_appends::Batches,
}

impl RedisBackend {
    /// Event streams on this Redis, each stream keeping what `retention`
    /// allows.
    pub fn streams(&self, retention: Retention) -> RedisStreams {
        let mut blocking = (*self.options).clone();
        blocking.command_timeout = Duration::from_millis(BLOCK_MS) + self.options.command_timeout;
        RedisStreams {
            inner: Arc::new(Inner {
                backend: self.clone(),
                retention,
                wakes: Mutex::new(HashMap::new()),
                cancels: Mutex::new(HashMap::new()),
                watchers: Arc::new(Semaphore::new(MAX_WATCHERS)),
                blocking,
                followers: Followers::new(),
                appended: AtomicU64::new(0),
                append_calls: AtomicU64::new(0),
                batches: Default::default(),
            }),
        }
    }
}

impl Inner {
    fn key(&self, stream: &str) -> String {
        format!("{}:~s:{}", self.backend.layout.prefix(), lp(stream))
    }

    fn cancel_key(&self, run: &str) -> String {
        format!("{}:~x:{}", self.backend.layout.prefix(), lp(run))
    }

    pub(crate) fn error(&self, op: &str, e: redis::RedisError) -> Error {
        self.backend.error(op, e)
    }

    async fn read_now(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        let mut con = self.backend.con.clone();
        let (deleted, last, entries, reason): (String, String, Vec<Value>, String) = READ
            .key(self.key(stream))
            .arg(after.to_string())
            .arg(limit.max(1))
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("stream read", e))?;
        let deleted = parse_id(&deleted)?;
        if after != Offset::START && after < deleted {
            let oldest = entries
                .first()
                .and_then(|e| redis::from_redis_value::<(String, Vec<String>)>(e.clone()).ok())
                .map_or_else(|| "none kept".to_string(), |(id, _)| id);
            return Err(Error::EventsMissed {
                stream: stream.to_string(),
                after: after.to_string(),
                oldest,
            });
        }
        let mut page = EventPage {
            last: parse_id(&last)?,
            ..EventPage::default()
        };
        for entry in entries {
            let (id, fields): (String, Vec<Vec<u8>>) =
                redis::from_redis_value(entry).map_err(|e| Error::Internal {
                    backend: "redis".into(),
                    message: format!("stream read: unexpected reply: {e}"),
                })?;
            page.events.push(Event {
                offset: parse_id(&id)?,
                data: Bytes::from(fields.into_iter().nth(1).unwrap_or_default()),
            });
        }
        // the end comes with the page that holds the last event (a full
        // page may: nothing after it), or with an empty page after it
        let reaches_end = page.events.last().map_or(after, |e| e.offset) >= page.last;
        page.end = (reaches_end && !reason.is_empty()).then_some(reason);
        Ok(page)
    }

    /// Subscribes to the wake-ups of `key` (a stream, or a run's
    /// cancellations), starting its watcher if none runs.
    fn watch_key<T: Clone + Send + Sync + 'static>(
        self: &Arc<Self>,
        kind: Kind<T>,
        key: String,
    ) -> (watch::Sender<T>, watch::Receiver<T>) {
        let mut map = kind.map(self).lock();
        if let Some(sender) = map.get(&key) {
            return (sender.clone(), sender.subscribe());
        }
        let (sender, receiver) = watch::channel(kind.initial.clone());
        map.insert(key.clone(), sender.clone());
        let inner = self.clone();
        // the watcher holds a receiver, not a sender: a delete that drops
        // the map's sender ends this process's subscribers at once
        let own = sender.subscribe();
        tokio::spawn(async move { inner.watcher(kind, key, own).await });
        (sender, receiver)
    }

    /// Blocks in `XREAD` on a connection of its own and signals every new
    /// entry of `key`, until nobody listens; reconnects after failures and
    /// then wakes the readers, which read on from their last offset.
    async fn watcher<T: Clone + Send + Sync + 'static>(
        self: Arc<Self>,
        kind: Kind<T>,
        key: String,
        own: watch::Receiver<T>,
    ) {
        let Ok(_permit) = self.watchers.clone().acquire_owned().await else {
            return;
        };
        let mut backoff = Duration::from_millis(50);
        'connect: loop {
            if self.unwatched(&kind, &key, &own) {
                return;
            }
            let Ok(backend) = RedisBackend::connect(self.blocking.clone()).await else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            };
            let mut con: Conn = backend.con.clone();
            // block from the newest entry now, and wake the readers once,
            // so anything before it is read (see `streams::follow`)
            let last: redis::RedisResult<Vec<(String, Vec<Vec<u8>>)>> = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut con)
                .await;
            let Ok(last) = last else {
                tokio::time::sleep(backoff).await;
                continue;
            };
            let mut from = last.first().map_or("0-0".to_string(), |(id, _)| id.clone());
            if kind.wake_on_start || !last.is_empty() {
                self.signal(&kind, &key, &own);
            }
            backoff = Duration::from_millis(50);
            loop {
                if self.unwatched(&kind, &key, &own) {
                    return;
                }
                type Reply = Option<Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>>;
                let read: redis::RedisResult<Reply> = redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(BLOCK_MS)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(&from)
                    .query_async(&mut con)
                    .await;
                match read {
                    Ok(Some(streams)) => {
                        if let Some((id, _)) = streams.into_iter().flat_map(|(_, e)| e).last() {
                            from = id;
                            self.signal(&kind, &key, &own);
                        }
                    }
                    Ok(None) => {}
                    Err(_) => {
                        tokio::time::sleep(backoff).await;
                        continue 'connect;
                    }
                }
            }
        }
    }

    /// The sender of `key` this watcher feeds, if it is still the map's.
    fn sender<'a, T>(
        map: &'a HashMap<String, watch::Sender<T>>,
        key: &str,
        own: &watch::Receiver<T>,
    ) -> Option<&'a watch::Sender<T>> {
        map.get(key).filter(|s| s.subscribe().same_channel(own))
    }

    fn signal<T: Clone>(&self, kind: &Kind<T>, key: &str, own: &watch::Receiver<T>) {
        let map = kind.map(self).lock();
        if let Some(sender) = Self::sender(&map, key, own) {
            sender.send_replace(kind.on_entry.clone());
        }
    }

    /// Whether nobody in this process listens to `key` any more (only the
    /// watcher's own receiver is left, or the stream was deleted); then its
    /// entry is removed, under the lock new listeners subscribe under.
    fn unwatched<T>(&self, kind: &Kind<T>, key: &str, own: &watch::Receiver<T>) -> bool {
        let mut map = kind.map(self).lock();
        match Self::sender(&map, key, own) {
            None => true,
            Some(sender) if sender.receiver_count() <= 1 => {
                map.remove(key);
                true
            }
            Some(_) => false,
        }
    }
}

/// Senders by key.
type Senders<T> = Mutex<HashMap<String, watch::Sender<T>>>;

/// What a watcher feeds: stream wake-ups, or a run's cancellation.
struct Kind<T> {
    initial: T,
    on_entry: T,
    /// Wake when (re)starting even without an entry (streams: re-read).
    wake_on_start: bool,
    map: fn(&Inner) -> &Senders<T>,
}

impl<T> Kind<T> {
    fn map<'a>(&self, inner: &'a Inner) -> &'a Senders<T> {
        (self.map)(inner)
    }
}

const STREAM: Kind<()> = Kind {
    initial: (),
    on_entry: (),
    wake_on_start: true,
    map: |i| &i.wakes,
};

const CANCEL: Kind<bool> = Kind {
    initial: false,
    on_entry: true,
    wake_on_start: false,
    map: |i| &i.cancels,
};

/// The `Tail` a subscription holds: reads, and wake-ups from the watcher.
struct TailHandle(Arc<Inner>);

#[async_trait]
impl Tail for TailHandle {
    async fn read_after(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        self.0.read_now(stream, after, limit).await
    }

    fn wake_ups(&self, stream: &str) -> watch::Receiver<()> {
        self.0.watch_key(STREAM, self.0.key(stream)).1
    }
}

#[async_trait]
impl EventStreams for RedisStreams {
    fn name(&self) -> &str {
        "redis"
    }

    async fn append(&self, stream: &str, data: Bytes) -> Result<Offset> {
        let key = self.inner.key(stream);
        crate::stream_appends::append(&self.inner, stream, key, data).await
    }

    async fn read(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        self.inner.read_now(stream, after, limit).await
    }

    async fn subscribe(&self, stream: &str, from: StartAt) -> Result<Subscription> {
        follow(
            Arc::new(TailHandle(self.inner.clone())),
            stream,
            from,
            &self.inner.followers,
        )
        .await
    }

    async fn close(&self, stream: &str, reason: &str) -> Result<()> {
        let mut con = self.inner.backend.con.clone();
        let _: i64 = CLOSE
            .key(self.inner.key(stream))
            .arg(reason)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.inner.error("stream close", e))?;
        Ok(())
    }

    async fn delete(&self, stream: &str) -> Result<bool> {
        let mut con = self.inner.backend.con.clone();
        let key = self.inner.key(stream);
        let n: i64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .map_err(|e| self.inner.error("stream delete", e))?;
        let _: i64 = redis::cmd("DEL")
            .arg(self.inner.cancel_key(stream))
            .query_async(&mut con)
            .await
            .map_err(|e| self.inner.error("stream delete", e))?;
        // this process's subscribers end; the watcher stops with them
        self.inner.wakes.lock().remove(&key);
        self.inner
            .cancels
            .lock()
            .remove(&self.inner.cancel_key(stream));
        Ok(n > 0)
    }

    async fn cancel(&self, run: &str) -> Result<()> {
        let mut con = self.inner.backend.con.clone();
        let _: String = redis::cmd("XADD")
            .arg(self.inner.cancel_key(run))
            .arg("MAXLEN")
            .arg(1)
            .arg("*")
            .arg("cancel")
            .arg(1)
            .query_async(&mut con)
            .await
            .map_err(|e| self.inner.error("cancel", e))?;
        if let Some(s) = self.inner.cancels.lock().get(&self.inner.cancel_key(run)) {
            s.send_replace(true);
        }
        Ok(())
    }

    async fn cancellation(&self, run: &str) -> Result<Cancellation> {
        let key = self.inner.cancel_key(run);
        // the watcher first: a cancel after it started wakes it; one
        // before it is found by the check below (or by the watcher's start)
        let (sender, signal) = self.inner.watch_key(CANCEL, key.clone());
        let mut con = self.inner.backend.con.clone();
        let n: i64 = redis::cmd("XLEN")
            .arg(&key)
            .query_async(&mut con)
            .await
            .map_err(|e| self.inner.error("cancellation", e))?;
        if n > 0 {
            sender.send_replace(true);
        }
        Ok(Cancellation::new(signal))
    }

    async fn health(&self) -> Health {
        let mut health = persistence_core::Backend::health(&self.inner.backend).await;
        health.details.insert(
            "streams_followed".into(),
            self.inner.wakes.lock().len().to_string(),
        );
        health
    }

    fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        let wakes = self.inner.wakes.lock();
        stats.set("streams_followed", wakes.len() as u64);
        stats.set(
            "events_appended",
            self.inner.appended.load(Ordering::Relaxed),
        );
        stats.set(
            "stream_append_calls",
            self.inner.append_calls.load(Ordering::Relaxed),
        );
        self.inner.followers.report(&mut stats);
        stats.set(
            "stream_watchers_free",
            self.inner.watchers.available_permits() as u64,
        );
        stats
    }
}
