//! The benchmark binary explains itself and runs a small measurement.

use std::process::Command;

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ta-persist-bench"))
        .args(args)
        .output()
        .expect("run ta-persist-bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn it_has_help() {
    let (code, out, err) = bench(&["--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Usage: ta-persist-bench"), "{out}");
    assert!(out.contains("--store"), "{out}");
}

#[test]
fn a_small_memory_run_prints_ratios_as_json() {
    let (code, out, err) = bench(&[
        "--json", "--store", "memory", "--ops", "200", "--rounds", "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert!(v.to_string().contains("ratio"), "{out}");
}

#[test]
fn counts_of_zero_are_refused_with_a_clear_error() {
    for flag in ["--ops", "--rounds", "--concurrency"] {
        let (code, _, err) = bench(&[flag, "0"]);
        assert_eq!(code, 2, "{flag} 0: {err}");
        assert!(err.contains(flag) && err.contains("at least 1"), "{err}");
    }
}

#[test]
fn a_small_workflows_run_on_redb_reports_every_operation() {
    let (code, out, err) = bench(&[
        "--json",
        "--workflows",
        "--store",
        "redb",
        "--ops",
        "20",
        "--rounds",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    let ops = v["operations"].as_array().expect("operations");
    assert_eq!(ops.len(), 7, "{out}");
    for op in ops {
        assert!(op["store_p99_us"].as_f64().unwrap() > 0.0, "{op}");
        assert!(op["bare_p50_us"].as_f64().unwrap() > 0.0, "{op}");
    }
    let counts = v["count_term"].as_array().expect("count_term");
    let sizes: Vec<u64> = counts
        .iter()
        .map(|r| r["members"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [1_000, 10_000, 50_000], "{out}");
    for r in counts {
        assert!(r["count_term_p50_us"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["lookup_len_p50_us"].as_f64().unwrap() > 0.0, "{r}");
    }
}
