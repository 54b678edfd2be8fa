//! Adversarial tests: races between spawn, cancel, abort and close, lost
//! wake-ups, teardown of nested nurseries, shutdown bounds, the blocking pool's
//! bounds and accounting, and the cooperative budget.
//!
//! Each test here once exposed a defect (now fixed) or pins down a behaviour;
//! run them with `cargo test -p tally-executor --test adversarial`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_executor::{Nursery, Policy, Runtime, TaskOutput};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

/// Silences the panics the tests cause on purpose (and only those), so that a
/// real assertion failure still prints.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let expected = ["PanicOnDrop dropped", "is_failure exploded", "overflow"];
            if !expected.iter().any(|e| message.contains(e)) {
                default(info);
            }
        }));
    });
}

/// Counts drops, so a test can see that a future was really dropped.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A value whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("PanicOnDrop dropped");
    }
}

/// A value whose destructor panics when it runs on a runtime worker (and
/// not when the last reference happens to be dropped by the test itself).
struct PanicOnWorkerDrop;

impl Drop for PanicOnWorkerDrop {
    fn drop(&mut self) {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        if name.starts_with("tally-") {
            panic!("PanicOnDrop dropped on {name}");
        }
    }
}

impl TaskOutput for PanicOnWorkerDrop {}

/// An output whose `is_failure` (user code) panics.
struct FailureCheckPanics;

impl TaskOutput for FailureCheckPanics {
    fn is_failure(&self) -> bool {
        panic!("is_failure exploded");
    }
}

// ---------------------------------------------------------------------------
// Lost wake-ups
// ---------------------------------------------------------------------------

/// Fills a nursery capped at two with two holders that end together, while
/// two waiter tasks each wait in `spawn` for room for a long-lived task.
/// When `keep_first` is set, the first waiter keeps its resolved `Spawn`
/// future alive (until cancelled). Returns whether each waiter got in, and
/// the nursery's live count after.
async fn two_waiters_for_two_slots(keep_first: bool) -> (bool, bool, u64) {
    let capped = Nursery::builder().name("capped").cap(2).build();
    let waiters = Nursery::builder().name("waiters").build();
    let (release, released) = tally_executor::channel::bounded::<()>(1);
    for _ in 0..2 {
        let released = released.clone();
        let _holder = capped
            .try_spawn(async move {
                let _ = released.recv().await;
            })
            .unwrap();
    }
    drop(released);
    let mut waiting = Vec::new();
    for index in 0..2 {
        let spawner = capped.spawner();
        let keep = keep_first && index == 0;
        waiting.push(
            waiters
                .try_spawn(async move {
                    // A long-lived service task: it holds its slot.
                    let mut spawn = spawner.spawn(tally_executor::cancelled());
                    let ok = (&mut spawn).await.is_ok();
                    if keep {
                        // E.g. a `Spawn` polled by reference in a select loop.
                        tally_executor::cancelled().await;
                    }
                    drop(spawn);
                    ok
                })
                .unwrap(),
        );
    }
    // Both waiters are listening for room.
    tally_executor::sleep(Duration::from_millis(50)).await;
    assert_eq!(capped.stats().live, 2);
    // One worker: both holders are queued before the first waiter is woken
    // and run back to back, so both slots free before a waiter runs.
    drop(release);
    let second = waiting.pop().unwrap();
    let first = waiting.pop().unwrap();
    let first_in = if keep_first {
        // It got in (or the second could not have been starved); it waits.
        true
    } else {
        let first = tally_executor::timeout(Duration::from_millis(500), first).await;
        matches!(first, Ok(Ok(true)))
    };
    let second = tally_executor::timeout(Duration::from_millis(500), second).await;
    let live = capped.stats().live;
    capped.cancel();
    waiters.cancel();
    (first_in, matches!(second, Ok(Ok(true))), live)
}

/// Two slots free up back to back while two `spawn`s (each in its own task)
/// wait for room: both get in. (`room.notify(1)` wakes only one; the second
/// is passed on when the first waiter drops its notified listener.)
#[test]
fn two_slots_freed_back_to_back_wake_both_waiting_spawns() {
    let rt = runtime(1);
    for _ in 0..5 {
        let outcome = rt.block_on(two_waiters_for_two_slots(false));
        assert_eq!(outcome, (true, true, 2));
    }
}

/// The same, but the first waiter keeps its resolved `Spawn` alive: its
/// listener, notified but never consumed (the spawn got in on its first
/// `try_reserve`), stays inside it, and the second waiter is never woken
/// although a slot is free.
#[test]
fn a_resolved_spawn_kept_alive_does_not_swallow_another_waiters_wake_up() {
    let rt = runtime(1);
    let outcome = rt.block_on(two_waiters_for_two_slots(true));
    assert_eq!(outcome, (true, true, 2));
}

