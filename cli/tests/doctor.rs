//! `ta-persist doctor` explains the configuration and finds what is wrong:
//! real Redis up, a port nothing listens on, a bad value.

use std::process::Command;

use redis_test_server::RedisServer;

fn doctor(env: &[(&str, String)]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
        .args(["--json", "doctor"])
        .env_remove("TA_PERSISTENCE_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run ta-persist doctor");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), report)
}

fn finding<'a>(report: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {report}"))
}

#[test]
fn a_healthy_configuration_has_no_problems() {
    let server = RedisServer::start();
    let (code, report) = doctor(&[
        ("TA_PERSISTENCE_BACKEND", "redis".into()),
        ("TA_REDIS_HOST", "127.0.0.1".into()),
        ("TA_REDIS_PORT", server.port().to_string()),
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["problems"], 0);
    let settings = finding(&report, "settings")["detail"].as_str().unwrap();
    assert!(
        settings.contains("backend (TA_PERSISTENCE_BACKEND) = \"redis\""),
        "{settings}"
    );
    assert_eq!(finding(&report, "health")["ok"], true);
}

#[test]
fn an_unreachable_server_is_a_problem_even_with_fallback_memory() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, report) = doctor(&[
        ("TA_PERSISTENCE_BACKEND", "redis".into()),
        ("TA_REDIS_HOST", "127.0.0.1".into()),
        ("TA_REDIS_PORT", port.to_string()),
        ("TA_PERSISTENCE_FALLBACK", "memory".into()),
    ]);
    assert_eq!(code, 1, "{report}");
    let open = finding(&report, "open");
    assert_eq!(open["ok"], false);
    let detail = open["detail"].as_str().unwrap();
    assert!(
        detail.contains(&port.to_string()) && detail.contains("run on memory"),
        "{detail}"
    );
    assert!(
        open["fix"].as_str().unwrap().contains("start the server"),
        "{open}"
    );
}

#[test]
fn a_bad_value_is_named_with_its_fix() {
    let (code, report) = doctor(&[("TA_REDIS_PORT", "x".into())]);
    assert_eq!(code, 1, "{report}");
    let settings = finding(&report, "settings");
    assert!(
        settings["detail"]
            .as_str()
            .unwrap()
            .contains("redis.port (TA_REDIS_PORT)"),
        "{settings}"
    );
    assert!(settings["fix"]
        .as_str()
        .unwrap()
        .contains("correct the setting"));
}
