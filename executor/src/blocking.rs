//! A bounded pool of threads for the calls that must block (file I/O, reading
//! and decompressing input, DNS), so that no worker waits on them.
//!
//! Threads start on demand up to a maximum and leave after a while idle; the
//! queue is bounded, and a submitter waits for room asynchronously. Every job
//! is counted, per runtime and per nursery of the task that submitted it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use event_listener::{Event, IntoNotification};
use slab::Slab;

use crate::context;
use crate::nursery::NurseryInner;
use crate::stats::BlockingInfo;
use crate::task::panic_message;

/// How long a blocking thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce() + Send>;

struct Entry {
    nursery: Option<Arc<NurseryInner>>,
    location: &'static Location<'static>,
    since: Instant,
}

struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    closed: bool,
}

pub(crate) struct BlockingPool {
    name: String,
    max_threads: usize,
    capacity: usize,
    queue: Mutex<Queue>,
    available: Condvar,
    /// Notified when a queued job is taken, for submitters waiting for room.
    room: Event,
    live: AtomicUsize,
    entries: Mutex<Slab<Entry>>,
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool")
            .field("name", &self.name)
            .field("live", &self.live())
            .finish()
    }
}

impl BlockingPool {
    pub(crate) fn new(name: String, max_threads: usize, capacity: usize) -> Self {
        BlockingPool {
            name,
            max_threads,
            capacity,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                threads: 0,
                idle: 0,
                closed: false,
            }),
            available: Condvar::new(),
            room: Event::new(),
            live: AtomicUsize::new(0),
            entries: Mutex::new(Slab::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_entries(&self) -> MutexGuard<'_, Slab<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Queues a job if there is room; gives it back if not (or if closed, with `true`).
    fn try_push(self: &Arc<Self>, job: Job) -> Result<(), (Job, bool)> {
        let mut queue = self.lock();
        if queue.closed {
            return Err((job, true));
        }
        if queue.jobs.len() >= self.capacity {
            return Err((job, false));
        }
        queue.jobs.push_back(job);
        // More queued jobs than idle threads (an idle thread already notified
        // still counts as idle until it wakes): start another thread.
        if queue.jobs.len() > queue.idle && queue.threads < self.max_threads {
            queue.threads += 1;
            drop(queue);
            let pool = self.clone();
            let started = thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || pool.work());
            if started.is_err() {
                // Existing threads (if any) will take the job; with none it
                // waits until one is started by a later submission.
                self.lock().threads -= 1;
            }
        } else {
            drop(queue);
            self.available.notify_one();
        }
        Ok(())
    }

    fn work(&self) {
        let mut queue = self.lock();
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                drop(queue);
                self.room.notify(1.additional());
                // A job's panic is caught inside it; this keeps the thread
                // (and its place in the count) alive whatever happens.
                let _ = panic::catch_unwind(AssertUnwindSafe(job));
                queue = self.lock();
                continue;
            }
            if queue.closed {
                break;
            }
            queue.idle += 1;
            let (guard, waited) = self
                .available
                .wait_timeout(queue, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            queue = guard;
            queue.idle -= 1;
            if waited.timed_out() && queue.jobs.is_empty() {
                break;
            }
        }
        queue.threads -= 1;
    }

    /// Stops taking jobs; threads leave once the queue is empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.available.notify_all();
        self.room.notify(usize::MAX);
    }

    fn register(
        &self,
        nursery: Option<Arc<NurseryInner>>,
        location: &'static Location<'static>,
    ) -> usize {
        if let Some(n) = &nursery {
            n.blocking_live.fetch_add(1, Ordering::AcqRel);
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        self.lock_entries().insert(Entry {
            nursery,
            location,
            since: Instant::now(),
        })
    }

    fn unregister(&self, key: usize) {
        let entry = self.lock_entries().try_remove(key);
        self.live.fetch_sub(1, Ordering::AcqRel);
        if let Some(Entry {
            nursery: Some(n), ..
        }) = entry
        {
            if n.blocking_live.fetch_sub(1, Ordering::AcqRel) == 1 && n.live() == 0 {
                n.idle.notify(usize::MAX);
            }
        }
    }

    fn info(entry: &Entry) -> BlockingInfo {
        BlockingInfo {
            nursery: entry
                .nursery
                .as_ref()
                .map_or_else(|| "/".to_owned(), |n| n.path.to_string()),
            age: entry.since.elapsed(),
            location: entry.location,
        }
    }

    pub(crate) fn jobs(&self) -> Vec<BlockingInfo> {
        self.lock_entries()
            .iter()
            .map(|(_, e)| Self::info(e))
            .collect()
    }

    pub(crate) fn jobs_of(&self, nursery: u64) -> Vec<BlockingInfo> {
        self.lock_entries()
            .iter()
            .filter(|(_, e)| e.nursery.as_ref().is_some_and(|n| n.id == nursery))
            .map(|(_, e)| Self::info(e))
            .collect()
    }
}

