//! What durable stream engines keep: events acknowledged by `append`
//! before the process is killed are there after reopen, in order; and
//! events, closes and cancels survive a clean restart.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use persistence_core::streams::{Offset, SharedStreams};

/// The variable that makes the test binary the appender.
const WRITER: &str = "TA_TEST_STREAM_WRITER";

/// Kills an appender 10 times at random points, on the same database, and
/// checks after each reopen that every acknowledged event is there, in
/// order, with at most the one in flight besides.
///
/// `test` is the name of the calling `#[tokio::test]` (the binary runs
/// itself again as the appender, with only that test); `open` opens the
/// engine at a path inside a temporary directory (`name` under it), the
/// same in both processes, with acknowledged appends durable.
pub async fn stream_crash_test<F, Fut>(test: &str, name: &str, open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = SharedStreams>,
{
    if let Ok(spec) = std::env::var(WRITER) {
        let (first, path) = spec.split_once(' ').expect("WRITER spec");
        let first: u64 = first.parse().expect("first number");
        let s = open(PathBuf::from(path)).await;
        for n in first.. {
            s.append("run", format!("e{n}").into())
                .await
                .expect("append");
            // one write of the whole line (atomic on a pipe): a kill never
            // leaves a partial number for the reader
            let mut err = std::io::stderr().lock();
            err.write_all(format!("ack {n}\n").as_bytes()).unwrap();
            err.flush().unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    let mut acked: Vec<u64> = Vec::new();
    let mut seed = 0x2545_f491u64;
    for round in 0..10u64 {
        let first = round * 1_000_000;
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([test, "--exact", "--test-threads=1"])
            .env(WRITER, format!("{first} {}", path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the appender");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::<u64>::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut stderr = BufReader::new(stderr);
                let mut line = String::new();
                // only whole lines count (a line cut by the kill is not an ack)
                while stderr.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
                    if let Some(n) = line.trim_end().strip_prefix("ack ") {
                        lines.lock().unwrap().push(n.parse().unwrap());
                    }
                    line.clear();
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while lines.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing acknowledged"
            );
            if let Some(status) = child.try_wait().unwrap() {
                panic!("round {round}: the appender exited early with {status}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 200));
        child.kill().expect("SIGKILL the appender");
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(lines.lock().unwrap().iter());
        let s = open(path.clone()).await;
        let stored: Vec<String> = s
            .read("run", Offset::START, 10_000_000)
            .await
            .expect("read after reopen")
            .events
            .iter()
            .map(|e| String::from_utf8(e.data.to_vec()).unwrap())
            .collect();
        drop(s);
        let want: Vec<String> = acked.iter().map(|n| format!("e{n}")).collect();
        // every acknowledged event, in order; at most one more per round
        // (an append in flight at a kill may have landed)
        let mut i = 0;
        for event in &stored {
            if i < want.len() && *event == want[i] {
                i += 1;
            }
        }
        assert_eq!(
            i,
            want.len(),
            "round {round}: acknowledged events lost or out of order"
        );
        assert!(
            stored.len() <= want.len() + round as usize + 1,
            "round {round}: events nobody appended"
        );
    }
    assert!(
        acked.len() >= 20,
        "too few appends to mean anything: {}",
        acked.len()
    );
    eprintln!(
        "streams crash test: 10 SIGKILLs, {} acknowledged events",
        acked.len()
    );
}

/// A clean restart of a durable stream engine: events, closes and cancels
/// are there after reopening at the same path (`name` in a temporary
/// directory), and offsets go on after the last one. `open` must drop
/// nothing it needs: the first engine is dropped before the second opens.
pub async fn stream_restart_test<F, Fut>(name: &str, open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = SharedStreams>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    let last = {
        let s = open(path.clone()).await;
        for n in 0..10 {
            s.append("run-1", format!("e{n}").into()).await.unwrap();
        }
        s.append("run-2", "x".into()).await.unwrap();
        s.close("run-2", "success").await.unwrap();
        s.cancel("run-3").await.unwrap();
        s.read("run-1", Offset::START, 100).await.unwrap().last
    };
    let s = open(path).await;
    let page = s.read("run-1", Offset::START, 100).await.unwrap();
    assert_eq!(page.events.len(), 10);
    assert_eq!(page.last, last);
    let next = s.append("run-1", "after".into()).await.unwrap();
    assert!(
        next > last,
        "offsets continue after reopen: {next} after {last}"
    );
    let page = s.read("run-2", Offset::START, 100).await.unwrap();
    assert_eq!(page.end.as_deref(), Some("success"));
    assert!(s.append("run-2", "late".into()).await.is_err());
    assert!(s.cancellation("run-3").await.unwrap().is_cancelled());
    assert!(!s.cancellation("run-4").await.unwrap().is_cancelled());
    assert!(s.delete("run-1").await.unwrap());
    assert!(s
        .read("run-1", Offset::START, 10)
        .await
        .unwrap()
        .events
        .is_empty());
}
