//! Test support for the crash test (`tests/crash.rs`): writes agent tasks to
//! a sled database with flush-on-write, printing `begin OP N` before and
//! `ack OP N` after each write, until it is killed.
//!
//! Operations, for task numbers N = FIRST, FIRST+1, ...: create N (request
//! ids `rN-a`, `rN-b`); when N % 3 == 2, update N-1 (`r{N-1}-a` becomes
//! `r{N-1}-u`); when N % 5 == 4, delete N-3.

use std::io::Write;
use std::sync::Arc;

use persistence_core::model::{
    AgentTask, AgentTaskItem, ContentType, MultiModalItem, Role, TaskStatus, Timestamp,
};
use persistence_core::{SharedBackend, TaskStore};
use persistence_sled::{SledBackend, SledOptions};

const USAGE: &str = "usage: sled-crash-writer DB_DIR FIRST_TASK_NUMBER

Writes tasks to the sled database in DB_DIR with a flush on every write,
printing `begin OP N` / `ack OP N` around each, until killed. Test support
for the sled crash test.";

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
    let mut out = std::io::stdout().lock();
    // the parent reads these as the acknowledgement protocol
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(3);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") || args.len() != 2 {
        println!("{USAGE}");
        std::process::exit(if args.len() == 2 { 0 } else { 2 });
    }
    let first: u64 = args[1].parse().unwrap_or_else(|_| {
        eprintln!("FIRST_TASK_NUMBER must be a number\n\n{USAGE}");
        std::process::exit(2)
    });
    let options = SledOptions {
        flush_on_write: true,
        ..SledOptions::new(&args[0])
    };
    let backend = SledBackend::open(&options).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let store = TaskStore::new(Arc::new(backend) as SharedBackend);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
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
    });
}
