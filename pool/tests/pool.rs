//! The generic pool with a remote-controlled manager: order of waiters,
//! handoff on cancellation, min idle, idle timeout, lifetime, leak warnings,
//! reclaim, and close. Exact counts from the pool's metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_executor::{Nursery, Runtime};
use tally_pool::{Config, Manager, Pool, Stage};

/// A manager whose behaviour the test sets: objects are numbers, creation can
/// be made slow or to fail, recycling to fail.
#[derive(Clone, Default)]
struct Remote {
    next: Arc<AtomicU64>,
    create_delay_ms: Arc<AtomicU64>,
    fail_create: Arc<AtomicBool>,
    fail_recycle: Arc<AtomicBool>,
    closed: Arc<Mutex<Vec<u64>>>,
    recycled: Arc<AtomicUsize>,
    reclaimed: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

impl Manager for Remote {
    type Object = u64;
    type Error = Refused;

    async fn create(&self) -> Result<u64, Refused> {
        let delay = self.create_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tally_executor::sleep(Duration::from_millis(delay)).await;
        }
        if self.fail_create.load(Ordering::SeqCst) {
            return Err(Refused);
        }
        Ok(self.next.fetch_add(1, Ordering::SeqCst))
    }

    async fn recycle(&self, _: &mut u64) -> Result<(), Refused> {
        self.recycled.fetch_add(1, Ordering::SeqCst);
        if self.fail_recycle.load(Ordering::SeqCst) {
            Err(Refused)
        } else {
            Ok(())
        }
    }

    async fn reclaim(&self, object: &mut u64) -> Result<(), Refused> {
        self.reclaimed.fetch_add(1, Ordering::SeqCst);
        self.recycle(object).await
    }

    async fn check(&self, _: &mut u64) -> Result<(), Refused> {
        Ok(())
    }

    async fn close(&self, object: u64) {
        self.closed.lock().unwrap().push(object);
    }
}

fn quick(size: usize) -> Config {
    Config::named("remote")
        .max_size(size)
        .wait_timeout(Duration::from_millis(500))
        .housekeeping_interval(Duration::from_millis(10))
}

#[test]
fn waiters_are_served_in_order_of_arrival_straight_from_each_release() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let services = Nursery::new();
        let pool = Pool::new(Remote::default(), quick(1), &services).unwrap();
        let held = pool.acquire().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiters = Nursery::new();
        for i in 0..50usize {
            let pool = pool.clone();
            let order = order.clone();
            let _waiter = waiters
                .spawn(async move {
                    let lease = pool.acquire().await.unwrap();
                    order.lock().unwrap().push(i);
                    tally_executor::yield_now().await;
                    lease.release().await;
                })
                .await
                .unwrap();
        }
        while pool.metrics().waiters < 50 {
            tally_executor::sleep(Duration::from_millis(1)).await;
        }
        // A newcomer with try_acquire cannot jump the line.
        assert!(pool.try_acquire().unwrap_err().is_exhausted());
        held.release().await;
        waiters.join().await;
        assert_eq!(*order.lock().unwrap(), (0..50).collect::<Vec<_>>());
        let m = pool.metrics();
        assert_eq!(
            (m.size, m.created, m.acquired, m.released, m.in_use),
            (1, 1, 51, 51, 0)
        );
        assert_eq!(m.waiters_peak, 50);
        pool.close(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_waiter_cancelled_after_being_handed_an_object_passes_it_on() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let services = Nursery::new();
        let pool = Pool::new(Remote::default(), quick(1), &services).unwrap();
        let held = pool.acquire().await.unwrap();
        // First in line: polled once (joins the line), then handed the object, then dropped.
        let mut first = pool.acquire();
        assert!(futures_lite::future::poll_once(&mut first).await.is_none());
        let second = pool.acquire();
        futures_lite::pin!(second);
        assert!(futures_lite::future::poll_once(&mut second).await.is_none());
        assert_eq!(pool.metrics().waiters, 2);
        held.release().await;
        // The object now sits in the first waiter's slot; it gives up.
        drop(first);
        let lease = tally_executor::timeout(Duration::from_secs(1), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*lease, 0);
        lease.release().await;
        let m = pool.metrics();
        assert_eq!((m.size, m.idle, m.waiters, m.abandoned), (1, 1, 0, 0));
        pool.close(Duration::from_secs(1)).await;
    });
}

