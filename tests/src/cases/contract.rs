//! The raw contract: preconditions, versions, index terms, namespaces, keys and values.

use super::prelude::*;

pub async fn put_absent_then_get_round_trips(ctx: Ctx) {
    let v = ctx
        .backend
        .insert(&ctx.ns, "k", doc("{\"a\":1}"))
        .await
        .unwrap();
    let got = ctx
        .backend
        .get(&ctx.ns, "k")
        .await
        .unwrap()
        .expect("inserted document missing");
    assert_eq!(&got.value[..], b"{\"a\":1}");
    assert_eq!(
        got.version, v,
        "get must return the version the write returned"
    );
    assert_eq!(got.expires_at, None);
}

pub async fn get_missing_is_none(ctx: Ctx) {
    assert_eq!(ctx.backend.get(&ctx.ns, "missing").await.unwrap(), None);
    assert!(ctx
        .backend
        .lookup(&ctx.ns, IDX, "missing")
        .await
        .unwrap()
        .is_empty());
}

pub async fn insert_existing_fails_already_exists(ctx: Ctx) {
    ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    assert_eq!(
        kind(ctx.backend.insert(&ctx.ns, "k", doc("2")).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(value(&ctx, &ctx.ns, "k").await.as_deref(), Some("1"));
}

pub async fn replace_missing_fails_not_found(ctx: Ctx) {
    assert_eq!(
        kind(ctx.backend.replace(&ctx.ns, "k", doc("1"), None).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        value(&ctx, &ctx.ns, "k").await,
        None,
        "a failed replace must not create"
    );
}

pub async fn replace_returns_new_version_and_value(ctx: Ctx) {
    let v1 = ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    let created = stored(&ctx, "k").await.created;
    let v2 = ctx
        .backend
        .replace(&ctx.ns, "k", doc("2"), None)
        .await
        .unwrap();
    assert_ne!(v1, v2, "every write must return a new version");
    let got = stored(&ctx, "k").await;
    assert_eq!((&got.value[..], got.version), (&b"2"[..], v2));
    assert_eq!(
        got.created, created,
        "a replace must keep the creation stamp"
    );
}

pub async fn upsert_creates_then_replaces(ctx: Ctx) {
    let v1 = ctx.backend.upsert(&ctx.ns, "k", doc("1")).await.unwrap();
    let v2 = ctx.backend.upsert(&ctx.ns, "k", doc("2")).await.unwrap();
    assert_ne!(v1, v2);
    assert_eq!(value(&ctx, &ctx.ns, "k").await.as_deref(), Some("2"));
}

pub async fn remove_missing_with_present_fails_not_found(ctx: Ctx) {
    let r = ctx
        .backend
        .remove(&ctx.ns, "k", Precondition::Present)
        .await;
    assert_eq!(kind(r), ErrorKind::NotFound);
}

pub async fn remove_missing_with_any_is_false(ctx: Ctx) {
    assert!(!ctx
        .backend
        .remove(&ctx.ns, "k", Precondition::Any)
        .await
        .unwrap());
}

pub async fn remove_then_get_is_none(ctx: Ctx) {
    ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    assert!(ctx
        .backend
        .remove(&ctx.ns, "k", Precondition::Present)
        .await
        .unwrap());
    assert_eq!(ctx.backend.get(&ctx.ns, "k").await.unwrap(), None);
    let again = ctx
        .backend
        .remove(&ctx.ns, "k", Precondition::Present)
        .await;
    assert_eq!(
        kind(again),
        ErrorKind::NotFound,
        "a second delete must fail"
    );
}

pub async fn remove_with_absent_is_invalid_input(ctx: Ctx) {
    ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    let r = ctx.backend.remove(&ctx.ns, "k", Precondition::Absent).await;
    assert_eq!(kind(r), ErrorKind::InvalidInput);
    assert!(value(&ctx, &ctx.ns, "k").await.is_some());
}

pub async fn version_mismatch_on_replace_conflicts(ctx: Ctx) {
    let v1 = ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    ctx.backend
        .replace(&ctx.ns, "k", doc("2"), Some(v1))
        .await
        .unwrap();
    let stale = ctx.backend.replace(&ctx.ns, "k", doc("3"), Some(v1)).await;
    assert_eq!(
        kind(stale),
        ErrorKind::Conflict,
        "a stale version must conflict"
    );
    assert_eq!(value(&ctx, &ctx.ns, "k").await.as_deref(), Some("2"));
}

pub async fn version_match_on_replace_succeeds(ctx: Ctx) {
    let v1 = ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    let v2 = ctx
        .backend
        .replace(&ctx.ns, "k", doc("2"), Some(v1))
        .await
        .unwrap();
    let v3 = ctx
        .backend
        .replace(&ctx.ns, "k", doc("3"), Some(v2))
        .await
        .unwrap();
    assert_eq!(stored(&ctx, "k").await.version, v3);
}

pub async fn version_mismatch_on_remove_conflicts(ctx: Ctx) {
    let v1 = ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    let v2 = ctx
        .backend
        .replace(&ctx.ns, "k", doc("2"), None)
        .await
        .unwrap();
    let r = ctx
        .backend
        .remove(&ctx.ns, "k", Precondition::Version(v1))
        .await;
    assert_eq!(kind(r), ErrorKind::Conflict);
    assert!(ctx
        .backend
        .remove(&ctx.ns, "k", Precondition::Version(v2))
        .await
        .unwrap());
}

pub async fn version_on_missing_key_is_not_found(ctx: Ctx) {
    let r = ctx
        .backend
        .put(&ctx.ns, "k", doc("1"), Precondition::Version(Version(1)))
        .await;
    assert_eq!(kind(r), ErrorKind::NotFound);
    assert_eq!(value(&ctx, &ctx.ns, "k").await, None);
}

pub async fn versions_are_new_after_recreate(ctx: Ctx) {
    let v1 = ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    ctx.backend
        .remove(&ctx.ns, "k", Precondition::Present)
        .await
        .unwrap();
    let v2 = ctx.backend.insert(&ctx.ns, "k", doc("1")).await.unwrap();
    assert_ne!(
        v1, v2,
        "a re-created key must not reuse an old version (ABA)"
    );
    let r = ctx.backend.replace(&ctx.ns, "k", doc("x"), Some(v1)).await;
    assert_eq!(kind(r), ErrorKind::Conflict);
}

pub async fn failed_write_changes_nothing(ctx: Ctx) {
    let v1 = ctx
        .backend
        .insert(&ctx.ns, "k", doc("1").with_term(IDX, "a"))
        .await
        .unwrap();
    let r = ctx
        .backend
        .put(
            &ctx.ns,
            "k",
            doc("2").with_term(IDX, "b"),
            Precondition::Version(Version(v1.0 ^ 0xdead)),
        )
        .await;
    assert_eq!(kind(r), ErrorKind::Conflict);
    let r = ctx
        .backend
        .insert(&ctx.ns, "k", doc("3").with_term(IDX, "c"))
        .await;
    assert_eq!(kind(r), ErrorKind::AlreadyExists);
    let got = stored(&ctx, "k").await;
    assert_eq!((&got.value[..], got.version), (&b"1"[..], v1));
    assert_eq!(lookup(&ctx, "a").await, ["k"]);
    assert!(lookup(&ctx, "b").await.is_empty() && lookup(&ctx, "c").await.is_empty());
}

pub async fn index_lookup_in_creation_order(ctx: Ctx) {
    // keys deliberately not in creation order
    for key in ["m", "z", "a", "q"] {
        ctx.backend
            .insert(&ctx.ns, key, doc(key).with_term(IDX, "shared"))
            .await
            .unwrap();
    }
    assert_eq!(lookup(&ctx, "shared").await, ["m", "z", "a", "q"]);
    // a later replace keeps the creation position
    ctx.backend
        .replace(&ctx.ns, "m", doc("m2").with_term(IDX, "shared"), None)
        .await
        .unwrap();
    assert_eq!(lookup(&ctx, "shared").await, ["m", "z", "a", "q"]);
}

pub async fn lookup_values_are_lookup_then_read(ctx: Ctx) {
    let values = |limit: usize| {
        let ctx = ctx.clone();
        async move {
            let got = ctx
                .backend
                .lookup_values(&ctx.ns, IDX, "t", limit)
                .await
                .unwrap();
            got.into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.to_vec()).unwrap()))
                .collect::<Vec<_>>()
        }
    };
    assert!(values(10).await.is_empty());
    for key in ["m", "z", "a"] {
        ctx.backend
            .insert(&ctx.ns, key, doc(&format!("v-{key}")).with_term(IDX, "t"))
            .await
            .unwrap();
    }
    ctx.backend
        .insert(&ctx.ns, "other", doc("x"))
        .await
        .unwrap();
    let all =
        [("m", "v-m"), ("z", "v-z"), ("a", "v-a")].map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(values(10).await, all, "lookup's order, with each value");
    assert_eq!(values(2).await, all[..2], "at most the limit");
    assert!(values(0).await.is_empty());
    ctx.backend
        .remove(&ctx.ns, "z", Precondition::Present)
        .await
        .unwrap();
    ctx.backend
        .replace(&ctx.ns, "a", doc("v-a2"), None)
        .await
        .unwrap();
    ctx.backend
        .replace(&ctx.ns, "m", doc("v-m2").with_term(IDX, "t"), None)
        .await
        .unwrap();
    assert_eq!(
        values(10).await,
        [("m".to_string(), "v-m2".to_string())],
        "removed and re-termed documents are gone, values are current"
    );
}

