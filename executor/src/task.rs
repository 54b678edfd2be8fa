//! Tasks: the shared cell of one task, its join handle, its errors, and the
//! supervising future that runs it, catches its panic, tears down its child
//! nurseries and does its accounting.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use atomic_waker::AtomicWaker;
use event_listener::Event;

use crate::cancel::ChildSet;
use crate::context;
use crate::coop;
use crate::nursery::NurseryInner;
use crate::registry::Slot;
use crate::stats::{Ending, TaskInfo};

/// What a task's output says about how it went, so that a nursery can count a
/// task that returned an `Err` as failed.
///
/// Stable Rust cannot look inside a generic output, so outputs say it
/// themselves: `Result` is a failure when it is `Err`; `()`, numbers, strings
/// and collections are always successes. For a type of your own, one line does:
///
/// ```
/// struct Summary { rows: u64 }
/// impl tally_executor::TaskOutput for Summary {}
/// ```
pub trait TaskOutput {
    /// Whether this output counts as a failure. The default is `false`.
    fn is_failure(&self) -> bool {
        false
    }
}

impl<T, E> TaskOutput for Result<T, E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

impl<T: TaskOutput + ?Sized> TaskOutput for Box<T> {
    fn is_failure(&self) -> bool {
        (**self).is_failure()
    }
}

macro_rules! always_success {
    ($($t:ty),* $(,)?) => { $(impl TaskOutput for $t {})* };
}

always_success!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    std::time::Duration,
    std::time::Instant,
);

impl<T> TaskOutput for Vec<T> {}
impl<T> TaskOutput for Option<T> {}
impl<A, B> TaskOutput for (A, B) {}
impl<A, B, C> TaskOutput for (A, B, C) {}

/// Why a task gave no value: it panicked, or it was cancelled before it returned.
pub struct TaskError {
    kind: ErrorKind,
}

enum ErrorKind {
    Panicked(String),
    Cancelled,
}

impl TaskError {
    pub(crate) fn panicked(message: String) -> Self {
        TaskError {
            kind: ErrorKind::Panicked(message),
        }
    }

    pub(crate) fn cancelled() -> Self {
        TaskError {
            kind: ErrorKind::Cancelled,
        }
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, ErrorKind::Panicked(_))
    }

    /// Whether the task was dropped before it returned.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, ErrorKind::Cancelled)
    }

    /// The panic's message, when the task panicked with a string.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Panicked(m) => Some(m),
            ErrorKind::Cancelled => None,
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Panicked(m) => f.debug_tuple("Panicked").field(m).finish(),
            ErrorKind::Cancelled => f.write_str("Cancelled"),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Panicked(m) => write!(f, "task panicked: {m}"),
            ErrorKind::Cancelled => f.write_str("task was cancelled before it returned"),
        }
    }
}

impl std::error::Error for TaskError {}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<panic payload that is not a string>".to_owned()
    }
}

/// The cancel signal was raised: the task may see it and clean up.
const SIGNALLED: u8 = 1 << 0;
/// The task is to be dropped at its next chance.
const ABORTED: u8 = 1 << 1;
/// The task has ended and its output (if any) is in the slot.
const ENDED: u8 = 1 << 2;

/// The part of a task that does not depend on its output type: what the
/// registry, cancellation and snapshots need.
pub(crate) struct Header {
    pub(crate) id: u64,
    pub(crate) name: Cow<'static, str>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) spawned_at: Instant,
    pub(crate) nursery: Arc<NurseryInner>,
    flags: AtomicU8,
    /// Notified once when the cancel signal is raised.
    signal: Event,
    /// The task's own waker, so an abort can get it polled (and dropped).
    waker: AtomicWaker,
    /// The nurseries opened while this task was being polled; made on first use.
    pub(crate) children: OnceLock<Arc<ChildSet>>,
}

impl Header {
    fn flags(&self) -> u8 {
        // Acquire pairs with the AcqRel `fetch_or`s below.
        self.flags.load(Ordering::Acquire)
    }

