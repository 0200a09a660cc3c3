//! Run event streams: the `EventStreams` contract beside [`Backend`](crate::Backend).
//!
//! A worker appends each event of a run to the run's stream; any reader
//! replays what exists and follows what comes, from the beginning, after an
//! offset (a client's `Last-Event-ID`) or from now, with no gap and no
//! duplicate however appends race with the switch from replay to live
//! ([`follow`] is the one loop every engine's subscriptions run). Closing a
//! stream ends every subscriber; retention bounds each stream, and a reader
//! that falls behind it gets [`Error::EventsMissed`], never a silent skip.
//! `docs/streams.md` states what each engine promises.
//!
//! ```
//! use futures::StreamExt;
//! use persistence_core::streams::{EventStreams, Item, MemoryStreams, StartAt};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let streams = MemoryStreams::new(Default::default());
//! let first = streams.append("run-1", "hello".into()).await.unwrap();
//! let mut events = streams.subscribe("run-1", StartAt::Beginning).await.unwrap();
//! streams.append("run-1", "world".into()).await.unwrap();
//! streams.close("run-1", "success").await.unwrap();
//! let mut seen = Vec::new();
//! while let Some(item) = events.next().await {
//!     match item.unwrap() {
//!         Item::Event(e) => seen.push(e.data),
//!         Item::End(reason) => assert_eq!(reason, "success"),
//!     }
//! }
//! assert_eq!(seen, ["hello", "world"]);
//! assert_eq!(first.to_string().parse::<persistence_core::streams::Offset>().unwrap(), first);
//! # });
//! ```

mod follow;
mod memory;
mod signals;
mod typed;

pub use follow::{follow, Followers, Tail};
pub use memory::MemoryStreams;
pub use signals::Signals;
pub use typed::{JsonStreams, TypedItem, TypedSubscription};

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::backend::{Health, Stats};
use crate::error::{Error, Result};

/// The position of an event in its stream: strictly increasing within a
/// stream, comparable, printed `SEQ-SUB` and parsed back (so a client can
/// send it as `Last-Event-ID`). Embedded engines and memory number events
/// `1-0`, `2-0`, ...; Redis uses its stream ids (`ms-seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset {
    /// The major part (the event number, or Redis's milliseconds).
    pub seq: u64,
    /// The minor part (0, or Redis's sequence within a millisecond).
    pub sub: u64,
}

impl Offset {
    /// Before every event: reading after it reads from the beginning.
    pub const START: Offset = Offset { seq: 0, sub: 0 };

    /// The offset of event number `n` (engines that number events).
    pub const fn nth(n: u64) -> Offset {
        Offset { seq: n, sub: 0 }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.seq, self.sub)
    }
}

impl FromStr for Offset {
    type Err = Error;

    /// `SEQ-SUB`, or `SEQ` alone (sub 0).
    fn from_str(s: &str) -> Result<Offset> {
        let bad = || Error::InvalidInput(format!("{s:?} is not an event offset (SEQ-SUB)"));
        let (seq, sub) = s.split_once('-').unwrap_or((s, "0"));
        Ok(Offset {
            seq: seq.parse().map_err(|_| bad())?,
            sub: sub.parse().map_err(|_| bad())?,
        })
    }
}

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Where it is in its stream.
    pub offset: Offset,
    /// Its bytes.
    pub data: Bytes,
}

/// What a subscription yields: events, then the end the stream was closed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The next event.
    Event(Event),
    /// The stream was closed with this reason (`success`, `error: ...`,
    /// `cancelled`); the subscription finishes after it.
    End(String),
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest event still kept.
    Beginning,
    /// The first event after this offset (a reconnecting client's last).
    After(Offset),
    /// The first event appended after the subscription was made.
    Now,
}

/// A page of events read after an offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventPage {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// The close reason, when the stream is closed and this page reaches
    /// its end (nothing after the last event returned).
    pub end: Option<String>,
    /// The last offset appended so far (`START` if none).
    pub last: Offset,
}

/// A live subscription: events in order, each once, then the end.
pub type Subscription = Pin<Box<dyn Stream<Item = Result<Item>> + Send>>;

/// How much of each stream an engine keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most events kept per stream; older ones are removed as new ones come.
    pub max_len: u64,
    /// Events older than this are removed (checked as new ones come).
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    /// 10,000 events per stream, no age limit.
    fn default() -> Self {
        Retention {
            max_len: 10_000,
            max_age: None,
        }
    }
}

/// The event-stream contract every engine implements.
///
/// Guarantees (the stream conformance suite checks them):
/// - **Order**: offsets strictly increase within a stream; every reader
///   sees events in append order.
/// - **No gap, no duplicate**: a subscription delivers every event after
///   its start exactly once, however appends race with it, until the end
///   or an error.
/// - **Close** ends every subscription with [`Item::End`]; appending to a
///   closed stream fails with [`Error::StreamClosed`].
/// - **Retention** is never silent: a reader that needs events retention
///   removed gets [`Error::EventsMissed`].
/// - **Cancellation** sent before anyone listens is kept for the listener.
#[async_trait]
pub trait EventStreams: Send + Sync + fmt::Debug + 'static {
    /// The engine's name.
    fn name(&self) -> &str;

    /// Appends an event and returns its offset.
    async fn append(&self, stream: &str, data: Bytes) -> Result<Offset>;

    /// Up to `limit` events after `after`; [`Error::EventsMissed`] when
    /// retention removed events after `after` (except from `START`, which
    /// means "from the oldest kept").
    async fn read(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage>;

    /// Replays from `from`, then follows live appends, then the end. A
    /// retryable failure on the way is yielded as an `Err` item and the
    /// subscription goes on from the same offset; other errors end it.
    async fn subscribe(&self, stream: &str, from: StartAt) -> Result<Subscription>;

    /// Closes the stream with a reason (the run's outcome).
    async fn close(&self, stream: &str, reason: &str) -> Result<()>;

    /// Removes the stream, its events and its run's cancellation; returns
    /// whether it existed. Its subscribers end with `Item::End("deleted")`.
    async fn delete(&self, stream: &str) -> Result<bool>;

    /// Asks whoever runs `run` to stop. Kept until the run's stream is
    /// deleted, so a worker that starts listening later still sees it.
    async fn cancel(&self, run: &str) -> Result<()>;

    /// The cancellation signal of `run`, to await or poll.
    async fn cancellation(&self, run: &str) -> Result<Cancellation>;

    /// How the engine is doing.
    async fn health(&self) -> Health;

    /// Counters: streams, events appended, live subscribers and their lag
    /// (`stream_subscribers`, `stream_lag_max`, `stream_lag_total`: see
    /// [`Followers`]).
    fn stats(&self) -> Stats {
        Stats::default()
    }
}

/// A shared, type-erased event-stream engine.
pub type SharedStreams = Arc<dyn EventStreams>;

/// A run's cancellation signal: poll [`is_cancelled`](Self::is_cancelled)
/// or await [`cancelled`](Self::cancelled).
#[derive(Debug, Clone)]
pub struct Cancellation {
    signal: tokio::sync::watch::Receiver<bool>,
}

impl Cancellation {
    /// A signal fed by `signal` (engines make these).
    pub fn new(signal: tokio::sync::watch::Receiver<bool>) -> Self {
        Cancellation { signal }
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once the run is cancelled (at once if it already was).
    /// Never resolves if the engine goes away without a cancel.
    pub async fn cancelled(&mut self) {
        if self.signal.wait_for(|c| *c).await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}
