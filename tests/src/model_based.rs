//! Random operation sequences against the backend and a reference model.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use persistence_core::backend::{DocumentWrite, Precondition, TxOutcome, TxWrite, Version};
use persistence_core::{ErrorKind, SharedBackend};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::Ctx;

const INDEX: &str = "model";

#[derive(Debug, Clone, Copy)]
enum Pre {
    Any,
    Absent,
    Present,
    CurrentVersion,
    StaleVersion,
}

/// One write of a random transaction: key, `Some((value, terms))` for a
/// put or `None` for a removal, precondition.
type TxStep = (u8, Option<(u8, Vec<u8>)>, Pre);

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        value: u8,
        terms: Vec<u8>,
        pre: Pre,
    },
    Remove {
        key: u8,
        pre: Pre,
    },
    Get {
        key: u8,
    },
    Lookup {
        term: u8,
    },
    /// Puts (`Some(value, terms)`) and removals (`None`) all or nothing;
    /// keys may repeat (then `InvalidInput`).
    Transact {
        writes: Vec<TxStep>,
    },
}

fn pre() -> impl Strategy<Value = Pre> {
    prop_oneof![
        Just(Pre::Any),
        Just(Pre::Absent),
        Just(Pre::Present),
        Just(Pre::CurrentVersion),
        Just(Pre::StaleVersion),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4u8, any::<u8>(), prop::collection::vec(0..3u8, 0..3), pre())
            .prop_map(|(key, value, terms, pre)| Op::Put { key, value, terms, pre }),
        1 => (0..4u8, pre()).prop_map(|(key, pre)| Op::Remove { key, pre }),
        2 => (0..4u8).prop_map(|key| Op::Get { key }),
        2 => (0..3u8).prop_map(|term| Op::Lookup { term }),
        2 => prop::collection::vec(
            (
                0..4u8,
                prop::option::weighted(0.7, (any::<u8>(), prop::collection::vec(0..3u8, 0..3))),
                pre(),
            ),
            0..4,
        )
        .prop_map(|writes| Op::Transact { writes }),
    ]
}

#[derive(Debug)]
struct ModelDoc {
    value: u8,
    version: Version,
    terms: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Model {
    docs: BTreeMap<String, ModelDoc>,
    /// Every version each key ever had, to pick stale ones and check freshness.
    history: BTreeMap<String, Vec<Version>>,
}

impl Model {
    fn precondition(&self, key: &str, pre: Pre) -> Precondition {
        match pre {
            Pre::Any => Precondition::Any,
            Pre::Absent => Precondition::Absent,
            Pre::Present => Precondition::Present,
            Pre::CurrentVersion => self
                .docs
                .get(key)
                .map_or(Precondition::Version(Version(u64::MAX - 7)), |d| {
                    Precondition::Version(d.version)
                }),
            Pre::StaleVersion => {
                let current = self.docs.get(key).map(|d| d.version);
                let stale = self
                    .history
                    .get(key)
                    .and_then(|h| h.iter().find(|v| Some(**v) != current));
                Precondition::Version(stale.copied().unwrap_or(Version(u64::MAX - 3)))
            }
        }
    }

