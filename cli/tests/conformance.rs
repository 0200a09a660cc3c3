//! `ta-persist conformance` against plugins: it always exits, and it leaves
//! nothing behind on the store it tested.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use persistence_conformance::plugin_library;

/// Runs `ta-persist` with `args` and `env`; fails if it has not exited
/// within `limit`.
fn run_within(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("TA_PERSISTENCE_CONFIG")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ta-persist");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
            return (status.code().unwrap_or(-1), out);
        }
        if started.elapsed() > limit {
            child.kill().ok();
            panic!("ta-persist {args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_plugin_that_never_answers_fails_every_case_and_the_command_exits() {
    let module = plugin_library("test-plugin-answers-twice");
    let (code, out) = run_within(
        &[
            "conformance",
            "--module",
            module.to_str().unwrap(),
            "--class",
            "never-answers",
            "--case-timeout",
            "1",
        ],
        &[("TA_PERSISTENCE__PLUGIN__CALL_TIMEOUT_MS", "300")],
        Duration::from_secs(120),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0 passed"), "{out}");
    assert!(out.contains("did not finish within 1s"), "{out}");
}

#[test]
fn conformance_removes_what_its_cases_wrote() {
    let module = plugin_library("plugin-example");
    let dir = tempfile::tempdir().unwrap();
    let option = format!("path={}", dir.path().display());
    let (code, out) = run_within(
        &[
            "conformance",
            "--module",
            module.to_str().unwrap(),
            "--class",
            "json-dir",
            "--option",
            &option,
        ],
        &[],
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{out}");
    let mut left = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                left.push(path);
            }
        }
    }
    // Expired documents are invisible, so no contract call can remove them:
    // Redis drops them by their TTL, json-dir keeps the file until purged.
    // Every other document must be gone.
    let namespace = |p: &std::path::Path| {
        let hex = p.parent().unwrap().file_name().unwrap().to_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        String::from_utf8(bytes).unwrap()
    };
    let live: Vec<String> = left
        .iter()
        .map(|p| namespace(p))
        .filter(|ns| !ns.starts_with("conformance-ttl_"))
        .collect();
    assert!(live.is_empty(), "documents left in {live:?}");
}

/// `conformance --queue` on the configured redb database: every case
/// passes, and no job of any case's queue is left in the file.
#[test]
fn queue_conformance_passes_on_redb_and_leaves_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let path = path.to_str().unwrap();
    let env = [("TA_PERSISTENCE_BACKEND", "redb"), ("TA_REDB_PATH", path)];
    let (code, out) = run_within(
        &["--json", "conformance", "--queue"],
        &env,
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["failed"], 0, "{out}");
    assert_eq!(
        report["passed"].as_u64().unwrap() as usize,
        persistence_conformance::QUEUE_CASES.len()
    );
    // every case's queue was cleared: reopen the file and look
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use persistence_core::queue::{ListFilter, RunQueue};
        let backend = std::sync::Arc::new(
            persistence_redb::RedbBackend::open(&persistence_redb::RedbOptions::new(path)).unwrap(),
        );
        assert_eq!(
            backend.queue_names().unwrap(),
            Vec::<String>::new(),
            "jobs left in the file"
        );
        let q = backend.queue("runs", Default::default()).await.unwrap();
        assert!(q.list(ListFilter::default()).await.unwrap().is_empty());
    });
}

/// A plugin author's run with the plugin in a runner process: every case
/// crosses the socket, and the runner is found beside `ta-persist`.
#[test]
fn conformance_runs_a_plugin_in_a_runner_process() {
    let module = plugin_library("plugin-example");
    persistence_conformance::plugin_runner(); // built beside ta-persist
    let (code, out) = run_within(
        &[
            "--json",
            "conformance",
            "--module",
            module.to_str().unwrap(),
            "--class",
            "memory",
            "--isolation",
            "process",
        ],
        &[],
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report["failed"].as_u64(), Some(0), "{out}");
    let ran = report["passed"].as_u64().unwrap() + report["not_applicable"].as_u64().unwrap();
    assert_eq!(ran, persistence_conformance::CASES.len() as u64, "{out}");
    assert!(report["passed"].as_u64().unwrap() > 60, "{out}");
}

/// `health` of a plugin in a runner says so, and a wrong isolation value is
/// a configuration error naming the setting, never the memory fallback.
#[test]
fn health_names_the_runner_and_a_bad_isolation_is_refused() {
    let module = plugin_library("test-plugin-crashes");
    let runner = persistence_conformance::plugin_runner();
    let env = [
        ("TA_PERSISTENCE_MODULE", module.to_str().unwrap()),
        ("TA_PERSISTENCE__PLUGIN__ISOLATION", "process"),
        ("TA_PERSISTENCE__PLUGIN__RUNNER", runner.to_str().unwrap()),
    ];
    let (code, out) = run_within(&["--json", "health"], &env, Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    let health: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let text = health.to_string();
    assert!(text.contains("\"isolation\":\"process\""), "{text}");
    assert!(text.contains("runner_pid"), "{text}");
    let env = [
        ("TA_PERSISTENCE_MODULE", module.to_str().unwrap()),
        ("TA_PERSISTENCE__PLUGIN__ISOLATION", "thread"),
    ];
    let (code, out) = run_within(&["--json", "health"], &env, Duration::from_secs(60));
    assert_ne!(code, 0, "{out}");
}
