//! Ctrl-C, through async-signal.

use std::fmt;

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

/// A Ctrl-C (SIGINT) handler that stays installed while this value lives, so
/// that a service can wait for several signals, and holds the same
/// descriptors from start to end.
pub struct CtrlC {
    signals: Signals,
}

impl fmt::Debug for CtrlC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CtrlC")
    }
}

impl CtrlC {
    /// Installs the handler. While it lives, SIGINT no longer ends the
    /// process by default.
    ///
    /// # Errors
    ///
    /// Fails if the handler cannot be installed.
    pub fn new() -> std::io::Result<CtrlC> {
        Ok(CtrlC {
            signals: Signals::new([Signal::Int])?,
        })
    }

    /// Waits for the next SIGINT.
    ///
    /// # Errors
    ///
    /// Fails if the signal stream breaks.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a signal that arrives meanwhile is seen by the next call.
    pub async fn recv(&mut self) -> std::io::Result<()> {
        match self.signals.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e),
            None => Err(std::io::Error::other("the signal stream ended")),
        }
    }
}

/// Waits for the next SIGINT (Ctrl-C) delivered to the process. While the
/// returned future (or another made by this function) is alive, SIGINT no
/// longer ends the process by default. See [`CtrlC`] to keep the handler
/// installed across signals.
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
    CtrlC::new()?.recv().await
}
