//! Shutdowns that must return on time even when a task never yields or a
//! blocking job never returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_executor::{Nursery, Runtime};

#[test]
fn a_task_that_never_yields_and_a_blocking_job_that_never_returns_are_reported_stuck_on_time() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let (report, took) = rt.block_on({
        let release = release.clone();
        async move {
            let nursery = Nursery::builder()
                .name("stubborn")
                .drop_wait(Duration::from_millis(50))
                .build();
            let spin = release.clone();
            let _spinner = nursery
                .spawn_named("spinner", async move {
                    // Inside one poll until released: cannot be preempted.
                    while !spin.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                })
                .await
                .unwrap();
            let block = release.clone();
            let _blocker = nursery
                .spawn_named("blocker", async move {
                    let _ = tally_executor::unblock(move || {
                        while !block.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    })
                    .await;
                })
                .await
                .unwrap();
            let polite = nursery
                .spawn_named("polite", tally_executor::cancelled())
                .await
                .unwrap();
            tally_executor::sleep(Duration::from_millis(50)).await;
            let start = Instant::now();
            let report = nursery.shutdown(Duration::from_millis(100)).await;
            let took = start.elapsed();
            assert!(polite.is_finished());
            (report, took)
        }
    });
    // Grace 100 ms + drop wait 50 ms, with room for a busy machine.
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    assert_eq!(report.cancelled_cleanly, 1, "{report}");
    // The blocker task itself was dropped; its job runs on, and is stuck.
    assert_eq!(report.dropped, 1, "{report}");
    let stuck: Vec<_> = report.stuck.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(stuck, ["spinner"], "{report}");
    assert_eq!(report.stuck_blocking.len(), 1, "{report}");
    assert_eq!(report.stuck_blocking[0].nursery, "/stubborn");
    assert!(!report.is_clean());

    release.store(true, Ordering::SeqCst);
    let report = rt.shutdown(Duration::from_secs(1));
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_runtime_shutdown_signals_then_drops_and_reports_every_task() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        for _ in 0..5 {
            let _handle = services.spawn(tally_executor::cancelled()).await.unwrap();
        }
        let workers = Nursery::builder().name("workers").build();
        for _ in 0..7 {
            let _handle = workers
                .spawn(tally_executor::sleep(Duration::from_secs(3600)))
                .await
                .unwrap();
        }
        let _ = workers.spawn(async {}).await.unwrap().await;
        // Let every task reach its first await, so none is dropped unpolled.
        tally_executor::sleep(Duration::from_millis(20)).await;
        // The handles go out of scope; the runtime's root still owns them.
        std::mem::forget(services);
        std::mem::forget(workers);
    });
    assert_eq!(rt.stats().live, 12);
    let start = Instant::now();
    let report = rt.shutdown(Duration::from_millis(50));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(report.finished, 1, "{report}");
    assert_eq!(report.cancelled_cleanly, 5, "{report}");
    assert_eq!(report.dropped, 7, "{report}");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn nurseries_cannot_be_opened_once_the_runtime_is_shutting_down() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let nursery = rt.nursery();
    let spawner = nursery.spawner();
    drop(nursery);
    assert!(spawner.try_spawn(async {}).unwrap_err().is_closed());
    let report = rt.shutdown(Duration::ZERO);
    assert!(report.is_clean());
}