/// A waiting `spawn` that is notified and then dropped (its task aborted)
/// passes the notification on to the next waiter.
#[test]
fn a_notified_spawn_that_is_dropped_passes_the_room_to_the_next_waiter() {
    let rt = runtime(1);
    rt.block_on(async {
        let capped = Nursery::builder().cap(1).build();
        let waiters = Nursery::new();
        let (release, released) = tally_executor::channel::bounded::<()>(1);
        let _holder = capped
            .try_spawn(async move {
                let _ = released.recv().await;
            })
            .unwrap();
        let mut handles = Vec::new();
        for _ in 0..2 {
            let spawner = capped.spawner();
            handles.push(
                waiters
                    .try_spawn(async move { spawner.spawn(async { 1u8 }).await.is_ok() })
                    .unwrap(),
            );
        }
        tally_executor::sleep(Duration::from_millis(30)).await;
        let second = handles.pop().unwrap();
        let first = handles.pop().unwrap();
        // Hold the one worker, free the slot and abort the first waiter: when
        // the worker is back, the slot's end notifies the first waiter, which
        // is then dropped with its notification unconsumed.
        let busy = Arc::new(AtomicBool::new(false));
        let busy_in_task = busy.clone();
        let blocker = waiters
            .try_spawn(async move {
                busy_in_task.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
            })
            .unwrap();
        while !busy.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        drop(release);
        first.abort();
        blocker.await.unwrap();
        assert!(first.await.unwrap_err().is_cancelled());
        let second = tally_executor::timeout(Duration::from_secs(1), second).await;
        assert!(matches!(second, Ok(Ok(true))), "{second:?}");
        let stats = capped.join().await;
        assert_eq!((stats.spawned, stats.completed, stats.live), (2, 2, 0));
    });
}

/// The same one-listener notification guards the blocking pool's queue, and
/// there a waiter consumes its notification *before* it retries: two queued
/// jobs are taken back to back while two submitters wait, only one submitter
/// is woken, and a latecomer overtakes the other one (which waits until the
/// next job is taken, here 400 ms later).
#[test]
fn every_submitter_waiting_for_queue_room_is_woken_when_room_frees() {
    let rt = Runtime::builder()
        .workers(1)
        .blocking_threads(1)
        .blocking_queue(2)
        .build()
        .unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let nursery = Nursery::new();
        let gate = Arc::new(AtomicBool::new(false));
        let job = |name: &'static str, order: Arc<Mutex<Vec<&'static str>>>, ms: u64| {
            move || {
                order.lock().unwrap().push(name);
                if ms > 0 {
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
        };
        // The one thread is held by the gate; a short and a long job fill the queue.
        let held = {
            let gate = gate.clone();
            nursery
                .try_spawn(tally_executor::unblock(move || {
                    while !gate.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                }))
                .unwrap()
        };
        tally_executor::sleep(Duration::from_millis(20)).await;
        let q1 = nursery
            .try_spawn(tally_executor::unblock(job("q1", order.clone(), 0)))
            .unwrap();
        let q2 = nursery
            .try_spawn(tally_executor::unblock(job("q2", order.clone(), 400)))
            .unwrap();
        tally_executor::sleep(Duration::from_millis(20)).await;
        // The queue is full: these two wait for room.
        let s1 = nursery
            .try_spawn(tally_executor::unblock(job("s1", order.clone(), 0)))
            .unwrap();
        let s2 = nursery
            .try_spawn(tally_executor::unblock(job("s2", order.clone(), 0)))
            .unwrap();
        tally_executor::sleep(Duration::from_millis(20)).await;
        // Keep the one worker busy for a moment, so that q1 and q2 are both
        // taken before a woken submitter can run.
        let busy = Arc::new(AtomicBool::new(false));
        let busy_in_task = busy.clone();
        let spinner = nursery
            .try_spawn(async move {
                busy_in_task.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            })
            .unwrap();
        while !busy.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        gate.store(true, Ordering::SeqCst);
        spinner.await.unwrap();
        tally_executor::sleep(Duration::from_millis(100)).await;
        // A latecomer: the queue should be full again (s1 and s2 in it).
        let late = nursery
            .try_spawn(tally_executor::unblock(job("late", order.clone(), 0)))
            .unwrap();
        for handle in [held, q1, q2, s1, s2, late] {
            handle.await.unwrap().unwrap();
        }
    });
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 5);
    assert_eq!(
        order[4], "late",
        "the latecomer overtook a waiter: {order:?}"
    );
}

// ---------------------------------------------------------------------------
// The blocking pool
// ---------------------------------------------------------------------------

