//! The market-event pipeline (see WORKLOAD.md): real market data in,
//! enrichment over HTTP, one transaction per event in Postgres, an audit log on
//! disk, and a report of what was left behind.
//!
//! A placeholder in the workspace until the pipeline's issue lands; until then
//! the README's main command runs the executor example (`examples/spike.rs`).
#![forbid(unsafe_code)]
