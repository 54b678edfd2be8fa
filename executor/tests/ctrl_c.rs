//! Ctrl-C through async-signal, with a real SIGINT sent to this process.
//! Alone in its binary: signal dispositions are per process.

use std::time::Duration;

use rustix::process::{getpid, kill_process, Signal};
use tally_executor::{Nursery, Runtime};

#[test]
fn a_sigint_wakes_the_task_waiting_for_ctrl_c_and_the_process_lives_on() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let outcome = rt.block_on(async {
        let nursery = Nursery::builder().name("signals").build();
        let waiter = nursery.spawn(tally_executor::ctrl_c()).await.unwrap();
        // Give the task time to install its handler.
        tally_executor::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        kill_process(getpid(), Signal::INT).unwrap();
        let outcome = tally_executor::timeout(Duration::from_secs(5), waiter).await;
        nursery.join().await;
        outcome
    });
    assert!(outcome.unwrap().unwrap().is_ok());
    assert_eq!(rt.stats().completed, 1);
}
