//! Script calls: the invocations of the Lua scripts, and what their
//! replies mean in the contract's terms.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use persistence_core::backend::{
    Document, DocumentWrite, IndexTerm, Precondition, TxOutcome, TxWrite, Version,
};
use persistence_core::{Error, Result};

use crate::backend::RedisBackend;
use crate::scripts;

pub(crate) fn pre_arg(pre: Precondition) -> (&'static str, u64) {
    match pre {
        Precondition::Any => ("any", 0),
        Precondition::Absent => ("absent", 0),
        Precondition::Present => ("present", 0),
        Precondition::Version(v) => ("version", v.0),
    }
}

pub(crate) fn ttl_ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| (t.as_millis() as u64).max(1))
}

/// A GET script reply: value, version, created, pttl.
pub(crate) type GetReply = Option<(Vec<u8>, u64, u64, i64)>;

/// A GET script reply on a cluster with a sliding TTL: value, version,
/// created, pttl, and the index keys (JSON) to renew, or ''.
pub(crate) type ClusterSlidingReply = Option<(Vec<u8>, u64, u64, i64, String)>;

/// The index keys a script answered as JSON (a metadata's term list),
/// or `Corrupted` for the document `ns`/`key` whose metadata holds them.
pub(crate) fn index_keys_json(ns: &str, key: &str, json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| Error::Corrupted {
        namespace: ns.to_string(),
        key: key.to_string(),
        reason: format!("metadata index keys are not a JSON list: {e}"),
        len: json.len(),
    })
}

pub(crate) fn document((value, version, created, pttl): (Vec<u8>, u64, u64, i64)) -> Document {
    Document {
        value: Bytes::from(value),
        version: Version(version),
        created,
        expires_at: (pttl > 0).then(|| SystemTime::now() + Duration::from_millis(pttl as u64)),
    }
}

/// A transaction's kinds for its script's ARGV[1]: one letter per write,
/// `p` put or `r` removal.
pub(crate) fn tx_kinds(writes: &[TxWrite]) -> String {
    writes
        .iter()
        .map(|w| match w {
            TxWrite::Put { .. } => 'p',
            TxWrite::Remove { .. } => 'r',
        })
        .collect()
}

