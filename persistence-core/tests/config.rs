//! Settings from files and variables, and the factory's choices, with only
//! what core owns (memory and the built-in layers). The tables of the real
//! backends are tested where all of them are registered
//! (`tests/tests/settings.rs`).

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use persistence_core::backend::HealthStatus;
use persistence_core::config::{FallbackPolicy, SeedVariable, Settings};
use persistence_core::factory::{BackendProvider, Factory};
use persistence_core::layers::RetrySettings;
use persistence_core::{Error, ErrorKind, Result, SharedBackend};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn toml(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

/// A backend from outside core, registered as a third party would: it owns
/// `[remote]` and `TA_REMOTE_ADDR`, and can never reach its server.
#[derive(Debug)]
struct Remote;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RemoteSettings {
    addr: String,
    retries: u32,
}

#[async_trait]
impl BackendProvider for Remote {
    fn name(&self) -> &'static str {
        "remote"
    }
    fn seed_variables(&self) -> &'static [SeedVariable] {
        const SEEDS: &[SeedVariable] = &[SeedVariable::new("TA_REMOTE_ADDR", "addr")];
        SEEDS
    }
    fn check(&self, settings: &Settings) -> Result<()> {
        settings.table::<RemoteSettings>(self.name()).map(drop)
    }
    async fn open(&self, settings: &Settings) -> Result<SharedBackend> {
        let s: RemoteSettings = settings.table(self.name())?;
        Err(Error::Unavailable {
            backend: "remote".into(),
            reason: format!("no server at {}", s.addr),
        })
    }
}

fn with_remote() -> Factory {
    let mut f = Factory::new();
    f.register(Arc::new(Remote));
    f
}

#[test]
fn defaults_choose_memory_and_fall_back_to_memory() {
    let f = Factory::new();
    let s = f.settings_from_sources(None, env(&[])).unwrap();
    assert_eq!(s.backend, "memory");
    assert_eq!(s.fallback, FallbackPolicy::Memory);
    assert_eq!(f.task_ttl(&s).unwrap(), None);
}

