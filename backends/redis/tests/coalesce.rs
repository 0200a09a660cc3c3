//! Concurrent plain commands share writes to the socket (the connection's
//! coalescing, `src/coalesce.rs`), against a real redis-server: each
//! caller gets its own reply or its own error, the server reads far fewer
//! times than there are commands, and a connection whose runtime is gone
//! answers with an error instead of leaving its callers waiting.

use std::sync::Arc;
use std::time::Duration;

use persistence_core::backend::{Backend, DocumentWrite, Precondition};
use persistence_core::ErrorKind;
use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

const CALLERS: usize = 400;

async fn reads_processed(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_reads_processed:"))
        .expect("INFO stats has total_reads_processed")
        .trim()
        .parse()
        .unwrap()
}

/// 400 tasks read at once: every one gets its own document, the keys
/// holding something that is not a string fail alone (the server's error
/// for that command, not for the batch), and the server sees the reads in
/// far fewer socket reads than commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_share_writes_and_keep_their_own_replies() {
    let server = RedisServer::start();
    let backend = Arc::new(
        RedisBackend::connect(RedisOptions::new("127.0.0.1", server.port()))
            .await
            .unwrap(),
    );
    let ns = "coalesce";
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    for i in 0..CALLERS {
        if i % 10 == 7 {
            // a hash where a document should be: GET answers WRONGTYPE
            let _: () = redis::cmd("HSET")
                .arg(backend.layout().doc(ns, &format!("k{i}")))
                .arg("f")
                .arg("v")
                .query_async(&mut raw)
                .await
                .unwrap();
        } else {
            backend
                .put(
                    ns,
                    &format!("k{i}"),
                    DocumentWrite::new(format!("value {i}").into_bytes()),
                    Precondition::Absent,
                )
                .await
                .unwrap();
        }
    }
    let before = reads_processed(&mut raw).await;
    let start = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let calls: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (backend, start) = (backend.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                (i, backend.get_value(ns, &format!("k{i}")).await)
            })
        })
        .collect();
    for call in calls {
        let (i, got) = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("every read answers")
            .unwrap();
        if i % 10 == 7 {
            let e = got.expect_err("GET of a hash fails");
            assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
            assert!(e.to_string().contains("WRONGTYPE"), "{e}");
        } else {
            let value = got.unwrap().expect("the document is there");
            assert_eq!(&value[..], format!("value {i}").as_bytes());
        }
    }
    // the INFO commands themselves are two reads
    let reads = reads_processed(&mut raw).await - before;
    assert!(
        reads < CALLERS as u64 / 10,
        "{CALLERS} concurrent GETs took {reads} socket reads on the server"
    );
}

/// A connection made on a runtime that has shut down: its coalescing task
/// is gone, and calls from another runtime, alone or many at once, end
/// (with an error, or with the value if the connection manages to go on)
/// instead of waiting forever.
#[test]
fn a_connection_whose_runtime_is_gone_answers_its_callers() {
    let server = RedisServer::start();
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut options = RedisOptions::new("127.0.0.1", server.port());
    options.command_timeout = Duration::from_millis(500);
    options.connect_timeout = Duration::from_millis(500);
    let backend = Arc::new(first.block_on(RedisBackend::connect(options)).unwrap());
    first
        .block_on(backend.put(
            "gone",
            "k",
            DocumentWrite::new(b"v".to_vec()),
            Precondition::Any,
        ))
        .unwrap();
    drop(first);
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let backend = backend.clone();
                tokio::spawn(async move { backend.get_value("gone", "k").await })
            })
            .collect();
        for call in calls {
            let got = tokio::time::timeout(Duration::from_secs(10), call)
                .await
                .expect("a call on a connection whose runtime is gone still ends")
                .unwrap();
            if let Ok(value) = got {
                assert_eq!(value.as_deref(), Some(&b"v"[..]));
            }
        }
    });
}
