//! Real peers on loopback for tally's tests, benches and default run: a
//! throwaway PostgreSQL cluster, a fault-injecting HTTP/1.1 enrichment server,
//! a TCP fault proxy, and probes of the process (open file descriptors,
//! resident memory).
//!
//! Only the process probes exist so far.
#![forbid(unsafe_code)]

pub mod probe;
