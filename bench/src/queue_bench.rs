//! `--queue memory|redis`: jobs/s through enqueue → claim → complete with
//! 1 and 16 workers, against raw ceilings in the same run, interleaved,
//! medians of rounds.
//!
//! - Redis: the seed's own `LPUSH` + `BRPOP` per job (at-most-once, no
//!   lease), and raw `XADD` + `XREADGROUP` + `XACK` (a consumer group,
//!   at-least-once without fencing), each worker on a connection of its own;
//! - memory: a bare `tokio::sync::mpsc` channel plus a `HashMap` of leases.
//!
//! Every side runs 8 producers and W workers until every job is done.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use persistence_core::queue::{MemoryQueue, NewJob, QueueOptions, SharedQueue};
use serde_json::json;

use persistence_cli::report::{right, table, thousands};

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// `MemoryQueue` against mpsc + a lease map.
    Memory,
    /// `RedisQueue` against LPUSH/BRPOP and XADD/XREADGROUP/XACK (a
    /// redis-server the bench starts, or --redis-url).
    Redis,
}

const PRODUCERS: usize = 8;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fresh(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "bench-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `producer(i)` for each of 8 producers and `worker(w)` for each of
/// `workers` workers until `done` reaches `jobs`; jobs/s.
async fn drive<P, PF, W, WF>(jobs: usize, workers: usize, producer: P, worker: W) -> f64
where
    P: Fn(usize, usize) -> PF,
    PF: std::future::Future<Output = ()> + Send + 'static,
    W: Fn(usize, Arc<AtomicUsize>) -> WF,
    WF: std::future::Future<Output = ()> + Send + 'static,
{
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let per = jobs / PRODUCERS;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|i| tokio::spawn(producer(i * per, per)))
        .collect();
    let workers: Vec<_> = (0..workers)
        .map(|w| tokio::spawn(worker(w, done.clone())))
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(
        done.load(Ordering::SeqCst),
        per * PRODUCERS,
        "every job once"
    );
    (per * PRODUCERS) as f64 / started.elapsed().as_secs_f64()
}

