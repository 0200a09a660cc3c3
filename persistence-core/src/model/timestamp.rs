//! Datetimes in the exact text form the Python system writes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time as the Python system (pydantic `datetime`) writes it.
///
/// The wire form is ISO 8601: `2025-11-03T14:07:21.512345`. Python keeps
/// microsecond precision and leaves the fraction out when it is zero, so
/// `2025-11-03T14:07:21` is written for a whole second. Values are naive (no
/// timezone) unless they were read with one: `...Z` and `...+02:00` are
/// accepted and written back the way they came (`+00:00` comes back as `Z`,
/// as pydantic writes it). Digits beyond microseconds are truncated on read.
///
/// ```
/// use persistence_core::model::Timestamp;
/// let t: Timestamp = "2025-11-03T14:07:21.512345".parse().unwrap();
/// assert_eq!(t.to_string(), "2025-11-03T14:07:21.512345");
/// let whole: Timestamp = "2025-11-03T14:07:21.000000".parse().unwrap();
/// assert_eq!(whole.to_string(), "2025-11-03T14:07:21");
/// let aware: Timestamp = "2025-11-03T14:07:21+02:00".parse().unwrap();
/// assert_eq!(aware.to_string(), "2025-11-03T14:07:21+02:00");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    local: NaiveDateTime,
    offset: Option<FixedOffset>,
}

impl Timestamp {
    /// The current UTC time as a naive timestamp, truncated to microseconds.
    pub fn now() -> Self {
        Self::from_naive(Utc::now().naive_utc())
    }

    /// A naive timestamp (no timezone), truncated to microseconds.
    pub fn from_naive(local: NaiveDateTime) -> Self {
        Timestamp {
            local: truncate_to_micros(local),
            offset: None,
        }
    }

    /// The wall-clock date and time, without the offset.
    pub fn naive(&self) -> NaiveDateTime {
        self.local
    }

    /// The UTC offset the value was read with, if it had one.
    pub fn offset(&self) -> Option<FixedOffset> {
        self.offset
    }
}

fn truncate_to_micros(t: NaiveDateTime) -> NaiveDateTime {
    let nanos = t.nanosecond();
    // Leap-second nanos (>= 1e9) keep their leap part; only sub-micro digits go.
    t.with_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

/// The text was not an ISO 8601 datetime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid datetime {text:?}: expected ISO 8601 such as 2025-11-03T14:07:21.512345")]
pub struct TimestampParseError {
    text: String,
}

impl FromStr for Timestamp {
    type Err = TimestampParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || TimestampParseError { text: text.into() };
        // Python accepts a space as well as `T` between date and time.
        let normalized;
        let s = if text.len() > 10 && text.as_bytes()[10] == b' ' {
            normalized = format!("{}T{}", &text[..10], &text[11..]);
            normalized.as_str()
        } else {
            text
        };
        let has_zone =
            s.ends_with('Z') || s.ends_with('z') || s.len() > 19 && s[19..].contains(['+', '-']);
        if has_zone {
            let aware = DateTime::<FixedOffset>::parse_from_rfc3339(s).map_err(|_| err())?;
            Ok(Timestamp {
                local: truncate_to_micros(aware.naive_local()),
                offset: Some(*aware.offset()),
            })
        } else {
            let naive: NaiveDateTime = s.parse().map_err(|_| err())?;
            Ok(Timestamp::from_naive(naive))
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Field by field: chrono's `format` re-reads a strftime string on
        // every call, which showed up as 12 % of a write in profiles.
        let (d, t) = (self.local.date(), self.local.time());
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            d.year(),
            d.month(),
            d.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        let micros = self.local.nanosecond() % 1_000_000_000 / 1_000;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        match self.offset {
            None => Ok(()),
            Some(o) if o.local_minus_utc() == 0 => f.write_str("Z"),
            Some(o) => {
                let secs = o.local_minus_utc();
                let sign = if secs < 0 { '-' } else { '+' };
                let secs = secs.abs();
                write!(f, "{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60)
            }
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 8601 datetime string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for text in [
            "2025-11-03T14:07:21.512345",
            "2025-11-03T14:07:21",
            "2025-11-03T14:07:21.000001",
            "2025-11-03T14:07:21Z",
            "2025-11-03T14:07:21.5Z",
            "2025-11-03T14:07:21.100000-05:30",
        ] {
            let t: Timestamp = text.parse().unwrap();
            let back = t.to_string();
            let again: Timestamp = back.parse().unwrap();
            assert_eq!(t, again, "{text}");
        }
        assert_eq!(
            "2025-11-03T14:07:21.5Z"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2025-11-03T14:07:21.500000Z"
        );
        assert_eq!(
            "2025-11-03T14:07:21+00:00"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2025-11-03T14:07:21Z"
        );
        assert_eq!(
            "2025-11-03 14:07:21.123456789"
                .parse::<Timestamp>()
                .unwrap()
                .to_string(),
            "2025-11-03T14:07:21.123456"
        );
    }

    #[test]
    fn garbage_is_rejected() {
        for text in [
            "",
            "yesterday",
            "2025-13-03T14:07:21",
            "2025-11-03T14:07:21+99",
        ] {
            assert!(text.parse::<Timestamp>().is_err(), "{text}");
        }
    }

    #[test]
    fn now_has_microsecond_precision() {
        assert_eq!(Timestamp::now().naive().nanosecond() % 1_000, 0);
    }
}
