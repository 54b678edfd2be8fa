//! Nurseries: the only place tasks are spawned, counted and cancelled.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener, IntoNotification};

use crate::cancel::ChildSet;
use crate::context;
use crate::registry::Registry;
use crate::runtime::{Runtime, Shared};
use crate::stats::{Counters, Ending, ShutdownReport, Stats, TaskInfo};
use crate::task::{supervise, AnyTask, Header, JoinHandle, TaskCell, TaskOutput};

/// What a nursery does when one of its tasks fails (returns an output that
/// counts as a failure, or panics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// The failure is counted and remembered; the other tasks go on.
    #[default]
    Collect,
    /// The failure raises the cancel signal of every other task in the nursery.
    FailFast,
}

/// The default cap on a nursery's live tasks.
pub const DEFAULT_CAP: usize = 16_384;

/// How long a shutdown waits, after the grace, for aborted tasks to be dropped.
pub const DEFAULT_DROP_WAIT: Duration = Duration::from_millis(100);

/// `start + wait`, or `None` (no deadline) when that is past what an
/// `Instant` can hold.
pub(crate) fn deadline_after(start: Instant, wait: Duration) -> Option<Instant> {
    start.checked_add(wait)
}

/// Bit 0 of the state word: the nursery takes no new tasks.
const CLOSED: usize = 1;
/// The live count sits above the closed bit, in steps of two.
const ONE_TASK: usize = 2;

/// The nursery's cancel signal was raised: tasks spawned from now on are born signalled.
const SIGNALLED: u8 = 1;
/// The nursery's tasks were aborted: tasks spawned from now on are born aborted.
const ABORTED: u8 = 2;

/// The shared part of a nursery, held by its [`Nursery`] handle, by each of
/// its tasks and by pending spawns.
pub(crate) struct NurseryInner {
    pub(crate) id: u64,
    pub(crate) path: Arc<str>,
    pub(crate) rt: Arc<Shared>,
    policy: Policy,
    cap: usize,
    drop_wait: Duration,
    /// Deaf to its owner's cancel signal (its own `cancel` and every abort still reach it).
    pub(crate) shielded: bool,
    /// `live * ONE_TASK | CLOSED`, in one word so that "closed and empty" is
    /// seen by exactly one of the last task's end and the close.
    state: AtomicUsize,
    flags: AtomicU8,
    torn_down: AtomicU8,
    pub(crate) counters: Counters,
    pub(crate) registry: Registry,
    /// Blocking jobs submitted by this nursery's tasks and not yet finished.
    pub(crate) blocking_live: AtomicUsize,
    /// Notified when live tasks (or live blocking jobs) fall to zero.
    pub(crate) idle: Event,
    /// Notified when a task ends, for spawns waiting for room.
    room: Event,
    owner: Arc<ChildSet>,
    first_failure: OnceLock<String>,
}

impl fmt::Debug for NurseryInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NurseryInner")
            .field("path", &self.path)
            .field("live", &self.live())
            .finish()
    }
}

/// Why a task could not be spawned; gives the future back.
pub struct SpawnError<F> {
    closed: bool,
    future: F,
}

impl<F> SpawnError<F> {
    /// The nursery is closing or closed: it takes no new tasks.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The nursery is at its cap of live tasks.
    pub fn is_full(&self) -> bool {
        !self.closed
    }

    /// The future that was not spawned.
    pub fn into_future(self) -> F {
        self.future
    }
}

impl<F> fmt::Debug for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnError")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Display for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.closed {
            f.write_str("nursery is closed and takes no new tasks")
        } else {
            f.write_str("nursery is at its cap of live tasks")
        }
    }
}

impl<F> std::error::Error for SpawnError<F> {}

/// Why a nursery could not be opened.
#[derive(Debug)]
pub struct NurseryError {
    no_runtime: bool,
}

impl fmt::Display for NurseryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.no_runtime {
            f.write_str("no tally runtime on this thread: open nurseries inside Runtime::block_on or a task, or with Runtime::nursery")
        } else {
            f.write_str("the owner of this nursery is ending or shut down")
        }
    }
}

