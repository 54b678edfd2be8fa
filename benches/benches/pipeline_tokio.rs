//! The whole pipeline on tally (`tally_pipeline::run::run`) side by side with
//! the same pipeline written on the tokio stack (tokio + deadpool-postgres +
//! hyper-util + an audit writer task), in one process, on one throwaway
//! cluster ([`Cluster::start`]) and one built-in enrichment server
//! ([`EnrichServer`], no faults).
//!
//! Three rounds, interleaved (tally replay, tokio replay, tally spike, tokio
//! spike, then the next round); `market_events` is emptied before every run
//! and each run's audit log goes to a directory of its own under a temporary
//! directory, removed afterwards. Per run:
//!
//! 1. a replay of the bundled data (`pipeline/data`, four passes, fresh
//!    event ids per pass) as fast as the pipeline takes it: throughput
//!    (processed events per second, from the first admission to the last
//!    outcome) and CPU per event (`utime + stime` of `/proc/self/stat`
//!    around the whole run, divided by the events processed; also without
//!    the enrichment server's own `enrich*` threads, which live in this
//!    process, read from `/proc/self/task/*/stat`);
//! 2. a spike (200 events/s for 5 s, 2,000 for 10 s, 200 for 5 s): p99
//!    latency from each event's scheduled time to its outcome, over the
//!    whole spike run (as `benches/pipeline.rs` and the report give it).
//!
//! A final table gives the medians and the ratios tally / tokio.
//!
//! # What is the same
//!
//! - Two worker threads; at most 256 events in flight, one task each; 8
//!   Postgres connections; a 5 s per-attempt HTTP timeout, 3 attempts per
//!   stage with exponential backoff from 5 ms, a 10 s deadline per event
//!   from its scheduled time.
//! - Per event: `GET /v1/symbols/{symbol}` (percent-encoded), JSON parsed
//!   with serde_json into `{company_name, sector, market_cap}` (the same
//!   [`Enrichment`] type), re-encoded as the `jsonb` column; then
//!   `BEGIN; INSERT .. ON CONFLICT (event_id) DO NOTHING; COMMIT` sent in
//!   one round trip; then the audit line through a bounded queue to one
//!   writer task, which batches up to 512 lines, writes them on the blocking
//!   pool with the same [`AuditWriter::write_batch_each`] and answers each
//!   line; failures go to the same dead-letter file.
//! - Input read with the same [`Reader`] in batches of 256 on the blocking
//!   pool; the same admission schedule (copied from `run.rs`), sleeping until
//!   each event's time and then waiting for a free slot.
//!
//! # What differs
//!
//! - tally's run does much more than the tokio one: it warms its pools and
//!   waits for a steady baseline, samples itself every 100 ms (runtime
//!   counters, `/proc/self`, `pg_stat_activity` over two extra Postgres
//!   sessions), keeps an in-flight map and per-file row counts, waits after
//!   the last outcome until everything has settled (pools back to warm size,
//!   tasks at baseline), counts the rows in the database and renders a
//!   report. All of that is inside its CPU figure; none of it is in the
//!   tokio run (which only warms one connection of each kind, then closes
//!   its pool and client). Its throughput clock, like tokio's, runs from the
//!   first admission to the last outcome only.
//! - Postgres: tally pipelines the three statements as one extended-protocol
//!   batch with one Sync; tokio-postgres sends three prepared statements
//!   (`prepare_cached`, per connection) polled together with `tokio::join!`,
//!   each with its own Sync: still one round trip, but three Syncs. deadpool
//!   recycles with `RecyclingMethod::Fast` (no query on checkout).
//! - HTTP: tally's pool holds at most 16 connections; hyper-util's legacy
//!   client keeps at most 16 idle per host but opens as many as there are
//!   requests in flight (up to 256). Retries: tally classifies errors with
//!   its own `is_transient`; here every hyper error, timeout and 5xx is
//!   retried, a 4xx or bad JSON is not. tally adds jitter to the backoff.
//! - Database retries: here on serialization failure, deadlock, admin
//!   shutdown or a closed connection (then the connection is dropped, not
//!   recycled); tally has its own, similar classification.
//! - Rejected rows: counted here but not dead-lettered (the bundled data has
//!   none that matter to the figures); tally dead-letters them.
//! - The enrichment server runs on tally (threads `enrich-N`) in this same
//!   process and answers both contenders; it is the same server for both.
//!   Only its `enrich*` threads are subtracted for the "without the server"
//!   CPU figure: any other thread it shares (a reactor thread, say) counts
//!   as client time, for both contenders alike.
//!
//! Needs the PostgreSQL server binaries (found as the harness finds them).
//! Run with:
//!
//! ```text
//! cargo bench -p tally-benches --bench pipeline_tokio
//! ```
//!
//! (about three minutes). Without `--bench` (`cargo test --benches`) it only
//! prints a line.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tally::protocols::http1::Url;
use tally::protocols::pg::Config as PgConfig;
use tally_harness::cluster::{Cluster, SUPERUSER};
use tally_harness::enrich::{EnrichConfig, EnrichServer};
use tally_pipeline::audit::{AuditLine, AuditWriter, DeadLetter, DeadLetters};
use tally_pipeline::enrich::Enrichment;
use tally_pipeline::event::{Event, Timestamp};
use tally_pipeline::run::{self, Services, Settings, Spike};
use tally_pipeline::source::{Item, Reader, ReaderOptions};
use tally_pipeline::store::CREATE_TABLE;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::NoTls;