#[test]
fn an_acquire_timeout_names_its_stage_and_how_many_waited() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let services = Nursery::new();
        let remote = Remote::default();
        let pool = Pool::new(
            remote.clone(),
            quick(1)
                .wait_timeout(Duration::from_millis(50))
                .create_timeout(Duration::from_millis(50)),
            &services,
        )
        .unwrap();
        let held = pool.acquire().await.unwrap();
        let e = pool.acquire().await.unwrap_err();
        assert_eq!(e.timeout_stage(), Some(Stage::Wait));
        assert!(e.waited().unwrap() >= Duration::from_millis(50));
        assert_eq!(e.waiters(), Some(1), "itself");
        held.discard().await;

        remote.create_delay_ms.store(500, Ordering::SeqCst);
        let e = pool.acquire().await.unwrap_err();
        assert_eq!(e.timeout_stage(), Some(Stage::Create), "{e}");
        remote.create_delay_ms.store(0, Ordering::SeqCst);
        remote.fail_create.store(true, Ordering::SeqCst);
        let e = pool.acquire().await.unwrap_err();
        assert!(e.create_error().is_some(), "{e}");
        let m = pool.metrics();
        assert_eq!(
            (m.size, m.acquire_timeouts, m.create_failures, m.discarded),
            (0, 1, 2, 1)
        );
        pool.close(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_dropped_lease_is_reclaimed_and_counted_with_its_site() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        let services = Nursery::new();
        let remote = Remote::default();
        let pool = Pool::new(remote.clone(), quick(2), &services).unwrap();
        let line = line!() + 1;
        let lease = pool.acquire().await.unwrap();
        drop(lease);
        assert!(pool.settle(Duration::from_secs(1)).await);
        let m = pool.metrics();
        assert_eq!((m.abandoned, m.in_use, m.idle, m.size), (1, 0, 1, 1));
        assert_eq!(remote.reclaimed.load(Ordering::SeqCst), 1);
        assert_eq!(m.abandoned_sites[0].location.line(), line);
        // A reclaim that fails closes the object and frees its room.
        remote.fail_recycle.store(true, Ordering::SeqCst);
        drop(pool.acquire().await.unwrap());
        assert!(pool.settle(Duration::from_secs(1)).await);
        let m = pool.metrics();
        assert_eq!((m.abandoned, m.size, m.discarded_broken), (2, 0, 1));
        assert_eq!(*remote.closed.lock().unwrap(), vec![0]);
        pool.close(Duration::from_secs(1)).await;
    });
}

#[test]
fn the_housekeeper_keeps_min_idle_warm_and_retires_idle_and_old_objects() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let services = Nursery::new();
        let remote = Remote::default();
        let pool = Pool::new(
            remote.clone(),
            quick(6)
                .min_idle(2)
                .idle_timeout(Some(Duration::from_millis(100)))
                .max_lifetime(Some(Duration::from_millis(400)), Duration::from_millis(50)),
            &services,
        )
        .unwrap();
        tally_executor::sleep(Duration::from_millis(50)).await;
        assert_eq!((pool.metrics().idle, pool.metrics().created), (2, 2));
        // A burst takes the pool to 6, then idles.
        let mut leases = Vec::new();
        for _ in 0..6 {
            leases.push(pool.acquire().await.unwrap());
        }
        for lease in leases {
            lease.release().await;
        }
        assert_eq!(pool.metrics().idle, 6);
        // The idle timeout brings it back to min_idle...
        tally_executor::sleep(Duration::from_millis(250)).await;
        let m = pool.metrics();
        assert_eq!((m.idle, m.size), (2, 2), "{m:?}");
        // ...and the lifetime replaces the old ones, keeping min_idle.
        tally_executor::sleep(Duration::from_millis(500)).await;
        let m = pool.metrics();
        assert_eq!((m.idle, m.size), (2, 2), "{m:?}");
        assert!(m.created >= 8, "{m:?}");
        assert!(m.closed >= 6, "{m:?}");
        pool.close(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_lease_held_past_the_threshold_is_warned_about_once() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let services = Nursery::new();
        let pool = Pool::new(
            Remote::default(),
            quick(1).leak_threshold(Some(Duration::from_millis(30))),
            &services,
        )
        .unwrap();
        let lease = pool.acquire().await.unwrap();
        tally_executor::sleep(Duration::from_millis(150)).await;
        assert_eq!(pool.metrics().leak_warnings, 1);
        lease.release().await;
        pool.close(Duration::from_secs(1)).await;
    });
}

#[test]
fn close_wakes_waiters_closes_idle_objects_and_reports_leases_still_out() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let remote = Remote::default();
        let pool = Pool::new(remote.clone(), quick(2), &services).unwrap();
        let kept = pool.acquire().await.unwrap();
        let idle = pool.acquire().await.unwrap();
        idle.release().await;
        let crowd = Nursery::new();
        let waiter_pool = pool.clone();
        let held_pool = pool.clone();
        // Fill the pool so the waiter has to wait.
        let second = held_pool.acquire().await.unwrap();
        let waiter = crowd
            .spawn(async move {
                waiter_pool
                    .acquire()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.is_closed())
            })
            .await
            .unwrap();
        while pool.metrics().waiters < 1 {
            tally_executor::sleep(Duration::from_millis(1)).await;
        }
        let report = pool.close(Duration::from_millis(50)).await;
        assert_eq!(waiter.await.unwrap(), Err(true));
        assert_eq!(report.closed_idle, 0);
        assert_eq!(report.outstanding.len(), 2);
        assert!(pool.acquire().await.unwrap_err().is_closed());
        // Leases still out are closed when they come back.
        kept.release().await;
        second.release().await;
        assert_eq!(remote.closed.lock().unwrap().len(), 2);
        assert_eq!(pool.metrics().size, 0);
        // Its tasks ended: the services nursery is empty.
        assert_eq!(services.stats().live, 0);
    });
}
