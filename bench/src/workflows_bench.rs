//! `--workflows`: the workflow store and the crew registry (seeds 001 and
//! 000) on `--store`, per operation, against the same engine's bare
//! contract doing the same reads and writes (same bytes, terms and TTLs,
//! without the store: no JSON work, no transaction, no retention), in the
//! same run, the sides taking slices of each round in turns, medians of
//! rounds; then `count_term` on one index set as it grows, against the
//! length of a lookup of it.

use std::ops::Range;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use persistence_core::backend::{BackendExt, DocumentWrite, Precondition};
use persistence_core::store::{
    CrewDefinition, CrewRegistry, OrchestratorResult, WorkflowInfo, WorkflowStatus, WorkflowStore,
    CREW_ID_INDEX, RESULT_INDEX, RESULT_TERM, STATUS_INDEX, TYPE_INDEX,
};
use persistence_core::SharedBackend;
use serde::Serialize;

use persistence_cli::report::{right, table, Samples};

use crate::bench::Store;

const OPS: [&str; 7] = [
    "create_workflow",
    "update_status",
    "complete_workflow",
    "get_result",
    "recent(20)",
    "add_crew",
    "get_crew_by_id",
];

fn result(id: &str, n: usize) -> OrchestratorResult {
    serde_json::from_value(serde_json::json!({
        "task_id": id, "title": format!("Report {n}"), "status": "completed",
        "agent_results": (0..3).map(|a| serde_json::json!({
            "agent_id": format!("a{a}"), "agent_type": "researcher", "subtask_id": format!("s{a}"),
            "content": "x".repeat(400), "status": "completed", "execution_time": 1.0, "cost": 0.01,
        })).collect::<Vec<_>>(),
        "final_synthesis": "y".repeat(800), "execution_time": 3.0, "total_cost": 0.03,
    }))
    .expect("a result")
}

fn crew(n: usize) -> CrewDefinition {
    serde_json::from_value(serde_json::json!({
        "name": format!("crew-{n}"), "crew_id": format!("id-{n}"), "execution_mode": "sequential",
        "agents": (0..3).map(|a| serde_json::json!({"agent_id": format!("a{a}"), "agent_class": "BasicAgent", "config": {"model": "m"}})).collect::<Vec<_>>(),
    }))
    .expect("a crew")
}

type Latencies = Vec<Samples>;

fn new_latencies() -> Latencies {
    OPS.iter().map(|_| Samples::default()).collect()
}

async fn time<T, E: std::fmt::Debug>(
    lat: &mut Latencies,
    op: usize,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    let start = Instant::now();
    let out = f.await.expect("a benchmarked call failed");
    lat[op].push(start.elapsed());
    out
}

/// How many slices each side's round is cut into, taken in turns, so a
/// burst of noise on this machine falls on both sides alike.
const SLICES: usize = 20;

/// The store side: one workflow store and crew registry for the whole
/// round, so retention trims as often as in one long run.
struct Stores {
    store: WorkflowStore,
    crews: CrewRegistry,
}

/// A slice of a round through the stores: workflows `range` created,
/// started, completed and read; recent(20) after each; as many crews
/// added and found.
async fn stores(side: &Stores, lat: &mut Latencies, round: usize, range: Range<usize>) {
    let (store, crews) = (&side.store, &side.crews);
    for i in range {
        let id = format!("s{round}-{i}");
        let info = WorkflowInfo::new(&id, "swarm", "benchmark");
        time(lat, 0, store.create_workflow(&info)).await;
        time(lat, 1, store.update_status(&id, WorkflowStatus::Running)).await;
        time(lat, 2, store.complete_workflow(&id, &result(&id, i))).await;
        time(lat, 3, store.get_result(&id)).await;
        time(lat, 4, store.recent(20)).await;
        let c = crew(round * 10_000 + i);
        time(lat, 5, crews.add_crew(&c)).await;
        time(lat, 6, crews.get_crew_by_id(&c.crew_id)).await;
    }
}

/// The bare side's namespaces: its own, so the store's retention never
/// trims (and never counts) the bare side's results, and the bare side never
/// grows the store's index sets.
const BARE_WORKFLOWS: &str = "bench_bare_workflow";
const BARE_RESULTS: &str = "bench_bare_workflow_result";
const BARE_CREWS: &str = "bench_bare_crew";

