//! Waiting for a condition that an [`Event`] announces, with a deadline:
//! the try, listen, try-again loop that lets no notification slip between
//! the check and the wait.

use std::time::Instant;

use event_listener::Event;

/// Waits until `ready()` holds, checking again each time `event` is
/// notified, or until `deadline` (`None`: no deadline). Says whether it holds.
///
/// `ready` may take what it waits for (a slot, a permit) as it checks: it is
/// called once more after each notification and once at the deadline.
///
/// # Cancel safety
///
/// Cancel-safe: dropping the future loses nothing but the wait.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::{Duration, Instant};
/// use event_listener::Event;
///
/// let rt = tally_executor::Runtime::new();
/// let (flag, event) = (AtomicBool::new(false), Event::new());
/// let waited = rt.block_on(tally_executor::wait_until(&event, Some(Instant::now() + Duration::from_millis(10)), || {
///     flag.load(Ordering::SeqCst)
/// }));
/// assert!(!waited);
/// ```
pub async fn wait_until(
    event: &Event,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let mut timer = match deadline {
        Some(deadline) => async_io::Timer::at(deadline),
        None => async_io::Timer::never(),
    };
    loop {
        if ready() {
            return true;
        }
        let listener = event.listen();
        if ready() {
            return true;
        }
        let woke = futures_lite::future::or(
            async {
                listener.await;
                true
            },
            async {
                (&mut timer).await;
                false
            },
        )
        .await;
        if !woke {
            return ready();
        }
    }
}
