//! The stream conformance cases: what every `EventStreams` engine keeps.
//!
//! An engine's test file is one macro call with a factory that opens a
//! fresh engine with the given retention:
//!
//! ```no_run
//! persistence_conformance::stream_conformance_tests!(|retention| async move {
//!     std::sync::Arc::new(persistence_core::streams::MemoryStreams::new(retention))
//!         as persistence_core::streams::SharedStreams
//! });
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use persistence_core::streams::{Item, Offset, Retention, SharedStreams, StartAt, Subscription};
use persistence_core::ErrorKind;

/// The longest a case waits for one expected item.
const WAIT: Duration = Duration::from_secs(10);

/// Generates one `#[tokio::test]` per stream case, each calling
/// [`run_stream_case`] with the factory.
#[macro_export]
macro_rules! stream_conformance_tests {
    ($factory:expr) => {
        $crate::__with_stream_case_names! { ($crate::__stream_case_fns) ($factory) }
    };
}

/// The one list of stream cases: calls the macro given first with the
/// arguments given second and then the list.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_stream_case_names {
    (($($callback:tt)*) ($($args:tt)*)) => {
        $($callback)*! { ($($args)*)
            offsets_increase_print_and_parse,
            read_returns_ranges_and_the_end,
            subscribe_from_beginning_offset_and_now,
            replay_then_live_with_concurrent_appenders_loses_and_duplicates_nothing,
            close_ends_every_subscriber_and_refuses_appends,
            retention_is_never_a_silent_skip,
            cancel_reaches_listeners_before_and_after,
            stream_names_are_opaque,
            delete_ends_subscribers_and_forgets,
            model_based_streams_match_a_model,
            stats_report_streams_subscribers_and_lag,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __stream_case_fns {
    (($factory:expr) $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::run_stream_case(stringify!($name), $factory).await;
            }
        )*
    };
}

macro_rules! define_stream_cases {
    (() $($name:ident),* $(,)?) => {
        /// Every stream case's name, in a stable order (what
        /// [`run_all_streams`] runs and [`stream_conformance_tests!`] generates).
        pub static STREAM_CASES: &[&str] = &[$(stringify!($name)),*];
    };
}
crate::__with_stream_case_names! { (define_stream_cases) () }

/// Runs the stream case `name` on engines made by `factory`.
pub async fn run_stream_case<F, Fut>(name: &str, factory: F)
where
    F: Fn(Retention) -> Fut,
    Fut: Future<Output = SharedStreams>,
{
    let open = |r: Retention| factory(r);
    match name {
        "offsets_increase_print_and_parse" => offsets(open(Retention::default()).await).await,
        "read_returns_ranges_and_the_end" => read_ranges(open(Retention::default()).await).await,
        "subscribe_from_beginning_offset_and_now" => {
            subscribe_modes(open(Retention::default()).await).await
        }
        "replay_then_live_with_concurrent_appenders_loses_and_duplicates_nothing" => {
            replay_then_live(open(Retention::default()).await).await
        }
        "close_ends_every_subscriber_and_refuses_appends" => {
            close_ends(open(Retention::default()).await).await
        }
        "retention_is_never_a_silent_skip" => {
            let small = Retention {
                max_len: 5,
                max_age: None,
            };
            retention(open(small).await).await
        }
        "cancel_reaches_listeners_before_and_after" => {
            cancellation(open(Retention::default()).await).await
        }
        "stream_names_are_opaque" => names(open(Retention::default()).await).await,
        "delete_ends_subscribers_and_forgets" => delete(open(Retention::default()).await).await,
        "model_based_streams_match_a_model" => {
            let small = Retention {
                max_len: 8,
                max_age: None,
            };
            crate::streams_model::run(open(small).await).await
        }
        "stats_report_streams_subscribers_and_lag" => stats(open(Retention::default()).await).await,
        other => panic!("no stream case {other}"),
    }
}

