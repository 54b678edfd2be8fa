//! The market-event pipeline of WORKLOAD.md: real market data in, enrichment
//! over HTTP, one transaction per event in Postgres, an audit log on disk,
//! and a report of what was left behind.
//!
//! # What is here
//!
//! The building blocks, each without a runtime of its own, and all but the
//! file-touching ones free of I/O:
//!
//! - [`event`]: the [`Event`](event::Event) `{event_id, symbol, price,
//!   volume, ts}`, calendar dates, and 16:00 New York time as a UTC instant
//!   (the US daylight-saving rules computed here, no time-zone database).
//! - [`source`]: a [`Reader`](source::Reader) of the two CSV layouts (Yahoo
//!   daily OHLCV and `symbol,date,price`), gzip or not, handing out events and
//!   rejected rows in bounded batches. Blocking: callers move it onto the
//!   runtime's blocking pool with `tally::unblock` for each batch.
//! - [`audit`]: the daily audit files and the dead-letter file, each opened,
//!   appended to and closed within one blocking call, so no file handle
//!   outlives the writes that need it.
//! - [`report`]: the run's figures as JSON, as a table, and as an SVG
//!   timeline, and an HDR latency recorder.
//! - [`exit`]: the exit status of a run (0, 3, 1 or 130).
//!
//! The market data of the README's main command is bundled in `data/` (see
//! `data/SOURCES.md`).
//!
//! # What comes next
//!
//! The runner (admission through a bounded queue, enrichment through
//! `tally::pool::HttpPool`, the transaction through `tally::pool::PgPool`, the
//! samplers behind the report) and the command line are not written yet; until
//! they are, the README's main command runs the executor example
//! (`examples/spike.rs`).
//!
//! # Examples
//!
//! ```
//! use tally_pipeline::source::{Item, Reader, ReaderOptions};
//!
//! let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//!     .join("data/sp500-daily-1999-2018.csv.gz");
//! let mut reader = Reader::open(&path, &ReaderOptions::default()).unwrap();
//! let batch = reader.next_batch(1).unwrap();
//! let Item::Event(first) = &batch[0] else { unreachable!() };
//! assert_eq!(first.event_id, "sp500-daily-1999-2018:1");
//! assert_eq!(first.symbol, "^GSPC");
//! assert_eq!(first.ts.to_string(), "1999-01-04T21:00:00Z");
//! ```
#![forbid(unsafe_code)]

pub mod audit;
mod csvline;
pub mod enrich;
pub mod event;
pub mod exit;
pub mod monitor;
pub mod report;
pub mod run;
mod schedule;
pub mod source;
pub mod store;

#[cfg(test)]
mod testutil;