/// With one idle thread, several jobs submitted at once must still get a
/// thread each (up to the maximum). `try_push` starts a thread only when
/// `idle == 0`, but `idle` falls only when the notified thread has woken and
/// retaken the lock: a job pushed right after the first sees `idle == 1`,
/// sends a `notify_one` that reaches nobody, starts no thread, and waits for
/// the first job to end. (A race with the wake-up, so a few fresh pools.)
#[test]
fn a_burst_of_jobs_on_a_warm_pool_runs_on_as_many_threads_as_allowed() {
    for round in 0..8 {
        let rt = Runtime::builder()
            .workers(1)
            .blocking_threads(4)
            .build()
            .unwrap();
        let (peak, took) = rt.block_on(async {
            // Warm the pool: one thread, now idle.
            tally_executor::unblock(|| ()).await.unwrap();
            tally_executor::sleep(Duration::from_millis(20)).await;
            let running = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let job = || {
                let running = running.clone();
                let peak = peak.clone();
                tally_executor::unblock(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(60));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            };
            let start = Instant::now();
            let ((a, b), (c, d)) = futures_lite::future::zip(
                futures_lite::future::zip(job(), job()),
                futures_lite::future::zip(job(), job()),
            )
            .await;
            for r in [a, b, c, d] {
                r.unwrap();
            }
            (peak.load(Ordering::SeqCst), start.elapsed())
        });
        assert_eq!(peak, 4, "round {round}: took {took:?}");
        let report = rt.shutdown(Duration::from_millis(100));
        assert!(report.is_clean(), "{report}");
    }
}

/// A cold pool never runs more jobs at once than its thread limit.
#[test]
fn a_cold_pool_runs_exactly_its_thread_limit_at_once_and_no_more() {
    let rt = Runtime::builder()
        .workers(1)
        .blocking_threads(2)
        .build()
        .unwrap();
    let peak = rt.block_on(async {
        let nursery = Nursery::new();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..10 {
            let running = running.clone();
            let peak = peak.clone();
            handles.push(
                nursery
                    .try_spawn(tally_executor::unblock(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    }))
                    .unwrap(),
            );
        }
        for handle in handles {
            handle.await.unwrap().unwrap();
        }
        peak.load(Ordering::SeqCst)
    });
    assert_eq!(peak, 2);
    assert!(rt.blocking_jobs().is_empty());
}

/// A job whose caller went away (timed out) and whose value panics when
/// dropped: the drop happens on the pool thread, outside the job's
/// `catch_unwind`, and the thread dies without giving back its slot in
/// `queue.threads`. With one thread allowed, the pool never runs a job again.
#[test]
fn a_blocking_value_that_panics_when_dropped_unclaimed_does_not_shrink_the_pool() {
    quiet_panics();
    let rt = Runtime::builder()
        .workers(1)
        .blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        let abandoned = tally_executor::timeout(
            Duration::from_millis(10),
            tally_executor::unblock(|| {
                std::thread::sleep(Duration::from_millis(60));
                PanicOnDrop
            }),
        )
        .await;
        assert!(abandoned.is_err());
        // The job returns and its value is dropped on the pool thread.
        tally_executor::sleep(Duration::from_millis(150)).await;
        let next =
            tally_executor::timeout(Duration::from_secs(1), tally_executor::unblock(|| 5u8)).await;
        assert!(matches!(next, Ok(Ok(5))), "{next:?}");
    });
}

/// An `unblock` dropped after its job was queued: the job runs on and counts
/// in the runtime and in the nursery until it returns, then nothing is left.
#[test]
fn a_dropped_unblock_counts_until_its_job_returns_and_then_not_at_all() {
    let rt = runtime(2);
    let release = Arc::new(AtomicBool::new(false));
    rt.block_on({
        let release = release.clone();
        async move {
            let nursery = Nursery::builder()
                .name("abandoning")
                .drop_wait(Duration::from_millis(20))
                .build();
            let handle = nursery
                .try_spawn(async move {
                    let job = tally_executor::unblock(move || {
                        while !release.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    });
                    tally_executor::timeout(Duration::from_millis(20), job)
                        .await
                        .is_err()
                })
                .unwrap();
            assert!(handle.await.unwrap(), "the job should have timed out");
            // The task is gone; its job is not.
            assert_eq!(nursery.stats().live, 0);
            let report = nursery.shutdown(Duration::from_millis(30)).await;
            assert_eq!(report.stuck_blocking.len(), 1, "{report}");
            assert_eq!(report.stuck_blocking[0].nursery, "/abandoning");
            assert!(report.stuck.is_empty(), "{report}");
        }
    });
    assert_eq!(rt.blocking_jobs().len(), 1);
    release.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !rt.blocking_jobs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(rt.blocking_jobs().is_empty());
    let report = rt.shutdown(Duration::from_millis(100));
    assert!(report.is_clean(), "{report}");
}

/// `unblock` with no runtime on the thread resolves to an error.
#[test]
fn unblock_outside_any_runtime_is_an_error_not_a_panic() {
    let result = futures_lite::future::block_on(tally_executor::unblock(|| 1u8));
    let error = result.unwrap_err();
    assert!(error.is_not_run());
    assert!(!error.is_panic());
}

