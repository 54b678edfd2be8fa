//! Cancellation, failure and structure: signals, drops, panics and nesting.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_executor::{Nursery, Policy, Runtime};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

/// A task body that panics with `message`.
async fn explode(message: &'static str) {
    if !message.is_empty() {
        panic!("{message}");
    }
}

/// Counts drops, so a test can see that a future was really dropped.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_task_cancelled_before_its_first_poll_never_runs_and_is_counted_cancelled() {
    // One worker, and we are on it: the new task cannot be polled before we yield.
    let rt = runtime(1);
    let ran = Arc::new(AtomicBool::new(false));
    let ran_in_task = ran.clone();
    rt.block_on(async move {
        let outer = Nursery::new();
        let result = outer
            .spawn(async move {
                let nursery = Nursery::new();
                let handle = nursery
                    .spawn(async move { ran_in_task.store(true, Ordering::SeqCst) })
                    .await
                    .unwrap();
                handle.cancel();
                let error = handle.await.unwrap_err();
                let stats = nursery.join().await;
                (error.is_cancelled(), stats)
            })
            .await
            .unwrap()
            .await
            .unwrap();
        let (cancelled, stats) = result;
        assert!(cancelled);
        assert_eq!(
            (stats.spawned, stats.cancelled, stats.completed, stats.live),
            (1, 1, 0, 0)
        );
    });
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(rt.stats().live, 0);
}

#[test]
fn dropping_a_handle_does_not_cancel_its_task() {
    let rt = runtime(2);
    let done = Arc::new(AtomicBool::new(false));
    let done_in_task = done.clone();
    let stats = rt.block_on(async move {
        let nursery = Nursery::new();
        let handle = nursery
            .spawn(async move {
                tally_executor::sleep(Duration::from_millis(20)).await;
                done_in_task.store(true, Ordering::SeqCst);
            })
            .await
            .unwrap();
        drop(handle);
        nursery.join().await
    });
    assert!(done.load(Ordering::SeqCst));
    assert_eq!((stats.completed, stats.cancelled), (1, 0));
}

#[test]
fn a_signalled_task_runs_its_own_async_cleanup_before_it_ends() {
    let rt = runtime(2);
    let cleaned = Arc::new(AtomicBool::new(false));
    let cleaned_in_task = cleaned.clone();
    rt.block_on(async move {
        let nursery = Nursery::new();
        let (started, is_started) = tally_executor::channel::bounded(1);
        let handle = nursery
            .spawn(async move {
                started.send(()).await.unwrap();
                tally_executor::cancelled().await;
                assert!(tally_executor::is_cancelled());
                // Explicit async cleanup: it may await.
                tally_executor::sleep(Duration::from_millis(5)).await;
                cleaned_in_task.store(true, Ordering::SeqCst);
                "rolled back"
            })
            .await
            .unwrap();
        is_started.recv().await.unwrap();
        assert!(!tally_executor::is_cancelled(), "block_on is not a task");
        handle.cancel();
        assert_eq!(handle.await.unwrap(), "rolled back");
    });
    assert!(cleaned.load(Ordering::SeqCst));
}

#[test]
fn ten_thousand_panicking_tasks_leave_every_worker_running() {
    std::panic::set_hook(Box::new(|_| {}));
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::new();
        let mut handles = Vec::new();
        for i in 0..10_000u32 {
            let handle = nursery
                .spawn(async move {
                    if i < u32::MAX {
                        panic!("boom {i}");
                    }
                })
                .await
                .unwrap();
            handles.push(handle);
        }
        for (i, handle) in handles.into_iter().enumerate() {
            let error = handle.await.unwrap_err();
            assert_eq!(error.panic_message(), Some(format!("boom {i}").as_str()));
        }
        let stats = nursery.join().await;
        assert_eq!((stats.panicked, stats.live), (10_000, 0));

        // Every worker still takes tasks: spread blocking-free tasks until
        // each worker thread has run one.
        let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
        for _ in 0..1000 {
            let seen_by_task = seen.clone();
            let _handle = nursery
                .spawn(async move {
                    let name = std::thread::current().name().unwrap_or("").to_owned();
                    seen_by_task.lock().unwrap().insert(name);
                    std::thread::sleep(Duration::from_micros(200));
                })
                .await
                .unwrap();
            if seen.lock().unwrap().len() == 2 {
                break;
            }
        }
        nursery.join().await;
        let seen = seen.lock().unwrap();
        assert!(
            seen.contains("tally-0") && seen.contains("tally-1"),
            "{seen:?}"
        );
    });
}

