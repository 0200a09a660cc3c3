//! Event streams in memory: one process, bounded by retention.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{
    follow, Cancellation, Event, EventPage, EventStreams, Followers, Offset, Retention, Signals,
    StartAt, Subscription, Tail,
};
use crate::backend::{Health, Stats};
use crate::error::{Error, Result};

/// Event streams in this process's memory.
///
/// Each stream keeps at most [`Retention::max_len`] events (and none older
/// than `max_age`); older ones are dropped as new ones come. Subscribers
/// read the shared buffer at their own pace, so a slow one never holds up
/// an appender or another subscriber: if it falls behind retention it gets
/// [`Error::EventsMissed`] naming the offset it reached. Closed streams stay
/// (readable, replayable) until [`delete`](EventStreams::delete).
#[derive(Debug, Clone)]
pub struct MemoryStreams {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    streams: Mutex<HashMap<String, StreamState>>,
    signals: Signals,
    retention: Retention,
    appended: AtomicU64,
    followers: Followers,
}

#[derive(Debug)]
struct StreamState {
    /// Kept events, oldest first, with when they came; their numbers are
    /// contiguous from `first`.
    events: VecDeque<(Event, Instant)>,
    /// Number of the oldest kept event (`next` when none is kept).
    first: u64,
    /// Number the next event gets.
    next: u64,
    closed: Option<String>,
    wake: watch::Sender<()>,
}

impl StreamState {
    fn new() -> Self {
        StreamState {
            events: VecDeque::new(),
            first: 1,
            next: 1,
            closed: None,
            wake: watch::channel(()).0,
        }
    }

    fn trim(&mut self, retention: &Retention) {
        let now = Instant::now();
        while let Some((_, at)) = self.events.front() {
            let too_many = self.events.len() as u64 > retention.max_len.max(1);
            let too_old = retention
                .max_age
                .is_some_and(|age| now.duration_since(*at) > age);
            if !(too_many || too_old) {
                break;
            }
            self.events.pop_front();
            self.first += 1;
        }
    }
}

impl MemoryStreams {
    /// Empty streams keeping what `retention` allows.
    pub fn new(retention: Retention) -> Self {
        MemoryStreams {
            inner: Arc::new(Inner {
                streams: Mutex::new(HashMap::new()),
                signals: Signals::new(),
                retention,
                appended: AtomicU64::new(0),
                followers: Followers::numbered(),
            }),
        }
    }
}

/// The `EventsMissed` error for a reader at `after` when the oldest kept
/// event is number `first`.
pub(crate) fn missed(stream: &str, after: Offset, first: u64) -> Error {
    Error::EventsMissed {
        stream: stream.to_string(),
        after: after.to_string(),
        oldest: Offset::nth(first).to_string(),
    }
}

#[async_trait]
impl Tail for Inner {
    async fn read_after(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        let streams = self.streams.lock();
        let Some(s) = streams.get(stream) else {
            return Ok(EventPage::default());
        };
        if after != Offset::START && after.seq + 1 < s.first {
            return Err(missed(stream, after, s.first));
        }
        let skip = (after.seq + 1).saturating_sub(s.first) as usize;
        let events: Vec<Event> = s
            .events
            .iter()
            .skip(skip)
            .take(limit.max(1))
            .map(|(e, _)| e.clone())
            .collect();
        let reaches_end = skip + events.len() >= s.events.len();
        Ok(EventPage {
            end: s.closed.clone().filter(|_| reaches_end),
            events,
            last: Offset::nth(s.next - 1),
        })
    }

    fn wake_ups(&self, stream: &str) -> watch::Receiver<()> {
        self.streams
            .lock()
            .entry(stream.to_string())
            .or_insert_with(StreamState::new)
            .wake
            .subscribe()
    }
}

#[async_trait]
impl EventStreams for MemoryStreams {
    fn name(&self) -> &str {
        "memory"
    }

    async fn append(&self, stream: &str, data: Bytes) -> Result<Offset> {
        let mut streams = self.inner.streams.lock();
        // the name is copied only the first time (appends are the hot path)
        if !streams.contains_key(stream) {
            streams.insert(stream.to_string(), StreamState::new());
        }
        let s = streams.get_mut(stream).expect("inserted above");
        if let Some(reason) = &s.closed {
            return Err(Error::StreamClosed {
                stream: stream.to_string(),
                reason: reason.clone(),
            });
        }
        let offset = Offset::nth(s.next);
        s.next += 1;
        s.events.push_back((Event { offset, data }, Instant::now()));
        s.trim(&self.inner.retention);
        // readable now: wake the subscribers
        s.wake.send_replace(());
        self.inner.appended.fetch_add(1, Ordering::Relaxed);
        Ok(offset)
    }

    async fn read(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        self.inner.read_after(stream, after, limit).await
    }

    async fn subscribe(&self, stream: &str, from: StartAt) -> Result<Subscription> {
        follow(self.inner.clone(), stream, from, &self.inner.followers).await
    }

    async fn close(&self, stream: &str, reason: &str) -> Result<()> {
        let mut streams = self.inner.streams.lock();
        let s = streams
            .entry(stream.to_string())
            .or_insert_with(StreamState::new);
        if s.closed.is_none() {
            s.closed = Some(reason.to_string());
            s.wake.send_replace(());
        }
        Ok(())
    }

    async fn delete(&self, stream: &str) -> Result<bool> {
        self.inner.signals.forget(stream);
        // dropping the state drops its wake-up sender: subscribers end
        Ok(self.inner.streams.lock().remove(stream).is_some())
    }

    async fn cancel(&self, run: &str) -> Result<()> {
        self.inner.signals.cancel(run);
        Ok(())
    }

    async fn cancellation(&self, run: &str) -> Result<Cancellation> {
        Ok(self.inner.signals.cancellation(run))
    }

    async fn health(&self) -> Health {
        let mut health = Health::ok("memory", "event streams in this process's memory");
        health.details.insert(
            "streams".into(),
            self.inner.streams.lock().len().to_string(),
        );
        health
    }

    fn stats(&self) -> Stats {
        let streams = self.inner.streams.lock();
        let mut stats = Stats::default();
        stats.set("streams", streams.len() as u64);
        self.inner.followers.report(&mut stats);
        stats.set(
            "events_appended",
            self.inner.appended.load(Ordering::Relaxed),
        );
        stats
    }
}