impl std::error::Error for NurseryError {}

enum Reserve {
    Ok,
    Full,
    Closed,
}

impl NurseryInner {
    pub(crate) fn live(&self) -> usize {
        self.state.load(Ordering::Acquire) / ONE_TASK
    }

    fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    fn try_reserve(&self) -> Reserve {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & CLOSED != 0 {
                return Reserve::Closed;
            }
            if state / ONE_TASK >= self.cap {
                return Reserve::Full;
            }
            // AcqRel: pairs with the Release of a task's end, so a slot freed
            // by an ending task is reused only after its accounting is done.
            match self.state.compare_exchange_weak(
                state,
                state + ONE_TASK,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Reserve::Ok,
                Err(actual) => state = actual,
            }
        }
    }

    /// Starts a task in a slot already reserved.
    fn launch<F>(
        self: &Arc<Self>,
        name: Cow<'static, str>,
        location: &'static Location<'static>,
        future: F,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        let rt = &self.rt;
        self.counters.spawned();
        rt.task_spawned();
        let id = rt.next_task_id();
        let cell = Arc::new(TaskCell::new(id, name, location, self.clone()));
        let slot = self.registry.insert(cell.clone() as AnyTask);
        // After the insert: either a concurrent cancel or abort walks the
        // registry and finds this task, or its flag is seen here (the shard
        // lock orders the two).
        let flags = self.flags.load(Ordering::Acquire);
        if flags & ABORTED != 0 {
            cell.header.abort();
        } else if flags & SIGNALLED != 0 {
            cell.header.signal();
        }
        rt.executor
            .spawn(supervise(cell.clone(), future, slot))
            .detach();
        JoinHandle::new(cell)
    }

    fn try_spawn<F>(
        self: &Arc<Self>,
        name: Cow<'static, str>,
        location: &'static Location<'static>,
        future: F,
    ) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        match self.try_reserve() {
            Reserve::Ok => Ok(self.launch(name, location, future)),
            Reserve::Full => Err(SpawnError {
                closed: false,
                future,
            }),
            Reserve::Closed => Err(SpawnError {
                closed: true,
                future,
            }),
        }
    }

    /// Accounts for a task that ended: counters, live counts, wake-ups, and the
    /// fail-fast policy. Runs before the task's joiner is woken.
    pub(crate) fn task_ended(&self, ending: Ending, header: &Header) {
        if matches!(ending, Ending::Failed | Ending::Panicked) {
            let what = match ending {
                Ending::Panicked => "panicked",
                _ => "failed",
            };
            let _ = self.first_failure.set(format!(
                "task {} ({}) spawned at {} {what}",
                header.id, header.name, header.location
            ));
            if self.policy == Policy::FailFast {
                self.cancel();
            }
        }
        self.counters.ended(ending);
        self.rt.task_ended(ending);
        // Release: everything this task did, and its accounting above, happens
        // before a joiner that sees the lower count.
        let previous = self.state.fetch_sub(ONE_TASK, Ordering::AcqRel);
        // One more waiter, not "at least one": a waiter already notified may
        // not be the one that takes this slot.
        self.room.notify(1.additional());
        if previous / ONE_TASK == 1 {
            self.idle.notify(usize::MAX);
            if previous & CLOSED != 0 {
                self.tear_down();
            }
        }
    }

    pub(crate) fn close(&self) {
        let previous = self.state.fetch_or(CLOSED, Ordering::AcqRel);
        if previous & CLOSED == 0 {
            // Spawns waiting for room must now see the nursery closed.
            self.room.notify(usize::MAX);
            if previous / ONE_TASK == 0 {
                self.tear_down();
            }
        }
    }

    fn tear_down(&self) {
        if self.torn_down.swap(1, Ordering::AcqRel) == 0 {
            self.owner.detach(self.id);
            self.idle.notify(usize::MAX);
        }
    }

    pub(crate) fn cancel(&self) {
        self.flags.fetch_or(SIGNALLED, Ordering::AcqRel);
        for task in self.registry.tasks() {
            task.header().signal();
        }
    }

    pub(crate) fn abort_all(&self) {
        self.flags.fetch_or(SIGNALLED | ABORTED, Ordering::AcqRel);
        for task in self.registry.tasks() {
            task.header().abort();
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.read(self.live() as u64)
    }

    /// Live tasks of this nursery and, below each, of the nurseries it opened.
    pub(crate) fn collect_tasks(&self, into: &mut Vec<TaskInfo>) {
        for task in self.registry.tasks() {
            let header = task.header();
            into.push(header.info());
            if let Some(children) = header.children.get() {
                for nursery in children.snapshot() {
                    nursery.collect_tasks(into);
                }
            }
        }
    }

    fn is_settled(&self) -> bool {
        self.live() == 0 && self.blocking_live.load(Ordering::Acquire) == 0
    }

    /// Waits until no task (and no blocking job) of this nursery is live, or
    /// until `deadline`. Says whether it settled.
    async fn settle_until(&self, deadline: Option<Instant>) -> bool {
        crate::wait_until(&self.idle, deadline, || self.is_settled()).await
    }
}

