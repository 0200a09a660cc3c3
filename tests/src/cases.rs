//! The cases. Each panics (with a message saying which guarantee broke) on failure.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use persistence_core::backend::{
    BackendExt, DocumentWrite, HealthStatus, Precondition, Put, Remove, ScanOrder, ScanRequest,
    Version,
};
use persistence_core::model::{AgentTaskItem, TaskStatus};
use persistence_core::store::{TaskOperation, REQUEST_INDEX};
use persistence_core::{ErrorKind, Result};

use crate::fixtures::{fixture_task, sample_task};
use crate::Ctx;

const IDX: &str = "by_tag";

fn doc(value: &str) -> DocumentWrite {
    DocumentWrite::new(value.as_bytes().to_vec())
}

fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

async fn value(ctx: &Ctx, ns: &str, key: &str) -> Option<String> {
    ctx.backend
        .get(ns, key)
        .await
        .unwrap()
        .map(|d| String::from_utf8(d.value.to_vec()).unwrap())
}

async fn lookup(ctx: &Ctx, term: &str) -> Vec<String> {
    ctx.backend.lookup(&ctx.ns, IDX, term).await.unwrap()
}

// ---- the raw contract ----

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
    let created = ctx
        .backend
        .get(&ctx.ns, "k")
        .await
        .unwrap()
        .unwrap()
        .created;
    let v2 = ctx
        .backend
        .replace(&ctx.ns, "k", doc("2"), None)
        .await
        .unwrap();
    assert_ne!(v1, v2, "every write must return a new version");
    let got = ctx.backend.get(&ctx.ns, "k").await.unwrap().unwrap();
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
    assert_eq!(
        ctx.backend
            .get(&ctx.ns, "k")
            .await
            .unwrap()
            .unwrap()
            .version,
        v3
    );
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
    let got = ctx.backend.get(&ctx.ns, "k").await.unwrap().unwrap();
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
const NASTY: [&str; 12] = [
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
    let got = ctx.backend.get(&ctx.ns, "big").await.unwrap().unwrap();
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
    let got = ctx.backend.get(&ctx.ns, "binary").await.unwrap().unwrap();
    assert_eq!(&got.value[..], &bytes[..], "documents are bytes, not text");
    let got = ctx.backend.get(&ctx.ns, "empty").await.unwrap().unwrap();
    assert!(got.value.is_empty());
}

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

pub async fn health_reports_status(ctx: Ctx) {
    let h = ctx.backend.health().await;
    assert_ne!(
        h.status,
        HealthStatus::Down,
        "a working backend reported down: {}",
        h.message
    );
    assert!(!h.backend.is_empty() && !h.message.is_empty());
}

pub async fn capabilities_are_honoured(ctx: Ctx) {
    let b = &ctx.backend;
    let ttl_write = doc("1").with_ttl(Some(Duration::from_secs(3600)));
    let r = b.insert(&ctx.ns, "ttl", ttl_write).await;
    if ctx.caps.ttl {
        r.expect("a backend declaring ttl must accept a TTL");
        let d = b.get(&ctx.ns, "ttl").await.unwrap().unwrap();
        assert!(d.expires_at.is_some(), "declared ttl but reports no expiry");
    } else {
        assert_eq!(
            kind(r),
            ErrorKind::Unsupported,
            "a TTL must be refused, not ignored"
        );
    }
    let r = b
        .scan(&ctx.ns, ScanRequest::first(ScanOrder::Key, 10))
        .await;
    if ctx.caps.scan {
        r.expect("a backend declaring scan must scan");
    } else {
        assert_eq!(kind(r), ErrorKind::Unsupported);
    }
    let r = b
        .scan(&ctx.ns, ScanRequest::first(ScanOrder::Created, 10))
        .await;
    if ctx.caps.scan_by_creation {
        r.expect("a backend declaring scan_by_creation must scan by creation");
    } else {
        assert_eq!(kind(r), ErrorKind::Unsupported);
    }
    let r = b.count(&ctx.ns).await;
    if ctx.caps.count || ctx.caps.scan {
        r.expect("count must work with count or scan");
    } else {
        assert_eq!(kind(r), ErrorKind::Unsupported);
    }
}

