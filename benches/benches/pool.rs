//! tally's pools side by side with deadpool and bb8, in one run; the
//! Postgres groups against one throwaway cluster ([`Cluster::start`])
//! started at the beginning and stopped at the end.
//!
//! The contenders of the first two groups pool a trivial object (a `u64`
//! whose create, check and recycle are immediate), so only the pools' own
//! bookkeeping is measured. Every pool holds at most 8 objects and waits at
//! most 5 s for one (tally's default; set on deadpool and bb8 so that all
//! three arm a timer the same way):
//!
//! - `tally`: a [`tally::pool::Pool`] used from tasks of a [`tally::Runtime`]
//!   with 2 workers;
//! - `tally-1w`: the same on a runtime with 1 worker, so every task runs on
//!   one thread (to compare with the `-ct` contenders);
//! - `deadpool`, `bb8`: `deadpool::managed::Pool` and `bb8::Pool` used from
//!   tasks of a multi-thread tokio runtime with 2 workers;
//! - `deadpool-ct`, `bb8-ct`: the same on a current-thread tokio runtime
//!   (their best case: no task ever crosses threads).
//!
//! The groups:
//!
//! 1. `acquire_release_uncontended`: one task acquires and releases in a
//!    loop; time per acquire and release.
//! 2. `contended_64_on_8`: 64 tasks contend for 8 objects, each doing
//!    acquire, yield once, release, in a loop; time per acquire and release
//!    across all tasks (wall time over the cycles of all 64 tasks).
//! 3. `pgpool_tx`: 16 tasks each run the transaction `BEGIN; INSERT INTO
//!    bench_pool (id, note) VALUES ($1, $2) ON CONFLICT DO NOTHING; COMMIT`
//!    with a fresh id each time, on a pool of 8 connections; time per
//!    transaction across all tasks (tx/s is its inverse).
//!    - `tally`: a [`PgPool`] on the 2-worker tally runtime; a lease, one
//!      [`Pipeline`] (one round trip), then `lease.release().await`;
//!    - `deadpool-postgres`: a `deadpool_postgres::Pool` (fast recycling, its
//!      default) on the 2-worker tokio runtime; a pooled client, the three
//!      statements prepared (`prepare_cached`) and pipelined on it by polling
//!      them together (`tokio::join!`: one round trip, like tally's);
//!    - `deadpool-postgres-tx`: the same pool setup with a plain
//!      `client.transaction()`, `execute`, `commit` (three round trips), for
//!      reference.
//! 4. `idle_after_last_query` (timed with `Instant`, not criterion): after a
//!    burst of 2,000 transactions by 16 tasks on each pool of group 3, the
//!    time from the last transaction's completion until `pg_stat_activity`
//!    shows every connection of that pool (found by `application_name`:
//!    `bench-tally`, `bench-deadpool`, `bench-deadpool-tx`) idle, polled
//!    every 1 ms over a separate tokio-postgres connection. The time
//!    includes the round trip of the poll that saw them idle; the summary
//!    prints that round trip's median too.
//!
//! Only under `cargo bench` (not in criterion's test mode) it also prints a
//! summary at the end: for groups 1-3 the median (and p10, p90) of
//! per-operation times over batches interleaved across contenders, with
//! tally's ratios to the others; for group 4 the median of a few repeats.
//! The batches of groups 1 and 2 run right after their criterion groups,
//! before any Postgres load: the server stays busy for a while after one,
//! and on two cores that skews the multi-threaded contenders.
//!
//! Needs the PostgreSQL server binaries (found as the harness finds them:
//! `PG_BIN`, `pg_config --bindir`, `PATH`, `/usr/lib/postgresql/*/bin`). Run
//! with:
//!
//! ```text
//! cargo bench -p tally-benches --bench pool
//! ```
//!
//! (about 60 s in all on two cores, the cluster included, plus the build);
//! add a filter such as `-- contended` to run one criterion group (the
//! summary still runs).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use tally::pool::pg::{PgManager, PgPool};
use tally::pool::{Config as PoolConfig, Manager, Pool};
use tally::protocols::pg::{Config as PgConfig, Pipeline, StepResult};
use tally_harness::cluster::{Cluster, SUPERUSER};
use tokio_postgres::types::ToSql;

