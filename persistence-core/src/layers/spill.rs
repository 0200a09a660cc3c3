//! Where a recovery queue keeps its writes so they survive a restart.

use std::fmt::Debug;

use crate::backend::{DocumentWrite, Precondition};
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

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

fn damaged(what: &str) -> Error {
    Error::Corrupted {
        namespace: String::new(),
        key: "recovery queue spill".into(),
        reason: format!("damaged entry: {what}"),
        len: 0,
    }
}

impl SpilledWrite {
    /// The entry's bytes ([`crate::wire`]; document bytes as they are).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.str(&self.namespace).str(&self.key);
        match &self.op {
            SpilledOp::Put {
                write,
                precondition,
            } => w.u8(1).precondition(*precondition).write(write),
            SpilledOp::Remove { precondition } => w.u8(2).precondition(*precondition),
        };
        w.finish()
    }

    /// Reads an entry made by [`SpilledWrite::encode`]; damage is `Corrupted`.
    pub fn decode(bytes: &[u8]) -> Result<SpilledWrite> {
        let mut r = Reader::new(bytes, damaged);
        let namespace = r.str()?;
        let key = r.str()?;
        let op = match r.u8()? {
            1 => {
                let precondition = r.precondition()?;
                SpilledOp::Put {
                    write: r.write()?,
                    precondition,
                }
            }
            2 => SpilledOp::Remove {
                precondition: r.precondition()?,
            },
            _ => return Err(damaged("unknown operation")),
        };
        Ok(SpilledWrite { namespace, key, op })
    }
}

#[cfg(test)]
/// An entry for key "" in namespace "n" with operation tag `op`.
fn r_bytes_with_op(op: u8) -> Vec<u8> {
    let mut w = Writer::default();
    w.str("n").str("").u8(op).precondition(Precondition::Any);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Version;
    use std::time::Duration;

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
        let e = SpilledWrite::decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupted, "{e}");
        let mut bad_op = r_bytes_with_op(9);
        assert!(SpilledWrite::decode(&bad_op).is_err(), "unknown operation");
        bad_op.truncate(3);
        assert!(SpilledWrite::decode(&bad_op).is_err(), "truncated");
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
