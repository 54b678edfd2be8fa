//! Leases: an object out of the pool, until an explicit end.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::manager::Manager;
use crate::metrics::Counters;
use crate::pool::{Idle, Shared};

/// What the pool knows of an object's life.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub(crate) created: Instant,
    pub(crate) last_used: Instant,
    pub(crate) expires: Option<Instant>,
}

/// A lease as the pool tracks it, for leak warnings and close reports.
#[derive(Debug)]
pub(crate) struct LeaseRecord {
    pub(crate) acquired_at: Instant,
    pub(crate) location: &'static Location<'static>,
    pub(crate) warned: bool,
}

/// An object whose lease was dropped, on its way to the reclaimer.
pub(crate) struct Abandoned<O> {
    pub(crate) object: O,
    pub(crate) meta: Meta,
    pub(crate) location: &'static Location<'static>,
    pub(crate) held: Duration,
}

/// An object leased from a [`Pool`](crate::Pool). Derefs to the object.
///
/// A lease ends explicitly: [`release`](Lease::release) (recycle to a clean
/// state, then idle) or [`discard`](Lease::discard) (close). A lease dropped
/// without either is the last line of defence: the pool's reclaimer ends it
/// explicitly (for Postgres: drain and ROLLBACK, or close) and counts it as
/// abandoned, with the place it was acquired.
pub struct Lease<M: Manager> {
    object: Option<M::Object>,
    meta: Meta,
    shared: Arc<Shared<M>>,
    key: usize,
    acquired_at: Instant,
    location: &'static Location<'static>,
}

impl<M: Manager> fmt::Debug for Lease<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("pool", &self.shared.config.name)
            .field("acquired_at", &self.location)
            .field("held", &self.acquired_at.elapsed())
            .finish()
    }
}

impl<M: Manager> Lease<M> {
    pub(crate) fn new(
        object: M::Object,
        meta: Meta,
        shared: Arc<Shared<M>>,
        key: usize,
        acquired_at: Instant,
        location: &'static Location<'static>,
    ) -> Self {
        Lease {
            object: Some(object),
            meta,
            shared,
            key,
            acquired_at,
            location,
        }
    }

    /// Where `acquire` was called.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// How long the lease has been held.
    pub fn held(&self) -> Duration {
        self.acquired_at.elapsed()
    }

    /// The pool's recycle timeout, for explicit ends that clean the object.
    pub fn recycle_timeout(&self) -> Duration {
        self.shared.config.recycle_timeout
    }

    /// How old the object is.
    pub fn age(&self) -> Duration {
        self.meta.created.elapsed()
    }

    /// Ends the lease: recycles the object to a clean state (within the
    /// pool's recycle timeout) and gives it back, straight to the longest
    /// waiter if there is one; if recycling fails, closes it and frees its room.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future mid-recycle abandons the lease to the reclaimer.
    pub async fn release(mut self) {
        let shared = self.shared.clone();
        let recycled = match self.object.as_mut() {
            Some(object) => matches!(
                tally_executor::timeout(
                    shared.config.recycle_timeout,
                    shared.manager.recycle(object)
                )
                .await,
                Ok(Ok(()))
            ),
            None => return,
        };
        let Some(object) = self.object.take() else {
            return;
        };
        shared.end_lease(self.key);
        if recycled {
            Counters::bump(&shared.counters.released);
            if let Some(idle) = shared.put_back(Idle {
                object,
                meta: self.meta,
            }) {
                shared.close_object(idle.object).await;
            }
        } else {
            Counters::bump(&shared.counters.released);
            Counters::bump(&shared.counters.discarded_broken);
            shared.free_slot();
            shared.close_object(object).await;
        }
    }

    /// Ends the lease by closing the object explicitly, freeing its room.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future mid-close drops the object, which closes its socket.
    pub async fn discard(mut self) {
        let Some(object) = self.object.take() else {
            return;
        };
        let shared = self.shared.clone();
        shared.end_lease(self.key);
        Counters::bump(&shared.counters.released);
        Counters::bump(&shared.counters.discarded);
        shared.free_slot();
        shared.close_object(object).await;
    }

    /// Ends the lease after an error showed the object broken: closes it and
    /// counts it as discarded broken.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future mid-close drops the object, which closes its socket.
    pub async fn discard_broken(mut self) {
        let Some(object) = self.object.take() else {
            return;
        };
        let shared = self.shared.clone();
        shared.end_lease(self.key);
        Counters::bump(&shared.counters.released);
        Counters::bump(&shared.counters.discarded_broken);
        shared.free_slot();
        shared.close_object(object).await;
    }
}

impl<M: Manager> Deref for Lease<M> {
    type Target = M::Object;

    fn deref(&self) -> &M::Object {
        // The object is only taken by the consuming ends and by drop.
        match &self.object {
            Some(object) => object,
            None => unreachable!("a lease's object is present until the lease ends"),
        }
    }
}

impl<M: Manager> DerefMut for Lease<M> {
    fn deref_mut(&mut self) -> &mut M::Object {
        match &mut self.object {
            Some(object) => object,
            None => unreachable!("a lease's object is present until the lease ends"),
        }
    }
}

impl<M: Manager> Drop for Lease<M> {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            self.shared.end_lease(self.key);
            self.shared.abandon(Abandoned {
                object,
                meta: self.meta,
                location: self.location,
                held: self.acquired_at.elapsed(),
            });
        }
    }
}