/// Rounds of (replay, spike) for each contender.
const ROUNDS: usize = 3;
/// Passes over the bundled data in each replay.
const LOOPS: u32 = 4;
/// Worker threads of both runtimes.
const WORKERS: usize = 2;
/// Events in flight at most.
const MAX_IN_FLIGHT: usize = 256;
/// Postgres connections.
const PG_POOL: usize = 8;
/// HTTP connections kept idle per host (tokio) / at most (tally).
const HTTP_POOL: usize = 16;
/// Each HTTP attempt's limit.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per stage.
const ATTEMPTS: u32 = 3;
/// Each event's limit, from its scheduled time.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);
/// The audit queue's capacity and the writer's largest batch.
const AUDIT_QUEUE: usize = 512;
/// Rows read per blocking call.
const READ_BATCH: usize = 256;

const SPIKE: Spike = Spike {
    baseline_rate: 200.0,
    baseline_secs: 5.0,
    spike_rate: 2000.0,
    spike_secs: 10.0,
};

const INSERT: &str = "INSERT INTO market_events (event_id, symbol, price, volume, ts, enrichment) \
                      VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING";

// ---------------------------------------------------------------------------
// CPU time from /proc.

/// Clock ticks per second (`getconf CLK_TCK`, else 100).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// `(comm, utime + stime)` of one `stat` file.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    // After the comm: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU ticks of the whole process, and of the enrichment server's threads.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    process: u64,
    server: u64,
}

fn cpu_now() -> Cpu {
    let process = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0, |(_, ticks)| ticks);
    let mut server = 0;
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Some((comm, ticks)) = fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                if comm.starts_with("enrich") {
                    server += ticks;
                }
            }
        }
    }
    Cpu { process, server }
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
struct Measured {
    processed: u64,
    failed: u64,
    throughput: f64,
    p99_ms: f64,
    /// Process CPU per processed event, µs.
    cpu_us: f64,
    /// The same without the enrichment server's threads, µs.
    client_cpu_us: f64,
}

fn measure<F: FnOnce() -> (u64, u64, f64, f64)>(ticks_per_s: f64, f: F) -> Measured {
    let before = cpu_now();
    let (processed, failed, throughput, p99_ms) = f();
    let after = cpu_now();
    let per_event = |ticks: u64| ticks as f64 / ticks_per_s * 1e6 / processed.max(1) as f64;
    let process = after.process.saturating_sub(before.process);
    let server = after.server.saturating_sub(before.server);
    Measured {
        processed,
        failed,
        throughput,
        p99_ms,
        cpu_us: per_event(process),
        client_cpu_us: per_event(process.saturating_sub(server)),
    }
}

// ---------------------------------------------------------------------------
// tally.

