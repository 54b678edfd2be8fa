//! The runner: reads the input, admits events at their schedule into a
//! bounded nursery, enriches, stores and audits each one, watches itself,
//! and builds the report once everything has settled.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use tally::channel::{self, Receiver, Sender};
use tally::pool::http::{HttpConfig, HttpPool};
use tally::pool::pg::{PgManager, PgPool};
use tally::pool::{Config as PoolConfig, Pool};
use tally::protocols::http1::{Options, Request, Url};
use tally::protocols::pg::{Config as PgConfig, Connection};
use tally::{Nursery, Policy};

use crate::audit::{AuditLine, AuditWriter, DeadLetter, DeadLetters};
use crate::enrich::{Enricher, Enrichment};
use crate::event::{Event, Timestamp};
use crate::exit::{ExitStatus, RunEnd};
use crate::monitor::{self, PgWatch, Sample, Watch};
use crate::report::{Gauge, LatencyRecorder, PgFigures, PoolFigures, Report, SeriesPoint, Tasks};
use crate::schedule::Schedule;
use crate::source::{Item, Reader, ReaderOptions, SourceError};
use crate::store::{self, CREATE_TABLE};

/// The `application_name` of the pipeline's Postgres sessions.
pub const APPLICATION_NAME: &str = "tally-pipeline";

/// One input file.
#[derive(Clone, Debug)]
pub struct Input {
    /// Its path.
    pub path: PathBuf,
    /// The symbol for files whose rows carry none (default: from the file name).
    pub symbol: Option<String>,
}

/// The bundled real data (pipeline/data): the S&P 500 daily closes, as
/// `^GSPC`, and five stocks' monthly prices.
pub fn bundled() -> Vec<Input> {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    vec![
        Input {
            path: data.join("sp500-daily-1999-2018.csv.gz"),
            symbol: Some("^GSPC".into()),
        },
        Input {
            path: data.join("stocks-monthly-2000-2010.csv"),
            symbol: None,
        },
    ]
}

/// The spike's shape: baseline, spike, baseline again.
#[derive(Clone, Copy, Debug)]
pub struct Spike {
    /// Events per second before and after the spike.
    pub baseline_rate: f64,
    /// Seconds of baseline, before and after.
    pub baseline_secs: f64,
    /// Events per second during the spike.
    pub spike_rate: f64,
    /// Seconds of spike.
    pub spike_secs: f64,
}

/// What the run does.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The input files.
    pub inputs: Vec<Input>,
    /// Passes over the input (replay).
    pub loops: u32,
    /// Events per second to admit (replay); `None`: as fast as the pipeline takes them.
    pub rate: Option<f64>,
    /// A spike instead of a replay: the input is looped as needed.
    pub spike: Option<Spike>,
    /// The most events in flight.
    pub max_in_flight: usize,
    /// Postgres connections.
    pub pg_pool_size: usize,
    /// HTTP connections.
    pub http_pool_size: usize,
    /// Each enrichment attempt's limit.
    pub http_timeout: Duration,
    /// Attempts per stage.
    pub retries: u32,
    /// Each event's limit, from its scheduled time.
    pub event_deadline: Duration,
    /// Where the audit log and the dead letters go.
    pub audit_dir: PathBuf,
    /// A symbol whose events panic.
    pub poison: Option<String>,
    /// The longest the run waits to settle after the last outcome.
    pub settle_limit: Duration,
    /// Show a progress line.
    pub progress: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            inputs: Vec::new(),
            loops: 1,
            rate: None,
            spike: None,
            max_in_flight: 256,
            pg_pool_size: 8,
            http_pool_size: 16,
            http_timeout: Duration::from_secs(5),
            retries: 3,
            event_deadline: Duration::from_secs(10),
            audit_dir: PathBuf::from("audit"),
            poison: None,
            settle_limit: Duration::from_secs(10),
            progress: false,
        }
    }
}

/// The services the pipeline talks to.
#[derive(Clone, Debug)]
pub struct Services {
    /// The database.
    pub pg: PgConfig,
    /// The enrichment service's base URL.
    pub enrich: Url,
}

