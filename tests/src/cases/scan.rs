//! Scans and counts: pages in key and creation order.

use super::prelude::*;

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