#[test]
fn under_fail_fast_a_panic_cancels_the_siblings_and_each_runs_its_cleanup() {
    std::panic::set_hook(Box::new(|_| {}));
    let rt = runtime(2);
    let cleanups = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let nursery = Nursery::builder().policy(Policy::FailFast).build();
        let (started, is_started) = tally_executor::channel::bounded(10);
        let mut siblings = Vec::new();
        for _ in 0..10 {
            let cleanups = cleanups.clone();
            let started = started.clone();
            siblings.push(
                nursery
                    .spawn(async move {
                        started.send(()).await.unwrap();
                        tally_executor::cancelled().await;
                        tally_executor::yield_now().await;
                        cleanups.fetch_add(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap(),
            );
        }
        for _ in 0..10 {
            is_started.recv().await.unwrap();
        }
        let bad = nursery.spawn(explode("the child gave up")).await.unwrap();
        let error = bad.await.unwrap_err();
        assert_eq!(error.panic_message(), Some("the child gave up"));
        for sibling in siblings {
            sibling.await.unwrap();
        }
        let stats = nursery.join().await;
        assert_eq!((stats.panicked, stats.completed, stats.live), (1, 10, 0));
        assert!(nursery.first_failure().unwrap().contains("panicked"));
        // The nursery stays cancelled: a late task is born signalled and
        // dropped unpolled...
        let late = nursery.spawn(async { 5u8 }).await.unwrap();
        assert!(late.await.unwrap_err().is_cancelled());
        // ...while the workers that ran the panic still run tasks.
        let fresh = Nursery::new();
        assert_eq!(fresh.spawn(async { 5u8 }).await.unwrap().await.unwrap(), 5);
    });
    assert_eq!(cleanups.load(Ordering::SeqCst), 10);
}

#[test]
fn under_fail_fast_an_err_output_cancels_the_siblings_too() {
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::builder().policy(Policy::FailFast).build();
        let sibling = nursery
            .spawn(async {
                tally_executor::cancelled().await;
                Ok::<_, String>("stopped")
            })
            .await
            .unwrap();
        let _handle = nursery
            .spawn(async { Err::<&str, _>("bad row".to_owned()) })
            .await
            .unwrap();
        assert_eq!(sibling.await.unwrap(), Ok("stopped"));
        let stats = nursery.join().await;
        assert_eq!((stats.failed, stats.completed), (1, 1));
    });
}

#[test]
fn under_collect_a_panic_is_recorded_and_the_others_finish() {
    std::panic::set_hook(Box::new(|_| {}));
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::builder().policy(Policy::Collect).build();
        let mut others = Vec::new();
        for i in 0..10u64 {
            others.push(
                nursery
                    .spawn(async move {
                        tally_executor::sleep(Duration::from_millis(10)).await;
                        assert!(!tally_executor::is_cancelled());
                        i
                    })
                    .await
                    .unwrap(),
            );
        }
        let bad = nursery.spawn(explode("one bad apple")).await.unwrap();
        assert_eq!(
            bad.await.unwrap_err().panic_message(),
            Some("one bad apple")
        );
        let mut sum = 0;
        for other in others {
            sum += other.await.unwrap();
        }
        assert_eq!(sum, 45);
        let stats = nursery.join().await;
        assert_eq!(
            (stats.panicked, stats.completed, stats.cancelled),
            (1, 10, 0)
        );
        assert!(nursery.first_failure().unwrap().contains("panicked"));
    });
}

#[test]
fn a_parent_that_returns_early_does_not_finish_until_its_children_are_gone() {
    let rt = runtime(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let dropped_in_task = dropped.clone();
    rt.block_on(async move {
        let nursery = Nursery::new();
        let parent = nursery
            .spawn(async move {
                let children = Nursery::builder().name("children").build();
                for _ in 0..10 {
                    let guard = DropCount(dropped_in_task.clone());
                    let _handle = children
                        .spawn(async move {
                            let _guard = guard;
                            tally_executor::sleep(Duration::from_secs(3600)).await;
                        })
                        .await
                        .unwrap();
                }
                tally_executor::yield_now().await;
                // Return early, the children still sleeping.
                "parent done"
            })
            .await
            .unwrap();
        assert_eq!(parent.await.unwrap(), "parent done");
        // By the time the parent's handle resolved, every child was dropped.
        assert_eq!(dropped.load(Ordering::SeqCst), 10);
        let stats = nursery.join().await;
        assert_eq!((stats.completed, stats.live), (1, 0));
    });
    let stats = rt.stats();
    assert_eq!((stats.live, stats.cancelled, stats.completed), (0, 10, 1));
}

#[test]
fn a_nursery_that_escapes_its_task_is_closed_when_the_task_ends() {
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::new();
        let handle = nursery
            .spawn(
                async {
                    let escaped = Nursery::builder().name("escaped").build();
                    let _ = escaped
                        .spawn(tally_executor::sleep(Duration::from_secs(3600)))
                        .await;
                    escaped
                }
                .then_wrap(),
            )
            .await
            .unwrap();
        let escaped = handle.await.unwrap().0;
        assert!(escaped.is_closed());
        assert_eq!(escaped.stats().live, 0);
        assert_eq!(escaped.stats().cancelled, 1);
        assert!(escaped.try_spawn(async {}).unwrap_err().is_closed());
    });
    assert_eq!(rt.stats().live, 0);
}

