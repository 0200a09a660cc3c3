//! Appends made to one stream at the same moment share one script call.
//!
//! The first append to a stream with no batch forming leads: it yields
//! once, so that appends made at the same moment (other tasks of the same
//! run) join its batch, then sends the batch in one script call, in
//! arrival order, and answers each caller with its own offset. The next
//! append starts a new batch at once: batches do not wait for each other,
//! and several may be in flight. That keeps every ordering the contract
//! promises without relying on the connection's order: a caller's next
//! append comes only after its previous one was answered, so it is in a
//! batch sent after that one ran, and each batch's script is atomic.
//!
//! A lone appender pays one round trip as before (and one yield); 32
//! concurrent appenders to one run pay far fewer script calls than
//! appends. A leader dropped while it yields (a timeout) still sends its
//! batch; a batch of several is sent on a task of its own, so no caller's
//! giving up strands the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use parking_lot::Mutex;
use persistence_core::streams::Offset;
use persistence_core::{Error, Result};
use redis::Script;
use tokio::sync::oneshot;

use crate::streams::{parse_id, Inner};

/// Most events one script call appends; more start another batch.
pub(crate) const MAX_BATCH: usize = 256;

/// KEYS: the stream. ARGV: max length, min id ('' = none), then the events.
/// Returns {'ok', id...} (one id per event, in order) or {'closed', reason}.
/// Trimming records the newest trimmed id as the stream's
/// `max-deleted-entry-id` (`XSETID`), which is how a reader learns it
/// missed events (Redis does not record trims).
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key, maxlen = KEYS[1], tonumber(ARGV[1])
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
if last[1] and last[1][2][1] == 'end' then return {'closed', last[1][2][2]} end
local out = {'ok'}
for i = 3, #ARGV do out[#out + 1] = redis.call('XADD', key, '*', 'd', ARGV[i]) end
local id = out[#out]
local trimmed = nil
local over = redis.call('XLEN', key) - maxlen
if over > 0 then
  local old = redis.call('XRANGE', key, '-', '+', 'COUNT', over)
  trimmed = old[#old][1]
  redis.call('XTRIM', key, 'MAXLEN', maxlen)
end
if ARGV[2] ~= '' then
  local below = redis.call('XREVRANGE', key, '(' .. ARGV[2], '-', 'COUNT', 1)
  if below[1] then
    trimmed = below[1][1]
    redis.call('XTRIM', key, 'MINID', ARGV[2])
  end
end
if trimmed then redis.call('XSETID', key, id, 'MAXDELETEDID', trimmed) end
return out
"#,
    )
});

/// The batches forming, by stream key: present from a leader's arrival
/// until it takes its batch.
#[derive(Debug, Default)]
pub(crate) struct Batches {
    forming: Mutex<HashMap<String, Vec<Waiting>>>,
    next: AtomicU64,
}

#[derive(Debug)]
struct Waiting {
    id: u64,
    data: Bytes,
    answer: oneshot::Sender<Result<Offset>>,
}

/// Appends `data` to `stream` (Redis key `key`).
pub(crate) async fn append(
    inner: &Arc<Inner>,
    stream: &str,
    key: String,
    data: Bytes,
) -> Result<Offset> {
    let (answer, receiver) = oneshot::channel();
    let id = inner.batches.next.fetch_add(1, Ordering::Relaxed);
    let (leads, full) = {
        let mut forming = inner.batches.forming.lock();
        match forming.get_mut(&key) {
            Some(batch) if batch.len() < MAX_BATCH => {
                batch.push(Waiting { id, data, answer });
                (false, None)
            }
            // none forming, or a full one: this append starts the next
            // (and sends the full one on its way)
            _ => (
                true,
                forming.insert(key.clone(), vec![Waiting { id, data, answer }]),
            ),
        }
    };
    if let Some(full) = full {
        tokio::spawn(send_owned(
            inner.clone(),
            stream.to_string(),
            key.clone(),
            full,
        ));
    }
    if leads {
        let mut leader = Leader {
            inner: inner.clone(),
            stream: stream.to_string(),
            key,
            taken: false,
        };
        tokio::task::yield_now().await;
        let batch = leader.take();
        if batch.len() == 1 && batch[0].id == id {
            // alone: no one else waits on this call, so it runs here
            send(inner, stream, &leader.key, batch).await;
        } else if !batch.is_empty() {
            let (stream, key) = (leader.stream.clone(), leader.key.clone());
            tokio::spawn(send_owned(inner.clone(), stream, key, batch));
        }
    }
    receiver.await.unwrap_or_else(|_| {
        Err(Error::Internal {
            backend: "redis".into(),
            message: format!("stream append to {stream:?}: the batch was dropped"),
        })
    })
}

