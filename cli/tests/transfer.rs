//! `ta-persist export | import | migrate`, the real binary on real
//! engines: sled to Redis, Redis to the json-dir plugin, redb to sled
//! SIGKILLed midway and resumed, and export/import of a document that is
//! not JSON.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use persistence_core::backend::{DocumentWrite, IndexTerm, Precondition, Put};
use persistence_core::{Backend, BackendExt, SharedBackend};
use redis_test_server::RedisServer;

fn ta_persist() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ta-persist"));
    cmd.env_remove("TA_PERSISTENCE_CONFIG")
        .env_remove("TA_PERSISTENCE_BACKEND")
        .current_dir(std::env::temp_dir());
    cmd
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = ta_persist().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("fallback = \"fail\"\n{body}")).unwrap();
    path.display().to_string()
}

/// `n` tasks (request ids indexed) and a raw namespace, written with the library.
async fn fill(b: &SharedBackend, n: usize) {
    let store = persistence_core::TaskStore::new(b.clone());
    for i in 0..n {
        let t =
            persistence_conformance::sample_task(&format!("t-{i:05}"), &[&format!("r-{}", i % 5)]);
        store.create(&t).await.unwrap();
    }
    let write = DocumentWrite {
        value: b"{\"kind\":\"raw\"}".to_vec().into(),
        index: vec![IndexTerm::new("kind", "raw")],
        ttl: Some(Duration::from_secs(600)),
    };
    b.insert("raw", "one", write).await.unwrap();
}

fn migrate_json(from: &str, to: &str) -> serde_json::Value {
    let checkpoint = format!("{from}.checkpoint.json");
    let (ok, out, err) = run(&[
        "--json",
        "migrate",
        "--from",
        from,
        "--to",
        to,
        "--checkpoint",
        &checkpoint,
    ]);
    assert!(ok, "migrate {from} -> {to}: {out}{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn sled_to_redis_then_redis_to_the_json_dir_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start();
    let sled_path = dir.path().join("db.sled");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b: SharedBackend = Arc::new(
            persistence_sled::SledBackend::open(&persistence_sled::SledOptions::new(&sled_path))
                .unwrap(),
        );
        fill(&b, 300).await;
    });
    let from = config(
        dir.path(),
        "sled.toml",
        &format!(
            "backend = \"sled\"\n[sled]\npath = {:?}\n",
            sled_path.display().to_string()
        ),
    );
    let redis = config(
        dir.path(),
        "redis.toml",
        &format!(
            "backend = \"redis\"\n[redis]\nport = {}\nprefix = \"moved\"\n",
            server.port()
        ),
    );
    let module = persistence_conformance::plugin_library("plugin-example");
    let plugin = config(
        dir.path(),
        "plugin.toml",
        &format!(
            "backend = \"plugin\"\n[plugin]\nmodule = {:?}\nclass = \"json-dir\"\n[plugin.options]\npath = {:?}\n",
            module.display().to_string(),
            dir.path().join("json").display().to_string()
        ),
    );
    let report = migrate_json(&from, &redis);
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["report"]["namespaces"]["task"]["copied"], 300);
    assert_eq!(report["report"]["namespaces"]["raw"]["target"]["count"], 1);

    // what Redis holds now, through the CLI: the tasks, found by request id
    let (ok, out, err) = run(&[
        "--config",
        &redis,
        "--json",
        "tasks",
        "list",
        "--request-id",
        "r-3",
        "--limit",
        "1000",
    ]);
    assert!(ok, "{err}");
    let found: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found.as_array().map(Vec::len), Some(60), "{found}");

    // a plugin can be a target (its ABI carries writes with terms and TTLs)
    let report = migrate_json(&redis, &plugin);
    assert_eq!(report["verified"], true, "{report}");
    // ...but not a source: its ABI does not carry index terms
    let (ok, _, err) = run(&["migrate", "--from", &plugin, "--to", &from]);
    assert!(!ok);
    assert!(err.contains("export"), "{err}");

    // a dry run counts and writes nothing
    let (ok, out, _) = run(&[
        "--json",
        "migrate",
        "--dry-run",
        "--from",
        &from,
        "--to",
        &redis,
    ]);
    assert!(ok);
    let dry: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dry["report"]["dry_run"], true);
    assert_eq!(dry["report"]["namespaces"]["task"]["source"]["count"], 300);
}

