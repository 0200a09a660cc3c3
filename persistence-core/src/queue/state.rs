//! The queue's state machine, kept in one process: memory keeps only this,
//! the embedded engines journal every record it changes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    CancelOutcome, Enqueued, FailOutcome, Heartbeat, JobState, JobStatus, Lease, ListFilter,
    NewJob, Priority, QueueOptions, QueueStats, SweepReport,
};
use crate::error::{Error, Result};

/// Where the queue reads the time (milliseconds since the Unix epoch).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock that moves only when told (for tests and models).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock standing at `ms`.
    pub fn at(ms: u64) -> Self {
        ManualClock(AtomicU64::new(ms))
    }

    /// Moves it forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One job as the queue keeps it: its status, bytes and lease token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// What a status call shows (with the stored result).
    pub status: JobStatus,
    /// The job's bytes.
    pub payload: Bytes,
    /// The current (or last) lease's fencing token; 0 before the first claim.
    pub token: u64,
    /// Enqueue order, the tie-break within one millisecond.
    pub seq: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    status: JobStatus,
    token: u64,
    seq: u64,
    payload_len: usize,
    result_len: Option<usize>,
}

impl JobRecord {
    /// Its bytes in a journal: a JSON header line, then the payload, then
    /// the result.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            status: self.status.clone(),
            token: self.token,
            seq: self.seq,
            payload_len: self.payload.len(),
            result_len: self.status.result.as_ref().map(Bytes::len),
        };
        let mut out = serde_json::to_vec(&header).expect("a header always serializes");
        out.push(b'\n');
        out.extend_from_slice(&self.payload);
        if let Some(r) = &self.status.result {
            out.extend_from_slice(r);
        }
        out
    }

    /// Decodes [`encode`](Self::encode)'s bytes; anything else is
    /// [`Error::Corrupted`] naming the key it was read from.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<JobRecord> {
        let bad = |reason: String| Error::Corrupted {
            namespace: "queue".into(),
            key: key.to_string(),
            reason,
            len: bytes.len(),
        };
        let split = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("no header line".into()))?;
        let header: Header =
            serde_json::from_slice(&bytes[..split]).map_err(|e| bad(format!("header: {e}")))?;
        let body = &bytes[split + 1..];
        let result_len = header.result_len.unwrap_or(0);
        if header.payload_len.checked_add(result_len) != Some(body.len()) {
            return Err(bad(format!(
                "lengths say {} + {result_len} bytes, {} follow",
                header.payload_len,
                body.len()
            )));
        }
        let mut status = header.status;
        status.result = header
            .result_len
            .map(|_| Bytes::copy_from_slice(&body[header.payload_len..]));
        Ok(JobRecord {
            status,
            payload: Bytes::copy_from_slice(&body[..header.payload_len]),
            token: header.token,
            seq: header.seq,
        })
    }
}

/// Index key: (score, seq), unique per job.
type Slot = (u64, u64);

/// Every job and the indexes claims and sweeps walk, with the rules of
/// [`QueueOptions`]; each call takes the time. Calls change only this
/// value and list what they touched ([`take_dirty`](Self::take_dirty)),
/// so an engine can journal exactly those records.
#[derive(Debug)]
pub struct QueueState {
    options: QueueOptions,
    jobs: HashMap<String, JobRecord>,
    /// Claimable pending jobs, by aged priority score.
    ready: BTreeMap<Slot, String>,
    /// Pending jobs not claimable yet, by ready time.
    delayed: BTreeMap<Slot, String>,
    /// Running jobs, by lease deadline.
    leases: BTreeMap<Slot, String>,
    /// Ended jobs, by end time.
    ended: BTreeMap<Slot, String>,
    workers: BTreeMap<String, u64>,
    next_seq: u64,
    next_token: u64,
    dirty: Vec<String>,
}

impl QueueState {
    /// An empty queue with these rules.
    pub fn new(options: QueueOptions) -> Self {
        QueueState {
            options,
            jobs: HashMap::new(),
            ready: BTreeMap::new(),
            delayed: BTreeMap::new(),
            leases: BTreeMap::new(),
            ended: BTreeMap::new(),
            workers: BTreeMap::new(),
            next_seq: 0,
            next_token: 0,
            dirty: Vec::new(),
        }
    }

