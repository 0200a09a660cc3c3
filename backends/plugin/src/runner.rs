//! The runner's side of process isolation: what the
//! `ta-persist-plugin-runner` binary runs. The host starts it with one end
//! of a Unix socket as its standard input; the runner reads the open frame,
//! loads the library with the same checks as an in-process load (the pin
//! included), starts the backend, and then answers request frames until the
//! host closes the socket. Each request runs through the in-process plugin
//! host ([`PluginBackend`]), so every rule the host enforces on a plugin
//! (one answer per call, buffer bounds, deadlines) holds here too; what
//! it cannot catch (an abort, a wild write) ends only this process.

use std::future::Future;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;

use persistence_core::{Error, Result};
use persistence_plugin_sdk::abi::{STATUS_ERROR, STATUS_OK};
use persistence_plugin_sdk::codec::{encode_error, Request};
use tokio::sync::mpsc;

use crate::process::{
    frame, read_frame, write_frames, Hello, Open, KIND_CALL, KIND_OPEN, MAX_BODY, OPEN_TIMEOUT,
};
use crate::{PluginBackend, PluginLibrary};

const HELP: &str = "\
ta-persist-plugin-runner: runs one plugin library in a process of its own.

The plugin host starts it when `plugin.isolation = \"process\"`
(TA_PERSISTENCE__PLUGIN__ISOLATION=process), with one end of a Unix socket
as its standard input, and speaks the plugin envelope over it
(docs/plugin-abi.md, \"Process isolation\"). It is not meant to be run by
hand; the host finds it beside its own program, on PATH, or at
`plugin.runner`.

Usage: ta-persist-plugin-runner --socket-on-stdin

Options:
  --socket-on-stdin  serve the host on the socket that is standard input
  -h, --help         print this help
  -V, --version      print the version
";

/// Runs the runner with the process's arguments; the binary's `main`.
pub fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--socket-on-stdin"] => {}
        ["-h" | "--help"] => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        ["-V" | "--version"] => {
            println!("ta-persist-plugin-runner {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{HELP}");
            return ExitCode::from(2);
        }
    }
    let socket = match take_socket() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ta-persist-plugin-runner: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ta-plugin-runner")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ta-persist-plugin-runner: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(socket));
    // a plugin thread may still be stuck in a call: do not wait for it
    std::process::exit(code)
}

/// Takes the socket off standard input, leaving `/dev/null` there, so
/// the plugin cannot read (or close) the host's frames by reading stdin.
fn take_socket() -> std::io::Result<std::os::unix::net::UnixStream> {
    // SAFETY: fstat on fd 0 into a zeroed stat buffer
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above
    if unsafe { libc::fstat(0, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(std::io::Error::other(
            "standard input is not a socket: the plugin host starts the runner",
        ));
    }
    // SAFETY: duplicating fd 0 onto a fresh, close-on-exec descriptor
    let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor this function owns
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a static path; the descriptor is moved onto fd 0 and closed
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
    }
    Ok(std::os::unix::net::UnixStream::from(owned))
}

/// Loads the library and starts the backend the open frame names.
fn opened(open: &Open) -> Result<(PluginBackend, Hello)> {
    let library = PluginLibrary::load(open.module.as_ref(), open.sha256.as_deref())?;
    let backend = library
        .create(open.class.as_deref(), &open.config)?
        // a tenth shorter than the host's: a plugin that does not answer
        // gets its Timeout from here, and the host's own deadline fires
        // only when this runner itself is stuck
        .with_call_timeout(open.call_timeout - open.call_timeout / 10);
    let hello = Hello {
        plugin: library.name().into(),
        version: library.version().into(),
        path: library.path().display().to_string(),
        backend: persistence_core::Backend::name(&backend).into(),
        capabilities: backend.declared(),
    };
    Ok((backend, hello))
}

/// Serves the host until it closes the socket; the exit code.
async fn serve(socket: std::os::unix::net::UnixStream) -> i32 {
    let stream = match socket
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(socket))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ta-persist-plugin-runner: cannot use the socket: {e}");
            return 2;
        }
    };
    let (mut read, write) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    // (the host counts what it queued for us; nothing here reads the count)
    let writer = tokio::spawn(write_frames(write, rx, Default::default()));
    let open = match tokio::time::timeout(OPEN_TIMEOUT, read_frame(&mut read, MAX_BODY)).await {
        Ok(Ok(Some((0, KIND_OPEN, body)))) => Open::decode(&body),
        _ => Err(Error::Plugin {
            plugin: "runner".into(),
            message: "the host sent no open frame".into(),
        }),
    };
    let backend = match open.and_then(|o| opened(&o)) {
        Ok((backend, hello)) => {
            let _ = tx.send(frame(0, STATUS_OK as u8, &hello.encode()));
            Arc::new(backend)
        }
        Err(e) => {
            let _ = tx.send(frame(0, STATUS_ERROR as u8, &encode_error(&e)));
            drop(tx);
            let _ = writer.await;
            return 1;
        }
    };
    loop {
        match read_frame(&mut read, MAX_BODY).await {
            Ok(Some((id, KIND_CALL, body))) => {
                let backend = backend.clone();
                let tx = tx.clone();
                let work = async move {
                    let answer = match Request::decode(&body) {
                        Ok(request) => backend.call(request).await,
                        Err(e) => Err(e),
                    };
                    let (status, body) = match answer {
                        Ok(response) => (STATUS_OK, response.encode()),
                        Err(e) => (STATUS_ERROR, encode_error(&e)),
                    };
                    let _ = tx.send(frame(id, status as u8, &body));
                };
                // polled once here: a plugin that answers at once (most
                // calls of most plugins) costs no task and no thread hop;
                // one that waits goes on as a task of its own
                let mut work = Box::pin(work);
                let waker = std::task::Waker::noop();
                if work
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(waker))
                    .is_pending()
                {
                    tokio::spawn(work);
                }
            }
            Ok(Some((id, kind, _))) => {
                let e = Error::Plugin {
                    plugin: "runner".into(),
                    message: format!("a frame of unknown kind {kind}"),
                };
                let _ = tx.send(frame(id, STATUS_ERROR as u8, &encode_error(&e)));
            }
            // the host closed the socket: it is done with this backend
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("ta-persist-plugin-runner: the host's frames are broken: {e}");
                return 2;
            }
        }
    }
}
