//! The enrichment server's settings: latency, the seeded fault mix and the
//! faults by symbol.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long the server waits before it answers each request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Latency {
    /// Answers at once.
    #[default]
    None,
    /// Waits the same time before every answer.
    Fixed(Duration),
    /// Waits a time drawn uniformly from `min..=max` (at microsecond
    /// resolution) with the server's seeded generator.
    Uniform {
        /// The shortest wait.
        min: Duration,
        /// The longest wait.
        max: Duration,
    },
}

impl Latency {
    /// The shortest wait this distribution can give.
    pub fn min(&self) -> Duration {
        match *self {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => min.min(max),
        }
    }

    pub(crate) fn draw(&self, rng: &mut fastrand::Rng) -> Duration {
        match *self {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => {
                let (lo, hi) = (min.min(max), min.max(max));
                let lo_us = lo.as_micros() as u64;
                let hi_us = hi.as_micros() as u64;
                Duration::from_micros(rng.u64(lo_us..=hi_us))
            }
        }
    }
}

/// A fault the server injects into its answer to one request. What each
/// does on the wire, and what the server then does with the connection, is
/// listed in the [module docs](crate::enrich#faults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Waits this long, then sends the normal answer.
    Delay(Duration),
    /// `500 Internal Server Error` with a JSON error body, well framed.
    Status500,
    /// `503 Service Unavailable` with a JSON error body, well framed.
    Status503,
    /// A status line without a status code (`HTTP/1.1 OK`).
    MalformedStatusLine,
    /// A `Content-Length` larger than the body that is sent.
    TruncatedBody,
    /// A chunked answer whose first chunk-size line is not hexadecimal.
    BadChunkSize,
    /// `200 OK` with a well-framed body that is not JSON.
    InvalidJson,
    /// No answer: the socket is closed with `SO_LINGER` 0, which sends a RST.
    Reset,
    /// The normal answer, keep-alive and without `Connection: close`, then
    /// the connection is closed.
    CloseAfterResponse,
}

impl Fault {
    /// The fault's kind, without its parameter.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Delay(_) => FaultKind::Delay,
            Fault::Status500 => FaultKind::Status500,
            Fault::Status503 => FaultKind::Status503,
            Fault::MalformedStatusLine => FaultKind::MalformedStatusLine,
            Fault::TruncatedBody => FaultKind::TruncatedBody,
            Fault::BadChunkSize => FaultKind::BadChunkSize,
            Fault::InvalidJson => FaultKind::InvalidJson,
            Fault::Reset => FaultKind::Reset,
            Fault::CloseAfterResponse => FaultKind::CloseAfterResponse,
        }
    }

    /// Every kind of fault, `Delay` waiting `delay`.
    pub fn all(delay: Duration) -> Vec<Fault> {
        FaultKind::ALL
            .iter()
            .map(|kind| kind.with_delay(delay))
            .collect()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Delay(d) => write!(f, "delay:{}ms", d.as_millis()),
            other => f.write_str(other.kind().name()),
        }
    }
}

/// Parses the names of [`FaultKind::name`]; `delay` takes an optional
/// `:MILLISms` (`delay:6000ms`, default [`DEFAULT_DELAY`]).
impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        if let Some(ms) = s.strip_prefix("delay:") {
            let ms = ms.strip_suffix("ms").unwrap_or(ms);
            return ms
                .parse::<u64>()
                .map(|ms| Fault::Delay(Duration::from_millis(ms)))
                .map_err(|_| format!("bad delay {s:?}: expected delay:MILLISms"));
        }
        let kind: FaultKind = s.parse()?;
        Ok(kind.with_delay(DEFAULT_DELAY))
    }
}

