//! Scans and counts: pages in key and creation order.

use super::prelude::*;
use persistence_core::backend::stamp_of;

async fn scan_all(ctx: &Ctx, order: ScanOrder, limit: usize) -> Vec<String> {
    scan_request(ctx, ScanRequest::first(order, limit)).await
}

/// Every key `request` and the pages after it return.
async fn scan_request(ctx: &Ctx, mut request: ScanRequest) -> Vec<String> {
    let limit = request.limit;
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

pub async fn scan_newest_first(ctx: Ctx) {
    let keys = ["m", "b", "z", "a", "k", "c", "y"];
    for k in keys {
        ctx.backend.insert(&ctx.ns, k, doc(k)).await.unwrap();
    }
    ctx.backend
        .replace(&ctx.ns, "m", doc("m2"), None)
        .await
        .unwrap();
    ctx.backend
        .insert(&ctx.other_ns("neighbour"), "x", doc("x"))
        .await
        .unwrap();
    let mut newest: Vec<String> = keys.iter().rev().map(|k| k.to_string()).collect();
    for limit in [1, 2, 3, 1000] {
        assert_eq!(
            scan_all(&ctx, ScanOrder::NewestFirst, limit).await,
            newest,
            "newest first (pages of {limit}), a replace keeps its place"
        );
    }
    let page = ctx
        .backend
        .scan(&ctx.ns, ScanRequest::first(ScanOrder::NewestFirst, 2))
        .await
        .unwrap();
    assert_eq!(
        &page.entries[0].1.value[..],
        b"y",
        "documents come with their keys"
    );
    // removing the page's last key does not break the next page
    ctx.backend
        .remove(&ctx.ns, &page.entries[1].0, Precondition::Present)
        .await
        .unwrap();
    let rest = scan_request(
        &ctx,
        ScanRequest {
            cursor: page.cursor.clone(),
            ..ScanRequest::first(ScanOrder::NewestFirst, 2)
        },
    )
    .await;
    newest.drain(..2);
    assert_eq!(rest, newest);
}

pub async fn scan_creation_window(ctx: Ctx) {
    let before = SystemTime::now();
    for k in ["a", "b", "c", "d", "e"] {
        ctx.backend.insert(&ctx.ns, k, doc(k)).await.unwrap();
    }
    let after = SystemTime::now();
    let mut stamps = Vec::new();
    for k in ["a", "b", "c", "d", "e"] {
        stamps.push(ctx.backend.get(&ctx.ns, k).await.unwrap().unwrap().created);
    }
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "creation stamps must increase: {stamps:?}"
    );
    // stamps are Unix microseconds (a server clock may be a little off ours)
    let slack = Duration::from_secs(5);
    let (low, high) = (stamp_of(before - slack), stamp_of(after + slack));
    assert!(
        stamps.iter().all(|s| (low..high).contains(s)),
        "creation stamps {stamps:?} are not the insert times ({low}..{high} µs)"
    );
    let window = |from: usize, to: Option<usize>, order| ScanRequest {
        created: Some(stamps[from]..to.map_or(u64::MAX, |t| stamps[t])),
        ..ScanRequest::first(order, 1)
    };
    assert_eq!(
        scan_request(&ctx, window(1, Some(4), ScanOrder::Created)).await,
        ["b", "c", "d"]
    );
    assert_eq!(
        scan_request(&ctx, window(1, Some(4), ScanOrder::NewestFirst)).await,
        ["d", "c", "b"]
    );
    assert_eq!(
        scan_request(&ctx, window(3, None, ScanOrder::NewestFirst)).await,
        ["e", "d"]
    );
    assert!(scan_request(&ctx, window(2, Some(2), ScanOrder::Created))
        .await
        .is_empty());
    // a window in wall-clock terms holds them all
    let day = ScanRequest::first(ScanOrder::NewestFirst, 10)
        .created_between(before - slack, after + slack);
    assert_eq!(scan_request(&ctx, day).await, ["e", "d", "c", "b", "a"]);
    let r = ctx
        .backend
        .scan(
            &ctx.ns,
            ScanRequest {
                created: Some(0..u64::MAX),
                ..ScanRequest::first(ScanOrder::Key, 10)
            },
        )
        .await;
    assert_eq!(
        kind(r),
        ErrorKind::InvalidInput,
        "a window needs a creation order"
    );
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