/// A batch's leader: takes what is forming when its yield is over, or
/// sends it from a task of its own if dropped before.
struct Leader {
    inner: Arc<Inner>,
    stream: String,
    key: String,
    taken: bool,
}

impl Leader {
    /// What is forming for the key: this leader's batch, or (when a full
    /// one was sent on meanwhile) the next one; whoever takes a batch sends
    /// it, and a later taker finds nothing.
    fn take(&mut self) -> Vec<Waiting> {
        self.taken = true;
        let mut forming = self.inner.batches.forming.lock();
        forming.remove(&self.key).unwrap_or_default()
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let batch = self.take();
        // without a runtime (shutting down) the waiters get an error, not a hang
        if let (false, Ok(runtime)) = (batch.is_empty(), tokio::runtime::Handle::try_current()) {
            let (inner, stream, key) = (
                self.inner.clone(),
                std::mem::take(&mut self.stream),
                std::mem::take(&mut self.key),
            );
            runtime.spawn(send_owned(inner, stream, key, batch));
        }
    }
}

async fn send_owned(inner: Arc<Inner>, stream: String, key: String, batch: Vec<Waiting>) {
    send(&inner, &stream, &key, batch).await;
}

/// Sends `batch` in one call and answers each of its callers.
async fn send(inner: &Inner, stream: &str, key: &str, batch: Vec<Waiting>) {
    let data: Vec<&Bytes> = batch.iter().map(|w| &w.data).collect();
    match call(inner, stream, key, &data).await {
        Ok(offsets) => {
            for (w, offset) in batch.into_iter().zip(offsets) {
                let _ = w.answer.send(Ok(offset));
            }
        }
        Err(e) => {
            for w in batch {
                let _ = w.answer.send(Err(e.clone()));
            }
        }
    }
}

/// One script call appending `data` in order: an offset per event.
async fn call(inner: &Inner, stream: &str, key: &str, data: &[&Bytes]) -> Result<Vec<Offset>> {
    let min_id = match inner.retention.max_age {
        None => String::new(),
        Some(age) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            now.saturating_sub(age.as_millis() as u64).to_string()
        }
    };
    let mut invocation = APPEND.key(key);
    invocation.arg(inner.retention.max_len.max(1)).arg(min_id);
    for d in data {
        invocation.arg(&d[..]);
    }
    let mut con = inner.backend.con.clone();
    inner.append_calls.fetch_add(1, Ordering::Relaxed);
    let reply: Vec<String> = invocation
        .invoke_async(&mut con)
        .await
        .map_err(|e| inner.error("stream append", e))?;
    match reply.first().map(String::as_str) {
        Some("ok") if reply.len() == data.len() + 1 => {
            inner
                .appended
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            reply[1..].iter().map(|id| parse_id(id)).collect()
        }
        Some("closed") => Err(Error::StreamClosed {
            stream: stream.to_string(),
            reason: reply.get(1).cloned().unwrap_or_default(),
        }),
        _ => Err(Error::Internal {
            backend: "redis".into(),
            message: format!("stream append: unexpected reply {reply:?}"),
        }),
    }
}