fn run_tally(
    cluster: &Cluster,
    services: &Services,
    audit_dir: &Path,
    spike: Option<Spike>,
    ticks: f64,
) -> Measured {
    truncate(cluster);
    let settings = Settings {
        inputs: tally_pipeline::run::bundled(),
        loops: LOOPS,
        spike,
        audit_dir: audit_dir.to_owned(),
        max_in_flight: MAX_IN_FLIGHT,
        pg_pool_size: PG_POOL,
        http_pool_size: HTTP_POOL,
        http_timeout: HTTP_TIMEOUT,
        retries: ATTEMPTS,
        event_deadline: EVENT_DEADLINE,
        ..Settings::default()
    };
    let measured = measure(ticks, || {
        let rt = tally::Runtime::builder()
            .name("bench-pipeline")
            .workers(WORKERS)
            .build()
            .expect("tally runtime");
        let result = rt.block_on(run::run(settings, services.clone()));
        let shutdown = rt.shutdown(Duration::from_secs(2));
        if !shutdown.is_clean() {
            eprintln!("tally: the runtime left tasks behind:\n{shutdown}");
        }
        let outcome = result.unwrap_or_else(|e| panic!("tally: {e}"));
        if let Some(e) = &outcome.input_error {
            eprintln!("tally: the input stopped early: {e}");
        }
        let r = outcome.report;
        (r.processed, r.failed, r.throughput_eps, r.latency_ms.p99)
    });
    let _ = fs::remove_dir_all(audit_dir);
    measured
}

// ---------------------------------------------------------------------------
// tokio.

/// `jsonb` from JSON text (binary format: version 1, then the text).
#[derive(Debug)]
struct JsonbText<'a>(&'a str);

impl ToSql for JsonbText<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_u8(1);
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// Percent-encodes a path segment (all but RFC 3986's unreserved bytes).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

enum Write {
    Audit(AuditLine, oneshot::Sender<bool>),
    Dead(DeadLetter),
}

struct Tk {
    pg: Pool,
    http: HttpClient,
    base: String,
    audit_tx: mpsc::Sender<Write>,
    processed: AtomicU64,
    failed: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Attempt<T> {
    Done(T),
    Permanent(String),
    Transient(String),
}

impl Tk {
    async fn get_once(&self, uri: &str) -> Attempt<Enrichment> {
        let request = match hyper::Request::get(uri)
            .header("Accept", "application/json")
            .body(Empty::<Bytes>::new())
        {
            Ok(r) => r,
            Err(e) => return Attempt::Permanent(e.to_string()),
        };
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(HTTP_TIMEOUT, exchange).await {
            Err(_) => Attempt::Transient("timed out".into()),
            Ok(Err(e)) => Attempt::Transient(e),
            Ok(Ok((200, body))) => match serde_json::from_slice::<Enrichment>(&body) {
                Ok(e) => Attempt::Done(e),
                Err(e) => Attempt::Permanent(format!("the body is not the expected JSON: {e}")),
            },
            Ok(Ok((status @ 400..=499, _))) => {
                Attempt::Permanent(format!("the service answered {status}"))
            }
            Ok(Ok((status, _))) => Attempt::Transient(format!("the service answered {status}")),
        }
    }

    async fn enrich(&self, symbol: &str, deadline: Instant) -> Result<Enrichment, String> {
        let uri = format!("{}/v1/symbols/{}", self.base, encode_segment(symbol));
        retry(deadline, || self.get_once(&uri)).await
    }

    async fn store_once(&self, event: &Event, json: &str) -> Attempt<()> {
        let client = match self.pg.get().await {
            Ok(c) => c,
            Err(e) => return Attempt::Transient(format!("no database connection: {e}")),
        };
        let statements = tokio::try_join!(
            client.prepare_cached("BEGIN"),
            client.prepare_cached(INSERT),
            client.prepare_cached("COMMIT"),
        );
        let (begin, insert, commit) = match statements {
            Ok(s) => s,
            Err(e) => return classify(e, client),
        };
        let ts = event.ts.to_system_time();
        let jsonb = JsonbText(json);
        let params: [&(dyn ToSql + Sync); 6] = [
            &event.event_id,
            &event.symbol,
            &event.price,
            &event.volume,
            &ts,
            &jsonb,
        ];
        // Polled together: the three go out in one write, one round trip.
        let (b, i, c) = tokio::join!(
            client.execute(&begin, &[]),
            client.execute(&insert, &params),
            client.execute(&commit, &[]),
        );
        match b.and(i).and(c) {
            Ok(_) => Attempt::Done(()),
            Err(e) => classify(e, client),
        }
    }

    async fn store(&self, event: &Event, json: &str, deadline: Instant) -> Result<(), String> {
        retry(deadline, || self.store_once(event, json)).await
    }
}

/// Transient database errors are retried; a broken connection is dropped.
fn classify(e: tokio_postgres::Error, client: deadpool_postgres::Object) -> Attempt<()> {
    let transient = matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::ADMIN_SHUTDOWN
    );
    if e.is_closed() {
        let _ = deadpool_postgres::Object::take(client);
        return Attempt::Transient(format!("the database connection failed: {e}"));
    }
    if transient {
        Attempt::Transient(format!("the database refused the event: {e}"))
    } else {
        Attempt::Permanent(format!("the database refused the event: {e}"))
    }
}

