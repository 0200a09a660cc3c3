//! The request/response envelope: a small binary format that carries
//! document bytes as they are and does not assume the two sides share a
//! process (the same bytes could travel over a socket).
//!
//! Numbers are little-endian; `str`/`bytes` are a u32 length then the bytes;
//! `opt<T>` is a u8 flag then T. Layouts are in `docs/plugin-abi.md`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use persistence_core::backend::{
    Document, DocumentWrite, Health, HealthStatus, Precondition, ScanOrder, ScanPage, ScanRequest,
    TxOutcome, TxWrite, Version, MAX_TRANSACTION_WRITES,
};
use persistence_core::Error;

pub use persistence_core::wire::{Reader, Writer};

fn malformed(what: &str) -> Error {
    Error::Plugin {
        plugin: "envelope".into(),
        message: format!("malformed envelope: {what}"),
    }
}

/// A reader of envelope bytes: damage is a `Plugin` error.
fn reader(buf: &[u8]) -> Reader<'_> {
    Reader::new(buf, malformed)
}

/// One operation of the [`Backend`](persistence_core::Backend) contract;
/// the fields are the method's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Request {
    /// `get`.
    Get { ns: String, key: String },
    /// `get_value`.
    GetValue { ns: String, key: String },
    /// `put`.
    Put {
        ns: String,
        key: String,
        write: DocumentWrite,
        precondition: Precondition,
    },
    /// `remove`.
    Remove {
        ns: String,
        key: String,
        precondition: Precondition,
    },
    /// `lookup`.
    Lookup {
        ns: String,
        index: String,
        term: String,
    },
    /// `scan`.
    Scan { ns: String, request: ScanRequest },
    /// `count`.
    Count { ns: String },
    /// `health`.
    Health,
    /// `transact` (ABI 1.2).
    Transact { writes: Vec<TxWrite> },
}

impl Request {
    /// The operation's name (`get`, `put`, ...), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Get { .. } => "get",
            Request::GetValue { .. } => "get_value",
            Request::Put { .. } => "put",
            Request::Remove { .. } => "remove",
            Request::Lookup { .. } => "lookup",
            Request::Scan { .. } => "scan",
            Request::Count { .. } => "count",
            Request::Health => "health",
            Request::Transact { .. } => "transact",
        }
    }

    /// Encodes the request (document bytes are copied once, as they are).
    pub fn encode(&self) -> Vec<u8> {
        let size = match self {
            Request::Put { write, .. } => write.value.len() + 256,
            Request::Transact { writes } => writes
                .iter()
                .map(|w| match w {
                    TxWrite::Put { write, .. } => write.value.len() + 256,
                    TxWrite::Remove { .. } => 128,
                })
                .sum(),
            _ => 128,
        };
        let mut w = Writer::with_capacity(size);
        match self {
            Request::Get { ns, key } => w.u8(1).str(ns).str(key),
            Request::GetValue { ns, key } => w.u8(8).str(ns).str(key),
            Request::Put {
                ns,
                key,
                write,
                precondition,
            } => w
                .u8(2)
                .str(ns)
                .str(key)
                .precondition(*precondition)
                .write(write),
            Request::Remove {
                ns,
                key,
                precondition,
            } => w.u8(3).str(ns).str(key).precondition(*precondition),
            Request::Lookup { ns, index, term } => w.u8(4).str(ns).str(index).str(term),
            Request::Scan { ns, request } => {
                w.u8(5).str(ns).u8(match request.order {
                    ScanOrder::Key => 0,
                    ScanOrder::Created => 1,
                    ScanOrder::NewestFirst => 2,
                });
                match &request.cursor {
                    Some(c) => w.u8(1).str(c),
                    None => w.u8(0),
                };
                w.u64(request.limit as u64);
                // ABI 1.1: appended only when present, so a 1.0 request is unchanged
                if let Some(window) = &request.created {
                    w.u8(1).u64(window.start).u64(window.end);
                }
                &mut w
            }
            Request::Count { ns } => w.u8(6).str(ns),
            Request::Health => w.u8(7),
            Request::Transact { writes } => {
                w.u8(9).u32(writes.len() as u32);
                for tx in writes {
                    match tx {
                        TxWrite::Put {
                            namespace,
                            key,
                            write,
                            precondition,
                        } => w
                            .u8(1)
                            .str(namespace)
                            .str(key)
                            .precondition(*precondition)
                            .write(write),
                        TxWrite::Remove {
                            namespace,
                            key,
                            precondition,
                        } => w.u8(2).str(namespace).str(key).precondition(*precondition),
                    };
                }
                &mut w
            }
        };
        w.finish()
    }

    /// Decodes a request (copying document bytes once).
    pub fn decode(buf: &[u8]) -> Result<Request, Error> {
        let mut r = reader(buf);
        Ok(match r.u8()? {
            1 => Request::Get {
                ns: r.str()?,
                key: r.str()?,
            },
            8 => Request::GetValue {
                ns: r.str()?,
                key: r.str()?,
            },
            2 => {
                let (ns, key) = (r.str()?, r.str()?);
                let precondition = r.precondition()?;
                Request::Put {
                    ns,
                    key,
                    write: r.write()?,
                    precondition,
                }
            }
            3 => Request::Remove {
                ns: r.str()?,
                key: r.str()?,
                precondition: r.precondition()?,
            },
            4 => Request::Lookup {
                ns: r.str()?,
                index: r.str()?,
                term: r.str()?,
            },
            5 => {
                let ns = r.str()?;
                let order = match r.u8()? {
                    0 => ScanOrder::Key,
                    1 => ScanOrder::Created,
                    2 => ScanOrder::NewestFirst,
                    _ => return Err(malformed("unknown scan order")),
                };
                let cursor = match r.u8()? {
                    0 => None,
                    _ => Some(r.str()?),
                };
                let limit = r.u64()? as usize;
                let created = match r.at_end() {
                    true => None,
                    false => match r.u8()? {
                        0 => None,
                        _ => Some(r.u64()?..r.u64()?),
                    },
                };
                Request::Scan {
                    ns,
                    request: ScanRequest {
                        order,
                        cursor,
                        limit,
                        created,
                    },
                }
            }
            6 => Request::Count { ns: r.str()? },
            7 => Request::Health,
            9 => {
                let n = r.u32()? as usize;
                if n > MAX_TRANSACTION_WRITES {
                    return Err(malformed("a transaction of too many writes"));
                }
                let mut writes = Vec::with_capacity(n);
                for _ in 0..n {
                    let kind = r.u8()?;
                    let (namespace, key) = (r.str()?, r.str()?);
                    let precondition = r.precondition()?;
                    writes.push(match kind {
                        1 => TxWrite::Put {
                            namespace,
                            key,
                            write: r.write()?,
                            precondition,
                        },
                        2 => TxWrite::Remove {
                            namespace,
                            key,
                            precondition,
                        },
                        _ => return Err(malformed("unknown transaction write")),
                    });
                }
                Request::Transact { writes }
            }
            _ => return Err(malformed("unknown operation")),
        })
    }
}

