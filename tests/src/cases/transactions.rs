//! Transactions: writes to several keys, all or nothing.

use super::prelude::*;
use persistence_core::backend::{TxOutcome, TxWrite, MAX_TRANSACTION_WRITES};

fn put(ns: &str, key: &str, value: &str, pre: Precondition) -> TxWrite {
    TxWrite::put(ns, key, doc(value), pre)
}

/// The case's name for key `name`: on a backend whose transactions stay
/// within one partition, every key carries the same `{tag}`.
fn k(ctx: &Ctx, name: &str) -> String {
    if ctx.caps.partitioned_transactions {
        format!("{{tx}}{name}")
    } else {
        name.to_string()
    }
}

pub async fn transaction_applies_every_write(ctx: Ctx) {
    let other = ctx.other_ns("tx-other");
    ctx.backend
        .insert(&ctx.ns, &k(&ctx, "gone"), doc("x"))
        .await
        .unwrap();
    let v = ctx
        .backend
        .insert(&ctx.ns, &k(&ctx, "kept"), doc("1"))
        .await
        .unwrap();
    let mut writes = vec![
        TxWrite::put(
            &ctx.ns,
            k(&ctx, "new"),
            doc("n").with_term(IDX, "red"),
            Precondition::Absent,
        ),
        put(&ctx.ns, &k(&ctx, "kept"), "2", Precondition::Version(v)),
        TxWrite::remove(&ctx.ns, k(&ctx, "gone"), Precondition::Present),
        TxWrite::remove(&ctx.ns, k(&ctx, "never-was"), Precondition::Any),
        put(&other, &k(&ctx, "elsewhere"), "e", Precondition::Any),
    ];
    if ctx.caps.ttl {
        writes.push(TxWrite::put(
            &ctx.ns,
            k(&ctx, "brief"),
            doc("b").with_ttl(Some(Duration::from_secs(3600))),
            Precondition::Any,
        ));
    }
    let outcomes = ctx.backend.transact(writes).await.unwrap();
    let versions: Vec<Version> = outcomes
        .iter()
        .filter_map(|o| match o {
            TxOutcome::Put(v) => Some(*v),
            TxOutcome::Removed(_) => None,
        })
        .collect();
    assert_eq!(
        outcomes[2..4],
        [TxOutcome::Removed(true), TxOutcome::Removed(false)],
        "one outcome per write, in order"
    );
    assert_eq!(stored(&ctx, &k(&ctx, "new")).await.version, versions[0]);
    assert_eq!(stored(&ctx, &k(&ctx, "kept")).await.version, versions[1]);
    assert!(versions[1] > v, "a version moves forward");
    assert_eq!(
        value(&ctx, &ctx.ns, &k(&ctx, "kept")).await.as_deref(),
        Some("2")
    );
    assert_eq!(value(&ctx, &ctx.ns, &k(&ctx, "gone")).await, None);
    assert_eq!(
        value(&ctx, &other, &k(&ctx, "elsewhere")).await.as_deref(),
        Some("e")
    );
    assert_eq!(
        lookup(&ctx, "red").await,
        [k(&ctx, "new")],
        "index terms apply too"
    );
    if ctx.caps.ttl {
        assert!(
            stored(&ctx, &k(&ctx, "brief")).await.expires_at.is_some(),
            "a TTL inside a transaction applies"
        );
    }
    assert!(ctx.backend.transact(Vec::new()).await.unwrap().is_empty());
}

pub async fn transaction_failed_precondition_changes_nothing(ctx: Ctx) {
    let v = ctx
        .backend
        .insert(&ctx.ns, &k(&ctx, "a"), doc("a1").with_term(IDX, "t-a"))
        .await
        .unwrap();
    ctx.backend
        .insert(&ctx.ns, &k(&ctx, "b"), doc("b1"))
        .await
        .unwrap();
    ctx.backend
        .insert(&ctx.ns, &k(&ctx, "d"), doc("d1"))
        .await
        .unwrap();
    let before = (
        stored(&ctx, &k(&ctx, "a")).await,
        stored(&ctx, &k(&ctx, "d")).await,
    );
    let failing = [
        (
            put(&ctx.ns, &k(&ctx, "b"), "x", Precondition::Absent),
            ErrorKind::AlreadyExists,
        ),
        (
            put(&ctx.ns, &k(&ctx, "zz"), "x", Precondition::Present),
            ErrorKind::NotFound,
        ),
        (
            put(
                &ctx.ns,
                &k(&ctx, "b"),
                "x",
                Precondition::Version(Version(v.0 ^ 1)),
            ),
            ErrorKind::Conflict,
        ),
        (
            TxWrite::remove(&ctx.ns, k(&ctx, "zz"), Precondition::Present),
            ErrorKind::NotFound,
        ),
    ];
    for (last, expected) in failing {
        let writes = vec![
            TxWrite::put(
                &ctx.ns,
                k(&ctx, "a"),
                doc("a2").with_term(IDX, "t-new"),
                Precondition::Version(v),
            ),
            TxWrite::remove(&ctx.ns, k(&ctx, "d"), Precondition::Any),
            put(&ctx.ns, &k(&ctx, "c"), "c", Precondition::Absent),
            last,
        ];
        let r = ctx.backend.transact(writes).await;
        assert_eq!(kind(r), expected, "the failing write's error");
        assert_eq!(
            stored(&ctx, &k(&ctx, "a")).await,
            before.0,
            "a write before it applied"
        );
        assert_eq!(
            stored(&ctx, &k(&ctx, "d")).await,
            before.1,
            "a removal before it applied"
        );
        assert_eq!(
            value(&ctx, &ctx.ns, &k(&ctx, "c")).await,
            None,
            "an insert before it applied"
        );
        assert_eq!(lookup(&ctx, "t-a").await, [k(&ctx, "a")], "index changed");
        assert!(lookup(&ctx, "t-new").await.is_empty(), "index changed");
    }
}

