//! Task accounting: the counters every nursery and every runtime keeps, and the
//! snapshots read from them.

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a task ended. Every task ends in exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Returned a value its [`TaskOutput`](crate::TaskOutput) calls a success.
    Completed,
    /// Returned a value its [`TaskOutput`](crate::TaskOutput) calls a failure.
    Failed,
    /// Panicked inside a poll.
    Panicked,
    /// Dropped before it returned: cancelled before its first poll, or dropped
    /// by an abort, a dropped nursery or a shutdown deadline.
    Cancelled,
}

/// Monotonic counters, one set per nursery and one per runtime.
///
/// `spawned` is bumped before a task is scheduled, and the ending counters are
/// bumped before its joiner is woken, so that `spawned - ended` is the live
/// count whenever nobody is in the middle of a spawn or an ending.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    spawned: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
}

impl Counters {
    pub(crate) fn spawned(&self) {
        // Relaxed: the counters are statistics; the live count that joiners wait
        // on is kept in the nursery's state word, which orders what matters.
        self.spawned.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ended(&self, ending: Ending) {
        let counter = match ending {
            Ending::Completed => &self.completed,
            Ending::Failed => &self.failed,
            Ending::Panicked => &self.panicked,
            Ending::Cancelled => &self.cancelled,
        };
        // Release pairs with the Acquire loads in `read`: a reader that sees
        // this ending also sees the matching `spawned`.
        counter.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn read(&self, live: u64) -> Stats {
        let completed = self.completed.load(Ordering::Acquire);
        let failed = self.failed.load(Ordering::Acquire);
        let panicked = self.panicked.load(Ordering::Acquire);
        let cancelled = self.cancelled.load(Ordering::Acquire);
        Stats {
            spawned: self.spawned.load(Ordering::Acquire),
            live,
            completed,
            failed,
            panicked,
            cancelled,
        }
    }

    pub(crate) fn ended_total(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
            + self.failed.load(Ordering::Acquire)
            + self.panicked.load(Ordering::Acquire)
            + self.cancelled.load(Ordering::Acquire)
    }
}

/// Task counts of a nursery or of a whole runtime.
///
/// Once nothing is spawning, `spawned == live + completed + failed + panicked +
/// cancelled`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tasks ever spawned.
    pub spawned: u64,
    /// Tasks spawned and not yet ended (including those waiting for their own
    /// child nurseries to be torn down).
    pub live: u64,
    /// Tasks whose output counted as a success.
    pub completed: u64,
    /// Tasks whose output counted as a failure (an `Err`, say).
    pub failed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks dropped before they returned.
    pub cancelled: u64,
}

impl Stats {
    /// Tasks that ended, however they ended.
    pub fn ended(&self) -> u64 {
        self.completed + self.failed + self.panicked + self.cancelled
    }
}

/// One live task, as a snapshot sees it.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// The task's id, unique within its runtime.
    pub id: u64,
    /// The name given at spawn, or an empty string.
    pub name: String,
    /// The path of the nursery it lives in, such as `/root/events`.
    pub nursery: String,
    /// How long ago it was spawned.
    pub age: Duration,
    /// Where `spawn` was called.
    pub location: &'static Location<'static>,
}

impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() {
            "<unnamed>"
        } else {
            &self.name
        };
        write!(
            f,
            "task {} {} in {} for {:?}, spawned at {}",
            self.id, name, self.nursery, self.age, self.location
        )
    }
}

/// One blocking job still running, as a snapshot or a shutdown report sees it.
#[derive(Clone, Debug)]
pub struct BlockingInfo {
    /// The path of the nursery whose task submitted it (`/` outside any task).
    pub nursery: String,
    /// How long it has been running or queued.
    pub age: Duration,
    /// Where `unblock` was called.
    pub location: &'static Location<'static>,
}

/// What a shutdown did with the tasks it found.
#[derive(Clone, Debug, Default)]
pub struct ShutdownReport {
    /// Tasks that had already ended before the shutdown began.
    pub finished: u64,
    /// Tasks that were live when the shutdown began and ended within the grace
    /// (by returning after the cancel signal, or before their first poll).
    pub cancelled_cleanly: u64,
    /// Tasks dropped after the grace ran out.
    pub dropped: u64,
    /// Tasks still live when the shutdown returned: stuck inside a poll that
    /// never returns, or waiting on such a task.
    pub stuck: Vec<TaskInfo>,
    /// Blocking jobs submitted from this nursery's tasks that were still running
    /// when the shutdown returned.
    pub stuck_blocking: Vec<BlockingInfo>,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Whether every task ended and no blocking job is left running.
    pub fn is_clean(&self) -> bool {
        self.stuck.is_empty() && self.stuck_blocking.is_empty()
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shutdown in {:?}: {} finished before, {} cancelled cleanly, {} dropped, {} stuck, {} blocking jobs stuck",
            self.elapsed,
            self.finished,
            self.cancelled_cleanly,
            self.dropped,
            self.stuck.len(),
            self.stuck_blocking.len()
        )
    }
}

impl crate::TaskOutput for Stats {}
impl crate::TaskOutput for ShutdownReport {}