    pub(crate) fn is_signalled(&self) -> bool {
        self.flags() & SIGNALLED != 0
    }

    fn is_aborted(&self) -> bool {
        self.flags() & ABORTED != 0
    }

    /// Raises the cancel signal, once, and passes it on to the task's own nurseries.
    pub(crate) fn signal(&self) {
        let previous = self.flags.fetch_or(SIGNALLED, Ordering::SeqCst);
        if previous & SIGNALLED == 0 {
            self.signal.notify(usize::MAX);
            // Pairs with the fence in `children`: either that side sees the
            // flag, or this side sees the set it made.
            std::sync::atomic::fence(Ordering::SeqCst);
            if let Some(children) = self.children.get() {
                children.signal_all();
            }
        }
    }

    /// Signals the task and has it dropped at its next chance: when it is next
    /// polled, or right after the poll that is running now.
    pub(crate) fn abort(&self) {
        let previous = self.flags.fetch_or(SIGNALLED | ABORTED, Ordering::AcqRel);
        if previous & SIGNALLED == 0 {
            self.signal.notify(usize::MAX);
        }
        if previous & (ABORTED | ENDED) == 0 {
            if let Some(children) = self.children.get() {
                children.abort_all();
            }
            self.waker.wake();
        }
    }

    pub(crate) fn listen_signal(&self) -> event_listener::EventListener {
        self.signal.listen()
    }

    /// The set of this task's own nurseries, made on first use.
    pub(crate) fn children(&self) -> &Arc<ChildSet> {
        let mut made = false;
        let children = self.children.get_or_init(|| {
            made = true;
            Arc::new(ChildSet::new(false))
        });
        if made {
            // A signal raised while the set was being made may have missed
            // it: look at the flag after the set is in place.
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.flags.load(Ordering::SeqCst) & SIGNALLED != 0 {
                children.signal_all();
            }
        }
        children
    }

    pub(crate) fn info(&self) -> TaskInfo {
        TaskInfo {
            id: self.id,
            name: self.name.to_string(),
            nursery: self.nursery.path.to_string(),
            age: self.spawned_at.elapsed(),
            location: self.location,
        }
    }
}

/// A type-erased task, as the registry and the thread-local context hold it.
pub(crate) type AnyTask = Arc<dyn HasHeader>;

pub(crate) trait HasHeader: Send + Sync {
    fn header(&self) -> &Header;
}

/// The shared state of one task: its header, its output slot and its joiner.
pub(crate) struct TaskCell<T> {
    pub(crate) header: Header,
    output: Mutex<Option<Result<T, TaskError>>>,
    joiner: AtomicWaker,
}

impl<T: Send> HasHeader for TaskCell<T> {
    fn header(&self) -> &Header {
        &self.header
    }
}

impl<T> TaskCell<T> {
    pub(crate) fn new(
        id: u64,
        name: Cow<'static, str>,
        location: &'static Location<'static>,
        nursery: Arc<NurseryInner>,
    ) -> Self {
        TaskCell {
            header: Header {
                id,
                name,
                location,
                spawned_at: Instant::now(),
                nursery,
                flags: AtomicU8::new(0),
                signal: Event::new(),
                waker: AtomicWaker::new(),
                children: OnceLock::new(),
            },
            output: Mutex::new(None),
            joiner: AtomicWaker::new(),
        }
    }

    fn lock_output(&self) -> std::sync::MutexGuard<'_, Option<Result<T, TaskError>>> {
        // The lock is never held across a call that could panic, so poisoning
        // cannot happen; recover the guard anyway rather than panic.
        self.output.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, result: Result<T, TaskError>) {
        *self.lock_output() = Some(result);
        self.header.flags.fetch_or(ENDED, Ordering::AcqRel);
        self.joiner.wake();
    }
}

