//! tally's PostgreSQL client side by side with tokio-postgres, in one run,
//! against one throwaway cluster ([`Cluster::start`]) started at the
//! beginning and stopped at the end.
//!
//! Each group has one function per contender, each with one connection to
//! the cluster over loopback TCP:
//!
//! - `tally`: a [`tally::protocols::pg::Connection`] moved into a task of a
//!   [`tally::Runtime`] with one worker per available core (how a service
//!   uses it);
//! - `tally-bo`: another such connection on the same runtime, driven by
//!   [`tally::Runtime::block_on`] on the calling thread, which drives the
//!   reactor while it waits (unless an idle worker holds it: async-io has one
//!   reactor for all threads);
//! - `tokio-postgres`: a `tokio_postgres::Client` in a task of a multi-thread
//!   tokio runtime with the same number of workers, its connection driven by
//!   a task of its own (the usual setup);
//! - `tokio-postgres-ct`: the same on a current-thread tokio runtime, so
//!   client and connection task never cross threads (tokio-postgres' best
//!   case for sequential work, to compare with `tally-bo`).
//!
//! Statements are prepared once on both sides: tally's statement cache
//! parses a statement on its first run and later only binds and executes it;
//! tokio-postgres runs `Statement`s prepared before measuring.
//!
//! The groups:
//!
//! 1. `select1_roundtrip`: `SELECT 1`, one after another; time per round
//!    trip.
//! 2. `pipelined_tx`: `BEGIN; INSERT INTO bench_tx (id, note) VALUES ($1, $2)
//!    ON CONFLICT (id) DO NOTHING; COMMIT` in one round trip, with a fresh id
//!    each time so every insert happens; time per transaction (tx/s is its
//!    inverse). tally sends a [`Pipeline`] (one Sync); tokio-postgres
//!    pipelines the three executions by polling them together
//!    (`tokio::join!`, one Sync each).
//!
//! After the groups (only under `cargo bench`, not in criterion's test mode)
//! it prints a summary: the median (and p10, p90) of 2,000 more iterations
//! per contender and group, timed one by one with `Instant` and interleaved
//! over four rounds, with the ratios tally / tokio-postgres and tally-bo /
//! tokio-postgres-ct (same threading); then what `pgbench` reaches on the
//! same cluster with the same transaction (`-M prepared -n -T 5`), as plain
//! statements (three round trips) and in pipeline mode (one), with one
//! client (`-c 1 -j 1`, to compare with the groups) and with eight (`-c 8
//! -j 2`, the machine's ceiling).
//!
//! Needs the PostgreSQL server binaries and `pgbench` (found as the harness
//! finds them: `PG_BIN`, `pg_config --bindir`, `PATH`,
//! `/usr/lib/postgresql/*/bin`). Run with:
//!
//! ```text
//! cargo bench -p tally-benches --bench pg
//! ```
//!
//! (about a minute of measuring on two cores, plus the build); add a filter
//! such as `-- select1` to run one group (the summary and pgbench still run).

mod common;

use common::{find_pgbench, micros, percentiles, run_pgbench};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use tally::protocols::pg::{Config, Connection, Pipeline, StepResult};
use tally_harness::cluster::{Cluster, SUPERUSER};
use tokio_postgres::types::ToSql;

const SELECT1: &str = "SELECT 1";
const CREATE: &str = "CREATE TABLE bench_tx (id int8 PRIMARY KEY, note text)";
const INSERT: &str = "INSERT INTO bench_tx (id, note) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
const NOTE: &str = "bench";

/// Iterations per contender and group in the summary.
const SUMMARY_ITERS: u64 = 2_000;
/// Rounds the summary's iterations are interleaved over.
const SUMMARY_ROUNDS: u64 = 4;
/// Iterations per contender before the summary's.
const SUMMARY_WARM_UP: u64 = 200;
/// How long each pgbench run lasts, in seconds.
const PGBENCH_SECONDS: &str = "5";

/// The next `bench_tx` id; above pgbench's `random(1, 1000000000)`.
static NEXT_ID: AtomicI64 = AtomicI64::new(10_000_000_000);

fn next_id() -> i64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Worker threads for the multi-threaded runtimes: one per available core.
fn workers() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

/// What each iteration does.
#[derive(Clone, Copy, Debug)]
enum Work {
    Select1,
    Tx,
}

impl Work {
    const ALL: [Work; 2] = [Work::Select1, Work::Tx];

    fn group(self) -> &'static str {
        match self {
            Work::Select1 => "select1_roundtrip",
            Work::Tx => "pipelined_tx",
        }
    }
}