// ---- TTL ----

const SHORT_TTL: Duration = Duration::from_millis(500);
/// Long enough for backends whose TTL resolution is a second.
const PAST_TTL: Duration = Duration::from_millis(1600);

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
    let at = ctx
        .backend
        .get(&ctx.ns, "k")
        .await
        .unwrap()
        .unwrap()
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
    assert_eq!(
        ctx.backend
            .get(&ctx.ns, "k")
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        None
    );
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

// ---- scans ----

async fn scan_all(ctx: &Ctx, order: ScanOrder, limit: usize) -> Vec<String> {
    let mut request = ScanRequest::first(order, limit);
    let mut keys = Vec::new();
    loop {
        let page = ctx.backend.scan(&ctx.ns, request.clone()).await.unwrap();
        assert!(
            page.entries.len() <= limit.max(1),
            "page larger than its limit"
        );
        keys.extend(page.entries.into_iter().map(|(k, _)| k));
        match page.cursor {
            Some(c) => request.cursor = Some(c),
            None => return keys,
        }
    }
}

pub async fn scan_pages_in_key_order(ctx: Ctx) {
    let mut keys: Vec<String> = (0..57)
        .map(|n| format!("key-{:03}", (n * 37) % 101))
        .collect();
    for k in &keys {
        ctx.backend.insert(&ctx.ns, k, doc(k)).await.unwrap();
    }
    ctx.backend
        .insert(&ctx.other_ns("neighbour"), "x", doc("x"))
        .await
        .unwrap();
    keys.sort();
    assert_eq!(scan_all(&ctx, ScanOrder::Key, 10).await, keys);
    assert_eq!(scan_all(&ctx, ScanOrder::Key, 1000).await, keys);
    let page = ctx
        .backend
        .scan(&ctx.ns, ScanRequest::first(ScanOrder::Key, 5))
        .await
        .unwrap();
    let (k, d) = &page.entries[0];
    assert_eq!(&d.value[..], k.as_bytes(), "scan must return the documents");
}

