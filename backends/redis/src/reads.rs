//! Full reads (`get`, `get_many`, the pages of `scan`) on a single server
//! without a script: each document's bytes, version, creation stamp and
//! both TTLs in one `MULTI`/`EXEC`, so they are read together as the
//! [`GET`](crate::scripts::GET) script reads them.
//!
//! A script costs the server a pass over every byte of the value it reads
//! (Lua interns each string), plus the script call: about four times the
//! plain commands for a 2.7 kB document (26 µs against 6, `docs/redis.md`). The script is still what repairs
//! metadata (a TTL the other system's write changed, metadata outliving
//! its document) and what renews a sliding TTL: a read that finds a repair
//! to make calls it for that document, which checks again and repairs
//! atomically; with a sliding TTL every full read takes the script.

use persistence_core::backend::Document;
use persistence_core::{Error, Result};

use crate::backend::RedisBackend;
use crate::calls::{document, GetReply};

/// The replies a document's read adds to the transaction.
const REPLIES: usize = 4;

/// Most documents read in one transaction: a transaction runs whole, so
/// a page of thousands would hold up every other client of the server
/// (about 6 µs a document); batches of this size hold it up for well
/// under a millisecond each, as a script per document did.
const BATCH: usize = 64;

/// One document as its plain commands read it.
struct Read {
    value: Option<Vec<u8>>,
    /// Whether the metadata has a version field.
    meta: bool,
    /// The metadata's version and creation stamp, as the script reads
    /// them (`tonumber`): a field that is not a number reads as 0.
    version: u64,
    created: u64,
    pttl: i64,
    meta_pttl: i64,
}

impl Read {
    /// The next document's [`REPLIES`] replies from `replies`.
    fn parse(replies: &mut impl Iterator<Item = redis::Value>) -> redis::RedisResult<Read> {
        let mut next = || replies.next().unwrap_or(redis::Value::Nil);
        let value = redis::from_redis_value(next())?;
        let (version, created): (Option<String>, Option<String>) = redis::from_redis_value(next())?;
        let number = |f: &Option<String>| f.as_deref().and_then(|f| f.parse().ok()).unwrap_or(0);
        Ok(Read {
            value,
            meta: version.is_some(),
            version: number(&version),
            created: number(&created),
            pttl: redis::from_redis_value(next())?,
            meta_pttl: redis::from_redis_value(next())?,
        })
    }

    /// Whether the [`GET`](crate::scripts::GET) script would change the
    /// metadata: it outlived its document, or its TTL differs from the
    /// document's (as the script judges it: one with a TTL and one
    /// without, or more than a second apart).
    fn needs_repair(&self) -> bool {
        if !self.meta {
            return false;
        }
        if self.value.is_none() {
            return true;
        }
        let (pttl, mt) = (self.pttl, self.meta_pttl);
        (pttl < 0 && mt >= 0) || (pttl >= 0 && (mt < 0 || (mt - pttl).abs() > 1000))
    }

    fn reply(self) -> GetReply {
        let value = self.value?;
        Some((value, self.version, self.created, self.pttl))
    }
}

impl RedisBackend {
    /// Whether full reads may skip the script: a single server (cluster
    /// keys of one batch live in different slots) and no sliding TTL.
    pub(crate) fn plain_reads(&self) -> bool {
        !self.is_cluster() && self.options.sliding_ttl.is_none()
    }

    /// `keys`' documents, [`BATCH`] to a transaction (see the module's
    /// comment), the transactions sent together; only documents with
    /// metadata to repair take the script, one each.
    pub(crate) async fn read_plain(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Document>>> {
        let batches = keys.chunks(BATCH).map(|b| self.read_batch(namespace, b));
        let docs = futures::future::try_join_all(batches).await?;
        Ok(docs.into_iter().flatten().collect())
    }

    async fn read_batch(&self, namespace: &str, keys: &[String]) -> Result<Vec<Option<Document>>> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in keys {
            let (doc, meta) = (
                self.layout.doc(namespace, key),
                self.layout.meta(namespace, key),
            );
            pipe.cmd("GET").arg(&doc);
            pipe.cmd("HMGET").arg(&meta).arg("v").arg("c");
            pipe.cmd("PTTL").arg(&doc);
            pipe.cmd("PTTL").arg(&meta);
        }
        let mut con = self.con.clone();
        let replies: Vec<redis::Value> = pipe
            .query_async(&mut con)
            .await
            .map_err(|e| self.error("get", e))?;
        if replies.len() != keys.len() * REPLIES {
            return Err(Error::Internal {
                backend: "redis".into(),
                message: format!(
                    "a read of {} documents answered {} replies",
                    keys.len(),
                    replies.len()
                ),
            });
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut replies = replies.into_iter();
        for key in keys {
            let read = Read::parse(&mut replies).map_err(|e| self.error("get", e))?;
            let reply = if read.needs_repair() {
                self.get_invocation(namespace, key)
                    .invoke_async(&mut con)
                    .await
                    .map_err(|e| self.error("get", e))?
            } else {
                read.reply()
            };
            out.push(reply.map(document));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: bool, version: bool, pttl: i64, meta_pttl: i64) -> Read {
        Read {
            value: value.then(|| b"v".to_vec()),
            meta: version,
            version: if version { 7 } else { 0 },
            created: if version { 3 } else { 0 },
            pttl,
            meta_pttl,
        }
    }

    #[test]
    fn metadata_numbers_read_as_the_script_reads_them() {
        let parse = |v: Option<&str>, c: Option<&str>| {
            let field = |f: Option<&str>| match f {
                Some(f) => redis::Value::BulkString(f.as_bytes().to_vec()),
                None => redis::Value::Nil,
            };
            let replies = vec![
                redis::Value::BulkString(b"doc".to_vec()),
                redis::Value::Array(vec![field(v), field(c)]),
                redis::Value::Int(-1),
                redis::Value::Int(-1),
            ];
            let r = Read::parse(&mut replies.into_iter()).unwrap();
            (r.meta, r.version, r.created)
        };
        assert_eq!(parse(Some("12"), Some("5")), (true, 12, 5));
        assert_eq!(parse(None, None), (false, 0, 0));
        // not a number: 0, as `tonumber(...) or 0` in the script
        assert_eq!(parse(Some("x"), Some("")), (true, 0, 0));
    }

    #[test]
    fn repairs_are_the_scripts() {
        // no metadata: nothing to repair, found or not
        assert!(!read(true, false, -1, -2).needs_repair());
        assert!(!read(false, false, -2, -2).needs_repair());
        // metadata outliving its document
        assert!(read(false, true, -2, -1).needs_repair());
        // TTLs that agree
        assert!(!read(true, true, -1, -1).needs_repair());
        assert!(!read(true, true, 60_000, 59_500).needs_repair());
        // TTLs that do not: one without, or more than a second apart
        assert!(read(true, true, -1, 60_000).needs_repair());
        assert!(read(true, true, 60_000, -1).needs_repair());
        assert!(read(true, true, 60_000, 58_000).needs_repair());
        assert_eq!(
            read(true, true, 5, 5).reply(),
            Some((b"v".to_vec(), 7, 3, 5))
        );
        assert_eq!(
            read(true, false, -1, -2).reply(),
            Some((b"v".to_vec(), 0, 0, -1))
        );
    }
}
