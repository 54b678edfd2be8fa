//! Cooperative cancellation: the signal a task can await or check without being
//! handed anything, and the set of nurseries a task (or the runtime's root)
//! owns, through which the signal reaches every descendant.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use event_listener::{Event, EventListener};

use crate::context;
use crate::nursery::NurseryInner;
use crate::task::AnyTask;

/// Whether the current task's cancel signal has been raised.
///
/// Outside a task (in [`Runtime::block_on`](crate::Runtime::block_on), or on a
/// thread of no runtime) this is always `false`.
pub fn is_cancelled() -> bool {
    context::current().is_some_and(|task| task.header().is_signalled())
}

/// Waits until the current task's cancel signal is raised, so the task can run
/// its own explicit async cleanup (roll back, flush, say goodbye) and return.
///
/// The signal comes from [`JoinHandle::cancel`](crate::JoinHandle::cancel), from
/// [`Nursery::cancel`](crate::Nursery::cancel) or a shutdown of the task's
/// nursery or of any nursery above it, and from a fail-fast sibling's failure.
/// Outside a task the returned future never resolves.
///
/// # Cancel safety
///
/// Cancel-safe: dropping the future loses nothing, and a later call sees a
/// signal that was raised meanwhile.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use futures_lite::future;
///
/// let rt = tally_executor::Runtime::new();
/// rt.block_on(async {
///     let nursery = tally_executor::Nursery::new();
///     let task = nursery
///         .try_spawn(async {
///             let work = async {
///                 tally_executor::sleep(Duration::from_secs(3600)).await;
///                 "finished"
///             };
///             // Whichever comes first: the work, or the signal.
///             future::or(work, async {
///                 tally_executor::cancelled().await;
///                 "cleaned up"
///             })
///             .await
///         })
///         .unwrap();
///     tally_executor::sleep(Duration::from_millis(10)).await;
///     task.cancel();
///     assert_eq!(task.await.unwrap(), "cleaned up");
/// });
/// ```
pub fn cancelled() -> Cancelled {
    Cancelled {
        task: None,
        listener: None,
    }
}

/// The future returned by [`cancelled`]. It watches the task that first polls it.
#[must_use = "futures do nothing unless awaited"]
pub struct Cancelled {
    task: Option<AnyTask>,
    listener: Option<EventListener>,
}

impl std::fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancelled")
            .field("in_task", &self.task.is_some())
            .finish()
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The task is looked up at the first poll, not at the call, so that
        // `nursery.spawn(cancelled())` watches the spawned task.
        if self.task.is_none() {
            self.task = context::current();
        }
        let Some(task) = self.task.clone() else {
            return Poll::Pending;
        };
        let header = task.header();
        loop {
            if header.is_signalled() {
                return Poll::Ready(());
            }
            match &mut self.listener {
                None => {
                    // Listen, then check again: a signal raised in between is
                    // seen by the check.
                    self.listener = Some(header.listen_signal());
                }
                Some(listener) => {
                    if Pin::new(listener).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.listener = None;
                }
            }
        }
    }
}

/// The nurseries owned by one task (or by a runtime's root), so that the
/// owner's signal and teardown reach them all, and so that the owner can wait
/// until each has been torn down.
#[derive(Debug)]
pub(crate) struct ChildSet {
    state: Mutex<ChildState>,
    emptied: Event,
}

#[derive(Debug)]
struct ChildState {
    nurseries: HashMap<u64, Weak<NurseryInner>>,
    signalled: bool,
    closed: bool,
}

/// Why a nursery could not be attached to its owner.
#[derive(Debug)]
pub(crate) struct OwnerGone;

impl ChildSet {
    pub(crate) fn new(signalled: bool) -> Self {
        ChildSet {
            state: Mutex::new(ChildState {
                nurseries: HashMap::new(),
                signalled,
                closed: false,
            }),
            emptied: Event::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ChildState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a nursery; says whether it is born signalled.
    pub(crate) fn attach(&self, nursery: &Arc<NurseryInner>) -> Result<bool, OwnerGone> {
        let mut state = self.lock();
        if state.closed {
            return Err(OwnerGone);
        }
        state.nurseries.insert(nursery.id, Arc::downgrade(nursery));
        Ok(state.signalled)
    }

    /// Removes a torn-down nursery.
    pub(crate) fn detach(&self, id: u64) {
        let mut state = self.lock();
        state.nurseries.remove(&id);
        if state.nurseries.is_empty() {
            drop(state);
            self.emptied.notify(usize::MAX);
        }
    }

    fn members(&self, state: &ChildState) -> Vec<Arc<NurseryInner>> {
        state.nurseries.values().filter_map(Weak::upgrade).collect()
    }

    /// Raises the cancel signal in every nursery, now and for those attached later.
    pub(crate) fn signal_all(&self) {
        let members = {
            let mut state = self.lock();
            state.signalled = true;
            self.members(&state)
        };
        for nursery in members.into_iter().filter(|n| !n.shielded) {
            nursery.cancel();
        }
    }

    /// Aborts every task in every nursery, leaving the nurseries open.
    pub(crate) fn abort_all(&self) {
        let members = self.members(&self.lock());
        for nursery in members {
            nursery.abort_all();
        }
    }

    /// Closes every nursery and aborts its tasks; no nursery can be attached after.
    pub(crate) fn close_and_abort_all(&self) {
        let members = {
            let mut state = self.lock();
            state.closed = true;
            state.signalled = true;
            self.members(&state)
        };
        for nursery in members {
            nursery.close();
            nursery.abort_all();
        }
    }

    /// Closes the set to new nurseries and closes and signals every member.
    pub(crate) fn close_and_signal_all(&self) {
        let members = {
            let mut state = self.lock();
            state.closed = true;
            state.signalled = true;
            self.members(&state)
        };
        for nursery in members {
            nursery.close();
            if !nursery.shielded {
                nursery.cancel();
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().nurseries.is_empty()
    }

    /// The nurseries still attached, for snapshots.
    pub(crate) fn snapshot(&self) -> Vec<Arc<NurseryInner>> {
        self.members(&self.lock())
    }

    /// Waits until every attached nursery has been torn down.
    pub(crate) async fn wait_empty(&self) {
        loop {
            if self.is_empty() {
                return;
            }
            let listener = self.emptied.listen();
            if self.is_empty() {
                return;
            }
            listener.await;
        }
    }
}
