//! tally's pools: a bounded [`Pool`] of objects leased out through explicit
//! ends, for Postgres ([`pg`]) and HTTP/1.1 ([`http`]).
//!
//! # The model
//!
//! - A [`Pool`] is generic over a [`Manager`] (make, check, recycle, reclaim,
//!   close). It is bounded (`max_size`), keeps `min_idle` objects warm, and
//!   serves waiters in strict order of arrival: a released object goes
//!   straight to the longest waiter, and a waiter cancelled after it was
//!   handed one passes it on.
//! - Its own tasks, a housekeeper (idle timeout, lifetime with jitter, min
//!   idle, leak warnings) and a reclaimer, run in a nursery its caller hands
//!   it, so they are counted and end with that nursery.
//! - A [`Lease`] ends explicitly: `release` (recycle, then idle) or `discard`
//!   (close); for Postgres, a transaction's commit or rollback. A lease
//!   dropped without an explicit end goes to the reclaimer, which ends it
//!   explicitly and counts it as *abandoned*, with where it was acquired.
//!   Zero abandoned leases is the norm.
//! - Every timeout is finite by default, and an acquire that times out says
//!   which stage did (wait, create, recycle).
//!
//! # Examples
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use tally_pool::{Config, Manager, Pool};
//!
//! /// Pools plain numbers: the smallest manager there is.
//! struct Numbers;
//!
//! impl Manager for Numbers {
//!     type Object = u64;
//!     type Error = Infallible;
//!     async fn create(&self) -> Result<u64, Infallible> { Ok(7) }
//!     async fn recycle(&self, _: &mut u64) -> Result<(), Infallible> { Ok(()) }
//!     async fn close(&self, _: u64) {}
//! }
//!
//! let rt = tally_executor::Runtime::new();
//! rt.block_on(async {
//!     let services = tally_executor::Nursery::builder().name("services").build();
//!     let pool = Pool::new(Numbers, Config::named("numbers").max_size(2), &services).unwrap();
//!     let lease = pool.acquire().await.unwrap();
//!     assert_eq!(*lease, 7);
//!     lease.release().await;
//!     let metrics = pool.metrics();
//!     assert_eq!((metrics.size, metrics.idle, metrics.in_use, metrics.abandoned), (1, 1, 0, 0));
//!     let report = pool.close(Duration::from_secs(1)).await;
//!     assert_eq!(report.closed_idle, 1);
//! });
//! ```
#![forbid(unsafe_code)]

mod config;
mod error;
pub mod http;
mod lease;
mod manager;
mod metrics;
pub mod pg;
mod pool;

pub use config::Config;
pub use error::{PoolError, Stage};
pub use lease::Lease;
pub use manager::Manager;
pub use metrics::{AbandonedLease, Metrics};
pub use pool::{Acquire, CloseReport, Pool, StartError};