/// A scope that owns the tasks spawned into it: counts them, cancels them, and
/// does not let them outlive it.
///
/// A nursery opened inside a task belongs to that task: the task is not over
/// (and its counts do not fall) until the nursery is torn down, and the task's
/// cancel signal reaches it. A nursery opened in [`Runtime::block_on`] or with
/// [`Runtime::nursery`] belongs to the runtime's root.
///
/// Dropping a `Nursery` closes it and drops every task still in it (a task in
/// the middle of a poll on another worker is dropped when that poll returns).
/// To end it gracefully, call [`join`](Nursery::join) or
/// [`shutdown`](Nursery::shutdown) first.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tally_executor::{Nursery, Runtime};
///
/// let rt = Runtime::new();
/// rt.block_on(async {
///     let nursery = Nursery::new();
///     let mut handles = Vec::new();
///     for i in 0..10u64 {
///         handles.push(nursery.spawn(async move { i * 2 }).await.unwrap());
///     }
///     let mut sum = 0;
///     for handle in handles {
///         sum += handle.await.unwrap();
///     }
///     let stats = nursery.join().await;
///     assert_eq!((sum, stats.completed, stats.live), (90, 10, 0));
/// });
/// ```
pub struct Nursery {
    inner: Arc<NurseryInner>,
}

impl fmt::Debug for Nursery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nursery")
            .field("path", &self.inner.path)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Settings for a new [`Nursery`].
#[derive(Debug, Clone)]
pub struct NurseryBuilder {
    name: Cow<'static, str>,
    cap: Option<usize>,
    policy: Policy,
    drop_wait: Duration,
    shielded: bool,
}

impl Default for NurseryBuilder {
    fn default() -> Self {
        NurseryBuilder {
            name: Cow::Borrowed("nursery"),
            cap: None,
            policy: Policy::Collect,
            drop_wait: DEFAULT_DROP_WAIT,
            shielded: false,
        }
    }
}

impl NurseryBuilder {
    /// The nursery's name, the last part of its path in snapshots.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The most tasks live at once (at least 1). The default is the runtime's,
    /// itself [`DEFAULT_CAP`] unless its builder says otherwise.
    pub fn cap(mut self, cap: usize) -> Self {
        self.cap = Some(cap.max(1));
        self
    }

    /// What a failed task does to its siblings.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long [`Nursery::shutdown`] waits, after its grace, for aborted tasks
    /// to be dropped before it calls the rest stuck. Default
    /// [`DEFAULT_DROP_WAIT`].
    pub fn drop_wait(mut self, wait: Duration) -> Self {
        self.drop_wait = wait;
        self
    }

    /// Makes the nursery deaf to its owner's cancel signal: it is not born
    /// signalled under a signalled task, and a signal raised later does not
    /// reach it. For cleanup that a task, once signalled, hands to subtasks
    /// (flush a buffer, say goodbye to a peer). The bound still holds: the
    /// owner's end, a nursery's drop and a shutdown's deadline abort it, and
    /// its own [`Nursery::cancel`] signals it.
    pub fn shielded(mut self) -> Self {
        self.shielded = true;
        self
    }