async fn contract(q: SharedQueue, jobs: usize, workers: usize) -> f64 {
    let total = jobs / PRODUCERS * PRODUCERS;
    let producer = |first: usize, n: usize| {
        let q = q.clone();
        async move {
            for k in first..first + n {
                q.enqueue(NewJob::new(format!("job-{k}"), &b"{\"run\":1}"[..]))
                    .await
                    .expect("enqueue");
            }
        }
    };
    let worker = |w: usize, done: Arc<AtomicUsize>| {
        let q = q.clone();
        async move {
            let id = format!("w{w}");
            while done.load(Ordering::SeqCst) < total {
                let claimed = q
                    .claim(&id, Duration::from_secs(60), Duration::from_millis(20))
                    .await
                    .expect("claim");
                if let Some(lease) = claimed {
                    q.complete(&lease, None).await.expect("complete");
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    drive(jobs, workers, producer, worker).await
}

async fn mpsc_baseline(jobs: usize, workers: usize) -> f64 {
    let total = jobs / PRODUCERS * PRODUCERS;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(String, bytes::Bytes)>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let leases: Arc<parking_lot::Mutex<HashMap<String, usize>>> = Arc::default();
    let producer = |first: usize, n: usize| {
        let tx = tx.clone();
        async move {
            for k in first..first + n {
                let _ = tx.send((
                    format!("job-{k}"),
                    bytes::Bytes::from_static(b"{\"run\":1}"),
                ));
                tokio::task::yield_now().await;
            }
        }
    };
    let worker = |w: usize, done: Arc<AtomicUsize>| {
        let (rx, leases) = (rx.clone(), leases.clone());
        async move {
            while done.load(Ordering::SeqCst) < total {
                let next = {
                    let mut rx = rx.lock().await;
                    tokio::time::timeout(Duration::from_millis(20), rx.recv()).await
                };
                if let Ok(Some((id, _payload))) = next {
                    leases.lock().insert(id.clone(), w);
                    leases.lock().remove(&id);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    drive(jobs, workers, producer, worker).await
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

async fn list_baseline(url: &str, jobs: usize, workers: usize) -> f64 {
    let total = jobs / PRODUCERS * PRODUCERS;
    let key = fresh("list");
    let shared = connection(url).await;
    let mut cons = Vec::new();
    for _ in 0..workers {
        cons.push(connection(url).await);
    }
    let producer = |first: usize, n: usize| {
        let (mut con, key) = (shared.clone(), key.clone());
        async move {
            for k in first..first + n {
                let job = format!("{{\"id\":\"job-{k}\",\"run\":1}}");
                let _: i64 = redis::cmd("LPUSH")
                    .arg(&key)
                    .arg(job)
                    .query_async(&mut con)
                    .await
                    .expect("LPUSH");
            }
        }
    };
    let worker = |w: usize, done: Arc<AtomicUsize>| {
        let (mut con, key) = (cons[w].clone(), key.clone());
        async move {
            while done.load(Ordering::SeqCst) < total {
                let got: Option<(String, String)> = redis::cmd("BRPOP")
                    .arg(&key)
                    .arg(0.02)
                    .query_async(&mut con)
                    .await
                    .expect("BRPOP");
                if got.is_some() {
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    drive(jobs, workers, producer, worker).await
}

async fn stream_baseline(url: &str, jobs: usize, workers: usize) -> f64 {
    let total = jobs / PRODUCERS * PRODUCERS;
    let key = fresh("stream");
    let mut shared = connection(url).await;
    let _: String = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("workers")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut shared)
        .await
        .expect("XGROUP CREATE");
    let mut cons = Vec::new();
    for _ in 0..workers {
        cons.push(connection(url).await);
    }
    let producer = |first: usize, n: usize| {
        let (mut con, key) = (shared.clone(), key.clone());
        async move {
            for k in first..first + n {
                let _: String = redis::cmd("XADD")
                    .arg(&key)
                    .arg("*")
                    .arg("id")
                    .arg(format!("job-{k}"))
                    .arg("d")
                    .arg("{\"run\":1}")
                    .query_async(&mut con)
                    .await
                    .expect("XADD");
            }
        }
    };
    let worker = |w: usize, done: Arc<AtomicUsize>| {
        let (mut con, key) = (cons[w].clone(), key.clone());
        async move {
            type Reply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;
            while done.load(Ordering::SeqCst) < total {
                let got: Reply = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("workers")
                    .arg(format!("w{w}"))
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(20)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(">")
                    .query_async(&mut con)
                    .await
                    .expect("XREADGROUP");
                for (_, entries) in got.unwrap_or_default() {
                    for (id, _) in entries {
                        let _: i64 = redis::cmd("XACK")
                            .arg(&key)
                            .arg("workers")
                            .arg(&id)
                            .query_async(&mut con)
                            .await
                            .expect("XACK");
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    };
    let rate = drive(jobs, workers, producer, worker).await;
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut shared)
        .await
        .expect("DEL");
    rate
}

/// Runs the queue benchmark on `engine`.
pub async fn run(
    engine: Engine,
    jobs: usize,
    rounds: usize,
    redis_url: Option<&str>,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut _server = None;
    let url = match (engine, redis_url) {
        (Engine::Memory, _) => None,
        (Engine::Redis, Some(url)) => Some(url.to_string()),
        (Engine::Redis, None) => {
            let server = redis_test_server::RedisServer::start();
            let url = server.url();
            _server = Some(server);
            Some(url)
        }
    };
    let backend = match &url {
        Some(url) => {
            let mut options = persistence_redis::RedisOptions::new("unused", 0);
            options.url = Some(persistence_core::config::Secret::new(url));
            options.prefix = "bench:queue".into();
            Some(persistence_redis::RedisBackend::connect(options).await?)
        }
        None => None,
    };
    let open = || -> SharedQueue {
        let options = QueueOptions {
            retain_ended: Duration::from_secs(60),
            ..QueueOptions::default()
        };
        match &backend {
            Some(b) => Arc::new(b.queue(&fresh("queue"), options)),
            None => Arc::new(MemoryQueue::new(options)),
        }
    };
    let baselines: Vec<&str> = match engine {
        Engine::Memory => vec!["mpsc + lease map"],
        Engine::Redis => vec!["LPUSH + BRPOP", "XADD + XREADGROUP + XACK"],
    };
    let mut rows = Vec::new();
    for workers in [1usize, 16] {
        let mut store = Vec::new();
        let mut base: Vec<Vec<f64>> = vec![Vec::new(); baselines.len()];
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); baselines.len()];
        for round in 0..rounds.max(1) {
            let measure_base = |k: usize| {
                let url = url.clone();
                async move {
                    match (engine, k) {
                        (Engine::Memory, _) => mpsc_baseline(jobs, workers).await,
                        (Engine::Redis, 0) => {
                            list_baseline(url.as_deref().unwrap(), jobs, workers).await
                        }
                        (Engine::Redis, _) => {
                            stream_baseline(url.as_deref().unwrap(), jobs, workers).await
                        }
                    }
                }
            };
            // interleaved, and the side that goes first alternates
            let mut b = Vec::new();
            let s = if round % 2 == 0 {
                let s = contract(open(), jobs, workers).await;
                for k in 0..baselines.len() {
                    b.push(measure_base(k).await);
                }
                s
            } else {
                for k in 0..baselines.len() {
                    b.push(measure_base(k).await);
                }
                contract(open(), jobs, workers).await
            };
            for (k, v) in b.into_iter().enumerate() {
                ratios[k].push(s / v);
                base[k].push(v);
            }
            store.push(s);
        }
        rows.push((
            workers,
            median(store),
            base.into_iter().map(median).collect::<Vec<_>>(),
            ratios.into_iter().map(median).collect::<Vec<_>>(),
        ));
    }
    if json {
        let out = json!({
            "engine": format!("{engine:?}").to_lowercase(),
            "jobs": jobs,
            "rounds": rounds,
            "producers": PRODUCERS,
            "rows": rows.iter().map(|(w, s, b, r)| json!({
                "workers": w,
                "store_jobs_per_sec": s,
                "baselines": baselines.iter().zip(b).zip(r).map(|((name, b), r)| json!({"baseline": name, "jobs_per_sec": b, "ratio": r})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "run queue on {engine:?}: {jobs} jobs per round through enqueue -> claim -> complete, {PRODUCERS} producers, median of {} rounds",
        rounds.max(1)
    );
    let mut header = vec!["workers".to_string(), "queue jobs/s".to_string()];
    for b in &baselines {
        header.push(format!("{b} jobs/s"));
        header.push(format!("ratio to {b}"));
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = table(&header);
    for (w, s, b, r) in &rows {
        let mut row = vec![right(w.to_string()), right(thousands(*s))];
        for (b, r) in b.iter().zip(r) {
            row.push(right(thousands(*b)));
            row.push(right(format!("{r:.2}")));
        }
        t.add_row(row);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
