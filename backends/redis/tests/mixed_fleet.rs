//! A mixed fleet: the Python system's Redis manager (played with the plain
//! commands seed 004 describes: `SET task:{id}` with a TTL, `SADD
//! request_index:{rid}`, `EXPIRE`, `DEL`, lookups by `SMEMBERS` taking any
//! member) and this library writing the same tasks on one Redis, single
//! server and cluster. After every step both views are checked: the other
//! system's (every member of every request-id set is a live task carrying
//! that request id) and this library's (lookups, counts, scans).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use persistence_conformance::sample_task;
use persistence_core::backend::{Backend, DocumentWrite, Precondition, TxWrite};
use persistence_core::model::AgentTask;
use persistence_core::{SharedBackend, TaskStore};
use persistence_redis::{RedisBackend, RedisOptions};
use redis::AsyncCommands;
use redis_test_server::{RedisCluster, RedisServer};

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);
static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(|| RedisCluster::start(3));

const RIDS: [&str; 6] = ["ra", "rb", "rc", "rd", "re", "rf"];

/// The other system, as seed 004's manager talks to Redis.
struct Python<C> {
    con: C,
    p: String,
    /// (request id, task id) entries its own updates left behind: its
    /// update only adds, so a request id its update dropped stays in the
    /// set until a lookup of ours removes it. Its own doing, not ours.
    own_leftovers: std::collections::BTreeSet<(String, String)>,
}

impl<C: redis::aio::ConnectionLike + Clone + Send + Sync> Python<C> {
    /// Its create or update; `old` is the task it replaces, if any.
    async fn write(&mut self, task: &AgentTask, ttl: u64, old: Option<&AgentTask>) {
        for rid in old.map(|o| o.request_ids()).unwrap_or_default() {
            if !task.has_request_id(rid) {
                self.own_leftovers
                    .insert((rid.to_string(), task.task_id.clone()));
            }
        }
        let json = serde_json::to_string(task).unwrap();
        let _: () = self
            .con
            .set_ex(format!("{}:task:{}", self.p, task.task_id), json, ttl)
            .await
            .unwrap();
        for rid in task.request_ids() {
            let set = format!("{}:request_index:{rid}", self.p);
            let _: () = self.con.sadd(&set, &task.task_id).await.unwrap();
            let _: () = self.con.expire(&set, ttl as i64).await.unwrap();
        }
    }

    async fn delete(&mut self, task: &AgentTask) {
        let _: () = self
            .con
            .del(format!("{}:task:{}", self.p, task.task_id))
            .await
            .unwrap();
        for rid in task.request_ids() {
            let _: () = self
                .con
                .srem(format!("{}:request_index:{rid}", self.p), &task.task_id)
                .await
                .unwrap();
        }
    }

    /// Its view: every member of every request-id set is a live task
    /// carrying that request id (it takes any member, so any stale one is a
    /// wrong answer), its own update's leftovers aside.
    async fn check(&mut self, step: &str) {
        for rid in RIDS {
            let members: Vec<String> = self
                .con
                .smembers(format!("{}:request_index:{rid}", self.p))
                .await
                .unwrap();
            for m in members {
                if self.own_leftovers.contains(&(rid.to_string(), m.clone())) {
                    continue;
                }
                let json: Option<String> =
                    self.con.get(format!("{}:task:{m}", self.p)).await.unwrap();
                let json = json.unwrap_or_else(|| {
                    panic!("{step}: request_index:{rid} holds {m}, which is gone")
                });
                let task: AgentTask = serde_json::from_str(&json).unwrap();
                assert!(
                    task.has_request_id(rid),
                    "{step}: request_index:{rid} holds {m}, which no longer carries it"
                );
            }
        }
    }
}

/// This library's view against the model of live tasks. Counts and scans
/// list the tasks this library wrote (it keeps their order): `known`.
async fn check_ours(
    store: &TaskStore,
    model: &BTreeMap<String, AgentTask>,
    known: &std::collections::BTreeSet<String>,
    step: &str,
) {
    for rid in RIDS {
        let got = store.load_by_request_id(rid).await.unwrap();
        let carriers: Vec<&AgentTask> = model.values().filter(|t| t.has_request_id(rid)).collect();
        match got {
            Some(t) => assert!(
                carriers.iter().any(|c| c.task_id == t.task_id) && t.has_request_id(rid),
                "{step}: {rid} found {}, not a live carrier",
                t.task_id
            ),
            None => assert!(carriers.is_empty(), "{step}: {rid} not found, but carried"),
        }
    }
    let ours = model.keys().filter(|k| known.contains(*k)).count();
    assert_eq!(store.count().await.unwrap(), ours as u64, "{step}: count");
}

