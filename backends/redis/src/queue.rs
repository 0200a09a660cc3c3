//! The run queue on Redis: many processes and hosts share one queue.
//!
//! Sorted sets and one hash per job, changed by Lua scripts: every call is
//! one script (one round trip, atomic on the server, timed by the server's
//! clock), so fencing checks and the change they guard cannot be split,
//! and concurrent sweepers cannot do one job's work twice. Every key of a
//! queue shares the hash tag `{{prefix}:~q:{len}:{name}}`, so on a cluster
//! one queue lives in one slot. `docs/queue.md` has the layout and why
//! sorted sets rather than Streams consumer groups.
//!
//! A claim that finds nothing waits in `BLPOP` on the queue's wake-up list
//! (every newly claimable job pushes one token) on a connection of its own,
//! never the shared multiplexed one, at most [`MAX_BLOCKED`] at a time per
//! process, each block at most 2 s (or until the next delayed job or lease
//! expiry), then claims again.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use persistence_core::backend::Health;
use persistence_core::queue::{
    check_result_len, lease_lost, CancelOutcome, Enqueued, FailOutcome, Heartbeat, JobState,
    JobStatus, Lease, ListFilter, NewJob, Priority, QueueOptions, QueueStats, RunQueue,
    SweepReport,
};
use persistence_core::streams::{Cancellation, EventStreams, Retention};
use persistence_core::{Backend, Error, Result};
use redis::Script;
use tokio::sync::Semaphore;

use crate::backend::RedisBackend;
use crate::streams::RedisStreams;

/// Claims blocked waiting for a job at once in one process (each holds a
/// connection of its own); more wait for a slot.
pub const MAX_BLOCKED: usize = 64;

/// The longest one `BLPOP` blocks before the claim looks again.
const BLOCK: Duration = Duration::from_secs(2);

/// Jobs one sweep script call handles per step; a sweep repeats the call
/// while a step was full.
const SWEEP_BATCH: u64 = 500;

/// Lua every queue script starts with. ARGV[1] is always the queue's key
/// base; every key is built from it, so all share its hash tag.
const PRELUDE: &str = r#"
local base = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function num(x) return string.format('%.0f', x) end
local BOOST = {high = 2, normal = 1, low = 0}
local PRIORITIES = {'high', 'normal', 'low'}
local ENDED = {'completed', 'failed', 'dead', 'cancelled'}
local function job_key(id) return base .. ':j:' .. id end
local function ready_key(p) return base .. ':r:' .. p end
local function ended_key(s) return base .. ':e:' .. s end
local DELAYED, LEASES, WORKERS, WAKE = base .. ':delayed', base .. ':leases', base .. ':workers', base .. ':wake'
-- place in line: ready time aged by priority, then enqueue order
local function score(p, ready, seq, step)
  return (ready + step * (2 - BOOST[p])) * 1024 + (seq % 1024)
end
local function make_ready(id, j, step)
  local p, r, q = unpack(redis.call('HMGET', j, 'p', 'r', 'q'))
  redis.call('ZADD', ready_key(p), num(score(p, tonumber(r), tonumber(q), step)), id)
  redis.call('RPUSH', WAKE, 1)
  redis.call('LTRIM', WAKE, -64, -1)
end
local function to_pending(id, j, ready, now, step)
  redis.call('HSET', j, 's', 'pending', 'r', num(ready), 'u', num(now))
  redis.call('HDEL', j, 'd')
  if ready > now then redis.call('ZADD', DELAYED, num(ready), id) else make_ready(id, j, step) end
end
local function to_ended(id, j, state, now)
  redis.call('HSET', j, 's', state, 'u', num(now))
  redis.call('HDEL', j, 'd')
  redis.call('ZADD', ended_key(state), num(now), id)
