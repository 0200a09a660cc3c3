//! `ta-persist clear-orphans` on a real Redis shared with "the Python
//! system" (plain commands deleting tasks this library wrote).

use std::process::Command;
use std::sync::Arc;

use persistence_core::{SharedBackend, TaskStore};
use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

fn clear_orphans(port: u16, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
        .args(["--json", "clear-orphans"])
        .args(extra)
        .env_remove("TA_PERSISTENCE_CONFIG")
        .env("TA_PERSISTENCE_BACKEND", "redis")
        .env("TA_REDIS_HOST", "127.0.0.1")
        .env("TA_REDIS_PORT", port.to_string())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ta-persist");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_orphans_removes_what_the_other_systems_deletes_leave() {
    let server = RedisServer::start();
    let backend = Arc::new(
        RedisBackend::connect(RedisOptions::new("127.0.0.1", server.port()))
            .await
            .unwrap(),
    );
    let store = TaskStore::new(backend.clone() as SharedBackend);
    for n in 0..5 {
        let rid = format!("r{n}");
        store.create(&task(&format!("t{n}"), &rid)).await.unwrap();
    }
    // the other system deletes three of them with plain commands
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for n in 0..3 {
        let _: () = redis::cmd("DEL")
            .arg(format!("task_persistence:task:t{n}"))
            .query_async(&mut con)
            .await
            .unwrap();
    }
    // bounded: --max 2 examines t0 and t1 only
    let (code, out, err) = clear_orphans(server.port(), &["--max", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(v["removed"], 2, "{v}");
    let (code, out, _) = clear_orphans(server.port(), &[]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["removed"], 1, "{v}");
    let meta = backend.layout().meta("task", "t2");
    let exists: bool = redis::cmd("EXISTS")
        .arg(meta)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(!exists, "t2's metadata is still there");
    assert_eq!(store.count().await.unwrap(), 2);
    // on another backend it says what it is for
    let out = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
        .args(["--backend", "memory", "clear-orphans"])
        .env_remove("TA_PERSISTENCE_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("works on Redis"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn task(id: &str, rid: &str) -> persistence_core::model::AgentTask {
    use persistence_core::model::{AgentTask, AgentTaskItem, Role};
    AgentTask::new(id, "s", "u").with_item(AgentTaskItem::text(id, rid, Role::User, "hello"))
}
