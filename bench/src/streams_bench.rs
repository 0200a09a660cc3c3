//! `--streams memory|redis`: run event streams against the simplest thing
//! doing the same work, in one run, interleaved, medians of rounds.
//!
//! - appends/s through the contract against the raw engine (`XADD` of the
//!   same bytes on the same kind of connection; a `tokio::sync::broadcast`
//!   send in memory);
//! - delivery latency from append to each of 8 subscribers at a fixed rate
//!   (5,000 events/s), p50 and p99;
//! - memory: fan-out of a burst to 8 subscribers against broadcast.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use persistence_core::streams::{Item, MemoryStreams, Retention, SharedStreams, StartAt};
use serde_json::json;

use persistence_cli::report::{right, table, thousands};

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// `MemoryStreams` against `tokio::sync::broadcast`.
    Memory,
    /// `RedisStreams` against raw `XADD` (a redis-server the bench starts).
    Redis,
}

const SUBSCRIBERS: usize = 8;
const RATE: u64 = 5_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

fn stream_name(what: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "bench-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Appends/s through the contract, `n` events, `concurrency` at a time.
async fn contract_appends(s: &SharedStreams, n: usize, concurrency: usize) -> f64 {
    let stream = stream_name("append");
    let payload = bytes::Bytes::from(vec![b'x'; 200]);
    let started = Instant::now();
    let per = n / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (s, stream, payload) = (s.clone(), stream.clone(), payload.clone());
            tokio::spawn(async move {
                for _ in 0..per {
                    s.append(&stream, payload.clone()).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("appender");
    }
    let rate = (per * concurrency) as f64 / started.elapsed().as_secs_f64();
    s.delete(&stream).await.expect("delete");
    rate
}

/// The same through the raw engine.
async fn raw_appends(raw: &Raw, n: usize, concurrency: usize) -> f64 {
    let payload = vec![b'x'; 200];
    let per = n / concurrency;
    let started = Instant::now();
    match raw {
        Raw::Redis(con) => {
            let key = format!("bench:raw:{}", stream_name("xadd"));
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (mut con, key, payload) = (con.clone(), key.clone(), payload.clone());
                    tokio::spawn(async move {
                        for _ in 0..per {
                            let _: String = redis::cmd("XADD")
                                .arg(&key)
                                .arg("MAXLEN")
                                .arg(10_000)
                                .arg("*")
                                .arg("d")
                                .arg(&payload)
                                .query_async(&mut con)
                                .await
                                .expect("XADD");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("appender");
            }
            let rate = (per * concurrency) as f64 / started.elapsed().as_secs_f64();
            let mut con = con.clone();
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .expect("DEL");
            rate
        }
        Raw::Broadcast => {
            let (tx, _rx) = tokio::sync::broadcast::channel::<bytes::Bytes>(10_000);
            let tx = Arc::new(tx);
            let payload = bytes::Bytes::from(payload);
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (tx, payload) = (tx.clone(), payload.clone());
                    tokio::spawn(async move {
                        for _ in 0..per {
                            let _ = tx.send(payload.clone());
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("sender");
            }
            (per * concurrency) as f64 / started.elapsed().as_secs_f64()
        }
    }
}

enum Raw {
    Redis(redis::aio::MultiplexedConnection),
    Broadcast,
}

/// Latency from append to delivery at each of 8 subscribers, appending
/// `events` at `RATE` per second; (p50, p99) in ms.
async fn delivery(s: &SharedStreams, events: usize) -> (f64, f64) {
    let stream = stream_name("latency");
    let base = Instant::now();
    let subs: Vec<_> = futures::future::join_all(
        (0..SUBSCRIBERS).map(|_| s.subscribe(&stream, StartAt::Beginning)),
    )
    .await
    .into_iter()
    .map(|r| r.expect("subscribe"))
    .collect();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(events);
                while let Some(item) = sub.next().await {
                    match item {
                        Ok(Item::Event(e)) => {
                            let sent = u64::from_le_bytes(e.data[..8].try_into().expect("8 bytes"));
                            let now = base.elapsed().as_nanos() as u64;
                            lat.push(now.saturating_sub(sent) as f64 / 1e6);
                        }
                        Ok(Item::End(_)) => break,
                        Err(_) => {}
                    }
                }
                lat
            })
        })
        .collect();
    let interval = Duration::from_nanos(1_000_000_000 / RATE);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..events {
        tick.tick().await;
        let mut data = (base.elapsed().as_nanos() as u64).to_le_bytes().to_vec();
        data.extend_from_slice(&[b'x'; 192]);
        s.append(&stream, data.into()).await.expect("append");
    }
    s.close(&stream, "done").await.expect("close");
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.expect("reader"));
    }
    assert_eq!(
        all.len(),
        events * SUBSCRIBERS,
        "every event at every subscriber"
    );
    s.delete(&stream).await.expect("delete");
    (percentile(&mut all, 0.5), percentile(&mut all, 0.99))
}

/// Memory: a burst of `n` events delivered to 8 subscribers, events/s per
/// subscriber, through the contract and through broadcast.
async fn fan_out(s: &SharedStreams, n: usize) -> (f64, f64) {
    let stream = stream_name("fanout");
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subs.push(
            s.subscribe(&stream, StartAt::Beginning)
                .await
                .expect("subscribe"),
        );
    }
    let started = Instant::now();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            tokio::spawn(async move {
                let mut k = 0;
                loop {
                    match sub.next().await {
                        Some(Ok(Item::Event(_))) => k += 1,
                        Some(Ok(Item::End(_))) | None => return k,
                        Some(Err(e)) => panic!("fan-out subscriber failed after {k} events: {e}"),
                    }
                }
            })
        })
        .collect();
    for _ in 0..n {
        s.append(&stream, bytes::Bytes::from_static(&[b'x'; 200]))
            .await
            .expect("append");
    }
    s.close(&stream, "done").await.expect("close");
    for r in readers {
        assert_eq!(r.await.expect("reader"), n);
    }
    let contract = n as f64 / started.elapsed().as_secs_f64();
    s.delete(&stream).await.expect("delete");
    let (tx, _) = tokio::sync::broadcast::channel::<bytes::Bytes>(n + 1);
    let rxs: Vec<_> = (0..SUBSCRIBERS).map(|_| tx.subscribe()).collect();
    let started = Instant::now();
    let readers: Vec<_> = rxs
        .into_iter()
        .map(|mut rx| {
            tokio::spawn(async move {
                let mut k = 0;
                while rx.recv().await.is_ok() {
                    k += 1;
                }
                k
            })
        })
        .collect();
    for _ in 0..n {
        let _ = tx.send(bytes::Bytes::from_static(&[b'x'; 200]));
    }
    drop(tx);
    for r in readers {
        assert_eq!(r.await.expect("reader"), n);
    }
    (contract, n as f64 / started.elapsed().as_secs_f64())
}