/// A handle to a spawned task: await it for the task's value, or for a
/// [`TaskError`] if it panicked or was cancelled.
///
/// Dropping a handle does not cancel the task: its nursery owns it and will
/// join it. [`cancel`](JoinHandle::cancel) raises the task's cancel signal;
/// [`abort`](JoinHandle::abort) drops it at its next chance.
#[must_use = "a dropped handle leaves the task running in its nursery; await it to see how it ended"]
pub struct JoinHandle<T> {
    cell: Arc<TaskCell<T>>,
    taken: bool,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(cell: Arc<TaskCell<T>>) -> Self {
        JoinHandle { cell, taken: false }
    }

    /// The task's id, unique within its runtime.
    pub fn id(&self) -> u64 {
        self.cell.header.id
    }

    /// Whether the task has ended (its output, if any, is ready).
    pub fn is_finished(&self) -> bool {
        self.cell.header.flags() & ENDED != 0
    }

    /// Raises the task's cancel signal. The task sees it through
    /// [`cancelled`](crate::cancelled) or [`is_cancelled`](crate::is_cancelled)
    /// and ends after its own cleanup; a task not yet polled is dropped unpolled.
    /// The signal reaches every nursery the task opened.
    pub fn cancel(&self) {
        self.cell.header.signal();
    }

    /// Drops the task at its next chance: at once if it is waiting, right after
    /// its current poll if it is running. The handle then resolves to a
    /// cancelled [`TaskError`], unless the task had already returned its
    /// value and is only waiting for its own nurseries to be torn down (then
    /// those are aborted, and the value is kept).
    pub fn abort(&self) {
        self.cell.header.abort();
    }

    /// A snapshot of the task: name, nursery, age, spawn location.
    pub fn info(&self) -> TaskInfo {
        self.cell.header.info()
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, TaskError>;

    /// # Panics
    ///
    /// Panics if polled again after it returned `Ready`.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(
            !self.taken,
            "JoinHandle polled after it returned the task's result"
        );
        let mut result = self.cell.lock_output().take();
        if result.is_none() {
            // Register, then look again: a delivery in between is seen here.
            self.cell.joiner.register(cx.waker());
            result = self.cell.lock_output().take();
        }
        match result {
            Some(result) => {
                self.taken = true;
                Poll::Ready(result)
            }
            None => Poll::Pending,
        }
    }
}

/// How the user's future ended inside the supervisor.
enum Outcome<T> {
    Returned(T),
    Panicked(String),
    Dropped,
}

pin_project_lite::pin_project! {
    /// Polls the user's future with the task installed as current, catches its
    /// panic, and drops it in place when the task is aborted.
    struct Guarded<F> {
        task: Option<AnyTask>,
        #[pin]
        future: Option<F>,
        started: bool,
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Outcome<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(task) = this.task.as_ref() else {
            return Poll::Ready(Outcome::Dropped);
        };
        let header = task.header();
        // A task signalled before it ever ran has nothing to clean up: drop it
        // unpolled. An aborted one is dropped whenever we get here.
        if header.is_aborted() || (!*this.started && header.is_signalled()) {
            drop_in_place_caught(this.future.as_mut());
            return Poll::Ready(Outcome::Dropped);
        }
        *this.started = true;

        // The task moves into the thread-local slot for the poll and back out
        // after it: no reference-count traffic per poll.
        let previous = context::swap_current(this.task.take());
        let budget = coop::enter();
        let polled = panic::catch_unwind(AssertUnwindSafe(|| {
            match this.future.as_mut().as_pin_mut() {
                Some(future) => future.poll(cx),
                None => unreachable_pending(),
            }
        }));
        coop::leave(budget);
        *this.task = context::swap_current(previous);
        let Some(task) = this.task.as_ref() else {
            return Poll::Ready(Outcome::Dropped);
        };
        let header = task.header();

        match polled {
            Ok(Poll::Ready(value)) => {
                drop_in_place_caught(this.future.as_mut());
                Poll::Ready(Outcome::Returned(value))
            }
            Ok(Poll::Pending) => {
                // Register before the check, so an abort racing with this poll
                // either is seen here or wakes us.
                header.waker.register(cx.waker());
                if header.is_aborted() {
                    drop_in_place_caught(this.future.as_mut());
                    return Poll::Ready(Outcome::Dropped);
                }
                Poll::Pending
            }
            Err(payload) => {
                drop_in_place_caught(this.future.as_mut());
                Poll::Ready(Outcome::Panicked(panic_message(&*payload)))
            }
        }
    }
}