pub async fn index_terms_replaced_by_write(ctx: Ctx) {
    ctx.backend
        .insert(
            &ctx.ns,
            "k",
            doc("1").with_term(IDX, "a").with_term(IDX, "b"),
        )
        .await
        .unwrap();
    ctx.backend
        .replace(
            &ctx.ns,
            "k",
            doc("2").with_term(IDX, "b").with_term(IDX, "c"),
            None,
        )
        .await
        .unwrap();
    assert!(
        lookup(&ctx, "a").await.is_empty(),
        "a term dropped by the write must go"
    );
    assert_eq!(lookup(&ctx, "b").await, ["k"]);
    assert_eq!(lookup(&ctx, "c").await, ["k"]);
}

pub async fn index_terms_removed_with_document(ctx: Ctx) {
    ctx.backend
        .insert(&ctx.ns, "k", doc("1").with_term(IDX, "a"))
        .await
        .unwrap();
    ctx.backend
        .insert(&ctx.ns, "j", doc("1").with_term(IDX, "a"))
        .await
        .unwrap();
    ctx.backend
        .remove(&ctx.ns, "k", Precondition::Present)
        .await
        .unwrap();
    assert_eq!(lookup(&ctx, "a").await, ["j"]);
}

pub async fn index_duplicate_terms_are_one_entry(ctx: Ctx) {
    let w = doc("1")
        .with_term(IDX, "a")
        .with_term(IDX, "a")
        .with_term("other", "a");
    ctx.backend.insert(&ctx.ns, "k", w).await.unwrap();
    assert_eq!(lookup(&ctx, "a").await, ["k"]);
    assert_eq!(
        ctx.backend.lookup(&ctx.ns, "other", "a").await.unwrap(),
        ["k"]
    );
    assert!(ctx
        .backend
        .lookup(&ctx.ns, "third", "a")
        .await
        .unwrap()
        .is_empty());
}

