//! The writer process of the crash tests: the test binary runs its own
//! test again as a child that writes and acknowledges on stderr until it is
//! SIGKILLed at a chosen moment.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs the test `test_name` of this binary again with `variable=value`
/// (which makes it the writer), keeps the whole lines it prints on stderr
/// that start with one of `protocol` (a line cut short by the kill is
/// dropped; others are shown as the writer's), waits for its first `ack `
/// line and then `pause`, and SIGKILLs it. Returns the kept lines in order.
pub(crate) fn run_until_killed(
    test_name: &str,
    variable: &str,
    value: &str,
    protocol: &[&'static str],
    pause: Duration,
) -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(variable, value)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let (lines, protocol) = (lines.clone(), protocol.to_vec());
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                match line.strip_suffix('\n') {
                    Some(whole) if protocol.iter().any(|p| whole.starts_with(p)) => {
                        lines.lock().unwrap().push(whole.to_string())
                    }
                    Some(other) => eprintln!("writer: {other}"),
                    None => {}
                }
                line.clear();
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.lock().unwrap().iter().any(|l| l.starts_with("ack ")) {
        assert!(
            Instant::now() < deadline,
            "the writer acknowledged nothing in 20 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the writer exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(pause);
    child.kill().expect("SIGKILL the writer");
    child.wait().unwrap();
    reader.join().unwrap();
    let lines = lines.lock().unwrap().clone();
    lines
}

/// Writes one protocol line in one call (so a kill cuts it whole or not at
/// all; the reader drops a cut line anyway). Exits if stderr is gone.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stderr().lock();
    if out
        .write_all(format!("{line}\n").as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(3);
    }
}
