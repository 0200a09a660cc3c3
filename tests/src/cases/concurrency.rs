//! Concurrent writers of one key: exactly one wins.

use super::prelude::*;

pub async fn concurrent_inserts_of_one_key_one_wins(ctx: Ctx) {
    let mut handles = Vec::new();
    for n in 0..100 {
        let (backend, ns) = (ctx.backend.clone(), ctx.ns.clone());
        handles.push(tokio::spawn(async move {
            backend
                .insert(
                    &ns,
                    "contended",
                    doc(&n.to_string()).with_term(IDX, format!("t{n}")),
                )
                .await
        }));
    }
    let mut winners = Vec::new();
    for (n, h) in handles.into_iter().enumerate() {
        match h.await.unwrap() {
            Ok(_) => winners.push(n),
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 100 concurrent inserts must win: {winners:?}"
    );
    let w = winners[0];
    assert_eq!(value(&ctx, &ctx.ns, "contended").await, Some(w.to_string()));
    for n in 0..100 {
        let hits = lookup(&ctx, &format!("t{n}")).await;
        assert_eq!(hits.len(), usize::from(n == w), "index of loser {n} leaked");
    }
}

pub async fn concurrent_versioned_writes_first_wins(ctx: Ctx) {
    let v = ctx
        .backend
        .insert(&ctx.ns, "k", doc("start"))
        .await
        .unwrap();
    let mut handles = Vec::new();
    for n in 0..50 {
        let (backend, ns) = (ctx.backend.clone(), ctx.ns.clone());
        handles.push(tokio::spawn(async move {
            backend
                .replace(&ns, "k", doc(&n.to_string()), Some(v))
                .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(
        ok, 1,
        "exactly one write at the same expected version may win"
    );
}
