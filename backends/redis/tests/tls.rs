//! TLS (`rediss`) against a real TLS-enabled redis-server with certificates
//! made by the test: it connects when asked to and when the CA is trusted,
//! and fails (typed) otherwise.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use persistence_conformance::sample_task;
use persistence_core::{ErrorKind, SharedBackend, TaskStore};
use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("`openssl` is needed to make test certificates: apt-get install -y openssl");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA and a server certificate for 127.0.0.1 and localhost.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[tokio::test]
async fn rediss_connects_with_the_right_ca_and_fails_without_it() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (_server, tls_port) = RedisServer::start_tls(
        &dir.path().join("server.crt"),
        &dir.path().join("server.key"),
        &dir.path().join("ca.crt"),
    );
    let mut options = RedisOptions::new("127.0.0.1", tls_port);
    options.ssl = true;
    options.tls_ca_file = Some(dir.path().join("ca.crt"));
    let backend = RedisBackend::connect(options.clone())
        .await
        .expect("TLS with the test CA connects");
    let store = TaskStore::new(Arc::new(backend) as SharedBackend);
    store
        .create(&sample_task("over-tls", &["r"]))
        .await
        .unwrap();
    assert!(store.load_by_request_id("r").await.unwrap().is_some());

    let mut plain = options.clone();
    plain.ssl = false;
    let err = RedisBackend::connect(plain)
        .await
        .expect_err("plain TCP to a TLS port must fail");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    let mut untrusted = options.clone();
    untrusted.tls_ca_file = None;
    let err = RedisBackend::connect(untrusted)
        .await
        .expect_err("an unknown CA must be refused");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    let mut missing = options;
    missing.tls_ca_file = Some(dir.path().join("no-such-ca.crt"));
    let err = RedisBackend::connect(missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("no-such-ca.crt"), "{err}");
}