// ---------------------------------------------------------------------------
// Panics at the task boundary
// ---------------------------------------------------------------------------

/// `TaskOutput::is_failure` is user code, called by the supervisor outside
/// the task's `catch_unwind`. Its panic unwinds into async-executor (which
/// swallows it for a detached task) and the task is counted *cancelled* by
/// `EndGuard`'s drop: the handle says "cancelled", `panicked` stays 0, and a
/// fail-fast nursery does not signal the siblings.
#[test]
fn a_task_whose_is_failure_panics_is_counted_panicked_and_fails_fast() {
    quiet_panics();
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::builder().policy(Policy::FailFast).build();
        let sibling = nursery
            .try_spawn(async {
                tally_executor::cancelled().await;
                7u8
            })
            .unwrap();
        tally_executor::sleep(Duration::from_millis(20)).await;
        let bad = nursery.try_spawn(async { FailureCheckPanics }).unwrap();
        let error = bad.await.err().unwrap();
        let sibling = tally_executor::timeout(Duration::from_secs(1), sibling).await;
        let stats = nursery.stats();
        nursery.cancel();
        assert!(error.is_panic(), "{error:?}");
        assert_eq!((stats.panicked, stats.cancelled), (1, 0), "{stats:?}");
        assert!(matches!(sibling, Ok(Ok(7))), "fail-fast did not signal");
    });
}

/// An output nobody claimed is dropped on the worker after the accounting; a
/// panic in its destructor must not take the worker down or skew the counts.
#[test]
fn a_panic_dropping_an_unclaimed_output_leaves_counts_and_workers_intact() {
    quiet_panics();
    let rt = runtime(1);
    rt.block_on(async {
        let nursery = Nursery::new();
        for _ in 0..100 {
            let handle = nursery.try_spawn(async { PanicOnWorkerDrop }).unwrap();
            drop(handle);
        }
        let stats = nursery.join().await;
        assert_eq!((stats.spawned, stats.completed, stats.live), (100, 100, 0));
        // The one worker still runs tasks.
        let after = nursery.try_spawn(async { 3u8 }).unwrap();
        let after = tally_executor::timeout(Duration::from_secs(1), after).await;
        assert!(matches!(after, Ok(Ok(3))));
    });
    assert_eq!(rt.stats().live, 0);
}

/// A panicking destructor of the user's future, run by an abort, is caught.
#[test]
fn a_future_whose_destructor_panics_is_still_counted_once_when_aborted() {
    quiet_panics();
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::new();
        let handle = nursery
            .try_spawn(async {
                let _bomb = PanicOnDrop;
                tally_executor::sleep(Duration::from_secs(3600)).await;
            })
            .unwrap();
        tally_executor::sleep(Duration::from_millis(20)).await;
        handle.abort();
        assert!(handle.await.unwrap_err().is_cancelled());
        let stats = nursery.join().await;
        assert_eq!((stats.spawned, stats.cancelled, stats.live), (1, 1, 0));
        let again = nursery.try_spawn(async { 1u8 }).unwrap();
        assert_eq!(again.await.unwrap(), 1);
    });
}

// ---------------------------------------------------------------------------
// Races between spawn and cancel / abort / close
// ---------------------------------------------------------------------------

/// Spawns from another thread race a close: each is either refused or
/// counted, the nursery drains, and nothing is left live anywhere.
#[test]
fn spawns_racing_a_close_are_each_refused_or_counted_exactly_once() {
    let rt = runtime(2);
    for round in 0..30u64 {
        let nursery = Nursery::builder().cap(1 << 20).build_in(&rt).unwrap();
        let spawner = nursery.spawner();
        let accepted = std::thread::spawn(move || {
            let mut accepted = 0u64;
            let mut refused = 0u64;
            while refused < 10 {
                match spawner.try_spawn(tally_executor::yield_now()) {
                    Ok(handle) => {
                        drop(handle);
                        accepted += 1;
                    }
                    Err(e) => {
                        assert!(e.is_closed());
                        refused += 1;
                    }
                }
            }
            accepted
        });
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..2000)));
        nursery.close();
        let accepted = accepted.join().unwrap();
        let stats = rt.block_on(nursery.join());
        assert_eq!(
            (stats.spawned, stats.completed, stats.live),
            (accepted, accepted, 0),
            "round {round}"
        );
        assert!(nursery.is_closed());
    }
    assert_eq!(rt.stats().live, 0);
    assert!(rt.tasks().is_empty());
}

