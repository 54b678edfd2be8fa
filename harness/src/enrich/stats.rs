//! The enrichment server's counters, and their snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::config::{Fault, FaultKind};

/// The statuses the server can send, in the order of their counters.
const STATUSES: [u16; 7] = [200, 400, 404, 405, 500, 501, 503];

/// What the server has done so far; see [`EnrichServer::stats`](super::EnrichServer::stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnrichStats {
    /// Request heads parsed (a bad head answered with a 400 counts too).
    pub requests: u64,
    /// Connections accepted.
    pub connections_accepted: u64,
    /// Connections open now (accepted and not yet closed by the server).
    pub connections_open: u64,
    /// Replies by the status code on their status line (a reply with a
    /// malformed status line, or a reset, has none). Only codes sent appear.
    pub responses: BTreeMap<u16, u64>,
    /// Faults injected, by kind. Only kinds injected appear.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Connections on which a request arrived after an answer that ended the
    /// connection's reuse (see the [module docs](crate::enrich#reuse-violations)).
    pub reuse_violations: u64,
    /// Connections the client closed while a [`Fault::Delay`] was pending:
    /// clients that gave up and did not reuse the connection.
    pub delays_abandoned: u64,
}

impl EnrichStats {
    /// Replies sent with `status`.
    pub fn status(&self, status: u16) -> u64 {
        self.responses.get(&status).copied().unwrap_or(0)
    }

    /// Faults of `kind` injected.
    pub fn fault(&self, kind: FaultKind) -> u64 {
        self.faults.get(&kind).copied().unwrap_or(0)
    }

    /// Faults of every kind injected.
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// One request as the server took it, in [`EnrichServer::records`](super::EnrichServer::records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Its place among the requests the server took, from 0.
    pub index: u64,
    /// The decoded symbol, or the raw request target when it names none.
    pub symbol: String,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
}

/// The live counters. Relaxed atomics throughout: each is a statistic read
/// on its own, and a snapshot is not one instant.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    accepted: AtomicU64,
    open: AtomicU64,
    statuses: [AtomicU64; STATUSES.len()],
    faults: [AtomicU64; FaultKind::ALL.len()],
    violations: AtomicU64,
    abandoned: AtomicU64,
    records: Mutex<Vec<RequestRecord>>,
}

impl Counters {
    /// Counts a request and gives its index.
    pub(crate) fn request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn record(&self, record: RequestRecord, limit: usize) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() < limit {
            records.push(record);
        }
    }

    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        records.sort_by_key(|r| r.index);
        records
    }

    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn status(&self, status: u16) {
        if let Some(i) = STATUSES.iter().position(|&s| s == status) {
            self.statuses[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn fault(&self, kind: FaultKind) {
        self.faults[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn violation(&self) {
        self.violations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn abandoned(&self) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> EnrichStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EnrichStats {
            requests: load(&self.requests),
            connections_accepted: load(&self.accepted),
            connections_open: load(&self.open),
            responses: STATUSES
                .iter()
                .zip(&self.statuses)
                .map(|(&s, n)| (s, load(n)))
                .filter(|&(_, n)| n > 0)
                .collect(),
            faults: FaultKind::ALL
                .iter()
                .zip(&self.faults)
                .map(|(&k, n)| (k, load(n)))
                .filter(|&(_, n)| n > 0)
                .collect(),
            reuse_violations: load(&self.violations),
            delays_abandoned: load(&self.abandoned),
        }
    }
}

/// Counts a connection open while it lives, dropped or not.
#[derive(Debug)]
pub(crate) struct OpenGuard<'a>(&'a Counters);

impl<'a> OpenGuard<'a> {
    pub(crate) fn new(counters: &'a Counters) -> Self {
        counters.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counters)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}
