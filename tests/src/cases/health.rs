//! Health reports and declared capabilities.

use super::prelude::*;

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
    let newest = ScanRequest::first(ScanOrder::NewestFirst, 10);
    let windowed = ScanRequest {
        created: Some(0..u64::MAX),
        ..ScanRequest::first(ScanOrder::Created, 10)
    };
    for request in [newest, windowed] {
        let r = b.scan(&ctx.ns, request.clone()).await;
        if ctx.caps.time_order {
            r.expect("a backend declaring time_order must scan newest first and by window");
        } else {
            assert_eq!(
                kind(r),
                ErrorKind::Unsupported,
                "{request:?} must be refused"
            );
        }
    }
    let r = b.transact(Vec::new()).await;
    if ctx.caps.transactions {
        r.expect("a backend declaring transactions must run one");
    } else {
        assert_eq!(
            kind(r),
            ErrorKind::Unsupported,
            "transactions must be refused"
        );
    }
    let r = b.count(&ctx.ns).await;
    if ctx.caps.count || ctx.caps.scan {
        r.expect("count must work with count or scan");
    } else {
        assert_eq!(kind(r), ErrorKind::Unsupported);
    }
}