/// The table, without autovacuum: it only grows, and a vacuum in the
/// middle of a group would take one of the two cores.
const CREATE: &str = "CREATE TABLE bench_pool (id int8 PRIMARY KEY, note text) \
                      WITH (autovacuum_enabled = false)";
const INSERT: &str = "INSERT INTO bench_pool (id, note) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const NOTE: &str = "bench";
const IDLE_POLL: &str = "SELECT count(*), count(*) FILTER (WHERE state = 'idle') \
                         FROM pg_stat_activity WHERE application_name = $1";

/// Worker threads of the multi-threaded runtimes, tally's and tokio's.
const WORKERS: usize = 2;
/// The most objects (connections) of every pool.
const POOL_SIZE: usize = 8;
/// How long every pool waits for an object.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Tasks of `contended_64_on_8`.
const CONTENDING_TASKS: u64 = 64;
/// Tasks of `pgpool_tx` and `idle_after_last_query`.
const PG_TASKS: u64 = 16;
/// Transactions of each `idle_after_last_query` burst.
const BURST: u64 = 2_000;
/// How often `idle_after_last_query` polls `pg_stat_activity`.
const POLL_EVERY: Duration = Duration::from_millis(1);
/// The longest `idle_after_last_query` polls.
const POLL_LIMIT: Duration = Duration::from_secs(5);

/// Batches per contender in the summary of each group, interleaved.
const SUMMARY_ROUNDS: usize = 15;
/// Acquire/release cycles per batch in the summary of groups 1 and 2.
const SUMMARY_CYCLES: u64 = 20_000;
/// Transactions per batch in the summary of group 3.
const SUMMARY_TXS: u64 = 1_600;
/// Repeats per contender of `idle_after_last_query`.
const IDLE_REPEATS: usize = 7;

/// The next `bench_pool` id.
static NEXT_ID: AtomicI64 = AtomicI64::new(1);

fn next_id() -> i64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

// ----- the trivial object, for each pool -----

/// tally's manager of plain numbers.
#[derive(Debug)]
struct TallyNumbers;

impl Manager for TallyNumbers {
    type Object = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(7)
    }

    async fn recycle(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }

    async fn close(&self, _: u64) {}
}

/// deadpool's manager of plain numbers.
#[derive(Debug)]
struct DeadpoolNumbers;

impl deadpool::managed::Manager for DeadpoolNumbers {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(7)
    }

    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

/// bb8's manager of plain numbers.
#[derive(Debug)]
struct Bb8Numbers;

impl bb8::ManageConnection for Bb8Numbers {
    type Connection = u64;
    type Error = Infallible;

    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(7)
    }

    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

// ----- runtimes -----

fn tally_runtime(workers: usize) -> Arc<tally::Runtime> {
    let rt = tally::Runtime::builder()
        .name("bench-tally")
        .workers(workers)
        .build()
        .expect("tally runtime");
    Arc::new(rt)
}

fn tokio_runtime(multi_thread: bool) -> Arc<tokio::runtime::Runtime> {
    let rt = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("bench-tokio")
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    Arc::new(rt)
}

/// Where a contender's tasks run.
#[derive(Debug, Clone)]
enum Exec {
    /// A nursery of a tally runtime.
    Tally(Arc<tally::Runtime>, Arc<tally::Nursery>),
    /// A tokio runtime.
    Tokio(Arc<tokio::runtime::Runtime>),
}

impl Exec {
    fn tally(rt: &Arc<tally::Runtime>) -> Exec {
        Exec::Tally(rt.clone(), Arc::new(rt.nursery()))
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self {
            Exec::Tally(rt, _) => rt.block_on(future),
            Exec::Tokio(rt) => rt.block_on(future),
        }
    }

