//! The runtime: worker threads running one async-executor, each inside
//! async-io's `block_on` so that an idle worker drives the reactor.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle as ThreadHandle};
use std::time::{Duration, Instant};

use async_executor::{Executor, StaticExecutor};
use event_listener::{Event, Listener};

use crate::blocking::BlockingPool;
use crate::cancel::ChildSet;
use crate::context;
use crate::nursery::{deadline_after, Nursery, NurseryBuilder, DEFAULT_CAP, DEFAULT_DROP_WAIT};
use crate::stats::{BlockingInfo, Counters, Ending, ShutdownReport, Stats, TaskInfo};

/// The most worker threads a runtime takes.
pub const MAX_WORKERS: usize = 1024;

/// What every nursery and task of one runtime shares.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    /// Leaked once per runtime (a few hundred bytes): the static executor
    /// skips the bookkeeping the plain one keeps to cancel its tasks on drop,
    /// which the nurseries already do.
    pub(crate) executor: &'static StaticExecutor,
    counters: Counters,
    live: AtomicU64,
    idle: Event,
    next_task: AtomicU64,
    next_nursery: AtomicU64,
    pub(crate) root: Arc<ChildSet>,
    pub(crate) blocking: Arc<BlockingPool>,
    stopping: AtomicBool,
    stop: Event,
    pub(crate) shards: usize,
    pub(crate) default_cap: usize,
}

impl Shared {
    pub(crate) fn task_spawned(&self) {
        self.counters.spawned();
        // Relaxed: `live` is a statistic here; the nursery's state word orders
        // spawns against joins.
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn task_ended(&self, ending: Ending) {
        self.counters.ended(ending);
        // AcqRel: a shutdown that sees zero live tasks sees their endings too.
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify(usize::MAX);
        }
    }

    pub(crate) fn next_task_id(&self) -> u64 {
        self.next_task.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_nursery_id(&self) -> u64 {
        self.next_nursery.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.read(self.live.load(Ordering::Acquire))
    }

    fn is_settled(&self) -> bool {
        self.live.load(Ordering::Acquire) == 0 && self.blocking.live() == 0
    }

    fn settle_until(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.is_settled() {
                return true;
            }
            let listener = self.idle.listen();
            // Blocking jobs notify through their nursery, not here: poll for
            // them in short steps.
            let step = Instant::now() + Duration::from_millis(5);
            let step = deadline.map_or(step, |d| step.min(d));
            if self.is_settled() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let _ = listener.wait_deadline(step);
        }
    }

    fn tasks(&self) -> Vec<TaskInfo> {
        let mut tasks = Vec::new();
        for nursery in self.root.snapshot() {
            nursery.collect_tasks(&mut tasks);
        }
        tasks
    }

    async fn stopped(&self) {
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let listener = self.stop.listen();
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }
}

/// The task counts of the runtime this thread belongs to (a worker's, or the
/// one whose `block_on` is running), or `None` on any other thread. Lets a
/// task watch its own runtime without holding it.
pub fn runtime_stats() -> Option<Stats> {
    context::runtime().map(|shared| shared.stats())
}

/// Settings for a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    workers: Option<usize>,
    name: String,
    blocking_threads: usize,
    blocking_queue: usize,
    default_cap: usize,
    shutdown_grace: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: None,
            name: "tally".to_owned(),
            blocking_threads: 16,
            blocking_queue: 1024,
            default_cap: DEFAULT_CAP,
            shutdown_grace: Duration::ZERO,
        }
    }
}

impl Builder {
    /// Settings with the defaults: a worker per available core, threads named
    /// `tally-N`, 16 blocking threads with a queue of 1024 jobs.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of worker threads (at least 1). Default: the available cores.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
        self
    }

    /// The prefix of the threads' names: workers are `NAME-0`, `NAME-1`...,
    /// blocking threads `NAME-blocking`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most threads running blocking jobs at once (at least 1; default 16).
    pub fn blocking_threads(mut self, threads: usize) -> Self {
        self.blocking_threads = threads.max(1);
        self
    }

    /// The most blocking jobs queued, beyond those running (at least 1;
    /// default 1024). Submitters wait for room beyond it.
    pub fn blocking_queue(mut self, jobs: usize) -> Self {
        self.blocking_queue = jobs.max(1);
        self
    }

    /// The cap on live tasks of nurseries that do not set their own.
    pub fn default_nursery_cap(mut self, cap: usize) -> Self {
        self.default_cap = cap.max(1);
        self
    }

    /// The grace a dropped runtime gives its tasks before dropping them
    /// (default zero: a dropped runtime signals and drops at once).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Starts the worker threads.
    ///
    /// # Errors
    ///
    /// Fails if more than [`MAX_WORKERS`] workers are asked for, or if the
    /// operating system refuses a thread.
    pub fn build(self) -> std::io::Result<Runtime> {
        let workers = self
            .workers
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
        if workers > MAX_WORKERS {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{workers} worker threads asked for; at most {MAX_WORKERS}"),
            ));
        }
        let name: Arc<str> = self.name.into();
        let shared = Arc::new(Shared {
            executor: Executor::new().leak(),
            counters: Counters::default(),
            live: AtomicU64::new(0),
            idle: Event::new(),
            next_task: AtomicU64::new(1),
            next_nursery: AtomicU64::new(1),
            root: Arc::new(ChildSet::new(false)),
            blocking: Arc::new(BlockingPool::new(
                format!("{name}-blocking"),
                self.blocking_threads,
                self.blocking_queue,
            )),
            stopping: AtomicBool::new(false),
            stop: Event::new(),
            shards: (workers * 2).next_power_of_two(),
            default_cap: self.default_cap,
            name: name.clone(),
        });
        let mut threads = Vec::with_capacity(workers);
        for index in 0..workers {
            let worker = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    context::mark_worker();
                    let _context = context::enter_runtime(worker.clone());
                    // A panic inside a task is caught by its supervisor, so
                    // nothing unwinds out of `run`.
                    async_io::block_on(worker.executor.run(worker.stopped()));
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    shared.stopping.store(true, Ordering::Release);
                    shared.stop.notify(usize::MAX);
                    return Err(e);
                }
            }
        }
        Ok(Runtime {
            shared,
            threads,
            grace: self.shutdown_grace,
            shut: false,
        })
    }
}

