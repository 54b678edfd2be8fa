//! Exact task accounting under load: every test reads the nursery's and the
//! runtime's own counters right after the await that should have settled them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tally_executor::{Nursery, Runtime};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn ten_thousand_sleeping_tasks_are_all_counted_the_moment_join_returns() {
    let rt = runtime(2);
    let stats = rt.block_on(async {
        let nursery = Nursery::builder().name("sleepers").build();
        for _ in 0..10_000 {
            let ms = fastrand::u64(0..=20);
            let _handle = nursery
                .spawn(tally_executor::sleep(Duration::from_millis(ms)))
                .await
                .unwrap();
        }
        nursery.join().await
    });
    assert_eq!(stats.live, 0);
    assert_eq!(stats.completed, 10_000);
    assert_eq!(stats.spawned, 10_000);
    let runtime_stats = rt.stats();
    assert_eq!(runtime_stats.live, 0);
    assert_eq!(runtime_stats.completed, 10_000);
    assert!(rt.tasks().is_empty());
}

#[test]
fn a_hundred_thousand_rounds_of_spawn_then_join_leave_nothing_live() {
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::new();
        for round in 0..100_000u64 {
            let handle = nursery.spawn(async move { round }).await.unwrap();
            assert_eq!(handle.await.unwrap(), round);
            // No sleep, no retry: the counts fell before the handle woke us.
            let stats = nursery.stats();
            assert_eq!(stats.live, 0, "round {round}");
            assert_eq!(stats.completed, round + 1, "round {round}");
        }
    });
    let stats = rt.stats();
    assert_eq!(stats.live, 0);
    assert_eq!(stats.completed, 100_000);
}

#[test]
fn joining_from_inside_a_task_sees_the_same_exact_counts() {
    let rt = runtime(2);
    rt.block_on(async {
        let outer = Nursery::new();
        let handle = outer
            .spawn(async {
                let inner = Nursery::builder().name("inner").build();
                for _ in 0..10_000 {
                    inner
                        .spawn(tally_executor::yield_now())
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                    assert_eq!(inner.stats().live, 0);
                }
                inner.join().await
            })
            .await
            .unwrap();
        let inner_stats = handle.await.unwrap();
        assert_eq!((inner_stats.completed, inner_stats.live), (10_000, 0));
        // The outer task's count (1) and the inner tasks' are all gone.
        assert_eq!(outer.join().await.completed, 1);
    });
    assert_eq!(rt.stats().live, 0);
    assert_eq!(rt.stats().completed, 10_001);
}

/// A task that panics, fails or is cancelled also ends in exactly one bucket.
#[test]
fn a_hundred_thousand_tasks_cancelled_at_random_moments_add_up() {
    std::panic::set_hook(Box::new(|_| {}));
    let rt = runtime(2);
    let stats = rt.block_on(async {
        let nursery = Nursery::builder().cap(100_000).build();
        let mut handles = Vec::with_capacity(100_000);
        for i in 0..100_000u32 {
            let yields = fastrand::u32(0..4);
            let handle = nursery
                .spawn(async move {
                    for _ in 0..yields {
                        tally_executor::yield_now().await;
                    }
                    match i % 10 {
                        0 => panic!("task {i} panics"),
                        1 => Err(i),
                        _ => Ok(i),
                    }
                })
                .await
                .unwrap();
            // Cancel some while they run, abort others, leave the rest.
            match fastrand::u8(0..4) {
                0 => handle.abort(),
                1 => handle.cancel(),
                _ => {}
            }
            handles.push(handle);
            if i % 1000 == 0 {
                tally_executor::yield_now().await;
            }
        }
        for handle in handles.iter().step_by(7) {
            handle.abort();
        }
        let mut outcomes = [0u64; 4];
        for handle in handles {
            match handle.await {
                Ok(Ok(_)) => outcomes[0] += 1,
                Ok(Err(_)) => outcomes[1] += 1,
                Err(e) if e.is_panic() => outcomes[2] += 1,
                Err(e) => {
                    assert!(e.is_cancelled());
                    outcomes[3] += 1
                }
            }
        }
        let stats = nursery.join().await;
        assert_eq!(
            [
                stats.completed,
                stats.failed,
                stats.panicked,
                stats.cancelled
            ],
            outcomes,
            "the handles and the counters tell the same story"
        );
        stats
    });
    assert_eq!(stats.spawned, 100_000);
    assert_eq!(stats.ended(), 100_000);
    assert_eq!(stats.live, 0);
    assert!(stats.cancelled > 0 && stats.panicked > 0 && stats.failed > 0);
    assert_eq!(rt.stats().live, 0);
}

