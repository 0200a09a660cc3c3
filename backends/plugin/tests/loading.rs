//! Every way a plugin library can be wrong is a typed error, and a plugin
//! that panics costs one call, not the host.

mod support;

use std::sync::Arc;

use persistence_conformance::sample_task;
use persistence_core::backend::{Backend, BackendExt, DocumentWrite};
use persistence_core::factory::Factory;
use persistence_core::{Error, ErrorKind, SharedBackend, TaskStore};
use persistence_plugin::{PluginLibrary, PluginProvider};

fn load_err(path: &std::path::Path, sha: Option<&str>) -> Error {
    PluginLibrary::load(path, sha).expect_err("loading must fail")
}

#[test]
fn a_missing_file_is_a_config_error_naming_it() {
    let e = load_err("/no/such/plugin.so".as_ref(), None);
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("/no/such/plugin.so"), "{e}");
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), b"#!/bin/sh\necho not a library\n").unwrap();
    let e = load_err(f.path(), None);
    assert_eq!(e.kind(), ErrorKind::Plugin);
    assert!(
        e.to_string().contains("not a loadable shared library"),
        "{e}"
    );
}

#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    let e = load_err(&support::library("test-plugin-no-symbol"), None);
    assert_eq!(e.kind(), ErrorKind::Plugin);
    assert!(e.to_string().contains("ta_persistence_plugin_v1"), "{e}");
}

#[test]
fn another_abi_version_is_refused_before_any_call() {
    // its create and call abort the process: reaching them would kill this test
    let e = load_err(&support::library("test-plugin-wrong-abi"), None);
    assert_eq!(e.kind(), ErrorKind::Plugin);
    assert!(e.to_string().contains("ABI 99.0"), "{e}");
}

#[test]
fn the_hash_pin_refuses_any_other_library() {
    let path = support::library("plugin-example");
    let e = load_err(&path, Some(&"0".repeat(64)));
    assert_eq!(e.kind(), ErrorKind::Plugin);
    assert!(e.to_string().contains("refusing to load"), "{e}");
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum");
    let actual = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    PluginLibrary::load(&path, Some(&actual.to_uppercase())).expect("the pinned library loads");
}

#[test]
fn an_unknown_or_missing_class_names_what_the_plugin_offers() {
    let lib = PluginLibrary::load(&support::library("plugin-example"), None).unwrap();
    assert_eq!(lib.name(), "plugin-example");
    let e = lib.create(Some("mongo"), b"{}").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("json-dir, memory"), "{e}");
    let e = lib.create(None, b"{}").unwrap_err();
    assert!(e.to_string().contains("several backends"), "{e}");
}

