//! `ta-persist queue` and `ta-persist worker` as separate processes on a
//! real Redis: jobs enqueued by one process run on workers in others, and
//! a worker SIGKILLed while holding leases loses no job: each of its jobs
//! completes later on another worker, after its lease expired.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis_test_server::RedisServer;

fn ta_persist(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ta-persist"));
    cmd.env_remove("TA_PERSISTENCE_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(std::env::temp_dir());
    cmd
}

fn json(env: &[(&str, String)], args: &[&str]) -> serde_json::Value {
    let out = ta_persist(env).arg("--json").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn worker(env: &[(&str, String)], id: &str) -> Child {
    ta_persist(env)
        .args([
            "--json",
            "worker",
            "--id",
            id,
            "--step-ms",
            "100",
            "--concurrency",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_sigkilled_workers_jobs_complete_on_another_worker() {
    let server = RedisServer::start();
    let env = [
        ("TA_PERSISTENCE_BACKEND", "redis".to_string()),
        ("TA_REDIS_HOST", "127.0.0.1".to_string()),
        ("TA_REDIS_PORT", server.port().to_string()),
        ("TA_PERSISTENCE_FALLBACK", "fail".to_string()),
        ("WORKER_HEARTBEAT_INTERVAL", "0.3".to_string()),
        ("WORKER_HEARTBEAT_TTL", "1.5".to_string()),
        ("SWEEPER_INTERVAL", "0.5".to_string()),
    ];
    const JOBS: usize = 24;
    for n in 0..JOBS {
        let v = json(
            &env,
            &["queue", "enqueue", &format!("run-{n:02}"), "{\"steps\": 8}"],
        );
        assert_eq!(v["outcome"], "Created");
    }
    let again = json(&env, &["queue", "enqueue", "run-00"]);
    assert_eq!(again["outcome"], "Exists(Pending)", "idempotent enqueue");

    // worker A takes 4 jobs and is killed mid-run (each run takes 0.8 s)
    let mut a = worker(&env, "doomed");
    let started = Instant::now();
    let held: Vec<String> = loop {
        let running = json(&env, &["queue", "list", "--status", "running"]);
        let mine: Vec<String> = running
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["worker"] == "doomed")
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect();
        if mine.len() == 4 {
            break mine;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "worker A claimed nothing"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    a.kill().unwrap();
    a.wait().unwrap();

    // worker B finishes everything, A's jobs after their leases expire
    let mut b = worker(&env, "survivor");
    let started = Instant::now();
    loop {
        let stats = json(&env, &["queue", "stats"]);
        if stats["ended"]["completed"] == JOBS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not every job completed: {stats}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.kill().unwrap();
    b.wait().unwrap();
    for n in 0..JOBS {
        let id = format!("run-{n:02}");
        let job = json(&env, &["queue", "show", &id]);
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!(job["worker"], "survivor", "{job}");
        let attempts = job["attempts"].as_u64().unwrap();
        if held.contains(&id) {
            assert_eq!(
                attempts, 2,
                "{id} ran again after worker A's lease expired: {job}"
            );
            assert!(job["error"].as_str().unwrap().contains("doomed"), "{job}");
        } else {
            assert_eq!(attempts, 1, "{id} ran once: {job}");
        }
    }
}

/// SIGTERM: the worker stops claiming, lets a running job finish within
/// `--shutdown-secs` or releases it (attempt not counted), and exits 0
/// with its report.
#[test]
fn sigterm_releases_what_cannot_finish_in_time_and_exits_cleanly() {
    let server = RedisServer::start();
    let env = [
        ("TA_PERSISTENCE_BACKEND", "redis".to_string()),
        ("TA_REDIS_HOST", "127.0.0.1".to_string()),
        ("TA_REDIS_PORT", server.port().to_string()),
        ("TA_PERSISTENCE_FALLBACK", "fail".to_string()),
    ];
    // a long run: 600 steps of 100 ms
    json(&env, &["queue", "enqueue", "long-run", "{\"steps\": 600}"]);
    let mut w = ta_persist(&env)
        .args([
            "--json",
            "worker",
            "--id",
            "w-term",
            "--step-ms",
            "100",
            "--shutdown-secs",
            "0.5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while json(&env, &["queue", "show", "long-run"])["state"] != "running" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the worker never claimed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &w.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = w.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the worker did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut w.stdout.take().unwrap(), &mut out).unwrap();
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["released"], 1, "{report}");
    let job = json(&env, &["queue", "show", "long-run"]);
    assert_eq!(job["state"], "pending", "{job}");
    assert_eq!(
        job["attempts"], 0,
        "a release does not count the attempt: {job}"
    );
}
