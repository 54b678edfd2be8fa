//! A bounded channel (many senders, many receivers) whose send and receive
//! spend the task's cooperative budget. There is no unbounded one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use async_channel::{RecvError, SendError, TryRecvError, TrySendError};

use crate::coop;

/// A channel that holds at most `capacity` messages (at least 1); a sender
/// waits for room beyond that.
///
/// # Examples
///
/// ```
/// let rt = tally_executor::Runtime::new();
/// rt.block_on(async {
///     let (tx, rx) = tally_executor::channel::bounded(2);
///     tx.send(1).await.unwrap();
///     tx.send(2).await.unwrap();
///     assert!(tx.try_send(3).is_err());
///     assert_eq!(rx.recv().await.unwrap(), 1);
/// });
/// ```
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = async_channel::bounded(capacity.max(1));
    (Sender { inner: tx }, Receiver { inner: rx })
}

/// The sending side of a [`bounded`] channel.
pub struct Sender<T> {
    inner: async_channel::Sender<T>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("len", &self.inner.len())
            .finish()
    }
}

impl<T> Sender<T> {
    /// Sends if there is room, without waiting.
    ///
    /// # Errors
    ///
    /// Gives the message back when the channel is full or closed.
    pub fn try_send(&self, message: T) -> Result<(), TrySendError<T>> {
        self.inner.try_send(message)
    }

    /// Waits for room, then sends.
    ///
    /// # Errors
    ///
    /// Gives the message back if the channel is closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it resolves sends nothing.
    pub fn send(&self, message: T) -> Send<'_, T> {
        Send {
            inner: self.inner.send(message),
        }
    }

    /// Closes the channel; receivers still get what is queued.
    pub fn close(&self) -> bool {
        self.inner.close()
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// The receiving side of a [`bounded`] channel.
pub struct Receiver<T> {
    inner: async_channel::Receiver<T>,
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.inner.len())
            .finish()
    }
}

impl<T> Receiver<T> {
    /// Takes a message if one is queued, without waiting.
    ///
    /// # Errors
    ///
    /// When the channel is empty, or empty and closed.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.inner.try_recv()
    }

    /// Waits for a message.
    ///
    /// # Errors
    ///
    /// When the channel is empty and closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is only taken when the future resolves.
    pub fn recv(&self) -> Recv<'_, T> {
        Recv {
            inner: self.inner.recv(),
        }
    }

    /// Closes the channel.
    pub fn close(&self) -> bool {
        self.inner.close()
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`Sender::send`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct Send<'a, T> {
        #[pin]
        inner: async_channel::Send<'a, T>,
    }
}

impl<T> fmt::Debug for Send<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Send")
    }
}

impl<T> Future for Send<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        coop::poll_budgeted(cx, |cx| inner.poll(cx))
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`Receiver::recv`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct Recv<'a, T> {
        #[pin]
        inner: async_channel::Recv<'a, T>,
    }
}

impl<T> fmt::Debug for Recv<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Recv")
    }
}

impl<T> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        coop::poll_budgeted(cx, |cx| inner.poll(cx))
    }
}
