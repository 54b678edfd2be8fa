//! tally's wire protocols, written on sans-IO codecs so that every timeout,
//! cancellation and rollback path is tally's own: `pg`, a PostgreSQL client on
//! postgres-protocol, and `http1`, the client side of HTTP/1.1 on httparse.
//!
//! Neither exists yet: this crate is a placeholder in the workspace until the
//! issues that build them land.
#![forbid(unsafe_code)]