/// Spawns from another thread race a drop of the nursery: every task spawned
/// is dropped (none keeps sleeping), and every handle resolves.
#[test]
fn spawns_racing_a_nursery_drop_are_all_dropped_and_resolve() {
    let rt = runtime(2);
    for round in 0..30 {
        let nursery = Nursery::builder().cap(1 << 20).build_in(&rt).unwrap();
        let spawner = nursery.spawner();
        let dropped = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(AtomicUsize::new(0));
        let thread = {
            let dropped = dropped.clone();
            let made = made.clone();
            std::thread::spawn(move || {
                let mut handles = Vec::new();
                loop {
                    made.fetch_add(1, Ordering::SeqCst);
                    let guard = DropCount(dropped.clone());
                    let work = async move {
                        let _guard = guard;
                        tally_executor::sleep(Duration::from_secs(3600)).await;
                    };
                    match spawner.try_spawn(work) {
                        Ok(handle) => handles.push(handle),
                        Err(e) => {
                            assert!(e.is_closed());
                            break;
                        }
                    }
                }
                handles
            })
        };
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..2000)));
        drop(nursery);
        let handles = thread.join().unwrap();
        let spawned = handles.len();
        rt.block_on(async {
            for handle in handles {
                let result = tally_executor::timeout(Duration::from_secs(2), handle).await;
                assert!(
                    matches!(&result, Ok(Err(e)) if e.is_cancelled()),
                    "round {round}"
                );
            }
        });
        // Every guard made was dropped: spawned ones by the abort, the
        // refused one with its future.
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            made.load(Ordering::SeqCst),
            "round {round}: {spawned} spawned"
        );
    }
    let stats = rt.stats();
    assert_eq!((stats.live, stats.completed), (0, 0));
    assert_eq!(stats.cancelled, stats.spawned);
}

/// Spawns from another thread race a cancel: tasks spawned before it see the
/// signal, tasks spawned after are born signalled. None is left waiting.
#[test]
fn spawns_racing_a_cancel_leave_no_task_unsignalled() {
    let rt = runtime(2);
    for round in 0..30 {
        let nursery = Nursery::builder().cap(1 << 20).build_in(&rt).unwrap();
        let spawner = nursery.spawner();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut count = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let handle = spawner.try_spawn(tally_executor::cancelled()).unwrap();
                    drop(handle);
                    count += 1;
                }
                count
            })
        };
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..2000)));
        nursery.cancel();
        std::thread::sleep(Duration::from_micros(500));
        stop.store(true, Ordering::SeqCst);
        let count = thread.join().unwrap();
        let stats = rt.block_on(tally_executor::timeout(
            Duration::from_secs(2),
            nursery.join(),
        ));
        let stats = stats.unwrap_or_else(|_| panic!("round {round}: {:?}", nursery.stats()));
        assert_eq!(stats.spawned, count);
        assert_eq!(stats.completed + stats.cancelled, count, "round {round}");
        assert_eq!(stats.live, 0);
    }
}

/// `Header::signal` raises the flag, then looks for the task's child set;
/// `Header::children` reads the flag inside `get_or_init`. If the signal
/// lands after that read but before the set is stored, `children.get()` is
/// `None` and the set is born unsignalled: the task's first nursery never
/// hears the cancel. (Rare: the window is the allocation of the set.)
#[test]
fn a_cancel_racing_a_tasks_first_nursery_still_reaches_it() {
    let rt = runtime(1);
    let lost = rt.block_on(async {
        let outer = Nursery::new();
        for i in 0..40_000u32 {
            let ready = Arc::new(AtomicBool::new(false));
            let ready_in_task = ready.clone();
            let parent = outer
                .try_spawn(async move {
                    ready_in_task.store(true, Ordering::SeqCst);
                    for _ in 0..(i % 4) {
                        std::hint::spin_loop();
                    }
                    let children = Nursery::new();
                    let child = children.try_spawn(tally_executor::cancelled()).unwrap();
                    // Reached by the signal, or born signalled: ends at once.
                    tally_executor::timeout(Duration::from_millis(300), child)
                        .await
                        .is_err()
                })
                .unwrap();
            while !ready.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            parent.cancel();
            if parent.await.unwrap() {
                return Some(i);
            }
        }
        None
    });
    assert_eq!(lost, None, "the signal missed the child nursery");
}

// ---------------------------------------------------------------------------
// Structure: parents and the nurseries they own
// ---------------------------------------------------------------------------

