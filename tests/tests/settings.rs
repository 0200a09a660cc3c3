//! Settings as a binary with every backend of this workspace reads them:
//! each backend's table and seed variables, owned by its crate, overlaid
//! and checked through one factory.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use persistence_core::config::{FallbackPolicy, Settings};
use persistence_core::factory::Factory;
use persistence_core::ErrorKind;
use persistence_plugin::{PluginProvider, PluginSettings};
use persistence_redb::{RedbProvider, RedbSettings};
use persistence_redis::{RedisProvider, RedisSettings};
use persistence_sled::{SledProvider, SledSettings};

/// The factory `ta-persist` builds: memory, redb, sled, redis, plugin.
fn factory() -> Factory {
    let mut f = Factory::new();
    f.register(Arc::new(RedbProvider));
    f.register(Arc::new(SledProvider));
    f.register(Arc::new(RedisProvider));
    f.register(Arc::new(PluginProvider));
    f
}

fn from_sources(
    file: Option<&std::path::Path>,
    env: Vec<(String, String)>,
) -> persistence_core::Result<Settings> {
    factory().settings_from_sources(file, env)
}

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

fn redis(s: &Settings) -> RedisSettings {
    s.table("redis").unwrap()
}

#[test]
fn defaults_choose_memory_and_fall_back_to_memory() {
    let s = from_sources(None, env(&[])).unwrap();
    assert_eq!(s.backend, "memory");
    assert_eq!(s.fallback, FallbackPolicy::Memory);
    assert_eq!(redis(&s).port, 6379);
    assert_eq!(factory().task_ttl(&s).unwrap(), None);
}