/// Why the run could not start or finish.
#[derive(Debug)]
pub enum RunError {
    /// An input file cannot be read, or has no known header.
    Input(SourceError),
    /// The database refuses connections or the table cannot be made.
    Database(String),
    /// The enrichment service does not answer.
    Enrichment(String),
    /// The runtime could not take the pipeline's tasks.
    Runtime(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Input(e) => write!(f, "cannot read the input: {e}"),
            RunError::Database(m) => write!(f, "cannot use the database: {m}"),
            RunError::Enrichment(m) => write!(f, "the enrichment service does not answer: {m}"),
            RunError::Runtime(m) => write!(f, "the runtime refused the pipeline's tasks: {m}"),
        }
    }
}

impl std::error::Error for RunError {}

/// A finished run.
#[derive(Debug)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// How the process should exit.
    pub status: ExitStatus,
    /// The longest an admission waited past its scheduled time (with a target rate).
    pub source_lag: Duration,
    /// Why the input stopped early, if it did.
    pub input_error: Option<String>,
}

/// What an event task and the writer share.
struct Shared {
    settings: Settings,
    pg: PgPool,
    enricher: Enricher,
    audit_tx: Sender<Write>,
    admitted: AtomicU64,
    processed: AtomicU64,
    failed: AtomicU64,
    interrupted: AtomicU64,
    rejected: AtomicU64,
    audit_lines: AtomicU64,
    dead_letters: AtomicU64,
    latency: Mutex<LatencyRecorder>,
    /// Events admitted and without an outcome: bounded by the events nursery's cap.
    in_flight: Mutex<HashMap<String, Event>>,
    /// The highest row admitted per (file stem, pass), for counting rows in the database.
    admitted_rows: Mutex<HashMap<(String, u32), u64>>,
    stop: AtomicBool,
    ctrl_c: AtomicBool,
    /// One point per second of the run.
    series: Mutex<Vec<SeriesPoint>>,
}

/// What goes to the writer task.
enum Write {
    Audit(AuditLine, Sender<bool>),
    Dead(DeadLetter),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    async fn dead_letter(&self, letter: DeadLetter) {
        let _ = self.audit_tx.send(Write::Dead(letter)).await;
    }

    fn finish(&self, event: &Event) {
        lock(&self.in_flight).remove(&event.event_id);
    }

    async fn failed(&self, event: &Event, reason: String) {
        self.failed.fetch_add(1, Ordering::AcqRel);
        self.dead_letter(DeadLetter::failed(event, reason, Timestamp::now()))
            .await;
        self.finish(event);
    }

    async fn interrupted(&self, event: &Event) {
        self.interrupted.fetch_add(1, Ordering::AcqRel);
        self.dead_letter(DeadLetter::interrupted(
            event,
            "cut by a shutdown before its outcome was known",
            Timestamp::now(),
        ))
        .await;
        self.finish(event);
    }
}

/// Processes one event: enrich, store, audit. Every path ends in one outcome.
async fn process(shared: Arc<Shared>, event: Event, scheduled: Instant) {
    let deadline = scheduled + shared.settings.event_deadline;
    let work = AssertUnwindSafe(handle(&shared, &event, deadline))
        .catch_unwind()
        .await;
    shared.latency_record(scheduled);
    if let Err(panic) = work {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        shared
            .failed(&event, format!("the event task panicked: {message}"))
            .await;
        // The runtime counts the panic too.
        std::panic::resume_unwind(panic);
    }
}

impl Shared {
    fn latency_record(&self, scheduled: Instant) {
        lock(&self.latency).record(scheduled.elapsed());
    }

    fn series_push(&self, point: SeriesPoint) {
        lock(&self.series).push(point);
    }

    fn series_take(&self) -> Vec<SeriesPoint> {
        std::mem::take(&mut *lock(&self.series))
    }
}

