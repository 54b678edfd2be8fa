//! Real peers on loopback for tally's tests, benches and default run: a
//! throwaway PostgreSQL cluster, a fault-injecting HTTP/1.1 enrichment server,
//! a TCP fault proxy, and probes of the process (open file descriptors,
//! resident memory).
//!
//! - [`cluster`]: a throwaway PostgreSQL cluster, started from the installed
//!   server binaries (blocking calls).
//! - [`enrich`]: the workload's enrichment service (`GET /v1/symbols/{symbol}`)
//!   with seeded latency, a seeded fault mix and faults by symbol, counting
//!   requests, connections, faults and clients that reuse a connection they
//!   had to drop.
//! - [`proxy`]: a TCP proxy that forwards, delays, stalls, refuses or cuts.
//! - [`probe`]: open file descriptors and resident memory of this process.
//!
//! The enrichment server and the proxy each run on a tally runtime of their
//! own (tally-executor, not the facade), so a client's task counts in the
//! same process stay the client's; both are stopped by their `shutdown` or
//! by being dropped.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod enrich;
pub mod probe;
pub mod proxy;
