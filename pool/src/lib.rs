//! tally's pools: `Pool<M>` with explicit leases that end through commit,
//! rollback, release or discard, for Postgres and HTTP connections.
//!
//! A placeholder in the workspace until the pool's issue lands.
#![forbid(unsafe_code)]
