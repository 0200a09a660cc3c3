//! `count_term` on one server, against a real redis-server per test: once
//! a set is counted, the count is its length after its passed expiries are
//! swept (no call per member, which the server's command statistics show),
//! exact through expiry, sliding renewals, transactions, sets written
//! before expiry sets existed, and more expired members than one call
//! sweeps.

use std::time::Duration;

use persistence_core::backend::{Backend, DocumentWrite, Precondition, Put, TxWrite};
use persistence_redis::{RedisBackend, RedisOptions};
use redis::aio::MultiplexedConnection;
use redis_test_server::RedisServer;

const SHORT: Duration = Duration::from_millis(400);
const PAST: Duration = Duration::from_millis(900);
const IDX: &str = "status";

async fn connect(server: &RedisServer) -> (RedisBackend, MultiplexedConnection) {
    let backend = RedisBackend::connect(RedisOptions::new("127.0.0.1", server.port()))
        .await
        .unwrap();
    let raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (backend, raw)
}

fn write(term: &str, ttl: Option<Duration>) -> DocumentWrite {
    let mut w = DocumentWrite::new(b"{}".to_vec()).with_term(IDX, term);
    w.ttl = ttl;
    w
}

/// Writes `n` documents `{prefix}{i}` with `term`, in batches.
async fn put_n(b: &RedisBackend, ns: &str, prefix: &str, n: usize, ttl: Option<Duration>) {
    let keys: Vec<usize> = (0..n).collect();
    for chunk in keys.chunks(500) {
        let puts = chunk
            .iter()
            .map(|i| Put {
                key: format!("{prefix}{i}"),
                write: write("t", ttl),
                precondition: Precondition::Any,
            })
            .collect();
        for r in b.put_many(ns, puts).await {
            r.unwrap();
        }
    }
}

async fn count(b: &RedisBackend, ns: &str, term: &str) -> u64 {
    b.count_term(ns, IDX, term).await.unwrap()
}

/// Counts `t` in `ns` between a reset of the server's command statistics
/// and a read of them: asserts the count is `expected` and that no command
/// that looks at one member ran (`HMGET`, `HGET`, `EXISTS`, `GET`, `PTTL`,
/// `SMEMBERS`), and returns how many times each command ran, by lower-case
/// name (commands scripts call included).
async fn count_alone(
    b: &RedisBackend,
    raw: &mut MultiplexedConnection,
    ns: &str,
    expected: u64,
) -> Vec<(String, u64)> {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(raw)
        .await
        .unwrap();
    assert_eq!(count(b, ns, "t").await, expected);
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(raw)
        .await
        .unwrap();
    let calls: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect();
    let per_member = ["hmget", "hget", "exists", "get", "pttl", "smembers"];
    assert!(
        !calls
            .iter()
            .any(|(name, _)| per_member.contains(&name.as_str())),
        "{calls:?}"
    );
    calls
}

/// After its first count, a set of 600 is counted without a call per
/// member, before and after a third of it expires, and agrees with lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_set_is_counted_without_visiting_members() {
    let server = RedisServer::start();
    let (b, mut raw) = connect(&server).await;
    let ns = "fast";
    put_n(&b, ns, "short", 200, Some(SHORT)).await;
    put_n(&b, ns, "long", 400, None).await;
    assert_eq!(count(&b, ns, "t").await, 600, "the first count checks");
    let calls = count_alone(&b, &mut raw, ns, 600).await;
    assert!(calls.contains(&("scard".to_string(), 1)), "{calls:?}");
    tokio::time::sleep(PAST).await;
    // the expired are swept
    let calls = count_alone(&b, &mut raw, ns, 400).await;
    assert!(
        calls.contains(&("srem".to_string(), 1)),
        "one SREM for all: {calls:?}"
    );
    assert_eq!(b.lookup(ns, IDX, "t").await.unwrap().len(), 400);
    assert_eq!(count(&b, ns, "t").await, 400);
}

