//! Real peers on loopback for tally's tests, benches and default run: a
//! throwaway PostgreSQL cluster, a fault-injecting HTTP/1.1 enrichment server,
//! a TCP fault proxy, and probes of the process (open file descriptors,
//! resident memory).
//!
//! The throwaway cluster ([`cluster`]) and the process probes ([`probe`])
//! exist so far; the HTTP server and the fault proxy come with the HTTP issue.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod probe;
