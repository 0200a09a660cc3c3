//! `tasks` and `docs`: look at what is stored, through the same contract
//! every backend keeps (so it works on memory, redb, sled, Redis and plugins).

use std::process::ExitCode;
use std::time::SystemTime;

use persistence_core::backend::{Document, ScanOrder, ScanRequest};
use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::model::AgentTask;
use persistence_core::store::REQUEST_INDEX;
use persistence_core::SharedBackend;
use serde_json::{json, Value};

use crate::demo;
use persistence_cli::report::{right, table};

/// What `tasks` does.
#[derive(Debug, clap::Subcommand)]
pub enum Tasks {
    /// List stored tasks, by id, or those carrying a request id.
    List {
        /// Only the tasks carrying this request id (the request index).
        #[arg(long, value_name = "ID")]
        request_id: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one task: its JSON, version, expiry and request ids.
    Show {
        /// The task id.
        id: String,
    },
    /// Delete one task (and its request-index entries).
    Delete {
        /// The task id.
        id: String,
    },
}

/// What `docs` does, on any namespace.
#[derive(Debug, clap::Subcommand)]
pub enum Docs {
    /// List a namespace's documents by key.
    List {
        /// The namespace (`task` holds the tasks).
        namespace: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one document: its bytes (as JSON when they are), version, expiry.
    Get {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
}

type Outcome = Result<ExitCode, Box<dyn std::error::Error>>;

pub async fn tasks(command: &Tasks, settings: &Settings, factory: &Factory, json: bool) -> Outcome {
    let (store, opened) = demo::open_task_store(factory, settings).await?;
    let backend = opened.backend;
    let ns = settings.task_store.namespace();
    match command {
        Tasks::List { request_id, limit } => {
            let entries = match request_id {
                Some(rid) => {
                    let mut keys = backend.lookup(ns, REQUEST_INDEX, rid).await?;
                    keys.truncate(*limit);
                    let docs = backend.get_many(ns, &keys).await;
                    let mut entries = Vec::with_capacity(keys.len());
                    for (key, doc) in keys.into_iter().zip(docs) {
                        if let Some(doc) = doc? {
                            entries.push((key, doc));
                        }
                    }
                    entries
                }
                None => page(&backend, ns, *limit).await?,
            };
            let rows: Vec<Value> = entries.iter().map(|(k, d)| task_row(k, d)).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut t = table(&[
                    "task",
                    "status",
                    "items",
                    "request ids",
                    "version",
                    "expires",
                ]);
                for r in &rows {
                    t.add_row(vec![
                        text(&r["task_id"]).into(),
                        text(&r["status"]).into(),
                        right(text(&r["items"])),
                        text(&r["request_ids"]).into(),
                        right(text(&r["version"])),
                        text(&r["expires"]).into(),
                    ]);
                }
                println!("{t}");
                println!("{} tasks shown (--limit {limit})", rows.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Tasks::Show { id } => match backend.get(ns, id).await? {
            Some(doc) => {
                let mut out = task_row(id, &doc);
                out["task"] = serde_json::from_slice(&doc.value)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&doc.value).into()));
                if json {
                    println!("{}", serde_json::to_string_pretty(&out)?);
                } else {
                    println!("task     : {id}");
                    println!("status   : {}", text(&out["status"]));
                    println!("version  : {}", text(&out["version"]));
                    println!("expires  : {}", text(&out["expires"]));
                    println!("requests : {}", text(&out["request_ids"]));
                    println!("{}", serde_json::to_string_pretty(&out["task"])?);
                }
                Ok(ExitCode::SUCCESS)
            }
            None => Err(format!("no task {id:?} in namespace {ns:?}").into()),
        },
        Tasks::Delete { id } => {
            store.delete(id).await?;
            if json {
                println!("{}", json!({ "deleted": id }));
            } else {
                println!("deleted task {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn docs(command: &Docs, settings: &Settings, factory: &Factory, json: bool) -> Outcome {
    let (_, opened) = demo::open_task_store(factory, settings).await?;
    let backend = opened.backend;
    match command {
        Docs::List { namespace, limit } => {
            let entries = page(&backend, namespace, *limit).await?;
            let rows: Vec<Value> = entries
                .iter()
                .map(|(key, doc)| {
                    json!({
                        "key": key,
                        "bytes": doc.value.len(),
                        "version": doc.version.0,
                        "expires": expires(doc),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut t = table(&["key", "bytes", "version", "expires"]);
                for r in &rows {
                    t.add_row(vec![
                        text(&r["key"]).into(),
                        right(text(&r["bytes"])),
                        right(text(&r["version"])),
                        text(&r["expires"]).into(),
                    ]);
                }
                println!("{t}");
                println!("{} documents shown (--limit {limit})", rows.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Docs::Get { namespace, key } => match backend.get(namespace, key).await? {
            Some(doc) => {
                let value = serde_json::from_slice::<Value>(&doc.value).ok();
                let out = json!({
                    "namespace": namespace,
                    "key": key,
                    "version": doc.version.0,
                    "expires": expires(&doc),
                    "json": value.is_some(),
                    "value": value.unwrap_or_else(|| String::from_utf8_lossy(&doc.value).into()),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                Ok(ExitCode::SUCCESS)
            }
            None => Err(format!("no document {key:?} in namespace {namespace:?}").into()),
        },
    }
}

/// The first `limit` documents of `ns` by key (needs a backend that scans).
async fn page(
    backend: &SharedBackend,
    ns: &str,
    limit: usize,
) -> Result<Vec<(String, Document)>, persistence_core::Error> {
    let page = backend
        .scan(ns, ScanRequest::first(ScanOrder::Key, limit.max(1)))
        .await?;
    Ok(page.entries)
}

/// One task as a row; a document that does not decode says so (and is
/// still listed, never hidden).
fn task_row(key: &str, doc: &Document) -> Value {
    match serde_json::from_slice::<AgentTask>(&doc.value) {
        Ok(task) => json!({
            "task_id": task.task_id,
            "status": format!("{:?}", task.status),
            "items": task.items.len(),
            "request_ids": task.request_ids().join(","),
            "version": doc.version.0,
            "expires": expires(doc),
        }),
        Err(e) => json!({
            "task_id": key,
            "status": format!("CORRUPTED ({} bytes: {e})", doc.value.len()),
            "items": 0,
            "request_ids": "",
            "version": doc.version.0,
            "expires": expires(doc),
        }),
    }
}

/// Seconds until expiry, or `never`.
fn expires(doc: &Document) -> Value {
    match doc.expires_at {
        None => Value::String("never".into()),
        Some(at) => {
            let left = at
                .duration_since(SystemTime::now())
                .map_or(0, |d| d.as_secs());
            Value::String(format!("in {left} s"))
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