/// Up to [`ATTEMPTS`] attempts with backoff from 5 ms, never past `deadline`.
async fn retry<T, F, Fut>(deadline: Instant, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    let mut pause = Duration::from_millis(5);
    let mut last = String::from("no attempt was made before the deadline");
    for n in 1..=ATTEMPTS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, attempt()).await {
            Ok(Attempt::Done(v)) => return Ok(v),
            Ok(Attempt::Permanent(e)) => return Err(e),
            Ok(Attempt::Transient(e)) => last = e,
            Err(_) => last = "the event's deadline passed".into(),
        }
        if n < ATTEMPTS {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
            pause = pause.saturating_mul(2);
        }
    }
    Err(last)
}

async fn handle(tk: &Tk, event: &Event, deadline: Instant) -> Result<(), String> {
    let enrichment = tk.enrich(&event.symbol, deadline).await?;
    let json = serde_json::to_string(&serde_json::json!({
        "company_name": enrichment.company_name,
        "sector": enrichment.sector,
        "market_cap": enrichment.market_cap,
    }))
    .map_err(|e| format!("cannot encode the enrichment: {e}"))?;
    tk.store(event, &json, deadline).await?;
    let (reply_tx, reply_rx) = oneshot::channel();
    let line = AuditLine::new(event, enrichment.company_name);
    tk.audit_tx
        .send(Write::Audit(line, reply_tx))
        .await
        .map_err(|_| "the audit writer is gone; the row was committed".to_owned())?;
    match reply_rx.await {
        Ok(true) => Ok(()),
        _ => Err("the audit line could not be written; the row was committed".into()),
    }
}

async fn process(tk: Arc<Tk>, event: Event, scheduled: Instant) {
    let result = handle(&tk, &event, scheduled + EVENT_DEADLINE).await;
    let micros = scheduled.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
    lock(&tk.latency).saturating_record(micros.max(1));
    match result {
        Ok(()) => {
            tk.processed.fetch_add(1, Ordering::AcqRel);
        }
        Err(reason) => {
            tk.failed.fetch_add(1, Ordering::AcqRel);
            let letter = DeadLetter::failed(&event, reason, Timestamp::now());
            let _ = tk.audit_tx.send(Write::Dead(letter)).await;
        }
    }
}

/// Batches audit lines (up to 512) and dead letters onto the blocking pool.
async fn writer(mut rx: mpsc::Receiver<Write>, audit: AuditWriter, dead: DeadLetters) {
    let audit = Arc::new(audit);
    let dead = Arc::new(dead);
    let mut batch = Vec::with_capacity(AUDIT_QUEUE);
    while rx.recv_many(&mut batch, AUDIT_QUEUE).await > 0 {
        let mut lines = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut letters = Vec::new();
        for item in batch.drain(..) {
            match item {
                Write::Audit(line, reply) => {
                    lines.push(line);
                    replies.push(reply);
                }
                Write::Dead(letter) => letters.push(letter),
            }
        }
        if !lines.is_empty() {
            let writer = audit.clone();
            let count = lines.len();
            let failed = tokio::task::spawn_blocking(move || {
                let result = writer.write_batch_each(&lines);
                result.failed.iter().map(|f| f.index).collect::<Vec<_>>()
            })
            .await
            .unwrap_or_else(|_| (0..count).collect());
            for (i, reply) in replies.into_iter().enumerate() {
                let _ = reply.send(!failed.contains(&i));
            }
        }
        if !letters.is_empty() {
            let dead = dead.clone();
            let _ = tokio::task::spawn_blocking(move || dead.append(&letters)).await;
        }
    }
}

/// The schedule of admissions (as `run.rs` has it).
struct Schedule {
    start: Instant,
    spike: Option<Spike>,
    next: Duration,
}

impl Schedule {
    fn rate_at(&self, t: f64) -> Option<f64> {
        match self.spike {
            Some(s) if t < s.baseline_secs => Some(s.baseline_rate),
            Some(s) if t < s.baseline_secs + s.spike_secs => Some(s.spike_rate),
            Some(s) => Some(s.baseline_rate),
            None => None,
        }
    }

    fn end(&self) -> Option<f64> {
        self.spike.map(|s| 2.0 * s.baseline_secs + s.spike_secs)
    }