/// A set written before expiry sets existed (simulated: its expiry set and
/// its mark as counted deleted): the first count checks every member,
/// drops the ones gone behind the library's back, and gives the members
/// with a TTL their expiry entries, so they leave the next counts on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_from_before_expiry_sets_is_checked_once() {
    let server = RedisServer::start();
    let (b, mut raw) = connect(&server).await;
    let ns = "older";
    put_n(&b, ns, "short", 10, Some(SHORT)).await;
    put_n(&b, ns, "long", 5, None).await;
    put_n(&b, ns, "mid", 3, Some(Duration::from_secs(60))).await;
    let layout = b.layout();
    let ik = layout.index(ns, IDX, "t");
    let _: () = redis::cmd("DEL")
        .arg(layout.expiries(&ik))
        .arg(layout.counted(ns))
        .arg(layout.doc(ns, "long0"))
        .arg(layout.meta(ns, "long0"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(count(&b, ns, "t").await, 17, "long0 is gone");
    tokio::time::sleep(PAST).await;
    count_alone(&b, &mut raw, ns, 7).await;
    let mut hits = b.lookup(ns, IDX, "t").await.unwrap();
    hits.sort();
    assert_eq!(
        hits,
        ["long1", "long2", "long3", "long4", "mid0", "mid1", "mid2"]
    );
}

/// More expired members than one call sweeps: the count is still exact
/// (it checks the set member by member), and the next ones are fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_expired_than_one_sweep_is_still_exact() {
    let server = RedisServer::start();
    let (b, mut raw) = connect(&server).await;
    let ns = "backlog";
    put_n(&b, ns, "short", 4200, Some(SHORT)).await;
    put_n(&b, ns, "long", 3, None).await;
    assert_eq!(count(&b, ns, "t").await, 4203);
    tokio::time::sleep(PAST).await;
    assert_eq!(count(&b, ns, "t").await, 3);
    count_alone(&b, &mut raw, ns, 3).await;
    let card: u64 = redis::cmd("ZCARD")
        .arg(b.layout().expiries(&b.layout().index(ns, IDX, "t")))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(card, 0, "no expiry entry outlives its member");
}

/// A sliding TTL renews the expiry entries with the document: a document
/// read often stays counted past its first TTL, and leaves the count once
/// reads stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliding_ttl_keeps_a_read_document_counted() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(1000);
    let mut options = RedisOptions::new("127.0.0.1", server.port());
    options.sliding_ttl = Some(ttl);
    let b = RedisBackend::connect(options).await.unwrap();
    let ns = "sliding";
    b.put(ns, "read", write("t", Some(ttl)), Precondition::Any)
        .await
        .unwrap();
    b.put(ns, "unread", write("t", Some(ttl)), Precondition::Any)
        .await
        .unwrap();
    assert_eq!(count(&b, ns, "t").await, 2);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(b.get(ns, "read").await.unwrap().is_some());
    }
    assert_eq!(count(&b, ns, "t").await, 1, "the unread one expired");
    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert_eq!(count(&b, ns, "t").await, 0);
}

/// Writes inside a transaction keep expiry entries as single writes do,
/// and clearing the namespace leaves no key of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_keep_expiry_entries() {
    let server = RedisServer::start();
    let (b, mut raw) = connect(&server).await;
    let ns = "tx";
    let put = |key: &str, ttl| TxWrite::Put {
        namespace: ns.to_string(),
        key: key.to_string(),
        write: write("t", ttl),
        precondition: Precondition::Any,
    };
    b.transact(vec![
        put("a", Some(SHORT)),
        put("b", None),
        put("c", Some(SHORT)),
    ])
    .await
    .unwrap();
    assert_eq!(count(&b, ns, "t").await, 3);
    b.transact(vec![
        put("c", None),
        TxWrite::Remove {
            namespace: ns.to_string(),
            key: "b".to_string(),
            precondition: Precondition::Present,
        },
    ])
    .await
    .unwrap();
    assert_eq!(count(&b, ns, "t").await, 2);
    tokio::time::sleep(PAST).await;
    assert_eq!(count(&b, ns, "t").await, 1);
    assert_eq!(b.lookup(ns, IDX, "t").await.unwrap(), ["c"]);
    // clearing the namespace takes its expiry sets and marks along
    b.put(
        ns,
        "d",
        write("t", Some(Duration::from_secs(60))),
        Precondition::Any,
    )
    .await
    .unwrap();
    assert!(b.clear_namespace(ns).await.unwrap() > 0);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}