/// What a batch of iterations took: in all, and each one when asked.
#[derive(Debug)]
struct Timing {
    total: Duration,
    each: Vec<Duration>,
}

/// Times a batch, iteration by iteration when `each`.
#[derive(Debug)]
struct Laps {
    start: Instant,
    last: Instant,
    each: Option<Vec<Duration>>,
}

impl Laps {
    fn start(each: bool, iters: u64) -> Laps {
        let now = Instant::now();
        Laps {
            start: now,
            last: now,
            each: each.then(|| Vec::with_capacity(iters as usize)),
        }
    }

    fn lap(&mut self) {
        if let Some(each) = &mut self.each {
            let now = Instant::now();
            each.push(now - self.last);
            self.last = now;
        }
    }

    fn finish(self) -> Timing {
        Timing {
            total: self.start.elapsed(),
            each: self.each.unwrap_or_default(),
        }
    }
}

/// The transaction as one tally pipeline.
fn tx_pipeline(id: i64) -> Result<Pipeline, tally::protocols::pg::Error> {
    let mut pipeline = Pipeline::new();
    pipeline
        .execute("BEGIN", &[])?
        .execute(INSERT, &[&id, &NOTE])?
        .execute("COMMIT", &[])?
        .sync();
    Ok(pipeline)
}

/// One batch of iterations on tally's client.
async fn tally_batch(conn: &mut Connection, work: Work, iters: u64, each: bool) -> Timing {
    let mut laps = Laps::start(each, iters);
    for _ in 0..iters {
        match work {
            Work::Select1 => {
                let rows = conn.query(SELECT1, &[]).await.expect("SELECT 1");
                assert_eq!(rows.len(), 1);
            }
            Work::Tx => {
                let pipeline = tx_pipeline(next_id()).expect("encodable");
                let results = conn.pipeline(&pipeline).await.expect("pipeline");
                assert!(
                    results.iter().all(StepResult::is_ok),
                    "transaction failed: {results:?}"
                );
            }
        }
        laps.lap();
    }
    laps.finish()
}

/// tally's client, in a task (moved into one for each batch) or driven by
/// `block_on` on the calling thread. Both tally contenders share one runtime,
/// as they share async-io's one reactor anyway.
#[derive(Debug)]
struct TallyPg {
    in_task: bool,
    rt: Arc<tally::Runtime>,
    nursery: tally::Nursery,
    conn: Option<Connection>,
}

impl TallyPg {
    fn runtime() -> Arc<tally::Runtime> {
        let rt = tally::Runtime::builder()
            .name("bench-tally")
            .workers(workers())
            .build()
            .expect("tally runtime");
        Arc::new(rt)
    }

    fn connect(rt: &Arc<tally::Runtime>, url: &str, in_task: bool) -> TallyPg {
        let config: Config = url.parse().expect("a valid URL");
        let rt = rt.clone();
        let nursery = rt.nursery();
        let conn = rt
            .block_on(Connection::connect(&config))
            .expect("tally connects");
        TallyPg {
            in_task,
            rt,
            nursery,
            conn: Some(conn),
        }
    }

    fn run(&mut self, work: Work, iters: u64, each: bool) -> Timing {
        let mut conn = self.conn.take().expect("the connection is back");
        let timing = if self.in_task {
            let task = self
                .nursery
                .try_spawn(async move {
                    let timing = tally_batch(&mut conn, work, iters, each).await;
                    (conn, timing)
                })
                .expect("room in nursery");
            let (back, timing) = self.rt.block_on(task).expect("tally task");
            conn = back;
            timing
        } else {
            self.rt.block_on(tally_batch(&mut conn, work, iters, each))
        };
        self.conn = Some(conn);
        timing
    }

    fn close(mut self) {
        let conn = self.conn.take().expect("the connection is back");
        self.rt.block_on(conn.close()).expect("tally closes");
        drop(self.nursery);
        // The last one shuts the runtime down.
        if let Some(rt) = Arc::into_inner(self.rt) {
            let report = rt.shutdown(Duration::from_secs(1));
            assert!(report.is_clean(), "tally left tasks behind:\n{report}");
        }
    }
}

/// tokio-postgres' statements, prepared once.
#[derive(Debug)]
struct Prepared {
    select1: tokio_postgres::Statement,
    begin: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
    commit: tokio_postgres::Statement,
}