impl RedisBackend {
    pub(crate) fn get_invocation(&self, ns: &str, key: &str) -> redis::ScriptInvocation<'static> {
        let mut inv = scripts::GET.prepare_invoke();
        inv.key(self.layout.doc(ns, key))
            .key(self.layout.meta(ns, key))
            .arg(ttl_ms(self.options.sliding_ttl));
        if self.options.sliding_ttl.is_some() {
            let elsewhere = if self.is_cluster() { "1" } else { "0" };
            inv.arg(key).arg(self.layout.expiry_arg(ns)).arg(elsewhere);
        }
        inv
    }

    pub(crate) fn put_invocation(
        &self,
        ns: &str,
        key: &str,
        write: &DocumentWrite,
        precondition: Precondition,
    ) -> redis::ScriptInvocation<'static> {
        let mut inv = scripts::PUT.prepare_invoke();
        let index_keys = self.index_keys(ns, write);
        self.put_parts(&mut inv, ns, key, write, precondition, &index_keys);
        inv
    }

    /// The index sets a write's terms name, each once.
    pub(crate) fn index_keys(&self, ns: &str, write: &DocumentWrite) -> Vec<String> {
        IndexTerm::dedup(write.index.clone())
            .iter()
            .map(|t| self.layout.index(ns, &t.index, &t.term))
            .collect()
    }

    /// The KEYS and ARGV of [`scripts::PUT`] for one put, added to `inv`:
    /// 4 keys and then `index_keys`; the 10 ARGV of
    /// [`put_args`](Self::put_args), then the prefix of expiry keys.
    fn put_parts(
        &self,
        inv: &mut redis::ScriptInvocation<'static>,
        ns: &str,
        key: &str,
        write: &DocumentWrite,
        precondition: Precondition,
        index_keys: &[String],
    ) {
        inv.key(self.layout.doc(ns, key))
            .key(self.layout.meta(ns, key))
            .key(self.layout.by_key(ns))
            .key(self.layout.by_created(ns));
        for k in index_keys {
            inv.key(k);
        }
        self.put_args(inv, ns, key, write, precondition, index_keys);
        inv.arg(self.layout.expiry_arg(ns));
    }

    /// The 10 ARGV of a put, as [`scripts::PUT`] and the cluster's
    /// [`scripts::PUT_DOC`] both take them.
    pub(crate) fn put_args(
        &self,
        inv: &mut redis::ScriptInvocation<'static>,
        ns: &str,
        key: &str,
        write: &DocumentWrite,
        precondition: Precondition,
        index_keys: &[String],
    ) {
        let (pre, expected) = pre_arg(precondition);
        inv.arg(key)
            .arg(&write.value[..])
            .arg(pre)
            .arg(expected)
            .arg(ttl_ms(write.ttl))
            .arg(serde_json::to_string(index_keys).expect("strings encode"));
        let rule = self.layout.term_rule(ns);
        // the bytes' fingerprint matters only where a rule may meet bytes
        // another system wrote (the scripts' `ours`)
        let fingerprint = if rule[0].is_empty() {
            String::new()
        } else {
            sha1_smol::Sha1::from(&write.value[..]).digest().to_string()
        };
        inv.arg(rule.as_slice()).arg(fingerprint);
    }

    pub(crate) fn remove_invocation(
        &self,
        ns: &str,
        key: &str,
        precondition: Precondition,
    ) -> redis::ScriptInvocation<'static> {
        let mut inv = scripts::REMOVE.prepare_invoke();
        self.remove_parts(&mut inv, ns, key, precondition);
        inv
    }

    /// The KEYS and ARGV of [`scripts::REMOVE`] for one removal: the key,
    /// [`removal_args`](Self::removal_args), the prefix of expiry keys.
    fn remove_parts(
        &self,
        inv: &mut redis::ScriptInvocation<'static>,
        ns: &str,
        key: &str,
        precondition: Precondition,
    ) {
        inv.key(self.layout.doc(ns, key))
            .key(self.layout.meta(ns, key))
            .key(self.layout.by_key(ns))
            .key(self.layout.by_created(ns))
            .arg(key);
        self.removal_args(inv, ns, precondition);
        inv.arg(self.layout.expiry_arg(ns));
    }

    /// The precondition, expected version and term rule of a removal, the
    /// ARGV [`scripts::REMOVE`] takes after the key and the cluster's
    /// [`scripts::REMOVE_DOC`] takes alone.
    pub(crate) fn removal_args(
        &self,
        inv: &mut redis::ScriptInvocation<'static>,
        ns: &str,
        precondition: Precondition,
    ) {
        let (pre, expected) = pre_arg(precondition);
        inv.arg(pre)
            .arg(expected)
            .arg(self.layout.term_rule(ns).as_slice());
    }

    /// One [`scripts::TRANSACT`] call for `writes` (checked already).
    pub(crate) async fn transact_single(&self, writes: &[TxWrite]) -> Result<Vec<TxOutcome>> {
        // ARGV per write: its key count, then its own ARGV
        let mut inv = scripts::TRANSACT.prepare_invoke();
        inv.arg(tx_kinds(writes));
        for w in writes {
            match w {
                TxWrite::Put {
                    namespace,
                    key,
                    write,
                    precondition,
                } => {
                    let index_keys = self.index_keys(namespace, write);
                    inv.arg(4 + index_keys.len());
                    self.put_parts(&mut inv, namespace, key, write, *precondition, &index_keys);
                }
                TxWrite::Remove {
                    namespace,
                    key,
                    precondition,
                } => {
                    inv.arg(4);
                    self.remove_parts(&mut inv, namespace, key, *precondition);
                }
            }
        }
        let mut con = self.con.clone();
        let (status, at, number, outcomes): (String, usize, u64, Vec<u64>) = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("transact", e))?;
        let outcomes = Self::transaction_reply(writes, &status, at, number, outcomes)?;
        Ok(writes
            .iter()
            .zip(outcomes)
            .map(|(w, n)| match w {
                TxWrite::Put { .. } => TxOutcome::Put(Version(n)),
                TxWrite::Remove { .. } => TxOutcome::Removed(n == 1),
            })
            .collect())
    }

    /// A transaction script's reply checked: its status (the failing
    /// write's error, when not `ok`) and one reply per write.
    pub(crate) fn transaction_reply<T>(
        writes: &[TxWrite],
        status: &str,
        at: usize,
        number: u64,
        replies: Vec<T>,
    ) -> Result<Vec<T>> {
        if status != "ok" {
            let w = writes
                .get(at.wrapping_sub(1))
                .ok_or_else(|| Error::Internal {
                    backend: "redis".into(),
                    message: format!("transaction script named write {at} of {}", writes.len()),
                })?;
            let (ns, key) = w.target();
            Self::script_status(ns, key, w.precondition(), status, number, "transact")?;
        }
        if replies.len() != writes.len() {
            return Err(Error::Internal {
                backend: "redis".into(),
                message: format!(
                    "transaction script answered {} replies for {} writes",
                    replies.len(),
                    writes.len()
                ),
            });
        }
        Ok(replies)
    }

    /// What a script's status word means: `ok` gives its number back, the
    /// others are the contract's errors (`number` is then the stored version).
    fn script_status(
        ns: &str,
        key: &str,
        precondition: Precondition,
        status: &str,
        number: u64,
        op: &str,
    ) -> Result<u64> {
        match status {
            "ok" => Ok(number),
            "exists" => Err(Error::AlreadyExists {
                namespace: ns.into(),
                key: key.into(),
            }),
            "missing" => Err(Error::NotFound {
                namespace: ns.into(),
                key: key.into(),
            }),
            "conflict" => Err(Error::Conflict {
                namespace: ns.into(),
                key: key.into(),
                expected: match precondition {
                    Precondition::Version(v) => v,
                    _ => Version(0),
                },
                actual: Version(number),
            }),
            other => Err(Error::Internal {
                backend: "redis".into(),
                message: format!("{op} script answered {other}"),
            }),
        }
    }

    pub(crate) fn put_result(
        ns: &str,
        key: &str,
        precondition: Precondition,
        reply: (String, u64, u64),
    ) -> Result<Version> {
        let (status, version, _created) = reply;
        Self::script_status(ns, key, precondition, &status, version, "put").map(Version)
    }

    pub(crate) fn remove_result(
        ns: &str,
        key: &str,
        precondition: Precondition,
        reply: (String, u64),
    ) -> Result<bool> {
        let (status, n) = reply;
        Self::script_status(ns, key, precondition, &status, n, "remove").map(|n| n == 1)
    }

    /// Runs a pipeline of script calls, loading the scripts once if the
    /// server lost them (restart, `SCRIPT FLUSH`).
    pub(crate) async fn pipeline<T: redis::FromRedisValue>(
        &self,
        operation: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut con = self.con.clone();
        match pipe.query_async(&mut con).await {
            // a pipeline reports several failed scripts as one error
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                    || e.to_string().contains("NoScript") =>
            {
                for script in [
                    &*scripts::GET,
                    &*scripts::PUT,
                    &*scripts::REMOVE,
                    &*scripts::LOOKUP,
                    &*scripts::FORGET,
                ] {
                    script
                        .load_async(&mut con)
                        .await
                        .map_err(|e| self.error(operation, e))?;
                }
                pipe.query_async(&mut con)
                    .await
                    .map_err(|e| self.error(operation, e))
            }
            other => other.map_err(|e| self.error(operation, e)),
        }
    }
}
