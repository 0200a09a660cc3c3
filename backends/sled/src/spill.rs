//! A recovery queue's spill in a sled database: queued writes survive a
//! restart of the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use persistence_core::layers::{QueueSpill, RecoveryQueueProvider, SpilledWrite};
use persistence_core::{Error, Result};

use crate::open;
use crate::SledOptions;

/// Keeps a recovery queue's writes in a sled database at `path`, flushed
/// (fsync) on every append, so an accepted write survives a crash of the
/// host. One queue per directory.
#[derive(Debug)]
pub struct SledQueueSpill {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
}

impl SledQueueSpill {
    /// The `recovery_queue` layer with its writes kept in a sled spill at
    /// `recovery_queue.spill_path`: register it with
    /// [`Factory::register_layer`](persistence_core::factory::Factory::register_layer).
    pub fn recovery_queue() -> Arc<RecoveryQueueProvider> {
        Arc::new(RecoveryQueueProvider::with_spill(Arc::new(
            |path: &Path| Ok(Arc::new(SledQueueSpill::open(path)?) as Arc<dyn QueueSpill>),
        )))
    }

    /// Opens (or creates) the spill at `path`; errors name the path as
    /// [`SledBackend::open`](crate::SledBackend::open)'s do.
    pub fn open(path: &Path) -> Result<Self> {
        let db = open::open_db(&SledOptions::new(path))?;
        let tree = db
            .open_tree("recovery_queue")
            .map_err(|e| open::error(path, e))?;
        Ok(SledQueueSpill {
            db,
            tree,
            path: path.to_path_buf(),
        })
    }

    fn error(&self, what: &str, e: sled::Error) -> Error {
        Error::Unavailable {
            backend: "sled spill".into(),
            reason: format!("{what} in {}: {e}", self.path.display()),
        }
    }
}

impl QueueSpill for SledQueueSpill {
    fn load(&self) -> Result<Vec<(u64, SpilledWrite)>> {
        let mut out = Vec::new();
        for entry in self.tree.iter() {
            let (k, v) = entry.map_err(|e| self.error("load", e))?;
            let seq = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::Corrupted {
                namespace: String::new(),
                key: self.path.display().to_string(),
                reason: "a spill key is not a sequence number".into(),
                len: k.len(),
            })?);
            out.push((seq, SpilledWrite::decode(&v)?));
        }
        Ok(out)
    }

    fn append(&self, seq: u64, write: &SpilledWrite) -> Result<()> {
        self.tree
            .insert(seq.to_be_bytes(), write.encode())
            .map_err(|e| self.error("append", e))?;
        self.db.flush().map_err(|e| self.error("flush", e))?;
        Ok(())
    }

    fn remove(&self, seq: u64) -> Result<()> {
        self.tree
            .remove(seq.to_be_bytes())
            .map_err(|e| self.error("remove", e))?;
        Ok(())
    }
}
