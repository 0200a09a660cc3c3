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