pub async fn namespaces_are_isolated(ctx: Ctx) {
    let other = ctx.other_ns("b");
    ctx.backend
        .insert(&ctx.ns, "k", doc("a").with_term(IDX, "t"))
        .await
        .unwrap();
    ctx.backend
        .insert(&other, "k", doc("b").with_term(IDX, "t"))
        .await
        .unwrap();
    assert_eq!(value(&ctx, &ctx.ns, "k").await.as_deref(), Some("a"));
    assert_eq!(value(&ctx, &other, "k").await.as_deref(), Some("b"));
    ctx.backend
        .remove(&other, "k", Precondition::Present)
        .await
        .unwrap();
    assert_eq!(lookup(&ctx, "t").await, ["k"]);
    assert!(ctx
        .backend
        .lookup(&other, IDX, "t")
        .await
        .unwrap()
        .is_empty());
}

/// Strings that break naive `prefix:key` encodings.
pub(crate) const NASTY: [&str; 12] = [
    "a",
    "a:b",
    "a:",
    ":a",
    "*",
    "a*",
    "{a}",
    "{",
    "}",
    "ключ-日本-🔑",
    "a\u{0}b",
    "a/b\\c",
];

pub async fn keys_and_terms_never_collide(ctx: Ctx) {
    for (n, key) in NASTY.iter().enumerate() {
        ctx.backend
            .insert(&ctx.ns, key, doc(&n.to_string()).with_term(IDX, *key))
            .await
            .unwrap_or_else(|e| panic!("insert of key {key:?} failed: {e}"));
    }
    // a key that looks like an index key must stay a plain document
    let lookalike = format!("{IDX}:a");
    ctx.backend
        .insert(&ctx.ns, &lookalike, doc("x"))
        .await
        .unwrap();
    for (n, key) in NASTY.iter().enumerate() {
        assert_eq!(
            value(&ctx, &ctx.ns, key).await,
            Some(n.to_string()),
            "key {key:?}"
        );
        assert_eq!(lookup(&ctx, key).await, [key.to_string()], "term {key:?}");
    }
    assert_eq!(value(&ctx, &ctx.ns, &lookalike).await.as_deref(), Some("x"));
}