/// tokio-postgres' client, its connection driven by a task of its own.
#[derive(Debug)]
struct TokioPg {
    rt: tokio::runtime::Runtime,
    client: Arc<tokio_postgres::Client>,
    prepared: Arc<Prepared>,
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl TokioPg {
    fn connect(url: &str, multi_thread: bool) -> TokioPg {
        let rt = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers())
                .thread_name("bench-tokio")
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .expect("tokio runtime");
        let (client, connection) = rt
            .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
            .expect("tokio-postgres connects");
        let driver = rt.spawn(connection);
        let prepared = rt
            .block_on(async {
                Ok::<_, tokio_postgres::Error>(Prepared {
                    select1: client.prepare(SELECT1).await?,
                    begin: client.prepare("BEGIN").await?,
                    insert: client.prepare(INSERT).await?,
                    commit: client.prepare("COMMIT").await?,
                })
            })
            .expect("tokio-postgres prepares");
        TokioPg {
            rt,
            client: Arc::new(client),
            prepared: Arc::new(prepared),
            driver,
        }
    }

    fn run(&mut self, work: Work, iters: u64, each: bool) -> Timing {
        let client = self.client.clone();
        let prepared = self.prepared.clone();
        let task = self.rt.spawn(async move {
            let mut laps = Laps::start(each, iters);
            for _ in 0..iters {
                match work {
                    Work::Select1 => {
                        let rows = client
                            .query(&prepared.select1, &[])
                            .await
                            .expect("SELECT 1");
                        assert_eq!(rows.len(), 1);
                    }
                    Work::Tx => {
                        let id = next_id();
                        let params: [&(dyn ToSql + Sync); 2] = [&id, &NOTE];
                        // Each execution sends its Bind/Execute/Sync on its
                        // first poll, so the three go out in order, before
                        // any answer is read.
                        let (begin, insert, commit) = tokio::join!(
                            client.execute(&prepared.begin, &[]),
                            client.execute(&prepared.insert, &params),
                            client.execute(&prepared.commit, &[]),
                        );
                        begin.expect("BEGIN");
                        insert.expect("INSERT");
                        commit.expect("COMMIT");
                    }
                }
                laps.lap();
            }
            laps.finish()
        });
        self.rt.block_on(task).expect("tokio task")
    }

    fn close(self) {
        drop(Arc::into_inner(self.client).expect("no task holds the client"));
        self.rt
            .block_on(self.driver)
            .expect("connection task")
            .expect("tokio-postgres closes");
        self.rt.shutdown_timeout(Duration::from_secs(1));
    }
}

