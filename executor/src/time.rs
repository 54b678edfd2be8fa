//! Timers on async-io's reactor: `sleep`, `timeout`, `interval`, `yield_now`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;

use crate::coop;

/// Waits for `duration`.
///
/// # Cancel safety
///
/// Cancel-safe.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let rt = tally_executor::Runtime::new();
/// let start = Instant::now();
/// rt.block_on(tally_executor::sleep(Duration::from_millis(5)));
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        timer: Timer::after(duration),
    }
}

/// Waits until `deadline`.
///
/// # Cancel safety
///
/// Cancel-safe.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        timer: Timer::at(deadline),
    }
}

/// The future returned by [`sleep`] and [`sleep_until`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Sleep {
    timer: Timer,
}

impl Sleep {
    /// Moves the deadline.
    pub fn reset(&mut self, deadline: Instant) {
        self.timer.set_at(deadline);
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        coop::poll_budgeted(cx, |cx| Pin::new(&mut self.timer).poll(cx).map(|_| ()))
    }
}

/// The error of a [`timeout`] whose time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(Duration);

impl Elapsed {
    /// The limit that ran out.
    pub fn limit(&self) -> Duration {
        self.0
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?}", self.0)
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(e: Elapsed) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, e)
    }
}

/// Runs `future` for at most `limit`; if time runs out first, the future is
/// dropped (when the `Timeout` is) and [`Elapsed`] is returned.
///
/// Dropping is cancellation by drop: whatever the future held ends the way its
/// `Drop` says. Work that must end explicitly should watch its deadline, or
/// the task's [`cancelled`](crate::cancelled) signal, itself.
///
/// # Errors
///
/// [`Elapsed`] when the limit ran out before the future resolved.
///
/// # Cancel safety
///
/// As cancel-safe as `future` is.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = tally_executor::Runtime::new();
/// let r = rt.block_on(tally_executor::timeout(
///     Duration::from_millis(5),
///     tally_executor::sleep(Duration::from_secs(60)),
/// ));
/// assert!(r.is_err());
/// ```
pub fn timeout<F: Future>(limit: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        timer: Timer::after(limit),
        limit,
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`timeout`].
    #[must_use = "futures do nothing unless awaited"]
    #[derive(Debug)]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        timer: Timer,
        limit: Duration,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(Elapsed(*this.limit))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Ticks every `period`, the first tick one period from now.
///
/// # Panics
///
/// Panics if `period` is zero.
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval period must be above zero");
    let next = Instant::now().checked_add(period);
    Interval {
        period,
        next,
        timer: next.map_or_else(Timer::never, Timer::at),
    }
}

/// Ticks at a fixed period; see [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    /// The next tick's scheduled time (`None`: past what an `Instant` holds).
    next: Option<Instant>,
    timer: Timer,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled time. Ticks missed
    /// while nobody waited are skipped, not made up in a burst.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a dropped wait loses no tick.
    pub fn tick(&mut self) -> Tick<'_> {
        Tick { interval: self }
    }

    /// The scheduled time after `scheduled`: one period later while on time;
    /// after missed ticks, one period from now (they are skipped).
    fn advance(&mut self, scheduled: Instant) {
        let now = Instant::now();
        self.next = match scheduled.checked_add(self.period) {
            Some(next) if next > now => Some(next),
            _ => now.checked_add(self.period),
        };
        match self.next {
            Some(next) => self.timer.set_at(next),
            None => self.timer = Timer::never(),
        }
    }
}

/// The future returned by [`Interval::tick`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Tick<'a> {
    interval: &'a mut Interval,
}

impl Future for Tick<'_> {
    type Output = Instant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        let interval = &mut *self.interval;
        let fired = coop::poll_budgeted(cx, |cx| Pin::new(&mut interval.timer).poll(cx));
        match (fired, interval.next) {
            (Poll::Ready(_), Some(scheduled)) => {
                interval.advance(scheduled);
                Poll::Ready(scheduled)
            }
            _ => Poll::Pending,
        }
    }
}

/// Yields the worker once: the task is woken at once and queued behind what
/// is already waiting.
///
/// # Cancel safety
///
/// Cancel-safe.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
