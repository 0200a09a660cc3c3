//! A small binary encoding shared by everything that must carry a write
//! outside the process: the plugin envelope (`persistence-plugin-sdk`) and
//! the recovery queue's spill. Document bytes travel as they are.
//!
//! Numbers are little-endian; `bytes` and `str` are a u32 length then the
//! bytes. A precondition is a u8 tag (0 any, 1 absent, 2 present,
//! 3 version) then a u64 (the version, else 0). A write is its TTL in
//! milliseconds as a u64 (0 for none, at least 1 otherwise), a u32 count of
//! index terms, each term as `str index, str term`, then the value as
//! `bytes`.
//!
//! ```
//! use persistence_core::backend::{DocumentWrite, Precondition, Version};
//! use persistence_core::wire::{Reader, Writer};
//! use persistence_core::Error;
//!
//! let write = DocumentWrite::new(&b"{}"[..]).with_term("by", "r");
//! let mut w = Writer::default();
//! w.str("task").precondition(Precondition::Version(Version(7))).write(&write);
//! let bytes = w.finish();
//!
//! let mut r = Reader::new(&bytes, |what| Error::InvalidInput(what.to_string()));
//! assert_eq!(r.str().unwrap(), "task");
//! assert_eq!(r.precondition().unwrap(), Precondition::Version(Version(7)));
//! assert_eq!(r.write().unwrap(), write);
//! assert!(r.u8().is_err(), "reading past the end is an error, not a panic");
//! ```

use std::time::Duration;

use bytes::Bytes;

use crate::backend::{DocumentWrite, IndexTerm, Precondition, Version};
use crate::error::Error;

/// Writes the encoding into a growing buffer.
#[derive(Debug, Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    /// An empty buffer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer(Vec::with_capacity(n))
    }
    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
    /// A byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    /// A u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    /// A precondition.
    pub fn precondition(&mut self, p: Precondition) -> &mut Self {
        match p {
            Precondition::Any => self.u8(0).u64(0),
            Precondition::Absent => self.u8(1).u64(0),
            Precondition::Present => self.u8(2).u64(0),
            Precondition::Version(v) => self.u8(3).u64(v.0),
        }
    }
    /// A write: TTL, index terms, value.
    pub fn write(&mut self, write: &DocumentWrite) -> &mut Self {
        self.u64(write.ttl.map_or(0, |t| (t.as_millis() as u64).max(1)));
        self.u32(write.index.len() as u32);
        for t in &write.index {
            self.str(&t.index).str(&t.term);
        }
        self.bytes(&write.value)
    }
}

/// Reads the encoding; every read fails with the caller's error (made by
/// `malformed` from a short description) on truncated or invalid input.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    malformed: fn(&str) -> Error,
}

impl<'a> Reader<'a> {
    /// Reads `buf`; damage is reported as `malformed(what)`.
    pub fn new(buf: &'a [u8], malformed: fn(&str) -> Error) -> Self {
        Reader {
            buf,
            at: 0,
            malformed,
        }
    }
    /// The error for damage described by `what`.
    pub fn malformed(&self, what: &str) -> Error {
        (self.malformed)(what)
    }
    /// Whether every byte has been read (fields a later minor appends are
    /// read only when bytes remain).
    pub fn at_end(&self) -> bool {
        self.at >= self.buf.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.malformed("truncated"))?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }
    /// A byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    /// A u32.
    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    /// A u64.
    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// Length-prefixed bytes, borrowed.
    pub fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<String, Error> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }
    /// A precondition.
    pub fn precondition(&mut self) -> Result<Precondition, Error> {
        let (tag, v) = (self.u8()?, self.u64()?);
        Ok(match tag {
            0 => Precondition::Any,
            1 => Precondition::Absent,
            2 => Precondition::Present,
            3 => Precondition::Version(Version(v)),
            _ => return Err(self.malformed("unknown precondition")),
        })
    }
    /// A write made by [`Writer::write`] (the value is copied once).
    pub fn write(&mut self) -> Result<DocumentWrite, Error> {
        let ttl = match self.u64()? {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        let n = self.u32()? as usize;
        // never trust a count for an allocation: each term needs 8 bytes
        let mut index = Vec::with_capacity(n.min((self.buf.len() - self.at) / 8));
        for _ in 0..n {
            index.push(IndexTerm {
                index: self.str()?,
                term: self.str()?,
            });
        }
        let value = Bytes::copy_from_slice(self.bytes()?);
        Ok(DocumentWrite { value, index, ttl })
    }
}
