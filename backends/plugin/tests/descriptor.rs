//! Descriptors that lie about their own shape: each is refused with a typed
//! `Plugin` error naming what is wrong, before the host reads out of bounds.
//! One test in its own binary: it sets the variable the plugin reads.

mod support;

use persistence_core::ErrorKind;
use persistence_plugin::PluginLibrary;

#[test]
fn every_lying_descriptor_is_refused() {
    let built = support::library("test-plugin-bad-descriptor");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("null-name", "name is a null pointer"),
        ("null-table", "backend table is a null pointer"),
        ("huge-count", "backends (at most"),
        ("over-count", "backends (at most"),
        ("long-name", "name claims"),
        ("not-utf8", "version is not UTF-8"),
    ];
    for (how, says) in cases {
        // a copy per case: the host keeps each path it loaded
        let copy = dir.path().join(format!("lib{how}.so"));
        std::fs::copy(&built, &copy).unwrap();
        std::env::set_var("TA_TEST_BAD_DESCRIPTOR", how);
        let err = PluginLibrary::load(&copy, None).expect_err(how);
        assert_eq!(err.kind(), ErrorKind::Plugin, "{how}: {err}");
        assert!(err.to_string().contains(says), "{how}: {err}");
    }
    std::env::set_var("TA_TEST_BAD_DESCRIPTOR", "");
    let copy = dir.path().join("libhonest.so");
    std::fs::copy(&built, &copy).unwrap();
    let lib = PluginLibrary::load(&copy, None).expect("the honest descriptor loads");
    assert_eq!(lib.backends().len(), 1);
}