fn put_doc(w: &mut Writer, d: &Document) {
    let expires = d
        .expires_at
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| (d.as_millis() as u64).max(1));
    w.u64(d.version.0)
        .u64(d.created)
        .u64(expires)
        .bytes(&d.value);
}

fn get_doc(r: &mut Reader<'_>) -> Result<Document, Error> {
    let (version, created, expires) = (r.u64()?, r.u64()?, r.u64()?);
    Ok(Document {
        version: Version(version),
        created,
        expires_at: (expires != 0).then(|| UNIX_EPOCH + Duration::from_millis(expires)),
        value: Bytes::copy_from_slice(r.bytes()?),
    })
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// To `get`.
    Document(Option<Document>),
    /// To `get_value`.
    Value(Option<Bytes>),
    /// To `put`.
    Version(Version),
    /// To `remove`.
    Removed(bool),
    /// To `lookup`.
    Keys(Vec<String>),
    /// To `scan`.
    Page(ScanPage),
    /// To `count`.
    Count(u64),
    /// To `health`.
    Health(Health),
    /// To `transact` (ABI 1.2).
    Outcomes(Vec<TxOutcome>),
}

impl Response {
    /// Encodes the answer.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(match self {
            Response::Document(Some(d)) => d.value.len() + 64,
            Response::Value(Some(v)) => v.len() + 16,
            _ => 64,
        });
        match self {
            Response::Document(None) | Response::Value(None) => {
                w.u8(0);
            }
            Response::Document(Some(d)) => {
                w.u8(1);
                put_doc(&mut w, d);
            }
            Response::Value(Some(v)) => {
                w.u8(1).bytes(v);
            }
            Response::Version(v) => {
                w.u64(v.0);
            }
            Response::Removed(b) => {
                w.u8(u8::from(*b));
            }
            Response::Keys(keys) => {
                w.u32(keys.len() as u32);
                for k in keys {
                    w.str(k);
                }
            }
            Response::Page(page) => {
                w.u32(page.entries.len() as u32);
                for (k, d) in &page.entries {
                    w.str(k);
                    put_doc(&mut w, d);
                }
                match &page.cursor {
                    Some(c) => w.u8(1).str(c),
                    None => w.u8(0),
                };
            }
            Response::Count(n) => {
                w.u64(*n);
            }
            Response::Outcomes(outcomes) => {
                w.u32(outcomes.len() as u32);
                for o in outcomes {
                    match o {
                        TxOutcome::Put(v) => w.u8(1).u64(v.0),
                        TxOutcome::Removed(b) => w.u8(2).u64(u64::from(*b)),
                    };
                }
            }
            Response::Health(h) => {
                w.u8(match h.status {
                    HealthStatus::Ok => 0,
                    HealthStatus::Degraded => 1,
                    HealthStatus::Down => 2,
                })
                .str(&h.backend)
                .str(&h.message);
                match h.latency_ms {
                    Some(ms) => w.u8(1).u64(ms.to_bits()),
                    None => w.u8(0),
                };
                w.u32(h.details.len() as u32);
                for (k, v) in &h.details {
                    w.str(k).str(v);
                }
            }
        }
        w.finish()
    }

    /// Decodes the answer to `request`.
    pub fn decode(request: &Request, buf: &[u8]) -> Result<Response, Error> {
        let mut r = reader(buf);
        Ok(match request {
            Request::Get { .. } => Response::Document(match r.u8()? {
                0 => None,
                _ => Some(get_doc(&mut r)?),
            }),
            Request::GetValue { .. } => Response::Value(match r.u8()? {
                0 => None,
                _ => Some(Bytes::copy_from_slice(r.bytes()?)),
            }),
            Request::Put { .. } => Response::Version(Version(r.u64()?)),
            Request::Remove { .. } => Response::Removed(r.u8()? != 0),
            Request::Lookup { .. } => {
                let n = r.u32()? as usize;
                let mut keys = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    keys.push(r.str()?);
                }
                Response::Keys(keys)
            }
            Request::Scan { .. } => {
                let n = r.u32()? as usize;
                let mut entries = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let k = r.str()?;
                    entries.push((k, get_doc(&mut r)?));
                }
                let cursor = match r.u8()? {
                    0 => None,
                    _ => Some(r.str()?),
                };
                Response::Page(ScanPage { entries, cursor })
            }
            Request::Count { .. } => Response::Count(r.u64()?),
            Request::Transact { writes } => {
                let n = r.u32()? as usize;
                if n != writes.len() {
                    return Err(malformed("a transaction answer of the wrong length"));
                }
                let mut outcomes = Vec::with_capacity(n);
                for w in writes {
                    let (kind, n) = (r.u8()?, r.u64()?);
                    outcomes.push(match (kind, w) {
                        (1, TxWrite::Put { .. }) => TxOutcome::Put(Version(n)),
                        (2, TxWrite::Remove { .. }) => TxOutcome::Removed(n != 0),
                        _ => return Err(malformed("a transaction outcome of the wrong kind")),
                    });
                }
                Response::Outcomes(outcomes)
            }
            Request::Health => {
                let status = match r.u8()? {
                    0 => HealthStatus::Ok,
                    1 => HealthStatus::Degraded,
                    _ => HealthStatus::Down,
                };
                let (backend, message) = (r.str()?, r.str()?);
                let latency_ms = match r.u8()? {
                    0 => None,
                    _ => Some(f64::from_bits(r.u64()?)),
                };
                let n = r.u32()? as usize;
                let mut details = std::collections::BTreeMap::new();
                for _ in 0..n.min(1 << 16) {
                    details.insert(r.str()?, r.str()?);
                }
                Response::Health(Health {
                    status,
                    backend,
                    message,
                    latency_ms,
                    details,
                })
            }
        })
    }
}

