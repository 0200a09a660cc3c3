//! The raw engines the embedded backends are measured against: the same
//! document bytes and one key per request id, written without checks,
//! versions, creation order or expiry.

use std::sync::Arc;

use persistence_core::model::AgentTask;
use redb::{ReadableDatabase, TableDefinition};

/// Raw sled: the document bytes under the task id, and one key per request
/// id (`request id, 0, task id`), written without transactions or checks.
pub struct RawSled {
    docs: sled::Tree,
    by_request: sled::Tree,
    _db: sled::Db,
}

impl RawSled {
    pub fn open(dir: &std::path::Path) -> Result<Self, sled::Error> {
        let db = sled::Config::new().path(dir).temporary(true).open()?;
        Ok(RawSled {
            docs: db.open_tree("docs")?,
            by_request: db.open_tree("by_request")?,
            _db: db,
        })
    }

    fn index_key(rid: &str, id: &str) -> Vec<u8> {
        [rid.as_bytes(), &[0], id.as_bytes()].concat()
    }

    pub fn write(&self, task: &AgentTask, index: bool) -> Result<(), String> {
        let bytes = serde_json::to_vec(task).map_err(|e| e.to_string())?;
        self.docs
            .insert(task.task_id.as_bytes(), bytes)
            .map_err(|e| e.to_string())?;
        if index {
            for rid in task.request_ids() {
                self.by_request
                    .insert(Self::index_key(rid, &task.task_id), task.task_id.as_bytes())
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    pub fn load(&self, id: &str) -> Result<Option<AgentTask>, String> {
        let bytes = self.docs.get(id.as_bytes()).map_err(|e| e.to_string())?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .transpose()
    }

    pub fn load_by_request_id(&self, rid: &str) -> Result<Option<AgentTask>, String> {
        let prefix = [rid.as_bytes(), &[0]].concat();
        match self.by_request.scan_prefix(prefix).next() {
            Some(entry) => {
                let (_, id) = entry.map_err(|e| e.to_string())?;
                self.load(&String::from_utf8_lossy(&id))
            }
            None => Ok(None),
        }
    }

    pub fn delete(&self, task: &AgentTask) -> Result<(), String> {
        self.docs
            .remove(task.task_id.as_bytes())
            .map_err(|e| e.to_string())?;
        for rid in task.request_ids() {
            self.by_request
                .remove(Self::index_key(rid, &task.task_id))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("docs");
const BY_REQUEST: TableDefinition<&[u8], &str> = TableDefinition::new("by_request");

/// Raw redb: the same two key spaces as [`RawSled`] in two tables, each
/// operation one write transaction with redb's default (immediate)
/// durability, as the backend's default.
pub struct RawRedb {
    db: Arc<redb::Database>,
    _dir: tempfile::TempDir,
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl RawRedb {
    pub fn open() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = redb::Database::create(dir.path().join("raw.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(DOCS)?;
        txn.open_table(BY_REQUEST)?;
        txn.commit()?;
        Ok(RawRedb {
            db: Arc::new(db),
            _dir: dir,
        })
    }

    pub fn write(&self, task: &AgentTask, index: bool) -> Result<(), String> {
        let bytes = serde_json::to_vec(task).map_err(text)?;
        let txn = self.db.begin_write().map_err(text)?;
        {
            let mut docs = txn.open_table(DOCS).map_err(text)?;
            docs.insert(task.task_id.as_str(), bytes.as_slice())
                .map_err(text)?;
            if index {
                let mut by_request = txn.open_table(BY_REQUEST).map_err(text)?;
                for rid in task.request_ids() {
                    by_request
                        .insert(
                            RawSled::index_key(rid, &task.task_id).as_slice(),
                            task.task_id.as_str(),
                        )
                        .map_err(text)?;
                }
            }
        }
        txn.commit().map_err(text)
    }

    pub fn load(&self, id: &str) -> Result<Option<AgentTask>, String> {
        let txn = self.db.begin_read().map_err(text)?;
        let docs = txn.open_table(DOCS).map_err(text)?;
        let bytes = docs.get(id).map_err(text)?;
        bytes
            .map(|b| serde_json::from_slice(b.value()).map_err(text))
            .transpose()
    }

    pub fn load_by_request_id(&self, rid: &str) -> Result<Option<AgentTask>, String> {
        let prefix = [rid.as_bytes(), &[0]].concat();
        let id = {
            let txn = self.db.begin_read().map_err(text)?;
            let by_request = txn.open_table(BY_REQUEST).map_err(text)?;
            let mut range = by_request.range(prefix.as_slice()..).map_err(text)?;
            match range.next() {
                Some(entry) => {
                    let (k, id) = entry.map_err(text)?;
                    if !k.value().starts_with(&prefix) {
                        return Ok(None);
                    }
                    id.value().to_string()
                }
                None => return Ok(None),
            }
        };
        self.load(&id)
    }

    pub fn delete(&self, task: &AgentTask) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(text)?;
        {
            let mut docs = txn.open_table(DOCS).map_err(text)?;
            docs.remove(task.task_id.as_str()).map_err(text)?;
            let mut by_request = txn.open_table(BY_REQUEST).map_err(text)?;
            for rid in task.request_ids() {
                by_request
                    .remove(RawSled::index_key(rid, &task.task_id).as_slice())
                    .map_err(text)?;
            }
        }
        txn.commit().map_err(text)
    }
}