fn task(id: &str, rids: &[&str]) -> AgentTask {
    sample_task(id, rids)
}

struct Fleet<C> {
    /// Live tasks this library wrote last or keeps the order of.
    known: std::collections::BTreeSet<String>,
    python: Python<C>,
    backend: Arc<RedisBackend>,
    store: TaskStore,
}

async fn single(p: &str) -> Fleet<redis::aio::MultiplexedConnection> {
    let mut options = RedisOptions::new("127.0.0.1", SERVER.port());
    options.prefix = p.into();
    let backend = Arc::new(RedisBackend::connect(options).await.unwrap());
    let con = redis::Client::open(SERVER.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    Fleet {
        known: Default::default(),
        python: Python {
            con,
            p: p.into(),
            own_leftovers: Default::default(),
        },
        store: TaskStore::new(backend.clone() as SharedBackend),
        backend,
    }
}

async fn cluster(p: &str) -> Fleet<redis::cluster_async::ClusterConnection> {
    let mut options = RedisOptions::new("unused", 0);
    options.prefix = p.into();
    options.cluster_nodes = CLUSTER
        .urls()
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_string())
        .collect();
    let backend = Arc::new(RedisBackend::connect(options).await.unwrap());
    let con = redis::cluster::ClusterClient::new(CLUSTER.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    Fleet {
        known: Default::default(),
        python: Python {
            con,
            p: p.into(),
            own_leftovers: Default::default(),
        },
        store: TaskStore::new(backend.clone() as SharedBackend),
        backend,
    }
}

impl<C: redis::aio::ConnectionLike + Clone + Send + Sync> Fleet<C> {
    /// Theirs first, so that an entry our write left behind is seen before
    /// a lookup of ours could remove it.
    async fn check(&mut self, model: &BTreeMap<String, AgentTask>, step: &str) {
        self.python.check(step).await;
        check_ours(&self.store, model, &self.known, step).await;
    }

    /// Their create, then our updates moving, adding and removing request
    /// ids, then our delete.
    async fn their_tasks_changed_here(&mut self) {
        let mut model = BTreeMap::new();
        let t = task("t1", &["ra", "rb"]);
        self.python.write(&t, 3600, None).await;
        model.insert("t1".to_string(), t);
        self.check(&model, "their create").await;
        for (step, rids) in [
            ("our update moves rb to rc", &["ra", "rc"][..]),
            ("our update adds rd", &["ra", "rc", "rd"][..]),
            ("our update removes ra", &["rc", "rd"][..]),
        ] {
            let t = task("t1", rids);
            self.store.update(&t).await.unwrap();
            self.known.insert("t1".into());
            model.insert("t1".to_string(), t);
            self.check(&model, step).await;
        }
        // their create, our delete straight away
        let t2 = task("t2", &["re", "rf"]);
        self.python.write(&t2, 3600, None).await;
        model.insert("t2".to_string(), t2);
        self.check(&model, "their second create").await;
        self.store.delete("t2").await.unwrap();
        model.remove("t2");
        self.check(&model, "our delete of their task").await;
        self.store.delete("t1").await.unwrap();
        self.known.remove("t1");
        model.remove("t1");
        self.check(&model, "our delete of their updated task").await;
    }

    /// Our create, their delete: our count, scan and re-create are right,
    /// and the metadata and order entries are cleaned.
    async fn our_tasks_deleted_there(&mut self) {
        let mut model = BTreeMap::new();
        for (n, rid) in RIDS.iter().take(4).enumerate() {
            let t = task(&format!("o{n}"), &[rid]);
            self.store.create(&t).await.unwrap();
            self.known.insert(t.task_id.clone());
            model.insert(t.task_id.clone(), t);
        }
        self.check(&model, "our creates").await;
        for n in 0..2 {
            let t = model.remove(&format!("o{n}")).unwrap();
            self.known.remove(&t.task_id);
            self.python.delete(&t).await;
        }
        let layout = self.backend.layout().clone();
        let meta = |k: &str| layout.meta("task", k);
        let mut con = self.python.con.clone();
        // a get that meets one removes its metadata (before any other read)
        assert!(con.exists::<_, bool>(meta("o0")).await.unwrap());
        assert!(self.backend.get("task", "o0").await.unwrap().is_none());
        assert!(
            !con.exists::<_, bool>(meta("o0")).await.unwrap(),
            "o0 metadata left by a get"
        );
        self.check(&model, "their deletes").await;
        let page = self
            .backend
            .scan(
                "task",
                persistence_core::backend::ScanRequest::first(
                    persistence_core::backend::ScanOrder::Key,
                    10,
                ),
            )
            .await
            .unwrap();
        let keys: Vec<&str> = page.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["o2", "o3"]);
        // the scan met o0 and o1: their metadata is gone with them
        for k in ["o0", "o1"] {
            assert!(
                !con.exists::<_, bool>(meta(k)).await.unwrap(),
                "{k} metadata left"
            );
        }
        // one deleted behind our back that no read met: clear_orphans finds it
        let t = model.remove("o2").unwrap();
        self.known.remove("o2");
        self.python.delete(&t).await;
        assert_eq!(self.backend.clear_orphans("task", 1000).await.unwrap(), 1);
        assert!(!con.exists::<_, bool>(meta("o2")).await.unwrap());
        assert_eq!(self.backend.clear_orphans("task", 1000).await.unwrap(), 0);
        // and the ids can be created again, by us
        let t = task("o0", &["ra"]);
        self.store.create(&t).await.unwrap();
        self.known.insert("o0".into());
        model.insert("o0".into(), t);
        self.check(&model, "our re-create").await;
        for k in model.keys().cloned().collect::<Vec<_>>() {
            self.store.delete(&k).await.unwrap();
            self.known.remove(&k);
        }
    }

    /// Our create with a long TTL, their update with a short one: once we
    /// read the document (a full read: `get`, scans), the metadata expires
    /// with the task, not after it.
    async fn their_ttl_is_followed(&mut self) {
        let store = self.store.clone().with_ttl(Some(Duration::from_secs(3600)));
        let t = task("ttl", &["ra"]);
        store.create(&t).await.unwrap();
        self.python.write(&t, 2, Some(&t)).await;
        assert!(self.backend.get("task", "ttl").await.unwrap().is_some());
        let mut con = self.python.con.clone();
        let meta_ttl: i64 = con
            .pttl(self.backend.layout().meta("task", "ttl"))
            .await
            .unwrap();
        assert!(
            (0..=2000).contains(&meta_ttl),
            "metadata TTL {meta_ttl} ms does not follow the task's 2 s"
        );
        tokio::time::sleep(Duration::from_millis(2300)).await;
        assert_eq!(store.load("ttl").await.unwrap(), None);
        assert!(!con
            .exists::<_, bool>(self.backend.layout().meta("task", "ttl"))
            .await
            .unwrap());
        self.check(&BTreeMap::new(), "after expiry").await;
    }

    /// Both writers, a reproducible random interleaving, both views after
    /// every step.
    async fn random_interleaving(&mut self, steps: usize, mut seed: u64) {
        let mut model: BTreeMap<String, AgentTask> = BTreeMap::new();
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..steps {
            let r = next();
            let id = format!("x{}", r % 8);
            let rids: Vec<&str> = (0..1 + (r >> 8) % 3)
                .map(|i| RIDS[((r >> (12 + 4 * i)) % 6) as usize])
                .collect();
            let t = task(&id, &rids);
            let exists = model.contains_key(&id);
            let what = match ((r >> 40) % 4, exists) {
                (0, _) => {
                    self.python.write(&t, 3600, model.get(&id)).await;
                    model.insert(id.clone(), t);
                    "their write"
                }
                (1, false) => {
                    self.store.create(&t).await.unwrap();
                    self.known.insert(id.clone());
                    model.insert(id.clone(), t);
                    "our create"
                }
                (1, true) => {
                    self.store.update(&t).await.unwrap();
                    self.known.insert(id.clone());
                    model.insert(id.clone(), t);
                    "our update"
                }
                (2, true) => {
                    self.store.delete(&id).await.unwrap();
                    self.known.remove(&id);
                    model.remove(&id);
                    "our delete"
                }
                (3, true) => {
                    let old = model.remove(&id).unwrap();
                    self.known.remove(&id);
                    self.python.delete(&old).await;
                    "their delete"
                }
                _ => continue,
            };
            self.check(&model, &format!("step {step}: {what} {id} {rids:?}"))
                .await;
        }
        for k in model.keys().cloned().collect::<Vec<_>>() {
            self.store.delete(&k).await.unwrap();
            self.known.remove(&k);
        }
    }
}

