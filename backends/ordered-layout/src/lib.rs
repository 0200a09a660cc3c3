//! How documents and their index entries are laid out in one ordered key
//! space: a sled tree, a redb table.
//!
//! One key space, so that a document and all its entries change in one
//! atomic batch or transaction. Each key starts with a tag byte saying what it is, and is
//! built from length-prefixed components so that no two `(namespace, key)`
//! or `(namespace, index, term)` can collide, whatever bytes they contain
//! (`docs/embedded-engines.md` draws the layout):
//!
//! | tag | key | value |
//! |---|---|---|
//! | `d` document | `d lp(ns) key` | [`Record`] |
//! | `i` index entry | `i lp(ns) lp(index) lp(term) created` | `expires key` |
//! | `c` creation order | `c lp(ns) created` | `expires key` |
//! | `e` expiry | `e expires lp(ns) created` | `key` |
//!
//! `lp(s)` is `s`'s length as 4 big-endian bytes, then `s`; `created` and
//! `expires` (Unix milliseconds, 0 = never) are 8 big-endian bytes, so
//! entries sort by creation and by expiry.

#![warn(missing_docs)]

pub mod handles;
pub mod streams;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use persistence_core::backend::{Document, IndexTerm, Version};

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When something written at `now` with `ttl` expires (0 = never).
pub fn expires_ms(now: u64, ttl: Option<Duration>) -> u64 {
    match ttl {
        None => 0,
        // at least 1 ms, so a TTL is never "forever"
        Some(ttl) => now.saturating_add((ttl.as_millis() as u64).max(1)),
    }
}

/// Version of the record format, first byte of every record.
const RECORD_FORMAT: u8 = 1;
const HEADER: usize = 1 + 8 + 8 + 8 + 4;

fn push_lp(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Tag of document keys.
pub const DOC: u8 = b'd';
/// Tag of index entries.
pub const INDEX: u8 = b'i';
/// Tag of creation-order entries.
pub const CREATED: u8 = b'c';
/// Tag of expiry entries.
pub const EXPIRY: u8 = b'e';

/// `tag lp(ns)`: the prefix of every key of one kind in a namespace.
pub fn ns_prefix(tag: u8, ns: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + ns.len());
    out.push(tag);
    push_lp(&mut out, ns.as_bytes());
    out
}

/// Key of a document.
pub fn doc_key(ns: &str, key: &str) -> Vec<u8> {
    let mut out = ns_prefix(DOC, ns);
    out.extend_from_slice(key.as_bytes());
    out
}

/// Prefix of the index entries for one term.
pub fn term_prefix(ns: &str, index: &str, term: &str) -> Vec<u8> {
    let mut out = ns_prefix(INDEX, ns);
    push_lp(&mut out, index.as_bytes());
    push_lp(&mut out, term.as_bytes());
    out
}

/// The namespace of a document key, and the first key after every
/// document of that namespace (where the next namespace's start): what a
/// walk over namespaces jumps by. `None` for a key that is not a
/// document's.
pub fn doc_namespace(k: &[u8]) -> Option<(String, Vec<u8>)> {
    if k.first() != Some(&DOC) || k.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes(k[1..5].try_into().expect("4 bytes")) as usize;
    let ns = std::str::from_utf8(k.get(5..5 + len)?).ok()?.to_string();
    let mut next = ns_prefix(DOC, &ns);
    // the successor of the prefix: every key that starts with it is below
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some((ns, next));
        }
    }
    Some((ns, vec![DOC + 1]))
}

/// The first key a walk over every namespace's documents starts at.
pub fn first_doc_key() -> Vec<u8> {
    vec![DOC]
}

/// Key of an index entry.
pub fn index_key(ns: &str, term: &IndexTerm, created: u64) -> Vec<u8> {
    let mut out = term_prefix(ns, &term.index, &term.term);
    out.extend_from_slice(&created.to_be_bytes());
    out
}

/// Key of a creation-order entry.
pub fn created_key(ns: &str, created: u64) -> Vec<u8> {
    let mut out = ns_prefix(CREATED, ns);
    out.extend_from_slice(&created.to_be_bytes());
    out
}

/// Key of an expiry entry.
pub fn expiry_key(expires: u64, ns: &str, created: u64) -> Vec<u8> {
    let mut out = vec![EXPIRY];
    out.extend_from_slice(&expires.to_be_bytes());
    push_lp(&mut out, ns.as_bytes());
    out.extend_from_slice(&created.to_be_bytes());
    out
}

/// Splits an expiry key into `(expires, namespace, created)`.
pub fn parse_expiry_key(k: &[u8]) -> Option<(u64, String, u64)> {
    let k = k.strip_prefix(&[EXPIRY])?;
    let expires = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let len = u32::from_be_bytes(k.get(8..12)?.try_into().ok()?) as usize;
    let ns = std::str::from_utf8(k.get(12..12 + len)?).ok()?.to_string();
    let created = u64::from_be_bytes(k.get(12 + len..20 + len)?.try_into().ok()?);
    Some((expires, ns, created))
}

