//! Random operation sequences against a stream engine and a reference model.
//!
//! Three streams, a retention of 8 events, and random appends, reads,
//! closes, deletes and subscriptions (from the beginning, from now, after a
//! known offset). After every step each live subscription must deliver
//! exactly what the model says arrived since the last step (no gap, no
//! duplicate, in order), then nothing more, and its end when the stream was
//! closed or deleted. Reads must return the model's window and say
//! `EventsMissed` exactly when retention removed what they ask for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::StreamExt;
use persistence_core::streams::{Item, Offset, SharedStreams, StartAt, Subscription};
use persistence_core::ErrorKind;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Events each stream keeps (the retention the case opens the engine with).
const KEEP: usize = 8;
const STREAMS: u8 = 3;
/// How long an expected item may take; how long "nothing more" is watched.
const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(2);
/// Live subscriptions at most (each is watched for silence at every step).
const MAX_SUBS: usize = 4;
/// The whole case stops (failing) past this.
const BUDGET: Duration = Duration::from_secs(240);

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: u8,
        count: u8,
    },
    /// After the event `back` events before the newest (0: the newest;
    /// past the oldest: from the start).
    Read {
        stream: u8,
        back: u8,
        limit: u8,
    },
    Close {
        stream: u8,
    },
    Delete {
        stream: u8,
    },
    Subscribe {
        stream: u8,
        from: From,
    },
}

#[derive(Debug, Clone, Copy)]
enum From {
    Beginning,
    Now,
    /// After the event this many before the newest (as in `Read`).
    After(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let stream = 0..STREAMS;
    prop_oneof![
        6 => (stream.clone(), 1..5u8).prop_map(|(stream, count)| Op::Append { stream, count }),
        3 => (stream.clone(), 0..12u8, 1..12u8)
            .prop_map(|(stream, back, limit)| Op::Read { stream, back, limit }),
        1 => stream.clone().prop_map(|stream| Op::Close { stream }),
        1 => stream.clone().prop_map(|stream| Op::Delete { stream }),
        3 => (stream, prop_oneof![
                Just(From::Beginning),
                Just(From::Now),
                (0..12u8).prop_map(From::After),
            ])
            .prop_map(|(stream, from)| Op::Subscribe { stream, from }),
    ]
}

/// One stream as the model sees it.
#[derive(Debug, Default)]
struct ModelStream {
    /// Every event appended since the stream was last deleted: (offset, data).
    all: Vec<(Offset, String)>,
    closed: Option<String>,
}

impl ModelStream {
    /// Index in `all` of the oldest event retention keeps.
    fn first_kept(&self) -> usize {
        self.all.len().saturating_sub(KEEP)
    }
}

/// A live subscription and what it must still deliver.
struct Sub {
    stream: u8,
    sub: Subscription,
    /// Events the model says it will deliver next, in order.
    due: VecDeque<(Offset, String)>,
    /// Where it stands: the next event it gets is the first after this
    /// index of `all` (its start, then each event it delivered).
    next: usize,
    ended: bool,
}

struct Run<'a> {
    s: &'a SharedStreams,
    names: Vec<String>,
    model: Vec<ModelStream>,
    subs: Vec<Sub>,
    counter: u64,
}

