//! The pool: a bounded set of objects, strict FIFO waiters with direct
//! handoff, a housekeeper, and a reclaimer for abandoned leases.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::Event;
use slab::Slab;
use tally_executor::channel::{self, Receiver, Sender};
use tally_executor::{JoinHandle, Nursery, SpawnError, Spawner};

use crate::config::Config;
use crate::error::{PoolError, Stage};
use crate::lease::{Abandoned, Lease, LeaseRecord, Meta};
use crate::manager::Manager;
use crate::metrics::{AbandonedLease, Counters, Metrics};

/// How many abandoned-lease sites a pool remembers.
const ABANDONED_SITES: usize = 32;

/// An idle object and what the pool knows of it.
pub(crate) struct Idle<O> {
    pub(crate) object: O,
    pub(crate) meta: Meta,
}

/// What a waiter is handed.
enum Handoff<O> {
    /// An idle object, straight from its releaser.
    Object(Idle<O>),
    /// Room to make a new object (the pool's size already counts it).
    Permit,
    /// The pool closed.
    Closed,
}

struct Waiter<O> {
    slot: Mutex<Option<Handoff<O>>>,
    ready: Event,
}

struct State<O> {
    /// Idle objects; the most recently used at the back, taken first, so the
    /// ones at the front age out through the idle timeout.
    idle: VecDeque<Idle<O>>,
    /// Objects alive: idle, leased, being made, checked or reclaimed.
    size: usize,
    /// Acquires waiting in line, oldest first.
    waiters: VecDeque<Arc<Waiter<O>>>,
    closed: bool,
}

pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: Config,
    state: Mutex<State<M::Object>>,
    pub(crate) counters: Counters,
    pub(crate) leases: Mutex<Slab<LeaseRecord>>,
    abandoned_sites: Mutex<VecDeque<AbandonedLease>>,
    reclaim_tx: Sender<Abandoned<M::Object>>,
    pub(crate) pending_reclaims: AtomicUsize,
    /// Notified when a lease ends or a reclaim finishes.
    settled: Event,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing that can panic runs under the pool's locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<M: Manager> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, State<M::Object>> {
        lock(&self.state)
    }

    fn new_meta(&self) -> Meta {
        let now = Instant::now();
        let expires = self.config.max_lifetime.map(|life| {
            let jitter_ms = self.config.lifetime_jitter.as_millis() as u64;
            now + life + Duration::from_millis(fastrand::u64(0..=jitter_ms))
        });
        Meta {
            created: now,
            last_used: now,
            expires,
        }
    }

    /// Gives an object back: straight to the longest waiter, else to the idle
    /// set. Returns it when the pool is closed, for the caller to close.
    pub(crate) fn put_back(&self, mut idle: Idle<M::Object>) -> Option<Idle<M::Object>> {
        idle.meta.last_used = Instant::now();
        let mut state = self.lock();
        if state.closed {
            state.size -= 1;
            return Some(idle);
        }
        if let Some(waiter) = state.waiters.pop_front() {
            *lock(&waiter.slot) = Some(Handoff::Object(idle));
            drop(state);
            waiter.ready.notify(1);
            return None;
        }
        state.idle.push_back(idle);
        None
    }

    /// An object is gone (closed or never made): its room goes to the longest
    /// waiter as a permit to make one, or back to the pool.
    pub(crate) fn free_slot(&self) {
        let mut state = self.lock();
        if !state.closed {
            if let Some(waiter) = state.waiters.pop_front() {
                *lock(&waiter.slot) = Some(Handoff::Permit);
                drop(state);
                waiter.ready.notify(1);
                return;
            }
        }
        state.size -= 1;
    }

    /// Closes an object explicitly and counts it.
    pub(crate) async fn close_object(&self, object: M::Object) {
        self.manager.close(object).await;
        Counters::bump(&self.counters.closed);
    }

    pub(crate) fn end_lease(&self, key: usize) -> Option<LeaseRecord> {
        let record = lock(&self.leases).try_remove(key);
        self.settled.notify(usize::MAX);
        record
    }

    /// The last line of defence: a lease dropped without an explicit end.
    pub(crate) fn abandon(&self, abandoned: Abandoned<M::Object>) {
        Counters::bump(&self.counters.abandoned);
        {
            let mut sites = lock(&self.abandoned_sites);
            if sites.len() == ABANDONED_SITES {
                sites.pop_front();
            }
            sites.push_back(AbandonedLease {
                location: abandoned.location,
                held: abandoned.held,
            });
        }
        tracing::warn!(
            pool = %self.config.name,
            acquired_at = %abandoned.location,
            held = ?abandoned.held,
            "a lease was dropped without an explicit end; the reclaimer ends it"
        );
        self.pending_reclaims.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = self.reclaim_tx.try_send(abandoned) {
            // Only when the reclaimer is gone (the pool closed, its nursery
            // shut down): the object is dropped here, its socket closed by
            // its own drop. The channel holds as many as the pool has
            // objects, so it is never full.
            let _ = e.into_inner();
            self.pending_reclaims.fetch_sub(1, Ordering::AcqRel);
            self.free_slot();
            self.settled.notify(usize::MAX);
        }
    }

    fn take_or_queue(&self) -> Result<Handoff<M::Object>, Arc<Waiter<M::Object>>> {
        let mut state = self.lock();
        if state.closed {
            return Ok(Handoff::Closed);
        }
        if state.waiters.is_empty() {
            if let Some(idle) = state.idle.pop_back() {
                return Ok(Handoff::Object(idle));
            }
            if state.size < self.config.max_size {
                state.size += 1;
                return Ok(Handoff::Permit);
            }
        }
        let waiter = Arc::new(Waiter {
            slot: Mutex::new(None),
            ready: Event::new(),
        });
        state.waiters.push_back(waiter.clone());
        self.counters
            .waiters_peak
            .fetch_max(state.waiters.len() as u64, Ordering::Relaxed);
        Err(waiter)
    }

    fn lease(
        self: &Arc<Self>,
        object: M::Object,
        meta: Meta,
        location: &'static Location<'static>,
        start: Instant,
    ) -> Lease<M> {
        let now = Instant::now();
        let key = lock(&self.leases).insert(LeaseRecord {
            acquired_at: now,
            location,
            warned: false,
        });
        Counters::bump(&self.counters.acquired);
        self.counters.record_wait(now - start);
        Lease::new(object, meta, self.clone(), key, now, location)
    }

    async fn acquire(
        self: Arc<Self>,
        location: &'static Location<'static>,
    ) -> Result<Lease<M>, PoolError<M::Error>> {
        let start = Instant::now();
        let deadline = start + self.config.wait_timeout;
        loop {
            let handoff = match self.take_or_queue() {
                Ok(handoff) => handoff,
                Err(waiter) => {
                    let mut guard = WaitGuard {
                        shared: &self,
                        waiter,
                        done: false,
                    };
                    match guard.wait(deadline).await {
                        Some(handoff) => handoff,
                        None => {
                            Counters::bump(&self.counters.acquire_timeouts);
                            let waiters = self.lock().waiters.len();
                            return Err(PoolError::timeout(Stage::Wait, start.elapsed(), waiters));
                        }
                    }
                }
            };
            match handoff {
                Handoff::Closed => return Err(PoolError::closed()),
                Handoff::Object(mut idle) => {
                    let fit = self.manager.is_valid(&mut idle.object)
                        && matches!(
                            tally_executor::timeout(
                                self.config.recycle_timeout,
                                self.manager.check(&mut idle.object)
                            )
                            .await,
                            Ok(Ok(()))
                        );
                    if fit {
                        return Ok(self.lease(idle.object, idle.meta, location, start));
                    }
                    Counters::bump(&self.counters.failed_checks);
                    Counters::bump(&self.counters.discarded_broken);
                    self.free_slot();
                    self.close_object(idle.object).await;
                    if Instant::now() >= deadline {
                        let waiters = self.lock().waiters.len();
                        return Err(PoolError::timeout(Stage::Recycle, start.elapsed(), waiters));
                    }
                }
                Handoff::Permit => {
                    match tally_executor::timeout(self.config.create_timeout, self.manager.create())
                        .await
                    {
                        Ok(Ok(object)) => {
                            Counters::bump(&self.counters.created);
                            let meta = self.new_meta();
                            return Ok(self.lease(object, meta, location, start));
                        }
                        Ok(Err(e)) => {
                            Counters::bump(&self.counters.create_failures);
                            self.free_slot();
                            return Err(PoolError::create(e));
                        }
                        Err(_) => {
                            Counters::bump(&self.counters.create_failures);
                            self.free_slot();
                            let waiters = self.lock().waiters.len();
                            return Err(PoolError::timeout(
                                Stage::Create,
                                start.elapsed(),
                                waiters,
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Closes idle objects past their lifetime, or past the idle timeout
    /// beyond `min_idle`; makes objects up to `min_idle`; reports leases held
    /// too long.
    async fn housekeep(self: &Arc<Self>) {
        let now = Instant::now();
        let expired: Vec<Idle<M::Object>> = {
            let mut state = self.lock();
            let min_idle = self.config.min_idle;
            let mut keep = VecDeque::with_capacity(state.idle.len());
            let mut expired = Vec::new();
            let total = state.idle.len();
            for (i, idle) in state.idle.drain(..).enumerate() {
                let past_life = idle.meta.expires.is_some_and(|e| e <= now);
                let left_after = total - i - 1 + keep.len();
                let past_idle = self
                    .config
                    .idle_timeout
                    .is_some_and(|t| now.duration_since(idle.meta.last_used) >= t)
                    && left_after >= min_idle;
                if past_life || past_idle {
                    expired.push(idle);
                } else {
                    keep.push_back(idle);
                }
            }
            state.idle = keep;
            expired
        };
        for idle in expired {
            self.free_slot();
            self.close_object(idle.object).await;
        }
        // Top up to min_idle, one object at a time, never ahead of waiters.
        loop {
            {
                let mut state = self.lock();
                if state.closed
                    || state.idle.len() >= self.config.min_idle
                    || state.size >= self.config.max_size
                    || !state.waiters.is_empty()
                {
                    break;
                }
                state.size += 1;
            }
            match tally_executor::timeout(self.config.create_timeout, self.manager.create()).await {
                Ok(Ok(object)) => {
                    Counters::bump(&self.counters.created);
                    let meta = self.new_meta();
                    if let Some(idle) = self.put_back(Idle { object, meta }) {
                        self.close_object(idle.object).await;
                    }
                }
                _ => {
                    Counters::bump(&self.counters.create_failures);
                    self.free_slot();
                    break;
                }
            }
        }
        if let Some(threshold) = self.config.leak_threshold {
            let mut leases = lock(&self.leases);
            for (_, record) in leases.iter_mut() {
                let held = now.saturating_duration_since(record.acquired_at);
                if held >= threshold && !record.warned {
                    record.warned = true;
                    Counters::bump(&self.counters.leak_warnings);
                    tracing::warn!(
                        pool = %self.config.name,
                        acquired_at = %record.location,
                        held = ?held,
                        "a lease has been held longer than the leak threshold"
                    );
                }
            }
        }
    }

    async fn reclaim(self: &Arc<Self>, mut abandoned: Abandoned<M::Object>) {
        let reclaimed = matches!(
            tally_executor::timeout(
                self.config.recycle_timeout,
                self.manager.reclaim(&mut abandoned.object)
            )
            .await,
            Ok(Ok(()))
        );
        if reclaimed {
            if let Some(idle) = self.put_back(Idle {
                object: abandoned.object,
                meta: abandoned.meta,
            }) {
                self.close_object(idle.object).await;
            }
        } else {
            Counters::bump(&self.counters.discarded_broken);
            self.free_slot();
            self.close_object(abandoned.object).await;
        }
        self.pending_reclaims.fetch_sub(1, Ordering::AcqRel);
        self.settled.notify(usize::MAX);
    }

    fn is_settled(&self) -> bool {
        lock(&self.leases).is_empty() && self.pending_reclaims.load(Ordering::Acquire) == 0
    }
}

/// Removes a waiter from the line when its acquire ends, and passes on
/// whatever it was handed meanwhile: an acquire cancelled after an object
/// reached it does not lose the object.
struct WaitGuard<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    waiter: Arc<Waiter<M::Object>>,
    done: bool,
}

impl<M: Manager> WaitGuard<'_, M> {
    async fn wait(&mut self, deadline: Instant) -> Option<Handoff<M::Object>> {
        let mut handoff = None;
        let waiter = &self.waiter;
        tally_executor::wait_until(&waiter.ready, Some(deadline), || {
            handoff = lock(&waiter.slot).take();
            handoff.is_some()
        })
        .await;
        self.done = handoff.is_some();
        handoff
    }
}

impl<M: Manager> Drop for WaitGuard<'_, M> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Bookkeeping, not cleanup: under the pool's lock, leave the line, and
        // pass on anything handed over in the meantime.
        let mut state = self.shared.lock();
        state.waiters.retain(|w| !Arc::ptr_eq(w, &self.waiter));
        let handoff = lock(&self.waiter.slot).take();
        let next = match handoff {
            Some(Handoff::Object(idle)) => match state.waiters.pop_front() {
                Some(next) => {
                    *lock(&next.slot) = Some(Handoff::Object(idle));
                    Some(next)
                }
                None => {
                    state.idle.push_back(idle);
                    None
                }
            },
            Some(Handoff::Permit) => match state.waiters.pop_front() {
                Some(next) => {
                    *lock(&next.slot) = Some(Handoff::Permit);
                    Some(next)
                }
                None => {
                    state.size -= 1;
                    None
                }
            },
            Some(Handoff::Closed) | None => None,
        };
        drop(state);
        if let Some(next) = next {
            next.ready.notify(1);
        }
    }
}

/// What [`Pool::close`] did.
#[derive(Clone, Debug, Default)]
pub struct CloseReport {
    /// Idle objects closed.
    pub closed_idle: usize,
    /// Leases still out at the deadline: their objects are closed when they
    /// are released (or reclaimed).
    pub outstanding: Vec<AbandonedLease>,
    /// Abandoned leases still being reclaimed at the deadline.
    pub pending_reclaims: usize,
    /// How long closing took.
    pub elapsed: Duration,
}

/// A bounded pool of objects, leased out through explicit ends.
///
/// Cheap to clone: clones share one pool.
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.config.name)
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl<M: Manager> Pool<M> {
    /// Makes a pool, with its housekeeper and its reclaimer spawned into
    /// `nursery` (so they are counted, and end when it is shut down).
    ///
    /// # Errors
    ///
    /// When the nursery is full or closed.
    pub fn new(manager: M, config: Config, nursery: &Nursery) -> Result<Pool<M>, StartError> {
        Self::with_spawner(manager, config, &nursery.spawner())
    }

    /// As [`new`](Self::new), spawning into the nursery behind `spawner`.
    ///
    /// # Errors
    ///
    /// When the nursery is full, closed or gone.
    pub fn with_spawner(
        manager: M,
        config: Config,
        nursery: &Spawner,
    ) -> Result<Pool<M>, StartError> {
        let (reclaim_tx, reclaim_rx) = channel::bounded(config.max_size.max(1));
        let shared = Arc::new(Shared {
            manager,
            state: Mutex::new(State {
                idle: VecDeque::new(),
                size: 0,
                waiters: VecDeque::new(),
                closed: false,
            }),
            counters: Counters::default(),
            leases: Mutex::new(Slab::with_capacity(config.max_size)),
            abandoned_sites: Mutex::new(VecDeque::new()),
            reclaim_tx,
            pending_reclaims: AtomicUsize::new(0),
            settled: Event::new(),
            tasks: Mutex::new(Vec::new()),
            config,
        });
        let reclaimer = nursery
            .try_spawn_named(
                format!("{}-reclaimer", shared.config.name),
                reclaimer(shared.clone(), reclaim_rx),
            )
            .map_err(|e| start_error(&e))?;
        let housekeeper = nursery.try_spawn_named(
            format!("{}-housekeeper", shared.config.name),
            housekeeper(shared.clone()),
        );
        let housekeeper = match housekeeper {
            Ok(h) => h,
            Err(e) => {
                reclaimer.abort();
                return Err(start_error(&e));
            }
        };
        lock(&shared.tasks).extend([reclaimer, housekeeper]);
        Ok(Pool { shared })
    }

    /// Leases an object: an idle one (checked first), a new one when there is
    /// room, or the next one released, in strict order of arrival.
    ///
    /// # Errors
    ///
    /// A timeout naming its stage (wait, create, recycle), a failure to make
    /// an object, or a closed pool.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the line; an object (or room) handed to it
    /// meanwhile goes to the next in line.
    #[track_caller]
    pub fn acquire(&self) -> Acquire<M> {
        self.acquire_at(Location::caller())
    }

    /// As [`acquire`](Self::acquire), recording `location` as the acquire site.
    pub(crate) fn acquire_at(&self, location: &'static Location<'static>) -> Acquire<M> {
        Acquire {
            inner: Box::pin(self.shared.clone().acquire(location)),
        }
    }

    /// Leases an idle object if one is ready and nobody is waiting, without
    /// waiting, making or checking beyond [`Manager::is_valid`].
    ///
    /// # Errors
    ///
    /// Exhausted when no idle object is ready, closed when the pool is.
    #[track_caller]
    pub fn try_acquire(&self) -> Result<Lease<M>, PoolError<M::Error>> {
        let location = Location::caller();
        let start = Instant::now();
        loop {
            let idle = {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(PoolError::closed());
                }
                if !state.waiters.is_empty() {
                    return Err(PoolError::exhausted());
                }
                match state.idle.pop_back() {
                    Some(idle) => idle,
                    None => return Err(PoolError::exhausted()),
                }
            };
            let mut idle = idle;
            if self.shared.manager.is_valid(&mut idle.object) {
                return Ok(self.shared.lease(idle.object, idle.meta, location, start));
            }
            // Unfit: hand it to the reclaimer's closing path without waiting here.
            Counters::bump(&self.shared.counters.failed_checks);
            Counters::bump(&self.shared.counters.discarded_broken);
            let abandoned = Abandoned {
                object: idle.object,
                meta: idle.meta,
                location,
                held: Duration::ZERO,
            };
            self.shared.pending_reclaims.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = self.shared.reclaim_tx.try_send(abandoned) {
                let _ = e.into_inner();
                self.shared.pending_reclaims.fetch_sub(1, Ordering::AcqRel);
                self.shared.free_slot();
            }
        }
    }

    /// The pool's settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// A snapshot of the pool's state and counts.
    pub fn metrics(&self) -> Metrics {
        let (size, idle, waiters) = {
            let state = self.shared.lock();
            (state.size, state.idle.len(), state.waiters.len())
        };
        let c = &self.shared.counters;
        let read = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Metrics {
            size,
            idle,
            in_use: lock(&self.shared.leases).len(),
            waiters,
            waiters_peak: read(&c.waiters_peak),
            acquired: read(&c.acquired),
            released: read(&c.released),
            abandoned: read(&c.abandoned),
            discarded: read(&c.discarded),
            discarded_broken: read(&c.discarded_broken),
            created: read(&c.created),
            create_failures: read(&c.create_failures),
            closed: read(&c.closed),
            acquire_timeouts: read(&c.acquire_timeouts),
            failed_checks: read(&c.failed_checks),
            leak_warnings: read(&c.leak_warnings),
            acquire_p50: c.wait_quantile(0.5),
            acquire_p99: c.wait_quantile(0.99),
            abandoned_sites: lock(&self.shared.abandoned_sites).iter().cloned().collect(),
        }
    }

    /// Waits until every lease has ended and every abandoned one has been
    /// reclaimed, or until `limit`; says whether it settled.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now().checked_add(limit);
        tally_executor::wait_until(&self.shared.settled, deadline, || self.shared.is_settled())
            .await
    }

    /// Closes the pool: refuses new acquires, wakes the waiters with an
    /// error, closes the idle objects, waits up to `limit` for the leases to
    /// end, and stops the housekeeper and the reclaimer. Leases still out are
    /// reported; their objects are closed when they come back.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the pool closed, with some idle objects
    /// perhaps not yet closed.
    pub async fn close(&self, limit: Duration) -> CloseReport {
        let start = Instant::now();
        let (waiters, idle) = {
            let mut state = self.shared.lock();
            state.closed = true;
            let idle: Vec<_> = state.idle.drain(..).collect();
            state.size -= idle.len();
            (std::mem::take(&mut state.waiters), idle)
        };
        for waiter in waiters {
            *lock(&waiter.slot) = Some(Handoff::Closed);
            waiter.ready.notify(1);
        }
        let closed_idle = idle.len();
        for idle in idle {
            self.shared.close_object(idle.object).await;
        }
        self.settle(limit.saturating_sub(start.elapsed())).await;
        let outstanding = {
            let now = Instant::now();
            lock(&self.shared.leases)
                .iter()
                .map(|(_, r)| AbandonedLease {
                    location: r.location,
                    held: now.saturating_duration_since(r.acquired_at),
                })
                .collect()
        };
        let pending_reclaims = self.shared.pending_reclaims.load(Ordering::Acquire);
        let tasks: Vec<_> = lock(&self.shared.tasks).drain(..).collect();
        for task in &tasks {
            task.cancel();
        }
        for task in tasks {
            let left = limit
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(10));
            // A service task that ignores its signal is left to its
            // nursery's shutdown, which drops it.
            let _ = tally_executor::timeout(left, task).await;
        }
        CloseReport {
            closed_idle,
            outstanding,
            pending_reclaims,
            elapsed: start.elapsed(),
        }
    }
}

