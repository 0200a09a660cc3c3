//! `ta-persist compact` and `purge-expired` on real database files.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use persistence_core::backend::{Backend, BackendExt, DocumentWrite};
use persistence_redb::{RedbBackend, RedbOptions};
use persistence_sled::{SledBackend, SledOptions};

fn ta_persist(engine: &str, path: &Path, command: &str) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
        .args(["--backend", engine, "--json", command])
        .env_remove("TA_PERSISTENCE_CONFIG")
        .env("TA_PERSISTENCE_FALLBACK", "fail")
        .env("TA_REDB_PATH", path)
        .env("TA_SLED_PATH", path)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ta-persist");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn doc(n: usize) -> DocumentWrite {
    DocumentWrite::new(vec![(n % 251) as u8; 2000]).with_term("i", n.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_compact_gives_space_back_and_purge_frees_expired() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.redb");
    {
        let b = RedbBackend::open(&RedbOptions::new(&path)).unwrap();
        for n in 0..3000 {
            b.insert("ns", &n.to_string(), doc(n)).await.unwrap();
        }
        for n in 0..3000 {
            b.remove("ns", &n.to_string(), Default::default())
                .await
                .unwrap();
        }
        // expiring after the writes: no write frees them on its way
        for n in 0..40 {
            let w = doc(n).with_ttl(Some(Duration::from_millis(500)));
            b.insert("short", &n.to_string(), w).await.unwrap();
        }
        b.insert("short", "kept", doc(7)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, v, err) = ta_persist("redb", &path, "purge-expired");
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["purged"], 40, "{v}");
    let (code, v, err) = ta_persist("redb", &path, "compact");
    assert_eq!(code, 0, "{err}");
    let (before, after) = (
        v["before_bytes"].as_u64().unwrap(),
        v["after_bytes"].as_u64().unwrap(),
    );
    assert!(after < before / 2, "{v}");
    let b = RedbBackend::open(&RedbOptions::new(&path)).unwrap();
    assert!(b.get("short", "kept").await.unwrap().is_some());
    assert_eq!(b.count("short").await.unwrap(), 1);
    // while the service holds the file, it says so instead of waiting
    let (code, _, err) = ta_persist("redb", &path, "compact");
    assert_ne!(code, 0);
    assert!(err.contains("held by another"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_purges_but_cannot_compact_and_other_backends_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sled");
    {
        let b = SledBackend::open(&SledOptions::new(&path)).unwrap();
        for n in 0..10 {
            let w = doc(n).with_ttl(Some(Duration::from_millis(500)));
            b.insert("short", &n.to_string(), w).await.unwrap();
        }
        b.flush().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, v, err) = ta_persist("sled", &path, "purge-expired");
    assert_eq!(code, 0, "{err}");
    assert_eq!(v["purged"], 10, "{v}");
    let (code, _, err) = ta_persist("sled", &path, "compact");
    assert_ne!(code, 0);
    assert!(err.contains("redb"), "{err}");
    let (code, _, err) = ta_persist("memory", &path, "compact");
    assert_ne!(code, 0);
    assert!(err.contains("embedded engine"), "{err}");
}

/// docs/operations.md's recovery from a corrupted task, on redb: listed
/// (never hidden), its raw bytes shown, then deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_task_is_listed_shown_raw_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.redb");
    {
        let b = RedbBackend::open(&RedbOptions::new(&path)).unwrap();
        b.insert(
            "task",
            "bad",
            DocumentWrite::new(&b"{\"task_id\": \"bad\", trunc"[..]),
        )
        .await
        .unwrap();
    }
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
            .args(["--backend", "redb", "--json"])
            .args(args)
            .env_remove("TA_PERSISTENCE_CONFIG")
            .env("TA_PERSISTENCE_FALLBACK", "fail")
            .env("TA_REDB_PATH", &path)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["tasks", "list"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("CORRUPTED"), "{out}");
    let (code, out) = run(&["docs", "get", "task", "bad"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("trunc"), "{out}");
    let (code, out) = run(&["tasks", "delete", "bad"]);
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = run(&["tasks", "list"]);
    assert!(!out.contains("bad"), "{out}");
}
