//! Opening a database directory, with every failure a typed error naming the path.

use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use persistence_core::Error;

use crate::SledOptions;

/// How long `open` waits for a lock another handle is releasing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

pub fn open_db(options: &SledOptions) -> Result<sled::Db, Error> {
    let path = &options.path;
    if path.is_file() {
        return Err(Error::Config {
            key: "sled.path".into(),
            value: path.display().to_string(),
            reason: "is a file; give a directory for the database".into(),
        });
    }
    let mut config = sled::Config::new().path(path).temporary(options.temporary);
    match options.flush_every_ms {
        None => {}
        Some(0) => config = config.flush_every_ms(None),
        Some(ms) => config = config.flush_every_ms(Some(ms)),
    }
    // sled releases its lock asynchronously, when its background threads
    // stop after the last handle is dropped: wait a little for it, so that
    // closing and reopening a database in one process works.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let opened = loop {
        // sled can panic on some damaged files: that must not take the host down.
        let attempt = catch_unwind(AssertUnwindSafe(|| config.open()));
        match &attempt {
            Ok(Err(sled::Error::Io(io)))
                if io.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            _ => break attempt,
        }
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(error(path, e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "sled panicked".into());
            Err(Error::Corrupted {
                namespace: String::new(),
                key: path.display().to_string(),
                reason: format!("the database files cannot be read ({what}); restore a backup or move the directory aside"),
                len: 0,
            })
        }
    }
}

/// The typed error for a failure to open or read the database at `path`.
pub fn error(path: &Path, e: sled::Error) -> Error {
    let shown = path.display().to_string();
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            Error::Unavailable {
                backend: "sled".into(),
                reason: format!("the database {shown} is held by another process: {io}"),
            }
        }
        sled::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::PermissionDenied
                    | ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::NotADirectory
            ) =>
        {
            Error::Config {
                key: "sled.path".into(),
                value: shown,
                reason: format!("cannot write the database there: {io}"),
            }
        }
        // sled says Unsupported when its own files no longer parse
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => Error::Corrupted {
            namespace: String::new(),
            key: shown,
            reason: format!("{e}; restore a backup or move the directory aside"),
            len: 0,
        },
        e => Error::Unavailable {
            backend: "sled".into(),
            reason: format!("cannot open the database {shown}: {e}"),
        },
    }
}