async fn handle(shared: &Shared, event: &Event, deadline: Instant) {
    if shared.settings.poison.as_deref() == Some(event.symbol.as_str()) {
        panic!("poisoned symbol {}", event.symbol);
    }
    if tally::is_cancelled() {
        return shared.interrupted(event).await;
    }
    let enrichment: Enrichment = match shared.enricher.enrich(&event.symbol, deadline).await {
        Ok(e) => e,
        Err(e) => return shared.failed(event, e.to_string()).await,
    };
    if tally::is_cancelled() {
        return shared.interrupted(event).await;
    }
    let json = match serde_json::to_string(&serde_json::json!({
        "company_name": enrichment.company_name,
        "sector": enrichment.sector,
        "market_cap": enrichment.market_cap,
    })) {
        Ok(json) => json,
        Err(e) => {
            return shared
                .failed(event, format!("cannot encode the enrichment: {e}"))
                .await
        }
    };
    let row = store::Row {
        event_id: &event.event_id,
        symbol: &event.symbol,
        price: event.price,
        volume: event.volume,
        ts: event.ts.to_system_time(),
        enrichment: &json,
    };
    if let Err(e) = store::store(&shared.pg, row, shared.settings.retries, deadline).await {
        return shared.failed(event, e.to_string()).await;
    }
    let (reply_tx, reply_rx) = channel::bounded(1);
    let line = AuditLine::new(event, enrichment.company_name);
    if shared
        .audit_tx
        .send(Write::Audit(line, reply_tx))
        .await
        .is_err()
    {
        return shared
            .failed(
                event,
                "the audit writer is gone; the row was committed".into(),
            )
            .await;
    }
    match reply_rx.recv().await {
        Ok(true) => {
            shared.processed.fetch_add(1, Ordering::AcqRel);
            shared.finish(event);
        }
        _ => {
            shared
                .failed(
                    event,
                    "the audit line could not be written; the row was committed".into(),
                )
                .await
        }
    }
}

/// Writes audit lines and dead letters in batches, off the workers.
async fn writer(shared: Arc<Shared>, rx: Receiver<Write>, audit: AuditWriter, dead: DeadLetters) {
    let audit = Arc::new(audit);
    let dead = Arc::new(dead);
    while let Ok(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let mut lines = Vec::new();
        let mut replies = Vec::new();
        let mut letters = Vec::new();
        for item in batch {
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
            let written = tally::unblock(move || {
                let result = writer.write_batch_each(&lines);
                let failed: Vec<usize> = result.failed.iter().map(|f| f.index).collect();
                (result.written, failed)
            })
            .await;
            let (written, failed) = written.unwrap_or((0, (0..replies.len()).collect()));
            shared
                .audit_lines
                .fetch_add(written as u64, Ordering::AcqRel);
            for (i, reply) in replies.into_iter().enumerate() {
                let _ = reply.try_send(!failed.contains(&i));
            }
        }
        if !letters.is_empty() {
            let dead = dead.clone();
            let count = letters.len() as u64;
            let appended = tally::unblock(move || dead.append(&letters)).await;
            if matches!(appended, Ok(Ok(_))) {
                shared.dead_letters.fetch_add(count, Ordering::AcqRel);
            }
        }
    }
}

async fn open_reader(input: &Input, pass: u32) -> Result<Reader, RunError> {
    let path = input.path.clone();
    let options = ReaderOptions {
        symbol: input.symbol.clone(),
        pass,
    };
    tally::unblock(move || Reader::open(&path, &options))
        .await
        .map_err(|e| RunError::Runtime(e.to_string()))?
        .map_err(RunError::Input)
}

fn take_watch(watch: &Mutex<Watch>) -> (Sample, Sample) {
    let w = lock(watch);
    (w.last, w.peak)
}

