//! Pool settings, with finite defaults everywhere.

use std::time::Duration;

/// Settings of a [`Pool`](crate::Pool).
#[derive(Clone, Debug)]
pub struct Config {
    /// A name for logs and metrics.
    pub name: String,
    /// The most objects alive at once (idle, leased, or being made). Default 10.
    pub max_size: usize,
    /// Objects kept idle and ready, made ahead by the housekeeper. Default 0.
    pub min_idle: usize,
    /// The longest an acquire waits in line for an object. Default 5 s.
    pub wait_timeout: Duration,
    /// The longest making one object may take. Default 5 s.
    pub create_timeout: Duration,
    /// The longest a health check or a recycle may take. Default 5 s.
    pub recycle_timeout: Duration,
    /// Idle objects beyond `min_idle` unused this long are closed. Default 10 min.
    pub idle_timeout: Option<Duration>,
    /// Objects older than this (plus up to `lifetime_jitter`) are closed when
    /// next idle. Default 30 min.
    pub max_lifetime: Option<Duration>,
    /// Random extra lifetime per object, so a pool's objects do not all
    /// expire at once. Default 1 min.
    pub lifetime_jitter: Duration,
    /// How often the housekeeper runs. Default 1 s.
    pub housekeeping_interval: Duration,
    /// A lease held longer than this is reported once through tracing, with
    /// its acquire site and age. Default 30 s.
    pub leak_threshold: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "pool".to_owned(),
            max_size: 10,
            min_idle: 0,
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            lifetime_jitter: Duration::from_secs(60),
            housekeeping_interval: Duration::from_secs(1),
            leak_threshold: Some(Duration::from_secs(30)),
        }
    }
}

impl Config {
    /// The defaults, with a name.
    pub fn named(name: impl Into<String>) -> Self {
        Config {
            name: name.into(),
            ..Config::default()
        }
    }

    /// The most objects alive at once (at least 1).
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n.max(1);
        self
    }

    /// Objects kept idle and ready (at most `max_size`).
    pub fn min_idle(mut self, n: usize) -> Self {
        self.min_idle = n;
        self
    }

    /// The longest an acquire waits in line.
    pub fn wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = d;
        self
    }

    /// The longest making one object may take.
    pub fn create_timeout(mut self, d: Duration) -> Self {
        self.create_timeout = d;
        self
    }

    /// The longest a health check or recycle may take.
    pub fn recycle_timeout(mut self, d: Duration) -> Self {
        self.recycle_timeout = d;
        self
    }

    /// Idle objects beyond `min_idle` unused this long are closed.
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// The longest an object lives, plus up to `jitter`.
    pub fn max_lifetime(mut self, d: Option<Duration>, jitter: Duration) -> Self {
        self.max_lifetime = d;
        self.lifetime_jitter = jitter;
        self
    }

    /// How often the housekeeper runs.
    pub fn housekeeping_interval(mut self, d: Duration) -> Self {
        self.housekeeping_interval = d.max(Duration::from_millis(1));
        self
    }

    /// When a held lease is reported as a possible leak.
    pub fn leak_threshold(mut self, d: Option<Duration>) -> Self {
        self.leak_threshold = d;
        self
    }
}