pub async fn empty_key_and_empty_term(ctx: Ctx) {
    ctx.backend
        .insert(&ctx.ns, "", doc("empty").with_term(IDX, ""))
        .await
        .unwrap();
    assert_eq!(value(&ctx, &ctx.ns, "").await.as_deref(), Some("empty"));
    assert_eq!(lookup(&ctx, "").await, [""]);
    ctx.backend
        .remove(&ctx.ns, "", Precondition::Present)
        .await
        .unwrap();
    assert!(lookup(&ctx, "").await.is_empty());
}

pub async fn large_document_1mib(ctx: Ctx) {
    let big: Vec<u8> = (0..1024 * 1024)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26])
        .collect();
    ctx.backend
        .insert(&ctx.ns, "big", DocumentWrite::new(big.clone()))
        .await
        .unwrap();
    let got = stored(&ctx, "big").await;
    assert_eq!(got.value.len(), big.len());
    assert!(
        got.value[..] == big[..],
        "1 MiB document changed on the way"
    );
}

pub async fn value_shapes_round_trip(ctx: Ctx) {
    let shapes = [
        "null",
        "true",
        "0",
        "-1.5e300",
        "\"\"",
        "\"\\u0000 ✓ \\\"q\\\"\"",
        "[]",
        "{}",
        "[1,[2,[3,{\"a\":[]}]]]",
        "{\"z\":1,\"a\":2}",
    ];
    for (n, s) in shapes.iter().enumerate() {
        ctx.backend
            .insert(&ctx.ns, &n.to_string(), doc(s))
            .await
            .unwrap();
    }
    let bytes: Vec<u8> = (0..=255).collect();
    ctx.backend
        .insert(&ctx.ns, "binary", DocumentWrite::new(bytes.clone()))
        .await
        .unwrap();
    ctx.backend
        .insert(&ctx.ns, "empty", DocumentWrite::new(Vec::new()))
        .await
        .unwrap();
    for (n, s) in shapes.iter().enumerate() {
        assert_eq!(
            value(&ctx, &ctx.ns, &n.to_string()).await.as_deref(),
            Some(*s)
        );
    }
    let got = stored(&ctx, "binary").await;
    assert_eq!(&got.value[..], &bytes[..], "documents are bytes, not text");
    let got = stored(&ctx, "empty").await;
    assert!(got.value.is_empty());
}

pub async fn count_term_counts_live_documents_with_the_term(ctx: Ctx) {
    use persistence_core::backend::IndexTerm;
    let write = |v: &str, terms: &[&str]| DocumentWrite {
        value: v.as_bytes().to_vec().into(),
        index: terms.iter().map(|t| IndexTerm::new(IDX, *t)).collect(),
        ttl: None,
    };
    for n in 0..9 {
        let terms: &[&str] = if n % 3 == 0 {
            &["red", "blue"]
        } else {
            &["red"]
        };
        ctx.backend
            .insert(&ctx.ns, &format!("k{n}"), write("{}", terms))
            .await
            .unwrap();
    }
    let count = |term: &'static str| {
        let ctx = ctx.clone();
        async move { ctx.backend.count_term(&ctx.ns, IDX, term).await.unwrap() }
    };
    assert_eq!(count("red").await, 9);
    assert_eq!(count("blue").await, 3);
    assert_eq!(count("green").await, 0);
    ctx.backend
        .upsert(&ctx.ns, "k0", write("{}", &["green"]))
        .await
        .unwrap();
    ctx.backend
        .remove(&ctx.ns, "k1", Precondition::Present)
        .await
        .unwrap();
    assert_eq!(
        (
            count("red").await,
            count("blue").await,
            count("green").await
        ),
        (7, 2, 1)
    );
    for term in ["red", "blue", "green"] {
        let hits = ctx.backend.lookup(&ctx.ns, IDX, term).await.unwrap();
        assert_eq!(
            hits.len() as u64,
            count(term).await,
            "count_term agrees with lookup for {term}"
        );
    }
    let other = ctx.other_ns("other");
    assert_eq!(ctx.backend.count_term(&other, IDX, "red").await.unwrap(), 0);
}