pub async fn scan_continues_while_keys_are_deleted(ctx: Ctx) {
    let keys: Vec<String> = (0..40).map(|n| format!("k{n:02}")).collect();
    for k in &keys {
        ctx.backend.insert(&ctx.ns, k, doc(k)).await.unwrap();
    }
    let mut request = ScanRequest::first(ScanOrder::Key, 7);
    let mut seen = Vec::new();
    loop {
        let page = ctx.backend.scan(&ctx.ns, request.clone()).await.unwrap();
        for (k, _) in &page.entries {
            seen.push(k.clone());
            // delete the key just returned (the cursor's own key) and one ahead
            ctx.backend
                .remove(&ctx.ns, k, Precondition::Any)
                .await
                .unwrap();
        }
        let n: usize = seen.last().unwrap()[1..].parse().unwrap();
        if n + 3 < 40 {
            ctx.backend
                .remove(&ctx.ns, &format!("k{:02}", n + 3), Precondition::Any)
                .await
                .unwrap();
        }
        match page.cursor {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a key was returned twice");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "order broke while deleting");
    // every key never deleted ahead of the scan was returned
    let skipped: Vec<&String> = keys.iter().filter(|k| !unique.contains(k)).collect();
    assert!(
        skipped.len() <= 40 / 7 + 1,
        "too many keys skipped: {skipped:?}"
    );
}

pub async fn scan_by_creation_order(ctx: Ctx) {
    let keys = ["m", "b", "z", "a", "k", "c", "y"];
    for k in keys {
        ctx.backend.insert(&ctx.ns, k, doc(k)).await.unwrap();
    }
    ctx.backend
        .replace(&ctx.ns, "m", doc("m2"), None)
        .await
        .unwrap();
    assert_eq!(
        scan_all(&ctx, ScanOrder::Created, 2).await,
        keys,
        "oldest first, replace keeps place"
    );
    ctx.backend
        .remove(&ctx.ns, "z", Precondition::Present)
        .await
        .unwrap();
    let newest_two: Vec<String> = scan_all(&ctx, ScanOrder::Created, 3).await.split_off(4);
    assert_eq!(newest_two, ["c", "y"]);
}

pub async fn count_tracks_writes_and_removes(ctx: Ctx) {
    assert_eq!(ctx.backend.count(&ctx.ns).await.unwrap(), 0);
    for n in 0..25 {
        ctx.backend
            .insert(&ctx.ns, &n.to_string(), doc("x"))
            .await
            .unwrap();
    }
    ctx.backend
        .insert(&ctx.other_ns("count"), "other", doc("x"))
        .await
        .unwrap();
    for n in 0..5 {
        ctx.backend
            .remove(&ctx.ns, &n.to_string(), Precondition::Present)
            .await
            .unwrap();
    }
    ctx.backend.upsert(&ctx.ns, "7", doc("y")).await.unwrap();
    assert_eq!(ctx.backend.count(&ctx.ns).await.unwrap(), 20);
}

// ---- the typed task store ----

/// Task `t{n}` with request id `r{n}`.
fn numbered(n: usize) -> persistence_core::model::AgentTask {
    sample_task(&format!("t{n}"), &[&format!("r{n}")])
}

pub async fn task_fixture_round_trips_through_store(ctx: Ctx) {
    let (task, json) = fixture_task();
    let store = ctx.store();
    store.create(&task).await.unwrap();
    assert_eq!(
        store.load(&task.task_id).await.unwrap().as_ref(),
        Some(&task)
    );
    let raw = ctx
        .backend
        .get(&ctx.ns, &task.task_id)
        .await
        .unwrap()
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&raw.value).unwrap();
    let original: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        stored, original,
        "stored JSON must be the Python system's JSON"
    );
    for rid in task.request_ids() {
        assert_eq!(
            store.load_by_request_id(rid).await.unwrap().as_ref(),
            Some(&task)
        );
    }
}

pub async fn task_create_existing_fails_with_create_error(ctx: Ctx) {
    let store = ctx.store();
    let task = sample_task("t1", &["r1"]);
    store.create(&task).await.unwrap();
    let mut other = sample_task("t1", &["r2"]);
    other.user_id = "someone else".into();
    let err = store.create(&other).await.unwrap_err();
    assert_eq!(
        (err.operation(), err.kind()),
        (TaskOperation::Create, ErrorKind::AlreadyExists)
    );
    assert_eq!(
        store.load("t1").await.unwrap(),
        Some(task),
        "a failed create must not overwrite"
    );
    assert_eq!(
        store.load_by_request_id("r2").await.unwrap(),
        None,
        "a failed create must not index"
    );
}

pub async fn task_load_missing_is_none(ctx: Ctx) {
    assert_eq!(ctx.store().load("nope").await.unwrap(), None);
}

pub async fn task_update_missing_fails_with_update_error(ctx: Ctx) {
    let err = ctx
        .store()
        .update(&sample_task("ghost", &["r"]))
        .await
        .unwrap_err();
    assert_eq!(
        (err.operation(), err.kind()),
        (TaskOperation::Update, ErrorKind::NotFound)
    );
    assert_eq!(
        ctx.store().load("ghost").await.unwrap(),
        None,
        "update must not create"
    );
}

pub async fn task_delete_missing_fails_with_delete_error(ctx: Ctx) {
    let err = ctx.store().delete("ghost").await.unwrap_err();
    assert_eq!(
        (err.operation(), err.kind()),
        (TaskOperation::Delete, ErrorKind::NotFound)
    );
    assert_eq!(err.task_id(), Some("ghost"));
}

