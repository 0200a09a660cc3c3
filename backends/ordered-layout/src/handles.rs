//! The databases a process has open through the factory, one handle per
//! path: an embedded engine lets a database be opened once per process, so
//! the documents and the event streams of one database must share it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use persistence_core::{Error, Result};

/// Open handles of one engine, by path; a handle goes when its last user
/// drops it.
#[derive(Debug)]
pub struct Handles<T> {
    engine: &'static str,
    open: tokio::sync::Mutex<HashMap<PathBuf, Weak<T>>>,
}

impl<T: Send + Sync + 'static> Handles<T> {
    /// No handles yet, for the engine named `engine` (in errors).
    pub fn new(engine: &'static str) -> Self {
        Handles {
            engine,
            open: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The handle open at `path`, or the one `open` makes (run on the
    /// blocking pool: opening may recover a database not closed cleanly).
    /// A handle already open keeps the options it was opened with.
    pub async fn get_or_open(
        &self,
        path: PathBuf,
        open: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<Arc<T>> {
        let mut handles = self.open.lock().await;
        if let Some(handle) = handles.get(&path).and_then(Weak::upgrade) {
            return Ok(handle);
        }
        let opened = tokio::task::spawn_blocking(open)
            .await
            .map_err(|e| Error::Internal {
                backend: self.engine.into(),
                message: format!("open panicked: {e}"),
            })??;
        let handle = Arc::new(opened);
        handles.retain(|_, h| h.strong_count() > 0);
        handles.insert(path, Arc::downgrade(&handle));
        Ok(handle)
    }
}