#[test]
fn a_capped_nursery_under_a_burst_never_exceeds_its_cap() {
    const CAP: usize = 64;
    let rt = runtime(2);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let stats = rt.block_on(async {
        let nursery = Nursery::builder().cap(CAP).build();
        let mut highest_live = 0;
        for _ in 0..100_000 {
            let running = running.clone();
            let peak = peak.clone();
            let _handle = nursery
                .spawn(async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tally_executor::yield_now().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .unwrap();
            highest_live = highest_live.max(nursery.stats().live);
        }
        assert!(highest_live <= CAP as u64, "live reached {highest_live}");
        nursery.join().await
    });
    assert!(peak.load(Ordering::SeqCst) <= CAP);
    assert_eq!((stats.completed, stats.live), (100_000, 0));
}

#[test]
fn try_spawn_on_a_full_nursery_gives_the_future_back() {
    let rt = runtime(1);
    rt.block_on(async {
        let nursery = Nursery::builder().cap(2).build();
        let release = Arc::new(AtomicBool::new(false));
        let wait = |release: Arc<AtomicBool>| async move {
            while !release.load(Ordering::SeqCst) {
                tally_executor::sleep(Duration::from_millis(1)).await;
            }
            7u32
        };
        let _a = nursery.try_spawn(wait(release.clone())).unwrap();
        let _b = nursery.try_spawn(wait(release.clone())).unwrap();
        let full = nursery.try_spawn(wait(release.clone())).unwrap_err();
        assert!(full.is_full());
        assert_eq!(nursery.stats().spawned, 2);
        release.store(true, Ordering::SeqCst);
        // The future we got back is whole and still runs.
        assert_eq!(full.into_future().await, 7);
        nursery.join().await;
        nursery.close();
        let closed = nursery.try_spawn(async { 1u32 }).unwrap_err();
        assert!(closed.is_closed());
        let closed = nursery.spawn(async { 1u32 }).await.unwrap_err();
        assert!(closed.is_closed());
        assert_eq!(nursery.stats().spawned, 2);
    });
}

#[test]
fn a_snapshot_lists_each_live_task_with_its_name_path_and_spawn_site() {
    let rt = runtime(2);
    rt.block_on(async {
        let nursery = Nursery::builder().name("service").build();
        let (started, is_started) = tally_executor::channel::bounded(1);
        let work = async move {
            started.send(()).await.unwrap();
            tally_executor::cancelled().await;
        };
        let line = line!() + 1;
        let _h = nursery.try_spawn_named("housekeeper", work).unwrap();
        is_started.recv().await.unwrap();
        let tasks = nursery.tasks();
        assert_eq!(tasks.len(), 1);
        let task = &tasks[0];
        assert_eq!(task.name, "housekeeper");
        assert_eq!(task.nursery, "/service");
        assert_eq!(task.location.file(), file!());
        assert_eq!(task.location.line(), line);
        assert_eq!(rt.tasks().len(), 1);
        nursery.cancel();
        let stats = nursery.join().await;
        assert_eq!((stats.completed, stats.live), (1, 0));
        assert!(rt.tasks().is_empty());
    });
}