pub async fn task_delete_cleans_request_index(ctx: Ctx) {
    let store = ctx.store();
    store
        .create(&sample_task("t1", &["r1", "r2"]))
        .await
        .unwrap();
    store.delete("t1").await.unwrap();
    assert_eq!(store.load("t1").await.unwrap(), None);
    for rid in ["r1", "r2"] {
        assert_eq!(store.load_by_request_id(rid).await.unwrap(), None);
        assert!(ctx
            .backend
            .lookup(&ctx.ns, REQUEST_INDEX, rid)
            .await
            .unwrap()
            .is_empty());
    }
}

pub async fn task_load_by_request_id_missing_is_none(ctx: Ctx) {
    ctx.store()
        .create(&sample_task("t1", &["r1"]))
        .await
        .unwrap();
    assert_eq!(ctx.store().load_by_request_id("r9").await.unwrap(), None);
}

pub async fn task_load_by_request_id_finds_task(ctx: Ctx) {
    let store = ctx.store();
    let a = sample_task("a", &["ra1", "ra2", "ra3"]);
    let b = sample_task("b", &["rb1"]);
    store.create(&a).await.unwrap();
    store.create(&b).await.unwrap();
    for rid in ["ra1", "ra2", "ra3"] {
        assert_eq!(
            store.load_by_request_id(rid).await.unwrap().as_ref(),
            Some(&a)
        );
    }
    assert_eq!(store.load_by_request_id("rb1").await.unwrap(), Some(b));
}

pub async fn task_shared_request_id_returns_oldest(ctx: Ctx) {
    let store = ctx.store();
    for id in ["t-z", "t-a", "t-m"] {
        store.create(&sample_task(id, &["shared"])).await.unwrap();
    }
    for _ in 0..5 {
        let t = store.load_by_request_id("shared").await.unwrap().unwrap();
        assert_eq!(t.task_id, "t-z", "must be the first created, every time");
    }
    store.delete("t-z").await.unwrap();
    assert_eq!(
        store
            .load_by_request_id("shared")
            .await
            .unwrap()
            .unwrap()
            .task_id,
        "t-a"
    );
}

pub async fn task_request_id_shared_by_many_tasks(ctx: Ctx) {
    let store = ctx.store();
    for n in 0..200 {
        store
            .create(&sample_task(
                &format!("t{n:03}"),
                &["common", &format!("own{n}")],
            ))
            .await
            .unwrap();
    }
    assert_eq!(
        ctx.backend
            .lookup(&ctx.ns, REQUEST_INDEX, "common")
            .await
            .unwrap()
            .len(),
        200
    );
    assert_eq!(
        store
            .load_by_request_id("common")
            .await
            .unwrap()
            .unwrap()
            .task_id,
        "t000"
    );
    for n in 0..150 {
        store.delete(&format!("t{n:03}")).await.unwrap();
    }
    assert_eq!(
        store
            .load_by_request_id("common")
            .await
            .unwrap()
            .unwrap()
            .task_id,
        "t150"
    );
    assert_eq!(
        store
            .load_by_request_id("own199")
            .await
            .unwrap()
            .unwrap()
            .task_id,
        "t199"
    );
}

pub async fn task_update_adds_request_id(ctx: Ctx) {
    let store = ctx.store();
    let mut task = sample_task("t1", &["r1"]);
    store.create(&task).await.unwrap();
    task.items.push(sample_task("t1", &["r2"]).items.remove(0));
    store.update(&task).await.unwrap();
    assert_eq!(
        store.load_by_request_id("r2").await.unwrap().as_ref(),
        Some(&task)
    );
    assert_eq!(store.load_by_request_id("r1").await.unwrap(), Some(task));
}

