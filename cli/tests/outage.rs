//! `ta-persist stats` over the layered Redis stack (`config/layered.toml`)
//! while Redis is SIGKILLed for 2 s: the command completes, and its
//! counters show the outage and the recovery.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_test_server::RedisServer;

#[test]
fn a_two_second_outage_costs_seconds_and_shows_in_the_counters() {
    let mut server = RedisServer::start();
    let spill = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/layered.toml");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
        .args(["--config", config, "--json", "stats", "--tasks", "4000"])
        .env("TA_REDIS_HOST", "127.0.0.1")
        .env("TA_REDIS_PORT", server.port().to_string())
        .env(
            "TA_PERSISTENCE__RECOVERY_QUEUE__SPILL_PATH",
            spill.path().join("queue"),
        )
        .env("TA_PERSISTENCE__TASK_STORE__NAMESPACE", "outage")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ta-persist");
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the workload ended before the outage: make it longer"
    );
    server.kill();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let counters = &v["stats"]["counters"];
    let ops = &v["stats"]["operations"];
    let unavailable: u64 = ops
        .as_object()
        .unwrap()
        .values()
        .map(|op| op["unavailable"].as_u64().unwrap_or(0))
        .sum();
    let noticed = counters["retries"].as_u64().unwrap_or(0)
        + counters["queue_accepted"].as_u64().unwrap_or(0)
        + counters["breaker_opened"].as_u64().unwrap_or(0)
        + unavailable;
    assert!(noticed > 0, "the outage left no trace: {counters}");
    assert_eq!(counters["breaker_open"], 0, "still open: {counters}");
    assert_eq!(
        counters["queue_depth"], 0,
        "writes still queued: {counters}"
    );
    // Not asserted: queue_dropped. A write accepted into the queue answers
    // version 0; a versioned update a caller then builds on it cannot apply
    // when replayed, and is dropped (0 to 3 of about 1,000 per run here).
    assert_eq!(v["health"], "ok", "{v}");
    assert!(
        v["failed_lives"].as_u64().unwrap() < 4000,
        "every life failed: {v}"
    );
    assert!(elapsed < Duration::from_secs(90), "took {elapsed:?}");
    eprintln!("outage run: {elapsed:?}, counters {counters}");
}
