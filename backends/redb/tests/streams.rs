//! The stream conformance cases on redb, and what survives a restart.

use std::sync::Arc;

use persistence_core::streams::{Offset, Retention, SharedStreams};
use persistence_redb::{RedbBackend, RedbOptions};

mod conformance {
    persistence_conformance::stream_conformance_tests!(|retention| async move {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let options = persistence_redb::RedbOptions {
            temporary: true,
            ..persistence_redb::RedbOptions::new(dir.join("db.redb"))
        };
        let backend =
            std::sync::Arc::new(persistence_redb::RedbBackend::open(&options).expect("open redb"));
        std::sync::Arc::new(backend.streams(retention)) as persistence_core::streams::SharedStreams
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_closes_and_cancels_survive_a_restart_and_offsets_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let last = {
        let backend = Arc::new(RedbBackend::open(&RedbOptions::new(&path)).unwrap());
        let s: SharedStreams = Arc::new(backend.streams(Retention::default()));
        for n in 0..10 {
            s.append("run-1", format!("e{n}").into()).await.unwrap();
        }
        s.append("run-2", "x".into()).await.unwrap();
        s.close("run-2", "success").await.unwrap();
        s.cancel("run-3").await.unwrap();
        s.read("run-1", Offset::START, 100).await.unwrap().last
    };
    let backend = Arc::new(RedbBackend::open(&RedbOptions::new(&path)).unwrap());
    let s: SharedStreams = Arc::new(backend.streams(Retention::default()));
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
}

/// Events appended and acknowledged before a SIGKILL of the process are
/// there after reopen, in order, with nothing after them but (maybe) the
/// one in flight: 10 kills at random points, on the same database (the
/// test binary runs itself again as the appender).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    if let Ok(spec) = std::env::var("TA_TEST_STREAM_WRITER") {
        let (first, path) = spec.split_once(' ').unwrap();
        let first: u64 = first.parse().unwrap();
        let backend = Arc::new(RedbBackend::open(&RedbOptions::new(path)).unwrap());
        let s = backend.streams(Retention::default());
        for n in first.. {
            persistence_core::streams::EventStreams::append(&s, "run", format!("e{n}").into())
                .await
                .unwrap();
            // one write of the whole line (atomic on a pipe): a kill never
            // leaves a partial number for the reader
            let mut err = std::io::stderr().lock();
            err.write_all(format!("ack {n}\n").as_bytes()).unwrap();
            err.flush().unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let mut acked: Vec<u64> = Vec::new();
    let mut seed = 0x2545_f491u64;
    for round in 0..10u64 {
        let first = round * 1_000_000;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "acknowledged_events_survive_sigkill",
                "--exact",
                "--test-threads=1",
            ])
            .env(
                "TA_TEST_STREAM_WRITER",
                format!("{first} {}", path.display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
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
            std::thread::sleep(Duration::from_millis(2));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 200));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(lines.lock().unwrap().iter());
        let backend = Arc::new(RedbBackend::open(&RedbOptions::new(&path)).unwrap());
        let s: SharedStreams = Arc::new(backend.streams(Retention::default()));
        let stored: Vec<String> = s
            .read("run", Offset::START, 10_000_000)
            .await
            .unwrap()
            .events
            .iter()
            .map(|e| String::from_utf8(e.data.to_vec()).unwrap())
            .collect();
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