/// A multi-threaded, work-stealing runtime whose every task lives in a
/// [`Nursery`].
///
/// Dropping the runtime shuts it down with the builder's grace (zero by
/// default): every task is signalled, then dropped; use
/// [`shutdown`](Runtime::shutdown) to choose the grace and get the report.
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<ThreadHandle<()>>,
    grace: Duration,
    shut: bool,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("name", &self.shared.name)
            .field("workers", &self.threads.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Runtime {
    /// A runtime with the default settings.
    ///
    /// # Panics
    ///
    /// Panics if the operating system refuses a worker thread; use
    /// [`Builder::build`] to handle that.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Runtime {
        match Builder::new().build() {
            Ok(rt) => rt,
            Err(e) => panic!("cannot start tally's worker threads: {e}"),
        }
    }

    /// Settings for a runtime.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Runs `future` to completion on the calling thread, with this runtime as
    /// the context for [`Nursery::new`] and [`unblock`](crate::unblock). The
    /// calling thread also drives the reactor while it waits; the tasks
    /// themselves run on the workers.
    ///
    /// # Panics
    ///
    /// Panics when called on a worker thread of any tally runtime: blocking a
    /// worker would stall the tasks queued on it.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        assert!(
            !context::is_worker(),
            "Runtime::block_on called on a tally worker thread; await the future instead"
        );
        let _context = context::enter_runtime(self.shared.clone());
        async_io::block_on(future)
    }

    /// A nursery under the runtime's root, from any thread.
    ///
    /// # Panics
    ///
    /// Panics once the runtime is shutting down.
    pub fn nursery(&self) -> Nursery {
        match NurseryBuilder::default().name("root").build_in(self) {
            Ok(nursery) => nursery,
            Err(e) => panic!("{e}"),
        }
    }

    /// Counts over every task of the runtime.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Every live task of the runtime, nursery by nursery.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.shared.tasks()
    }

    /// Blocking jobs queued or running.
    pub fn blocking_jobs(&self) -> Vec<BlockingInfo> {
        self.shared.blocking.jobs()
    }

    /// Closes every nursery, signals every task, waits up to `grace` for them
    /// to end, drops the rest, stops the workers and returns what happened.
    /// Returns within `grace` plus a short drop wait even if a task never
    /// yields or a blocking job never returns: their threads are left behind
    /// and reported as stuck.
    pub fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.shut_down(grace)
    }

    fn shut_down(&mut self, grace: Duration) -> ShutdownReport {
        self.shut = true;
        let shared = &self.shared;
        let start = Instant::now();
        let finished = shared.counters.ended_total();
        shared.root.close_and_signal_all();
        shared.settle_until(deadline_after(start, grace));
        let at_grace = shared.counters.ended_total();
        if !shared.is_settled() {
            shared.root.close_and_abort_all();
            shared.settle_until(deadline_after(Instant::now(), DEFAULT_DROP_WAIT));
        }
        let at_end = shared.counters.ended_total();
        let stuck = shared.tasks();
        let stuck_blocking = shared.blocking.jobs();

        shared.stopping.store(true, Ordering::Release);
        shared.stop.notify(usize::MAX);
        shared.blocking.close();
        let deadline = Instant::now() + DEFAULT_DROP_WAIT;
        let mut all_stopped = true;
        for thread in self.threads.drain(..) {
            while !thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                // Stuck inside a poll: leave it behind.
                all_stopped = false;
            }
        }
        if all_stopped {
            // Run what is still queued (wake-ups of tasks that have ended) so
            // that nothing queued outlives the runtime.
            let _context = context::enter_runtime(shared.clone());
            while shared.executor.try_tick() {}
        }
        ShutdownReport {
            finished,
            cancelled_cleanly: at_grace - finished,
            dropped: at_end - at_grace,
            stuck,
            stuck_blocking,
            elapsed: start.elapsed(),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.shut {
            let grace = self.grace;
            self.shut_down(grace);
        }
    }
}