/// A stream name no other case or run uses.
pub(crate) fn fresh(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{pid}-{nanos}-{}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn next(sub: &mut Subscription) -> Item {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no item within the wait: a lost wake-up or a hang")
        .expect("the subscription finished early")
        .expect("the subscription failed")
}

/// The next `n` events, each within the wait (a lost wake-up stalls here,
/// since no later append or close comes to hide it).
async fn take(sub: &mut Subscription, n: usize) -> (Vec<String>, Vec<Offset>) {
    let (mut data, mut offsets) = (Vec::new(), Vec::new());
    while data.len() < n {
        match next(sub).await {
            Item::Event(e) => {
                data.push(String::from_utf8(e.data.to_vec()).unwrap());
                offsets.push(e.offset);
            }
            Item::End(reason) => panic!("ended ({reason}) after {} of {n} events", data.len()),
        }
    }
    (data, offsets)
}

/// Everything until the end: (payloads, offsets, end reason).
async fn drain(mut sub: Subscription) -> (Vec<String>, Vec<Offset>, String) {
    let (mut data, mut offsets) = (Vec::new(), Vec::new());
    loop {
        match next(&mut sub).await {
            Item::Event(e) => {
                data.push(String::from_utf8(e.data.to_vec()).unwrap());
                offsets.push(e.offset);
            }
            Item::End(reason) => {
                assert!(
                    tokio::time::timeout(WAIT, sub.next())
                        .await
                        .unwrap()
                        .is_none(),
                    "items after the end"
                );
                return (data, offsets, reason);
            }
        }
    }
}

async fn offsets(s: SharedStreams) {
    let stream = fresh("offsets");
    let mut last = Offset::START;
    for n in 0..50 {
        let o = s.append(&stream, format!("e{n}").into()).await.unwrap();
        assert!(o > last, "offset {o} after {last}");
        assert_eq!(o.to_string().parse::<Offset>().unwrap(), o);
        last = o;
    }
    assert!("nope".parse::<Offset>().is_err());
    assert!("1-x".parse::<Offset>().is_err());
}

async fn read_ranges(s: SharedStreams) {
    let stream = fresh("read");
    let empty = s.read(&stream, Offset::START, 10).await.unwrap();
    assert!(empty.events.is_empty() && empty.end.is_none());
    let mut offsets = Vec::new();
    for n in 0..10 {
        offsets.push(s.append(&stream, format!("e{n}").into()).await.unwrap());
    }
    let page = s.read(&stream, Offset::START, 4).await.unwrap();
    assert_eq!(page.events.len(), 4);
    assert_eq!(page.events[0].data, "e0");
    assert_eq!(page.last, offsets[9]);
    let page = s.read(&stream, offsets[3], 100).await.unwrap();
    let got: Vec<_> = page.events.iter().map(|e| e.offset).collect();
    assert_eq!(got, offsets[4..]);
    assert_eq!(page.end, None, "not closed");
    s.close(&stream, "success").await.unwrap();
    let page = s.read(&stream, offsets[7], 100).await.unwrap();
    assert_eq!(page.events.len(), 2);
    assert_eq!(page.end.as_deref(), Some("success"));
    let page = s.read(&stream, offsets[7], 1).await.unwrap();
    assert_eq!(page.end, None, "the end comes only with the last event");
}

async fn subscribe_modes(s: SharedStreams) {
    let stream = fresh("modes");
    let mut offsets = Vec::new();
    for n in 0..3 {
        offsets.push(s.append(&stream, format!("old{n}").into()).await.unwrap());
    }
    let beginning = s.subscribe(&stream, StartAt::Beginning).await.unwrap();
    let after = s
        .subscribe(&stream, StartAt::After(offsets[0]))
        .await
        .unwrap();
    let now = s.subscribe(&stream, StartAt::Now).await.unwrap();
    s.append(&stream, "new".into()).await.unwrap();
    s.close(&stream, "done").await.unwrap();
    assert_eq!(drain(beginning).await.0, ["old0", "old1", "old2", "new"]);
    assert_eq!(drain(after).await.0, ["old1", "old2", "new"]);
    let (data, _, end) = drain(now).await;
    assert_eq!((data, end.as_str()), (vec!["new".to_string()], "done"));
    // a subscriber that comes before the stream exists waits for it
    let later = fresh("later");
    let early = s.subscribe(&later, StartAt::Beginning).await.unwrap();
    s.append(&later, "first".into()).await.unwrap();
    s.close(&later, "done").await.unwrap();
    assert_eq!(drain(early).await.0, ["first"]);
}

async fn replay_then_live(s: SharedStreams) {
    lock_step(&s).await;
    const APPENDERS: usize = 4;
    const EACH: usize = 150;
    for round in 0..8 {
        let stream = fresh("race");
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|a| {
                let (s, stream) = (s.clone(), stream.clone());
                tokio::spawn(async move {
                    for n in 0..EACH {
                        s.append(&stream, format!("a{a}-{n}").into()).await.unwrap();
                        if n % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        // subscribers join while the appends run: each switches from
        // replay to live at a different moment, and must get every event
        // before the close (which would wake a subscriber that missed one)
        let total = APPENDERS * EACH;
        let mut subscribers = Vec::new();
        for k in 0..4 {
            tokio::time::sleep(Duration::from_micros(300 * k)).await;
            let mut sub = s.subscribe(&stream, StartAt::Beginning).await.unwrap();
            subscribers.push(tokio::spawn(async move {
                let got = take(&mut sub, total).await;
                (got, sub)
            }));
        }
        let mid = s
            .read(&stream, Offset::START, 1_000_000)
            .await
            .unwrap()
            .last;
        let mut from_mid = s.subscribe(&stream, StartAt::After(mid)).await.unwrap();
        for a in appenders {
            a.await.unwrap();
        }
        let all = s.read(&stream, Offset::START, 1_000_000).await.unwrap();
        let want: Vec<Offset> = all.events.iter().map(|e| e.offset).collect();
        assert_eq!(want.len(), total, "round {round}: appended events");
        let expected_mid: Vec<Offset> = want.iter().copied().filter(|o| *o > mid).collect();
        let (_, offsets) = take(&mut from_mid, expected_mid.len()).await;
        assert_eq!(offsets, expected_mid, "round {round}: from the middle");
        let mut live = Vec::new();
        for (k, sub) in subscribers.into_iter().enumerate() {
            let ((data, offsets), sub) = sub.await.unwrap();
            assert_eq!(
                offsets, want,
                "round {round}, subscriber {k}: gap, duplicate or disorder"
            );
            let distinct: BTreeSet<_> = data.iter().collect();
            assert_eq!(distinct.len(), total, "round {round}, subscriber {k}");
            // each appender's own events in its order
            for a in 0..APPENDERS {
                let mine: Vec<_> = data
                    .iter()
                    .filter(|d| d.starts_with(&format!("a{a}-")))
                    .collect();
                let expected: Vec<String> = (0..EACH).map(|n| format!("a{a}-{n}")).collect();
                assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "round {round}");
            }
            live.push(sub);
        }
        s.close(&stream, "success").await.unwrap();
        live.push(from_mid);
        for sub in live {
            let (data, _, end) = drain(sub).await;
            assert!(data.is_empty(), "round {round}: events after the last");
            assert_eq!(end, "success");
        }
        s.delete(&stream).await.unwrap();
    }
}

/// One event at a time, each awaited by every live subscriber before the
/// next: any lost wake-up leaves a subscriber waiting for an event that
/// has been appended (nothing later comes to hide it).
async fn lock_step(s: &SharedStreams) {
    let stream = fresh("lockstep");
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(s.subscribe(&stream, StartAt::Now).await.unwrap());
    }
    let mut waiting: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            let (tx, rx) = tokio::sync::mpsc::channel::<Offset>(1);
            tokio::spawn(async move {
                loop {
                    match tokio::time::timeout(WAIT, sub.next()).await {
                        Ok(Some(Ok(Item::Event(e)))) => {
                            if tx.send(e.offset).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            });
            rx
        })
        .collect();
    for n in 0..300 {
        let o = s.append(&stream, format!("e{n}").into()).await.unwrap();
        for rx in &mut waiting {
            let got = tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("event {n} appended but not delivered: a lost wake-up"));
            assert_eq!(got, Some(o), "event {n}");
        }
    }
    s.delete(&stream).await.unwrap();
}

async fn close_ends(s: SharedStreams) {
    let stream = fresh("close");
    s.append(&stream, "one".into()).await.unwrap();
    let subs: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                drain(s.subscribe(&stream, StartAt::Beginning).await.unwrap()).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.close(&stream, "error: tool failed").await.unwrap();
    for sub in subs {
        let (data, _, end) = sub.await.unwrap();
        assert_eq!(data, ["one"]);
        assert_eq!(end, "error: tool failed");
    }
    let err = s.append(&stream, "late".into()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    // a subscriber after the close replays and ends
    let (data, _, end) = drain(s.subscribe(&stream, StartAt::Beginning).await.unwrap()).await;
    assert_eq!((data.len(), end.as_str()), (1, "error: tool failed"));
}

async fn retention(s: SharedStreams) {
    let stream = fresh("retention");
    let mut offsets = Vec::new();
    for n in 0..20 {
        offsets.push(s.append(&stream, format!("e{n}").into()).await.unwrap());
    }
    // the newest 5 are kept; from the beginning means from the oldest kept
    let page = s.read(&stream, Offset::START, 100).await.unwrap();
    assert_eq!(page.events.len(), 5);
    assert_eq!(page.events[0].data, "e15");
    // a reader that needs what was removed is told, never skipped ahead
    let err = s.read(&stream, offsets[2], 100).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Missed, "{err}");
    assert!(err.to_string().contains(&offsets[2].to_string()), "{err}");
    let mut sub = s
        .subscribe(&stream, StartAt::After(offsets[2]))
        .await
        .unwrap();
    let err = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Missed, "{err}");
    // a slow subscriber that falls behind while it reads gets the same error
    let mut slow = s
        .subscribe(&stream, StartAt::After(offsets[16]))
        .await
        .unwrap();
    assert!(matches!(next(&mut slow).await, Item::Event(e) if e.data == "e17"));
    for n in 20..40 {
        s.append(&stream, format!("e{n}").into()).await.unwrap();
    }
    let mut outcome = None;
    for _ in 0..10 {
        match tokio::time::timeout(WAIT, slow.next()).await.unwrap() {
            Some(Ok(Item::Event(_))) => continue,
            Some(Err(e)) => {
                outcome = Some(e.kind());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        outcome,
        Some(ErrorKind::Missed),
        "the slow subscriber skipped silently"
    );
}

async fn cancellation(s: SharedStreams) {
    // sent before anyone listens: kept
    let early = fresh("cancel-early");
    s.cancel(&early).await.unwrap();
    let mut signal = s.cancellation(&early).await.unwrap();
    assert!(signal.is_cancelled());
    tokio::time::timeout(WAIT, signal.cancelled())
        .await
        .unwrap();
    // sent while listening: wakes the listener
    let late = fresh("cancel-late");
    let mut signal = s.cancellation(&late).await.unwrap();
    assert!(!signal.is_cancelled());
    let waiter = tokio::spawn(async move {
        signal.cancelled().await;
        true
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.cancel(&late).await.unwrap();
    assert!(tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap());
    // other runs are not cancelled
    assert!(!s
        .cancellation(&fresh("other"))
        .await
        .unwrap()
        .is_cancelled());
}

async fn names(s: SharedStreams) {
    for name in ["run:1", "{tag}:x", "ü-🚀", "", "a b", "*"] {
        let stream = format!("{}{name}", fresh("n"));
        s.append(&stream, name.to_string().into()).await.unwrap();
        let page = s.read(&stream, Offset::START, 10).await.unwrap();
        assert_eq!(page.events.len(), 1, "{name:?}");
        assert_eq!(page.events[0].data, name.as_bytes());
    }
    // names that only differ in their tail never share events
    let a = fresh("same");
    let b = format!("{a}:");
    s.append(&a, "a".into()).await.unwrap();
    assert!(s
        .read(&b, Offset::START, 10)
        .await
        .unwrap()
        .events
        .is_empty());
}

async fn delete(s: SharedStreams) {
    let stream = fresh("delete");
    s.append(&stream, "x".into()).await.unwrap();
    s.cancel(&stream).await.unwrap();
    let mut sub = s.subscribe(&stream, StartAt::Beginning).await.unwrap();
    assert!(matches!(next(&mut sub).await, Item::Event(_)));
    assert!(s.delete(&stream).await.unwrap());
    assert!(matches!(next(&mut sub).await, Item::End(reason) if reason == "deleted"));
    assert!(s
        .read(&stream, Offset::START, 10)
        .await
        .unwrap()
        .events
        .is_empty());
    assert!(
        !s.cancellation(&stream).await.unwrap().is_cancelled(),
        "the cancel went with it"
    );
    assert!(!s.delete(&stream).await.unwrap());
}

async fn stats(s: SharedStreams) {
    let counter = |name: &str| s.stats().counter(name);
    let (subscribers, appended) = (counter("stream_subscribers"), counter("events_appended"));
    let stream = fresh("stats");
    let mut offsets = Vec::new();
    for n in 0..10 {
        offsets.push(s.append(&stream, format!("e{n}").into()).await.unwrap());
    }
    assert!(
        counter("events_appended") >= appended + 10,
        "events_appended: {:?}",
        s.stats()
    );
    let mut sub = s.subscribe(&stream, StartAt::Beginning).await.unwrap();
    assert_eq!(
        counter("stream_subscribers"),
        subscribers + 1,
        "{:?}",
        s.stats()
    );
    // one of ten delivered: the subscription has read the rest and knows
    // it is 9 behind
    let (_, got) = take(&mut sub, 1).await;
    assert_eq!(got, offsets[..1]);
    assert_eq!(counter("stream_lag_max"), 9, "{:?}", s.stats());
    assert_eq!(counter("stream_lag_total"), 9, "{:?}", s.stats());
    take(&mut sub, 9).await;
    assert_eq!(counter("stream_lag_max"), 0, "caught up: {:?}", s.stats());
    drop(sub);
    assert_eq!(
        counter("stream_subscribers"),
        subscribers,
        "{:?}",
        s.stats()
    );
    s.delete(&stream).await.unwrap();
}