    /// Spawns `tasks` tasks made by `make` and waits for them all; how long
    /// that took, from before the first spawn, and what they returned.
    fn run_tasks<F, Fut>(&self, tasks: u64, make: F) -> (Duration, Vec<Fut::Output>)
    where
        F: Fn() -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: tally::TaskOutput + Send + 'static,
    {
        let start = Instant::now();
        let outputs = match self {
            Exec::Tally(rt, nursery) => {
                let handles: Vec<_> = (0..tasks)
                    .map(|_| nursery.try_spawn(make()).expect("room in the nursery"))
                    .collect();
                rt.block_on(async {
                    let mut outputs = Vec::with_capacity(handles.len());
                    for handle in handles {
                        outputs.push(handle.await.expect("tally task"));
                    }
                    outputs
                })
            }
            Exec::Tokio(rt) => {
                let handles: Vec<_> = (0..tasks).map(|_| rt.spawn(make())).collect();
                rt.block_on(async {
                    let mut outputs = Vec::with_capacity(handles.len());
                    for handle in handles {
                        outputs.push(handle.await.expect("tokio task"));
                    }
                    outputs
                })
            }
        };
        (start.elapsed(), outputs)
    }
}

/// The runtimes every contender runs on.
#[derive(Debug)]
struct Runtimes {
    tally: Arc<tally::Runtime>,
    tally_1w: Arc<tally::Runtime>,
    tokio_mt: Arc<tokio::runtime::Runtime>,
    tokio_ct: Arc<tokio::runtime::Runtime>,
}

impl Runtimes {
    fn start() -> Runtimes {
        Runtimes {
            tally: tally_runtime(WORKERS),
            tally_1w: tally_runtime(1),
            tokio_mt: tokio_runtime(true),
            tokio_ct: tokio_runtime(false),
        }
    }

