//! Crash safety, for every durable engine: a child process writes tasks
//! and is killed with SIGKILL at random points, round after round on the
//! same database. After each kill the database is reopened and checked:
//! - every acknowledged write is there (creates, updates, deletes);
//! - every document decodes (nothing half-written);
//! - every index entry points at a document that carries its term, and
//!   every term of every document is indexed.
//!
//! The one write in flight when the child died may or may not have landed;
//! either outcome is accepted, nothing in between.
//!
//! The writer's operations, for task numbers N = FIRST, FIRST+1, ...:
//! create N (request ids `rN-a`, `rN-b`); when N % 3 == 2, update N-1
//! (`r{N-1}-a` becomes `r{N-1}-u`); when N % 5 == 4, delete N-3. It prints
//! `begin OP N` before and `ack OP N` after each write.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use persistence_core::backend::{ScanOrder, ScanRequest};
use persistence_core::model::{
    AgentTask, AgentTaskItem, ContentType, MultiModalItem, Role, TaskStatus, Timestamp,
};
use persistence_core::store::REQUEST_INDEX;
use persistence_core::{Result, SharedBackend, TaskStore};

const NS: &str = "task";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// request ids a and b
    Created,
    /// request ids u and b
    Updated,
    Deleted,
}

fn apply(model: &mut BTreeMap<u64, State>, op: &str, n: u64) {
    let state = match op {
        "create" => State::Created,
        "update" => State::Updated,
        "delete" => State::Deleted,
        other => panic!("unknown op {other}"),
    };
    model.insert(n, state);
}

fn request_ids(n: u64, state: State) -> Vec<String> {
    match state {
        State::Created => vec![format!("r{n}-a"), format!("r{n}-b")],
        State::Updated => vec![format!("r{n}-b"), format!("r{n}-u")],
        State::Deleted => vec![],
    }
}

/// xorshift: a reproducible pause before each kill.
fn pauses(mut seed: u64) -> impl FnMut() -> Duration {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(20 + seed % 230)
    }
}

/// A write of the protocol: the operation and the task number.
type Op = (String, u64);

/// Runs one writer until killed; returns the acknowledged ops and the one in flight.
fn run_writer(test_name: &str, dir: &Path, first: u64, pause: Duration) -> (Vec<Op>, Option<Op>) {
    let lines = crate::writer_process::run_until_killed(
        test_name,
        WRITER_VARIABLE,
        &format!("{first} {}", dir.display()),
        &["begin ", "ack "],
        pause,
    );
    let mut acked = Vec::new();
    let mut in_flight = None;
    for line in lines.iter() {
        let parts: Vec<&str> = line.split(' ').collect();
        let (op, n) = (parts[1].to_string(), parts[2].parse::<u64>().unwrap());
        match parts[0] {
            "begin" => in_flight = Some((op, n)),
            "ack" => {
                assert_eq!(
                    in_flight.take(),
                    Some((op.clone(), n)),
                    "protocol out of order"
                );
                acked.push((op, n));
            }
            other => panic!("unexpected line {other}"),
        }
    }
    (acked, in_flight)
}

async fn observed(b: &SharedBackend, n: u64) -> Option<AgentTask> {
    b.get(NS, &format!("task-{n}"))
        .await
        .unwrap_or_else(|e| panic!("task-{n} unreadable after the crash: {e}"))
        .map(|d| {
            serde_json::from_slice(&d.value)
                .unwrap_or_else(|e| panic!("task-{n} half-written: {e}"))
        })
}

fn state_of(n: u64, task: &Option<AgentTask>) -> State {
    match task {
        None => State::Deleted,
        Some(t) if t.has_request_id(&format!("r{n}-u")) => State::Updated,
        Some(_) => State::Created,
    }
}

