//! `ta-persist streams`: tail follows what other processes append, on a
//! real Redis; the engine comes from the settings, and one without streams
//! is refused or falls back loudly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_test_server::RedisServer;

/// Settings for a backend without event streams: a plugin (the plugin ABI
/// does not carry them), plugin-example's json-dir in `dir`.
fn plugin_env(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let module = persistence_conformance::plugin_library("plugin-example");
    vec![
        ("TA_PERSISTENCE_MODULE", module.display().to_string()),
        ("TA_PERSISTENCE_CLASS", "json-dir".to_string()),
        (
            "TA_PERSISTENCE__PLUGIN__OPTIONS__PATH",
            dir.join("json").display().to_string(),
        ),
    ]
}

fn ta_persist(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ta-persist"));
    cmd.env_remove("TA_PERSISTENCE_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(std::env::temp_dir());
    cmd
}

#[test]
fn tail_follows_events_other_processes_append_until_the_close() {
    let server = RedisServer::start();
    // documents on memory, streams on Redis: STREAMING_BACKEND as in seed 003
    let env = [
        ("STREAMING_BACKEND", "redis".to_string()),
        ("TA_REDIS_HOST", "127.0.0.1".to_string()),
        ("TA_REDIS_PORT", server.port().to_string()),
        ("TA_PERSISTENCE_FALLBACK", "fail".to_string()),
    ];
    let mut tail = ta_persist(&env)
        .args(["--json", "streams", "tail", "run:7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    std::thread::sleep(Duration::from_millis(300));
    for n in 0..3 {
        let out = ta_persist(&env)
            .args(["streams", "append", "run:7", &format!("{{\"n\":{n}}}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ta_persist(&env)
        .args(["streams", "close", "run:7", "success"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let got: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(tail.wait().unwrap().success());
    assert_eq!(got.len(), 4, "{got:?}");
    for (n, line) in got[..3].iter().enumerate() {
        assert_eq!(line["data"]["n"], n, "{line}");
    }
    assert_eq!(got[3]["end"], "success");
    // a reconnecting client resumes after its last offset
    let last = got[1]["offset"].as_str().unwrap();
    let out = ta_persist(&env)
        .args(["--json", "streams", "tail", "run:7", "--from", last])
        .output()
        .unwrap();
    let resumed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(resumed.len(), 2, "{resumed:?}");
    assert_eq!(resumed[0]["data"]["n"], 2);
}

#[test]
fn an_engine_without_streams_is_refused_or_falls_back_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let env = |fallback: &str| {
        let mut env = plugin_env(dir.path());
        env.push(("TA_PERSISTENCE_FALLBACK", fallback.to_string()));
        env
    };
    let out = ta_persist(&env("fail"))
        .args(["streams", "append", "run", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin does not support run event streams"),
        "{err}"
    );
    let out = ta_persist(&env("memory"))
        .args(["streams", "append", "run", "x"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("running in memory"), "{err}");
    // a wrong engine name is a configuration error, never a fallback
    let mut bad = env("memory");
    bad.push(("STREAMING_BACKEND", "kafka".to_string()));
    let out = ta_persist(&bad)
        .args(["streams", "append", "run", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("streams.engine (STREAMING_BACKEND)") && err.contains("kafka"),
        "{err}"
    );
}

#[test]
fn conformance_streams_passes_on_redis_and_leaves_no_key_behind() {
    let server = RedisServer::start();
    let env = [
        ("STREAMING_BACKEND", "redis".to_string()),
        ("TA_REDIS_HOST", "127.0.0.1".to_string()),
        ("TA_REDIS_PORT", server.port().to_string()),
    ];
    let out = ta_persist(&env)
        .args([
            "--json",
            "conformance",
            "--streams",
            "--case-timeout",
            "120",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["backend"], "redis", "{stdout}");
    assert_eq!(report["failed"], 0, "{stdout}");
    assert_eq!(
        report["passed"].as_u64(),
        Some(persistence_conformance::STREAM_CASES.len() as u64),
        "{stdout}"
    );
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[test]
fn conformance_streams_refuses_an_engine_without_streams() {
    let dir = tempfile::tempdir().unwrap();
    let out = ta_persist(&plugin_env(dir.path()))
        .args(["conformance", "--streams"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugin does not support run event streams"),
        "{stderr}"
    );
}

/// `ta-persist --json demo` with `env`: its report.
fn demo(env: &[(&str, String)], dir: &std::path::Path) -> serde_json::Value {
    let out = ta_persist(env)
        .current_dir(dir)
        .args(["--json", "demo", "--tasks", "40", "--concurrency", "8"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn the_demo_streams_every_run_and_follows_it_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    // the embedded default: documents and streams in one redb file
    let redb = [
        ("TA_PERSISTENCE_BACKEND", "redb".to_string()),
        (
            "TA_REDB_PATH",
            dir.path().join("d.redb").display().to_string(),
        ),
        ("TA_PERSISTENCE_FALLBACK", "fail".to_string()),
    ];
    let report = demo(&redb, dir.path());
    assert_eq!(report["streams"], "redb", "{report}");
    assert_eq!(report["events_streamed"], 160, "4 events a task: {report}");
    // Redis: every run's stream deleted with its task
    let server = RedisServer::start();
    let on_redis = [
        ("TA_PERSISTENCE_BACKEND", "redis".to_string()),
        ("TA_REDIS_HOST", "127.0.0.1".to_string()),
        ("TA_REDIS_PORT", server.port().to_string()),
        ("TA_PERSISTENCE_FALLBACK", "fail".to_string()),
    ];
    let report = demo(&on_redis, dir.path());
    assert_eq!(report["streams"], "redis", "{report}");
    assert_eq!(report["events_streamed"], 160, "{report}");
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*~s:*").query(&mut con).unwrap();
    assert!(keys.is_empty(), "streams left: {keys:?}");
    // an engine without streams runs the demo without them, saying so
    let mut plugin = plugin_env(dir.path());
    plugin.push(("TA_PERSISTENCE_FALLBACK", "fail".to_string()));
    let report = demo(&plugin, dir.path());
    assert_eq!(report["streams"], serde_json::Value::Null, "{report}");
    assert_eq!(report["events_streamed"], 0, "{report}");
}