/// Encodes an error: a kind code, then the variant's fields.
pub fn encode_error(e: &Error) -> Vec<u8> {
    let mut w = Writer::with_capacity(128);
    match e {
        Error::NotFound { namespace, key } => w.u8(1).str(namespace).str(key),
        Error::AlreadyExists { namespace, key } => w.u8(2).str(namespace).str(key),
        Error::Conflict {
            namespace,
            key,
            expected,
            actual,
        } => w
            .u8(3)
            .str(namespace)
            .str(key)
            .u64(expected.0)
            .u64(actual.0),
        Error::Unavailable { backend, reason } => w.u8(4).str(backend).str(reason),
        Error::Timeout { operation, after } => w.u8(5).str(operation).u64(after.as_millis() as u64),
        Error::Corrupted {
            namespace,
            key,
            reason,
            len,
        } => w.u8(6).str(namespace).str(key).str(reason).u64(*len as u64),
        Error::Config { key, value, reason } => w.u8(7).str(key).str(value).str(reason),
        Error::Unsupported {
            backend,
            capability,
        } => w.u8(8).str(backend).str(capability),
        Error::Plugin { plugin, message } => w.u8(9).str(plugin).str(message),
        Error::InvalidInput(m) => w.u8(10).str(m),
        Error::Internal { backend, message } => w.u8(11).str(backend).str(message),
        other => w.u8(11).str("plugin").str(&other.to_string()),
    };
    w.finish()
}