#[test]
fn a_registered_backend_owns_its_table_and_seed_variables() {
    let file = toml(
        "backend = \"remote\"\nfallback = \"fail\"\n[remote]\naddr = \"file:1\"\nretries = 2\n",
    );
    let f = with_remote();
    let s = f
        .settings_from_sources(
            Some(file.path()),
            env(&[
                ("TA_PERSISTENCE__REMOTE__RETRIES", "5"),
                ("TA_REMOTE_ADDR", "seed:2"),
            ]),
        )
        .unwrap();
    assert_eq!(s.backend, "remote");
    assert_eq!(s.fallback, FallbackPolicy::Fail);
    let r: RemoteSettings = s.table("remote").unwrap();
    assert_eq!((r.addr.as_str(), r.retries), ("seed:2", 5));

    // its table is checked by its owner, naming the key and where it came from
    let err = f
        .settings_from_sources(None, env(&[("TA_PERSISTENCE__REMOTE__RETRIES", "many")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration remote.retries (TA_PERSISTENCE__REMOTE__RETRIES) = \"many\": expected an integer"
    );
    let typo = toml("[remote]\nadress = \"x\"\n");
    let err = f
        .settings_from_sources(Some(typo.path()), env(&[]))
        .unwrap_err();
    assert!(err.to_string().contains("adress"), "{err}");

    // a factory that does not know it refuses its table, naming the file
    let err = Factory::new()
        .settings_from_sources(Some(file.path()), env(&[]))
        .unwrap_err();
    assert!(
        err.to_string().contains("remote")
            && err.to_string().contains(&file.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn layer_tables_belong_to_their_layers() {
    let f = Factory::new();
    let s = f
        .settings_from_sources(None, env(&[("TA_PERSISTENCE__RETRY__MAX_RETRIES", "7")]))
        .unwrap();
    assert_eq!(s.table::<RetrySettings>("retry").unwrap().max_retries, 7);
    let typo = toml("[retry]\nretries = 3\n");
    let err = f
        .settings_from_sources(Some(typo.path()), env(&[]))
        .unwrap_err();
    assert!(err.to_string().contains("retries"), "{err}");
    let err = f
        .settings_from_sources(None, env(&[("TA_PERSISTENCE__LAYERS", "cache,warp")]))
        .unwrap_err();
    assert!(
        err.to_string().contains("warp") && err.to_string().contains("unknown layer"),
        "{err}"
    );
}

#[test]
fn bad_core_values_name_the_key_and_the_value() {
    let f = Factory::new();
    let err = f
        .settings_from_sources(None, env(&[("TA_PERSISTENCE_FALLBACK", "maybe")]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("maybe"), "{err}");
    let err = f
        .settings_from_sources(None, env(&[("TA_TASK_TTL", "soon")]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("task_store.ttl_seconds (TA_TASK_TTL)"),
        "{err}"
    );
    let f2 = toml("this is not toml");
    let err = f
        .settings_from_sources(Some(f2.path()), env(&[]))
        .unwrap_err();
    assert!(err.to_string().contains("TOML"), "{err}");
    // a syntax error on a line holding a secret names the line, never quotes it
    let f3 = toml("[retry]\nmax_retries = 3\n[other]\npassword = \"hunter2\n");
    let err = f
        .settings_from_sources(Some(f3.path()), env(&[]))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("line 4") && !text.contains("hunter2"),
        "{text}"
    );
    let err = f
        .settings_from_sources(Some("/no/such/config.toml".as_ref()), env(&[]))
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/config.toml"), "{err}");
}

#[tokio::test]
async fn a_backend_that_cannot_start_falls_back_to_memory_loudly() {
    let f = with_remote();
    let s = f
        .settings_from_sources(None, env(&[("TA_PERSISTENCE_BACKEND", "remote")]))
        .unwrap();
    let opened = f.open(&s).await.unwrap();
    let cause = opened.fallback_cause.expect("must report the fallback");
    assert_eq!(cause.kind(), ErrorKind::Unavailable);
    let health = opened.backend.health().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health.message.contains("data will not survive restart"),
        "{}",
        health.message
    );
}

#[tokio::test]
async fn a_backend_that_cannot_start_fails_when_policy_is_fail() {
    let f = with_remote();
    let s = f
        .settings_from_sources(
            None,
            env(&[
                ("TA_PERSISTENCE_BACKEND", "remote"),
                ("TA_PERSISTENCE_FALLBACK", "fail"),
                ("TA_REMOTE_ADDR", "10.0.0.1:1"),
            ]),
        )
        .unwrap();
    let err = f.open(&s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("10.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn an_unregistered_backend_is_a_configuration_error_whatever_the_fallback() {
    let err = Factory::new()
        .settings_from_sources(None, env(&[("TA_PERSISTENCE_BACKEND", "redis")]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("redis") && err.to_string().contains("not available"),
        "{err}"
    );
    // settings built in code are checked by open, fallback or not
    let mut s = Settings::default();
    s.backend = "redis".into();
    let err = Factory::new().open(&s).await.unwrap_err();
    assert!(err.to_string().contains("available: memory"), "{err}");
}

#[tokio::test]
async fn task_store_gets_namespace_and_ttl_from_settings() {
    let f = Factory::new();
    let s = f
        .settings_from_sources(
            None,
            env(&[
                ("TA_TASK_TTL", "60"),
                ("TA_PERSISTENCE__TASK_STORE__NAMESPACE", "tasks2"),
            ]),
        )
        .unwrap();
    let (store, opened) = f.open_task_store(&s).await.unwrap();
    assert_eq!(opened.backend.name(), "memory");
    assert_eq!(store.collection().namespace(), "tasks2");
    assert_eq!(
        f.task_ttl(&s).unwrap(),
        Some(std::time::Duration::from_secs(60))
    );
}

#[test]
fn the_seeds_worker_variables_set_the_queue_and_are_checked() {
    use std::time::Duration;
    let f = Factory::new();
    let s = f.settings_from_sources(None, env(&[])).unwrap();
    let t = s.queue.timing().unwrap();
    assert_eq!(
        (t.heartbeat_interval, t.lease, t.sweeper_interval),
        (
            Duration::from_secs(30),
            Duration::from_secs(60),
            Duration::from_secs(120)
        ),
        "the seed's defaults"
    );
    assert_eq!(s.queue.name(), "runs");
    assert_eq!(s.queue.options().unwrap().pending_timeout, None);

    let s = f
        .settings_from_sources(
            None,
            env(&[
                ("WORKER_HEARTBEAT_INTERVAL", "5"),
                ("WORKER_HEARTBEAT_TTL", "12.5"),
                ("SWEEPER_INTERVAL", "60"),
                ("TA_QUEUE_PENDING_TIMEOUT", "600"),
                ("TA_PERSISTENCE__QUEUE__MAX_ATTEMPTS", "5"),
            ]),
        )
        .unwrap();
    let t = s.queue.timing().unwrap();
    assert_eq!(t.heartbeat_interval, Duration::from_secs(5));
    assert_eq!(t.lease, Duration::from_millis(12_500));
    assert_eq!(t.sweeper_interval, Duration::from_secs(60));
    let o = s.queue.options().unwrap();
    assert_eq!(o.pending_timeout, Some(Duration::from_secs(600)));
    assert_eq!(o.max_attempts, 5);

    // a heartbeat slower than half the lease would lose leases: refused, naming the variable
    let err = f
        .settings_from_sources(
            None,
            env(&[
                ("WORKER_HEARTBEAT_INTERVAL", "40"),
                ("WORKER_HEARTBEAT_TTL", "60"),
            ]),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("WORKER_HEARTBEAT_INTERVAL"),
        "{err}"
    );
    for (var, value) in [
        ("WORKER_HEARTBEAT_TTL", "-1"),
        ("SWEEPER_INTERVAL", "0"),
        ("SWEEPER_INTERVAL", "soon"),
        ("TA_PERSISTENCE__QUEUE__MAX_ATTEMPTS", "0"),
        ("TA_PERSISTENCE__QUEUE__CONCURRENCY", "0"),
    ] {
        let err = f
            .settings_from_sources(None, env(&[(var, value)]))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{var}={value}: {err}");
        assert!(err.to_string().contains(var), "{var}={value}: {err}");
    }
    let typo = toml("[queue]\nheartbeat_secs = 3\n");
    let err = f
        .settings_from_sources(Some(typo.path()), env(&[]))
        .unwrap_err();
    assert!(err.to_string().contains("heartbeat_secs"), "{err}");
}

/// An engine without a queue: `Unsupported`, or memory with the cause
/// under `fallback = "memory"`; a queue engine nobody registered is a
/// configuration error, never a fallback.
#[tokio::test]
async fn open_queue_falls_back_only_when_allowed() {
    let f = with_remote();
    let s = f
        .settings_from_sources(
            None,
            env(&[
                ("TA_PERSISTENCE_BACKEND", "remote"),
                ("TA_PERSISTENCE_FALLBACK", "fail"),
            ]),
        )
        .unwrap();
    let err = f.open_queue(&s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("a run queue"), "{err}");

    let s = f
        .settings_from_sources(None, env(&[("TA_PERSISTENCE_BACKEND", "remote")]))
        .unwrap();
    let opened = f.open_queue(&s).await.unwrap();
    assert_eq!(opened.queue.name(), "memory");
    assert_eq!(opened.requested, "remote");
    assert_eq!(
        opened.fallback_cause.map(|e| e.kind()),
        Some(ErrorKind::Unsupported)
    );

    let s = f
        .settings_from_sources(None, env(&[("TA_PERSISTENCE__QUEUE__ENGINE", "nowhere")]))
        .unwrap();
    let err = f.open_queue(&s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("queue.engine"), "{err}");
}