#[test]
fn a_failing_start_is_a_plugin_error_with_the_cause() {
    let lib = PluginLibrary::load(&support::library("plugin-example"), None).unwrap();
    let e = lib.create(Some("json-dir"), b"{}").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Plugin);
    assert!(
        e.to_string().contains("failed to start") && e.to_string().contains("plugin.options.path"),
        "{e}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let config = format!("{{\"path\": {:?}}}", file.path().display().to_string());
    let e = lib.create(Some("json-dir"), config.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("is a file"), "{e}");
}

#[tokio::test]
async fn a_panicking_plugin_fails_the_call_and_the_host_goes_on() {
    let lib = PluginLibrary::load(&support::library("test-plugin-panicking"), None).unwrap();
    let e = lib.create(Some("panics-on-create"), b"{}").unwrap_err();
    assert!(e.to_string().contains("deliberate panic in create"), "{e}");

    let backend = lib.create(Some("panics-on-call"), b"{}").unwrap();
    for _ in 0..3 {
        let e = backend
            .insert("ns", "k", DocumentWrite::new(vec![1]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Plugin);
        assert!(e.to_string().contains("deliberate panic in put"), "{e}");
        let e = backend.get("ns", "k").await.unwrap_err();
        assert!(e.to_string().contains("deliberate panic in get"), "{e}");
    }
    // still alive, and calls that do not panic work
    assert!(backend.lookup("ns", "i", "t").await.unwrap().is_empty());
    assert_eq!(
        backend.health().await.status,
        persistence_core::backend::HealthStatus::Ok
    );
}

#[tokio::test]
async fn the_factory_opens_a_plugin_from_ta_persistence_module() {
    let dir = tempfile::tempdir().unwrap();
    let module = support::library("plugin-example");
    let env = [
        ("TA_PERSISTENCE_MODULE", module.display().to_string()),
        ("TA_PERSISTENCE_CLASS", "json-dir".to_string()),
        (
            "TA_PERSISTENCE__PLUGIN__OPTIONS__PATH",
            dir.path().display().to_string(),
        ),
        ("TA_PERSISTENCE_FALLBACK", "fail".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let mut factory = Factory::new();
    factory.register(Arc::new(PluginProvider));
    let settings = factory.settings_from_sources(None, env).unwrap();
    assert_eq!(
        settings.backend, "plugin",
        "TA_PERSISTENCE_MODULE alone selects the plugin backend"
    );
    let opened = factory.open(&settings).await.unwrap();
    assert_eq!(opened.backend.name(), "json-dir");
    let store = TaskStore::new(opened.backend.clone() as SharedBackend);
    store.create(&sample_task("t1", &["r1"])).await.unwrap();
    let health = opened.backend.health().await;
    assert!(
        health.details["plugin"].starts_with("plugin-example"),
        "{health:?}"
    );
    drop(store);
    drop(opened);
    // durable: a new instance over the same directory sees the task
    let opened = factory.open(&settings).await.unwrap();
    let store = TaskStore::new(opened.backend.clone() as SharedBackend);
    assert!(store.load_by_request_id("r1").await.unwrap().is_some());
}

#[tokio::test]
async fn a_broken_plugin_falls_back_to_memory_when_allowed() {
    let env = [
        (
            "TA_PERSISTENCE_MODULE",
            support::library("test-plugin-wrong-abi")
                .display()
                .to_string(),
        ),
        ("TA_PERSISTENCE_FALLBACK", "memory".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let mut factory = Factory::new();
    factory.register(Arc::new(PluginProvider));
    let settings = factory.settings_from_sources(None, env).unwrap();
    let opened = factory.open(&settings).await.unwrap();
    assert_eq!(opened.backend.name(), "memory");
    assert_eq!(opened.fallback_cause.unwrap().kind(), ErrorKind::Plugin);
}

#[tokio::test]
async fn an_unknown_class_is_a_configuration_error_even_with_fallback_memory() {
    let env = [
        (
            "TA_PERSISTENCE_MODULE",
            support::library("plugin-example").display().to_string(),
        ),
        ("TA_PERSISTENCE_CLASS", "nope".to_string()),
        ("TA_PERSISTENCE_FALLBACK", "memory".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let mut factory = Factory::new();
    factory.register(Arc::new(PluginProvider));
    let settings = factory.settings_from_sources(None, env).unwrap();
    let err = factory.open(&settings).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("plugin.class") && err.to_string().contains("json-dir"),
        "{err}"
    );
}

#[test]
fn a_library_swapped_during_a_pinned_load_is_never_loaded() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(support::library("plugin-example")).unwrap();
    let hostile = std::fs::read(support::library("test-plugin-panicking")).unwrap();
    let target = dir.path().join("libstore.so");
    let hostile_copy = dir.path().join("hostile.so");
    std::fs::write(&hostile_copy, &hostile).unwrap();
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..20u64 {
        // a trailer the ELF loader ignores: a new hash, so every round loads anew
        let mut bytes = good.clone();
        bytes.extend_from_slice(&round.to_le_bytes());
        let pin: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let good_copy = dir.path().join(format!("good-{round}.so"));
        std::fs::write(&good_copy, &bytes).unwrap();
        std::fs::copy(&good_copy, &target).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (stop, target) = (stop.clone(), target.clone());
            let (good_copy, hostile_copy) = (good_copy.clone(), hostile_copy.clone());
            std::thread::spawn(move || {
                let scratch = target.with_extension("next");
                let mut flip = false;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let from = if flip { &good_copy } else { &hostile_copy };
                    std::fs::copy(from, &scratch).unwrap();
                    std::fs::rename(&scratch, &target).unwrap();
                    flip = !flip;
                }
            })
        };
        for _ in 0..5 {
            match PluginLibrary::load(&target, Some(&pin)) {
                Ok(lib) => {
                    assert_eq!(lib.name(), "plugin-example", "a hostile library was loaded");
                    loaded += 1;
                }
                Err(e) => {
                    assert!(e.to_string().contains("refusing to load"), "{e}");
                    refused += 1;
                }
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
    }
    assert!(
        loaded > 0,
        "the pinned library never loaded ({refused} refusals)"
    );
}
