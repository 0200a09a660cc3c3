//! Batch calls: one result per key, each write on its own.

use super::prelude::*;

pub async fn batch_get_with_missing_keys(ctx: Ctx) {
    ctx.backend.insert(&ctx.ns, "a", doc("1")).await.unwrap();
    ctx.backend.insert(&ctx.ns, "c", doc("3")).await.unwrap();
    let keys: Vec<String> = ["a", "b", "c", "a"].map(String::from).to_vec();
    let got = ctx.backend.get_many(&ctx.ns, &keys).await;
    assert_eq!(got.len(), 4, "one result per key");
    let vals: Vec<Option<Vec<u8>>> = got
        .into_iter()
        .map(|r| r.unwrap().map(|d| d.value.to_vec()))
        .collect();
    assert_eq!(
        vals,
        [
            Some(b"1".to_vec()),
            None,
            Some(b"3".to_vec()),
            Some(b"1".to_vec())
        ]
    );
}

pub async fn batch_put_partial_success(ctx: Ctx) {
    let v = ctx
        .backend
        .insert(&ctx.ns, "versioned", doc("0"))
        .await
        .unwrap();
    ctx.backend
        .insert(&ctx.ns, "exists", doc("0"))
        .await
        .unwrap();
    let put = |key: &str, value: &str, precondition| Put {
        key: key.into(),
        write: doc(value),
        precondition,
    };
    let results = ctx
        .backend
        .put_many(
            &ctx.ns,
            vec![
                put("new", "1", Precondition::Absent),
                put(
                    "versioned",
                    "2",
                    Precondition::Version(Version(v.0 + 1_000_000)),
                ),
                put("exists", "3", Precondition::Absent),
                put("versioned", "4", Precondition::Version(v)),
                put("missing", "5", Precondition::Present),
            ],
        )
        .await;
    let kinds: Vec<Option<ErrorKind>> = results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            Some(ErrorKind::Conflict),
            Some(ErrorKind::AlreadyExists),
            None,
            Some(ErrorKind::NotFound)
        ]
    );
    assert_eq!(value(&ctx, &ctx.ns, "new").await.as_deref(), Some("1"));
    assert_eq!(
        value(&ctx, &ctx.ns, "versioned").await.as_deref(),
        Some("4")
    );
    assert_eq!(value(&ctx, &ctx.ns, "exists").await.as_deref(), Some("0"));
    assert_eq!(value(&ctx, &ctx.ns, "missing").await, None);
}

pub async fn batch_remove_partial_success(ctx: Ctx) {
    let va = ctx.backend.insert(&ctx.ns, "a", doc("1")).await.unwrap();
    ctx.backend.insert(&ctx.ns, "b", doc("1")).await.unwrap();
    let rm = |key: &str, precondition| Remove {
        key: key.into(),
        precondition,
    };
    let results = ctx
        .backend
        .remove_many(
            &ctx.ns,
            vec![
                rm("a", Precondition::Version(va)),
                rm("b", Precondition::Version(Version(va.0 + 1_000_000))),
                rm("missing", Precondition::Present),
                rm("missing", Precondition::Any),
            ],
        )
        .await;
    assert!(results[0].as_ref().unwrap());
    assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(results[2].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!results[3].as_ref().unwrap());
    assert_eq!(value(&ctx, &ctx.ns, "a").await, None);
    assert_eq!(value(&ctx, &ctx.ns, "b").await.as_deref(), Some("1"));
}
