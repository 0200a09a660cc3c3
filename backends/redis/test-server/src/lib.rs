//! Real `redis-server` processes for tests: started on a free loopback port
//! with persistence off, stopped when dropped (also when a test panics,
//! since drops run while unwinding).
//!
//! If `redis-server` is not installed, starting one panics with the command
//! that installs it: a test that needs Redis must fail, never skip.
//!
//! Each server runs under a small `sh` watchdog that holds a pipe from the
//! test process: when the test process ends in any way (a static server is
//! never dropped; a SIGKILL drops nothing), the pipe closes and the watchdog
//! kills the server, so no `redis-server` outlives its tests.
#![warn(missing_docs, missing_debug_implementations)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    /// The watchdog shell; its stdin is the pipe whose closing kills the server.
    child: Option<Child>,
    pid: Option<u32>,
    port: u16,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn require(binary: &str) {
    let found = Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{binary}` is not installed: the Redis tests need a real server. Install it with `apt-get install -y redis-server redis-tools` (bash .ci/run does)."
    );
}

/// Sends `PING` and waits for `+PONG`.
pub fn ping(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .map(|n| buf[..n].starts_with(b"+PONG"))
            .unwrap_or(false)
}

impl RedisServer {
    /// Starts a server with persistence off.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (`--requirepass x`).
    pub fn start_with(extra: &[&str]) -> Self {
        require("redis-server");
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut server = RedisServer {
            child: None,
            pid: None,
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        // sh prints the server's pid, then waits for its stdin to close
        const WATCHDOG: &str = r#"redis-server "$@" 2>&1 &
pid=$!
echo "$pid"
read _ignored
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null"#;
        let mut last = String::new();
        for _ in 0..3 {
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(WATCHDOG)
                .arg("sh")
                .arg("--port")
                .arg(self.port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .args(&self.extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut child = cmd.spawn().expect("spawn sh for redis-server");
            let mut out = BufReader::new(child.stdout.take().expect("watchdog stdout"));
            let mut pid_line = String::new();
            let _ = out.read_line(&mut pid_line);
            let pid: Option<u32> = pid_line.trim().parse().ok();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut exited = false;
            while Instant::now() < deadline {
                let auth_only = self.extra.iter().any(|a| a == "--requirepass");
                if ping(self.port) || auth_only && Self::listening(self.port) {
                    self.child = Some(child);
                    self.pid = pid;
                    // keep draining the server's output so it never blocks
                    std::thread::spawn(move || for _ in out.lines() {});
                    return;
                }
                if !pid.is_some_and(alive) {
                    exited = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut log = String::new();
            if exited {
                let _ = out.read_to_string(&mut log);
            }
            last = format!("redis-server on port {} did not answer: {log}", self.port);
            let _ = child.kill();
            let _ = child.wait();
            self.port = free_port(); // the port may have been taken meanwhile
        }
        panic!("redis-server did not start: {last}");
    }

    fn listening(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    /// Starts a server that also listens with TLS on a second port, using
    /// `cert`/`key` (PEM) for the server and trusting `ca` (clients need no
    /// certificate). The plain port stays for the readiness check.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> (Self, u16) {
        let tls_port = free_port();
        let args = [
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".to_string(),
            cert.display().to_string(),
            "--tls-key-file".to_string(),
            key.display().to_string(),
            "--tls-ca-cert-file".to_string(),
            ca.display().to_string(),
            "--tls-auth-clients".to_string(),
            "no".to_string(),
        ];
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        (Self::start_with(&refs), tls_port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its working directory (append-only files live here when enabled).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills it with SIGKILL (what a crash looks like to clients).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if let Some(mut child) = self.child.take() {
            // closing the watchdog's stdin ends it
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same arguments and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of `masters` nodes (no replicas), killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes and joins them with `redis-cli --cluster create`.
    pub fn start(masters: usize) -> Self {
        require("redis-cli");
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().all(|n| {
                Command::new("redis-cli")
                    .args(["-p", &n.port().to_string(), "cluster", "info"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok in 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://` URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