pub async fn transaction_bad_input_is_refused(ctx: Ctx) {
    let twice = vec![
        put(&ctx.ns, &k(&ctx, "k"), "1", Precondition::Any),
        put(&ctx.ns, &k(&ctx, "k"), "2", Precondition::Any),
    ];
    assert_eq!(
        kind(ctx.backend.transact(twice).await),
        ErrorKind::InvalidInput
    );
    let absent = vec![TxWrite::remove(&ctx.ns, k(&ctx, "k"), Precondition::Absent)];
    assert_eq!(
        kind(ctx.backend.transact(absent).await),
        ErrorKind::InvalidInput
    );
    let many: Vec<TxWrite> = (0..=MAX_TRANSACTION_WRITES)
        .map(|n| put(&ctx.ns, &k(&ctx, &n.to_string()), "x", Precondition::Any))
        .collect();
    assert_eq!(
        kind(ctx.backend.transact(many).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        value(&ctx, &ctx.ns, &k(&ctx, "k")).await,
        None,
        "nothing was written"
    );
    assert_eq!(
        value(&ctx, &ctx.ns, &k(&ctx, "0")).await,
        None,
        "nothing was written"
    );
}

/// Transfers between two counters by transaction race single versioned
/// increments of one of them: the total says whether any update was lost
/// or a transaction half applied.
pub async fn transaction_isolated_from_concurrent_single_writes(ctx: Ctx) {
    let (ka, kb) = (k(&ctx, "a"), k(&ctx, "b"));
    ctx.backend.insert(&ctx.ns, &ka, doc("100")).await.unwrap();
    ctx.backend.insert(&ctx.ns, &kb, doc("100")).await.unwrap();
    let read = |backend: persistence_core::SharedBackend, ns: String, key: String| async move {
        let d = backend.get(&ns, &key).await.unwrap().unwrap();
        let n: i64 = std::str::from_utf8(&d.value).unwrap().parse().unwrap();
        (n, d.version)
    };
    let mut handles = Vec::new();
    for worker in 0..4 {
        let (backend, ns) = (ctx.backend.clone(), ctx.ns.clone());
        let (ka, kb) = (ka.clone(), kb.clone());
        handles.push(tokio::spawn(async move {
            let mut done = 0u32;
            for _ in 0..25 {
                loop {
                    let (a, va) = read(backend.clone(), ns.clone(), ka.clone()).await;
                    let r = if worker % 2 == 0 {
                        let (b, vb) = read(backend.clone(), ns.clone(), kb.clone()).await;
                        backend
                            .transact(vec![
                                put(&ns, &ka, &(a - 1).to_string(), Precondition::Version(va)),
                                put(&ns, &kb, &(b + 1).to_string(), Precondition::Version(vb)),
                            ])
                            .await
                            .map(drop)
                    } else {
                        backend
                            .replace(&ns, &ka, doc(&(a + 1).to_string()), Some(va))
                            .await
                            .map(drop)
                    };
                    match r {
                        Ok(()) => break,
                        Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
                    }
                }
                done += 1;
            }
            done
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 25);
    }
    let (a, _) = read(ctx.backend.clone(), ctx.ns.clone(), ka.clone()).await;
    let (b, _) = read(ctx.backend.clone(), ctx.ns.clone(), kb).await;
    // 50 transfers a -> b, 50 increments of a
    assert_eq!(b, 150, "every transfer reached b exactly once");
    assert_eq!(a, 100, "a lost an update or a transfer half applied");
}

/// Keys of two partitions in one transaction: refused as `Unsupported`,
/// with nothing written, where transactions stay within one partition
/// (`{a}` and `{b}` are different Redis Cluster hash slots); applied
/// everywhere else, where braces are ordinary key bytes.
pub async fn transaction_across_partitions(ctx: Ctx) {
    let writes = vec![
        put(&ctx.ns, "{a}one", "1", Precondition::Absent),
        put(&ctx.ns, "{b}two", "2", Precondition::Absent),
    ];
    let r = ctx.backend.transact(writes).await;
    if ctx.caps.partitioned_transactions {
        assert_eq!(kind(r), ErrorKind::Unsupported);
        assert_eq!(
            value(&ctx, &ctx.ns, "{a}one").await,
            None,
            "nothing was written"
        );
        assert_eq!(
            value(&ctx, &ctx.ns, "{b}two").await,
            None,
            "nothing was written"
        );
    } else {
        r.expect("any keys go in one transaction");
        assert_eq!(value(&ctx, &ctx.ns, "{a}one").await.as_deref(), Some("1"));
        assert_eq!(value(&ctx, &ctx.ns, "{b}two").await.as_deref(), Some("2"));
    }
}
