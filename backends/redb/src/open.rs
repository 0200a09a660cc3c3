//! Opening a database file, with every failure a typed error naming the path.

use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use persistence_core::Error;
use redb::{DatabaseError, StorageError};

use crate::engine::{self, storage};
use crate::{writer, RedbOptions};

/// How long `open` waits for a lock another handle of this process is releasing.
const LOCK_WAIT: Duration = Duration::from_secs(1);

fn config(path: &Path, reason: String) -> Error {
    Error::Config {
        key: "redb.path".into(),
        value: path.display().to_string(),
        reason,
    }
}

/// Opens the database, creates its tables, and reads the stored next id.
pub fn open_db(options: &RedbOptions) -> Result<(redb::Database, Option<u64>), Error> {
    let path = &options.path;
    if path.is_dir() {
        return Err(config(
            path,
            "is a directory; give the database file (for example data/tasks.redb)".into(),
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| config(path, format!("cannot create its directory: {e}")))?;
    }
    let mut builder = redb::Builder::new();
    if let Some(bytes) = options.cache_size {
        builder.set_cache_size(bytes);
    }
    let deadline = Instant::now() + LOCK_WAIT;
    let opened = loop {
        // a damaged file must not take the host down, even if redb panics on it
        let attempt = catch_unwind(AssertUnwindSafe(|| builder.create(path)));
        match attempt {
            Ok(Err(DatabaseError::DatabaseAlreadyOpen)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Ok(r) => break r.map_err(|e| error(path, e)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "redb panicked".into());
                break Err(damaged(path, &what));
            }
        }
    }?;
    let txn = opened
        .begin_write()
        .map_err(|e| named(path, storage("open", e)))?;
    let stored = {
        txn.open_table(engine::DATA)
            .map_err(|e| named(path, storage("open", e)))?;
        let meta = txn
            .open_table(engine::META)
            .map_err(|e| named(path, storage("open", e)))?;
        writer::stored_id(&meta).map_err(|e| named(path, e))?
    };
    txn.commit().map_err(|e| named(path, storage("open", e)))?;
    Ok((opened, stored))
}

fn damaged(path: &Path, what: &str) -> Error {
    Error::Corrupted {
        namespace: String::new(),
        key: path.display().to_string(),
        reason: format!(
            "not a readable redb database ({what}); restore a backup or move the file aside"
        ),
        len: 0,
    }
}

/// Puts the path into an error that lacks it.
fn named(path: &Path, e: Error) -> Error {
    match e {
        Error::Corrupted { reason, .. } => damaged(path, &reason),
        Error::Unavailable { backend, reason } => Error::Unavailable {
            backend,
            reason: format!("{}: {reason}", path.display()),
        },
        e => e,
    }
}

/// The typed error for a failure to open the database at `path`.
pub fn error(path: &Path, e: DatabaseError) -> Error {
    let shown = path.display().to_string();
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            Error::Unavailable {
                backend: "redb".into(),
                reason: format!("the database {shown} is held by another process or handle ({e})"),
            }
        }
        DatabaseError::Storage(StorageError::Io(io))
            if matches!(
                io.kind(),
                ErrorKind::PermissionDenied
                    | ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::NotADirectory
                    | ErrorKind::IsADirectory
            ) =>
        {
            config(path, format!("cannot write the database there: {io}"))
        }
        DatabaseError::Storage(StorageError::Io(io))
            if matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) =>
        {
            damaged(path, &io.to_string())
        }
        DatabaseError::Storage(StorageError::Corrupted(reason)) => damaged(path, &reason),
        DatabaseError::UpgradeRequired(_) | DatabaseError::RepairAborted => {
            damaged(path, &e.to_string())
        }
        e => Error::Unavailable {
            backend: "redb".into(),
            reason: format!("cannot open the database {shown}: {e}"),
        },
    }
}
