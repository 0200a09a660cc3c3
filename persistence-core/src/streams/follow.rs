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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{EventPage, Item, Offset, Subscription};
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
}

/// The subscription to `stream` from the first event after `after`.
pub fn follow(tail: Arc<dyn Tail>, stream: &str, after: Offset) -> Subscription {
    let state = State {
        wake: tail.wake_ups(stream),
        tail,
        stream: stream.to_string(),
        cursor: after,
        pending: VecDeque::new(),
        end: None,
        finished: false,
        backoff: None,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.finished {
                return None;
            }
            if let Some(event) = s.pending.pop_front() {
                s.cursor = event.offset;
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
                    if s.wake.changed().await.is_err() {
                        // the stream was deleted (or the engine dropped)
                        s.finished = true;
                        return Some((Ok(Item::End("deleted".into())), s));
                    }
                }
                Ok(page) => {
                    s.backoff = None;
                    s.pending.extend(page.events);
                    s.end = page.end;
                }
            }
        }
    }))
}
