//! Redis killed (SIGKILL) and restarted, append-only with fsync always,
//! while an appender and three subscribers run: every event acknowledged by
//! `append` is delivered to every subscriber exactly once, in order; the
//! subscribers resume from their last offset on their own.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use persistence_core::streams::{EventStreams, Item, Offset, Retention, StartAt};
use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_reach_every_subscriber_once_across_a_redis_crash() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut options = RedisOptions::new("127.0.0.1", server.port());
    options.prefix = "fault".into();
    let backend = RedisBackend::connect(options).await.unwrap();
    let streams = Arc::new(backend.streams(Retention::default()));
    let stream = "run:fault";
    // subscribers: skip the errors the outage yields, keep going
    let subscribers: Vec<_> = (0..3)
        .map(|_| {
            let s = streams.clone();
            tokio::spawn(async move {
                let mut sub = s.subscribe(stream, StartAt::Beginning).await.unwrap();
                let (mut got, mut errors) = (Vec::<(Offset, String)>::new(), 0);
                loop {
                    match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                        Ok(Some(Ok(Item::Event(e)))) => {
                            got.push((e.offset, String::from_utf8(e.data.to_vec()).unwrap()))
                        }
                        Ok(Some(Ok(Item::End(reason)))) => return (got, errors, reason),
                        Ok(Some(Err(_))) => errors += 1,
                        Ok(None) => panic!("the subscription finished without an end"),
                        Err(_) => panic!("no event for 30 s after {} events", got.len()),
                    }
                }
            })
        })
        .collect();
    // the appender: a fresh payload per attempt; acknowledged ones recorded
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (s, acked, stop) = (streams.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut attempt = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                attempt += 1;
                let payload = format!("e{attempt}");
                match s.append(stream, payload.clone().into()).await {
                    Ok(_) => acked.lock().unwrap().push(payload),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = acked.lock().unwrap().len();
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    // appends work again, then stop and close
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < before + 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "appends did not resume after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    appender.await.unwrap();
    let mut closed = false;
    for _ in 0..100 {
        if streams.close(stream, "success").await.is_ok() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "close failed after the restart");
    let acked = acked.lock().unwrap().clone();
    let stored: Vec<String> = streams
        .read(stream, Offset::START, 1_000_000)
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| String::from_utf8(e.data.to_vec()).unwrap())
        .collect();
    for (k, sub) in subscribers.into_iter().enumerate() {
        let (got, errors, end) = sub.await.unwrap();
        assert_eq!(end, "success");
        let offsets: Vec<Offset> = got.iter().map(|(o, _)| *o).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "subscriber {k}: out of order or duplicated"
        );
        let data: Vec<String> = got.into_iter().map(|(_, d)| d).collect();
        assert_eq!(
            data, stored,
            "subscriber {k}: not exactly what the stream holds"
        );
        let delivered: BTreeSet<&String> = data.iter().collect();
        let lost: Vec<&String> = acked.iter().filter(|a| !delivered.contains(a)).collect();
        assert!(
            lost.is_empty(),
            "subscriber {k}: acknowledged events lost: {lost:?}"
        );
        eprintln!(
            "subscriber {k}: {} events, {errors} errors during the outage",
            data.len()
        );
    }
    eprintln!(
        "{} acknowledged ({} before the crash), {} stored",
        acked.len(),
        before,
        stored.len()
    );
}