/// The kinds of [`Fault`], for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// [`Fault::Delay`].
    Delay,
    /// [`Fault::Status500`].
    Status500,
    /// [`Fault::Status503`].
    Status503,
    /// [`Fault::MalformedStatusLine`].
    MalformedStatusLine,
    /// [`Fault::TruncatedBody`].
    TruncatedBody,
    /// [`Fault::BadChunkSize`].
    BadChunkSize,
    /// [`Fault::InvalidJson`].
    InvalidJson,
    /// [`Fault::Reset`].
    Reset,
    /// [`Fault::CloseAfterResponse`].
    CloseAfterResponse,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Delay,
        FaultKind::Status500,
        FaultKind::Status503,
        FaultKind::MalformedStatusLine,
        FaultKind::TruncatedBody,
        FaultKind::BadChunkSize,
        FaultKind::InvalidJson,
        FaultKind::Reset,
        FaultKind::CloseAfterResponse,
    ];

    /// Its name on the command line and in reports: `delay`, `500`, `503`,
    /// `malformed-status-line`, `truncated-body`, `bad-chunk-size`,
    /// `invalid-json`, `reset`, `close-after-response`.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Delay => "delay",
            FaultKind::Status500 => "500",
            FaultKind::Status503 => "503",
            FaultKind::MalformedStatusLine => "malformed-status-line",
            FaultKind::TruncatedBody => "truncated-body",
            FaultKind::BadChunkSize => "bad-chunk-size",
            FaultKind::InvalidJson => "invalid-json",
            FaultKind::Reset => "reset",
            FaultKind::CloseAfterResponse => "close-after-response",
        }
    }

    /// The fault of this kind, `Delay` waiting `delay`.
    pub fn with_delay(self, delay: Duration) -> Fault {
        match self {
            FaultKind::Delay => Fault::Delay(delay),
            FaultKind::Status500 => Fault::Status500,
            FaultKind::Status503 => Fault::Status503,
            FaultKind::MalformedStatusLine => Fault::MalformedStatusLine,
            FaultKind::TruncatedBody => Fault::TruncatedBody,
            FaultKind::BadChunkSize => Fault::BadChunkSize,
            FaultKind::InvalidJson => Fault::InvalidJson,
            FaultKind::Reset => Fault::Reset,
            FaultKind::CloseAfterResponse => Fault::CloseAfterResponse,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// The delay of a [`Fault::Delay`] in the default mix: past the pipeline's
/// default per-attempt timeout of 5 s.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(6);

/// A fault tied to one symbol, for every request or for the first few.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SymbolFault {
    pub(crate) fault: Fault,
    /// How many requests for the symbol get the fault; `None`: all of them.
    pub(crate) times: Option<u64>,
}

/// Settings for an [`EnrichServer`](super::EnrichServer).
/// [`EnrichConfig::default`] serves every request correctly, at once.
#[derive(Clone, Debug)]
pub struct EnrichConfig {
    pub(crate) port: u16,
    pub(crate) workers: usize,
    pub(crate) max_connections: usize,
    pub(crate) latency: Latency,
    pub(crate) fault_percent: f64,
    pub(crate) mix: Vec<Fault>,
    pub(crate) seed: u64,
    pub(crate) symbol_faults: BTreeMap<String, SymbolFault>,
    pub(crate) chunked: bool,
    pub(crate) linger: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) record_limit: usize,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            port: 0,
            workers: 1,
            max_connections: 1024,
            latency: Latency::None,
            fault_percent: 0.0,
            mix: Fault::all(DEFAULT_DELAY),
            seed: 0,
            symbol_faults: BTreeMap::new(),
            chunked: false,
            linger: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            record_limit: 65_536,
        }
    }
}

impl EnrichConfig {
    /// The defaults: port 0 (the system chooses), one worker, at most 1024
    /// connections, no latency, no faults, seed 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The port on 127.0.0.1 to listen on; 0 (the default) lets the system
    /// choose, and [`EnrichServer::url`](super::EnrichServer::url) tells which.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Worker threads of the server's own runtime (1 or 2 are plenty; default 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The most connections served at once (default 1024). At the cap the
    /// server stops accepting until one ends: new connections wait in the
    /// listen backlog.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long to wait before each answer (default none).
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Injects a fault into `percent` % of requests (0 to 100), drawn with the
    /// seeded generator from the mix ([`mix`](Self::mix), default every kind
    /// with a `Delay` of [`DEFAULT_DELAY`]).
    pub fn fault_percent(mut self, percent: f64) -> Self {
        self.fault_percent = percent.clamp(0.0, 100.0);
        self
    }

    /// The faults the mix draws from, each equally likely. An empty list
    /// injects nothing.
    pub fn mix(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.mix = faults.into_iter().collect();
        self
    }

    /// The seed of the fault mix and of the latency draws (default 0). The
    /// same seed gives the same sequence: the n-th request the server takes
    /// gets the n-th draw.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Answers every request for `symbol` (as decoded from the path) with
    /// `fault`, whatever the mix drew.
    pub fn fault_for(mut self, symbol: impl Into<String>, fault: Fault) -> Self {
        self.symbol_faults
            .insert(symbol.into(), SymbolFault { fault, times: None });
        self
    }

    /// Answers the first `times` requests for `symbol` with `fault`; later
    /// ones are served normally (or as the mix draws). Handy to make a first
    /// attempt fail and a retry succeed.
    pub fn fault_for_first(mut self, symbol: impl Into<String>, fault: Fault, times: u64) -> Self {
        self.symbol_faults.insert(
            symbol.into(),
            SymbolFault {
                fault,
                times: Some(times),
            },
        );
        self
    }

    /// Sends every successful answer with `Transfer-Encoding: chunked`, in
    /// several chunks written separately (default off). A request can ask for
    /// it alone with the query `?chunked=1`.
    pub fn chunked(mut self, on: bool) -> Self {
        self.chunked = on;
        self
    }

    /// How long a connection is kept after an answer that ends its reuse,
    /// to catch a client that sends another request on it (default 2 s). The
    /// server closes earlier when the client does.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// How long an idle keep-alive connection is kept (default 60 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// How many requests [`EnrichServer::records`](super::EnrichServer::records)
    /// keeps, the first ones (default 65,536).
    pub fn record_limit(mut self, limit: usize) -> Self {
        self.record_limit = limit;
        self
    }
}
