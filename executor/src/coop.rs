//! Cooperative budgeting: tally's own leaf futures (timers, channels, and the
//! sockets of tally-protocols) spend one unit of the running task's budget each
//! time they are ready, and pretend to be pending (after waking the task) once
//! it is spent, so a task whose awaits are always ready still yields its worker.
//!
//! The budget is reset at the start of every task poll; outside a task it is
//! unlimited.

use std::cell::Cell;
use std::task::{Context, Poll};

/// Units of work a task may do in one poll before its leaf futures make it yield.
pub const BUDGET: u32 = 128;

const UNLIMITED: u32 = u32::MAX;

thread_local! {
    static LEFT: Cell<u32> = const { Cell::new(UNLIMITED) };
}

/// Gives the task being polled a fresh budget; returns the one to restore.
pub(crate) fn enter() -> u32 {
    LEFT.with(|left| left.replace(BUDGET))
}

pub(crate) fn leave(previous: u32) {
    LEFT.with(|left| left.set(previous));
}

/// Polls a leaf operation under the current task's budget: when the budget is
/// spent, wakes the task and returns `Pending` without calling `poll`;
/// otherwise calls it and spends one unit if it is ready.
///
/// Other tally crates wrap their socket reads and writes in this.
///
/// A synchronous `block_on` nested inside a task (itself a blocking call on a
/// worker, best avoided) would spin once the budget is spent: wrap what it
/// runs in [`unconstrained`].
///
/// # Examples
///
/// ```
/// use std::task::{Context, Poll};
/// fn poll_next(cx: &mut Context<'_>, ready: &mut Vec<u32>) -> Poll<Option<u32>> {
///     tally_executor::coop::poll_budgeted(cx, |_| Poll::Ready(ready.pop()))
/// }
/// ```
pub fn poll_budgeted<T>(
    cx: &mut Context<'_>,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    let left = LEFT.with(Cell::get);
    if left == 0 {
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    let polled = poll(cx);
    if polled.is_ready() && left != UNLIMITED {
        LEFT.with(|l| l.set(l.get().saturating_sub(1)));
    }
    polled
}

/// What is left of the current task's budget (`None` outside a task).
pub fn remaining() -> Option<u32> {
    let left = LEFT.with(Cell::get);
    (left != UNLIMITED).then_some(left)
}

/// Runs `future` with no budget: tally's leaf futures inside it never yield
/// for want of budget. For the rare nested `block_on` inside a task.
pub fn unconstrained<F: std::future::Future>(future: F) -> Unconstrained<F> {
    Unconstrained { future }
}

pin_project_lite::pin_project! {
    /// The future returned by [`unconstrained`].
    #[must_use = "futures do nothing unless awaited"]
    #[derive(Debug)]
    pub struct Unconstrained<F> {
        #[pin]
        future: F,
    }
}

impl<F: std::future::Future> std::future::Future for Unconstrained<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = LEFT.with(|left| left.replace(UNLIMITED));
        let polled = self.project().future.poll(cx);
        LEFT.with(|left| left.set(previous));
        polled
    }
}