end
local function expire(now, step, max)
  local ids = redis.call('ZRANGEBYSCORE', LEASES, '-inf', '(' .. num(now), 'LIMIT', 0, max)
  local rq, dd, cc = 0, 0, 0
  for _, id in ipairs(ids) do
    redis.call('ZREM', LEASES, id)
    local j = job_key(id)
    local a, m, c, w = unpack(redis.call('HMGET', j, 'a', 'm', 'c', 'w'))
    if c == '1' then
      to_ended(id, j, 'cancelled', now); cc = cc + 1
    elseif tonumber(a) >= tonumber(m) then
      redis.call('HSET', j, 'x', 'the lease of ' .. tostring(w) .. ' expired on the last attempt')
      to_ended(id, j, 'dead', now); dd = dd + 1
    else
      redis.call('HSET', j, 'x', 'the lease of ' .. tostring(w) .. ' expired')
      to_pending(id, j, now, now, step); rq = rq + 1
    end
  end
  return rq, dd, cc, #ids
end
local function promote(now, step, max)
  local ids = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', num(now), 'LIMIT', 0, max)
  for _, id in ipairs(ids) do
    redis.call('ZREM', DELAYED, id)
    make_ready(id, job_key(id), step)
  end
  return #ids
end
-- nil if token `tok` is job `j`'s live lease, else why not
local function check(j, tok)
  local s, t = unpack(redis.call('HMGET', j, 's', 't'))
  if not s then return 'the job is no longer known' end
  if s ~= 'running' then return 'the job is ' .. s .. ' now' end
  if t ~= tok then return 'the job was leased again (token ' .. tostring(t) .. ')' end
  return nil
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// ARGV: base, id, payload, priority, not-before ms or '', max attempts, step ms.
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
local j = job_key(id)
local s = redis.call('HGET', j, 's')
if s then return {'exists', s} end
local now, step = now_ms(), tonumber(ARGV[7])
local ready = now
if ARGV[5] ~= '' then ready = math.max(now, tonumber(ARGV[5])) end
local seq = redis.call('INCR', base .. ':seq')
redis.call('HSET', j, 'p', ARGV[4], 'a', 0, 'm', ARGV[6], 'e', num(now), 'c', 0, 'q', seq, 't', 0, 'pl', ARGV[3])
to_pending(id, j, ready, now, step)
return {'created'}
"#,
    )
});

/// ARGV: base, worker, lease ms, step ms. Returns {'job', id, payload,
/// priority, attempt, token, deadline} or {'none', ms until something is due or -1}.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now, step = now_ms(), tonumber(ARGV[4])
expire(now, step, 32)
promote(now, step, 64)
local best, best_score, best_p
for _, p in ipairs(PRIORITIES) do
  local head = redis.call('ZRANGE', ready_key(p), 0, 0, 'WITHSCORES')
  if head[1] and (not best_score or tonumber(head[2]) < best_score) then
    best, best_score, best_p = head[1], tonumber(head[2]), p
  end
end
if not best then
  local due = -1
  local d = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  if d[1] then due = tonumber(d[2]) - now end
  local l = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
  if l[1] then
    local x = tonumber(l[2]) + 1 - now
    if due < 0 or x < due then due = x end
  end
  return {'none', num(due)}
end
redis.call('ZREM', ready_key(best_p), best)
local j = job_key(best)
local tok = redis.call('INCR', base .. ':token')
local a = redis.call('HINCRBY', j, 'a', 1)
local deadline = now + tonumber(ARGV[3])
redis.call('HSET', j, 's', 'running', 'w', ARGV[2], 'd', num(deadline), 'u', num(now), 't', tok)
redis.call('ZADD', LEASES, num(deadline), best)
redis.call('HSET', WORKERS, ARGV[2], num(now))
return {'job', best, redis.call('HGET', j, 'pl'), best_p, tostring(a), tostring(tok), num(deadline)}
"#,
    )
});

/// ARGV: base, id, token, extend ms, worker.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local j = job_key(ARGV[2])
local why = check(j, ARGV[3])
if why then return {'lost', why} end
local now = now_ms()
local d = now + tonumber(ARGV[4])
redis.call('HSET', j, 'd', num(d))
redis.call('ZADD', LEASES, num(d), ARGV[2])
redis.call('HSET', WORKERS, ARGV[5], num(now))
return {'ok', num(d), redis.call('HGET', j, 'c')}
"#,
    )
});

/// ARGV: base, id, token, '1' with a result / '0', result.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
local j = job_key(id)
local why = check(j, ARGV[3])
if why then return {'lost', why} end
redis.call('ZREM', LEASES, id)
if ARGV[4] == '1' then redis.call('HSET', j, 'rs', ARGV[5]) else redis.call('HDEL', j, 'rs') end
to_ended(id, j, 'completed', now_ms())
return {'ok'}
"#,
    )
});