/// Why a pool could not start: its nursery took no more tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartError {
    closed: bool,
}

impl StartError {
    /// Whether the nursery was closed (rather than full).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.closed {
            f.write_str("the pool's nursery is closed: its housekeeper and reclaimer cannot start")
        } else {
            f.write_str("the pool's nursery is full: its housekeeper and reclaimer cannot start")
        }
    }
}

impl std::error::Error for StartError {}

fn start_error<F>(e: &SpawnError<F>) -> StartError {
    StartError {
        closed: e.is_closed(),
    }
}

/// The future returned by [`Pool::acquire`].
#[must_use = "nothing is acquired unless the future is awaited"]
pub struct Acquire<M: Manager> {
    #[allow(clippy::type_complexity)]
    inner: Pin<Box<dyn Future<Output = Result<Lease<M>, PoolError<M::Error>>> + Send>>,
}

impl<M: Manager> fmt::Debug for Acquire<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acquire")
    }
}

impl<M: Manager> Future for Acquire<M> {
    type Output = Result<Lease<M>, PoolError<M::Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

async fn reclaimer<M: Manager>(shared: Arc<Shared<M>>, rx: Receiver<Abandoned<M::Object>>) {
    loop {
        let next = futures_lite::future::or(async { rx.recv().await.ok() }, async {
            tally_executor::cancelled().await;
            None
        })
        .await;
        match next {
            Some(abandoned) => shared.reclaim(abandoned).await,
            None => break,
        }
    }
    // Signalled to stop: end what is still queued explicitly, by closing it.
    while let Ok(abandoned) = rx.try_recv() {
        Counters::bump(&shared.counters.discarded_broken);
        shared.free_slot();
        shared.close_object(abandoned.object).await;
        shared.pending_reclaims.fetch_sub(1, Ordering::AcqRel);
        shared.settled.notify(usize::MAX);
    }
    rx.close();
}

async fn housekeeper<M: Manager>(shared: Arc<Shared<M>>) {
    let mut interval = tally_executor::interval(shared.config.housekeeping_interval);
    // Warm up to min_idle at once, then on every tick.
    shared.housekeep().await;
    loop {
        let tick = futures_lite::future::or(
            async {
                interval.tick().await;
                true
            },
            async {
                tally_executor::cancelled().await;
                false
            },
        )
        .await;
        if !tick || shared.lock().closed {
            break;
        }
        shared.housekeep().await;
    }
}
