//! Where a recovery queue keeps its writes so they survive a restart.

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;

use crate::backend::{DocumentWrite, IndexTerm, Precondition, Version};
use crate::error::{Error, Result};

/// A write waiting in a recovery queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpilledWrite {
    /// Namespace of the key.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// What to do.
    pub op: SpilledOp,
}

/// The operation of a [`SpilledWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpilledOp {
    /// A `put`.
    Put {
        /// What to store.
        write: DocumentWrite,
        /// When to store it.
        precondition: Precondition,
    },
    /// A `remove`.
    Remove {
        /// When to remove it.
        precondition: Precondition,
    },
}

/// Durable storage for a recovery queue: every accepted write is appended
/// (and on disk) before the caller hears "accepted", removed once replayed,
/// and loaded back in order when the queue starts.
pub trait QueueSpill: Send + Sync + Debug {
    /// Every spilled write, by sequence number, oldest first.
    fn load(&self) -> Result<Vec<(u64, SpilledWrite)>>;
    /// Stores `write` under `seq`, durably, before returning.
    fn append(&self, seq: u64, write: &SpilledWrite) -> Result<()>;
    /// Forgets `seq` (it was replayed or dropped).
    fn remove(&self, seq: u64) -> Result<()>;
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_pre(out: &mut Vec<u8>, p: Precondition) {
    let (tag, v) = match p {
        Precondition::Any => (0u8, 0),
        Precondition::Absent => (1, 0),
        Precondition::Present => (2, 0),
        Precondition::Version(v) => (3, v.0),
    };
    out.push(tag);
    out.extend_from_slice(&v.to_le_bytes());
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::Corrupted {
                namespace: String::new(),
                key: "recovery queue spill".into(),
                reason: "truncated entry".into(),
                len: self.0.len(),
            });
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Error::Corrupted {
            namespace: String::new(),
            key: "recovery queue spill".into(),
            reason: "a string is not UTF-8".into(),
            len: 0,
        })
    }
    fn pre(&mut self) -> Result<Precondition> {
        let (tag, v) = (self.u8()?, self.u64()?);
        Ok(match tag {
            0 => Precondition::Any,
            1 => Precondition::Absent,
            2 => Precondition::Present,
            _ => Precondition::Version(Version(v)),
        })
    }
}

impl SpilledWrite {
    /// The entry's bytes (document bytes as they are).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, self.namespace.as_bytes());
        put_bytes(&mut out, self.key.as_bytes());
        match &self.op {
            SpilledOp::Put {
                write,
                precondition,
            } => {
                out.push(1);
                put_pre(&mut out, *precondition);
                out.extend_from_slice(
                    &write
                        .ttl
                        .map_or(0u64, |t| (t.as_millis() as u64).max(1))
                        .to_le_bytes(),
                );
                out.extend_from_slice(&(write.index.len() as u32).to_le_bytes());
                for t in &write.index {
                    put_bytes(&mut out, t.index.as_bytes());
                    put_bytes(&mut out, t.term.as_bytes());
                }
                put_bytes(&mut out, &write.value);
            }
            SpilledOp::Remove { precondition } => {
                out.push(2);
                put_pre(&mut out, *precondition);
            }
        }
        out
    }

    /// Reads an entry made by [`SpilledWrite::encode`]; damage is `Corrupted`.
    pub fn decode(bytes: &[u8]) -> Result<SpilledWrite> {
        let mut c = Cursor(bytes);
        let namespace = c.string()?;
        let key = c.string()?;
        let op = match c.u8()? {
            1 => {
                let precondition = c.pre()?;
                let ttl = match c.u64()? {
                    0 => None,
                    ms => Some(Duration::from_millis(ms)),
                };
                let n = u32::from_le_bytes(c.take(4)?.try_into().expect("4 bytes")) as usize;
                let mut index = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    index.push(IndexTerm {
                        index: c.string()?,
                        term: c.string()?,
                    });
                }
                let value = Bytes::copy_from_slice(c.bytes()?);
                SpilledOp::Put {
                    write: DocumentWrite { value, index, ttl },
                    precondition,
                }
            }
            _ => SpilledOp::Remove {
                precondition: c.pre()?,
            },
        };
        Ok(SpilledWrite { namespace, key, op })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_corrupted() {
        let w = SpilledWrite {
            namespace: "task".into(),
            key: "k:{1}".into(),
            op: SpilledOp::Put {
                write: DocumentWrite::new(vec![0u8, 255])
                    .with_term("request_index", "r")
                    .with_ttl(Some(Duration::from_secs(3))),
                precondition: Precondition::Version(Version(9)),
            },
        };
        let bytes = w.encode();
        assert_eq!(SpilledWrite::decode(&bytes).unwrap(), w);
        assert!(SpilledWrite::decode(&bytes[..bytes.len() - 1]).is_err());
        let r = SpilledWrite {
            namespace: "n".into(),
            key: "".into(),
            op: SpilledOp::Remove {
                precondition: Precondition::Any,
            },
        };
        assert_eq!(SpilledWrite::decode(&r.encode()).unwrap(), r);
    }
}