    /// Opens the nursery in the current context: under the task being polled,
    /// or under the root of the runtime whose `block_on` is running.
    ///
    /// # Errors
    ///
    /// Fails outside any runtime, and when the owning task or runtime is
    /// already tearing its nurseries down.
    pub fn try_build(self) -> Result<Nursery, NurseryError> {
        if let Some(task) = context::current() {
            let header = task.header();
            let owner = header.children().clone();
            let parent_path = header.nursery.path.clone();
            return self.open(header.nursery.rt.clone(), owner, &parent_path);
        }
        match context::runtime() {
            Some(rt) => {
                let owner = rt.root.clone();
                self.open(rt, owner, "")
            }
            None => Err(NurseryError { no_runtime: true }),
        }
    }

    /// Opens the nursery in the current context, like [`try_build`](Self::try_build).
    ///
    /// # Panics
    ///
    /// Panics where `try_build` fails: outside any runtime, or under an owner
    /// that is already tearing down.
    #[track_caller]
    pub fn build(self) -> Nursery {
        match self.try_build() {
            Ok(nursery) => nursery,
            Err(e) => panic!("{e}"),
        }
    }

    /// Opens the nursery under the root of `rt`, from any thread.
    ///
    /// # Errors
    ///
    /// Fails once the runtime is shutting down.
    pub fn build_in(self, rt: &Runtime) -> Result<Nursery, NurseryError> {
        let shared = rt.shared().clone();
        let owner = shared.root.clone();
        self.open(shared, owner, "")
    }

    fn open(
        self,
        rt: Arc<Shared>,
        owner: Arc<ChildSet>,
        parent_path: &str,
    ) -> Result<Nursery, NurseryError> {
        let id = rt.next_nursery_id();
        let path: Arc<str> = format!("{parent_path}/{}", self.name).into();
        let inner = Arc::new(NurseryInner {
            id,
            path,
            cap: self.cap.unwrap_or(rt.default_cap),
            policy: self.policy,
            drop_wait: self.drop_wait,
            shielded: self.shielded,
            state: AtomicUsize::new(0),
            flags: AtomicU8::new(0),
            torn_down: AtomicU8::new(0),
            counters: Counters::default(),
            registry: Registry::new(rt.shards),
            blocking_live: AtomicUsize::new(0),
            idle: Event::new(),
            room: Event::new(),
            owner: owner.clone(),
            first_failure: OnceLock::new(),
            rt,
        });
        let signalled = owner
            .attach(&inner)
            .map_err(|_| NurseryError { no_runtime: false })?;
        if signalled && !inner.shielded {
            inner.flags.fetch_or(SIGNALLED, Ordering::AcqRel);
        }
        Ok(Nursery { inner })
    }
}