/// Decodes an error made by [`encode_error`].
pub fn decode_error(buf: &[u8]) -> Error {
    let mut r = reader(buf);
    let decoded = (|| -> Result<Error, Error> {
        Ok(match r.u8()? {
            1 => Error::NotFound {
                namespace: r.str()?,
                key: r.str()?,
            },
            2 => Error::AlreadyExists {
                namespace: r.str()?,
                key: r.str()?,
            },
            3 => Error::Conflict {
                namespace: r.str()?,
                key: r.str()?,
                expected: Version(r.u64()?),
                actual: Version(r.u64()?),
            },
            4 => Error::Unavailable {
                backend: r.str()?,
                reason: r.str()?,
            },
            5 => Error::Timeout {
                operation: r.str()?,
                after: Duration::from_millis(r.u64()?),
            },
            6 => Error::Corrupted {
                namespace: r.str()?,
                key: r.str()?,
                reason: r.str()?,
                len: r.u64()? as usize,
            },
            7 => Error::Config {
                key: r.str()?,
                value: r.str()?,
                reason: r.str()?,
            },
            8 => Error::Unsupported {
                backend: r.str()?,
                capability: r.str()?,
            },
            9 => Error::Plugin {
                plugin: r.str()?,
                message: r.str()?,
            },
            10 => Error::InvalidInput(r.str()?),
            _ => Error::Internal {
                backend: r.str()?,
                message: r.str()?,
            },
        })
    })();
    decoded.unwrap_or_else(|e| e)
}

/// Milliseconds since the epoch, for tests and logs.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_of_abi_1_2_round_trip_and_bad_answers_are_errors() {
        let writes = vec![
            TxWrite::put(
                "n",
                "a",
                DocumentWrite::new(vec![1u8, 2]).with_term("i", "t"),
                Precondition::Absent,
            ),
            TxWrite::remove("m", "b", Precondition::Version(Version(9))),
        ];
        let request = Request::Transact {
            writes: writes.clone(),
        };
        let bytes = request.encode();
        assert_eq!(Request::decode(&bytes).unwrap(), request);
        for cut in 0..bytes.len() {
            assert!(Request::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let answer = Response::Outcomes(vec![TxOutcome::Put(Version(5)), TxOutcome::Removed(true)]);
        let encoded = answer.encode();
        assert_eq!(Response::decode(&request, &encoded).unwrap(), answer);
        // a plugin answering for fewer writes, or the wrong kind, is refused
        let short = Response::Outcomes(vec![TxOutcome::Put(Version(5))]).encode();
        assert!(Response::decode(&request, &short).is_err());
        let swapped =
            Response::Outcomes(vec![TxOutcome::Removed(true), TxOutcome::Put(Version(5))]).encode();
        assert!(Response::decode(&request, &swapped).is_err());
        // a count beyond the limit is refused before anything is allocated
        let mut huge = vec![9u8];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Request::decode(&huge).is_err());
    }

    #[test]
    fn scans_of_abi_1_1_round_trip_and_1_0_scans_are_unchanged() {
        let plain = Request::Scan {
            ns: "n".into(),
            request: ScanRequest::first(ScanOrder::Created, 9),
        };
        // 1.0 layout: op, ns, order, no cursor, limit, and nothing after
        let mut v10 = vec![5u8, 1, 0, 0, 0, b'n', 1, 0];
        v10.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(plain.encode(), v10);
        assert_eq!(Request::decode(&v10).unwrap(), plain);
        let windowed = Request::Scan {
            ns: "n".into(),
            request: ScanRequest {
                cursor: Some("17".into()),
                created: Some(5..1 << 60),
                ..ScanRequest::first(ScanOrder::NewestFirst, 3)
            },
        };
        let bytes = windowed.encode();
        assert_eq!(Request::decode(&bytes).unwrap(), windowed);
        // cut inside the window (a cut before it is a valid 1.0 request)
        for cut in bytes.len() - 16..bytes.len() {
            assert!(Request::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn requests_and_errors_round_trip_and_garbage_is_an_error() {
        let put = Request::Put {
            ns: "n".into(),
            key: "k:{x}".into(),
            write: DocumentWrite::new(vec![0u8, 1, 2, 255])
                .with_term("i", "t")
                .with_ttl(Some(Duration::from_secs(5))),
            precondition: Precondition::Version(Version(7)),
        };
        let bytes = put.encode();
        assert_eq!(Request::decode(&bytes).unwrap(), put);
        for cut in 0..bytes.len() {
            assert!(Request::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let e = Error::Conflict {
            namespace: "n".into(),
            key: "k".into(),
            expected: Version(1),
            actual: Version(2),
        };
        assert_eq!(decode_error(&encode_error(&e)), e);
        assert_eq!(
            decode_error(&[]).kind(),
            persistence_core::ErrorKind::Plugin
        );
    }
}
