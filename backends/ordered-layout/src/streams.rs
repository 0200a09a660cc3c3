//! How run event streams are laid out in an ordered key space, and their
//! retention: shared by the embedded engines (redb tables, a sled tree).
//!
//! Each stream has one **meta** record (oldest kept event number, next
//! number, close reason) and its events under `lp(stream) seq` (8
//! big-endian bytes), so a stream's events are one contiguous, ordered
//! range. An event's value is the time it was appended (Unix ms, 8 bytes)
//! then its bytes. Events are numbered `1, 2, 3...` with no holes.

use persistence_core::streams::{Event, EventPage, Offset, Retention};
use persistence_core::{Error, Result};

/// One stream's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMeta {
    /// Number of the oldest event kept (`next` when none is).
    pub first: u64,
    /// Number the next event gets.
    pub next: u64,
    /// The close reason, once closed.
    pub closed: Option<String>,
}

impl Default for StreamMeta {
    fn default() -> Self {
        StreamMeta {
            first: 1,
            next: 1,
            closed: None,
        }
    }
}

impl StreamMeta {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.closed.as_ref().map_or(0, String::len));
        out.extend_from_slice(&self.first.to_be_bytes());
        out.extend_from_slice(&self.next.to_be_bytes());
        match &self.closed {
            None => out.push(0),
            Some(reason) => {
                out.push(1);
                out.extend_from_slice(reason.as_bytes());
            }
        }
        out
    }

    /// Reads the stored form; `Corrupted` naming the stream if damaged.
    pub fn decode(stream: &str, b: &[u8]) -> Result<StreamMeta> {
        let bad = || Error::Corrupted {
            namespace: "streams".into(),
            key: stream.into(),
            reason: "stream record is damaged".into(),
            len: b.len(),
        };
        if b.len() < 17 || b[16] > 1 {
            return Err(bad());
        }
        let first = u64::from_be_bytes(b[..8].try_into().map_err(|_| bad())?);
        let next = u64::from_be_bytes(b[8..16].try_into().map_err(|_| bad())?);
        if first == 0 || first > next {
            return Err(bad());
        }
        Ok(StreamMeta {
            first,
            next,
            closed: (b[16] == 1).then(|| String::from_utf8_lossy(&b[17..]).into_owned()),
        })
    }

    /// Applies `retention` after an append at `now_ms`: moves `first` past
    /// every event it removes, calling `remove(seq)` for each, and
    /// `appended_at(seq)` to learn an event's time when an age is set.
    pub fn trim(
        &mut self,
        retention: &Retention,
        now_ms: u64,
        mut appended_at: impl FnMut(u64) -> Result<u64>,
        mut remove: impl FnMut(u64) -> Result<()>,
    ) -> Result<()> {
        while self.first < self.next {
            let too_many = self.next - self.first > retention.max_len.max(1);
            let too_old = match retention.max_age {
                None => false,
                Some(age) => {
                    now_ms.saturating_sub(appended_at(self.first)?) > age.as_millis() as u64
                }
            };
            if !(too_many || too_old) {
                break;
            }
            remove(self.first)?;
            self.first += 1;
        }
        Ok(())
    }
}

/// The page of `stream` (bookkeeping `meta`, `None` if it does not exist)
/// after `after`, up to `limit` events: `EventsMissed` when retention removed
/// events after `after` (except from `START`: from the oldest kept).
/// `events(from, to, limit)` reads stored events `from..to` (event numbers)
/// as `(number, bytes)`, oldest first.
pub fn read_page(
    stream: &str,
    meta: Option<StreamMeta>,
    after: Offset,
    limit: usize,
    events: impl FnOnce(u64, u64, usize) -> Result<Vec<Event>>,
) -> Result<EventPage> {
    let Some(meta) = meta else {
        return Ok(EventPage::default());
    };
    if after != Offset::START && after.seq + 1 < meta.first {
        return Err(Error::EventsMissed {
            stream: stream.to_string(),
            after: after.to_string(),
            oldest: Offset::nth(meta.first).to_string(),
        });
    }
    let from = (after.seq + 1).max(meta.first);
    let events = if from < meta.next {
        events(from, meta.next, limit.max(1))?
    } else {
        Vec::new()
    };
    let reaches_end = events.last().map_or(from, |e| e.offset.seq + 1) >= meta.next;
    Ok(EventPage {
        end: meta.closed.filter(|_| reaches_end),
        events,
        last: Offset::nth(meta.next - 1),
    })
}

/// `lp(stream)`: the start of every key of the stream's events.
pub fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + stream.len() + 8);
    out.extend_from_slice(&(stream.len() as u32).to_be_bytes());
    out.extend_from_slice(stream.as_bytes());
    out
}

/// The key of event number `seq` of `stream`.
pub fn event_key(stream: &str, seq: u64) -> Vec<u8> {
    let mut out = stream_prefix(stream);
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The event number at the end of an event key.
pub fn event_seq(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|at| key[at..].try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// An event's stored value: when it was appended, then its bytes.
pub fn event_value(now_ms: u64, data: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + data.len());
    value.extend_from_slice(&now_ms.to_be_bytes());
    value.extend_from_slice(data);
    value
}

/// When a stored event was appended (Unix ms; 0 if the value is damaged).
pub fn event_time(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// A stored event's bytes.
pub fn event_data(value: &[u8]) -> &[u8] {
    value.get(8..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_damage_is_corrupted() {
        let meta = StreamMeta {
            first: 3,
            next: 9,
            closed: Some("error: ü".into()),
        };
        assert_eq!(StreamMeta::decode("s", &meta.encode()).unwrap(), meta);
        for bad in [&b"short"[..], &[0u8; 17][..], &[9u8; 20][..]] {
            assert!(StreamMeta::decode("s", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trim_keeps_the_newest_and_the_young() {
        let mut meta = StreamMeta {
            first: 1,
            next: 11,
            closed: None,
        };
        let mut removed = Vec::new();
        let keep_5 = Retention {
            max_len: 5,
            max_age: None,
        };
        meta.trim(
            &keep_5,
            0,
            |_| unreachable!(),
            |s| {
                removed.push(s);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!((meta.first, removed), (6, vec![1, 2, 3, 4, 5]));
        let young = Retention {
            max_len: 100,
            max_age: Some(std::time::Duration::from_millis(10)),
        };
        // events 6..=10 appended at 6..=10 ms; at 18 ms, older than 10 ms: 6, 7
        meta.trim(&young, 18, Ok, |_| Ok(())).unwrap();
        assert_eq!(meta.first, 8);
        assert_eq!(event_seq(&event_key("a:b", 42)), 42);
        let v = event_value(7, b"xy");
        assert_eq!((event_time(&v), event_data(&v)), (7, &b"xy"[..]));
    }
}