pub async fn task_update_changes_request_id(ctx: Ctx) {
    let store = ctx.store();
    let mut task = sample_task("t1", &["old"]);
    store.create(&task).await.unwrap();
    for item in &mut task.items {
        item.request_id = "new".into();
    }
    store.update(&task).await.unwrap();
    assert_eq!(
        store.load_by_request_id("old").await.unwrap(),
        None,
        "stale request id still resolves"
    );
    assert_eq!(store.load_by_request_id("new").await.unwrap(), Some(task));
}

pub async fn task_update_removes_request_id(ctx: Ctx) {
    let store = ctx.store();
    let mut task = sample_task("t1", &["keep", "drop"]);
    store.create(&task).await.unwrap();
    task.items.retain(|i| i.request_id == "keep");
    store.update(&task).await.unwrap();
    assert_eq!(store.load_by_request_id("drop").await.unwrap(), None);
    assert!(ctx
        .backend
        .lookup(&ctx.ns, REQUEST_INDEX, "drop")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.load_by_request_id("keep").await.unwrap(), Some(task));
}

pub async fn task_duplicate_request_ids_in_one_task(ctx: Ctx) {
    let store = ctx.store();
    let task = sample_task("t1", &["dup", "dup", "dup"]);
    assert_eq!(task.items.len(), 6);
    store.create(&task).await.unwrap();
    assert_eq!(
        ctx.backend
            .lookup(&ctx.ns, REQUEST_INDEX, "dup")
            .await
            .unwrap(),
        ["t1"]
    );
    assert_eq!(store.load_by_request_id("dup").await.unwrap(), Some(task));
    store.delete("t1").await.unwrap();
    assert_eq!(store.load_by_request_id("dup").await.unwrap(), None);
}

pub async fn task_loaded_copy_is_independent(ctx: Ctx) {
    let store = ctx.store();
    let original = sample_task("t1", &["r1"]);
    store.create(&original).await.unwrap();
    let mut copy = store.load("t1").await.unwrap().unwrap();
    copy.items[0].request_id = "changed-in-place".into();
    copy.status = TaskStatus::Failed;
    assert_eq!(
        store.load("t1").await.unwrap(),
        Some(original.clone()),
        "a loaded task is a copy"
    );
    assert_eq!(
        store.load_by_request_id("changed-in-place").await.unwrap(),
        None
    );
    assert_eq!(
        store.load_by_request_id("r1").await.unwrap(),
        Some(original)
    );
}

pub async fn task_update_if_detects_conflict(ctx: Ctx) {
    let store = ctx.store();
    store.create(&sample_task("t1", &["r1"])).await.unwrap();
    let a = store.load_versioned("t1").await.unwrap().unwrap();
    let b = store.load_versioned("t1").await.unwrap().unwrap();
    let mut ta = a.record.clone();
    ta.status = TaskStatus::Paused;
    store.update_if(&ta, a.version).await.unwrap();
    let mut tb = b.record.clone();
    tb.status = TaskStatus::Canceled;
    let err = store.update_if(&tb, b.version).await.unwrap_err();
    assert_eq!(
        (err.operation(), err.kind()),
        (TaskOperation::Update, ErrorKind::Conflict)
    );
    assert_eq!(
        store.load("t1").await.unwrap().unwrap().status,
        TaskStatus::Paused
    );
}