impl<C: redis::aio::ConnectionLike + Clone + Send + Sync> Fleet<C> {
    /// The fingerprint our writes keep is the SHA-1 the server computes of
    /// the stored bytes (the client computes it): with it, a document of
    /// ours is trusted for the terms its metadata lists, even terms its
    /// JSON does not imply; once the other system rewrites the bytes, its
    /// JSON decides. A wrong fingerprint would fail the first lookups.
    async fn fingerprints_tell_ours_from_theirs(&mut self) {
        let b = &self.backend;
        let layout = b.layout();
        let con = &mut self.python.con;
        // by a put and by a transaction (one write is one hash slot, so a
        // cluster takes it too)
        let writes = [
            ("fp-put", b"not json at all".to_vec()),
            ("fp-tx", b"{\"items\": []}".to_vec()),
        ];
        for (key, value) in &writes {
            let write = DocumentWrite::new(value.clone()).with_term("request_index", "rq-fp");
            if *key == "fp-tx" {
                b.transact(vec![TxWrite::put("task", *key, write, Precondition::Any)])
                    .await
                    .unwrap();
            } else {
                b.put("task", key, write, Precondition::Any).await.unwrap();
            }
            let meta_h: Option<String> = con.hget(layout.meta("task", key), "h").await.unwrap();
            let stored: Vec<u8> = con.get(layout.doc("task", key)).await.unwrap();
            let server: String = redis::Script::new("return redis.sha1hex(ARGV[1])")
                .arg(stored)
                .invoke_async(con)
                .await
                .unwrap();
            assert_eq!(
                meta_h.as_deref(),
                Some(server.as_str()),
                "{key}: fingerprint"
            );
        }
        let mut found = b.lookup("task", "request_index", "rq-fp").await.unwrap();
        found.sort();
        let mut expected: Vec<String> = writes.iter().map(|(k, _)| k.to_string()).collect();
        expected.sort();
        assert_eq!(found, expected, "ours, trusted for their metadata's terms");
        assert_eq!(
            b.count_term("task", "request_index", "rq-fp")
                .await
                .unwrap(),
            expected.len() as u64
        );
        // the other system rewrites one: its JSON implies no term
        let _: () = con
            .set(layout.doc("task", "fp-put"), b"{\"items\": []}".to_vec())
            .await
            .unwrap();
        let found = b.lookup("task", "request_index", "rq-fp").await.unwrap();
        assert!(
            !found.contains(&"fp-put".to_string()),
            "rewritten there: {found:?}"
        );
        for (key, _) in &writes {
            b.remove("task", key, Precondition::Any).await.unwrap();
        }
    }
}