/// Runs the streams benchmark on `engine`.
pub async fn run(
    engine: Engine,
    events: usize,
    rounds: usize,
    redis_url: Option<&str>,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut _server = None;
    let (streams, raw): (SharedStreams, Raw) = match engine {
        Engine::Memory => (
            // room for a whole burst: the fan-out measures delivery, not retention
            Arc::new(MemoryStreams::new(Retention {
                max_len: events as u64 * 2,
                max_age: None,
            })),
            Raw::Broadcast,
        ),
        Engine::Redis => {
            let url = match redis_url {
                Some(url) => url.to_string(),
                None => {
                    let server = redis_test_server::RedisServer::start();
                    let url = server.url();
                    _server = Some(server);
                    url
                }
            };
            let mut options = persistence_redis::RedisOptions::new("unused", 0);
            options.url = Some(persistence_core::config::Secret::new(&url));
            options.prefix = "bench:streams".into();
            let backend = persistence_redis::RedisBackend::connect(options).await?;
            let con = redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            (
                Arc::new(backend.streams(Retention::default())),
                Raw::Redis(con),
            )
        }
    };
    let mut rows = Vec::new();
    for concurrency in [1usize, 32] {
        let (mut store, mut base, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds.max(1) {
            // interleaved, and the side that goes first alternates
            let (a, b) = if round % 2 == 0 {
                let a = contract_appends(&streams, events, concurrency).await;
                (a, raw_appends(&raw, events, concurrency).await)
            } else {
                let b = raw_appends(&raw, events, concurrency).await;
                (contract_appends(&streams, events, concurrency).await, b)
            };
            ratios.push(a / b);
            store.push(a);
            base.push(b);
        }
        rows.push((
            format!("append, {concurrency} at a time"),
            median(store),
            median(base),
            median(ratios),
        ));
    }
    let latency = delivery(&streams, (RATE * 2) as usize).await;
    let fan = if engine == Engine::Memory {
        Some(fan_out(&streams, events).await)
    } else {
        None
    };
    let baseline = match engine {
        Engine::Memory => "tokio::sync::broadcast",
        Engine::Redis => "raw XADD of the same bytes on a multiplexed connection",
    };
    if json {
        let out = json!({
            "engine": format!("{engine:?}").to_lowercase(),
            "baseline": baseline,
            "events": events,
            "rounds": rounds,
            "appends": rows.iter().map(|(mode, s, b, r)| json!({"mode": mode, "store_per_sec": s, "baseline_per_sec": b, "ratio": r})).collect::<Vec<_>>(),
            "delivery_ms": {"rate_per_sec": RATE, "subscribers": SUBSCRIBERS, "p50": latency.0, "p99": latency.1},
            "fan_out_per_sec": fan.map(|(c, b)| json!({"store": c, "broadcast": b, "ratio": c / b})),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "run event streams on {engine:?} vs {baseline}; {events} events of 200 bytes per round, median of {} rounds",
        rounds.max(1)
    );
    let mut t = table(&["mode", "store events/s", "baseline events/s", "ratio"]);
    for (mode, s, b, r) in &rows {
        t.add_row(vec![
            mode.clone().into(),
            right(thousands(*s)),
            right(thousands(*b)),
            right(format!("{r:.2}")),
        ]);
    }
    println!("{t}");
    println!(
        "delivery from append to each of {SUBSCRIBERS} subscribers at {RATE} events/s for 2 s: p50 {:.2} ms, p99 {:.2} ms",
        latency.0, latency.1
    );
    if let Some((c, b)) = fan {
        println!(
            "fan-out of a {events}-event burst to {SUBSCRIBERS} subscribers: {} events/s through the contract, {} through broadcast ({:.2})",
            thousands(c),
            thousands(b),
            c / b
        );
    }
    Ok(ExitCode::SUCCESS)
}