/// A parent aborted at a random moment while it spawns children: by the time
/// its handle resolves, every child future it made has been dropped.
#[test]
fn a_parent_aborted_mid_spawn_ends_only_after_every_child_is_dropped() {
    let rt = runtime(2);
    for round in 0..50 {
        let made = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        rt.block_on({
            let made = made.clone();
            let dropped = dropped.clone();
            async move {
                let nursery = Nursery::new();
                let (made_in_task, dropped_in_task) = (made.clone(), dropped.clone());
                let parent = nursery
                    .try_spawn(async move {
                        let children = Nursery::builder().name("kids").cap(8).build();
                        // Until aborted (the bound is never reached).
                        while made_in_task.load(Ordering::SeqCst) < usize::MAX {
                            made_in_task.fetch_add(1, Ordering::SeqCst);
                            let guard = DropCount(dropped_in_task.clone());
                            let _ = children
                                .spawn(async move {
                                    let _guard = guard;
                                    tally_executor::sleep(Duration::from_secs(3600)).await;
                                })
                                .await;
                            tally_executor::yield_now().await;
                        }
                    })
                    .unwrap();
                tally_executor::sleep(Duration::from_micros(fastrand::u64(0..3000))).await;
                parent.abort();
                let error = tally_executor::timeout(Duration::from_secs(2), parent)
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: parent never ended"))
                    .unwrap_err();
                assert!(error.is_cancelled());
                assert_eq!(
                    dropped.load(Ordering::SeqCst),
                    made.load(Ordering::SeqCst),
                    "round {round}"
                );
                let stats = nursery.join().await;
                assert_eq!((stats.cancelled, stats.live), (1, 0));
            }
        });
    }
    assert_eq!(rt.stats().live, 0);
}

/// A nursery shutdown whose grandchild never yields returns within grace
/// plus drop wait, names the stuck parent and grandchild, and once the
/// grandchild lets go, everything ends and is counted.
#[test]
fn a_shutdown_with_a_stuck_grandchild_returns_on_time_and_drains_after() {
    let rt = runtime(2);
    let release = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicBool::new(false));
    rt.block_on({
        let release = release.clone();
        let spinning = spinning.clone();
        async move {
            let nursery = Nursery::builder()
                .name("top")
                .drop_wait(Duration::from_millis(50))
                .build();
            let spinning_in_task = spinning.clone();
            let _parent = nursery
                .try_spawn_named("parent", async move {
                    let kids = Nursery::builder().name("kids").build();
                    let _spinner = kids
                        .try_spawn_named("spinner", async move {
                            spinning_in_task.store(true, Ordering::SeqCst);
                            while !release.load(Ordering::SeqCst) {
                                std::hint::spin_loop();
                            }
                        })
                        .unwrap();
                    kids.join().await;
                })
                .unwrap();
            let start = Instant::now();
            while !spinning.load(Ordering::SeqCst) {
                tally_executor::sleep(Duration::from_millis(1)).await;
                assert!(start.elapsed() < Duration::from_secs(2));
            }
            let start = Instant::now();
            let report = nursery.shutdown(Duration::from_millis(100)).await;
            let took = start.elapsed();
            assert!(took < Duration::from_millis(800), "took {took:?}");
            assert!(took >= Duration::from_millis(140), "took {took:?}");
            let mut stuck: Vec<_> = report.stuck.iter().map(|t| t.name.clone()).collect();
            stuck.sort();
            assert_eq!(stuck, ["parent", "spinner"], "{report}");
            assert_eq!(
                (report.cancelled_cleanly, report.dropped),
                (0, 0),
                "{report}"
            );
        }
    });
    // Let the grandchild go: its poll returns, it ends, and its parent
    // (aborted, waiting for the kids to be torn down) ends after it.
    release.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(2);
    while rt.stats().live != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = rt.stats();
    assert_eq!(
        (stats.live, stats.cancelled, stats.completed, stats.spawned),
        (0, 1, 1, 2)
    );
    assert!(rt.tasks().is_empty());
}

/// Subtasks spawned by a task after its cancel signal are born signalled and
/// dropped unpolled: cleanup cannot be delegated to subtasks. (Documents the
/// current behaviour; see the report's design notes.)
#[test]
fn a_task_that_cleans_up_after_its_signal_cannot_hand_the_cleanup_to_a_subtask() {
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::new();
        let handle = nursery
            .try_spawn(async {
                tally_executor::cancelled().await;
                let cleanup = Nursery::builder().name("cleanup").build();
                let flushed = cleanup.try_spawn(async { "flushed" }).unwrap();
                flushed.await.map_err(|e| e.is_cancelled())
            })
            .unwrap();
        tally_executor::sleep(Duration::from_millis(10)).await;
        handle.cancel();
        assert_eq!(handle.await.unwrap(), Err(true));
    });
}

/// Aborting a handle after its task returned does not turn the value into a
/// cancellation.
#[test]
fn aborting_after_the_task_returned_still_yields_its_value() {
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::new();
        let handle = nursery.try_spawn(async { 9u8 }).unwrap();
        while !handle.is_finished() {
            tally_executor::sleep(Duration::from_millis(1)).await;
        }
        handle.abort();
        handle.cancel();
        assert_eq!(handle.await.unwrap(), 9);
        let stats = nursery.join().await;
        assert_eq!((stats.completed, stats.cancelled), (1, 0));
    });
}