/// ARGV: base, id, token, error, backoff base ms, backoff max ms, step ms.
static FAIL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
local j = job_key(id)
local why = check(j, ARGV[3])
if why then return {'lost', why} end
local now, step = now_ms(), tonumber(ARGV[7])
redis.call('ZREM', LEASES, id)
redis.call('HSET', j, 'x', ARGV[4])
local a, m, c = unpack(redis.call('HMGET', j, 'a', 'm', 'c'))
a, m = tonumber(a), tonumber(m)
if c == '1' then to_ended(id, j, 'cancelled', now); return {'ok', 'cancelled'} end
if a >= m then to_ended(id, j, 'dead', now); return {'ok', 'dead'} end
local doublings = math.min(math.max(a - 1, 0), 30)
local backoff = math.min(tonumber(ARGV[5]) * (2 ^ doublings), tonumber(ARGV[6]))
local at = now + backoff
to_pending(id, j, at, now, step)
return {'ok', 'retry', num(at)}
"#,
    )
});

/// ARGV: base, id, token, step ms.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
local j = job_key(id)
local why = check(j, ARGV[3])
if why then return {'lost', why} end
local now = now_ms()
redis.call('ZREM', LEASES, id)
if redis.call('HGET', j, 'c') == '1' then
  to_ended(id, j, 'cancelled', now)
else
  if tonumber(redis.call('HGET', j, 'a')) > 0 then redis.call('HINCRBY', j, 'a', -1) end
  to_pending(id, j, now, now, tonumber(ARGV[4]))
end
return {'ok'}
"#,
    )
});

/// ARGV: base, id.
static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local id = ARGV[2]
local j = job_key(id)
local s, p = unpack(redis.call('HMGET', j, 's', 'p'))
if not s then return {'none'} end
if s == 'pending' then
  redis.call('ZREM', DELAYED, id)
  redis.call('ZREM', ready_key(p), id)
  redis.call('HSET', j, 'c', 1)
  to_ended(id, j, 'cancelled', now_ms())
  return {'cancelled'}
end
if s == 'running' then redis.call('HSET', j, 'c', 1); return {'signalled'} end
return {'ended', s}
"#,
    )
});

/// ARGV: base, step ms, pending timeout ms or -1, retention ms, batch.
/// Returns {requeued, dead, cancelled, failed, purged, '1' if a step was full}.
static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now, step, max = now_ms(), tonumber(ARGV[2]), tonumber(ARGV[5])
local rq, dd, cc, n = expire(now, step, max)
local full = n == max or promote(now, step, max) == max
local failed = 0
local timeout = tonumber(ARGV[3])
if timeout >= 0 then
  local limit = now - timeout
  for _, p in ipairs(PRIORITIES) do
    local bound = (limit + step * (2 - BOOST[p])) * 1024 + 1024
    local ids = redis.call('ZRANGEBYSCORE', ready_key(p), '-inf', '(' .. num(bound), 'LIMIT', 0, max)
    if #ids == max then full = true end
    for _, id in ipairs(ids) do
      local j = job_key(id)
      if tonumber(redis.call('HGET', j, 'r')) < limit then
        redis.call('ZREM', ready_key(p), id)
        redis.call('HSET', j, 'x', 'pending longer than ' .. ARGV[3] .. ' ms')
        to_ended(id, j, 'failed', now)
        failed = failed + 1
      end
    end
  end
end
local purged = 0
local before = now - tonumber(ARGV[4])
for _, s in ipairs(ENDED) do
  local ids = redis.call('ZRANGEBYSCORE', ended_key(s), '-inf', '(' .. num(before), 'LIMIT', 0, max)
  if #ids == max then full = true end
  for _, id in ipairs(ids) do
    redis.call('DEL', job_key(id))
    redis.call('ZREM', ended_key(s), id)
    purged = purged + 1
  end
end
local workers = redis.call('HGETALL', WORKERS)
for i = 1, #workers, 2 do
  if tonumber(workers[i + 1]) < before then redis.call('HDEL', WORKERS, workers[i]) end