/// The same engine's contract doing the same calls by hand: the bytes
/// made once up front, no transaction, no trimming.
async fn bare(b: &SharedBackend, lat: &mut Latencies, round: usize, range: Range<usize>) {
    let day = Some(Duration::from_secs(86_400));
    let week = Some(Duration::from_secs(7 * 86_400));
    let info_write = |info: &WorkflowInfo| {
        DocumentWrite::new(serde_json::to_vec(info).expect("json"))
            .with_term(STATUS_INDEX, info.status.as_str())
            .with_term(TYPE_INDEX, &info.orchestrator_type)
            .with_ttl(day)
    };
    for i in range {
        let id = format!("b{round}-{i}");
        let mut info = WorkflowInfo::new(&id, "swarm", "benchmark");
        let created = info_write(&info);
        info.status = WorkflowStatus::Running;
        let running = info_write(&info);
        info.status = WorkflowStatus::Completed;
        let completed = info_write(&info);
        let result_bytes = serde_json::to_vec(&result(&id, i)).expect("json");
        let c = crew(1_000_000 + round * 10_000 + i);
        let crew_write = DocumentWrite::new(serde_json::to_vec(&c).expect("json"))
            .with_term(CREW_ID_INDEX, &c.crew_id);
        time(lat, 0, b.insert(BARE_WORKFLOWS, &id, created)).await;
        let start = Instant::now();
        read_then_replace(b, &id, running).await;
        lat[1].push(start.elapsed());
        let start = Instant::now();
        read_then_replace(b, &id, completed).await;
        b.upsert(
            BARE_RESULTS,
            &id,
            DocumentWrite::new(result_bytes)
                .with_term(RESULT_INDEX, RESULT_TERM)
                .with_ttl(week),
        )
        .await
        .expect("put");
        lat[2].push(start.elapsed());
        time(lat, 3, b.get(BARE_RESULTS, &id)).await;
        let newest = persistence_core::backend::ScanRequest::first(
            persistence_core::backend::ScanOrder::NewestFirst,
            20,
        );
        time(lat, 4, b.scan(BARE_RESULTS, newest)).await;
        time(
            lat,
            5,
            b.put(BARE_CREWS, &c.name, crew_write, Precondition::Any),
        )
        .await;
        let start = Instant::now();
        let keys = b
            .lookup(BARE_CREWS, CREW_ID_INDEX, &c.crew_id)
            .await
            .expect("lookup");
        b.get(BARE_CREWS, &keys[0]).await.expect("get");
        lat[6].push(start.elapsed());
    }
}

/// What `update_status` does by hand: read the state, replace it at the
/// version read.
async fn read_then_replace(b: &SharedBackend, id: &str, write: DocumentWrite) {
    let v = b
        .get(BARE_WORKFLOWS, id)
        .await
        .expect("get")
        .expect("there")
        .version;
    b.replace(BARE_WORKFLOWS, id, write, Some(v))
        .await
        .expect("put");
}

/// The sizes of index set `count_term` is measured at.
const COUNT_SIZES: [usize; 3] = [1_000, 10_000, 50_000];
/// Calls timed per side and size.
const COUNT_CALLS: usize = 40;
/// Calls a side makes before the other side's turn.
const COUNT_BLOCK: usize = 10;
/// The namespace the counts are measured in, its own.
const COUNT_NAMESPACE: &str = "bench_count_term";

#[derive(Debug, Serialize)]
struct CountRow {
    members: usize,
    count_term_p50_us: f64,
    count_term_p99_us: f64,
    lookup_len_p50_us: f64,
    ratio_p50: f64,
}

/// `count_term` against the length of a `lookup` (what a backend without
/// its own count answers) on one index set as it grows to each of
/// [`COUNT_SIZES`], a third of its members with a day's TTL (the
/// workflows' own), the two calls in turns of [`COUNT_BLOCK`].
async fn count_by_term(b: &SharedBackend) -> Vec<CountRow> {
    let day = Some(Duration::from_secs(86_400));
    let mut rows = Vec::new();
    let mut written = 0;
    for members in COUNT_SIZES {
        for start in (written..members).step_by(1_000) {
            let puts = (start..(start + 1_000).min(members))
                .map(|i| persistence_core::backend::Put {
                    key: format!("c{i}"),
                    write: DocumentWrite::new(b"{}".to_vec())
                        .with_term(STATUS_INDEX, "active")
                        .with_ttl(if i % 3 == 0 { day } else { None }),
                    precondition: Precondition::Any,
                })
                .collect();
            for r in b.put_many(COUNT_NAMESPACE, puts).await {
                r.expect("put");
            }
        }
        written = members;
        // in turns, a block each: one call after a large lookup pays for
        // the garbage it left in the server's Lua heap
        let (mut counts, mut lookups) = (Samples::default(), Samples::default());
        for _ in 0..COUNT_CALLS / COUNT_BLOCK {
            for _ in 0..COUNT_BLOCK {
                let start = Instant::now();
                let n = b
                    .count_term(COUNT_NAMESPACE, STATUS_INDEX, "active")
                    .await
                    .expect("count_term");
                counts.push(start.elapsed());
                assert_eq!(n, members as u64, "count_term counts every member");
            }
            for _ in 0..COUNT_BLOCK {
                let start = Instant::now();
                let hits = b
                    .lookup(COUNT_NAMESPACE, STATUS_INDEX, "active")
                    .await
                    .expect("lookup");
                lookups.push(start.elapsed());
                assert_eq!(hits.len(), members, "lookup finds every member");
            }
        }
        let (c, l) = (
            counts.summary("count_term", Duration::from_secs(1)),
            lookups.summary("lookup", Duration::from_secs(1)),
        );
        rows.push(CountRow {
            members,
            count_term_p50_us: c.p50_us,
            count_term_p99_us: c.p99_us,
            lookup_len_p50_us: l.p50_us,
            ratio_p50: c.p50_us / l.p50_us.max(f64::MIN_POSITIVE),
        });
    }
    rows
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Debug, Serialize)]
struct Row {
    op: &'static str,
    store_p50_us: f64,
    store_p99_us: f64,
    bare_p50_us: f64,
    bare_p99_us: f64,
    overhead_p50_us: f64,
    ratio_p50: f64,
}