/// One contender.
#[derive(Debug)]
enum Contender {
    Tally(&'static str, Box<TallyPg>),
    Tokio(&'static str, TokioPg),
}

impl Contender {
    fn all(url: &str) -> Vec<Contender> {
        let tally = TallyPg::runtime();
        vec![
            Contender::Tally("tally", Box::new(TallyPg::connect(&tally, url, true))),
            Contender::Tally("tally-bo", Box::new(TallyPg::connect(&tally, url, false))),
            Contender::Tokio("tokio-postgres", TokioPg::connect(url, true)),
            Contender::Tokio("tokio-postgres-ct", TokioPg::connect(url, false)),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Contender::Tally(name, _) | Contender::Tokio(name, _) => name,
        }
    }

    fn run(&mut self, work: Work, iters: u64, each: bool) -> Timing {
        match self {
            Contender::Tally(_, c) => c.run(work, iters, each),
            Contender::Tokio(_, c) => c.run(work, iters, each),
        }
    }

    fn close(self) {
        match self {
            Contender::Tally(_, c) => (*c).close(),
            Contender::Tokio(_, c) => c.close(),
        }
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn bench_group(c: &mut Criterion, work: Work, contenders: &mut [Contender]) {
    let mut group = c.benchmark_group(work.group());
    configure(&mut group);
    for contender in contenders.iter_mut() {
        group.bench_function(contender.name(), |b| {
            b.iter_custom(|iters| contender.run(work, iters, false).total);
        });
    }
    group.finish();
}

/// The 10th, 50th and 90th percentiles.
/// The summary's lines for one group: each contender's median over
/// [`SUMMARY_ITERS`] iterations, and tally's ratio to each of the others.
fn summarize(work: Work, contenders: &mut [Contender]) -> String {
    for contender in contenders.iter_mut() {
        contender.run(work, SUMMARY_WARM_UP, false);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for _ in 0..SUMMARY_ROUNDS {
        for (contender, times) in contenders.iter_mut().zip(&mut times) {
            let timing = contender.run(work, SUMMARY_ITERS / SUMMARY_ROUNDS, true);
            times.extend(timing.each);
        }
    }
    let spreads: Vec<[Duration; 3]> = times.into_iter().map(percentiles).collect();
    let medians: Vec<Duration> = spreads.iter().map(|[_, p50, _]| *p50).collect();
    let mut line = work.group().to_owned();
    for (contender, [p10, p50, p90]) in contenders.iter().zip(&spreads) {
        line += &format!(
            "\n    {:<18} {} (p10 {}, p90 {})",
            contender.name(),
            micros(*p50),
            micros(*p10),
            micros(*p90)
        );
        if let Work::Tx = work {
            line += &format!(", {:.0} tx/s at the median", 1.0 / p50.as_secs_f64());
        }
    }
    let of = |name: &str| {
        contenders
            .iter()
            .position(|c| c.name() == name)
            .map(|i| medians[i].as_secs_f64())
    };
    for (ours, theirs) in RATIOS {
        if let (Some(a), Some(b)) = (of(ours), of(theirs)) {
            line += &format!("\n    ratio {ours}/{theirs}: {:.2}", a / b);
        }
    }
    line
}

/// The summary's ratios: tally's time over tokio-postgres', with the same
/// threading.
const RATIOS: [(&str, &str); 2] = [
    ("tally", "tokio-postgres"),
    ("tally-bo", "tokio-postgres-ct"),
];

/// The transaction as a pgbench script: statement by statement, or in one
/// pipeline.
fn pgbench_script(pipelined: bool) -> String {
    let (start, end) = if pipelined {
        ("\\startpipeline\n", "\\endpipeline\n")
    } else {
        ("", "")
    };
    format!(
        "\\set id random(1, 1000000000)\n{start}BEGIN;\n\
         INSERT INTO bench_tx (id, note) VALUES (:id, 'pgbench') ON CONFLICT (id) DO NOTHING;\n\
         COMMIT;\n{end}"
    )
}

/// Runs pgbench with `script` and `clients` against the cluster; its
/// latency and tps lines.
fn pgbench(bin: &Path, port: u16, script: &Path, clients: &[&str]) -> Result<Vec<String>, String> {
    let stdout = run_pgbench(bin, port, script, clients, PGBENCH_SECONDS)?;
    Ok(stdout
        .lines()
        .filter(|l| l.starts_with("tps") || l.starts_with("latency average"))
        .map(str::to_owned)
        .collect())
}

/// pgbench's lines for every script and client count.
fn pgbench_ceiling(cluster: &Cluster) -> Vec<String> {
    let Some(bin) = find_pgbench() else {
        return vec!["pgbench: not found (PG_BIN, pg_config --bindir, PATH)".to_owned()];
    };
    let mut lines = Vec::new();
    for pipelined in [false, true] {
        let script = std::env::temp_dir().join(format!(
            "tally-bench-pg-{}-{}.sql",
            std::process::id(),
            if pipelined { "pipelined" } else { "plain" }
        ));
        fs::write(&script, pgbench_script(pipelined)).expect("pgbench script");
        for clients in [&["-c", "1", "-j", "1"], &["-c", "8", "-j", "2"]] {
            let label = format!(
                "pgbench {} {}",
                clients.join(" "),
                if pipelined {
                    "\\startpipeline (1 round trip)"
                } else {
                    "plain (3 round trips)"
                }
            );
            match pgbench(&bin, cluster.port(), &script, clients) {
                Ok(out) => lines.push(format!("{label:<50}  {}", out.join("; "))),
                Err(e) => lines.push(format!("{label}: {e}")),
            }
        }
        let _ = fs::remove_file(&script);
    }
    lines
}

fn main() {
    // As criterion decides: without `--bench` (e.g. `cargo test --benches`)
    // it runs each function once, to test it.
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");

    let cluster = Cluster::start().expect("a throwaway cluster");
    cluster.psql_query(CREATE).expect("CREATE TABLE bench_tx");
    let url = cluster.url(SUPERUSER);
    let mut contenders = Contender::all(&url);

    let mut c = Criterion::default().configure_from_args();
    for work in Work::ALL {
        bench_group(&mut c, work, &mut contenders);
    }
    c.final_summary();

    if benching {
        let mut summary: Vec<String> = Work::ALL
            .into_iter()
            .map(|work| summarize(work, &mut contenders))
            .collect();
        for contender in contenders {
            contender.close();
        }
        summary.extend(pgbench_ceiling(&cluster));
        let rows = cluster
            .psql_query("SELECT count(*) FROM bench_tx")
            .expect("count");
        println!(
            "\nsummary (medians of {SUMMARY_ITERS} timed iterations per contender, \
             {SUMMARY_ROUNDS} interleaved rounds; bench_tx holds {rows} rows):"
        );
        for line in summary {
            println!("  {line}");
        }
    } else {
        for contender in contenders {
            contender.close();
        }
    }
    cluster.stop().expect("the cluster stops");
}