/// Value of index and creation-order entries: `expires key`.
pub fn pointer(expires: u64, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

/// Splits a pointer into `(expires, key)`.
pub fn parse_pointer(v: &[u8]) -> Option<(u64, &str)> {
    let expires = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    Some((expires, std::str::from_utf8(&v[8..]).ok()?))
}

/// Whether something expiring at `expires` (0 = never) is still live at `now`.
pub fn live(expires: u64, now: u64) -> bool {
    expires == 0 || expires > now
}

/// A stored document: its metadata, its index terms and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Version of this write.
    pub version: u64,
    /// Creation stamp: the version of the write that created the document.
    pub created: u64,
    /// Unix milliseconds, 0 = never.
    pub expires: u64,
    /// Index terms, deduplicated.
    pub terms: Vec<IndexTerm>,
    /// The document's bytes.
    pub value: &'a [u8],
}

impl<'a> Record<'a> {
    /// The document this record holds.
    pub fn document(&self) -> Document {
        Document {
            value: Bytes::copy_from_slice(self.value),
            version: Version(self.version),
            created: self.created,
            expires_at: (self.expires != 0)
                .then(|| UNIX_EPOCH + Duration::from_millis(self.expires)),
        }
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let terms_len: usize = self
            .terms
            .iter()
            .map(|t| 8 + t.index.len() + t.term.len())
            .sum();
        let mut out = Vec::with_capacity(HEADER + terms_len + self.value.len());
        out.push(RECORD_FORMAT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.extend_from_slice(&(self.terms.len() as u32).to_be_bytes());
        for t in &self.terms {
            push_lp(&mut out, t.index.as_bytes());
            push_lp(&mut out, t.term.as_bytes());
        }
        out.extend_from_slice(self.value);
        out
    }

    /// Decodes a record, or says what is wrong with it.
    pub fn decode(bytes: &'a [u8]) -> Result<Record<'a>, String> {
        if bytes.len() < HEADER {
            return Err(format!(
                "record of {} bytes is shorter than its header",
                bytes.len()
            ));
        }
        if bytes[0] != RECORD_FORMAT {
            return Err(format!("unknown record format {}", bytes[0]));
        }
        let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let n_terms = u32::from_be_bytes(bytes[25..29].try_into().expect("4 bytes")) as usize;
        let mut at = HEADER;
        let read_lp = |at: &mut usize| -> Result<String, String> {
            let len_bytes = bytes.get(*at..*at + 4).ok_or("truncated index term")?;
            let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
            let s = bytes
                .get(*at + 4..*at + 4 + len)
                .ok_or("truncated index term")?;
            *at += 4 + len;
            String::from_utf8(s.to_vec()).map_err(|_| "index term is not UTF-8".to_string())
        };
        let mut terms = Vec::with_capacity(n_terms.min(1024));
        for _ in 0..n_terms {
            let index = read_lp(&mut at)?;
            let term = read_lp(&mut at)?;
            terms.push(IndexTerm { index, term });
        }
        Ok(Record {
            version: u64_at(1),
            created: u64_at(9),
            expires: u64_at(17),
            terms,
            value: &bytes[at..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_read_back_from_document_keys_and_skipped_in_one_step() {
        for ns in ["", "task", "a:b", "ünï"] {
            let k = doc_key(ns, "key");
            let (got, next) = doc_namespace(&k).unwrap();
            assert_eq!(got, ns);
            assert!(next.as_slice() > doc_key(ns, "\u{10FFFF}zzzz").as_slice());
            assert!(next.as_slice() <= doc_key(&format!("{ns}\0"), "").as_slice() || ns.is_empty());
        }
        assert_eq!(doc_namespace(&created_key("ns", 1)), None);
    }

    #[test]
    fn records_round_trip() {
        let r = Record {
            version: 7,
            created: 3,
            expires: 99,
            terms: vec![IndexTerm::new("i", "a:b"), IndexTerm::new("", "")],
            value: b"{\"x\":1}",
        };
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let good = Record {
            version: 1,
            created: 1,
            expires: 0,
            terms: vec![IndexTerm::new("index", "term")],
            value: b"v",
        }
        .encode();
        for cut in 0..good.len() - 1 {
            let _ = Record::decode(&good[..cut]); // must not panic
        }
        assert!(Record::decode(&good[..10]).is_err());
        assert!(Record::decode(&good[..HEADER + 6]).is_err());
        let mut bad = good.clone();
        bad[0] = 9;
        assert!(Record::decode(&bad).is_err());
    }

    #[test]
    fn keys_of_different_components_never_collide() {
        assert_ne!(doc_key("a", "bc"), doc_key("ab", "c"));
        assert_ne!(term_prefix("n", "a", "bc"), term_prefix("n", "ab", "c"));
        let t = |s: &str| term_prefix("n", "i", s);
        assert!(!t("ab").starts_with(&t("a")));
        let parsed = parse_expiry_key(&expiry_key(5, "n:s", 9)).unwrap();
        assert_eq!(parsed, (5, "n:s".to_string(), 9));
    }
}
