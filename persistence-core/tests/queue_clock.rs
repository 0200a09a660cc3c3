//! The in-memory queue on a fake clock: random operations with time
//! jumps (leases expiring, backoffs passing, sweeps, retention), checked
//! against the invariants every engine promises:
//! - at most one live lease per job: of all leases ever handed out for a
//!   job, only the newest can heartbeat, complete, fail or release;
//! - no job is lost: an enqueued id stays known until it ended and its
//!   retention passed;
//! - attempts never exceed the limit, tokens only grow, an ended job is
//!   never claimed again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use persistence_core::queue::{
    JobState, Lease, ManualClock, MemoryQueue, NewJob, QueueOptions, RunQueue,
};
use persistence_core::ErrorKind;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Enqueue(u8),
    Claim,
    Heartbeat(u8),
    Complete(u8),
    Fail(u8),
    Release(u8),
    Cancel(u8),
    Sweep,
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..6u8).prop_map(Op::Enqueue),
        3 => Just(Op::Claim),
        1 => any::<u8>().prop_map(Op::Heartbeat),
        2 => any::<u8>().prop_map(Op::Complete),
        2 => any::<u8>().prop_map(Op::Fail),
        1 => any::<u8>().prop_map(Op::Release),
        1 => (0..6u8).prop_map(Op::Cancel),
        1 => Just(Op::Sweep),
        2 => (0..3_000u16).prop_map(Op::Advance),
    ]
}

const LEASE: Duration = Duration::from_millis(1_000);

fn options() -> QueueOptions {
    QueueOptions {
        max_attempts: 3,
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_millis(800),
        retain_ended: Duration::from_millis(5_000),
        pending_timeout: Some(Duration::from_millis(4_000)),
        priority_step: Duration::from_millis(100),
    }
}

async fn check(ops: Vec<Op>) -> Result<(), String> {
    let clock = Arc::new(ManualClock::at(1_000_000));
    let q = MemoryQueue::with_clock(options(), clock.clone());
    let mut leases: Vec<Lease> = Vec::new();
    // per id: when it was seen ended last (clock ms), if it has ended
    let mut known: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut last_token = 0;
    let now = |c: &ManualClock| persistence_core::queue::Clock::now_ms(c);
    for (i, op) in ops.iter().enumerate() {
        let at = |what: &str| format!("step {i} ({op:?}): {what}");
        let pick = |k: u8, leases: &Vec<Lease>| {
            (!leases.is_empty()).then(|| leases[k as usize % leases.len()].clone())
        };
        match op {
            Op::Enqueue(n) => {
                let id = format!("j{n}");
                q.enqueue(NewJob::new(&id, ""))
                    .await
                    .map_err(|e| at(&e.to_string()))?;
                known.entry(id).or_insert(None);
            }
            Op::Claim => {
                if let Some(l) = q
                    .claim("w", LEASE, Duration::ZERO)
                    .await
                    .map_err(|e| at(&e.to_string()))?
                {
                    if l.token <= last_token {
                        return Err(at("tokens must grow"));
                    }
                    last_token = l.token;
                    if l.attempt > 3 {
                        return Err(at("more attempts than the limit"));
                    }
                    if known.get(&l.id).copied().flatten().is_some() {
                        return Err(at("an ended job was claimed again"));
                    }
                    leases.push(l);
                }
            }
            Op::Heartbeat(k) | Op::Complete(k) | Op::Fail(k) | Op::Release(k) => {
                let Some(l) = pick(*k, &leases) else { continue };
                let newest = leases.iter().rev().find(|x| x.id == l.id).map(|x| x.token);
                let r = match op {
                    Op::Heartbeat(_) => q.heartbeat(&l, LEASE).await.map(drop),
                    Op::Complete(_) => q.complete(&l, None).await.map(drop),
                    Op::Fail(_) => q.fail(&l, "x").await.map(drop),
                    _ => q.release(&l).await.map(drop),
                };
                match r {
                    Ok(()) if newest != Some(l.token) => {
                        return Err(at("a lease older than the job's newest was accepted"))
                    }
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::LeaseLost => {}
                    Err(e) => return Err(at(&e.to_string())),
                }
            }
            Op::Cancel(n) => {
                q.cancel(&format!("j{n}"))
                    .await
                    .map_err(|e| at(&e.to_string()))?;
            }
            Op::Sweep => {
                q.sweep_once().await.map_err(|e| at(&e.to_string()))?;
            }
            Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(*ms))),
        }
        // nothing lost: every known id is there, unless it ended and its retention passed
        for (id, ended) in known.iter_mut() {
            match q.status(id).await.map_err(|e| at(&e.to_string()))? {
                Some(s) if s.state.is_ended() => {
                    ended.get_or_insert(s.updated_ms);
                }
                Some(s) => {
                    if ended.is_some() {
                        return Err(at(&format!("{id} came back from its end as {:?}", s.state)));
                    }
                    if s.attempts > 3 {
                        return Err(at(&format!("{id} has {} attempts", s.attempts)));
                    }
                    if s.state == JobState::Running && s.lease_deadline_ms.is_none() {
                        return Err(at(&format!("{id} runs without a deadline")));
                    }
                }
                None => match ended {
                    Some(t) if *t + 5_000 < now(&clock) => {}
                    _ => return Err(at(&format!("{id} was lost"))),
                },
            }
        }
        // purged ids may be enqueued again as new jobs
        let mut gone = Vec::new();
        for (id, ended) in &known {
            if ended.is_some() && q.status(id).await.unwrap().is_none() {
                gone.push(id.clone());
            }
        }
        for id in gone {
            known.remove(&id);
            leases.retain(|l| l.id != id);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn the_memory_queue_keeps_its_invariants_on_a_fake_clock(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(check(ops)).map_err(TestCaseError::fail)?;
    }
}