#[test]
fn seed_variables_are_honoured() {
    let s = from_sources(
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
    let r = redis(&s);
    assert_eq!(r.host, "redis.internal");
    assert_eq!(r.port, 6380);
    assert_eq!(r.db, 3);
    assert_eq!(r.password.as_ref().unwrap().expose(), "s3cret");
    assert!(!r.ssl, "TA_REDIS_SSL=false must mean no TLS");
    assert_eq!(
        factory().task_ttl(&s).unwrap(),
        Some(Duration::from_secs(7200))
    );
    assert!(
        !format!("{s:?} {r:?}").contains("s3cret"),
        "password leaked into Debug"
    );
}

#[test]
fn file_is_overlaid_by_variables_with_double_underscore_nesting() {
    let f = toml("backend = \"sled\"\nfallback = \"fail\"\n[sled]\npath = \"/tmp/x\"\n[redis]\nprefix = \"file\"\n");
    let s = from_sources(
        Some(f.path()),
        env(&[
            ("TA_PERSISTENCE__REDIS__PREFIX", "env"),
            ("TA_SLED_PATH", "/tmp/y"),
        ]),
    )
    .unwrap();
    assert_eq!(s.backend, "sled");
    assert_eq!(s.fallback, FallbackPolicy::Fail);
    assert_eq!(redis(&s).prefix, "env");
    let sled: SledSettings = s.table("sled").unwrap();
    assert_eq!(sled.path, std::path::PathBuf::from("/tmp/y"));
}

#[test]
fn redb_settings_map_to_its_options() {
    let s = from_sources(None, env(&[("TA_REDB_PATH", "/tmp/r.redb")])).unwrap();
    let redb = RedbSettings::from_settings(&s).unwrap();
    let options = redb.options();
    assert_eq!(options.path, std::path::PathBuf::from("/tmp/r.redb"));
    assert_eq!(options.durability, persistence_redb::Durability::Immediate);
    let f =
        toml("[redb]\ndurability = \"periodic\"\nflush_every_ms = 250\ncall_timeout_ms = 900\n");
    let s = from_sources(Some(f.path()), env(&[])).unwrap();
    let options = RedbSettings::from_settings(&s).unwrap().options();
    assert_eq!(
        options.durability,
        persistence_redb::Durability::Periodic {
            every: Duration::from_millis(250)
        }
    );
    assert_eq!(options.call_timeout, Duration::from_millis(900));
}

#[test]
fn bad_values_name_the_key_and_the_value() {
    let err = from_sources(None, env(&[("TA_REDIS_PORT", "abc")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(
        err.to_string(),
        "invalid configuration redis.port (TA_REDIS_PORT) = \"abc\": expected an integer"
    );

    let err = from_sources(None, env(&[("TA_PERSISTENCE_BACKEND", "mongo")])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("backend (TA_PERSISTENCE_BACKEND)")
            && text.contains("mongo")
            && text.contains("memory, redb, sled, redis, plugin"),
        "{text}"
    );

    let err = from_sources(None, env(&[("TA_PERSISTENCE_MODULE", "/no/such/lib.so")])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("plugin.module (TA_PERSISTENCE_MODULE)") && text.contains("/no/such/lib.so"),
        "{text}"
    );

    let err = from_sources(None, env(&[("TA_PERSISTENCE_FALLBACK", "maybe")])).unwrap_err();
    assert!(err.to_string().contains("maybe"), "{err}");

    let f = toml("[redis]\nport = 99999\n");
    let err = from_sources(Some(f.path()), env(&[])).unwrap_err();
    assert!(err.to_string().contains("redis.port"), "{err}");

    let f = toml("[redis]\nhots = \"typo\"\n");
    let err = from_sources(Some(f.path()), env(&[])).unwrap_err();
    assert!(err.to_string().contains("hots"), "{err}");

    let f = toml("this is not toml");
    let err = from_sources(Some(f.path()), env(&[])).unwrap_err();
    assert!(err.to_string().contains("TOML"), "{err}");

    let err = from_sources(Some("/no/such/config.toml".as_ref()), env(&[])).unwrap_err();
    assert!(err.to_string().contains("/no/such/config.toml"), "{err}");

    let err =
        from_sources(None, env(&[("TA_PERSISTENCE_MODULE_SHA256", "not-a-hash")])).unwrap_err();
    assert!(err.to_string().contains("plugin.sha256"), "{err}");
}

#[test]
fn secrets_never_appear_in_errors() {
    let f = toml("[redis]\npassword = 12\n");
    // a number is accepted as a string by the config crate: no error, no leak
    let s = from_sources(Some(f.path()), env(&[])).unwrap();
    assert!(!format!("{s:?} {:?}", redis(&s)).contains("12\""));
    let err = from_sources(
        None,
        env(&[("TA_REDIS_PWD", "hunter2"), ("TA_REDIS_PORT", "x")]),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
    let f = toml("[redis]\npassword = [\"hunter2\"]\n");
    let err = from_sources(Some(f.path()), env(&[])).unwrap_err();
    assert!(
        err.to_string().contains("redis.password") && !err.to_string().contains("hunter2"),
        "{err}"
    );
}

#[test]
fn module_alone_implies_the_plugin_backend() {
    let mut lib = tempfile::NamedTempFile::new().unwrap();
    // settings only look at the header; loading is the plugin host's tests' job
    lib.write_all(b"\x7fELF").unwrap();
    let path = lib.path().to_str().unwrap();
    let s = from_sources(None, env(&[("TA_PERSISTENCE_MODULE", path)])).unwrap();
    assert_eq!(s.backend, "plugin");
    let p = PluginSettings::from_settings(&s).unwrap();
    assert_eq!(p.module.as_deref(), Some(lib.path()));
}

#[test]
fn every_shipped_config_file_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            from_sources(Some(&path), env(&[]))
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

/// Each of these fell back to memory (or said something unhelpful) before:
/// a configuration mistake is an error whatever the fallback policy.
#[test]
fn wrong_configuration_is_never_covered_by_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_lib = dir.path().join("passwd");
    std::fs::write(&not_a_lib, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let dir_path = dir.path().display().to_string();
    let lib_path = not_a_lib.display().to_string();
    // (variables, the setting the error names, what it says)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 11] = [
        (
            &[
                ("TA_PERSISTENCE_BACKEND", "redb"),
                ("TA_REDB_PATH", &dir_path),
            ],
            "redb.path (TA_REDB_PATH)",
            "is a directory",
        ),
        (
            &[("TA_PERSISTENCE__REDB__DURABILITY", "sometimes")],
            "redb.durability (TA_PERSISTENCE__REDB__DURABILITY)",
            "\"immediate\" or \"periodic\"",
        ),
        (
            &[
                ("TA_PERSISTENCE__REDB__DURABILITY", "periodic"),
                ("TA_PERSISTENCE__REDB__FLUSH_EVERY_MS", "0"),
            ],
            "redb.flush_every_ms (TA_PERSISTENCE__REDB__FLUSH_EVERY_MS)",
            "greater than 0",
        ),
        (
            &[("TA_PERSISTENCE__REDB__FLUSH_EVERY_MS", "100")],
            "redb.flush_every_ms (TA_PERSISTENCE__REDB__FLUSH_EVERY_MS)",
            "durability = \"periodic\"",
        ),
        (
            &[
                ("TA_PERSISTENCE_BACKEND", "sled"),
                ("TA_SLED_PATH", &lib_path),
            ],
            "sled.path (TA_SLED_PATH)",
            "is a file",
        ),
        (
            &[
                ("TA_PERSISTENCE_BACKEND", "sled"),
                ("TA_PERSISTENCE__SLED__PATH", " "),
            ],
            "sled.path (TA_PERSISTENCE__SLED__PATH)",
            "blank",
        ),
        (
            &[("TA_PERSISTENCE_MODULE", &lib_path)],
            "plugin.module (TA_PERSISTENCE_MODULE)",
            "not a shared library",
        ),
        (
            &[("TA_PERSISTENCE_MODULE", &dir_path)],
            "plugin.module (TA_PERSISTENCE_MODULE)",
            "is a directory",
        ),
        (
            &[("TA_REDIS_PORT", "0")],
            "redis.port (TA_REDIS_PORT)",
            "1 to 65535",
        ),
        (
            &[("TA_REDIS_TTL", "-5")],
            "redis.ttl (TA_REDIS_TTL)",
            "zero or more",
        ),
        (
            &[("TA_PERSISTENCE_FALLBACK", "maybe")],
            "fallback (TA_PERSISTENCE_FALLBACK)",
            "memory",
        ),
    ];
    for (vars, key, reason) in cases {
        let mut vars = vars.to_vec();
        vars.push(("TA_PERSISTENCE_FALLBACK", "memory"));
        vars.rotate_right(1); // a later `maybe` must still win
        let err = from_sources(None, env(&vars)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(key) && text.contains(reason),
            "{vars:?}: {text}"
        );
    }
    assert!(
        !dir.path().join(" ").exists(),
        "a blank path must not create a directory"
    );
}

#[tokio::test]
async fn a_configuration_error_found_while_opening_does_not_fall_back() {
    let s = from_sources(
        None,
        env(&[
            ("TA_PERSISTENCE_BACKEND", "redis"),
            ("TA_REDIS_URL", "not a url"),
            ("TA_PERSISTENCE_FALLBACK", "memory"),
        ]),
    )
    .unwrap();
    let err = factory().open(&s).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("redis.url") && !err.to_string().contains("not a url"),
        "{err}"
    );
}

#[test]
fn an_empty_pin_is_an_error_not_unset() {
    let err = from_sources(None, env(&[("TA_PERSISTENCE_MODULE_SHA256", "")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string()
            .contains("plugin.sha256 (TA_PERSISTENCE_MODULE_SHA256)")
            && err.to_string().contains("empty"),
        "{err}"
    );
    // other empty values still mean unset
    let s = from_sources(None, env(&[("TA_REDIS_HOST", "")])).unwrap();
    assert_eq!(redis(&s).host, "localhost");
}
