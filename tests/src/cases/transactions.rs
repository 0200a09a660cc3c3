//! Transactions: writes to several keys, all or nothing.

use super::prelude::*;
use persistence_core::backend::{TxOutcome, TxWrite, MAX_TRANSACTION_WRITES};

fn put(ns: &str, key: &str, value: &str, pre: Precondition) -> TxWrite {
    TxWrite::put(ns, key, doc(value), pre)
}

pub async fn transaction_applies_every_write(ctx: Ctx) {
    let other = ctx.other_ns("tx-other");
    ctx.backend.insert(&ctx.ns, "gone", doc("x")).await.unwrap();
    let v = ctx.backend.insert(&ctx.ns, "kept", doc("1")).await.unwrap();
    let mut writes = vec![
        TxWrite::put(
            &ctx.ns,
            "new",
            doc("n").with_term(IDX, "red"),
            Precondition::Absent,
        ),
        put(&ctx.ns, "kept", "2", Precondition::Version(v)),
        TxWrite::remove(&ctx.ns, "gone", Precondition::Present),
        TxWrite::remove(&ctx.ns, "never-was", Precondition::Any),
        put(&other, "elsewhere", "e", Precondition::Any),
    ];
    if ctx.caps.ttl {
        writes.push(TxWrite::put(
            &ctx.ns,
            "brief",
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
    assert_eq!(stored(&ctx, "new").await.version, versions[0]);
    assert_eq!(stored(&ctx, "kept").await.version, versions[1]);
    assert!(versions[1] > v, "a version moves forward");
    assert_eq!(value(&ctx, &ctx.ns, "kept").await.as_deref(), Some("2"));
    assert_eq!(value(&ctx, &ctx.ns, "gone").await, None);
    assert_eq!(value(&ctx, &other, "elsewhere").await.as_deref(), Some("e"));
    assert_eq!(lookup(&ctx, "red").await, ["new"], "index terms apply too");
    if ctx.caps.ttl {
        assert!(
            stored(&ctx, "brief").await.expires_at.is_some(),
            "a TTL inside a transaction applies"
        );
    }
    assert!(ctx.backend.transact(Vec::new()).await.unwrap().is_empty());
}

pub async fn transaction_failed_precondition_changes_nothing(ctx: Ctx) {
    let v = ctx
        .backend
        .insert(&ctx.ns, "a", doc("a1").with_term(IDX, "t-a"))
        .await
        .unwrap();
    ctx.backend.insert(&ctx.ns, "b", doc("b1")).await.unwrap();
    ctx.backend.insert(&ctx.ns, "d", doc("d1")).await.unwrap();
    let before = (stored(&ctx, "a").await, stored(&ctx, "d").await);
    let failing = [
        (
            put(&ctx.ns, "b", "x", Precondition::Absent),
            ErrorKind::AlreadyExists,
        ),
        (
            put(&ctx.ns, "zz", "x", Precondition::Present),
            ErrorKind::NotFound,
        ),
        (
            put(&ctx.ns, "b", "x", Precondition::Version(Version(v.0 ^ 1))),
            ErrorKind::Conflict,
        ),
        (
            TxWrite::remove(&ctx.ns, "zz", Precondition::Present),
            ErrorKind::NotFound,
        ),
    ];
    for (last, expected) in failing {
        let writes = vec![
            TxWrite::put(
                &ctx.ns,
                "a",
                doc("a2").with_term(IDX, "t-new"),
                Precondition::Version(v),
            ),
            TxWrite::remove(&ctx.ns, "d", Precondition::Any),
            put(&ctx.ns, "c", "c", Precondition::Absent),
            last,
        ];
        let r = ctx.backend.transact(writes).await;
        assert_eq!(kind(r), expected, "the failing write's error");
        assert_eq!(
            stored(&ctx, "a").await,
            before.0,
            "a write before it applied"
        );
        assert_eq!(
            stored(&ctx, "d").await,
            before.1,
            "a removal before it applied"
        );
        assert_eq!(
            value(&ctx, &ctx.ns, "c").await,
            None,
            "an insert before it applied"
        );
        assert_eq!(lookup(&ctx, "t-a").await, ["a"], "index changed");
        assert!(lookup(&ctx, "t-new").await.is_empty(), "index changed");
    }
}

pub async fn transaction_bad_input_is_refused(ctx: Ctx) {
    let twice = vec![
        put(&ctx.ns, "k", "1", Precondition::Any),
        put(&ctx.ns, "k", "2", Precondition::Any),
    ];
    assert_eq!(
        kind(ctx.backend.transact(twice).await),
        ErrorKind::InvalidInput
    );
    let absent = vec![TxWrite::remove(&ctx.ns, "k", Precondition::Absent)];
    assert_eq!(
        kind(ctx.backend.transact(absent).await),
        ErrorKind::InvalidInput
    );
    let many: Vec<TxWrite> = (0..=MAX_TRANSACTION_WRITES)
        .map(|n| put(&ctx.ns, &n.to_string(), "x", Precondition::Any))
        .collect();
    assert_eq!(
        kind(ctx.backend.transact(many).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(value(&ctx, &ctx.ns, "k").await, None, "nothing was written");
    assert_eq!(value(&ctx, &ctx.ns, "0").await, None, "nothing was written");
}

/// Transfers between two counters by transaction race single versioned
/// increments of one of them: the total says whether any update was lost
/// or a transaction half applied.
pub async fn transaction_isolated_from_concurrent_single_writes(ctx: Ctx) {
    ctx.backend.insert(&ctx.ns, "a", doc("100")).await.unwrap();
    ctx.backend.insert(&ctx.ns, "b", doc("100")).await.unwrap();
    let read = |backend: persistence_core::SharedBackend, ns: String, key: &'static str| async move {
        let d = backend.get(&ns, key).await.unwrap().unwrap();
        let n: i64 = std::str::from_utf8(&d.value).unwrap().parse().unwrap();
        (n, d.version)
    };
    let mut handles = Vec::new();
    for worker in 0..4 {
        let (backend, ns) = (ctx.backend.clone(), ctx.ns.clone());
        handles.push(tokio::spawn(async move {
            let mut done = 0u32;
            for _ in 0..25 {
                loop {
                    let (a, va) = read(backend.clone(), ns.clone(), "a").await;
                    let r = if worker % 2 == 0 {
                        let (b, vb) = read(backend.clone(), ns.clone(), "b").await;
                        backend
                            .transact(vec![
                                put(&ns, "a", &(a - 1).to_string(), Precondition::Version(va)),
                                put(&ns, "b", &(b + 1).to_string(), Precondition::Version(vb)),
                            ])
                            .await
                            .map(drop)
                    } else {
                        backend
                            .replace(&ns, "a", doc(&(a + 1).to_string()), Some(va))
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
    let (a, _) = read(ctx.backend.clone(), ctx.ns.clone(), "a").await;
    let (b, _) = read(ctx.backend.clone(), ctx.ns.clone(), "b").await;
    // 50 transfers a -> b, 50 increments of a
    assert_eq!(b, 150, "every transfer reached b exactly once");
    assert_eq!(a, 100, "a lost an update or a transfer half applied");
}
