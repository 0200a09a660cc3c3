//! The demo's workload at 20,000 and 50,000 tasks on each embedded engine,
//! run as a user runs it (`ta-persist --backend ENGINE demo --tasks N` on a
//! fresh database), each run bounded by a generous deadline: redb must
//! finish every task; sled (whose 0.34 can deadlock under load, upstream
//! issue 1412) must finish or fail with a timeout error, and never hang.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far beyond what a run takes here (redb: 50,000 tasks in about 30 s in a
/// debug build); only a hang reaches it.
const DEADLINE: Duration = Duration::from_secs(600);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs the demo; panics if it is still running at the deadline (killed).
fn demo(engine: &str, tasks: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ta-persist"))
        // the document workload alone: the streams have their own demo test
        .args([
            "--backend",
            engine,
            "--json",
            "demo",
            "--no-streams",
            "--tasks",
        ])
        .arg(tasks.to_string())
        .env_remove("TA_PERSISTENCE_CONFIG")
        .env("TA_PERSISTENCE_FALLBACK", "fail")
        .env("TA_REDB_PATH", dir.path().join("tasks.redb"))
        .env("TA_SLED_PATH", dir.path().join("sled"))
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ta-persist");
    let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let (mut o, mut e) = (String::new(), String::new());
        pipes.0.read_to_string(&mut o).unwrap();
        pipes.1.read_to_string(&mut e).unwrap();
        (o, e)
    });
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{engine}: demo --tasks {tasks} hung: still running after {DEADLINE:?}, killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = out.join().unwrap();
    Run {
        code,
        stdout,
        stderr,
        took: started.elapsed(),
    }
}

fn finished_every_task(engine: &str, tasks: u64, run: &Run) {
    assert_eq!(
        run.code,
        Some(0),
        "{engine} {tasks}: stdout {}\nstderr {}",
        run.stdout,
        run.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect(&run.stdout);
    assert_eq!(v["backend"], engine, "{v}");
    assert_eq!(v["tasks_left"], 0, "{v}");
    let created = v["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "create")
        .expect("a create row")["count"]
        .as_u64();
    assert_eq!(created, Some(tasks), "{v}");
}

#[test]
fn redb_runs_the_demo_at_20k_and_50k_tasks() {
    for tasks in [20_000, 50_000] {
        let run = demo("redb", tasks);
        finished_every_task("redb", tasks, &run);
        eprintln!("redb: {tasks} tasks in {:.1} s", run.took.as_secs_f64());
    }
}

#[test]
fn sled_runs_the_demo_at_20k_and_50k_tasks_or_times_out_never_hangs() {
    for tasks in [20_000, 50_000] {
        let run = demo("sled", tasks);
        if run.code == Some(0) {
            finished_every_task("sled", tasks, &run);
            eprintln!("sled: {tasks} tasks in {:.1} s", run.took.as_secs_f64());
        } else {
            assert!(
                run.stderr.contains("timed out"),
                "sled {tasks}: failed, but not with a timeout: {}",
                run.stderr
            );
            eprintln!(
                "sled: {tasks} tasks stopped by a timeout after {:.1} s (contained deadlock)",
                run.took.as_secs_f64()
            );
        }
    }
}