    fn shutdown(self) {
        for rt in [self.tally, self.tally_1w] {
            let rt = Arc::into_inner(rt).expect("nothing holds the tally runtime");
            let report = rt.shutdown(Duration::from_secs(1));
            assert!(report.is_clean(), "tally left tasks behind:\n{report}");
        }
        for rt in [self.tokio_mt, self.tokio_ct] {
            let rt = Arc::into_inner(rt).expect("nothing holds the tokio runtime");
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

// ----- groups 1 and 2: the trivial object -----

/// A pool of numbers.
enum Numbers {
    Tally(Pool<TallyNumbers>),
    Deadpool(deadpool::managed::Pool<DeadpoolNumbers>),
    Bb8(bb8::Pool<Bb8Numbers>),
}

/// One contender of groups 1 and 2.
struct NumbersContender {
    name: &'static str,
    exec: Exec,
    pool: Numbers,
}

impl NumbersContender {
    fn tally(name: &'static str, rt: &Arc<tally::Runtime>) -> NumbersContender {
        let exec = Exec::tally(rt);
        let Exec::Tally(_, nursery) = &exec else {
            unreachable!()
        };
        let config = PoolConfig::named(name)
            .max_size(POOL_SIZE)
            .wait_timeout(WAIT_TIMEOUT);
        let pool = Pool::new(TallyNumbers, config, nursery).expect("tally pool");
        NumbersContender {
            name,
            exec,
            pool: Numbers::Tally(pool),
        }
    }

    fn deadpool(name: &'static str, rt: &Arc<tokio::runtime::Runtime>) -> NumbersContender {
        let pool = deadpool::managed::Pool::builder(DeadpoolNumbers)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("deadpool pool");
        NumbersContender {
            name,
            exec: Exec::Tokio(rt.clone()),
            pool: Numbers::Deadpool(pool),
        }
    }

    fn bb8(name: &'static str, rt: &Arc<tokio::runtime::Runtime>) -> NumbersContender {
        let pool = rt
            .block_on(
                bb8::Pool::builder()
                    .max_size(POOL_SIZE as u32)
                    .connection_timeout(WAIT_TIMEOUT)
                    .build(Bb8Numbers),
            )
            .expect("bb8 pool");
        NumbersContender {
            name,
            exec: Exec::Tokio(rt.clone()),
            pool: Numbers::Bb8(pool),
        }
    }

    fn all(rts: &Runtimes) -> Vec<NumbersContender> {
        vec![
            NumbersContender::tally("tally", &rts.tally),
            NumbersContender::tally("tally-1w", &rts.tally_1w),
            NumbersContender::deadpool("deadpool", &rts.tokio_mt),
            NumbersContender::bb8("bb8", &rts.tokio_mt),
            NumbersContender::deadpool("deadpool-ct", &rts.tokio_ct),
            NumbersContender::bb8("bb8-ct", &rts.tokio_ct),
        ]
    }

    /// `tasks` tasks each run `cycles` acquire (yield once) release cycles;
    /// the wall time of it all.
    fn run(&self, tasks: u64, cycles: u64, yield_once: bool) -> Duration {
        let (elapsed, _) = match &self.pool {
            Numbers::Tally(pool) => self.exec.run_tasks(tasks, || {
                let pool = pool.clone();
                async move {
                    for _ in 0..cycles {
                        let lease = pool.acquire().await.expect("tally acquires");
                        black_box(*lease);
                        if yield_once {
                            tally::yield_now().await;
                        }
                        lease.release().await;
                    }
                }
            }),
            Numbers::Deadpool(pool) => self.exec.run_tasks(tasks, || {
                let pool = pool.clone();
                async move {
                    for _ in 0..cycles {
                        let object = pool.get().await.expect("deadpool gets");
                        black_box(*object);
                        if yield_once {
                            tokio::task::yield_now().await;
                        }
                        drop(object);
                    }
                }
            }),
            Numbers::Bb8(pool) => self.exec.run_tasks(tasks, || {
                let pool = pool.clone();
                async move {
                    for _ in 0..cycles {
                        let conn = pool.get().await.expect("bb8 gets");
                        black_box(*conn);
                        if yield_once {
                            tokio::task::yield_now().await;
                        }
                        drop(conn);
                    }
                }
            }),
        };
        elapsed
    }

    /// The time `iters` cycles took, in `group`'s shape.
    fn time(&self, group: NumbersGroup, iters: u64) -> Duration {
        match group {
            NumbersGroup::Uncontended => self.run(1, iters, false),
            NumbersGroup::Contended => {
                let cycles = iters.div_ceil(CONTENDING_TASKS);
                let elapsed = self.run(CONTENDING_TASKS, cycles, true);
                elapsed.mul_f64(iters as f64 / (cycles * CONTENDING_TASKS) as f64)
            }
        }
    }

    fn close(self) {
        match self.pool {
            Numbers::Tally(pool) => {
                let report = self.exec.block_on(pool.close(Duration::from_secs(1)));
                assert!(report.outstanding.is_empty(), "{report:?}");
                assert_eq!(pool.metrics().abandoned, 0);
            }
            Numbers::Deadpool(pool) => pool.close(),
            Numbers::Bb8(pool) => drop(pool),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum NumbersGroup {
    Uncontended,
    Contended,
}

impl NumbersGroup {
    const ALL: [NumbersGroup; 2] = [NumbersGroup::Uncontended, NumbersGroup::Contended];

    fn name(self) -> &'static str {
        match self {
            NumbersGroup::Uncontended => "acquire_release_uncontended",
            NumbersGroup::Contended => "contended_64_on_8",
        }
    }
}

/// tally's ratios to the others in groups 1 and 2, same threading.
const NUMBERS_RATIOS: [(&str, &str); 4] = [
    ("tally", "deadpool"),
    ("tally", "bb8"),
    ("tally-1w", "deadpool-ct"),
    ("tally-1w", "bb8-ct"),
];

// ----- groups 3 and 4: Postgres -----

/// How deadpool-postgres runs the transaction.
#[derive(Clone, Copy, Debug)]
enum DeadpoolTx {
    /// Three prepared statements polled together: one round trip.
    Pipelined,
    /// `transaction()`, `execute`, `commit()`: three round trips.
    Plain,
}

enum TxPool {
    Tally(PgPool),
    Deadpool(deadpool_postgres::Pool, DeadpoolTx),
}

/// One contender of groups 3 and 4.
struct TxContender {
    name: &'static str,
    application_name: &'static str,
    exec: Exec,
    pool: TxPool,
}

/// The transaction as one tally pipeline.
fn tx_pipeline(id: i64) -> Pipeline {
    let mut pipeline = Pipeline::new();
    pipeline
        .execute("BEGIN", &[])
        .and_then(|p| p.execute(INSERT, &[&id, &NOTE]))
        .and_then(|p| p.execute("COMMIT", &[]))
        .expect("encodable")
        .sync();
    pipeline
}

impl TxContender {
    fn tally(url: &str, rt: &Arc<tally::Runtime>) -> TxContender {
        let application_name = "bench-tally";
        let config: PgConfig = url.parse().expect("a valid URL");
        let manager = PgManager::new(config).application_name(application_name);
        let exec = Exec::tally(rt);
        let Exec::Tally(_, nursery) = &exec else {
            unreachable!()
        };
        let config = PoolConfig::named(application_name)
            .max_size(POOL_SIZE)
            .wait_timeout(WAIT_TIMEOUT);
        let pool = PgPool::new(manager, config, nursery).expect("tally pool");
        TxContender {
            name: "tally",
            application_name,
            exec,
            pool: TxPool::Tally(pool),
        }
    }

    fn deadpool(url: &str, rt: &Arc<tokio::runtime::Runtime>, mode: DeadpoolTx) -> TxContender {
        let (name, application_name) = match mode {
            DeadpoolTx::Pipelined => ("deadpool-postgres", "bench-deadpool"),
            DeadpoolTx::Plain => ("deadpool-postgres-tx", "bench-deadpool-tx"),
        };
        let mut config: tokio_postgres::Config = url.parse().expect("a valid URL");
        config.application_name(application_name);
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .expect("deadpool-postgres pool");
        TxContender {
            name,
            application_name,
            exec: Exec::Tokio(rt.clone()),
            pool: TxPool::Deadpool(pool, mode),
        }
    }

    fn all(url: &str, rts: &Runtimes) -> Vec<TxContender> {
        vec![
            TxContender::tally(url, &rts.tally),
            TxContender::deadpool(url, &rts.tokio_mt, DeadpoolTx::Pipelined),
            TxContender::deadpool(url, &rts.tokio_mt, DeadpoolTx::Plain),
        ]
    }

    /// Runs at least `txs` transactions over [`PG_TASKS`] tasks; the wall
    /// time for `txs` of them, and when the last one completed.
    fn run(&self, txs: u64) -> (Duration, Instant) {
        let per_task = txs.div_ceil(PG_TASKS);
        let (elapsed, lasts) = match &self.pool {
            TxPool::Tally(pool) => self.exec.run_tasks(PG_TASKS, || {
                let pool = pool.clone();
                async move {
                    let mut last = None;
                    for _ in 0..per_task {
                        let mut lease = pool.acquire().await.expect("tally acquires");
                        let results = lease
                            .pipeline(&tx_pipeline(next_id()))
                            .await
                            .expect("pipeline");
                        assert!(
                            results.iter().all(StepResult::is_ok),
                            "transaction failed: {results:?}"
                        );
                        last = Some(Instant::now());
                        lease.release().await;
                    }
                    last
                }
            }),
            TxPool::Deadpool(pool, mode) => {
                let mode = *mode;
                self.exec.run_tasks(PG_TASKS, || {
                    let pool = pool.clone();
                    async move {
                        let mut last = None;
                        for _ in 0..per_task {
                            let mut client = pool.get().await.expect("deadpool gets");
                            let id = next_id();
                            let params: [&(dyn ToSql + Sync); 2] = [&id, &NOTE];
                            match mode {
                                DeadpoolTx::Pipelined => {
                                    let begin = client.prepare_cached("BEGIN").await;
                                    let insert = client.prepare_cached(INSERT).await;
                                    let commit = client.prepare_cached("COMMIT").await;
                                    let (begin, insert, commit) = (
                                        begin.expect("prepares"),
                                        insert.expect("prepares"),
                                        commit.expect("prepares"),
                                    );
                                    // Each execution sends its Bind/Execute/Sync
                                    // on its first poll: the three go out
                                    // before any answer is read.
                                    let (b, i, c) = tokio::join!(
                                        client.execute(&begin, &[]),
                                        client.execute(&insert, &params),
                                        client.execute(&commit, &[]),
                                    );
                                    b.expect("BEGIN");
                                    i.expect("INSERT");
                                    c.expect("COMMIT");
                                }
                                DeadpoolTx::Plain => {
                                    let insert =
                                        client.prepare_cached(INSERT).await.expect("prepares");
                                    let tx = client.transaction().await.expect("BEGIN");
                                    tx.execute(&insert, &params).await.expect("INSERT");
                                    tx.commit().await.expect("COMMIT");
                                }
                            }
                            last = Some(Instant::now());
                            drop(client);
                        }
                        last
                    }
                })
            }
        };
        let last = lasts
            .into_iter()
            .flatten()
            .max()
            .expect("at least one transaction");
        let scale = txs as f64 / (per_task * PG_TASKS) as f64;
        (elapsed.mul_f64(scale), last)
    }

    fn close(self) {
        match self.pool {
            TxPool::Tally(pool) => {
                let report = self.exec.block_on(pool.close(Duration::from_secs(1)));
                assert!(report.outstanding.is_empty(), "{report:?}");
                assert_eq!(pool.metrics().abandoned, 0);
            }
            TxPool::Deadpool(pool, _) => {
                let _enter = match &self.exec {
                    Exec::Tokio(rt) => rt.enter(),
                    Exec::Tally(..) => unreachable!(),
                };
                pool.close();
            }
        }
    }
}

const TX_RATIOS: [(&str, &str); 2] = [
    ("tally", "deadpool-postgres"),
    ("tally", "deadpool-postgres-tx"),
];

/// One `idle_after_last_query` measurement.
#[derive(Debug, Clone, Copy)]
struct IdleSample {
    /// From the last completion to the end of the poll that saw every
    /// connection idle; `None` if none did within [`POLL_LIMIT`].
    idle_after: Option<Duration>,
    /// From the last completion to the start of the first poll.
    first_poll: Duration,
    polls: u32,
    connections: i64,
}

/// A connection of its own that polls `pg_stat_activity`.
struct Poller {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Poller {
    fn connect(url: &str) -> Poller {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (client, connection) = rt
            .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
            .expect("the poller connects");
        let driver = rt.spawn(connection);
        let statement = rt
            .block_on(client.prepare(IDLE_POLL))
            .expect("the poll prepares");
        Poller {
            rt,
            client,
            statement,
            driver,
        }
    }

    /// The connections named `application_name`, and how many are idle.
    fn poll(&self, application_name: &str) -> (i64, i64) {
        let row = self
            .rt
            .block_on(self.client.query_one(&self.statement, &[&application_name]))
            .expect("pg_stat_activity");
        (row.get(0), row.get(1))
    }

    /// After a burst on `contender`: how long from its last transaction's
    /// completion until every connection of its pool showed idle (the end
    /// of the poll that saw it), until the first poll was sent, how many
    /// polls that took, and how many connections the pool had.
    fn idle_after_burst(&self, contender: &TxContender) -> IdleSample {
        let (_, last) = contender.run(BURST);
        let first_poll = Instant::now().saturating_duration_since(last);
        let mut polls = 0;
        loop {
            let (connections, idle) = self.poll(contender.application_name);
            polls += 1;
            let now = Instant::now();
            let all_idle = connections > 0 && idle == connections;
            if all_idle || now - last > POLL_LIMIT {
                return IdleSample {
                    idle_after: all_idle.then(|| now.saturating_duration_since(last)),
                    first_poll,
                    polls,
                    connections,
                };
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// The median round trip of one poll.
    fn round_trip(&self) -> Duration {
        let times: Vec<Duration> = (0..200)
            .map(|_| {
                let start = Instant::now();
                self.poll("bench-tally");
                start.elapsed()
            })
            .collect();
        percentiles(times)[1]
    }

    fn close(self) {
        drop(self.client);
        self.rt
            .block_on(self.driver)
            .expect("connection task")
            .expect("the poller closes");
    }
}

// ----- criterion -----

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2));
}

fn bench_numbers(c: &mut Criterion, group: NumbersGroup, contenders: &[NumbersContender]) {
    let mut g = c.benchmark_group(group.name());
    configure(&mut g);
    for contender in contenders {
        g.bench_function(contender.name, |b| {
            b.iter_custom(|iters| contender.time(group, iters));
        });
    }
    g.finish();
}

fn bench_tx(c: &mut Criterion, contenders: &[TxContender]) {
    let mut g = c.benchmark_group("pgpool_tx");
    configure(&mut g);
    g.measurement_time(Duration::from_secs(3));
    for contender in contenders {
        g.bench_function(contender.name, |b| {
            b.iter_custom(|iters| contender.run(iters).0);
        });
    }
    g.finish();
}

// ----- the summary -----

/// The 10th, 50th and 90th percentiles.
fn percentiles(mut times: Vec<Duration>) -> [Duration; 3] {
    times.sort_unstable();
    [10, 50, 90].map(|p| times[(times.len() - 1) * p / 100])
}

fn nanos(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns >= 10_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A group's summary lines: per contender its median (p10, p90) per
/// operation, then the ratios of medians.
fn summary_lines(
    title: &str,
    names: &[&'static str],
    times: Vec<Vec<Duration>>,
    per_second: bool,
    ratios: &[(&str, &str)],
) -> String {
    let spreads: Vec<[Duration; 3]> = times.into_iter().map(percentiles).collect();
    let mut line = title.to_owned();
    for (name, [p10, p50, p90]) in names.iter().zip(&spreads) {
        line += &format!(
            "\n    {name:<22} {} (p10 {}, p90 {})",
            nanos(*p50),
            nanos(*p10),
            nanos(*p90)
        );
        if per_second {
            line += &format!(", {:.0} tx/s", 1.0 / p50.as_secs_f64());
        }
    }
    let of = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .map(|i| spreads[i][1].as_secs_f64())
    };
    for (ours, theirs) in ratios {
        if let (Some(a), Some(b)) = (of(ours), of(theirs)) {
            line += &format!("\n    ratio {ours}/{theirs}: {:.2}", a / b);
        }
    }
    line
}

fn summarize_numbers(group: NumbersGroup, contenders: &[NumbersContender]) -> String {
    for contender in contenders {
        contender.time(group, SUMMARY_CYCLES / 4);
    }
    let mut times = vec![Vec::new(); contenders.len()];
    for _ in 0..SUMMARY_ROUNDS {
        for (contender, times) in contenders.iter().zip(&mut times) {
            let batch = contender.time(group, SUMMARY_CYCLES);
            times.push(batch / SUMMARY_CYCLES as u32);
        }
    }
    let names: Vec<_> = contenders.iter().map(|c| c.name).collect();
    let title = format!(
        "{} (per acquire+release; {SUMMARY_ROUNDS} batches of {SUMMARY_CYCLES})",
        group.name()
    );
    summary_lines(&title, &names, times, false, &NUMBERS_RATIOS)
}

fn summarize_tx(contenders: &[TxContender]) -> String {
    for contender in contenders {
        contender.run(SUMMARY_TXS / 4);
    }
    let mut times = vec![Vec::new(); contenders.len()];
    for _ in 0..SUMMARY_ROUNDS {
        for (contender, times) in contenders.iter().zip(&mut times) {
            let (batch, _) = contender.run(SUMMARY_TXS);
            times.push(batch / SUMMARY_TXS as u32);
        }
    }
    let names: Vec<_> = contenders.iter().map(|c| c.name).collect();
    let title = format!(
        "pgpool_tx (per transaction, {PG_TASKS} tasks on {POOL_SIZE} connections; \
         {SUMMARY_ROUNDS} batches of {SUMMARY_TXS})"
    );
    summary_lines(&title, &names, times, true, &TX_RATIOS)
}

fn summarize_idle(contenders: &[TxContender], poller: &Poller, repeats: usize) -> String {
    let mut samples: Vec<Vec<IdleSample>> = vec![Vec::new(); contenders.len()];
    for _ in 0..repeats {
        for (contender, samples) in contenders.iter().zip(&mut samples) {
            samples.push(poller.idle_after_burst(contender));
        }
    }
    let mut line = format!(
        "idle_after_last_query (after bursts of {BURST} transactions by {PG_TASKS} tasks; \
         medians of {repeats}; one poll's round trip alone: median {})",
        nanos(poller.round_trip())
    );
    for (contender, samples) in contenders.iter().zip(&samples) {
        let median = |mut v: Vec<Duration>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let idle: Vec<Duration> = samples.iter().filter_map(|s| s.idle_after).collect();
        let never = samples.len() - idle.len();
        let idle = if idle.is_empty() {
            "never".to_owned()
        } else {
            let (min, max) = (idle.iter().min().copied(), idle.iter().max().copied());
            format!(
                "{} (min {}, max {})",
                nanos(median(idle)),
                nanos(min.unwrap_or_default()),
                nanos(max.unwrap_or_default())
            )
        };
        let first = median(samples.iter().map(|s| s.first_poll).collect());
        let polls = samples.iter().map(|s| s.polls).max().unwrap_or(0);
        let connections = samples.iter().map(|s| s.connections).max().unwrap_or(0);
        line += &format!(
            "\n    {:<22} all idle after {idle}; first poll sent after {}; \
             at most {polls} poll(s); {connections} connections named {}; \
             {never} never idle within {POLL_LIMIT:?}",
            contender.name,
            nanos(first),
            contender.application_name,
        );
    }
    line
}

fn main() {
    // As criterion decides: without `--bench` (e.g. `cargo test --benches`)
    // it runs each function once, to test it.
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");

    let cluster = Cluster::start().expect("a throwaway cluster");
    cluster.psql_query(CREATE).expect("CREATE TABLE bench_pool");
    let url = cluster.url(SUPERUSER);

    let rts = Runtimes::start();
    let numbers = NumbersContender::all(&rts);
    let txs = TxContender::all(&url, &rts);
    let poller = Poller::connect(&url);

    let mut c = Criterion::default().configure_from_args();
    let mut summary = Vec::new();
    for group in NumbersGroup::ALL {
        bench_numbers(&mut c, group, &numbers);
    }
    // Before any Postgres load, which leaves the server busy for a while
    // (and would steal one of the two cores from these).
    if benching {
        summary.extend(NumbersGroup::ALL.map(|group| summarize_numbers(group, &numbers)));
    }
    bench_tx(&mut c, &txs);
    c.final_summary();

    if benching {
        summary.push(summarize_tx(&txs));
        summary.push(summarize_idle(&txs, &poller, IDLE_REPEATS));
        let rows = cluster
            .psql_query("SELECT count(*) FROM bench_pool")
            .expect("count");
        println!(
            "\nsummary (medians over batches interleaved across contenders; \
             bench_pool holds {rows} rows):"
        );
        for line in summary {
            println!("  {line}");
        }
    } else {
        println!("{}", summarize_idle(&txs, &poller, 1));
    }

    for contender in numbers {
        contender.close();
    }
    for contender in txs {
        contender.close();
    }
    poller.close();
    rts.shutdown();
    cluster.stop().expect("the cluster stops");
}