impl Run<'_> {
    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Append { stream, count } => {
                for _ in 0..count {
                    self.counter += 1;
                    let data = format!("e{}", self.counter);
                    let m = &mut self.model[stream as usize];
                    let got = self
                        .s
                        .append(&self.names[stream as usize], data.clone().into());
                    match (got.await, &m.closed) {
                        (Ok(offset), None) => {
                            if let Some((last, _)) = m.all.last() {
                                if offset <= *last {
                                    return Err(format!("offset {offset} after {last}"));
                                }
                            }
                            m.all.push((offset, data));
                        }
                        (Err(e), Some(_)) if e.kind() == ErrorKind::Closed => {}
                        (got, closed) => {
                            return Err(format!("append with closed={closed:?} gave {got:?}"))
                        }
                    }
                }
            }
            Op::Read {
                stream,
                back,
                limit,
            } => {
                let m = &self.model[stream as usize];
                let after_index = m.all.len().saturating_sub(back as usize);
                let after_offset = match after_index {
                    0 => Offset::START,
                    n => m.all[n - 1].0,
                };
                let got = self
                    .s
                    .read(&self.names[stream as usize], after_offset, limit as usize)
                    .await;
                let from = after_index.max(m.first_kept());
                if after_index > 0 && after_index < m.first_kept() {
                    return match got {
                        Err(e) if e.kind() == ErrorKind::Missed => Ok(()),
                        other => Err(format!("read after trimmed {after_offset}: {other:?}")),
                    };
                }
                let page = got.map_err(|e| format!("read: {e}"))?;
                let want: Vec<_> = m.all[from..].iter().take(limit as usize).collect();
                let have: Vec<_> = page
                    .events
                    .iter()
                    .map(|e| (e.offset, String::from_utf8_lossy(&e.data).into_owned()))
                    .collect();
                if have.iter().collect::<Vec<_>>() != want {
                    return Err(format!(
                        "read after {after_offset}: {have:?}, want {want:?}"
                    ));
                }
                let reaches_end = from + want.len() >= m.all.len();
                let want_end = m.closed.clone().filter(|_| reaches_end);
                if page.end != want_end {
                    return Err(format!("read end {:?}, want {want_end:?}", page.end));
                }
            }
            Op::Close { stream } => {
                self.s
                    .close(&self.names[stream as usize], "done")
                    .await
                    .map_err(|e| format!("close: {e}"))?;
                let m = &mut self.model[stream as usize];
                m.closed.get_or_insert_with(|| "done".into());
            }
            Op::Delete { stream } => {
                let existed = self
                    .s
                    .delete(&self.names[stream as usize])
                    .await
                    .map_err(|e| format!("delete: {e}"))?;
                let m = &mut self.model[stream as usize];
                // (a stream only subscribed to may exist or not: engines differ)
                if (!m.all.is_empty() || m.closed.is_some()) && !existed {
                    return Err("delete of a written stream said it did not exist".into());
                }
                self.model[stream as usize] = ModelStream::default();
                // its subscribers end with "deleted" after what was due
                let mut ended = Vec::new();
                for (i, sub) in self.subs.iter_mut().enumerate() {
                    if sub.stream == stream && !sub.ended {
                        ended.push(i);
                    }
                }
                for i in ended.into_iter().rev() {
                    let mut sub = self.subs.remove(i);
                    expect_end(&mut sub, "deleted").await?;
                }
            }
            Op::Subscribe { stream, from } => {
                let m = &self.model[stream as usize];
                if m.closed.is_some() || self.subs.len() >= MAX_SUBS {
                    return Ok(()); // covered by the close cases; keeps the run short
                }
                let (start, next) = match from {
                    From::Beginning => (StartAt::Beginning, m.first_kept()),
                    From::Now => (StartAt::Now, m.all.len()),
                    From::After(back) => {
                        let n = m.all.len().saturating_sub(back as usize);
                        if n < m.first_kept() {
                            return Ok(()); // a missed start: the retention case checks it
                        }
                        let offset = if n == 0 {
                            Offset::START
                        } else {
                            m.all[n - 1].0
                        };
                        (StartAt::After(offset), n)
                    }
                };
                let sub = self
                    .s
                    .subscribe(&self.names[stream as usize], start)
                    .await
                    .map_err(|e| format!("subscribe: {e}"))?;
                self.subs.push(Sub {
                    stream,
                    sub,
                    due: VecDeque::new(),
                    next,
                    ended: false,
                });
            }
        }
        self.check_subscribers().await
    }

    /// Every live subscription delivers what arrived since the last step,
    /// then nothing, then its end if its stream was closed.
    async fn check_subscribers(&mut self) -> Result<(), String> {
        for sub in &mut self.subs {
            if sub.ended {
                continue;
            }
            let m = &self.model[sub.stream as usize];
            if sub.next < m.first_kept() {
                return Err(format!(
                    "model: subscriber left behind retention at {} (kept from {})",
                    sub.next,
                    m.first_kept()
                ));
            }
            sub.due.extend(m.all[sub.next..].iter().cloned());
            sub.next = m.all.len();
            while let Some((offset, data)) = sub.due.pop_front() {
                match next(&mut sub.sub, WAIT).await {
                    Some(Ok(Item::Event(e))) if e.offset == offset && e.data == data.as_bytes() => {
                    }
                    other => return Err(format!("expected {offset} {data}, got {other:?}")),
                }
            }
            if let Some(reason) = &m.closed {
                expect_end(sub, reason).await?;
            } else if let Some(extra) = next(&mut sub.sub, QUIET).await {
                return Err(format!("nothing more was appended, got {extra:?}"));
            }
        }
        self.subs.retain(|s| !s.ended);
        Ok(())
    }
}

async fn next(sub: &mut Subscription, wait: Duration) -> Option<persistence_core::Result<Item>> {
    tokio::time::timeout(wait, sub.next()).await.ok().flatten()
}

async fn expect_end(sub: &mut Sub, reason: &str) -> Result<(), String> {
    match next(&mut sub.sub, WAIT).await {
        Some(Ok(Item::End(r))) if r == reason => {}
        other => return Err(format!("expected the end ({reason}), got {other:?}")),
    }
    if let Some(extra) = next(&mut sub.sub, QUIET).await {
        return Err(format!("an item after the end: {extra:?}"));
    }
    sub.ended = true;
    Ok(())
}

async fn check(s: &SharedStreams, seq: u64, ops: &[Op]) -> Result<(), String> {
    let names: Vec<String> = (0..STREAMS)
        .map(|n| format!("{}-{seq}-{n}", crate::streams::fresh("model")))
        .collect();
    let mut run = Run {
        s,
        names: names.clone(),
        model: (0..STREAMS).map(|_| ModelStream::default()).collect(),
        subs: Vec::new(),
        counter: 0,
    };
    let mut outcome = Ok(());
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = run.apply(op).await {
            outcome = Err(format!("step {i} ({op:?}): {e}"));
            break;
        }
    }
    drop(run);
    for name in names {
        let _ = s.delete(&name).await;
    }
    outcome
}

/// Runs 24 random sequences of up to 30 operations on an engine opened
/// with a retention of 8 events, shrinking a failure to a minimal one.
pub async fn run(s: SharedStreams) {
    tokio::task::block_in_place(move || {
        let handle = tokio::runtime::Handle::current();
        let started = Instant::now();
        let mut runner = TestRunner::new(Config {
            cases: 24,
            failure_persistence: None,
            ..Config::default()
        });
        let seq = std::cell::Cell::new(0);
        let result = runner.run(&prop::collection::vec(op(), 1..30), |ops| {
            if started.elapsed() > BUDGET {
                return Err(TestCaseError::fail("ran out of time"));
            }
            seq.set(seq.get() + 1);
            handle
                .block_on(check(&s, seq.get(), &ops))
                .map_err(TestCaseError::fail)
        });
        if let Err(e) = result {
            panic!("the streams differ from the model: {e}");
        }
    });
}