end
local more = '0'
if full then more = '1' end
return {tostring(rq), tostring(dd), tostring(cc), tostring(failed), tostring(purged), more}
"#,
    )
});

/// ARGV: base, step ms, batch. Returns how many dead jobs went back.
static REQUEUE_DEAD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now, step = now_ms(), tonumber(ARGV[2])
local ids = redis.call('ZRANGE', ended_key('dead'), 0, tonumber(ARGV[3]) - 1)
for _, id in ipairs(ids) do
  local j = job_key(id)
  redis.call('ZREM', ended_key('dead'), id)
  redis.call('HSET', j, 'a', 0)
  to_pending(id, j, now, now, step)
end
return {tostring(#ids)}
"#,
    )
});

/// ARGV: base, step ms. Returns {ready high, normal, low, delayed,
/// running, completed, failed, dead, cancelled, oldest ready ms or -1,
/// now, workers...}.
static STATS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now, step = now_ms(), tonumber(ARGV[2])
promote(now, step, 1000)
local out = {}
local oldest = -1
for _, p in ipairs(PRIORITIES) do
  out[#out + 1] = tostring(redis.call('ZCARD', ready_key(p)))
  local head = redis.call('ZRANGE', ready_key(p), 0, 0)
  if head[1] then
    local r = tonumber(redis.call('HGET', job_key(head[1]), 'r'))
    if oldest < 0 or r < oldest then oldest = r end
  end
end
out[#out + 1] = tostring(redis.call('ZCARD', DELAYED))
out[#out + 1] = tostring(redis.call('ZCARD', LEASES))
for _, s in ipairs(ENDED) do out[#out + 1] = tostring(redis.call('ZCARD', ended_key(s))) end
out[#out + 1] = num(oldest)
out[#out + 1] = num(now)
for _, v in ipairs(redis.call('HGETALL', WORKERS)) do out[#out + 1] = v end
return out
"#,
    )
});

/// ARGV: base, batch. Removes up to a batch of jobs from each index and
/// returns how many; the counters stay (tokens keep increasing).
static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local max, n = tonumber(ARGV[2]), 0
local sets = {DELAYED, LEASES}
for _, p in ipairs(PRIORITIES) do sets[#sets + 1] = ready_key(p) end
for _, s in ipairs(ENDED) do sets[#sets + 1] = ended_key(s) end
for _, set in ipairs(sets) do
  for _, id in ipairs(redis.call('ZRANGE', set, 0, max - 1)) do
    redis.call('DEL', job_key(id))
    redis.call('ZREM', set, id)
    n = n + 1
  end
end
if n == 0 then redis.call('DEL', WORKERS, WAKE) end
return {tostring(n)}
"#,
    )
});

/// The status fields, in the order `status_of` reads them.
const FIELDS: [&str; 13] = [
    "s", "p", "a", "m", "e", "r", "u", "w", "d", "c", "x", "rs", "q",
];

/// ARGV: base, state or '', limit. Returns, per job, its id then its
/// [`FIELDS`] (oldest first within each index).
static LIST: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local limit = tonumber(ARGV[3])
local sets = {}
local want = ARGV[2]
if want == '' or want == 'pending' then
  for _, p in ipairs(PRIORITIES) do sets[#sets + 1] = ready_key(p) end
  sets[#sets + 1] = DELAYED
end
if want == '' or want == 'running' then sets[#sets + 1] = LEASES end
for _, s in ipairs(ENDED) do
  if want == '' or want == s then sets[#sets + 1] = ended_key(s) end
end
local out = {}
for _, set in ipairs(sets) do
  for _, id in ipairs(redis.call('ZRANGE', set, 0, limit - 1)) do
    out[#out + 1] = {id, redis.call('HMGET', job_key(id), 's', 'p', 'a', 'm', 'e', 'r', 'u', 'w', 'd', 'c', 'x', 'rs', 'q')}
  end
end
return out
"#,
    )
});

/// The run queue on a Redis. Made by [`RedisBackend::queue`].
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

struct Inner {
    backend: RedisBackend,
    name: String,
    base: String,
    options: QueueOptions,
    streams: RedisStreams,
    blocked: Semaphore,
    /// Idle connections for blocking waits.
    idle: Mutex<Vec<RedisBackend>>,
    blocking: crate::options::RedisOptions,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("name", &self.inner.name)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn lp(s: &str) -> String {
    format!("{}:{s}", s.len())
}

impl RedisBackend {
    /// The run queue `name` on this Redis, with `options`.
    pub fn queue(&self, name: &str, options: QueueOptions) -> RedisQueue {
        let mut blocking = (*self.options).clone();
        blocking.command_timeout = BLOCK + self.options.command_timeout;
        RedisQueue {
            inner: Arc::new(Inner {
                backend: self.clone(),
                name: name.to_string(),
                base: format!("{{{}:~q:{}}}", self.layout.prefix(), lp(name)),
                options,
                streams: self.streams(Retention::default()),
                blocked: Semaphore::new(MAX_BLOCKED),
                idle: Mutex::new(Vec::new()),
                blocking,
            }),
        }
    }
}

type Reply = Vec<redis::Value>;

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bytes(v: &redis::Value) -> Option<Bytes> {
    match v {
        redis::Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        _ => None,
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Inner {
    fn step(&self) -> u64 {
        ms(self.options.priority_step)
    }

    fn unexpected(&self, op: &str, reply: &Reply) -> Error {
        Error::Internal {
            backend: "redis".into(),
            message: format!("queue {op}: unexpected reply {reply:?}"),
        }
    }

    fn corrupted(&self, id: &str, what: &str) -> Error {
        Error::Corrupted {
            namespace: format!("queue {}", self.name),
            key: id.to_string(),
            reason: what.to_string(),
            len: 0,
        }
    }

    async fn run(&self, op: &str, script: &Script, args: &[&[u8]]) -> Result<Reply> {
        let mut call = script.prepare_invoke();
        // the first key routes the call on a cluster: any key of the queue
        call.key(format!("{}:wake", self.base));
        call.arg(self.base.as_bytes());
        for a in args {
            call.arg(*a);
        }
        let mut con = self.backend.con.clone();
        call.invoke_async(&mut con)
            .await
            .map_err(|e| self.backend.error(&format!("queue {op}"), e))
    }

    /// The reply of a lease call: `Ok(rest)` after 'ok', or `LeaseLost`.
    fn leased(&self, op: &str, lease: &Lease, reply: Reply) -> Result<Reply> {
        match reply.first().and_then(text).as_deref() {
            Some("ok") => Ok(reply[1..].to_vec()),
            Some("lost") => Err(lease_lost(
                lease,
                &reply.get(1).and_then(text).unwrap_or_default(),
            )),
            _ => Err(self.unexpected(op, &reply)),
        }
    }

    /// Waits up to `wait` for a wake-up token, on a connection of its own.
    async fn wait_wake(&self, wait: Duration) -> Result<()> {
        let Ok(_slot) = tokio::time::timeout(wait, self.blocked.acquire()).await else {
            return Ok(());
        };
        let popped = self.idle.lock().pop();
        let waiter = match popped {
            Some(w) => w,
            None => RedisBackend::connect(self.blocking.clone()).await?,
        };
        let secs = wait.clamp(Duration::from_millis(10), BLOCK).as_secs_f64();
        let mut con = waiter.con.clone();
        let r: redis::RedisResult<Option<(String, String)>> = redis::cmd("BLPOP")
            .arg(format!("{}:wake", self.base))
            .arg(format!("{secs:.3}"))
            .query_async(&mut con)
            .await;
        match r {
            Ok(_) => {
                self.idle.lock().push(waiter);
                Ok(())
            }
            Err(e) => Err(self.backend.error("queue claim wait", e)),
        }
    }

    fn status_of(&self, id: &str, f: &[redis::Value]) -> Result<Option<JobStatus>> {
        let get = |i: usize| f.get(i).and_then(text);
        let Some(state) = get(0) else {
            return Ok(None);
        };
        let number = |i: usize, what: &str| -> Result<u64> {
            get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| self.corrupted(id, &format!("{what} is not a number")))
        };
        Ok(Some(JobStatus {
            id: id.to_string(),
            state: state
                .parse()
                .map_err(|_| self.corrupted(id, &format!("unknown state {state:?}")))?,
            priority: get(1)
                .and_then(|p| p.parse::<Priority>().ok())
                .ok_or_else(|| self.corrupted(id, "unknown priority"))?,
            attempts: number(2, "attempts")? as u32,
            max_attempts: number(3, "max attempts")? as u32,
            enqueued_ms: number(4, "enqueue time")?,
            ready_ms: number(5, "ready time")?,
            updated_ms: number(6, "update time")?,
            worker: get(7),
            lease_deadline_ms: get(8).and_then(|d| d.parse().ok()),
            cancel_requested: get(9).as_deref() == Some("1"),
            error: get(10),
            result: f.get(11).and_then(bytes),
        }))
    }
}

#[async_trait]
impl RunQueue for RedisQueue {
    fn name(&self) -> &str {
        "redis"
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        job.validate()?;
        let i = &self.inner;
        let not_before = job.not_before_ms.map(|t| t.to_string()).unwrap_or_default();
        let attempts = job
            .max_attempts
            .unwrap_or(i.options.max_attempts)
            .to_string();
        let reply = i
            .run(
                "enqueue",
                &ENQUEUE,
                &[
                    job.id.as_bytes(),
                    &job.payload,
                    job.priority.as_str().as_bytes(),
                    not_before.as_bytes(),
                    attempts.as_bytes(),
                    i.step().to_string().as_bytes(),
                ],
            )
            .await?;
        match reply.first().and_then(text).as_deref() {
            Some("created") => Ok(Enqueued::Created),
            Some("exists") => {
                let s = reply.get(1).and_then(text).unwrap_or_default();
                Ok(Enqueued::Exists(
                    s.parse()
                        .map_err(|_| i.corrupted(&job.id, "unknown state"))?,
                ))
            }
            _ => Err(i.unexpected("enqueue", &reply)),
        }
    }

    async fn claim(&self, worker: &str, lease: Duration, wait: Duration) -> Result<Option<Lease>> {
        persistence_core::queue::check_claim(worker, lease)?;
        let i = &self.inner;
        let until = tokio::time::Instant::now() + wait;
        let (lease_ms, step) = (ms(lease).to_string(), i.step().to_string());
        loop {
            let reply = i
                .run(
                    "claim",
                    &CLAIM,
                    &[worker.as_bytes(), lease_ms.as_bytes(), step.as_bytes()],
                )
                .await?;
            match reply.first().and_then(text).as_deref() {
                Some("job") if reply.len() == 7 => {
                    let id = text(&reply[1]).ok_or_else(|| i.unexpected("claim", &reply))?;
                    let n = |k: usize| text(&reply[k]).and_then(|v| v.parse::<u64>().ok());
                    return Ok(Some(Lease {
                        payload: bytes(&reply[2]).unwrap_or_default(),
                        priority: text(&reply[3])
                            .and_then(|p| p.parse().ok())
                            .ok_or_else(|| i.corrupted(&id, "unknown priority"))?,
                        attempt: n(4).ok_or_else(|| i.unexpected("claim", &reply))? as u32,
                        token: n(5).ok_or_else(|| i.unexpected("claim", &reply))?,
                        deadline_ms: n(6).ok_or_else(|| i.unexpected("claim", &reply))?,
                        worker: worker.to_string(),
                        id,
                    }));
                }
                Some("none") => {
                    let left = until.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    let due = reply
                        .get(1)
                        .and_then(text)
                        .and_then(|d| d.parse::<i64>().ok())
                        .filter(|d| *d >= 0)
                        .map(|d| Duration::from_millis(d as u64 + 1));
                    i.wait_wake(due.map_or(left, |d| d.min(left))).await?;
                }
                _ => return Err(i.unexpected("claim", &reply)),
            }
        }
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Heartbeat> {
        persistence_core::queue::check_lease(extend)?;
        let i = &self.inner;
        let reply = i
            .run(
                "heartbeat",
                &HEARTBEAT,
                &[
                    lease.id.as_bytes(),
                    lease.token.to_string().as_bytes(),
                    ms(extend).to_string().as_bytes(),
                    lease.worker.as_bytes(),
                ],
            )
            .await?;
        let rest = i.leased("heartbeat", lease, reply)?;
        Ok(Heartbeat {
            deadline_ms: rest
                .first()
                .and_then(text)
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| i.unexpected("heartbeat", &rest))?,
            cancel_requested: rest.get(1).and_then(text).as_deref() == Some("1"),
        })
    }

    async fn complete(&self, lease: &Lease, result: Option<Bytes>) -> Result<()> {
        check_result_len(result.as_ref().map_or(0, Bytes::len))?;
        let i = &self.inner;
        let has = if result.is_some() { "1" } else { "0" };
        let reply = i
            .run(
                "complete",
                &COMPLETE,
                &[
                    lease.id.as_bytes(),
                    lease.token.to_string().as_bytes(),
                    has.as_bytes(),
                    result.as_deref().unwrap_or_default(),
                ],
            )
            .await?;
        i.leased("complete", lease, reply).map(drop)
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<FailOutcome> {
        check_result_len(error.len())?;
        let i = &self.inner;
        let reply = i
            .run(
                "fail",
                &FAIL,
                &[
                    lease.id.as_bytes(),
                    lease.token.to_string().as_bytes(),
                    error.as_bytes(),
                    ms(i.options.backoff_base).to_string().as_bytes(),
                    ms(i.options.backoff_max).to_string().as_bytes(),
                    i.step().to_string().as_bytes(),
                ],
            )
            .await?;
        let rest = i.leased("fail", lease, reply)?;
        match rest.first().and_then(text).as_deref() {
            Some("cancelled") => Ok(FailOutcome::Cancelled),
            Some("dead") => Ok(FailOutcome::Dead),
            Some("retry") => Ok(FailOutcome::Retry {
                at_ms: rest
                    .get(1)
                    .and_then(text)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| i.unexpected("fail", &rest))?,
            }),
            _ => Err(i.unexpected("fail", &rest)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let i = &self.inner;
        let reply = i
            .run(
                "release",
                &RELEASE,
                &[
                    lease.id.as_bytes(),
                    lease.token.to_string().as_bytes(),
                    i.step().to_string().as_bytes(),
                ],
            )
            .await?;
        i.leased("release", lease, reply).map(drop)
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let i = &self.inner;
        let reply = i.run("cancel", &CANCEL, &[id.as_bytes()]).await?;
        match reply.first().and_then(text).as_deref() {
            Some("none") => Ok(CancelOutcome::NotFound),
            Some("cancelled") => Ok(CancelOutcome::Cancelled),
            Some("signalled") => {
                // delivery to the holder, wherever it runs: the run's
                // cancellation on the event streams (the stored flag
                // above is the truth; heartbeats report it too)
                i.streams.cancel(id).await?;
                Ok(CancelOutcome::Signalled)
            }
            Some("ended") => {
                let s = reply.get(1).and_then(text).unwrap_or_default();
                Ok(CancelOutcome::AlreadyEnded(
                    s.parse().map_err(|_| i.corrupted(id, "unknown state"))?,
                ))
            }
            _ => Err(i.unexpected("cancel", &reply)),
        }
    }

    async fn cancellation(&self, lease: &Lease) -> Result<Cancellation> {
        let i = &self.inner;
        let signal = i.streams.cancellation(&lease.id).await?;
        if !signal.is_cancelled() {
            let stored = self.status(&lease.id).await?;
            if stored.is_some_and(|s| s.cancel_requested) {
                // cancelled, but its delivery did not happen (the
                // canceller died in between): deliver it now
                i.streams.cancel(&lease.id).await?;
            }
        }
        Ok(signal)
    }

    async fn status(&self, id: &str) -> Result<Option<JobStatus>> {
        let i = &self.inner;
        let mut con = i.backend.con.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(format!("{}:j:{id}", i.base));
        for f in FIELDS {
            cmd.arg(f);
        }
        let fields: Reply = cmd
            .query_async(&mut con)
            .await
            .map_err(|e| i.backend.error("queue status", e))?;
        i.status_of(id, &fields)
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<JobStatus>> {
        let i = &self.inner;
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let state = filter.state.map(|s| s.as_str()).unwrap_or_default();
        let reply = i
            .run(
                "list",
                &LIST,
                &[state.as_bytes(), limit.to_string().as_bytes()],
            )
            .await?;
        let mut out = Vec::new();
        for item in &reply {
            let redis::Value::Array(pair) = item else {
                return Err(i.unexpected("list", &reply));
            };
            let (Some(id), Some(redis::Value::Array(fields))) =
                (pair.first().and_then(text), pair.get(1))
            else {
                return Err(i.unexpected("list", &reply));
            };
            if let Some(s) = i.status_of(&id, fields)? {
                let seq = fields
                    .get(12)
                    .and_then(text)
                    .and_then(|q| q.parse::<u64>().ok());
                out.push((s.enqueued_ms, seq.unwrap_or(0), s));
            }
        }
        out.sort_by_key(|(e, q, _)| (*e, *q));
        Ok(out.into_iter().take(limit).map(|(_, _, s)| s).collect())
    }

    async fn sweep_once(&self) -> Result<SweepReport> {
        let i = &self.inner;
        let timeout = i
            .options
            .pending_timeout
            .map_or("-1".to_string(), |t| ms(t).to_string());
        let mut report = SweepReport::default();
        // bounded steps, so no script call runs long; a sweep that keeps
        // finding full steps stops after 200 of them and goes on next time
        for _ in 0..200 {
            let reply = i
                .run(
                    "sweep",
                    &SWEEP,
                    &[
                        i.step().to_string().as_bytes(),
                        timeout.as_bytes(),
                        ms(i.options.retain_ended).to_string().as_bytes(),
                        SWEEP_BATCH.to_string().as_bytes(),
                    ],
                )
                .await?;
            let n: Vec<u64> = reply.iter().filter_map(|v| text(v)?.parse().ok()).collect();
            let [requeued, dead, cancelled, failed, purged, more] = n[..] else {
                return Err(i.unexpected("sweep", &reply));
            };
            report.add(SweepReport {
                requeued,
                dead,
                cancelled,
                failed,
                purged,
            });
            if more == 0 {
                break;
            }
        }
        Ok(report)
    }

    async fn requeue_dead(&self) -> Result<u64> {
        let i = &self.inner;
        let mut total = 0;
        loop {
            let reply = i
                .run(
                    "requeue dead",
                    &REQUEUE_DEAD,
                    &[
                        i.step().to_string().as_bytes(),
                        SWEEP_BATCH.to_string().as_bytes(),
                    ],
                )
                .await?;
            let n: u64 = reply
                .first()
                .and_then(text)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| i.unexpected("requeue dead", &reply))?;
            total += n;
            if n < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    async fn stats(&self) -> Result<QueueStats> {
        let i = &self.inner;
        let reply = i
            .run("stats", &STATS, &[i.step().to_string().as_bytes()])
            .await?;
        let t: Vec<String> = reply.iter().filter_map(text).collect();
        if t.len() < 11 || t.len() != reply.len() {
            return Err(i.unexpected("stats", &reply));
        }
        let n = |k: usize| t[k].parse::<i64>().unwrap_or(-1);
        let mut stats = QueueStats::default();
        for (k, p) in Priority::ALL.iter().enumerate() {
            stats.ready.insert(p.to_string(), n(k).max(0) as u64);
        }
        stats.delayed = n(3).max(0) as u64;
        stats.running = n(4).max(0) as u64;
        for (k, s) in [
            JobState::Completed,
            JobState::Failed,
            JobState::Dead,
            JobState::Cancelled,
        ]
        .iter()
        .enumerate()
        {
            let v = n(5 + k).max(0) as u64;
            if v > 0 {
                stats.ended.insert(s.to_string(), v);
            }
        }
        let (oldest, now) = (n(9), n(10));
        stats.oldest_ready_age_ms = (oldest >= 0).then(|| (now - oldest).max(0) as u64);
        for pair in t[11..].chunks(2) {
            if let [w, at] = pair {
                stats.workers.insert(w.clone(), at.parse().unwrap_or(0));
            }
        }
        Ok(stats)
    }

    async fn clear(&self) -> Result<u64> {
        let i = &self.inner;
        let mut total = 0;
        loop {
            let reply = i
                .run("clear", &CLEAR, &[SWEEP_BATCH.to_string().as_bytes()])
                .await?;
            let n: u64 = reply
                .first()
                .and_then(text)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| i.unexpected("clear", &reply))?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    async fn health(&self) -> Health {
        let mut health = self.inner.backend.health().await;
        health
            .details
            .insert("queue".into(), self.inner.name.clone());
        health
    }
}