#[test]
fn a_migration_killed_midway_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.redb"), dir.path().join("b.sled"));
    const N: usize = 20_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend = Arc::new(
            persistence_redb::RedbBackend::open(&persistence_redb::RedbOptions::new(&a)).unwrap(),
        );
        for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
            let puts = chunk
                .iter()
                .map(|i| Put {
                    key: format!("k-{i:06}"),
                    write: DocumentWrite {
                        value: format!("{{\"n\":{i}}}").into_bytes().into(),
                        index: vec![IndexTerm::new("mod", (i % 10).to_string())],
                        ttl: None,
                    },
                    precondition: Precondition::Absent,
                })
                .collect();
            for r in backend.put_many("big", puts).await {
                r.unwrap();
            }
        }
    });
    let from = config(
        dir.path(),
        "a.toml",
        &format!(
            "backend = \"redb\"\n[redb]\npath = {:?}\n",
            a.display().to_string()
        ),
    );
    let to = config(
        dir.path(),
        "b.toml",
        &format!(
            "backend = \"sled\"\n[sled]\npath = {:?}\n",
            b.display().to_string()
        ),
    );
    let checkpoint = dir.path().join("progress.json");
    let checkpoint_arg = checkpoint.display().to_string();
    let args = [
        "--json",
        "migrate",
        "--from",
        &from,
        "--to",
        &to,
        "--checkpoint",
        &checkpoint_arg,
    ];
    let mut child = ta_persist()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let copied_before = loop {
        let copied = std::fs::read_to_string(&checkpoint)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|c| c["namespaces"]["big"]["copied"].as_u64());
        if let Some(n) = copied.filter(|n| *n >= 2_000) {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "migrate finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress in 120 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        (copied_before as usize) < N,
        "killed midway ({copied_before} copied)"
    );

    let (ok, out, err) = run(&args);
    assert!(ok, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["verified"], true, "{report}");
    let copied_after = report["report"]["namespaces"]["big"]["copied"]
        .as_u64()
        .unwrap();
    assert!(
        copied_after <= N as u64 - copied_before + 500,
        "resumed after the checkpoint: {copied_after} copied now, {copied_before} before the kill"
    );
    assert_eq!(report["report"]["namespaces"]["big"]["target"]["count"], N);
    assert!(
        !checkpoint.exists(),
        "a verified migration removes its checkpoint"
    );
}

#[test]
fn export_and_import_through_the_binary_keep_a_document_that_is_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend: SharedBackend = Arc::new(
            persistence_redb::RedbBackend::open(&persistence_redb::RedbOptions::new(&a)).unwrap(),
        );
        fill(&backend, 20).await;
        backend
            .insert(
                "task",
                "corrupted-task",
                DocumentWrite::new(&b"{\"task_id\": trunc"[..]),
            )
            .await
            .unwrap();
    });
    let from = config(
        dir.path(),
        "a.toml",
        &format!(
            "backend = \"redb\"\n[redb]\npath = {:?}\n",
            a.display().to_string()
        ),
    );
    let to = config(
        dir.path(),
        "b.toml",
        &format!(
            "backend = \"redb\"\n[redb]\npath = {:?}\n",
            b.display().to_string()
        ),
    );
    let dump = dir.path().join("dump.jsonl").display().to_string();
    let (ok, out, err) = run(&["--config", &from, "--json", "export", "--out", &dump]);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["total"], 22);
    assert_eq!(summary["corrupted"], 1);
    let (ok, out, err) = run(&["--config", &to, "--json", "import", "--in", &dump]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run(&["--config", &to, "--json", "import", "--in", &dump]);
    assert!(!ok, "conflicts make the exit code 1");
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["conflicts"].as_array().map(Vec::len), Some(22));
    rt.block_on(async {
        let backend =
            persistence_redb::RedbBackend::open(&persistence_redb::RedbOptions::new(&b)).unwrap();
        let doc = backend
            .get("task", "corrupted-task")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            &doc.value[..],
            b"{\"task_id\": trunc",
            "the bytes came back exactly"
        );
        let raw = backend.get("raw", "one").await.unwrap().unwrap();
        assert!(raw.expires_at.is_some(), "the TTL came back");
        assert_eq!(backend.lookup("raw", "kind", "raw").await.unwrap(), ["one"]);
    });
}
