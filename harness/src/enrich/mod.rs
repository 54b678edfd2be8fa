//! The enrichment service of the workload (`GET /v1/symbols/{symbol}`), as an
//! HTTP/1.1 server on loopback that injects faults on demand and counts what
//! its clients do.
//!
//! # The model
//!
//! [`EnrichServer::start`] binds `127.0.0.1` (port 0: the system chooses;
//! [`EnrichServer::url`] tells which) and starts a tally [`Runtime`] of its
//! own, with [`EnrichConfig::workers`] threads named `enrich-N`, so a
//! client's task counts are the client's. In it, a nursery `/enrich` holds
//! the accept task, which opens a nursery `connections` capped at
//! [`EnrichConfig::max_connections`] and spawns one task per connection
//! there. At the cap, accepting pauses until a connection ends.
//! [`EnrichServer::shutdown`] signals every task (connections close), waits
//! up to its grace and reports; dropping the server does the same with no
//! grace.
//!
//! # Routes
//!
//! - `GET /v1/symbols/{symbol}`: the symbol is percent-decoded (`%5EGSPC` is
//!   `^GSPC`) and matched exactly. A known symbol ([`symbols::COMPANIES`]:
//!   MSFT, AMZN, IBM, GOOG, AAPL, ^GSPC) gets `200` and
//!   `{"company_name":"...","sector":"...","market_cap":N|null}`; any other
//!   gets `404` and `{"error":"unknown symbol","symbol":"..."}`. The query
//!   `?chunked=1` (or [`EnrichConfig::chunked`]) sends a 200 with
//!   `Transfer-Encoding: chunked` in three chunks, each written on its own.
//! - Any other path: `404 {"error":"not found"}`; another method on the
//!   symbol route: `405`; a broken percent-encoding: `400`. All keep-alive.
//! - A request the server cannot frame (bad head, bad `Content-Length`,
//!   head over 16 KiB) gets `400` with `Connection: close`; one with a
//!   `Transfer-Encoding` gets `501` with `Connection: close`.
//!
//! Connections follow RFC 9112: HTTP/1.1 is keep-alive unless the request
//! says `Connection: close`; HTTP/1.0 closes unless it says `keep-alive`
//! (and then the answer says `Connection: keep-alive`). Request bodies with a
//! `Content-Length` are read and dropped. Pipelined requests are answered in
//! order. An idle connection is closed after [`EnrichConfig::idle_timeout`].
//! After an answer with `Connection: close`, the server half-closes (FIN)
//! and lingers (below).
//!
//! # Faults
//!
//! A request gets a fault from [`EnrichConfig::fault_for`] (by symbol) or,
//! failing that, from the seeded mix ([`EnrichConfig::fault_percent`],
//! [`EnrichConfig::mix`], [`EnrichConfig::seed`]): the n-th well-formed
//! request the server takes gets the n-th draw, whether a symbol fault
//! overrides it or not, so a seed gives the same sequence every run.
//! [`EnrichConfig::latency`] applies before every answer, faults included.
//! Each fault, on the wire and then:
//!
//! | fault | bytes sent | then the connection |
//! |---|---|---|
//! | [`Delay(d)`](Fault::Delay) | nothing for `d`, then the normal answer | stays keep-alive; if the client closes meanwhile the server drops it (counted in `delays_abandoned`); request bytes arriving meanwhile are a reuse violation |
//! | [`Status500`](Fault::Status500) | `HTTP/1.1 500 Internal Server Error`, `Content-Length`, `{"error":"injected fault: internal server error"}` | keep-alive (well framed) |
//! | [`Status503`](Fault::Status503) | the same with `503 Service Unavailable` | keep-alive |
//! | [`MalformedStatusLine`](Fault::MalformedStatusLine) | `HTTP/1.1 OK` (no code), then the normal headers and body | kept open, no FIN, for the linger |
//! | [`TruncatedBody`](Fault::TruncatedBody) | the normal status and headers, `Content-Length` of the whole body, half the body | FIN right after, then the linger |
//! | [`BadChunkSize`](Fault::BadChunkSize) | the normal status, `Transfer-Encoding: chunked`, a chunk-size line `zz`, the body, `0` | kept open, no FIN, for the linger |
//! | [`InvalidJson`](Fault::InvalidJson) | `200 OK`, `Content-Length`, the first half of the normal body (JSON cut short) | keep-alive (well framed) |
//! | [`Reset`](Fault::Reset) | nothing | closed with `SO_LINGER` 0: the client reads `ECONNRESET` |
//! | [`CloseAfterResponse`](Fault::CloseAfterResponse) | the normal answer, no `Connection` header | closed at once (FIN); a request sent later meets a closed socket and is not counted |
//!
//! # Reuse violations
//!
//! *Lingering* means: keep the connection for [`EnrichConfig::linger`]
//! (default 2 s) or until the client closes it, reading; the first request
//! byte seen then (or already buffered, pipelined behind the request) counts
//! the connection in [`EnrichStats::reuse_violations`]: the client reused a
//! connection it had to drop (after `Connection: close`, a malformed status
//! line, a truncated body or a bad chunk size), or sent a request while a
//! delayed answer was still due (a timed-out attempt whose connection went
//! back to a pool). Each connection counts at most once.
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use tally_harness::enrich::{EnrichConfig, EnrichServer, Fault};
//!
//! let server = EnrichServer::start(EnrichConfig::new().fault_for("IBM", Fault::Status503))?;
//! let mut stream = std::net::TcpStream::connect(server.addr())?;
//! stream.write_all(b"GET /v1/symbols/%5EGSPC HTTP/1.1\r\nConnection: close\r\n\r\n")?;
//! let mut answer = String::new();
//! stream.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(answer.ends_with(r#"{"company_name":"S&P 500 Index","sector":"Index","market_cap":null}"#));
//! let report = server.shutdown(Duration::from_secs(1));
//! assert_eq!(report.stats.requests, 1);
//! assert_eq!(report.stats.connections_open, 0);
//! # Ok::<(), std::io::Error>(())
//! ```

