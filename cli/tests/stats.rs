//! `ta-persist stats` and `--help`, run as a user runs them.

use std::process::Command;

fn ta_persist(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ta-persist"));
    // run in the crate's folder, which has no config/default.toml
    cmd.args(args).env_remove("TA_PERSISTENCE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ta-persist");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stats_counts_the_workload_it_ran_through_every_layer() {
    let (code, out, err) = ta_persist(
        &["--backend", "memory", "--json", "stats", "--tasks", "40"],
        &[(
            "TA_PERSISTENCE__LAYERS",
            "timeout,retry,circuit_breaker,recovery_queue,cache",
        )],
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let ops = &v["stats"]["operations"];
    // a task life: create, 2 lookups by request id (each a lookup and its
    // read in one call, counted as a lookup), 2 updates, a versioned load,
    // a delete
    for (op, per_task) in [("put", 3), ("get", 1), ("lookup", 2), ("remove", 1)] {
        assert_eq!(ops[op]["calls"], 40 * per_task, "{op}: {v}");
        assert_eq!(ops[op]["errors"], 0, "{op}: {v}");
    }
    let counters = &v["stats"]["counters"];
    // the cache tier serves the lookups' reads too
    assert_eq!(
        counters["cache_hits"], 120,
        "every read hits the cache: {v}"
    );
    for name in ["retries", "breaker_opened", "queue_depth", "timeouts"] {
        assert_eq!(counters[name], 0, "{name}: {v}");
    }
    assert_eq!(v["health"], "ok");
}

#[test]
fn stats_prints_tables_for_people() {
    let (code, out, err) = ta_persist(&["--backend", "memory", "stats", "--tasks", "5"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("stats of memory (no layers) after 5 task lives"),
        "{out}"
    );
    assert!(out.contains("lookup") && out.contains("mean µs"), "{out}");
}

#[test]
fn every_command_has_help() {
    for command in [
        "health",
        "doctor",
        "demo",
        "stats",
        "conformance",
        "tasks",
        "docs",
    ] {
        let (code, out, err) = ta_persist(&[command, "--help"], &[]);
        assert_eq!(code, 0, "{command}: {err}");
        assert!(out.contains("Usage: ta-persist"), "{command}: {out}");
    }
}