#[tokio::test]
async fn fingerprints_tell_ours_from_theirs_single() {
    single("mf5")
        .await
        .fingerprints_tell_ours_from_theirs()
        .await;
}

#[tokio::test]
async fn fingerprints_tell_ours_from_theirs_cluster() {
    cluster("mf5")
        .await
        .fingerprints_tell_ours_from_theirs()
        .await;
}

#[tokio::test]
async fn their_tasks_changed_here_single() {
    single("mf1").await.their_tasks_changed_here().await;
}

#[tokio::test]
async fn their_tasks_changed_here_cluster() {
    cluster("mf1").await.their_tasks_changed_here().await;
}

#[tokio::test]
async fn our_tasks_deleted_there_single() {
    single("mf2").await.our_tasks_deleted_there().await;
}

#[tokio::test]
async fn our_tasks_deleted_there_cluster() {
    cluster("mf2").await.our_tasks_deleted_there().await;
}

#[tokio::test]
async fn their_ttl_is_followed_single() {
    single("mf3").await.their_ttl_is_followed().await;
}

#[tokio::test]
async fn their_ttl_is_followed_cluster() {
    cluster("mf3").await.their_ttl_is_followed().await;
}

#[tokio::test]
async fn random_interleaving_single() {
    single("mf4")
        .await
        .random_interleaving(300, 0x9e37_79b9_7f4a_7c15)
        .await;
}

#[tokio::test]
async fn random_interleaving_cluster() {
    cluster("mf4")
        .await
        .random_interleaving(150, 0x2545_f491_4f6c_dd1d)
        .await;
}
