//! Thread-local context: which runtime a thread belongs to, which task is being
//! polled on it, and how much of that task's cooperative budget is left.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::runtime::Shared;
use crate::task::AnyTask;

thread_local! {
    /// The runtime whose worker this thread is, or whose `block_on` is running.
    static RUNTIME: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    /// Whether this thread is one of a runtime's workers.
    static WORKER: Cell<bool> = const { Cell::new(false) };
    /// The task being polled on this thread, if any. Moved in and out around
    /// each poll, so setting it costs no reference-count traffic.
    static CURRENT: Cell<Option<AnyTask>> = const { Cell::new(None) };
}

/// Restores the previous runtime context when dropped.
pub(crate) struct RuntimeGuard {
    previous: Option<Arc<Shared>>,
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        RUNTIME.with(|r| *r.borrow_mut() = previous);
    }
}

pub(crate) fn enter_runtime(shared: Arc<Shared>) -> RuntimeGuard {
    let previous = RUNTIME.with(|r| r.borrow_mut().replace(shared));
    RuntimeGuard { previous }
}

pub(crate) fn mark_worker() {
    WORKER.with(|w| w.set(true));
}

pub(crate) fn is_worker() -> bool {
    WORKER.with(Cell::get)
}

pub(crate) fn runtime() -> Option<Arc<Shared>> {
    RUNTIME.with(|r| r.borrow().clone())
}

/// Puts `task` in place as the current task; returns what was there.
pub(crate) fn swap_current(task: Option<AnyTask>) -> Option<AnyTask> {
    CURRENT.with(|c| c.replace(task))
}

/// A clone of the current task, if a task is being polled on this thread.
pub(crate) fn current() -> Option<AnyTask> {
    CURRENT.with(|c| {
        let task = c.take();
        let copy = task.clone();
        c.set(task);
        copy
    })
}
