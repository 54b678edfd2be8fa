//! The pipeline's watch on itself: every 100 ms it reads the runtime's task
//! counts, the pools' metrics, the process's descriptors and memory, and
//! (over a connection of its own) how long any of the pipeline's Postgres
//! sessions has sat `idle in transaction`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally::pool::http::HttpPool;
use tally::pool::pg::PgPool;
use tally::protocols::pg::{Config as PgConfig, Connection};
use tally_harness::probe;

/// How often the monitor samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Live tasks of the runtime.
    pub tasks: u64,
    /// Events in flight (live tasks of the events nursery).
    pub in_flight: u64,
    /// Postgres leases out.
    pub pg_in_use: usize,
    /// Postgres connections alive.
    pub pg_size: usize,
    /// HTTP leases out.
    pub http_in_use: usize,
    /// HTTP connections alive.
    pub http_size: usize,
    /// Open file descriptors.
    pub fds: usize,
    /// Resident memory in bytes.
    pub rss: u64,
    /// The longest any of the pipeline's sessions has been idle in transaction, in seconds.
    pub idle_in_transaction_s: f64,
    /// The pipeline's Postgres sessions that are not idle.
    pub pg_busy: i64,
}

/// What the monitor has seen so far.
#[derive(Debug, Default)]
pub struct Watch {
    /// The latest sample.
    pub last: Sample,
    /// The highest of each figure.
    pub peak: Sample,
    /// One sample per second since the start (the last of each second).
    pub per_second: Vec<Sample>,
}

/// Reads one sample (without the Postgres part).
pub fn local_sample(events_live: u64, pg: &PgPool, http: &HttpPool) -> Sample {
    let pg_m = pg.metrics();
    let http_m = http.metrics();
    Sample {
        tasks: tally::runtime_stats().map_or(0, |s| s.live),
        in_flight: events_live,
        pg_in_use: pg_m.in_use,
        pg_size: pg_m.size,
        http_in_use: http_m.total.in_use,
        http_size: http_m.total.size,
        fds: probe::open_fds().unwrap_or(0),
        rss: probe::resident_bytes().unwrap_or(0),
        idle_in_transaction_s: 0.0,
        pg_busy: 0,
    }
}

/// Samples `pg_stat_activity` for the sessions named `application_name`.
#[derive(Debug)]
pub struct PgWatch {
    conn: Connection,
    application_name: String,
}

const ACTIVITY: &str = "SELECT \
    coalesce(max(extract(epoch FROM (now() - state_change))) FILTER (WHERE state LIKE 'idle in transaction%'), 0)::float8, \
    count(*) FILTER (WHERE state IS DISTINCT FROM 'idle')::int8 \
    FROM pg_stat_activity WHERE application_name = $1";

impl PgWatch {
    /// Opens the monitor's own connection (named `<application_name>-monitor`).
    ///
    /// # Errors
    ///
    /// When the database cannot be reached.
    pub async fn open(
        config: &PgConfig,
        application_name: &str,
    ) -> Result<PgWatch, tally::protocols::pg::Error> {
        let config = config
            .clone()
            .application_name(format!("{application_name}-monitor"));
        Ok(PgWatch {
            conn: Connection::connect(&config).await?,
            application_name: application_name.to_owned(),
        })
    }

    /// The longest idle-in-transaction time (seconds) and the number of busy
    /// sessions, now.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn read(&mut self) -> Result<(f64, i64), tally::protocols::pg::Error> {
        if self.conn.is_out_of_step() {
            self.conn.recover().await?;
        }
        let row = self
            .conn
            .query_one(ACTIVITY, &[&self.application_name.as_str()])
            .await?;
        Ok((row.get::<f64>(0)?, row.get::<i64>(1)?))
    }

    /// Counts rows of `market_events` whose `event_id` matches `pattern` (a
    /// regular expression) with a row number (its second part) up to `max_row`.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn count_matching(
        &mut self,
        pattern: &str,
        max_row: i64,
    ) -> Result<u64, tally::protocols::pg::Error> {
        let row = self
            .conn
            .query_one(
                "SELECT count(*)::int8 FROM market_events WHERE event_id ~ $1 AND split_part(event_id, ':', 2)::int8 <= $2",
                &[&pattern, &max_row],
            )
            .await?;
        Ok(row.get::<i64>(0)?.max(0) as u64)
    }

    /// Closes the monitor's connection.
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// Folds a sample into the watch: the latest, the peaks, one per second.
pub fn record(watch: &Mutex<Watch>, sample: Sample, start: Instant) {
    let mut w = watch.lock().unwrap_or_else(|e| e.into_inner());
    w.last = sample;
    let p = &mut w.peak;
    p.tasks = p.tasks.max(sample.tasks);
    p.in_flight = p.in_flight.max(sample.in_flight);
    p.pg_in_use = p.pg_in_use.max(sample.pg_in_use);
    p.pg_size = p.pg_size.max(sample.pg_size);
    p.http_in_use = p.http_in_use.max(sample.http_in_use);
    p.http_size = p.http_size.max(sample.http_size);
    p.fds = p.fds.max(sample.fds);
    p.rss = p.rss.max(sample.rss);
    p.idle_in_transaction_s = p.idle_in_transaction_s.max(sample.idle_in_transaction_s);
    p.pg_busy = p.pg_busy.max(sample.pg_busy);
    let second = start.elapsed().as_secs() as usize;
    // One entry per elapsed second; a bounded series (one per second of the run).
    while w.per_second.len() <= second {
        w.per_second.push(sample);
    }
    w.per_second[second] = sample;
}

/// A shared watch.
pub type SharedWatch = Arc<Mutex<Watch>>;
