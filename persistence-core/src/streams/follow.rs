//! The one subscription loop every engine runs: replay, then live, with no
//! gap and no duplicate.
//!
//! The loop keeps the offset of the last event it delivered and only ever
//! reads after it, so nothing is delivered twice. Before each read it
//! marks the stream's wake-up signal as seen; engines signal only after an
//! event is readable, so an append that lands after the read has signalled
//! after the mark and wakes the loop at once: nothing is missed, whether it
//! raced with the replay or came later.
//!
//! A retryable failure (the engine unavailable or slow: a restart, a
//! dropped connection) is yielded as an `Err` item and the subscription goes
//! on from the same offset, backing off from 50 ms to 2 s; any other error
//! ends it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{EventPage, Item, Offset, StartAt, Subscription};
use crate::error::Result;

/// Events read per round trip while catching up.
const BATCH: usize = 256;

/// First wait after a retryable failure; doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// What a subscription needs from an engine.
#[async_trait]
pub trait Tail: Send + Sync + 'static {
    /// Up to `limit` events after `after` (as [`EventStreams::read`](super::EventStreams::read)).
    async fn read_after(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage>;

    /// A signal that changes after every append to, close or delete of
    /// `stream`, sent only once what changed is readable; it is dropped
    /// (the receiver errors) when the stream is deleted or the engine goes.
    fn wake_ups(&self, stream: &str) -> watch::Receiver<()>;
}

/// An engine's live subscriptions and how far each is behind its stream,
/// for [`EventStreams::stats`](super::EventStreams::stats): every
/// subscription made by [`follow`] is counted while it lives.
///
/// A subscription's **lag** is the number of events appended to its stream
/// that it has not delivered yet, as of its last read. Engines that number
/// their events `1, 2, 3...` ([`Followers::numbered`]: memory, redb) count
/// it exactly; others (Redis's time-based ids) count what the subscription
/// has read ahead and not yet delivered, plus one while it knows of more: a
/// lower bound.
#[derive(Debug, Clone, Default)]
pub struct Followers {
    inner: Arc<FollowersInner>,
}

#[derive(Debug, Default)]
struct FollowersInner {
    numbered: bool,
    next: AtomicU64,
    lags: Mutex<HashMap<u64, Arc<AtomicU64>>>,
}

impl Followers {
    /// For an engine whose offsets are not consecutive numbers.
    pub fn new() -> Self {
        Followers::default()
    }

    /// For an engine that numbers events `1-0, 2-0, ...` with no holes.
    pub fn numbered() -> Self {
        Followers {
            inner: Arc::new(FollowersInner {
                numbered: true,
                ..Default::default()
            }),
        }
    }

    fn join(&self) -> Follower {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let lag = Arc::new(AtomicU64::new(0));
        self.inner.lags.lock().insert(id, lag.clone());
        Follower {
            followers: self.clone(),
            id,
            lag,
        }
    }

    /// Live subscriptions.
    pub fn count(&self) -> u64 {
        self.inner.lags.lock().len() as u64
    }

    /// The largest lag of a live subscription, and the sum of all.
    pub fn lag(&self) -> (u64, u64) {
        let lags = self.inner.lags.lock();
        lags.values()
            .map(|l| l.load(Ordering::Relaxed))
            .fold((0, 0), |(max, sum), l| (max.max(l), sum + l))
    }

    /// Sets `stream_subscribers`, `stream_lag_max` and `stream_lag_total`.
    pub fn report(&self, stats: &mut crate::backend::Stats) {
        let (max, total) = self.lag();
        stats.set("stream_subscribers", self.count());
        stats.set("stream_lag_max", max);
        stats.set("stream_lag_total", total);
    }
}

/// One subscription's place in its engine's [`Followers`]; leaves on drop.
struct Follower {
    followers: Followers,
    id: u64,
    lag: Arc<AtomicU64>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.followers.inner.lags.lock().remove(&self.id);
    }
}

struct State {
    tail: Arc<dyn Tail>,
    stream: String,
    cursor: Offset,
    wake: watch::Receiver<()>,
    pending: VecDeque<super::Event>,
    end: Option<String>,
    finished: bool,
    /// After a retryable failure: how long to wait before reading again.
    backoff: Option<Duration>,
    /// The stream's last offset as of the last read.
    known_last: Offset,
    follower: Follower,
}

impl State {
    /// Records how far behind the stream this subscription is.
    fn note_lag(&self) {
        let lag = if self.follower.followers.inner.numbered {
            self.known_last.seq.saturating_sub(self.cursor.seq)
        } else {
            let ahead = self.pending.back().map_or(self.cursor, |e| e.offset);
            self.pending.len() as u64 + u64::from(self.known_last > ahead)
        };
        self.follower.lag.store(lag, Ordering::Relaxed);
    }
}

/// The subscription to `stream` from `from` (for [`StartAt::Now`], after
/// the last event `tail` has now), counted in `followers` while it lives:
/// what every engine's [`EventStreams::subscribe`](super::EventStreams::subscribe) returns.
pub async fn follow(
    tail: Arc<dyn Tail>,
    stream: &str,
    from: StartAt,
    followers: &Followers,
) -> Result<Subscription> {
    let after = match from {
        StartAt::Beginning => Offset::START,
        StartAt::After(offset) => offset,
        StartAt::Now => tail.read_after(stream, Offset::START, 1).await?.last,
    };
    let state = State {
        known_last: after,
        follower: followers.join(),
        wake: tail.wake_ups(stream),
        tail,
        stream: stream.to_string(),
        cursor: after,
        pending: VecDeque::new(),
        end: None,
        finished: false,
        backoff: None,
    };
    Ok(Box::pin(futures::stream::unfold(
        state,
        |mut s| async move {
            loop {
                if s.finished {
                    return None;
                }
                if let Some(event) = s.pending.pop_front() {
                    s.cursor = event.offset;
                    s.note_lag();
                    return Some((Ok(Item::Event(event)), s));
                }
                if let Some(reason) = s.end.take() {
                    s.finished = true;
                    return Some((Ok(Item::End(reason)), s));
                }
                if let Some(wait) = s.backoff {
                    tokio::time::sleep(wait).await;
                }
                s.wake.borrow_and_update();
                match s.tail.read_after(&s.stream, s.cursor, BATCH).await {
                    Err(e) if e.is_retryable() => {
                        // the engine is away (a restart, a dropped connection):
                        // say so, then read on from the same offset, backing off
                        s.backoff = Some(s.backoff.map_or(FIRST_RETRY, |b| (b * 2).min(MAX_RETRY)));
                        return Some((Err(e), s));
                    }
                    Err(e) => {
                        s.finished = true;
                        return Some((Err(e), s));
                    }
                    Ok(page) if page.events.is_empty() && page.end.is_none() => {
                        s.backoff = None;
                        s.known_last = s.known_last.max(page.last);
                        s.note_lag();
                        if s.wake.changed().await.is_err() {
                            // the stream was deleted (or the engine dropped)
                            s.finished = true;
                            return Some((Ok(Item::End("deleted".into())), s));
                        }
                    }
                    Ok(page) => {
                        s.backoff = None;
                        s.known_last = s.known_last.max(page.last);
                        s.pending.extend(page.events);
                        s.end = page.end;
                        s.note_lag();
                    }
                }
            }
        },
    )))
}
