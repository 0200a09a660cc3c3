//! Sharing round trips: plain commands issued at the same time on one
//! connection leave in one write.
//!
//! redis-rs's multiplexed connection writes whatever is queued when its
//! driver task runs. On a multi-threaded tokio runtime a task that sends a
//! command wakes that driver into the worker's LIFO slot, so the driver
//! runs straight after each sender and finds one command: many concurrent
//! readers cost one `writev` each on the client (and one read each on the
//! server) where one would do. This module puts a task of its own in
//! front: it takes the first waiting command, yields once so that every
//! task already runnable on the runtime adds its own, then sends all of
//! them as one pipeline and hands each caller its own reply.
//!
//! Only where the client is what limits. A command issued while no other
//! is waiting for its reply goes straight to the connection, so a caller
//! working alone pays nothing (no task hop, no yield). Script calls
//! (`EVALSHA`, `EVAL`, `FCALL`: the writes) go straight too: each keeps the
//! server busy for tens of microseconds, so the server is what limits
//! them, and a batch of them leaves it idle while the client gathers the
//! next (measured: 32 concurrent Rust updates 10–25 % slower batched, and
//! Python loads 35–65 % faster; `docs/redis.md`).
//!
//! What a caller sees is unchanged: its reply, or its server error (a
//! pipeline that is not a transaction answers each command separately, so
//! one command's error is not another's), in the order it issued them (a
//! caller awaits each reply before its next command). A failure of the
//! connection itself (reset, timeout) reaches every command of the batch,
//! as it would have reached each of them unbatched. Pipelines and
//! transactions the backend builds itself go straight to the connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Arg, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};

/// The most commands one write carries; the rest wait for the next.
const MAX_BATCH: usize = 256;

struct Request {
    cmd: Cmd,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// A [`ConnectionManager`] whose plain commands are coalesced into
/// pipelines by a task of its own (spawned on the runtime that connects,
/// like the manager's own driver).
#[derive(Clone)]
pub struct Coalescing {
    con: ConnectionManager,
    requests: mpsc::UnboundedSender<Request>,
    /// Commands issued through `req_packed_command` and not yet answered,
    /// on every clone.
    waiting: Arc<AtomicUsize>,
}

/// Counts a command as waiting for as long as it lives.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Coalescing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescing").finish_non_exhaustive()
    }
}

impl Coalescing {
    /// Starts the coalescing task for `con` on the current runtime. The
    /// task ends when the last clone of the returned connection is dropped.
    pub fn new(con: ConnectionManager) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive(con.clone(), queue));
        Coalescing {
            con,
            requests,
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// Whether `cmd` runs a script or a function.
fn is_script(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(Arg::Simple(name)) => [&b"EVALSHA"[..], b"EVAL", b"FCALL"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s)),
        _ => false,
    }
}

fn stopped() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the connection's coalescing task has stopped (its runtime shut down)",
    ))
}

impl ConnectionLike for Coalescing {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let alone = self.waiting.fetch_add(1, Ordering::AcqRel) == 0;
        let waiting = Waiting(self.waiting.clone());
        if alone || is_script(cmd) {
            return async move {
                let _waiting = waiting;
                self.con.req_packed_command(cmd).await
            }
            .boxed();
        }
        let (reply, answer) = oneshot::channel();
        let sent = self.requests.send(Request {
            cmd: cmd.clone(),
            reply,
        });
        async move {
            let _waiting = waiting;
            sent.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.con.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.con.get_db()
    }
}

/// Takes the waiting commands in batches of at most [`MAX_BATCH`] and
/// sends each batch without waiting for the one before (the connection
/// pipelines them), until every sender is gone.
async fn drive(con: ConnectionManager, mut queue: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = queue.recv().await {
        // Let the tasks that are runnable now queue their commands too:
        // a yielded task runs again once the worker has nothing else to do.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        tokio::spawn(send(con.clone(), batch));
    }
}

async fn send(mut con: ConnectionManager, mut batch: Vec<Request>) {
    if batch.len() == 1 {
        let Request { cmd, reply } = batch.pop().expect("one request");
        let _ = reply.send(con.req_packed_command(&cmd).await);
        return;
    }
    let mut pipeline = Pipeline::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for Request { cmd, reply } in batch {
        pipeline.add_command(cmd);
        replies.push(reply);
    }
    let answers = con
        .req_packed_commands(&pipeline, 0, replies.len())
        .await
        .and_then(|values| {
            if values.len() == replies.len() {
                Ok(values)
            } else {
                Err(RedisError::from((
                    redis::ErrorKind::Client,
                    "a pipeline answered with the wrong number of replies",
                    format!("{} replies to {} commands", values.len(), replies.len()),
                )))
            }
        });
    match answers {
        Ok(values) => {
            for (reply, value) in replies.into_iter().zip(values) {
                let _ = reply.send(Ok(value));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