    /// The error the contract demands for `pre` on `key`, if any.
    fn violation(&self, key: &str, pre: Precondition) -> Option<ErrorKind> {
        let current = self.docs.get(key);
        match (pre, current) {
            (Precondition::Any, _) => None,
            (Precondition::Absent, Some(_)) => Some(ErrorKind::AlreadyExists),
            (Precondition::Absent, None) => None,
            (Precondition::Present | Precondition::Version(_), None) => Some(ErrorKind::NotFound),
            (Precondition::Present, Some(_)) => None,
            (Precondition::Version(v), Some(d)) => (d.version != v).then_some(ErrorKind::Conflict),
        }
    }
}

/// A key's name; on a backend whose transactions stay within one
/// partition, every key carries one `{tag}`, so any transaction of them is
/// one partition's.
fn key_name(tagged: bool, k: u8) -> String {
    if tagged {
        format!("{{m}}k{k}")
    } else {
        format!("k{k}")
    }
}

fn term_name(t: u8) -> String {
    format!("t{t}")
}

async fn check(backend: &SharedBackend, ns: &str, ops: &[Op]) -> Result<(), String> {
    let caps = backend.capabilities();
    let (transactions, tagged) = (caps.transactions, caps.partitioned_transactions);
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let at = |what: String| format!("step {step} ({op:?}): {what}");
        match op {
            Op::Put {
                key,
                value,
                terms,
                pre,
            } => {
                let key = key_name(tagged, *key);
                let precondition = model.precondition(&key, *pre);
                let terms: BTreeSet<String> = terms.iter().map(|t| term_name(*t)).collect();
                let mut write = DocumentWrite::new(vec![*value]);
                for t in &terms {
                    write = write.with_term(INDEX, t.clone());
                }
                let expected = model.violation(&key, precondition);
                let got = backend.put(ns, &key, write, precondition).await;
                match (got, expected) {
                    (Ok(v), None) => {
                        let seen = model.history.entry(key.clone()).or_default();
                        if seen.contains(&v) {
                            return Err(at(format!(
                                "version {v} was returned before for this key"
                            )));
                        }
                        seen.push(v);
                        model.docs.insert(
                            key,
                            ModelDoc {
                                value: *value,
                                version: v,
                                terms,
                            },
                        );
                    }
                    (Err(e), Some(kind)) if e.kind() == kind => {}
                    (got, expected) => {
                        return Err(at(format!("got {got:?}, the contract says {expected:?}")))
                    }
                }
            }
            Op::Remove { key, pre } => {
                let key = key_name(tagged, *key);
                let precondition = model.precondition(&key, *pre);
                let expected = match precondition {
                    Precondition::Absent => Some(ErrorKind::InvalidInput),
                    _ => model.violation(&key, precondition),
                };
                let got = backend.remove(ns, &key, precondition).await;
                match (got, expected) {
                    (Ok(removed), None) => {
                        let existed = model.docs.remove(&key).is_some();
                        if removed != existed {
                            return Err(at(format!(
                                "remove said {removed}, the key existed: {existed}"
                            )));
                        }
                    }
                    (Err(e), Some(kind)) if e.kind() == kind => {}
                    (got, expected) => {
                        return Err(at(format!("got {got:?}, the contract says {expected:?}")))
                    }
                }
            }
            Op::Transact { writes } => {
                let mut tx = Vec::new();
                let mut keys = BTreeSet::new();
                let mut expected = None;
                for (key, put, pre) in writes {
                    let key = key_name(tagged, *key);
                    let precondition = model.precondition(&key, *pre);
                    let bad = !keys.insert(key.clone())
                        || put.is_none() && precondition == Precondition::Absent;
                    if bad {
                        expected = Some(ErrorKind::InvalidInput);
                    }
                    tx.push(match put {
                        Some((value, terms)) => {
                            let mut write = DocumentWrite::new(vec![*value]);
                            for t in terms {
                                write = write.with_term(INDEX, term_name(*t));
                            }
                            TxWrite::put(ns, &key, write, precondition)
                        }
                        None => TxWrite::remove(ns, &key, precondition),
                    });
                }
                if expected.is_none() {
                    expected = tx
                        .iter()
                        .find_map(|w| model.violation(w.target().1, w.precondition()));
                }
                if !transactions {
                    expected = Some(ErrorKind::Unsupported);
                }
                let got = backend.transact(tx.clone()).await;
                match (got, expected) {
                    (Ok(outcomes), None) => {
                        if outcomes.len() != tx.len() {
                            return Err(at(format!(
                                "{} outcomes for {} writes",
                                outcomes.len(),
                                tx.len()
                            )));
                        }
                        for (w, outcome) in tx.into_iter().zip(outcomes) {
                            match (w, outcome) {
                                (TxWrite::Put { key, write, .. }, TxOutcome::Put(v)) => {
                                    let seen = model.history.entry(key.clone()).or_default();
                                    if seen.contains(&v) {
                                        return Err(at(format!(
                                            "version {v} was returned before for {key}"
                                        )));
                                    }
                                    seen.push(v);
                                    let terms =
                                        write.index.iter().map(|t| t.term.clone()).collect();
                                    model.docs.insert(
                                        key,
                                        ModelDoc {
                                            value: write.value[0],
                                            version: v,
                                            terms,
                                        },
                                    );
                                }
                                (TxWrite::Remove { key, .. }, TxOutcome::Removed(removed)) => {
                                    let existed = model.docs.remove(&key).is_some();
                                    if removed != existed {
                                        return Err(at(format!("removal of {key} said {removed}, it existed: {existed}")));
                                    }
                                }
                                (w, o) => return Err(at(format!("outcome {o:?} for {w:?}"))),
                            }
                        }
                    }
                    (Err(e), Some(kind)) if e.kind() == kind => {}
                    (got, expected) => {
                        return Err(at(format!("got {got:?}, the contract says {expected:?}")))
                    }
                }
            }
            Op::Get { key } => {
                let key = key_name(tagged, *key);
                let got = backend.get(ns, &key).await.map_err(|e| at(e.to_string()))?;
                let got = got.map(|d| (d.value.to_vec(), d.version));
                let want = model.docs.get(&key).map(|d| (vec![d.value], d.version));
                if got != want {
                    return Err(at(format!("get gave {got:?}, the model has {want:?}")));
                }
            }
            Op::Lookup { term } => {
                let term = term_name(*term);
                let got = backend
                    .lookup(ns, INDEX, &term)
                    .await
                    .map_err(|e| at(e.to_string()))?;
                let got_set: BTreeSet<String> = got.iter().cloned().collect();
                let want: BTreeSet<String> = model
                    .docs
                    .iter()
                    .filter(|(_, d)| d.terms.contains(&term))
                    .map(|(k, _)| k.clone())
                    .collect();
                if got_set != want || got.len() != got_set.len() {
                    return Err(at(format!("lookup gave {got:?}, the model has {want:?}")));
                }
                let mut stamps = Vec::new();
                for k in &got {
                    let d = backend.get(ns, k).await.map_err(|e| at(e.to_string()))?;
                    stamps.push((d.map(|d| d.created).unwrap_or(0), k.clone()));
                }
                if !stamps.windows(2).all(|w| w[0] <= w[1]) {
                    return Err(at(format!(
                        "lookup not in (created, key) order: {stamps:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Runs 48 random sequences of up to 40 operations, each in a fresh
/// namespace, shrinking a failure to a minimal sequence.
pub async fn run(ctx: Ctx) {
    tokio::task::block_in_place(move || {
        let backend = ctx.backend.clone();
        let handle = tokio::runtime::Handle::current();
        let config = Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let sequence = AtomicU64::new(0);
        let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
            if ctx.is_cancelled() {
                return Err(TestCaseError::fail("cancelled: the case ran out of time"));
            }
            let ns = ctx.other_ns(&sequence.fetch_add(1, Ordering::Relaxed).to_string());
            handle
                .block_on(check(&backend, &ns, &ops))
                .map_err(TestCaseError::fail)
        });
        if let Err(e) = result {
            if ctx.is_cancelled() {
                return; // the runner has reported it already
            }
            panic!("the backend differs from the model: {e}");
        }
    });
}