/// A `spawn` waiting for room through a `Spawner` gets its future back, whole,
/// when the nursery is dropped.
#[test]
fn a_waiting_spawn_gets_its_future_back_when_the_nursery_is_dropped() {
    let rt = runtime(2);
    rt.block_on(async {
        let capped = Nursery::builder().cap(1).build();
        let _holder = capped.try_spawn(tally_executor::cancelled()).unwrap();
        let spawner = capped.spawner();
        let waiters = Nursery::new();
        let waiter = waiters
            .try_spawn(async move {
                match spawner.spawn(async { 42u32 }).await {
                    Ok(_) => None,
                    Err(e) => {
                        assert!(e.is_closed());
                        Some(e.into_future().await)
                    }
                }
            })
            .unwrap();
        tally_executor::sleep(Duration::from_millis(20)).await;
        drop(capped);
        let back = tally_executor::timeout(Duration::from_secs(1), waiter).await;
        assert!(matches!(back, Ok(Ok(Some(42)))), "{back:?}");
    });
}

// ---------------------------------------------------------------------------
// Runtime shutdown
// ---------------------------------------------------------------------------

fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// After a runtime shutdown no worker or blocking thread of it is left.
#[test]
fn a_runtime_shutdown_leaves_no_worker_or_blocking_thread_behind() {
    let rt = Runtime::builder()
        .name("zqadv")
        .workers(2)
        .blocking_threads(3)
        .build()
        .unwrap();
    rt.block_on(async {
        let ((a, b), c) = futures_lite::future::zip(
            futures_lite::future::zip(
                tally_executor::unblock(|| std::thread::sleep(Duration::from_millis(20))),
                tally_executor::unblock(|| std::thread::sleep(Duration::from_millis(20))),
            ),
            tally_executor::unblock(|| std::thread::sleep(Duration::from_millis(20))),
        )
        .await;
        a.unwrap();
        b.unwrap();
        c.unwrap();
    });
    assert_eq!(threads_named("zqadv-"), 2 + 3);
    let report = rt.shutdown(Duration::from_millis(50));
    assert!(report.is_clean(), "{report}");
    let deadline = Instant::now() + Duration::from_secs(1);
    while threads_named("zqadv-") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(threads_named("zqadv-"), 0);
}

/// A runtime shutdown with a task that never yields returns within the grace
/// plus its drop wait (100 ms) plus the wait for the workers (100 ms).
#[test]
fn a_runtime_shutdown_with_a_task_that_never_yields_returns_on_time() {
    let rt = runtime(2);
    let release = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicBool::new(false));
    let nursery = rt.nursery();
    let _spinner = {
        let release = release.clone();
        let spinning = spinning.clone();
        nursery
            .try_spawn_named("spinner", async move {
                spinning.store(true, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::hint::spin_loop();
                }
            })
            .unwrap()
    };
    while !spinning.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let start = Instant::now();
    let report = rt.shutdown(Duration::from_millis(100));
    let took = start.elapsed();
    release.store(true, Ordering::SeqCst);
    assert!(took >= Duration::from_millis(200), "took {took:?}");
    assert!(took < Duration::from_millis(800), "took {took:?}");
    let stuck: Vec<_> = report.stuck.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(stuck, ["spinner"], "{report}");
    assert_eq!(
        (report.cancelled_cleanly, report.dropped),
        (0, 0),
        "{report}"
    );
    // The spinner's poll returns once released, and it ends on its own.
    let deadline = Instant::now() + Duration::from_secs(2);
    while nursery.stats().live != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(nursery.stats().live, 0);
    assert_eq!(nursery.stats().completed, 1);
}

/// A runtime shutdown counts the tasks of nested nurseries exactly.
#[test]
fn a_runtime_shutdown_counts_nested_tasks_exactly() {
    let rt = runtime(2);
    let started = Arc::new(AtomicUsize::new(0));
    rt.block_on({
        let started = started.clone();
        async move {
            let top = Nursery::builder().name("top").build();
            for _ in 0..2 {
                let started = started.clone();
                let _parent = top
                    .try_spawn(async move {
                        let kids = Nursery::builder().name("kids").build();
                        for i in 0..3 {
                            let started = started.clone();
                            let _kid = kids
                                .try_spawn(async move {
                                    started.fetch_add(1, Ordering::SeqCst);
                                    if i == 0 {
                                        // Ignores the signal: dropped at the deadline.
                                        tally_executor::sleep(Duration::from_secs(3600)).await;
                                    } else {
                                        tally_executor::cancelled().await;
                                    }
                                })
                                .unwrap();
                        }
                        kids.join().await;
                    })
                    .unwrap();
            }
            while started.load(Ordering::SeqCst) < 6 {
                tally_executor::sleep(Duration::from_millis(1)).await;
            }
            std::mem::forget(top);
        }
    });
    assert_eq!(rt.stats().live, 8);
    let start = Instant::now();
    let report = rt.shutdown(Duration::from_millis(50));
    assert!(start.elapsed() < Duration::from_secs(1));
    // 4 kids end within the grace; the 2 sleepers and their 2 parents (still
    // waiting in `kids.join()`) are dropped.
    assert_eq!(report.finished, 0, "{report}");
    assert_eq!(report.cancelled_cleanly, 4, "{report}");
    assert_eq!(report.dropped, 4, "{report}");
    assert!(report.is_clean(), "{report}");
}