impl Nursery {
    /// Opens a nursery in the current context with the default settings.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime (use [`Runtime::nursery`] there), or under an
    /// owner that is already tearing down.
    #[track_caller]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Nursery {
        NurseryBuilder::default().build()
    }

    /// Settings for a new nursery.
    pub fn builder() -> NurseryBuilder {
        NurseryBuilder::default()
    }

    /// Spawns `future` if there is room, without waiting.
    ///
    /// # Errors
    ///
    /// Gives the future back in a [`SpawnError`] when the nursery is full or closed.
    #[track_caller]
    pub fn try_spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        self.inner
            .try_spawn(Cow::Borrowed(""), Location::caller(), future)
    }

    /// Spawns `future` under `name`, if there is room, without waiting.
    ///
    /// # Errors
    ///
    /// Gives the future back in a [`SpawnError`] when the nursery is full or closed.
    #[track_caller]
    pub fn try_spawn_named<F>(
        &self,
        name: impl Into<Cow<'static, str>>,
        future: F,
    ) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        self.inner
            .try_spawn(name.into(), Location::caller(), future)
    }

    /// Waits for room under the cap, then spawns `future`.
    ///
    /// # Errors
    ///
    /// The returned future gives the future back in a [`SpawnError`] if the
    /// nursery closes before there is room.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future before it resolves spawns nothing.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Spawn<F>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        Spawn::new(Some(self.inner.clone()), Cow::Borrowed(""), future)
    }

    /// Waits for room under the cap, then spawns `future` under `name`.
    ///
    /// # Errors
    ///
    /// As for [`spawn`](Self::spawn).
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future before it resolves spawns nothing.
    #[track_caller]
    pub fn spawn_named<F>(&self, name: impl Into<Cow<'static, str>>, future: F) -> Spawn<F>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        Spawn::new(Some(self.inner.clone()), name.into(), future)
    }

    /// A handle that can spawn into this nursery without owning it: it does
    /// not keep the nursery open, and spawns fail once the nursery is closed.
    pub fn spawner(&self) -> Spawner {
        Spawner {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The nursery's path, such as `/events` or `/service/workers`.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Its task counts.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Live tasks, in this nursery and in the nurseries its tasks opened.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let mut tasks = Vec::new();
        self.inner.collect_tasks(&mut tasks);
        tasks
    }

    /// A description of the first task that failed or panicked, if any did.
    pub fn first_failure(&self) -> Option<&str> {
        self.inner.first_failure.get().map(String::as_str)
    }

    /// Whether the nursery takes no new tasks.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Stops taking new tasks; those already in it go on.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Raises the cancel signal of every task in it and of every task spawned
    /// into it from now on, and, through them, of every nursery below.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Waits until no task is live in the nursery, then returns its counts.
    /// New tasks may still be spawned meanwhile; the wait covers them too.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future does nothing to the tasks.
    pub fn join(&self) -> Join<'_> {
        Join {
            nursery: &self.inner,
            listener: None,
        }
    }

    /// Closes the nursery, raises every task's cancel signal, waits up to
    /// `grace` for them to end, then drops the rest and waits a little longer
    /// (the nursery's drop wait) for the drops to land. Returns on time even if
    /// a task never yields: such tasks are reported as stuck.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the nursery closed and signalled; the tasks
    /// are dropped when the nursery is.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let inner = &self.inner;
        let start = Instant::now();
        inner.close();
        let finished = inner.counters.ended_total();
        inner.cancel();
        inner.settle_until(deadline_after(start, grace)).await;
        let at_grace = inner.counters.ended_total();
        if !inner.is_settled() {
            inner.abort_all();
            inner
                .settle_until(deadline_after(Instant::now(), inner.drop_wait))
                .await;
        }
        let at_end = inner.counters.ended_total();
        ShutdownReport {
            finished,
            cancelled_cleanly: at_grace - finished,
            dropped: at_end - at_grace,
            stuck: self.tasks(),
            stuck_blocking: inner.rt.blocking.jobs_of(inner.id),
            elapsed: start.elapsed(),
        }
    }
}

impl Drop for Nursery {
    fn drop(&mut self) {
        self.inner.close();
        self.inner.abort_all();
    }
}

/// Spawns into a [`Nursery`] without owning it. Cheap to clone.
#[derive(Clone)]
pub struct Spawner {
    inner: Weak<NurseryInner>,
}

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawner")
            .field(
                "open",
                &self.inner.upgrade().is_some_and(|n| !n.is_closed()),
            )
            .finish()
    }
}

impl Spawner {
    /// The nursery's task counts, while it exists.
    pub fn stats(&self) -> Option<Stats> {
        self.inner.upgrade().map(|inner| inner.stats())
    }

    /// As [`Nursery::try_spawn`].
    ///
    /// # Errors
    ///
    /// Gives the future back when the nursery is full, closed or gone.
    #[track_caller]
    pub fn try_spawn<F>(&self, future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        self.try_spawn_named(Cow::Borrowed(""), future)
    }

