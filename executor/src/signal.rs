//! Ctrl-C, through async-signal.

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

/// Waits for the next SIGINT (Ctrl-C) delivered to the process. While the
/// returned future (or another made by this function) is alive, SIGINT no
/// longer ends the process by default.
///
/// # Errors
///
/// Fails if the signal handler cannot be installed.
///
/// # Cancel safety
///
/// Cancel-safe; a signal that arrives while no future is waiting is seen
/// only if another is.
pub async fn ctrl_c() -> std::io::Result<()> {
    let mut signals = Signals::new([Signal::Int])?;
    match signals.next().await {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(e),
        None => Err(std::io::Error::other("the signal stream ended")),
    }
}