/// A grace of `Duration::MAX` ("wait as long as it takes") overflows
/// `Instant + Duration` in `Nursery::shutdown` and `Runtime::shutdown`, which
/// panic (and the runtime's workers are then never stopped).
#[test]
fn a_shutdown_with_an_unbounded_grace_does_not_panic() {
    quiet_panics();
    let rt = runtime(1);
    let nursery_clean = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let nursery = Nursery::new();
            let _quick = nursery.try_spawn(async { 1u8 }).unwrap();
            nursery.shutdown(Duration::MAX).await.is_clean()
        })
    }));
    let runtime_clean = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.shutdown(Duration::MAX).is_clean()
    }));
    assert!(
        matches!(nursery_clean, Ok(true)),
        "Nursery::shutdown panicked"
    );
    assert!(
        matches!(runtime_clean, Ok(true)),
        "Runtime::shutdown panicked"
    );
}

/// `workers(n)` with an absurd `n` fails with an error, not a panic.
#[test]
fn an_absurd_worker_count_is_an_error_not_a_panic() {
    quiet_panics();
    let built = std::panic::catch_unwind(|| Runtime::builder().workers(usize::MAX).build().err());
    assert!(matches!(built, Ok(Some(_))));
}

// ---------------------------------------------------------------------------
// Time and the cooperative budget
// ---------------------------------------------------------------------------

/// `Interval::tick` says ticks missed while nobody waited are not made up,
/// but async-io's interval timer advances its deadline by one period per
/// tick, so after a stall the missed ticks all fire at once.
#[test]
fn an_interval_does_not_make_up_missed_ticks_in_a_burst() {
    let rt = runtime(1);
    rt.block_on(async {
        let mut interval = tally_executor::interval(Duration::from_millis(20));
        interval.tick().await;
        // Stall for five periods.
        tally_executor::sleep(Duration::from_millis(110)).await;
        interval.tick().await;
        let start = Instant::now();
        interval.tick().await;
        interval.tick().await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(30), "burst: {took:?}");
    });
}

/// The budget is fresh at the start of each poll of a task and unlimited
/// outside tasks.
#[test]
fn the_budget_is_fresh_each_poll_and_unlimited_outside_tasks() {
    let rt = runtime(1);
    rt.block_on(async {
        assert_eq!(tally_executor::coop::remaining(), None);
        let nursery = Nursery::new();
        let handle = nursery
            .try_spawn(async {
                let mut seen = Vec::new();
                let (tx, rx) = tally_executor::channel::bounded(1);
                for _ in 0..3 {
                    seen.push(tally_executor::coop::remaining().unwrap());
                    for i in 0..10u32 {
                        tx.send(i).await.unwrap();
                        rx.recv().await.unwrap();
                    }
                    seen.push(tally_executor::coop::remaining().unwrap());
                    tally_executor::yield_now().await;
                }
                seen
            })
            .unwrap();
        let seen = handle.await.unwrap();
        let budget = tally_executor::coop::BUDGET;
        assert_eq!(
            seen,
            [
                budget,
                budget - 20,
                budget,
                budget - 20,
                budget,
                budget - 20
            ]
        );
        // And nothing leaked onto the worker after the task.
        let after = nursery
            .try_spawn(async { std::thread::current().name().map(str::to_owned) })
            .unwrap();
        assert!(after.await.unwrap().is_some());
    });
    let outside = std::thread::spawn(tally_executor::coop::remaining)
        .join()
        .unwrap();
    assert_eq!(outside, None);
}

/// A synchronous `block_on` inside a task (a sync callback, a `Drop`) polls
/// tally's leaf futures under the task's budget. Once the budget is spent,
/// each of them wakes and returns `Pending` forever, since the budget is only
/// refilled when the outer poll ends: the nested `block_on` spins at 100% CPU
/// (here: until the timeout, whose own timer is not budgeted).
#[test]
fn a_nested_block_on_inside_a_task_completes_after_the_budget_is_spent() {
    let rt = runtime(1);
    rt.block_on(async {
        let nursery = Nursery::new();
        let handle = nursery
            .try_spawn(async {
                let (tx, rx) = tally_executor::channel::bounded(1);
                for i in 0..200u32 {
                    // The escape hatch: a nested block_on runs unconstrained.
                    let round =
                        futures_lite::future::block_on(tally_executor::coop::unconstrained(
                            tally_executor::timeout(Duration::from_millis(200), async {
                                tx.send(i).await.unwrap();
                                rx.recv().await.unwrap()
                            }),
                        ));
                    if round.is_err() {
                        return Some(i);
                    }
                }
                None
            })
            .unwrap();
        assert_eq!(handle.await.unwrap(), None, "stuck at that round");
    });
}
