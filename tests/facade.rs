//! The facade crate re-exports the runtime: a user with one dependency on
//! `tally` gets runtime, nurseries, timers and counters.

use std::time::Duration;

use tally::{Nursery, Policy, Runtime};
use tally_harness::probe;

#[test]
fn a_burst_through_the_facade_leaves_tasks_and_descriptors_at_their_baseline() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(tally::sleep(Duration::from_millis(1)));
    let fds_before = probe::open_fds().unwrap();
    let stats = rt.block_on(async {
        let nursery = Nursery::builder()
            .name("burst")
            .cap(256)
            .policy(Policy::Collect)
            .build();
        for i in 0..5_000u64 {
            let _handle = nursery
                .spawn(async move {
                    let file = tally::unblock(|| std::fs::File::open("Cargo.toml")).await??;
                    tally::sleep(Duration::from_millis(i % 3)).await;
                    drop(file);
                    Ok::<_, std::io::Error>(())
                })
                .await
                .unwrap();
        }
        nursery.join().await
    });
    assert_eq!((stats.completed, stats.failed, stats.live), (5_000, 0, 0));
    assert_eq!(rt.stats().live, 0);
    assert_eq!(probe::open_fds().unwrap(), fds_before);
    assert!(rt.shutdown(Duration::from_millis(100)).is_clean());
}