/// Runs the pipeline and builds its report.
///
/// # Errors
///
/// When an input cannot be read before anything is sent, the database
/// refuses connections, or the enrichment service does not answer.
///
/// # Cancel safety
///
/// Not meant to be dropped: Ctrl-C is handled inside, with a bounded grace.
pub async fn run(settings: Settings, services: Services) -> Result<Outcome, RunError> {
    // Every input must open before anything is sent.
    for input in &settings.inputs {
        open_reader(input, 1).await?;
    }
    let services_nursery = Nursery::builder().name("services").build();
    let pg_config = services
        .pg
        .clone()
        .query_timeout(Some(settings.event_deadline));
    let pg = Pool::new(
        PgManager::new(pg_config.clone()).application_name(APPLICATION_NAME),
        PoolConfig::named("pg")
            .max_size(settings.pg_pool_size)
            .min_idle(2.min(settings.pg_pool_size))
            .idle_timeout(Some(Duration::from_millis(500)))
            .housekeeping_interval(Duration::from_millis(50)),
        &services_nursery,
    )
    .map_err(|e| RunError::Runtime(e.to_string()))?;
    {
        let mut conn = Connection::connect(
            &pg_config
                .clone()
                .application_name(format!("{APPLICATION_NAME}-setup")),
        )
        .await
        .map_err(|e| RunError::Database(e.to_string()))?;
        conn.batch_execute(CREATE_TABLE)
            .await
            .map_err(|e| RunError::Database(e.to_string()))?;
        let _ = conn.close().await;
    }
    let http = HttpPool::new(
        HttpConfig {
            per_origin: PoolConfig::named("http")
                .max_size(settings.http_pool_size)
                .min_idle(2.min(settings.http_pool_size))
                .idle_timeout(Some(Duration::from_millis(500)))
                .housekeeping_interval(Duration::from_millis(50)),
            max_total: settings.http_pool_size,
            options: Options {
                head_timeout: settings.http_timeout,
                body_idle_timeout: settings.http_timeout,
                ..Options::default()
            },
            ..HttpConfig::default()
        },
        &services_nursery,
    );
    // Warm both pools: the enrichment service must answer, the database take sessions.
    let probe = services
        .enrich
        .join_segment("v1")
        .join_segment("symbols")
        .join_segment("MSFT");
    http.request_within(&probe, &Request::get(probe.target()), settings.http_timeout)
        .await
        .map_err(|e| RunError::Enrichment(e.to_string()))?;
    let lease = pg
        .acquire()
        .await
        .map_err(|e| RunError::Database(e.to_string()))?;
    lease.release().await;
    let enricher = Enricher::new(
        http.clone(),
        services.enrich.clone(),
        settings.http_timeout,
        settings.retries,
    );

    let (audit_tx, audit_rx) = channel::bounded(settings.max_in_flight.max(16) * 2);
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        pg: pg.clone(),
        enricher,
        audit_tx,
        admitted: AtomicU64::new(0),
        processed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        interrupted: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        audit_lines: AtomicU64::new(0),
        dead_letters: AtomicU64::new(0),
        latency: Mutex::new(LatencyRecorder::new()),
        in_flight: Mutex::new(HashMap::new()),
        admitted_rows: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
        ctrl_c: AtomicBool::new(false),
        series: Mutex::new(Vec::new()),
    });
    let writers = Nursery::builder().name("audit").build();
    let _writer = writers
        .spawn_named(
            "audit-writer",
            writer(
                shared.clone(),
                audit_rx,
                AuditWriter::new(&settings.audit_dir),
                DeadLetters::new(&settings.audit_dir),
            ),
        )
        .await
        .map_err(|e| RunError::Runtime(e.to_string()))?;

    let events = Nursery::builder()
        .name("events")
        .cap(settings.max_in_flight.max(1))
        .policy(Policy::Collect)
        .build();
    let watch: monitor::SharedWatch = Arc::new(Mutex::new(Watch::default()));
    let mut pg_watch = PgWatch::open(&pg_config, APPLICATION_NAME)
        .await
        .map_err(|e| RunError::Database(e.to_string()))?;
    let mut settle_watch = PgWatch::open(&pg_config, APPLICATION_NAME)
        .await
        .map_err(|e| RunError::Database(e.to_string()))?;
    let monitors = Nursery::builder().name("monitor").build();
    let run_start = Instant::now();
    {
        let ctrl_shared = shared.clone();
        let watch = watch.clone();
        let pg = pg.clone();
        let http = http.clone();
        let shared = shared.clone();
        let events_probe = events.spawner();
        let _monitor = monitors
            .spawn_named("monitor", async move {
                let mut tick = tally::interval(monitor::SAMPLE_EVERY);
                let mut last_second = 0u64;
                let mut last_processed = 0u64;
                let mut series_tick = 0u32;
                let mut previous_processed = 0u64;
                // Seconds since the progress line was last printed.
                let mut since_print = 1u64;
                let mut second_peak = Sample::default();
                let bar = (shared.settings.progress && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
                    let bar = indicatif::ProgressBar::new_spinner();
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                loop {
                    let stop = futures_lite::future::or(async { tick.tick().await; false }, async {
                        tally::cancelled().await;
                        true
                    })
                    .await;
                    if stop {
                        break;
                    }
                    let mut sample = monitor::local_sample(events_probe.stats().map_or(0, |s| s.live), &pg, &http);
                    if let Ok((iit, busy)) = pg_watch.read().await {
                        sample.idle_in_transaction_s = iit;
                        sample.pg_busy = busy;
                    }
                    monitor::record(&watch, sample, run_start);
                    // The series shows each second's highest, not one instant of it.
                    second_peak.tasks = second_peak.tasks.max(sample.tasks);
                    second_peak.in_flight = second_peak.in_flight.max(sample.in_flight);
                    second_peak.pg_in_use = second_peak.pg_in_use.max(sample.pg_in_use);
                    second_peak.http_in_use = second_peak.http_in_use.max(sample.http_in_use);
                    series_tick += 1;
                    if series_tick % 10 == 0 {
                        last_second += 1;
                        let processed = shared.processed.load(Ordering::Acquire);
                        let p99 = lock(&shared.latency).take_window_p99_ms();
                        shared.series_push(SeriesPoint {
                            t: last_second as f64,
                            tasks: second_peak.tasks,
                            in_flight: second_peak.in_flight,
                            pg_in_use: second_peak.pg_in_use as u64,
                            http_in_use: second_peak.http_in_use as u64,
                            p99_ms: p99,
                            processed: processed - last_processed,
                        });
                        second_peak = Sample::default();
                        last_processed = processed;
                        if shared.settings.progress {
                            let line = format!(
                                "{:>5}s  admitted {:>7}  processed {:>7} ({:>6}/s)  failed {:>5}  in flight {:>4}  p99 {:>7.2} ms",
                                last_second,
                                shared.admitted.load(Ordering::Acquire),
                                processed,
                                (processed - previous_processed) / since_print.max(1),
                                shared.failed.load(Ordering::Acquire),
                                sample.in_flight,
                                p99
                            );
                            // On a terminal a live line every second; otherwise
                            // a plain line every five, with the rate over those five.
                            let printed = match &bar {
                                Some(bar) => {
                                    bar.set_message(line);
                                    true
                                }
                                None if last_second % 5 == 0 => {
                                    eprintln!("{line}");
                                    true
                                }
                                None => false,
                            };
                            if printed {
                                previous_processed = processed;
                                since_print = 0;
                            }
                        }
                        since_print += 1;
                    }
                }
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                pg_watch.close().await;
            })
            .await
            .map_err(|e| RunError::Runtime(e.to_string()))?;
        let shared = ctrl_shared;
        let _ctrl_c = monitors
            .spawn_named("ctrl-c", async move {
                // Installed for the whole run, so the descriptors it holds
                // are the same at the baseline and at the end.
                let Ok(mut ctrl_c) = tally::CtrlC::new() else {
                    return tally::cancelled().await;
                };
                let signal =
                    futures_lite::future::or(async { ctrl_c.recv().await.is_ok() }, async {
                        tally::cancelled().await;
                        false
                    })
                    .await;
                if signal {
                    eprintln!(
                        "tally-pipeline: interrupted: no more admissions; events in flight get {:.1} s to finish, then the report",
                        (shared.settings.http_timeout + Duration::from_secs(1)).as_secs_f64()
                    );
                    shared.ctrl_c.store(true, Ordering::Release);
                    shared.stop.store(true, Ordering::Release);
                    // Stay, like the other service tasks, until the run winds down.
                    tally::cancelled().await;
                }
            })
            .await
            .map_err(|e| RunError::Runtime(e.to_string()))?;
    }
    // The baseline: warm and idle (pools at their warm size), before the first event.
    let warm_pg = 2.min(settings.pg_pool_size);
    let warm_http = 2.min(settings.http_pool_size);
    let warming = Instant::now();
    while warming.elapsed() < Duration::from_secs(3) {
        let (p, h) = (pg.metrics(), http.metrics());
        if p.size == warm_pg
            && p.idle == warm_pg
            && h.total.size == warm_http
            && h.total.idle == warm_http
        {
            break;
        }
        tally::sleep(Duration::from_millis(10)).await;
    }
    // At rest means steady: the same descriptors and tasks for five looks in
    // a row, 20 ms apart (a socket of the built-in server, which lives in
    // this process, opens or closes a moment after its client's side).
    let mut baseline = monitor::local_sample(0, &pg, &http);
    let mut steady = 0;
    let resting = Instant::now();
    while steady < 5 && resting.elapsed() < Duration::from_secs(2) {
        tally::sleep(Duration::from_millis(20)).await;
        let look = monitor::local_sample(0, &pg, &http);
        if look.fds == baseline.fds && look.tasks == baseline.tasks {
            steady += 1;
        } else {
            steady = 0;
        }
        baseline = look;
    }

    // Admission.
    let start = Instant::now();
    let mut schedule = Schedule {
        start,
        rate: settings.rate,
        spike: settings.spike,
        next: Duration::ZERO,
    };
    let mut lag = Duration::ZERO;
    let mut input_error = None;
    let passes = if settings.spike.is_some() {
        u32::MAX
    } else {
        settings.loops.max(1)
    };
    'passes: for pass in 1..=passes {
        for input in &settings.inputs {
            let mut reader = match open_reader(input, pass).await {
                Ok(r) => r,
                Err(RunError::Input(e)) => {
                    input_error = Some(e);
                    break 'passes;
                }
                Err(e) => return Err(e),
            };
            let path = input.path.clone();
            loop {
                let (back, batch) = match tally::unblock(move || {
                    let batch = reader.next_batch(256);
                    (reader, batch)
                })
                .await
                {
                    Ok(pair) => pair,
                    Err(e) => return Err(RunError::Runtime(e.to_string())),
                };
                reader = back;
                let items = match batch {
                    Ok(items) if items.is_empty() => break,
                    Ok(items) => items,
                    Err(e) => {
                        // Corruption found later in a stream stops the reading here.
                        input_error = Some(e);
                        break 'passes;
                    }
                };
                for item in items {
                    match item {
                        Item::Rejected(rejected) => {
                            shared.rejected.fetch_add(1, Ordering::AcqRel);
                            shared
                                .dead_letter(DeadLetter::rejected(
                                    &path,
                                    &rejected,
                                    Timestamp::now(),
                                ))
                                .await;
                        }
                        Item::Event(event) => {
                            let Some(at) = schedule.next() else {
                                break 'passes;
                            };
                            if shared.stop.load(Ordering::Acquire) {
                                break 'passes;
                            }
                            if let Some(at) = at {
                                tally::sleep_until(at).await;
                            }
                            let scheduled = at.unwrap_or_else(Instant::now);
                            if let Some((stem, row)) = stem_and_row(&event.event_id) {
                                let mut rows = lock(&shared.admitted_rows);
                                let max = rows.entry((stem, pass)).or_insert(0);
                                *max = (*max).max(row);
                            }
                            lock(&shared.in_flight).insert(event.event_id.clone(), event.clone());
                            shared.admitted.fetch_add(1, Ordering::AcqRel);
                            let name = event.event_id.clone();
                            let spawned = events
                                .spawn_named(name, process(shared.clone(), event, scheduled))
                                .await;
                            if at.is_some() {
                                lag = lag.max(scheduled.elapsed());
                            }
                            if spawned.is_err() {
                                break 'passes;
                            }
                        }
                    }
                }
            }
            if settings.spike.is_none() && shared.stop.load(Ordering::Acquire) {
                break 'passes;
            }
        }
    }
    // Every admitted event to its outcome.
    let ctrl_c = shared.ctrl_c.load(Ordering::Acquire);
    if ctrl_c {
        events
            .shutdown(settings.http_timeout + Duration::from_secs(1))
            .await;
    } else {
        events.join().await;
    }
    // Tasks dropped at the deadline never recorded an outcome: interrupted.
    let leftover: Vec<Event> = lock(&shared.in_flight).values().cloned().collect();
    for event in &leftover {
        shared.interrupted(event).await;
    }
    let last_outcome = Instant::now();
    let duration = start.elapsed();

    // Settling: Postgres all idle, tasks at baseline, pools back to warm.
    let mut seconds_to_all_idle = None;
    let mut seconds_to_baseline = None;
    let mut seconds_to_settle = None;
    let mut wait_for_writer = true;
    while last_outcome.elapsed() < settings.settle_limit {
        if wait_for_writer && shared.audit_tx.is_empty() {
            wait_for_writer = false;
        }
        if seconds_to_all_idle.is_none() {
            if let Ok((_, busy)) = settle_watch.read().await {
                if busy == 0 {
                    seconds_to_all_idle = Some(last_outcome.elapsed().as_secs_f64());
                }
            }
        }
        let live = tally::runtime_stats().map_or(0, |s| s.live);
        if seconds_to_baseline.is_none() && live <= baseline.tasks {
            seconds_to_baseline = Some(last_outcome.elapsed().as_secs_f64());
        }
        let pg_m = pg.metrics();
        let http_m = http.metrics();
        // Descriptors too: a connection closed on one side (the built-in
        // server's, say) may take a moment to close on the other.
        let fds = tally_harness::probe::open_fds().unwrap_or(0);
        if seconds_to_settle.is_none()
            && live <= baseline.tasks
            && fds == baseline.fds
            && pg_m.size == warm_pg
            && pg_m.in_use == 0
            && http_m.total.size == warm_http
            && http_m.total.in_use == 0
        {
            seconds_to_settle = Some(last_outcome.elapsed().as_secs_f64());
        }
        if seconds_to_all_idle.is_some() && seconds_to_settle.is_some() && !wait_for_writer {
            break;
        }
        tally::sleep(Duration::from_millis(5)).await;
    }
    let final_sample = monitor::local_sample(0, &pg, &http);
    let db_rows = count_rows(&mut settle_watch, &shared).await;
    settle_watch.close().await;

    // Wind down: the monitor and the writer, then the pools.
    let (_, peak) = take_watch(&watch);
    monitors.cancel();
    monitors.join().await;
    shared.audit_tx.close();
    writers.join().await;
    let pg_metrics = pg.metrics();
    let http_metrics = http.metrics();
    pg.close(Duration::from_secs(2)).await;
    http.close(Duration::from_secs(2)).await;
    services_nursery.cancel();
    services_nursery.join().await;

    let latency = lock(&shared.latency).summary();
    let processed = shared.processed.load(Ordering::Acquire);
    let report = Report {
        admitted: shared.admitted.load(Ordering::Acquire),
        processed,
        failed: shared.failed.load(Ordering::Acquire),
        interrupted: shared.interrupted.load(Ordering::Acquire),
        rejected: shared.rejected.load(Ordering::Acquire),
        db_rows,
        audit_lines: shared.audit_lines.load(Ordering::Acquire),
        dead_letters: shared.dead_letters.load(Ordering::Acquire),
        duration_s: duration.as_secs_f64(),
        throughput_eps: processed as f64 / duration.as_secs_f64().max(1e-9),
        seconds_to_settle,
        latency_ms: latency,
        tasks: Tasks {
            baseline: baseline.tasks,
            peak: peak.tasks.max(baseline.tasks),
            final_: final_sample.tasks,
            seconds_to_baseline,
        },
        pg: PgFigures {
            max_idle_in_transaction_s: peak.idle_in_transaction_s,
            seconds_to_all_idle,
            pool: PoolFigures::from_metrics(&pg_metrics),
        },
        http: PoolFigures::from_metrics(&http_metrics.total),
        fds: Gauge {
            baseline: baseline.fds as u64,
            peak: peak.fds.max(baseline.fds) as u64,
            final_: final_sample.fds as u64,
        },
        rss_bytes: Gauge {
            baseline: baseline.rss,
            peak: peak.rss.max(baseline.rss),
            final_: final_sample.rss,
        },
        series: shared.series_take(),
    };
    let status = ExitStatus::of(&RunEnd {
        admitted: report.admitted,
        processed: report.processed,
        failed: report.failed,
        interrupted: report.interrupted,
        rejected: report.rejected,
        finished: input_error.is_none(),
        ctrl_c,
    });
    Ok(Outcome {
        report,
        status,
        source_lag: lag,
        input_error: input_error.map(|e| e.to_string()),
    })
}

fn stem_and_row(event_id: &str) -> Option<(String, u64)> {
    let mut parts = event_id.splitn(3, ':');
    let stem = parts.next()?;
    let row = parts.next()?.parse().ok()?;
    Some((stem.to_owned(), row))
}

/// Rows in `market_events` whose event id was admitted in this run.
async fn count_rows(watch: &mut PgWatch, shared: &Shared) -> u64 {
    let admitted: Vec<((String, u32), u64)> = lock(&shared.admitted_rows)
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let mut total = 0;
    for ((stem, pass), max_row) in admitted {
        let escaped: String = stem
            .chars()
            .flat_map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    vec![c]
                } else {
                    vec!['\\', c]
                }
            })
            .collect();
        let pattern = if pass <= 1 {
            format!("^{escaped}:[0-9]+$")
        } else {
            format!("^{escaped}:[0-9]+:{pass}$")
        };
        let max_row = max_row as i64;
        if let Ok(n) = watch.count_matching(&pattern, max_row).await {
            total += n;
        }
    }
    total
}
