//! tally's wire protocols, written on sans-IO codecs so that every timeout,
//! cancellation and rollback path is tally's own:
//!
//! - [`pg`]: a PostgreSQL client on postgres-protocol;
//! - [`http1`]: the client side of HTTP/1.1 on httparse.
//!
//! Sockets are async-io's, driven by whichever tally worker polls them; their
//! reads and writes spend the task's cooperative budget.
#![forbid(unsafe_code)]

pub mod http1;
mod net;
pub mod pg;
