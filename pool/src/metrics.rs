//! A pool's counters and its snapshot.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Counters, bumped where things happen.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) acquired: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) discarded_broken: AtomicU64,
    pub(crate) created: AtomicU64,
    pub(crate) create_failures: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) acquire_timeouts: AtomicU64,
    pub(crate) failed_checks: AtomicU64,
    pub(crate) leak_warnings: AtomicU64,
    pub(crate) waiters_peak: AtomicU64,
    /// Acquire waits in microseconds (`None` only if the histogram could not be made).
    waits: Mutex<Option<Histogram<u64>>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            acquired: AtomicU64::new(0),
            released: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            discarded_broken: AtomicU64::new(0),
            created: AtomicU64::new(0),
            create_failures: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            acquire_timeouts: AtomicU64::new(0),
            failed_checks: AtomicU64::new(0),
            leak_warnings: AtomicU64::new(0),
            waiters_peak: AtomicU64::new(0),
            // Microseconds, from 1 us to an hour, 3 significant digits.
            waits: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()),
        }
    }
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        // Relaxed: these are statistics, read as a snapshot.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_wait(&self, waited: Duration) {
        let micros = (waited.as_micros() as u64).clamp(1, 3_600_000_000);
        if let Ok(mut guard) = self.waits.lock() {
            if let Some(h) = guard.as_mut() {
                let _ = h.record(micros);
            }
        }
    }

    pub(crate) fn wait_quantile(&self, q: f64) -> Duration {
        let micros = self
            .waits
            .lock()
            .ok()
            .and_then(|guard| {
                guard.as_ref().map(|h| {
                    if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(q)
                    }
                })
            })
            .unwrap_or(0);
        Duration::from_micros(micros)
    }
}

/// Where an abandoned lease was acquired, and how long it was held.
#[derive(Clone, Debug)]
pub struct AbandonedLease {
    /// Where `acquire` was called.
    pub location: &'static Location<'static>,
    /// How long it was held before it was dropped.
    pub held: Duration,
}

/// A pool's state and counts at one moment.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Objects alive: idle, leased, being made or cleaned.
    pub size: usize,
    /// Objects idle and ready.
    pub idle: usize,
    /// Objects leased out.
    pub in_use: usize,
    /// Acquires waiting in line now.
    pub waiters: usize,
    /// The most acquires ever waiting at once.
    pub waiters_peak: u64,
    /// Leases handed out.
    pub acquired: u64,
    /// Leases ended explicitly (released, discarded, committed, rolled back).
    pub released: u64,
    /// Leases dropped without an explicit end, reclaimed by the pool.
    pub abandoned: u64,
    /// Objects discarded on purpose by their holder.
    pub discarded: u64,
    /// Objects discarded because they were broken (failed recycle or check).
    pub discarded_broken: u64,
    /// Objects made.
    pub created: u64,
    /// Attempts to make an object that failed.
    pub create_failures: u64,
    /// Objects closed.
    pub closed: u64,
    /// Acquires that timed out.
    pub acquire_timeouts: u64,
    /// Health checks that failed.
    pub failed_checks: u64,
    /// Leases reported as held too long.
    pub leak_warnings: u64,
    /// The median wait to acquire.
    pub acquire_p50: Duration,
    /// The 99th percentile wait to acquire.
    pub acquire_p99: Duration,
    /// The most recent abandoned leases (up to 32), oldest first.
    pub abandoned_sites: Vec<AbandonedLease>,
}