/// Lets a test return a `Nursery` from a task (it is not a `TaskOutput`).
struct Escaped(Nursery);
impl tally_executor::TaskOutput for Escaped {}

trait ThenWrap: std::future::Future<Output = Nursery> + Sized {
    fn then_wrap(self) -> impl std::future::Future<Output = Escaped> + Send
    where
        Self: Send,
    {
        async move { Escaped(self.await) }
    }
}
impl<F: std::future::Future<Output = Nursery>> ThenWrap for F {}

#[test]
fn cancelling_the_top_of_three_nested_nurseries_reaches_all_and_the_counts_agree() {
    let rt = runtime(2);
    let cleanups = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (level1, level2, level3) = rt.block_on({
        let cleanups = cleanups.clone();
        let started = started.clone();
        async move {
            let top = Nursery::builder().name("top").build();
            let mut level2_handles = Vec::new();
            for _ in 0..3 {
                let cleanups = cleanups.clone();
                let started = started.clone();
                level2_handles.push(
                    top.spawn(async move {
                        let middle = Nursery::builder().name("middle").build();
                        let mut level3_handles = Vec::new();
                        for _ in 0..3 {
                            let cleanups = cleanups.clone();
                            let started = started.clone();
                            level3_handles.push(
                                middle
                                    .spawn(async move {
                                        let bottom = Nursery::builder().name("bottom").build();
                                        for _ in 0..4 {
                                            let cleanups = cleanups.clone();
                                            let started = started.clone();
                                            let _handle = bottom
                                                .spawn(async move {
                                                    started.fetch_add(1, Ordering::SeqCst);
                                                    tally_executor::cancelled().await;
                                                    cleanups.fetch_add(1, Ordering::SeqCst);
                                                })
                                                .await
                                                .unwrap();
                                        }
                                        bottom.join().await
                                    })
                                    .await
                                    .unwrap(),
                            );
                        }
                        let mut bottom_total = tally_executor::Stats::default();
                        for handle in level3_handles {
                            let s = handle.await.unwrap();
                            bottom_total.spawned += s.spawned;
                            bottom_total.completed += s.completed;
                            bottom_total.live += s.live;
                        }
                        (middle.join().await, bottom_total)
                    })
                    .await
                    .unwrap(),
                );
            }
            while started.load(Ordering::SeqCst) < 36 {
                tally_executor::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(top.tasks().len(), 3 + 9 + 36);
            top.cancel();
            let mut middle_total = tally_executor::Stats::default();
            let mut bottom_total = tally_executor::Stats::default();
            for handle in level2_handles {
                let (middle, bottom) = handle.await.unwrap();
                middle_total.spawned += middle.spawned;
                middle_total.completed += middle.completed;
                middle_total.live += middle.live;
                bottom_total.spawned += bottom.spawned;
                bottom_total.completed += bottom.completed;
                bottom_total.live += bottom.live;
            }
            (top.join().await, middle_total, bottom_total)
        }
    });
    assert_eq!(cleanups.load(Ordering::SeqCst), 36);
    assert_eq!((level1.spawned, level1.completed, level1.live), (3, 3, 0));
    assert_eq!((level2.spawned, level2.completed, level2.live), (9, 9, 0));
    assert_eq!((level3.spawned, level3.completed, level3.live), (36, 36, 0));
    let all = rt.stats();
    assert_eq!((all.spawned, all.completed, all.live), (48, 48, 0));
}

#[test]
fn dropping_a_nursery_drops_its_tasks_even_mid_poll_on_another_worker() {
    let rt = runtime(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let in_poll = Arc::new(AtomicBool::new(false));
    rt.block_on({
        let dropped = dropped.clone();
        let in_poll = in_poll.clone();
        async move {
            let nursery = Nursery::new();
            let guard = DropCount(dropped.clone());
            let in_poll_task = in_poll.clone();
            let _handle = nursery
                .spawn(async move {
                    let _guard = guard;
                    in_poll_task.store(true, Ordering::SeqCst);
                    // A long poll: busy for 50 ms without yielding.
                    std::thread::sleep(Duration::from_millis(50));
                    tally_executor::sleep(Duration::from_secs(3600)).await;
                })
                .await
                .unwrap();
            while !in_poll.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            drop(nursery);
            // The drop did not wait for the poll; the poll's end does the drop.
            assert_eq!(dropped.load(Ordering::SeqCst), 0);
            tally_executor::sleep(Duration::from_millis(200)).await;
        }
    });
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    let stats = rt.stats();
    assert_eq!((stats.cancelled, stats.live), (1, 0));
}

#[test]
fn an_always_ready_channel_loop_still_yields_its_worker() {
    // One worker: if the producer/consumer loop never yielded, the ticker
    // task would never run until the loop ended.
    let rt = runtime(1);
    rt.block_on(async {
        let nursery = Nursery::new();
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker_ticks = ticks.clone();
        let _ticker = nursery
            .spawn(async move {
                while !tally_executor::is_cancelled() {
                    ticker_ticks.fetch_add(1, Ordering::SeqCst);
                    tally_executor::yield_now().await;
                }
            })
            .await
            .unwrap();
        let looper = nursery
            .spawn(async move {
                let (tx, rx) = tally_executor::channel::bounded(1);
                let mut seen_ticks = 0;
                for i in 0..10_000u32 {
                    tx.send(i).await.unwrap();
                    rx.recv().await.unwrap();
                    seen_ticks = seen_ticks.max(ticks.load(Ordering::SeqCst));
                }
                seen_ticks
            })
            .await
            .unwrap();
        let seen = looper.await.unwrap();
        // 20,000 ready operations with a budget of 128 each poll: the
        // ticker ran many times while the loop was going.
        assert!(seen > 50, "the ticker ran only {seen} times");
        nursery.cancel();
    });
}

#[test]
fn blocking_jobs_run_off_the_workers_and_are_counted() {
    let rt = runtime(1);
    rt.block_on(async {
        let nursery = Nursery::builder().name("files").build();
        let handle = nursery
            .spawn(async {
                let worker = std::thread::current().name().map(str::to_owned);
                let job_thread =
                    tally_executor::unblock(|| std::thread::current().name().map(str::to_owned))
                        .await
                        .unwrap();
                (worker, job_thread)
            })
            .await
            .unwrap();
        let (worker, job) = handle.await.unwrap();
        assert_eq!(worker.as_deref(), Some("tally-0"));
        assert_eq!(job.as_deref(), Some("tally-blocking"));
        let panicked = tally_executor::unblock(|| -> u8 { panic!("disk on fire") }).await;
        assert!(panicked.unwrap_err().is_panic());
    });
    assert!(rt.blocking_jobs().is_empty());
}

#[test]
fn a_signalled_task_can_hand_its_cleanup_to_a_shielded_nursery_which_its_end_still_bounds() {
    let rt = runtime(2);
    let flushed = Arc::new(AtomicBool::new(false));
    let hung_dropped = Arc::new(AtomicUsize::new(0));
    rt.block_on({
        let flushed = flushed.clone();
        let hung_dropped = hung_dropped.clone();
        async move {
            let nursery = Nursery::new();
            let (started, is_started) = tally_executor::channel::bounded(1);
            let handle = nursery
                .spawn(async move {
                    started.send(()).await.unwrap();
                    tally_executor::cancelled().await;
                    // Signalled: the cleanup goes to subtasks that must not
                    // inherit the signal.
                    let cleanup = Nursery::builder().name("cleanup").shielded().build();
                    let flushed_in_task = flushed.clone();
                    let flush = cleanup
                        .spawn(async move {
                            assert!(!tally_executor::is_cancelled());
                            tally_executor::sleep(Duration::from_millis(5)).await;
                            flushed_in_task.store(true, Ordering::SeqCst);
                        })
                        .await
                        .unwrap();
                    flush.await.unwrap();
                    // One that hangs is still bounded by this task's end.
                    let guard = DropCount(hung_dropped.clone());
                    let _hung = cleanup
                        .spawn(async move {
                            let _guard = guard;
                            std::future::pending::<()>().await;
                        })
                        .await
                        .unwrap();
                    tally_executor::yield_now().await;
                    cleanup.stats()
                })
                .await
                .unwrap();
            is_started.recv().await.unwrap();
            handle.cancel();
            let stats = handle.await.unwrap();
            assert_eq!((stats.completed, stats.live), (1, 1));
            nursery.join().await;
        }
    });
    assert!(flushed.load(Ordering::SeqCst));
    assert_eq!(hung_dropped.load(Ordering::SeqCst), 1);
    assert_eq!(rt.stats().live, 0);
}