fn unreachable_pending<T>() -> Poll<T> {
    // `future` is only `None` after `Ready` was returned, and the supervisor
    // never polls `Guarded` again after that.
    Poll::Pending
}

/// Drops a value whose destructor is the user's code, swallowing a panic in it.
fn drop_caught<T>(value: T) {
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(value)));
}

/// Drops the user's future in place; a panic in its destructor is swallowed
/// (the task is already ending, and a worker must not unwind).
fn drop_in_place_caught<F>(future: Pin<&mut Option<F>>) {
    let mut future = future;
    let _ = panic::catch_unwind(AssertUnwindSafe(|| future.set(None)));
}

/// Ends the task's accounting exactly once: on the normal path through
/// [`EndGuard::finish`], or from `Drop` if the supervisor itself is dropped
/// (only when a runtime is torn down with the task still queued).
struct EndGuard<T: Send + 'static> {
    cell: Option<Arc<TaskCell<T>>>,
    slot: Slot,
}

impl<T: Send + 'static> EndGuard<T> {
    fn finish(&mut self, ending: Ending, result: Result<T, TaskError>) {
        if let Some(cell) = self.cell.take() {
            let nursery = &cell.header.nursery;
            // Counts fall before the joiner wakes: whoever is woken by the
            // handle or by the nursery sees the task gone.
            nursery.registry.remove(self.slot);
            nursery.task_ended(ending, &cell.header);
            cell.deliver(result);
        }
    }
}

impl<T: Send + 'static> Drop for EndGuard<T> {
    fn drop(&mut self) {
        if let Some(cell) = &self.cell {
            if let Some(children) = cell.header.children.get() {
                children.close_and_abort_all();
            }
        }
        self.finish(Ending::Cancelled, Err(TaskError::cancelled()));
    }
}

/// The future the executor runs for a task: the user's future under guard,
/// then the teardown of the task's own nurseries, then the accounting.
pub(crate) async fn supervise<F>(cell: Arc<TaskCell<F::Output>>, future: F, slot: Slot)
where
    F: Future + Send + 'static,
    F::Output: TaskOutput + Send + 'static,
{
    let mut guard = EndGuard {
        cell: Some(cell.clone()),
        slot,
    };
    let outcome = Guarded {
        task: Some(cell.clone() as AnyTask),
        future: Some(future),
        started: false,
    }
    .await;
    // The user's future is gone, and with it every Nursery value it held
    // (each dropped nursery aborted its tasks). Nurseries that escaped it
    // are closed and aborted here; the task is not over until all of them
    // are torn down.
    if let Some(children) = cell.header.children.get() {
        children.close_and_abort_all();
        children.wait_empty().await;
    }
    let (ending, result) = match outcome {
        Outcome::Returned(value) => {
            // `is_failure` is the user's code too: a panic in it is the task's.
            match panic::catch_unwind(AssertUnwindSafe(|| value.is_failure())) {
                Ok(true) => (Ending::Failed, Ok(value)),
                Ok(false) => (Ending::Completed, Ok(value)),
                Err(payload) => {
                    let message = panic_message(&*payload);
                    drop_caught(value);
                    (Ending::Panicked, Err(TaskError::panicked(message)))
                }
            }
        }
        Outcome::Panicked(message) => (Ending::Panicked, Err(TaskError::panicked(message))),
        Outcome::Dropped => (Ending::Cancelled, Err(TaskError::cancelled())),
    };
    guard.finish(ending, result);
}