mod config;
mod conn;
mod stats;
pub mod symbols;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_io::Async;
use futures_lite::future;
use tally_executor::{cancelled, sleep, Nursery, NurseryBuilder, Runtime, ShutdownReport};

pub use config::{EnrichConfig, Fault, FaultKind, Latency, DEFAULT_DELAY};
pub use stats::{EnrichStats, RequestRecord};

use stats::Counters;

/// What the connections share: the settings, the counters and the seeded
/// generators.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: EnrichConfig,
    pub(crate) counters: Counters,
    /// The fault mix's generator and the index of the next request, together
    /// so that the n-th index always gets the n-th draw.
    mix: Mutex<(fastrand::Rng, u64)>,
    latency: Mutex<fastrand::Rng>,
    /// Requests seen per symbol with a limited fault.
    symbol_hits: BTreeMap<String, AtomicU64>,
}

impl Shared {
    fn new(config: EnrichConfig) -> Shared {
        let symbol_hits = config
            .symbol_faults
            .iter()
            .filter(|(_, rule)| rule.times.is_some())
            .map(|(symbol, _)| (symbol.clone(), AtomicU64::new(0)))
            .collect();
        Shared {
            mix: Mutex::new((fastrand::Rng::with_seed(config.seed), 0)),
            // A different stream from the mix's, so latency draws do not
            // shift the fault sequence.
            latency: Mutex::new(fastrand::Rng::with_seed(
                config.seed ^ 0x9e37_79b9_7f4a_7c15,
            )),
            counters: Counters::default(),
            symbol_hits,
            config,
        }
    }

    /// Counts a well-formed request for `symbol`; gives its index and its fault.
    pub(crate) fn decide(&self, symbol: &str) -> (u64, Option<Fault>) {
        let config = &self.config;
        let (index, drawn) = {
            let mut mix = self.mix.lock().unwrap_or_else(|e| e.into_inner());
            let index = mix.1;
            mix.1 += 1;
            self.counters.request();
            let drawn = if config.fault_percent > 0.0 && !config.mix.is_empty() {
                let hit = mix.0.f64() * 100.0 < config.fault_percent;
                hit.then(|| config.mix[mix.0.usize(..config.mix.len())])
            } else {
                None
            };
            (index, drawn)
        };
        if let Some(rule) = config.symbol_faults.get(symbol) {
            let applies = match (rule.times, self.symbol_hits.get(symbol)) {
                (Some(times), Some(hits)) => hits.fetch_add(1, Ordering::Relaxed) < times,
                _ => true,
            };
            if applies {
                return (index, Some(rule.fault));
            }
        }
        (index, drawn)
    }