/// Runs `rounds` rounds of the crash test from the test named `test_name`
/// (which calls this): the test binary runs again as the writer, on the
/// database `open` opens in a fresh temp dir, every write durable once
/// acknowledged, until SIGKILLed at a random point; `open` then reopens the
/// database and every guarantee above is checked. Panics on the first
/// broken one.
///
/// In the writer process (told by an environment variable) this writes
/// until killed and never returns.
pub async fn crash_test(
    test_name: &str,
    rounds: u64,
    open: impl Fn(&Path) -> Result<SharedBackend>,
) {
    if let Ok(writer) = std::env::var(WRITER_VARIABLE) {
        let (first, dir) = writer.split_once(' ').expect("FIRST DB_DIR");
        let backend = open(Path::new(dir)).expect("the writer opens the database");
        write_until_killed(TaskStore::new(backend), first.parse().expect("FIRST")).await;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<u64, State> = BTreeMap::new();
    let mut next_pause = pauses(0x5eed_1234_abcd);
    let mut total_acked = 0;
    for round in 0..rounds {
        let first = round * 1_000_000;
        let (acked, in_flight) = run_writer(test_name, dir.path(), first, next_pause());
        total_acked += acked.len();
        for (op, n) in &acked {
            apply(&mut model, op, *n);
        }
        let backend = open(dir.path()).expect("reopen after kill");
        // 1. acknowledged state, except the task the in-flight op touched
        let uncertain = in_flight.as_ref().map(|(_, n)| *n);
        for (&n, &state) in &model {
            if Some(n) == uncertain {
                continue;
            }
            let got = observed(&backend, n).await;
            assert_eq!(
                state_of(n, &got),
                state,
                "round {round}: task-{n} lost an acknowledged write"
            );
        }
        // the in-flight write: before or after, nothing else
        if let Some((op, n)) = &in_flight {
            let got = state_of(*n, &observed(&backend, *n).await);
            let before = model.get(n).copied().unwrap_or(State::Deleted);
            let mut after = model.clone();
            apply(&mut after, op, *n);
            assert!(
                got == before || got == after[n],
                "round {round}: task-{n} is {got:?}, neither before nor after {op}"
            );
            model.insert(*n, got);
        }
        // 2. every document decodes, and its terms are indexed
        let mut request = ScanRequest::first(ScanOrder::Key, 500);
        let mut docs = 0;
        loop {
            let page = backend
                .scan(NS, request.clone())
                .await
                .expect("scan after crash");
            for (key, doc) in &page.entries {
                let task: AgentTask = serde_json::from_slice(&doc.value)
                    .unwrap_or_else(|e| panic!("round {round}: {key} half-written: {e}"));
                for rid in task.request_ids() {
                    let hits = backend.lookup(NS, REQUEST_INDEX, rid).await.unwrap();
                    assert!(
                        hits.contains(key),
                        "round {round}: {rid} of {key} is not indexed"
                    );
                }
                docs += 1;
            }
            match page.cursor {
                Some(c) => request.cursor = Some(c),
                None => break,
            }
        }
        let live = model.values().filter(|s| **s != State::Deleted).count();
        assert_eq!(docs, live, "round {round}: documents that no write created");
        // 3. every index entry points at a document that carries its term
        for &n in model.keys() {
            for state in [State::Created, State::Updated] {
                for rid in request_ids(n, state) {
                    for key in backend.lookup(NS, REQUEST_INDEX, &rid).await.unwrap() {
                        let doc = backend.get(NS, &key).await.unwrap().unwrap_or_else(|| {
                            panic!("round {round}: index entry {rid} points at missing {key}")
                        });
                        let task: AgentTask = serde_json::from_slice(&doc.value).unwrap();
                        assert!(
                            task.has_request_id(&rid),
                            "round {round}: stale index entry {rid} -> {key}"
                        );
                    }
                }
            }
        }
        drop(backend);
    }
    assert!(
        total_acked >= rounds as usize * 2,
        "too few writes to mean anything: {total_acked}"
    );
    eprintln!(
        "crash test: {rounds} SIGKILLs, {total_acked} acknowledged writes, {} tasks checked, {:.1} s",
        model.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the crash test must stay under 2 minutes"
    );
}

fn task(n: u64, request_ids: &[String]) -> AgentTask {
    let now = Timestamp::now();
    let id = format!("task-{n}");
    let items = request_ids
        .iter()
        .map(|rid| AgentTaskItem {
            task_id: id.clone(),
            request_id: rid.clone(),
            role: Role::User,
            item: MultiModalItem {
                content_type: ContentType::Text,
                content: format!("message for {rid} {}", "x".repeat(200)),
            },
            updated: now,
            pending_tool_calls: None,
            chat_history: None,
        })
        .collect();
    AgentTask {
        task_id: id,
        session_id: "crash-test".into(),
        user_id: "writer".into(),
        items,
        created_at: now,
        last_updated: now,
        status: TaskStatus::Running,
    }
}

fn say(line: String) {
    crate::writer_process::say(&line);
}

/// The variable that turns the test process into the writer: `FIRST DB_DIR`.
const WRITER_VARIABLE: &str = "TA_CRASH_TEST_WRITER";

/// The writer: writes until killed, acknowledging on stderr (the test
/// harness owns stdout).
async fn write_until_killed(store: TaskStore, first: u64) -> ! {
    for n in first.. {
        say(format!("begin create {n}"));
        store
            .create(&task(n, &[format!("r{n}-a"), format!("r{n}-b")]))
            .await
            .expect("create");
        say(format!("ack create {n}"));
        if n % 3 == 2 && n > first {
            let m = n - 1;
            say(format!("begin update {m}"));
            store
                .update(&task(m, &[format!("r{m}-u"), format!("r{m}-b")]))
                .await
                .expect("update");
            say(format!("ack update {m}"));
        }
        if n % 5 == 4 && n >= first + 3 {
            let m = n - 3;
            say(format!("begin delete {m}"));
            store.delete(&format!("task-{m}")).await.expect("delete");
            say(format!("ack delete {m}"));
        }
    }
    unreachable!("task numbers ran out")
}
