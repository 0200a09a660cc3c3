//! The stream conformance cases on Redis Streams: a single server and a
//! 3-master cluster started by the test, each case under its own prefix.

use std::sync::LazyLock;

use redis_test_server::{RedisCluster, RedisServer};

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);
static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(|| RedisCluster::start(3));

fn prefix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("streams{}", N.fetch_add(1, Ordering::Relaxed))
}

mod single {
    persistence_conformance::stream_conformance_tests!(|retention| async move {
        let mut options = persistence_redis::RedisOptions::new("127.0.0.1", super::SERVER.port());
        options.prefix = super::prefix();
        let backend = persistence_redis::RedisBackend::connect(options)
            .await
            .expect("connect");
        std::sync::Arc::new(backend.streams(retention)) as persistence_core::streams::SharedStreams
    });
}

mod cluster {
    persistence_conformance::stream_conformance_tests!(|retention| async move {
        let mut options = persistence_redis::RedisOptions::new("unused", 0);
        options.prefix = super::prefix();
        options.cluster_nodes = super::CLUSTER
            .urls()
            .iter()
            .map(|u| u.trim_start_matches("redis://").to_string())
            .collect();
        let backend = persistence_redis::RedisBackend::connect(options)
            .await
            .expect("connect");
        std::sync::Arc::new(backend.streams(retention)) as persistence_core::streams::SharedStreams
    });
}

/// Another OS process appends; this one follows live and gets every event,
/// in order, then the end (the test binary runs itself again as the
/// appender, told by an environment variable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_by_another_process_are_delivered() {
    use futures::StreamExt;
    use persistence_core::streams::{EventStreams, Item, Retention, StartAt};

    let connect = |port: u16, prefix: String| async move {
        let mut options = persistence_redis::RedisOptions::new("127.0.0.1", port);
        options.prefix = prefix;
        persistence_redis::RedisBackend::connect(options)
            .await
            .expect("connect")
            .streams(Retention::default())
    };
    if let Ok(spec) = std::env::var("TA_TEST_STREAM_APPENDER") {
        let mut parts = spec.splitn(3, ' ');
        let port: u16 = parts.next().unwrap().parse().unwrap();
        let prefix = parts.next().unwrap().to_string();
        let stream = parts.next().unwrap();
        let s = connect(port, prefix).await;
        for n in 0..200 {
            s.append(stream, format!("e{n}").into()).await.unwrap();
        }
        s.close(stream, "success").await.unwrap();
        return;
    }
    let prefix = prefix();
    let stream = "run:cross-process";
    let s = connect(SERVER.port(), prefix.clone()).await;
    let mut sub = s.subscribe(stream, StartAt::Beginning).await.unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "events_appended_by_another_process_are_delivered",
            "--exact",
            "--test-threads=1",
        ])
        .env(
            "TA_TEST_STREAM_APPENDER",
            format!("{} {prefix} {stream}", SERVER.port()),
        )
        .stdout(std::process::Stdio::null())
        .status();
    let mut got = Vec::new();
    let end = loop {
        let item = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
            .await
            .expect("an event or the end within 20 s")
            .expect("not finished before the end")
            .unwrap();
        match item {
            Item::Event(e) => got.push(String::from_utf8(e.data.to_vec()).unwrap()),
            Item::End(reason) => break reason,
        }
    };
    assert!(child.unwrap().success(), "the appender process failed");
    let want: Vec<String> = (0..200).map(|n| format!("e{n}")).collect();
    assert_eq!(got, want);
    assert_eq!(end, "success");
}

/// Appends made at the same moment share script calls; each keeps its own
/// offset and its appender's order; a closed stream refuses every one of a
/// batch; a caller that gives up strands no one.
mod batched_appends {
    use std::sync::Arc;
    use std::time::Duration;

    use persistence_core::streams::{Offset, Retention, SharedStreams};
    use persistence_core::ErrorKind;

    async fn engine() -> SharedStreams {
        let mut options = persistence_redis::RedisOptions::new("127.0.0.1", super::SERVER.port());
        options.prefix = super::prefix();
        let backend = persistence_redis::RedisBackend::connect(options)
            .await
            .expect("connect");
        Arc::new(backend.streams(Retention::default()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_calls_and_keep_their_offsets() {
        let s = engine().await;
        // more appenders than a batch holds
        const APPENDERS: usize = 300;
        let tasks: Vec<_> = (0..APPENDERS)
            .map(|a| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for n in 0..4 {
                        let o = s.append("run", format!("{a}-{n}").into()).await.unwrap();
                        mine.push(o);
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            let mine = t.await.unwrap();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "an appender's order");
            all.extend(mine);
        }
        let page = s.read("run", Offset::START, 10_000).await.unwrap();
        let stored: Vec<Offset> = page.events.iter().map(|e| e.offset).collect();
        all.sort();
        assert_eq!(stored, all, "every acknowledged offset is its own event");
        let stats = s.stats();
        let events = (APPENDERS * 4) as u64;
        assert_eq!(stats.counter("events_appended"), events);
        assert!(
            stats.counter("stream_append_calls") < events / 4,
            "appends at the same moment did not share calls: {stats:?}"
        );
        // every event of a batch that meets the close is refused
        s.close("run", "success").await.unwrap();
        let refused: Vec<_> = (0..16)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.append("run", "late".into()).await })
            })
            .collect();
        for r in refused {
            let err = r.await.unwrap().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
        }
        let page = s.read("run", Offset::START, 10_000).await.unwrap();
        assert_eq!(page.events.len() as u64, events);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_gives_up_strands_no_one() {
        let s = engine().await;
        for round in 0..50u64 {
            let stream = format!("giving-up-{round}");
            let first = {
                let (s, stream) = (s.clone(), stream.clone());
                tokio::spawn(async move { s.append(&stream, "first".into()).await })
            };
            let rest: Vec<_> = (0..8)
                .map(|n| {
                    let (s, stream) = (s.clone(), stream.clone());
                    tokio::spawn(async move { s.append(&stream, format!("e{n}").into()).await })
                })
                .collect();
            // give up at different moments: before, during and after the yield
            if round % 3 == 1 {
                tokio::task::yield_now().await;
            }
            if round % 3 == 2 {
                tokio::time::sleep(Duration::from_micros(50 * round)).await;
            }
            first.abort();
            for r in rest {
                tokio::time::timeout(Duration::from_secs(5), r)
                    .await
                    .expect("an append batched with an abandoned one hung")
                    .unwrap()
                    .unwrap();
            }
            let page = s.read(&stream, Offset::START, 100).await.unwrap();
            assert!((8..=9).contains(&page.events.len()), "round {round}");
        }
    }
}
