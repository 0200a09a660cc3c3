//! The typed task store under concurrent writers and readers.

use super::prelude::*;
use super::task_store::numbered;

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
