//! The export format: JSON lines, one document per line.
//!
//! ```text
//! {"namespace":"task","key":"t-1","value":{...},"ttl_ms":null,"index":[{"index":"request_index","term":"r-1"}]}
//! ```
//!
//! The bytes travel exactly: `value` when they are JSON written compactly
//! (they re-serialize to the same bytes), else `text` (UTF-8, as is), else
//! `hex`. A document whose bytes are not JSON at all (every typed store
//! writes JSON) is flagged `"corrupted": true` and exported all the same.

use bytes::Bytes;
use persistence_core::backend::{ExportEntry, IndexTerm};
use serde::{Deserialize, Serialize};

/// One exported document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Its namespace.
    pub namespace: String,
    /// Its key.
    pub key: String,
    /// Its bytes as JSON, when they are exactly the compact form of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Its bytes as text, when they are UTF-8 but not compact JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Its bytes in hex, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    /// The bytes are not JSON: kept for inspection, never dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub corrupted: bool,
    /// Milliseconds it had left to live when exported (`None`: no TTL).
    pub ttl_ms: Option<u64>,
    /// Its index terms.
    pub index: Vec<IndexTerm>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Line {
    /// The line of `entry` in `namespace`, its TTL counted from `now`;
    /// `None` if it expired already.
    pub fn of(namespace: &str, entry: &ExportEntry, now: std::time::SystemTime) -> Option<Line> {
        let ttl_ms = match entry.document.expires_at {
            None => None,
            Some(at) => Some(at.duration_since(now).ok()?.as_millis().max(1) as u64),
        };
        let bytes = &entry.document.value;
        let parsed = serde_json::from_slice::<serde_json::Value>(bytes).ok();
        let exact = parsed
            .as_ref()
            .is_some_and(|v| serde_json::to_vec(v).ok().as_deref() == Some(&bytes[..]));
        let (value, text, hex_bytes) = match (exact, std::str::from_utf8(bytes)) {
            (true, _) => (parsed.clone(), None, None),
            (false, Ok(t)) => (None, Some(t.to_string()), None),
            (false, Err(_)) => (None, None, Some(hex(bytes))),
        };
        Some(Line {
            namespace: namespace.to_string(),
            key: entry.key.clone(),
            value,
            text,
            hex: hex_bytes,
            corrupted: parsed.is_none(),
            ttl_ms,
            index: entry.index.clone(),
        })
    }

    /// The document's bytes, exactly as exported; `Err` says what is wrong
    /// with the line.
    pub fn bytes(&self) -> Result<Bytes, String> {
        match (&self.value, &self.text, &self.hex) {
            (Some(v), None, None) => serde_json::to_vec(v)
                .map(Bytes::from)
                .map_err(|e| e.to_string()),
            (None, Some(t), None) => Ok(Bytes::from(t.clone().into_bytes())),
            (None, None, Some(h)) => unhex(h)
                .map(Bytes::from)
                .ok_or_else(|| "hex is not an even run of hex digits".to_string()),
            _ => Err("a line has exactly one of value, text and hex".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persistence_core::backend::{Document, Version};
    use std::time::{Duration, SystemTime};

    fn entry(bytes: &[u8], ttl: Option<Duration>) -> ExportEntry {
        let now = SystemTime::now();
        ExportEntry {
            key: "k".into(),
            document: Document {
                value: Bytes::copy_from_slice(bytes),
                version: Version(1),
                created: 1,
                expires_at: ttl.map(|t| now + t),
            },
            index: vec![IndexTerm::new("i", "t")],
        }
    }

    #[test]
    fn bytes_travel_exactly_whatever_they_are() {
        let now = SystemTime::now();
        for bytes in [
            &b"{\"a\":1,\"b\":[true,null]}"[..],
            b"{ \"spaced\": 1 }",
            b"1.0",
            b"not json at all",
            b"\xff\xfe\x00binary",
            b"",
        ] {
            let line = Line::of("ns", &entry(bytes, None), now).unwrap();
            let text = serde_json::to_string(&line).unwrap();
            let back: Line = serde_json::from_str(&text).unwrap();
            assert_eq!(back.bytes().unwrap(), bytes, "{text}");
            let is_json = serde_json::from_slice::<serde_json::Value>(bytes).is_ok();
            assert_eq!(back.corrupted, !is_json, "{text}");
        }
    }

    #[test]
    fn ttl_is_what_is_left_and_expired_documents_are_skipped() {
        let now = SystemTime::now();
        let line = Line::of("ns", &entry(b"{}", Some(Duration::from_secs(60))), now).unwrap();
        assert!(line.ttl_ms.unwrap() > 59_000 && line.ttl_ms.unwrap() <= 60_000);
        let mut gone = entry(b"{}", None);
        gone.document.expires_at = Some(now - Duration::from_secs(1));
        assert!(Line::of("ns", &gone, now).is_none());
    }

    #[test]
    fn a_line_with_two_forms_or_bad_hex_is_refused() {
        let mut line = Line::of("ns", &entry(b"{}", None), SystemTime::now()).unwrap();
        line.text = Some("{}".into());
        assert!(line.bytes().is_err());
        line.value = None;
        line.text = None;
        line.hex = Some("abc".into());
        assert!(line.bytes().is_err());
    }
}