    /// A queue holding `records` (read back from a journal) at time `now`.
    /// Tokens continue above every stored one and above `now`'s
    /// milliseconds × 1024, so a lease from before a restart, even of a
    /// job since purged and enqueued again, never matches a new one.
    pub fn restore(options: QueueOptions, records: Vec<JobRecord>, now: u64) -> Self {
        let mut state = QueueState::new(options);
        for r in records {
            state.next_seq = state.next_seq.max(r.seq + 1);
            state.next_token = state.next_token.max(r.token);
            let id = r.status.id.clone();
            state.place(&r, now);
            if let Some(w) = &r.status.worker {
                let last = state.workers.entry(w.clone()).or_default();
                *last = (*last).max(r.status.updated_ms);
            }
            state.jobs.insert(id, r);
        }
        state.next_token = state.next_token.max(now.saturating_mul(1024));
        state
    }

    /// The ids changed since the last call (each to write, or to remove if
    /// [`record`](Self::record) no longer has it).
    pub fn take_dirty(&mut self) -> Vec<String> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        dirty
    }

    /// A job's record.
    pub fn record(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.get(id)
    }

    /// How many jobs are known (ended ones included).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether no job is known.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// When something becomes claimable without a call: the first delayed
    /// job's ready time or the first lease's expiry.
    pub fn next_due(&self) -> Option<u64> {
        let delayed = self.delayed.keys().next().map(|k| k.0);
        let lease = self.leases.keys().next().map(|k| k.0 + 1);
        delayed.into_iter().chain(lease).min()
    }

    fn score(&self, status: &JobStatus) -> u64 {
        let step = self.options.priority_step.as_millis() as u64;
        status.ready_ms + step * (2 - status.priority.boost())
    }

    fn place(&mut self, r: &JobRecord, now: u64) {
        let id = r.status.id.clone();
        let s = &r.status;
        match s.state {
            JobState::Pending if s.ready_ms > now => {
                self.delayed.insert((s.ready_ms, r.seq), id);
            }
            JobState::Pending => {
                self.ready.insert((self.score(s), r.seq), id);
            }
            JobState::Running => {
                self.leases
                    .insert((s.lease_deadline_ms.unwrap_or(0), r.seq), id);
            }
            _ => {
                self.ended.insert((s.updated_ms, r.seq), id);
            }
        }
    }

    fn unplace(&mut self, r: &JobRecord) {
        let s = &r.status;
        self.delayed.remove(&(s.ready_ms, r.seq));
        self.ready.remove(&(self.score(s), r.seq));
        self.leases
            .remove(&(s.lease_deadline_ms.unwrap_or(0), r.seq));
        self.ended.remove(&(s.updated_ms, r.seq));
    }

    /// Applies `f` to job `id`'s record, keeping the indexes and the
    /// dirty list right.
    fn update<R>(&mut self, id: &str, now: u64, f: impl FnOnce(&mut JobRecord) -> R) -> Option<R> {
        let mut r = self.jobs.remove(id)?;
        self.unplace(&r);
        let out = f(&mut r);
        self.place(&r, now);
        self.jobs.insert(id.to_string(), r);
        self.dirty.push(id.to_string());
        Some(out)
    }

    fn end(r: &mut JobRecord, state: JobState, now: u64) {
        r.status.state = state;
        r.status.lease_deadline_ms = None;
        r.status.updated_ms = now;
    }

    /// Queues `job`, or reports the known one with its id.
    pub fn enqueue(&mut self, job: NewJob, now: u64) -> Result<Enqueued> {
        job.validate()?;
        if let Some(known) = self.jobs.get(&job.id) {
            return Ok(Enqueued::Exists(known.status.state));
        }
        let ready_ms = job.not_before_ms.unwrap_or(now).max(now);
        let record = JobRecord {
            status: JobStatus {
                id: job.id.clone(),
                state: JobState::Pending,
                priority: job.priority,
                attempts: 0,
                max_attempts: job.max_attempts.unwrap_or(self.options.max_attempts).max(1),
                enqueued_ms: now,
                ready_ms,
                updated_ms: now,
                worker: None,
                lease_deadline_ms: None,
                cancel_requested: false,
                error: None,
                result: None,
            },
            payload: job.payload,
            token: 0,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.place(&record, now);
        self.dirty.push(job.id.clone());
        self.jobs.insert(job.id, record);
        Ok(Enqueued::Created)
    }

    /// Moves due delayed jobs to the claimable ones.
    fn promote(&mut self, now: u64) {
        while let Some((&(at, seq), _)) = self.delayed.first_key_value() {
            if at > now {
                break;
            }
            let id = self
                .delayed
                .remove(&(at, seq))
                .expect("the first key exists");
            let status = &self.jobs[&id].status;
            self.ready.insert((self.score(status), seq), id);
        }
    }

    /// Takes the next claimable job (expired leases and due delays first).
    pub fn claim(&mut self, worker: &str, lease: Duration, now: u64) -> Option<Lease> {
        self.expire(now);
        self.promote(now);
        let (_, id) = self.ready.pop_first()?;
        self.next_token += 1;
        let token = self.next_token;
        let deadline = now.saturating_add(lease.as_millis() as u64);
        let mut r = self.jobs.remove(&id).expect("indexed jobs exist");
        r.status.state = JobState::Running;
        r.status.attempts += 1;
        r.status.worker = Some(worker.to_string());
        r.status.lease_deadline_ms = Some(deadline);
        r.status.updated_ms = now;
        r.token = token;
        self.place(&r, now);
        self.workers.insert(worker.to_string(), now);
        let out = Lease {
            id: id.clone(),
            payload: r.payload.clone(),
            priority: r.status.priority,
            attempt: r.status.attempts,
            token,
            worker: worker.to_string(),
            deadline_ms: deadline,
        };
        self.jobs.insert(id.clone(), r);
        self.dirty.push(id);
        Some(out)
    }

    /// `Ok` if `lease` is the job's live lease.
    pub fn check(&self, lease: &Lease) -> Result<()> {
        let why = match self.jobs.get(&lease.id) {
            None => "the job is no longer known".to_string(),
            Some(r) if r.status.state != JobState::Running => {
                format!("the job is {} now", r.status.state)
            }
            Some(r) if r.token != lease.token => {
                format!("the job was leased again (token {})", r.token)
            }
            Some(_) => return Ok(()),
        };
        Err(super::lease_lost(lease, &why))
    }

    /// Extends `lease` to `extend` from now.
    pub fn heartbeat(&mut self, lease: &Lease, extend: Duration, now: u64) -> Result<Heartbeat> {
        self.check(lease)?;
        let deadline = now.saturating_add(extend.as_millis() as u64);
        self.workers.insert(lease.worker.clone(), now);
        let cancel = self
            .update(&lease.id, now, |r| {
                r.status.lease_deadline_ms = Some(deadline);
                r.status.cancel_requested
            })
            .expect("checked");
        Ok(Heartbeat {
            deadline_ms: deadline,
            cancel_requested: cancel,
        })
    }

    /// Ends `lease`'s job completed.
    pub fn complete(&mut self, lease: &Lease, result: Option<Bytes>, now: u64) -> Result<()> {
        self.check(lease)?;
        super::check_result_len(result.as_ref().map_or(0, Bytes::len))?;
        self.update(&lease.id, now, |r| {
            Self::end(r, JobState::Completed, now);
            r.status.result = result;
        });
        Ok(())
    }

    /// Reports a failed attempt.
    pub fn fail(&mut self, lease: &Lease, error: &str, now: u64) -> Result<FailOutcome> {
        self.check(lease)?;
        super::check_result_len(error.len())?;
        let backoff = self.options.backoff(lease.attempt).as_millis() as u64;
        Ok(self
            .update(&lease.id, now, |r| {
                r.status.error = Some(error.to_string());
                if r.status.cancel_requested {
                    Self::end(r, JobState::Cancelled, now);
                    FailOutcome::Cancelled
                } else if r.status.attempts >= r.status.max_attempts {
                    Self::end(r, JobState::Dead, now);
                    FailOutcome::Dead
                } else {
                    Self::end(r, JobState::Pending, now);
                    r.status.ready_ms = now.saturating_add(backoff);
                    FailOutcome::Retry {
                        at_ms: r.status.ready_ms,
                    }
                }
            })
            .expect("checked"))
    }

    /// Gives `lease`'s job back without counting the attempt.
    pub fn release(&mut self, lease: &Lease, now: u64) -> Result<()> {
        self.check(lease)?;
        self.update(&lease.id, now, |r| {
            if r.status.cancel_requested {
                Self::end(r, JobState::Cancelled, now);
            } else {
                Self::end(r, JobState::Pending, now);
                r.status.attempts = r.status.attempts.saturating_sub(1);
                r.status.ready_ms = now;
            }
        });
        Ok(())
    }

    /// Cancels job `id`.
    pub fn cancel(&mut self, id: &str, now: u64) -> CancelOutcome {
        let Some(state) = self.jobs.get(id).map(|r| r.status.state) else {
            return CancelOutcome::NotFound;
        };
        match state {
            JobState::Pending => {
                self.update(id, now, |r| {
                    r.status.cancel_requested = true;
                    Self::end(r, JobState::Cancelled, now);
                });
                CancelOutcome::Cancelled
            }
            JobState::Running => {
                self.update(id, now, |r| r.status.cancel_requested = true);
                CancelOutcome::Signalled
            }
            ended => CancelOutcome::AlreadyEnded(ended),
        }
    }

    /// Ends or re-queues every lease whose deadline passed.
    fn expire(&mut self, now: u64) -> SweepReport {
        let mut report = SweepReport::default();
        while let Some((&(deadline, _), id)) = self.leases.first_key_value() {
            if deadline >= now {
                break;
            }
            let id = id.clone();
            self.update(&id, now, |r| {
                let worker = r.status.worker.clone().unwrap_or_default();
                if r.status.cancel_requested {
                    Self::end(r, JobState::Cancelled, now);
                    report.cancelled += 1;
                } else if r.status.attempts >= r.status.max_attempts {
                    r.status.error =
                        Some(format!("the lease of {worker} expired on the last attempt"));
                    Self::end(r, JobState::Dead, now);
                    report.dead += 1;
                } else {
                    r.status.error = Some(format!("the lease of {worker} expired"));
                    Self::end(r, JobState::Pending, now);
                    r.status.ready_ms = now;
                    report.requeued += 1;
                }
            });
        }
        report
    }

    /// One sweep: expired leases, pending timeouts, retention.
    pub fn sweep(&mut self, now: u64) -> SweepReport {
        let mut report = self.expire(now);
        self.promote(now);
        if let Some(timeout) = self.options.pending_timeout {
            let limit = timeout.as_millis() as u64;
            let stale: Vec<String> = self
                .ready
                .values()
                .filter(|id| self.jobs[*id].status.ready_ms.saturating_add(limit) < now)
                .cloned()
                .collect();
            for id in stale {
                self.update(&id, now, |r| {
                    r.status.error = Some(format!("pending longer than {timeout:?}"));
                    Self::end(r, JobState::Failed, now);
                });
                report.failed += 1;
            }
        }
        let keep = self.options.retain_ended.as_millis() as u64;
        while let Some((&(at, seq), _)) = self.ended.first_key_value() {
            if at.saturating_add(keep) >= now {
                break;
            }
            let id = self.ended.remove(&(at, seq)).expect("the first key exists");
            self.jobs.remove(&id);
            self.dirty.push(id);
            report.purged += 1;
        }
        let active: std::collections::HashSet<&str> = self
            .jobs
            .values()
            .filter_map(|r| r.status.worker.as_deref())
            .collect();
        self.workers
            .retain(|w, at| active.contains(w.as_str()) || at.saturating_add(keep) >= now);
        report
    }

    /// Puts dead jobs back with fresh attempts.
    pub fn requeue_dead(&mut self, now: u64) -> u64 {
        let dead: Vec<String> = self
            .ended
            .values()
            .filter(|id| self.jobs[*id].status.state == JobState::Dead)
            .cloned()
            .collect();
        for id in &dead {
            self.update(id, now, |r| {
                Self::end(r, JobState::Pending, now);
                r.status.attempts = 0;
                r.status.ready_ms = now;
            });
        }
        dead.len() as u64
    }

    /// Removes every job (tokens keep increasing); returns how many.
    pub fn clear(&mut self) -> u64 {
        let n = self.jobs.len() as u64;
        self.dirty.extend(self.jobs.keys().cloned());
        self.jobs.clear();
        self.ready.clear();
        self.delayed.clear();
        self.leases.clear();
        self.ended.clear();
        self.workers.clear();
        n
    }

    /// Job `id`'s status.
    pub fn status(&self, id: &str) -> Option<JobStatus> {
        self.jobs.get(id).map(|r| r.status.clone())
    }

    /// Jobs matching `filter`, oldest first.
    pub fn list(&self, filter: &ListFilter) -> Vec<JobStatus> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut all: Vec<&JobRecord> = self
            .jobs
            .values()
            .filter(|r| filter.state.is_none_or(|s| s == r.status.state))
            .collect();
        all.sort_by_key(|r| (r.status.enqueued_ms, r.seq));
        all.into_iter()
            .take(limit)
            .map(|r| r.status.clone())
            .collect()
    }

    /// Depth and activity at `now`.
    pub fn stats(&self, now: u64) -> QueueStats {
        let mut stats = QueueStats::default();
        for p in Priority::ALL {
            stats.ready.insert(p.to_string(), 0);
        }
        let mut oldest: Option<u64> = None;
        for id in self.ready.values() {
            let s = &self.jobs[id].status;
            *stats.ready.entry(s.priority.to_string()).or_default() += 1;
            oldest = Some(oldest.map_or(s.ready_ms, |o| o.min(s.ready_ms)));
        }
        // due delayed jobs count as ready until a claim promotes them
        for (&(at, _), id) in &self.delayed {
            if at <= now {
                let s = &self.jobs[id].status;
                *stats.ready.entry(s.priority.to_string()).or_default() += 1;
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            } else {
                stats.delayed += 1;
            }
        }
        stats.running = self.leases.len() as u64;
        for id in self.ended.values() {
            *stats
                .ended
                .entry(self.jobs[id].status.state.to_string())
                .or_default() += 1;
        }
        stats.oldest_ready_age_ms = oldest.map(|o| now.saturating_sub(o));
        stats.workers = self.workers.clone();
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease_of(state: &mut QueueState, now: u64) -> Lease {
        state
            .claim("w", Duration::from_secs(10), now)
            .expect("a ready job")
    }

    #[test]
    fn records_round_trip_and_damage_is_corrupted() {
        let mut state = QueueState::new(QueueOptions::default());
        state
            .enqueue(NewJob::new("a", "payload\nwith newline"), 5)
            .unwrap();
        let lease = lease_of(&mut state, 6);
        state.complete(&lease, Some("result".into()), 7).unwrap();
        let record = state.record("a").unwrap().clone();
        let bytes = record.encode();
        assert_eq!(JobRecord::decode("a", &bytes).unwrap(), record);
        for cut in [0, 10, bytes.len() - 1] {
            let err = JobRecord::decode("a", &bytes[..cut]).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupted, "{err}");
        }
    }

    #[test]
    fn aging_lets_an_old_low_job_pass_new_high_ones() {
        let options = QueueOptions {
            priority_step: Duration::from_millis(100),
            ..QueueOptions::default()
        };
        let mut state = QueueState::new(options);
        state
            .enqueue(NewJob::new("low", "").priority(Priority::Low), 1_000)
            .unwrap();
        // high jobs arriving within 2 steps go first; later ones do not
        state
            .enqueue(
                NewJob::new("high-early", "").priority(Priority::High),
                1_150,
            )
            .unwrap();
        state
            .enqueue(NewJob::new("high-late", "").priority(Priority::High), 1_250)
            .unwrap();
        let order: Vec<String> = (0..3).map(|_| lease_of(&mut state, 1_300).id).collect();
        assert_eq!(order, ["high-early", "low", "high-late"]);
    }

    #[test]
    fn restored_tokens_are_above_every_earlier_one() {
        let mut state = QueueState::new(QueueOptions::default());
        state.enqueue(NewJob::new("a", ""), 1).unwrap();
        let lease = lease_of(&mut state, 2);
        let records = vec![state.record("a").unwrap().clone()];
        let mut restored = QueueState::restore(QueueOptions::default(), records, 3);
        assert!(
            restored.check(&lease).is_ok(),
            "a live lease survives a restart"
        );
        restored.sweep(20_000);
        let again = lease_of(&mut restored, 20_001);
        assert!(again.token > lease.token);
        assert_eq!(again.attempt, 2);
    }
}
