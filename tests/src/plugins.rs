//! Builds (if needed) and finds the plugin libraries of this workspace that
//! tests load: the example plugin and the deliberately broken ones. Part of
//! `cargo test`, no manual step: cargo is run for them with the calling
//! test's profile and target dir.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

const PLUGINS: [&str; 7] = [
    "plugin-example",
    "test-plugin-wrong-abi",
    "test-plugin-panicking",
    "test-plugin-no-symbol",
    "test-plugin-answers-twice",
    "test-plugin-bad-descriptor",
    "test-plugin-crashes",
];

/// `target/<profile>` of this test binary (`target/<profile>/deps/test-...`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// The path of plugin crate `name`'s shared library (one of this
/// workspace's plugin crates), built if needed with the calling test's
/// profile and target directory.
pub fn plugin_library(name: &str) -> PathBuf {
    let path = built().join(format!("lib{}.so", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The path of the process isolation runner, `ta-persist-plugin-runner`,
/// built if needed as [`plugin_library`] builds the plugins.
pub fn plugin_runner() -> PathBuf {
    let path = built().join("ta-persist-plugin-runner");
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Builds the plugins and the runner once per test binary; their folder.
fn built() -> PathBuf {
    static BUILT: Once = Once::new();
    let dir = profile_dir();
    BUILT.call_once(|| {
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let target = dir.parent().expect("target dir");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.arg("build")
            .arg("--quiet")
            .arg("--target-dir")
            .arg(target);
        for p in PLUGINS {
            cmd.arg("-p").arg(p);
        }
        // and the process isolation runner, ta-persist-plugin-runner
        cmd.arg("-p").arg("persistence-plugin");
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo to build the test plugins");
        assert!(status.success(), "building the test plugins failed");
    });
    dir
}
