//! Export: every document read back with its index terms, in pages;
//! the namespaces that hold documents.

use persistence_core::backend::{export_page, IndexTerm};

use super::prelude::*;

pub async fn export_reads_every_document_with_its_terms(ctx: Ctx) {
    let mut want = Vec::new();
    for n in 0..23u32 {
        let key = format!("k-{n:02}");
        let mut terms = vec![IndexTerm::new(IDX, format!("t{}", n % 4))];
        if n % 5 == 0 {
            terms.push(IndexTerm::new("other", format!("o:{n}")));
        }
        let write = DocumentWrite {
            value: format!("{{\"n\":{n}}}").into_bytes().into(),
            index: terms.clone(),
            ttl: (n % 7 == 0).then(|| Duration::from_secs(3600)),
        };
        ctx.backend.insert(&ctx.ns, &key, write).await.unwrap();
        terms.sort_by(|a, b| (&a.index, &a.term).cmp(&(&b.index, &b.term)));
        want.push((key, terms, n % 7 == 0));
    }
    // a rewrite changes the terms export sees; a removal drops the key
    let rewrite = DocumentWrite {
        value: b"{\"n\":1,\"v\":2}".to_vec().into(),
        index: vec![IndexTerm::new(IDX, "moved")],
        ttl: None,
    };
    ctx.backend.upsert(&ctx.ns, "k-01", rewrite).await.unwrap();
    want[1].1 = vec![IndexTerm::new(IDX, "moved")];
    ctx.backend
        .remove(&ctx.ns, "k-02", Precondition::Present)
        .await
        .unwrap();
    want.remove(2);
    ctx.backend
        .insert(&ctx.other_ns("neighbour"), "x", doc("x"))
        .await
        .unwrap();

    let mut got = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let request = ScanRequest {
            cursor,
            ..ScanRequest::first(ScanOrder::Key, 5)
        };
        let page = export_page(&*ctx.backend, &ctx.ns, request).await.unwrap();
        assert!(page.entries.len() <= 5);
        pages += 1;
        for e in page.entries {
            let stored = stored(&ctx, &e.key).await;
            assert_eq!(
                e.document.value, stored.value,
                "{}: the stored bytes",
                e.key
            );
            assert_eq!(e.document.version, stored.version, "{}", e.key);
            let mut terms = e.index.clone();
            terms.sort_by(|a, b| (&a.index, &a.term).cmp(&(&b.index, &b.term)));
            got.push((e.key, terms, e.document.expires_at.is_some()));
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages >= 5, "paged: {pages} pages");
    assert_eq!(
        got, want,
        "every document, in key order, with its terms and TTL"
    );

    // index_terms answers per key, None for absent ones
    let keys = vec!["k-03".to_string(), "nope".to_string()];
    let terms = ctx.backend.index_terms(&ctx.ns, &keys).await.unwrap();
    assert_eq!(terms.len(), 2);
    let (version, t) = terms[0].clone().expect("k-03 is stored");
    assert_eq!(version, stored(&ctx, "k-03").await.version);
    assert_eq!(t, vec![IndexTerm::new(IDX, "t3")]);
    assert!(terms[1].is_none());
}

pub async fn namespaces_lists_what_holds_documents(ctx: Ctx) {
    let (a, b) = (ctx.other_ns("a"), ctx.other_ns("b:with:colons"));
    for ns in [&a, &b] {
        ctx.backend.insert(ns, "k", doc("v")).await.unwrap();
    }
    let names = ctx.backend.namespaces().await.unwrap();
    assert!(names.contains(&a) && names.contains(&b), "{names:?}");
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "sorted, each once: {names:?}"
    );
    ctx.backend
        .remove(&a, "k", Precondition::Present)
        .await
        .unwrap();
    let names = ctx.backend.namespaces().await.unwrap();
    assert!(
        !names.contains(&a),
        "an emptied namespace is gone: {names:?}"
    );
    assert!(names.contains(&b));
}
