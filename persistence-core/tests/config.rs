//! Settings from files and variables, and the factory's choices.

use std::io::Write;

use persistence_core::backend::HealthStatus;
use persistence_core::config::{FallbackPolicy, Settings};
use persistence_core::factory::Factory;
use persistence_core::ErrorKind;

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

#[test]
fn defaults_choose_memory_and_fall_back_to_memory() {
    let s = Settings::from_sources(None, env(&[])).unwrap();
    assert_eq!(s.backend, "memory");
    assert_eq!(s.fallback, FallbackPolicy::Memory);
    assert_eq!(s.redis.port, 6379);
    assert_eq!(s.task_ttl(), None);
}

#[test]
fn seed_variables_are_honoured() {
    let s = Settings::from_sources(
        None,
        env(&[
            ("TA_PERSISTENCE_BACKEND", "redis"),
            ("TA_REDIS_HOST", "redis.internal"),
            ("TA_REDIS_PORT", "6380"),
            ("TA_REDIS_DB", "3"),
            ("TA_REDIS_TTL", "7200"),
            ("TA_REDIS_PWD", "s3cret"),
            ("TA_REDIS_SSL", "false"),
            ("UNRELATED", "x"),
            ("TA_SOMETHING_ELSE", "belongs to the app"),
        ]),
    )
    .unwrap();
    assert_eq!(s.backend, "redis");
    assert_eq!(s.redis.host, "redis.internal");
    assert_eq!(s.redis.port, 6380);
    assert_eq!(s.redis.db, 3);
    assert_eq!(s.redis.password.as_ref().unwrap().expose(), "s3cret");
    assert!(!s.redis.ssl, "TA_REDIS_SSL=false must mean no TLS");
    assert_eq!(s.task_ttl(), Some(std::time::Duration::from_secs(7200)));
    assert!(
        !format!("{s:?}").contains("s3cret"),
        "password leaked into Debug"
    );
}

#[test]
fn file_is_overlaid_by_variables_with_double_underscore_nesting() {
    let f = toml("backend = \"sled\"\nfallback = \"fail\"\n[sled]\npath = \"/tmp/x\"\n[redis]\nprefix = \"file\"\n");
    let s = Settings::from_sources(
        Some(f.path()),
        env(&[
            ("TA_PERSISTENCE__REDIS__PREFIX", "env"),
            ("TA_SLED_PATH", "/tmp/y"),
        ]),
    )
    .unwrap();
    assert_eq!(s.backend, "sled");
    assert_eq!(s.fallback, FallbackPolicy::Fail);
    assert_eq!(s.redis.prefix, "env");
    assert_eq!(s.sled.path, std::path::PathBuf::from("/tmp/y"));
}

#[test]
fn bad_values_name_the_key_and_the_value() {
    let err = Settings::from_sources(None, env(&[("TA_REDIS_PORT", "abc")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = err.to_string();
    assert!(
        text.contains("redis.port") && text.contains("TA_REDIS_PORT") && text.contains("abc"),
        "{text}"
    );

    let err =
        Settings::from_sources(None, env(&[("TA_PERSISTENCE_BACKEND", "mongo")])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("backend (TA_PERSISTENCE_BACKEND)")
            && text.contains("mongo")
            && text.contains("memory, sled, redis, plugin"),
        "{text}"
    );

    let err = Settings::from_sources(None, env(&[("TA_PERSISTENCE_MODULE", "/no/such/lib.so")]))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("plugin.module (TA_PERSISTENCE_MODULE)") && text.contains("/no/such/lib.so"),
        "{text}"
    );

    let err =
        Settings::from_sources(None, env(&[("TA_PERSISTENCE_FALLBACK", "maybe")])).unwrap_err();
    assert!(err.to_string().contains("maybe"), "{err}");

    let f = toml("[redis]\nport = 99999\n");
    let err = Settings::from_sources(Some(f.path()), env(&[])).unwrap_err();
    assert!(err.to_string().contains("redis.port"), "{err}");

    let f = toml("[redis]\nhots = \"typo\"\n");
    let err = Settings::from_sources(Some(f.path()), env(&[])).unwrap_err();
    assert!(err.to_string().contains("hots"), "{err}");

    let f = toml("this is not toml");
    let err = Settings::from_sources(Some(f.path()), env(&[])).unwrap_err();
    assert!(err.to_string().contains("TOML"), "{err}");

    let err = Settings::from_sources(Some("/no/such/config.toml".as_ref()), env(&[])).unwrap_err();
    assert!(err.to_string().contains("/no/such/config.toml"), "{err}");
}

#[test]
fn secrets_never_appear_in_errors() {
    let f = toml("[redis]\npassword = 12\n");
    // a number is accepted as a string by the config crate: no error, no leak
    let s = Settings::from_sources(Some(f.path()), env(&[])).unwrap();
    assert!(!format!("{s:?}").contains("12\""));
    let err = Settings::from_sources(
        None,
        env(&[("TA_REDIS_PWD", "hunter2"), ("TA_REDIS_PORT", "x")]),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn module_alone_implies_the_plugin_backend() {
    let lib = tempfile::NamedTempFile::new().unwrap();
    let path = lib.path().to_str().unwrap();
    let s = Settings::from_sources(None, env(&[("TA_PERSISTENCE_MODULE", path)])).unwrap();
    assert_eq!(s.backend, "plugin");
}

#[tokio::test]
async fn unavailable_backend_falls_back_to_memory_loudly() {
    let s = Settings::from_sources(None, env(&[("TA_PERSISTENCE_BACKEND", "sled")])).unwrap();
    let opened = Factory::new().open(&s).await.unwrap();
    let cause = opened.fallback_cause.expect("must report the fallback");
    assert_eq!(cause.kind(), ErrorKind::Config);
    assert!(
        cause.to_string().contains("not available in this build"),
        "{cause}"
    );
    let health = opened.backend.health().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health.message.contains("data will not survive restart"),
        "{}",
        health.message
    );
}

#[tokio::test]
async fn unavailable_backend_fails_when_policy_is_fail() {
    let s = Settings::from_sources(
        None,
        env(&[
            ("TA_PERSISTENCE_BACKEND", "redis"),
            ("TA_PERSISTENCE_FALLBACK", "fail"),
        ]),
    )
    .unwrap();
    let err = Factory::new().open(&s).await.unwrap_err();
    assert!(
        err.to_string().contains("redis") && err.to_string().contains("not available"),
        "{err}"
    );
}

#[tokio::test]
async fn task_store_gets_namespace_and_ttl_from_settings() {
    let s = Settings::from_sources(
        None,
        env(&[
            ("TA_TASK_TTL", "60"),
            ("TA_PERSISTENCE__TASK_STORE__NAMESPACE", "tasks2"),
        ]),
    )
    .unwrap();
    let (store, opened) = Factory::new().open_task_store(&s).await.unwrap();
    assert_eq!(opened.backend.name(), "memory");
    assert_eq!(store.collection().namespace(), "tasks2");
    assert_eq!(s.task_ttl(), Some(std::time::Duration::from_secs(60)));
}

#[test]
fn every_shipped_config_file_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Settings::from_sources(Some(&path), env(&[]))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the shipped config files in {}",
        dir.display()
    );
}