    /// The wait before the next answer.
    pub(crate) fn latency(&self) -> Duration {
        if self.config.latency == Latency::None {
            return Duration::ZERO;
        }
        let mut rng = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        self.config.latency.draw(&mut rng)
    }
}

/// The running enrichment server. See the [module docs](self).
pub struct EnrichServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    // Dropped before the runtime: dropping it aborts the server's tasks.
    nursery: Nursery,
    runtime: Runtime,
}

impl fmt::Debug for EnrichServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrichServer")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What [`EnrichServer::shutdown`] reports.
#[derive(Clone, Debug)]
pub struct EnrichReport {
    /// The counters once every connection was closed.
    pub stats: EnrichStats,
    /// What the server's runtime did with its tasks.
    pub runtime: ShutdownReport,
}

impl EnrichServer {
    /// Binds `127.0.0.1:<port>`, starts the server's runtime and begins
    /// accepting.
    ///
    /// # Errors
    ///
    /// Fails if the port cannot be bound (taken, or not allowed) or the
    /// runtime's threads cannot be started.
    pub fn start(config: EnrichConfig) -> io::Result<EnrichServer> {
        let listener =
            Async::<TcpListener>::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, config.port)))?;
        let addr = listener.get_ref().local_addr()?;
        let runtime = Runtime::builder()
            .workers(config.workers)
            .name("enrich")
            .blocking_threads(1)
            .build()?;
        let nursery = NurseryBuilder::default()
            .name("enrich")
            .build_in(&runtime)
            .map_err(io::Error::other)?;
        let shared = Arc::new(Shared::new(config));
        // The handle is not needed: the nursery owns the task.
        let _accept = nursery
            .try_spawn_named("accept", accept(listener, shared.clone()))
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(EnrichServer {
            addr,
            shared,
            nursery,
            runtime,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The settings it runs with.
    pub fn config(&self) -> &EnrichConfig {
        &self.shared.config
    }

    /// A snapshot of its counters.
    pub fn stats(&self) -> EnrichStats {
        self.shared.counters.snapshot()
    }

    /// Connections on which a client sent a request after an answer that
    /// ended the connection's reuse (see the [module docs](self#reuse-violations)).
    pub fn reuse_violations(&self) -> u64 {
        self.shared.counters.violations()
    }

    /// The first [`EnrichConfig::record_limit`] requests, in the order the
    /// server took them, with the fault each got.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.shared.counters.records()
    }

    /// The task counts of the server's own runtime (the accept task and one
    /// per open connection).
    pub fn runtime_stats(&self) -> tally_executor::Stats {
        self.runtime.stats()
    }

    /// Stops the server: stops accepting, closes every connection (a
    /// pending answer is not sent), waits up to `grace` for its tasks to end,
    /// then stops its threads. Blocks the calling thread; from async code,
    /// call it through `unblock`.
    pub fn shutdown(self, grace: Duration) -> EnrichReport {
        let EnrichServer {
            shared,
            nursery,
            runtime,
            ..
        } = self;
        let report = runtime.shutdown(grace);
        drop(nursery);
        EnrichReport {
            stats: shared.counters.snapshot(),
            runtime: report,
        }
    }
}

/// The accept task: one task per connection in a capped nursery, until the
/// cancel signal.
async fn accept(listener: Async<TcpListener>, shared: Arc<Shared>) {
    let connections = Nursery::builder()
        .name("connections")
        .cap(shared.config.max_connections)
        .build();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            cancelled().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok((stream, _))) => stream,
            Some(Err(_)) => {
                // Out of descriptors, or a connection reset while queued:
                // wait a little rather than spin.
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.counters.accepted();
        let _ = stream.get_ref().set_nodelay(true);
        let task = serve_until_cancelled(stream, shared.clone());
        let spawned = future::or(
            async { Some(connections.spawn_named("connection", task).await.is_ok()) },
            async {
                cancelled().await;
                None
            },
        )
        .await;
        if spawned != Some(true) {
            break;
        }
    }
}

async fn serve_until_cancelled(stream: Async<std::net::TcpStream>, shared: Arc<Shared>) {
    future::or(conn::serve(stream, shared), cancelled()).await;
}