    fn next(&mut self) -> Option<Option<Instant>> {
        let t = self.next.as_secs_f64();
        if self.end().is_some_and(|end| t >= end) {
            return None;
        }
        match self.rate_at(t) {
            Some(rate) if rate > 0.0 => {
                let at = self.start + self.next;
                self.next += Duration::from_secs_f64(1.0 / rate);
                Some(Some(at))
            }
            _ => Some(None),
        }
    }
}

/// One tokio run: `(processed, failed, throughput, p99 ms)`.
async fn tokio_pipeline(
    pg_url: String,
    base: String,
    audit_dir: PathBuf,
    spike: Option<Spike>,
) -> (u64, u64, f64, f64) {
    let mut pg_config = tokio_postgres::Config::from_str(&pg_url).expect("the cluster's URL");
    pg_config.application_name("tokio-pipeline");
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pg = Pool::builder(manager)
        .max_size(PG_POOL)
        .build()
        .expect("deadpool-postgres pool");
    let http: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(HTTP_POOL)
        .build_http();
    let (audit_tx, audit_rx) = mpsc::channel(AUDIT_QUEUE);
    let writer = tokio::spawn(writer(
        audit_rx,
        AuditWriter::new(&audit_dir),
        DeadLetters::new(&audit_dir),
    ));
    let tk = Arc::new(Tk {
        pg,
        http,
        base,
        audit_tx,
        processed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latency: Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
        ),
    });
    // Warm: the service answers, the database takes a session.
    tk.enrich("MSFT", Instant::now() + EVENT_DEADLINE)
        .await
        .expect("the enrichment service answers");
    drop(tk.pg.get().await.expect("a database connection"));

    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = Instant::now();
    let mut schedule = Schedule {
        start,
        spike,
        next: Duration::ZERO,
    };
    let mut rejected = 0u64;
    let passes = if spike.is_some() { u32::MAX } else { LOOPS };
    'passes: for pass in 1..=passes {
        for input in tally_pipeline::run::bundled() {
            let options = ReaderOptions {
                symbol: input.symbol.clone(),
                pass,
            };
            let path = input.path.clone();
            let mut reader = tokio::task::spawn_blocking(move || Reader::open(&path, &options))
                .await
                .expect("the reader task")
                .unwrap_or_else(|e| panic!("cannot read the input: {e}"));
            loop {
                let (back, batch) = tokio::task::spawn_blocking(move || {
                    let batch = reader.next_batch(READ_BATCH);
                    (reader, batch)
                })
                .await
                .expect("the reader task");
                reader = back;
                let items = match batch {
                    Ok(items) if items.is_empty() => break,
                    Ok(items) => items,
                    Err(e) => {
                        eprintln!("tokio: the input stopped early: {e}");
                        break 'passes;
                    }
                };
                for item in items {
                    let event = match item {
                        Item::Event(event) => event,
                        Item::Rejected(_) => {
                            rejected += 1;
                            continue;
                        }
                    };
                    let Some(at) = schedule.next() else {
                        break 'passes;
                    };
                    if let Some(at) = at {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    }
                    let scheduled = at.unwrap_or_else(Instant::now);
                    let permit = slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    let tk = tk.clone();
                    tokio::spawn(async move {
                        process(tk, event, scheduled).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    // Every event to its outcome: all the slots back.
    let all = slots
        .acquire_many(MAX_IN_FLIGHT as u32)
        .await
        .expect("the semaphore is never closed");
    let duration = start.elapsed();
    drop(all);
    let _ = rejected;

    let processed = tk.processed.load(Ordering::Acquire);
    let failed = tk.failed.load(Ordering::Acquire);
    let p99_ms = lock(&tk.latency).value_at_quantile(0.99) as f64 / 1000.0;
    let Ok(tk) = Arc::try_unwrap(tk) else {
        panic!("an event task still holds the pipeline");
    };
    let Tk {
        pg, http, audit_tx, ..
    } = tk;
    drop(audit_tx);
    let _ = writer.await;
    pg.close();
    drop(http);
    (
        processed,
        failed,
        processed as f64 / duration.as_secs_f64().max(1e-9),
        p99_ms,
    )
}

fn run_tokio(
    cluster: &Cluster,
    pg_url: &str,
    base: &str,
    audit_dir: &Path,
    spike: Option<Spike>,
    ticks: f64,
) -> Measured {
    truncate(cluster);
    let measured = measure(ticks, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("bench-tokio")
            .enable_all()
            .build()
            .expect("tokio runtime");
        let result = rt.block_on(tokio_pipeline(
            pg_url.to_owned(),
            base.to_owned(),
            audit_dir.to_owned(),
            spike,
        ));
        rt.shutdown_timeout(Duration::from_secs(2));
        result
    });
    let _ = fs::remove_dir_all(audit_dir);
    measured
}

// ---------------------------------------------------------------------------

fn truncate(cluster: &Cluster) {
    cluster
        .psql_query("TRUNCATE market_events")
        .expect("TRUNCATE market_events");
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn line(label: &str, m: &Measured, spike: bool) {
    if spike {
        println!(
            "  {label:<5} spike : {:>6} processed, {} failed, p99 {:>8.3} ms",
            m.processed, m.failed, m.p99_ms
        );
    } else {
        println!(
            "  {label:<5} replay: {:>6} processed, {} failed, {:>8.1} ev/s, CPU {:>6.1} us/event ({:>6.1} without the server)",
            m.processed, m.failed, m.throughput, m.cpu_us, m.client_cpu_us
        );
    }
}

fn main() {
    // As criterion decides for the other benches: without `--bench` (e.g.
    // `cargo test --benches`) there is nothing to measure.
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    if !benching {
        println!("pipeline_tokio: measured only under `cargo bench` (skipped)");
        return;
    }

    let ticks = clock_ticks();
    let cluster = Cluster::start().expect("a throwaway cluster");
    cluster
        .psql_query(CREATE_TABLE)
        .expect("CREATE TABLE market_events");
    let server = EnrichServer::start(EnrichConfig::new()).expect("the enrichment server");
    let pg_url = cluster.url(SUPERUSER);
    let pg: PgConfig = pg_url.parse().expect("the cluster's URL");
    let enrich = Url::parse(&server.url()).expect("the server's URL");
    let services = Services { pg, enrich };
    let base = server.url();
    let temp =
        std::env::temp_dir().join(format!("tally-bench-pipeline-tokio-{}", std::process::id()));

    let mut tally_replays = Vec::new();
    let mut tokio_replays = Vec::new();
    let mut tally_spikes = Vec::new();
    let mut tokio_spikes = Vec::new();
    for round in 1..=ROUNDS {
        println!("round {round}:");
        let dir = |name: &str| temp.join(format!("{name}-{round}"));
        let m = run_tally(&cluster, &services, &dir("tally-replay"), None, ticks);
        line("tally", &m, false);
        tally_replays.push(m);
        let m = run_tokio(&cluster, &pg_url, &base, &dir("tokio-replay"), None, ticks);
        line("tokio", &m, false);
        tokio_replays.push(m);
        let m = run_tally(&cluster, &services, &dir("tally-spike"), Some(SPIKE), ticks);
        line("tally", &m, true);
        tally_spikes.push(m);
        let m = run_tokio(
            &cluster,
            &pg_url,
            &base,
            &dir("tokio-spike"),
            Some(SPIKE),
            ticks,
        );
        line("tokio", &m, true);
        tokio_spikes.push(m);
    }
    let _ = fs::remove_dir_all(&temp);

    let med = |runs: &[Measured], f: fn(&Measured) -> f64| {
        median(&runs.iter().map(f).collect::<Vec<_>>())
    };
    let rows: [(&str, f64, f64); 4] = [
        (
            "throughput (events/s)",
            med(&tally_replays, |m| m.throughput),
            med(&tokio_replays, |m| m.throughput),
        ),
        (
            "spike p99 (ms)",
            med(&tally_spikes, |m| m.p99_ms),
            med(&tokio_spikes, |m| m.p99_ms),
        ),
        (
            "CPU per event (us)",
            med(&tally_replays, |m| m.cpu_us),
            med(&tokio_replays, |m| m.cpu_us),
        ),
        (
            "  without the server (us)",
            med(&tally_replays, |m| m.client_cpu_us),
            med(&tokio_replays, |m| m.client_cpu_us),
        ),
    ];
    println!("\nmedians of {ROUNDS} interleaved rounds:");
    println!(
        "{:<27} {:>10} {:>10} {:>11}",
        "figure", "tally", "tokio", "tally/tokio"
    );
    println!("{}", "-".repeat(61));
    for (name, tally, tokio) in rows {
        println!(
            "{name:<27} {tally:>10.2} {tokio:>10.2} {:>11.3}",
            tally / tokio
        );
    }

    server.shutdown(Duration::from_secs(1));
    cluster.stop().expect("the cluster stops");
}
