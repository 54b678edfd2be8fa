//! tally: an async runtime for services that cannot afford to leak.
//!
//! Every task is spawned into a structured, counted [`Nursery`]; every pooled
//! resource is leased and returned through an explicit path. This crate only
//! re-exports tally's crates: the runtime from `tally-executor`, the protocols
//! from `tally-protocols` and the pools from `tally-pool`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! let rt = tally::Runtime::new();
//! let stats = rt.block_on(async {
//!     let nursery = tally::Nursery::new();
//!     for _ in 0..100 {
//!         let _ = nursery.spawn(tally::sleep(Duration::from_millis(1))).await;
//!     }
//!     nursery.join().await
//! });
//! assert_eq!((stats.completed, stats.live), (100, 0));
//! ```

pub use tally_executor::*;

/// The wire protocols (PostgreSQL, HTTP/1.1).
pub use tally_protocols as protocols;

/// Pools with explicit leases.
pub use tally_pool as pool;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