pub async fn task_concurrent_update_if_loses_no_update(ctx: Ctx) {
    let store = ctx.store();
    store.create(&sample_task("t1", &["r0"])).await.unwrap();
    let writers = 20;
    let mut handles = Vec::new();
    for n in 0..writers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let current = store.load_versioned("t1").await.unwrap().unwrap();
                let mut task = current.record;
                let mut item = task.items[0].clone();
                item.request_id = format!("w{n}");
                task.items.push(item);
                match store.update_if(&task, current.version).await {
                    Ok(_) => return,
                    Err(e) if e.kind() == ErrorKind::Conflict => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let task = store.load("t1").await.unwrap().unwrap();
    assert_eq!(task.items.len(), 2 + writers, "an update was lost");
    for n in 0..writers {
        let found = store.load_by_request_id(&format!("w{n}")).await.unwrap();
        assert_eq!(found.map(|t| t.task_id).as_deref(), Some("t1"));
    }
}

pub async fn task_concurrent_creates_of_one_id_one_wins(ctx: Ctx) {
    let store = ctx.store();
    let mut handles = Vec::new();
    for n in 0..100 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .create(&sample_task("same", &[&format!("r{n}")]))
                .await
                .map(|_| n)
        }));
    }
    let mut winners = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(n) => winners.push(n),
            Err(e) => assert_eq!(
                (e.operation(), e.kind()),
                (TaskOperation::Create, ErrorKind::AlreadyExists)
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one create of one id may win: {winners:?}"
    );
    let task = store.load("same").await.unwrap().unwrap();
    assert_eq!(task.items[0].request_id, format!("r{}", winners[0]));
}

pub async fn task_concurrent_creates_of_distinct_ids(ctx: Ctx) {
    let store = ctx.store();
    let handles: Vec<_> = (0..100)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.create(&numbered(n)).await })
        })
        .collect();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    for n in 0..100 {
        let t = store
            .load_by_request_id(&format!("r{n}"))
            .await
            .unwrap()
            .expect("created task not found");
        assert_eq!(t.task_id, format!("t{n}"));
    }
}

