//! The typed task store: the seed's operations, its request index, its errors.

use super::contract::NASTY;
use super::prelude::*;
use super::ttl::{PAST_TTL, SHORT_TTL};

/// Task `t{n}` with request id `r{n}`.
pub(crate) fn numbered(n: usize) -> persistence_core::model::AgentTask {
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
