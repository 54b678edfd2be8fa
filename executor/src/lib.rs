//! tally's runtime: work-stealing worker threads on async-executor and
//! async-io, where every task lives in a structured, counted [`Nursery`].
//!
//! # The model
//!
//! - A [`Runtime`] owns N worker threads (by default one per available core).
//!   Each runs the runtime's one async-executor inside `async_io::block_on`, so
//!   an idle worker drives the I/O reactor and timers, and runners steal work
//!   from each other. [`Runtime::block_on`] runs a future on the calling thread.
//! - There is no detached spawn. Tasks are spawned into a [`Nursery`], which
//!   counts them (spawned, live, completed, failed, panicked, cancelled), can
//!   list them (name, nursery path, age, spawn location), caps how many are
//!   live, and cancels them: [`Nursery::cancel`] raises their cancel signal,
//!   [`Nursery::shutdown`] signals, waits a grace, drops the rest and reports,
//!   and dropping the `Nursery` drops what still runs in it.
//! - A nursery opened inside a task belongs to that task: the task is not over,
//!   and its counts do not fall, until the nursery is torn down, and its cancel
//!   signal reaches the nursery. So a parent never looks finished while a child
//!   runs, and a forgotten child cannot outlive its parent.
//! - A [`JoinHandle`] resolves to the task's value or a [`TaskError`]
//!   (panicked, with its message, or cancelled). Dropping it leaves the task to
//!   its nursery. A task's counts have fallen before its joiner wakes.
//! - A task whose output [`TaskOutput::is_failure`] (an `Err`) counts as
//!   failed; under [`Policy::FailFast`] that, or a panic, signals its siblings.
//! - Cancellation is in two steps: first a signal, which the running task can
//!   await ([`cancelled`]) or check ([`is_cancelled`]) to run its own explicit
//!   async cleanup; then, past the grace, a drop. A panic is caught at the task
//!   boundary and never takes a worker down.
//! - Calls that must block go to a bounded thread pool with [`unblock`].
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use tally_executor::{Nursery, Policy, Runtime};
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! rt.block_on(async {
//!     let nursery = Nursery::builder().name("jobs").policy(Policy::FailFast).build();
//!     let ok = nursery.spawn_named("ok", async { Ok::<_, String>(1) }).await.unwrap();
//!     let slow = nursery
//!         .spawn_named("slow", async {
//!             // Runs its own cleanup when a sibling's failure signals it.
//!             tally_executor::cancelled().await;
//!             Ok::<_, String>(2)
//!         })
//!         .await
//!         .unwrap();
//!     let bad = nursery.spawn_named("bad", async { Err::<u32, _>("no".to_owned()) }).await.unwrap();
//!
//!     assert_eq!(ok.await.unwrap(), Ok(1));
//!     assert_eq!(bad.await.unwrap(), Err("no".to_owned()));
//!     assert_eq!(slow.await.unwrap(), Ok(2));
//!     let stats = nursery.join().await;
//!     assert_eq!((stats.completed, stats.failed, stats.live), (2, 1, 0));
//! });
//! let report = rt.shutdown(Duration::from_millis(100));
//! assert!(report.is_clean());
//! ```
//!
//! Handles, nurseries and runtimes can be shared across threads:
//!
//! ```
//! fn is_send_sync<T: Send + Sync>() {}
//! is_send_sync::<tally_executor::Runtime>();
//! is_send_sync::<tally_executor::Nursery>();
//! is_send_sync::<tally_executor::Spawner>();
//! is_send_sync::<tally_executor::JoinHandle<u32>>();
//! ```

#![forbid(unsafe_code)]

mod blocking;
mod cancel;
pub mod channel;
mod context;
pub mod coop;
mod nursery;
mod registry;
mod runtime;
mod signal;
mod stats;
mod task;
mod time;
mod wait;

pub use blocking::{unblock, BlockingError, Unblock};
pub use cancel::{cancelled, is_cancelled, Cancelled};
pub use nursery::{
    Join, Nursery, NurseryBuilder, NurseryError, Policy, Spawn, SpawnError, Spawner, DEFAULT_CAP,
    DEFAULT_DROP_WAIT,
};
pub use runtime::{runtime_stats, Builder, Runtime, MAX_WORKERS};
pub use signal::{ctrl_c, CtrlC};
pub use stats::{BlockingInfo, ShutdownReport, Stats, TaskInfo};
pub use task::{JoinHandle, TaskError, TaskOutput};
pub use time::{
    interval, sleep, sleep_until, timeout, yield_now, Elapsed, Interval, Sleep, Tick, Timeout,
    YieldNow,
};
pub use wait::wait_until;

#[allow(dead_code)]
fn _ensure_send_and_sync() {
    fn both<T: Send + Sync>() {}
    both::<Runtime>();
    both::<Nursery>();
    both::<Spawner>();
    both::<JoinHandle<()>>();
    both::<TaskError>();
}