pub async fn task_concurrent_updates(ctx: Ctx) {
    let store = ctx.store();
    for n in 0..50 {
        store.create(&numbered(n)).await.unwrap();
    }
    let handles: Vec<_> = (0..50)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut t = store.load(&format!("t{n}")).await.unwrap().unwrap();
                t.status = TaskStatus::Completed;
                t.items.push(AgentTaskItem {
                    request_id: format!("extra{n}"),
                    ..t.items[0].clone()
                });
                store.update(&t).await.unwrap();
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    for n in 0..50 {
        let t = store
            .load_by_request_id(&format!("extra{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.task_id, t.status),
            (format!("t{n}"), TaskStatus::Completed)
        );
    }
}

pub async fn task_mixed_concurrent_operations(ctx: Ctx) {
    let store = ctx.store();
    for n in 0..30 {
        store.create(&numbered(n)).await.unwrap();
    }
    let mut handles = Vec::new();
    for n in 0..30 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let id = format!("t{n}");
            match n % 3 {
                0 => store.delete(&id).await.unwrap(),
                1 => {
                    let mut t = store.load(&id).await.unwrap().unwrap();
                    t.status = TaskStatus::Paused;
                    store.update(&t).await.unwrap();
                }
                _ => {
                    store
                        .create(&sample_task(&format!("new{n}"), &[&format!("r{n}")]))
                        .await
                        .unwrap();
                }
            }
            let _ = store.load_by_request_id(&format!("r{n}")).await.unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    for n in 0..30 {
        let found = store.load_by_request_id(&format!("r{n}")).await.unwrap();
        let (status, id) = match n % 3 {
            0 => (None, None),
            1 => (Some(TaskStatus::Paused), Some(format!("t{n}"))),
            _ => (Some(TaskStatus::Running), Some(format!("t{n}"))),
        };
        assert_eq!(found.as_ref().map(|t| t.status), status, "r{n}");
        assert_eq!(
            found.map(|t| t.task_id),
            id,
            "r{n} must find the older task"
        );
    }
}

pub async fn task_lookups_racing_creates(ctx: Ctx) {
    let store = ctx.store();
    let creator = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..100 {
                store.create(&numbered(n)).await.unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..200 {
                    let n = round % 100;
                    if let Some(t) = store.load_by_request_id(&format!("r{n}")).await.unwrap() {
                        assert_eq!(t.task_id, format!("t{n}"));
                        assert!(t.has_request_id(&format!("r{n}")));
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    creator.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
    for n in 0..100 {
        assert!(store
            .load_by_request_id(&format!("r{n}"))
            .await
            .unwrap()
            .is_some());
    }
}

pub async fn task_with_many_items(ctx: Ctx) {
    let store = ctx.store();
    let rids: Vec<String> = (0..500).map(|n| format!("req-{n}")).collect();
    let rid_refs: Vec<&str> = rids.iter().map(String::as_str).collect();
    let task = sample_task("big", &rid_refs);
    assert_eq!(task.items.len(), 1000);
    store.create(&task).await.unwrap();
    assert_eq!(store.load("big").await.unwrap().as_ref(), Some(&task));
    assert_eq!(
        store
            .load_by_request_id("req-499")
            .await
            .unwrap()
            .map(|t| t.items.len()),
        Some(1000)
    );
}

pub async fn task_ids_with_special_characters(ctx: Ctx) {
    let store = ctx.store();
    for (n, id) in NASTY.iter().chain(&[""]).enumerate() {
        let rid = format!("{id}{{{n}}}:*");
        let task = sample_task(id, &[&rid]);
        store.create(&task).await.unwrap();
        assert_eq!(
            store.load(id).await.unwrap().as_ref(),
            Some(&task),
            "id {id:?}"
        );
        assert_eq!(
            store.load_by_request_id(&rid).await.unwrap(),
            Some(task),
            "request id {rid:?}"
        );
    }
}

pub async fn task_corrupted_document_fails_load_and_is_kept(ctx: Ctx) {
    let store = ctx.store();
    let garbage = b"{\"task_id\": \"bad\", truncated".to_vec();
    let w = DocumentWrite::new(garbage.clone()).with_term(REQUEST_INDEX, "r-bad");
    ctx.backend.insert(&ctx.ns, "bad", w).await.unwrap();
    let err = store.load("bad").await.unwrap_err();
    assert_eq!(
        (err.operation(), err.kind()),
        (TaskOperation::Load, ErrorKind::Corrupted)
    );
    assert!(
        err.to_string().contains("\"bad\""),
        "the error must name the key: {err}"
    );
    let err = store.load_by_request_id("r-bad").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    let kept = ctx
        .backend
        .get(&ctx.ns, "bad")
        .await
        .unwrap()
        .expect("corrupted bytes were deleted");
    assert_eq!(
        &kept.value[..],
        &garbage[..],
        "corrupted bytes must be kept untouched"
    );
    // an operator can still repair it by overwriting
    store.update(&sample_task("bad", &["r-bad"])).await.unwrap();
    assert!(store.load("bad").await.unwrap().is_some());
}

pub async fn task_errors_keep_their_detail(ctx: Ctx) {
    let store = ctx.store();
    store.create(&sample_task("dup-id", &["r"])).await.unwrap();
    let err = store
        .create(&sample_task("dup-id", &["r"]))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("create") && text.contains("dup-id") && text.contains("already exists"),
        "{text}"
    );
    assert_eq!(
        std::error::Error::source(&err).map(|s| s.to_string()),
        Some(err.cause().to_string())
    );
    let err = store.delete("nope").await.unwrap_err();
    assert!(
        err.to_string().contains("nope") && err.to_string().contains("does not exist"),
        "{err}"
    );
}

pub async fn task_ttl_expires_task(ctx: Ctx) {
    let store = ctx.store().with_ttl(Some(SHORT_TTL));
    store.create(&sample_task("t1", &["r1"])).await.unwrap();
    let v = store.load_versioned("t1").await.unwrap().unwrap();
    assert!(v.expires_at.is_some());
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(store.load("t1").await.unwrap(), None);
    assert_eq!(store.load_by_request_id("r1").await.unwrap(), None);
    store
        .create(&sample_task("t1", &["r1"]))
        .await
        .expect("an expired id can be created again");
}

pub async fn model_based_random_operations(ctx: Ctx) {
    crate::model_based::run(ctx).await;
}