    /// As [`Nursery::try_spawn_named`].
    ///
    /// # Errors
    ///
    /// Gives the future back when the nursery is full, closed or gone.
    #[track_caller]
    pub fn try_spawn_named<F>(
        &self,
        name: impl Into<Cow<'static, str>>,
        future: F,
    ) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        match self.inner.upgrade() {
            Some(inner) => inner.try_spawn(name.into(), Location::caller(), future),
            None => Err(SpawnError {
                closed: true,
                future,
            }),
        }
    }

    /// As [`Nursery::spawn`].
    ///
    /// # Errors
    ///
    /// The returned future gives the future back if the nursery closes or is
    /// gone before there is room.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future before it resolves spawns nothing.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> Spawn<F>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        Spawn::new(self.inner.upgrade(), Cow::Borrowed(""), future)
    }

    /// As [`Nursery::spawn_named`].
    ///
    /// # Errors
    ///
    /// As for [`spawn`](Self::spawn).
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future before it resolves spawns nothing.
    #[track_caller]
    pub fn spawn_named<F>(&self, name: impl Into<Cow<'static, str>>, future: F) -> Spawn<F>
    where
        F: Future + Send + 'static,
        F::Output: TaskOutput + Send + 'static,
    {
        Spawn::new(self.inner.upgrade(), name.into(), future)
    }
}

/// The future returned by [`Nursery::spawn`]: waits for room, then spawns.
#[must_use = "nothing is spawned unless the future is awaited"]
pub struct Spawn<F> {
    nursery: Option<Arc<NurseryInner>>,
    name: Cow<'static, str>,
    location: &'static Location<'static>,
    future: Option<F>,
    listener: Option<EventListener>,
}

// The user's future is only ever moved, never polled, while inside `Spawn`, so
// `Spawn` need not pin it.
impl<F> Unpin for Spawn<F> {}

impl<F> fmt::Debug for Spawn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawn")
            .field("name", &self.name)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl<F> Spawn<F> {
    #[track_caller]
    fn new(nursery: Option<Arc<NurseryInner>>, name: Cow<'static, str>, future: F) -> Self {
        Spawn {
            nursery,
            name,
            location: Location::caller(),
            future: Some(future),
            listener: None,
        }
    }
}

impl<F> Future for Spawn<F>
where
    F: Future + Send + 'static,
    F::Output: TaskOutput + Send + 'static,
{
    type Output = Result<JoinHandle<F::Output>, SpawnError<F>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(future) = this.future.take() else {
            panic!("Spawn polled after it resolved");
        };
        let Some(nursery) = this.nursery.clone() else {
            return Poll::Ready(Err(SpawnError {
                closed: true,
                future,
            }));
        };
        loop {
            match nursery.try_reserve() {
                Reserve::Ok => {
                    // A notification this spawn holds goes back, for the next waiter.
                    this.listener = None;
                    let name = std::mem::take(&mut this.name);
                    return Poll::Ready(Ok(nursery.launch(name, this.location, future)));
                }
                Reserve::Closed => {
                    return Poll::Ready(Err(SpawnError {
                        closed: true,
                        future,
                    }))
                }
                Reserve::Full => {}
            }
            // Try, listen, try again: room freed between the first try and
            // the listen is seen by the second.
            match &mut this.listener {
                None => this.listener = Some(nursery.room.listen()),
                Some(listener) => match Pin::new(listener).poll(cx) {
                    Poll::Ready(()) => this.listener = None,
                    Poll::Pending => {
                        this.future = Some(future);
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}

/// The future returned by [`Nursery::join`].
#[must_use = "futures do nothing unless awaited"]
pub struct Join<'a> {
    nursery: &'a Arc<NurseryInner>,
    listener: Option<EventListener>,
}

impl fmt::Debug for Join<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join")
            .field("path", &self.nursery.path)
            .finish()
    }
}

impl Future for Join<'_> {
    type Output = Stats;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Stats> {
        loop {
            if self.nursery.live() == 0 {
                return Poll::Ready(self.nursery.stats());
            }
            let nursery = self.nursery;
            match &mut self.listener {
                None => self.listener = Some(nursery.idle.listen()),
                Some(listener) => match Pin::new(listener).poll(cx) {
                    Poll::Ready(()) => self.listener = None,
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}