/// Why a blocking job gave no value.
#[derive(Debug)]
pub struct BlockingError {
    kind: BlockingErrorKind,
}

#[derive(Debug)]
enum BlockingErrorKind {
    NoRuntime,
    Closed,
    Panicked(String),
}

impl BlockingError {
    /// Whether the job panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, BlockingErrorKind::Panicked(_))
    }

    /// Whether the job never ran: no runtime here, or its blocking pool is shut down.
    pub fn is_not_run(&self) -> bool {
        !self.is_panic()
    }
}

impl fmt::Display for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BlockingErrorKind::NoRuntime => {
                f.write_str("no tally runtime on this thread to run a blocking job")
            }
            BlockingErrorKind::Closed => f.write_str("the runtime's blocking pool is shut down"),
            BlockingErrorKind::Panicked(m) => write!(f, "blocking job panicked: {m}"),
        }
    }
}

impl std::error::Error for BlockingError {}

impl From<BlockingError> for std::io::Error {
    fn from(e: BlockingError) -> Self {
        std::io::Error::other(e)
    }
}

/// Runs `job` on the runtime's blocking pool and waits for its value, so that
/// the calling task's worker is free meanwhile. The job counts in the runtime
/// and in the nursery of the calling task until it returns.
///
/// # Errors
///
/// Resolves to a [`BlockingError`] if the job panicked, if the pool is shut
/// down, or if there is no runtime on this thread.
///
/// # Cancel safety
///
/// Dropping the future before the job was queued runs nothing; once queued,
/// the job runs to its end and its value is dropped (a blocking call cannot be
/// interrupted).
///
/// # Examples
///
/// ```
/// let rt = tally_executor::Runtime::new();
/// let len = rt.block_on(async {
///     tally_executor::unblock(|| std::fs::read_to_string("Cargo.toml").map(|s| s.len())).await
/// });
/// assert!(len.unwrap().unwrap() > 0);
/// ```
#[track_caller]
pub fn unblock<T, F>(job: F) -> Unblock<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let location = Location::caller();
    let nursery = context::current().map(|task| task.header().nursery.clone());
    let Some(rt) = context::runtime().or_else(|| nursery.as_ref().map(|n| n.rt.clone())) else {
        return Unblock {
            inner: Box::pin(async {
                Err(BlockingError {
                    kind: BlockingErrorKind::NoRuntime,
                })
            }),
        };
    };
    let inner = async move {
        let pool = rt.blocking.clone();
        let (sender, receiver) = async_channel::bounded(1);
        let key = pool.register(nursery, location);
        let unregister = Unregister {
            pool: pool.clone(),
            key: Some(key),
        };
        let mut job: Job = Box::new(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(job));
            // The job's counts fall before its waiter wakes.
            drop(unregister);
            // If nobody waits any more, the value is dropped here: its
            // destructor is the caller's code, and may panic.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || {
                let _ = sender.try_send(result);
            }));
        });
        loop {
            match pool.try_push(job) {
                Ok(()) => break,
                Err((_, true)) => {
                    return Err(BlockingError {
                        kind: BlockingErrorKind::Closed,
                    })
                }
                Err((back, false)) => {
                    job = back;
                    let listener = pool.room.listen();
                    match pool.try_push(job) {
                        Ok(()) => break,
                        Err((_, true)) => {
                            return Err(BlockingError {
                                kind: BlockingErrorKind::Closed,
                            })
                        }
                        Err((back, false)) => job = back,
                    }
                    listener.await;
                }
            }
        }
        match receiver.recv().await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(payload)) => Err(BlockingError {
                kind: BlockingErrorKind::Panicked(panic_message(&*payload)),
            }),
            Err(_) => Err(BlockingError {
                kind: BlockingErrorKind::Closed,
            }),
        }
    };
    Unblock {
        inner: Box::pin(inner),
    }
}

struct Unregister {
    pool: Arc<BlockingPool>,
    key: Option<usize>,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        // Accounting, not cleanup: the job (or the closure that never ran
        // because the pool closed) is over either way.
        if let Some(key) = self.key.take() {
            self.pool.unregister(key);
        }
    }
}

/// The future returned by [`unblock`].
#[must_use = "futures do nothing unless awaited"]
pub struct Unblock<T> {
    inner: Pin<Box<dyn Future<Output = Result<T, BlockingError>> + Send>>,
}

impl<T> fmt::Debug for Unblock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Unblock")
    }
}

impl<T> Future for Unblock<T> {
    type Output = Result<T, BlockingError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