/// Measures `rounds` rounds of `n` workflows on `store`'s engine.
pub async fn run(
    store: Store,
    backend: SharedBackend,
    n: usize,
    rounds: usize,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let n = n.clamp(1, 2_000);
    let mut per_op: Vec<[Vec<f64>; 4]> = OPS.iter().map(|_| Default::default()).collect();
    for round in 0..rounds {
        if !json {
            eprintln!(
                "round {}/{rounds}: {n} workflows and crews per side...",
                round + 1
            );
        }
        // the sides take slices in turns, and the side that goes first
        // alternates
        let side = Stores {
            store: WorkflowStore::new(backend.clone()),
            crews: CrewRegistry::new(backend.clone()),
        };
        let (mut s, mut b) = (new_latencies(), new_latencies());
        let chunk = n.div_ceil(SLICES);
        for (k, start) in (0..n).step_by(chunk).enumerate() {
            let range = start..(start + chunk).min(n);
            if (round + k) % 2 == 0 {
                stores(&side, &mut s, round, range.clone()).await;
                bare(&backend, &mut b, round, range).await;
            } else {
                bare(&backend, &mut b, round, range.clone()).await;
                stores(&side, &mut s, round, range).await;
            }
        }
        for (i, (s, b)) in s.into_iter().zip(b).enumerate() {
            let (s, b) = (
                s.summary(OPS[i], Duration::from_secs(1)),
                b.summary(OPS[i], Duration::from_secs(1)),
            );
            per_op[i][0].push(s.p50_us);
            per_op[i][1].push(s.p99_us);
            per_op[i][2].push(b.p50_us);
            per_op[i][3].push(b.p99_us);
        }
    }
    let rows: Vec<Row> = per_op
        .into_iter()
        .enumerate()
        .map(|(i, [sp50, sp99, bp50, bp99])| {
            let (sp50, sp99, bp50, bp99) = (median(sp50), median(sp99), median(bp50), median(bp99));
            Row {
                op: OPS[i],
                store_p50_us: sp50,
                store_p99_us: sp99,
                bare_p50_us: bp50,
                bare_p99_us: bp99,
                overhead_p50_us: sp50 - bp50,
                ratio_p50: sp50 / bp50.max(f64::MIN_POSITIVE),
            }
        })
        .collect();
    if !json {
        eprintln!(
            "count_term at {} members...",
            COUNT_SIZES.map(|m| m.to_string()).join(", ")
        );
    }
    let counts = count_by_term(&backend).await;
    if json {
        let out = serde_json::json!({"store": format!("{store:?}").to_lowercase(), "workflows_per_round": n, "rounds": rounds, "operations": rows, "count_term": counts});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "workflow store and crew registry on {store:?}: {n} per round, medians of {rounds} rounds, against the bare contract"
    );
    let mut t = table(&[
        "operation",
        "store p50 µs",
        "store p99 µs",
        "bare p50 µs",
        "bare p99 µs",
        "overhead p50 µs",
        "ratio",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.op.into(),
            right(format!("{:.1}", r.store_p50_us)),
            right(format!("{:.1}", r.store_p99_us)),
            right(format!("{:.1}", r.bare_p50_us)),
            right(format!("{:.1}", r.bare_p99_us)),
            right(format!("{:.1}", r.overhead_p50_us)),
            right(format!("{:.2}", r.ratio_p50)),
        ]);
    }
    println!("{t}");
    println!(
        "\ncount_term on one index set ({COUNT_CALLS} calls per size), against the length of a lookup of it"
    );
    let mut t = table(&[
        "members",
        "count_term p50 µs",
        "count_term p99 µs",
        "lookup p50 µs",
        "ratio",
    ]);
    for r in &counts {
        t.add_row(vec![
            right(r.members.to_string()),
            right(format!("{:.1}", r.count_term_p50_us)),
            right(format!("{:.1}", r.count_term_p99_us)),
            right(format!("{:.1}", r.lookup_len_p50_us)),
            right(format!("{:.3}", r.ratio_p50)),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
