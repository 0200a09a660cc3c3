//! TTL: expired documents are invisible everywhere.

use super::prelude::*;

pub(crate) const SHORT_TTL: Duration = Duration::from_millis(500);
/// Long enough for backends whose TTL resolution is a second.
pub(crate) const PAST_TTL: Duration = Duration::from_millis(1600);

pub async fn ttl_expired_document_is_invisible(ctx: Ctx) {
    let w = doc("1").with_ttl(Some(SHORT_TTL));
    ctx.backend.insert(&ctx.ns, "k", w).await.unwrap();
    ctx.backend.insert(&ctx.ns, "keep", doc("2")).await.unwrap();
    assert!(
        value(&ctx, &ctx.ns, "k").await.is_some(),
        "expired too early"
    );
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(ctx.backend.get(&ctx.ns, "k").await.unwrap(), None);
    let missing = ctx.backend.replace(&ctx.ns, "k", doc("x"), None).await;
    assert_eq!(
        kind(missing),
        ErrorKind::NotFound,
        "an expired document must count as absent"
    );
    assert!(value(&ctx, &ctx.ns, "keep").await.is_some());
}

pub async fn ttl_expiry_time_is_reported(ctx: Ctx) {
    let ttl = Duration::from_secs(100);
    let before = SystemTime::now();
    ctx.backend
        .insert(&ctx.ns, "k", doc("1").with_ttl(Some(ttl)))
        .await
        .unwrap();
    let after = SystemTime::now();
    let at = stored(&ctx, "k")
        .await
        .expires_at
        .expect("no expiry reported");
    let slack = Duration::from_secs(1);
    assert!(
        at + slack >= before + ttl && at <= after + ttl + slack,
        "expiry {at:?} is not write time + {ttl:?}"
    );
}

pub async fn ttl_removed_by_write_without_ttl(ctx: Ctx) {
    ctx.backend
        .insert(&ctx.ns, "k", doc("1").with_ttl(Some(SHORT_TTL)))
        .await
        .unwrap();
    ctx.backend
        .replace(&ctx.ns, "k", doc("2"), None)
        .await
        .unwrap();
    assert_eq!(stored(&ctx, "k").await.expires_at, None);
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        value(&ctx, &ctx.ns, "k").await.as_deref(),
        Some("2"),
        "the TTL must be gone"
    );
}

pub async fn ttl_expired_document_leaves_no_index_hit(ctx: Ctx) {
    ctx.backend
        .insert(
            &ctx.ns,
            "short",
            doc("1").with_term(IDX, "t").with_ttl(Some(SHORT_TTL)),
        )
        .await
        .unwrap();
    ctx.backend
        .insert(&ctx.ns, "long", doc("1").with_term(IDX, "t"))
        .await
        .unwrap();
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(lookup(&ctx, "t").await, ["long"]);
}

pub async fn ttl_expired_key_can_be_inserted_again(ctx: Ctx) {
    let v1 = ctx
        .backend
        .insert(&ctx.ns, "k", doc("1").with_ttl(Some(SHORT_TTL)))
        .await
        .unwrap();
    tokio::time::sleep(PAST_TTL).await;
    let v2 = ctx
        .backend
        .insert(&ctx.ns, "k", doc("2"))
        .await
        .expect("expired key is absent");
    assert_ne!(v1, v2);
    assert_eq!(value(&ctx, &ctx.ns, "k").await.as_deref(), Some("2"));
}

/// `count_term` drops a document the moment it expires, whatever became
/// of its key since: written again without a TTL, under another term, or
/// under the same term after it expired.
pub async fn ttl_expired_document_leaves_the_count(ctx: Ctx) {
    let long = Some(Duration::from_secs(100));
    let write = |term: &str, ttl: Option<Duration>| doc("1").with_term(IDX, term).with_ttl(ttl);
    let count = |term: &'static str| {
        let ctx = ctx.clone();
        async move { ctx.backend.count_term(&ctx.ns, IDX, term).await.unwrap() }
    };
    let b = &ctx.backend;
    for key in ["short", "kept", "moved", "back", "again", "dropped"] {
        b.insert(&ctx.ns, key, write("t", Some(SHORT_TTL)))
            .await
            .unwrap();
    }
    b.insert(&ctx.ns, "long", write("t", None)).await.unwrap();
    b.insert(&ctx.ns, "longer", write("t", long)).await.unwrap();
    b.replace(&ctx.ns, "kept", write("t", None), None)
        .await
        .unwrap();
    b.replace(&ctx.ns, "dropped", write("u", Some(SHORT_TTL)), None)
        .await
        .unwrap();
    assert_eq!((count("t").await, count("u").await), (7, 1));
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!((count("t").await, count("u").await), (3, 0));
    b.insert(&ctx.ns, "moved", write("u", None)).await.unwrap();
    b.insert(&ctx.ns, "back", write("t", None)).await.unwrap();
    b.insert(&ctx.ns, "again", write("t", long)).await.unwrap();
    assert_eq!((count("t").await, count("u").await), (5, 1));
    for term in ["t", "u"] {
        assert_eq!(
            lookup(&ctx, term).await.len() as u64,
            count(term).await,
            "count_term agrees with lookup for {term}"
        );
    }
}
