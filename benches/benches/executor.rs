//! tally's executor side by side with its peers, in one run.
//!
//! Each group has one function per contender, so criterion prints their times
//! next to each other:
//!
//! - `tally`: a [`tally::Runtime`] with one worker per available core, every
//!   task spawned into a [`tally::Nursery`];
//! - `async-executor`: a bare, leaked `async_executor::StaticExecutor` run by
//!   the same number of threads, each in `async_io::block_on(ex.run(..))` (the
//!   threading tally uses, without the nursery bookkeeping);
//! - `tokio`: a multi-thread tokio runtime with the same number of workers.
//!
//! The groups:
//!
//! 1. `spawn_join_inside`: from inside a running task, spawn an empty task and
//!    await its handle; time per spawn and join.
//! 2. `spawn_join_outside`: from a plain thread (not a worker), spawn an empty
//!    task and block on its handle; time per spawn and join.
//! 3. `sleeping_10k`: spawn 10,000 tasks that each sleep 1 ms, then wait for
//!    all of them; time per batch of 10,000.
//! 4. `yield_pingpong`: two tasks hand a token back and forth through a pair
//!    of bounded(1) channels, up to 10,000 round trips per pair of tasks; time
//!    per round trip.
//!
//! Each runtime is built once per benchmark function and shut down after it.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p tally-benches --bench executor
//! ```
//!
//! (about 70 s of measuring on two cores, plus the build); add a filter such
//! as `-- spawn_join_inside` to run one group.

use std::future::Future;
use std::thread;
use std::time::{Duration, Instant};

use async_executor::{Executor, StaticExecutor};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};

/// Tasks in one `sleeping_10k` batch.
const SLEEPERS: usize = 10_000;
/// How long each of them sleeps.
const NAP: Duration = Duration::from_millis(1);
/// The most round trips one pair of `yield_pingpong` tasks makes.
const ROUNDS: u64 = 10_000;

/// Worker threads for every contender: one per available core.
fn workers() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

fn tally_runtime() -> tally::Runtime {
    tally::Runtime::builder()
        .name("bench-tally")
        .workers(workers())
        .build()
        .expect("tally runtime")
}

fn shut_tally(rt: tally::Runtime) {
    let report = rt.shutdown(Duration::from_secs(1));
    assert!(report.is_clean(), "tally left tasks behind:\n{report}");
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .thread_name("bench-tokio")
        .enable_time()
        .build()
        .expect("tokio runtime")
}

fn shut_tokio(rt: tokio::runtime::Runtime) {
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// A bare async-executor, run the way tally runs its own: N threads, each in
/// `async_io::block_on(ex.run(..))`, until [`Bare::shutdown`].
#[derive(Debug)]
struct Bare {
    ex: &'static StaticExecutor,
    stop: async_channel::Sender<()>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Bare {
    fn start() -> Bare {
        let ex = Executor::new().leak();
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let threads = (0..workers())
            .map(|index| {
                let stopped = stopped.clone();
                thread::Builder::new()
                    .name(format!("bench-bare-{index}"))
                    .spawn(move || {
                        // Resolves (with an error) once `stop` is closed.
                        let _ = async_io::block_on(ex.run(stopped.recv()));
                    })
                    .expect("async-executor worker thread")
            })
            .collect();
        Bare { ex, stop, threads }
    }

    /// Waits for `future` on the calling thread, as tally's `block_on` does.
    fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        async_io::block_on(future)
    }

    fn shutdown(self) {
        self.stop.close();
        for thread in self.threads {
            thread.join().expect("async-executor worker panicked");
        }
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>, samples: usize, warm_up: u64, measure: u64) {
    group
        .sample_size(samples)
        .warm_up_time(Duration::from_secs(warm_up))
        .measurement_time(Duration::from_secs(measure));
}

fn spawn_join_inside(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_join_inside");
    configure(&mut group, 50, 1, 4);

    let rt = tally_runtime();
    let outer = rt.nursery();
    group.bench_function("tally", |b| {
        b.iter_custom(|iters| {
            let task = outer
                .try_spawn(async move {
                    let nursery = tally::Nursery::new();
                    let start = Instant::now();
                    for _ in 0..iters {
                        let handle = nursery.spawn(async {}).await.expect("room in nursery");
                        handle.await.expect("empty task");
                    }
                    let elapsed = start.elapsed();
                    nursery.join().await;
                    elapsed
                })
                .expect("room in outer nursery");
            rt.block_on(task).expect("outer task")
        });
    });
    drop(outer);
    shut_tally(rt);

    let bare = Bare::start();
    let ex = bare.ex;
    group.bench_function("async-executor", |b| {
        b.iter_custom(|iters| {
            bare.block_on(ex.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    ex.spawn(async {}).await;
                }
                start.elapsed()
            }))
        });
    });
    bare.shutdown();

    let rt = tokio_runtime();
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    tokio::spawn(async {}).await.expect("empty task");
                }
                start.elapsed()
            }))
            .expect("outer task")
        });
    });
    shut_tokio(rt);

    group.finish();
}

fn spawn_join_outside(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_join_outside");
    configure(&mut group, 50, 1, 4);

    let rt = tally_runtime();
    let nursery = rt.nursery();
    group.bench_function("tally", |b| {
        b.iter(|| {
            let handle = nursery.try_spawn(async {}).expect("room in nursery");
            rt.block_on(handle).expect("empty task");
        });
    });
    drop(nursery);
    shut_tally(rt);

    let bare = Bare::start();
    group.bench_function("async-executor", |b| {
        b.iter(|| futures_lite::future::block_on(bare.ex.spawn(async {})));
    });
    bare.shutdown();

    let rt = tokio_runtime();
    group.bench_function("tokio", |b| {
        b.iter(|| rt.block_on(rt.spawn(async {})).expect("empty task"));
    });
    shut_tokio(rt);

    group.finish();
}

fn sleeping_10k(c: &mut Criterion) {
    let mut group = c.benchmark_group("sleeping_10k");
    configure(&mut group, 10, 1, 3);
    group.sampling_mode(SamplingMode::Flat);

    let rt = tally_runtime();
    group.bench_function("tally", |b| {
        b.iter(|| {
            rt.block_on(async {
                let nursery = tally::Nursery::new();
                for _ in 0..SLEEPERS {
                    // The nursery joins the task; its handle is not needed.
                    drop(
                        nursery
                            .try_spawn(tally::sleep(NAP))
                            .expect("room in nursery"),
                    );
                }
                let stats = nursery.join().await;
                assert_eq!(stats.completed, SLEEPERS as u64);
            });
        });
    });
    shut_tally(rt);

    let bare = Bare::start();
    let ex = bare.ex;
    group.bench_function("async-executor", |b| {
        b.iter(|| {
            bare.block_on(async {
                let tasks: Vec<_> = (0..SLEEPERS)
                    .map(|_| ex.spawn(async_io::Timer::after(NAP)))
                    .collect();
                for task in tasks {
                    task.await;
                }
            });
        });
    });
    bare.shutdown();

    let rt = tokio_runtime();
    group.bench_function("tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..SLEEPERS)
                    .map(|_| tokio::spawn(tokio::time::sleep(NAP)))
                    .collect();
                for task in tasks {
                    task.await.expect("sleeper");
                }
            });
        });
    });
    shut_tokio(rt);

    group.finish();
}

/// Runs `iters` round trips in batches of at most [`ROUNDS`], each batch by a
/// fresh pair of tasks (from `pair`), and returns the total time.
fn in_batches(iters: u64, mut pair: impl FnMut(u64)) -> Duration {
    let start = Instant::now();
    let mut left = iters;
    while left > 0 {
        let rounds = left.min(ROUNDS);
        pair(rounds);
        left -= rounds;
    }
    start.elapsed()
}

fn yield_pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("yield_pingpong");
    configure(&mut group, 30, 1, 4);

    let rt = tally_runtime();
    group.bench_function("tally", |b| {
        b.iter_custom(|iters| {
            in_batches(iters, |rounds| {
                rt.block_on(async {
                    let nursery = tally::Nursery::new();
                    let (ping_tx, ping_rx) = tally::channel::bounded::<u64>(1);
                    let (pong_tx, pong_rx) = tally::channel::bounded::<u64>(1);
                    let pong = nursery
                        .try_spawn(async move {
                            while let Ok(token) = ping_rx.recv().await {
                                if pong_tx.send(token).await.is_err() {
                                    break;
                                }
                            }
                        })
                        .expect("room in nursery");
                    let ping = nursery
                        .try_spawn(async move {
                            for token in 0..rounds {
                                ping_tx.send(token).await.expect("pong is alive");
                                pong_rx.recv().await.expect("pong is alive");
                            }
                        })
                        .expect("room in nursery");
                    ping.await.expect("ping");
                    pong.await.expect("pong");
                });
            })
        });
    });
    shut_tally(rt);

    let bare = Bare::start();
    let ex = bare.ex;
    group.bench_function("async-executor", |b| {
        b.iter_custom(|iters| {
            in_batches(iters, |rounds| {
                let (ping_tx, ping_rx) = async_channel::bounded::<u64>(1);
                let (pong_tx, pong_rx) = async_channel::bounded::<u64>(1);
                let pong = ex.spawn(async move {
                    while let Ok(token) = ping_rx.recv().await {
                        if pong_tx.send(token).await.is_err() {
                            break;
                        }
                    }
                });
                let ping = ex.spawn(async move {
                    for token in 0..rounds {
                        ping_tx.send(token).await.expect("pong is alive");
                        pong_rx.recv().await.expect("pong is alive");
                    }
                });
                bare.block_on(async {
                    ping.await;
                    pong.await;
                });
            })
        });
    });
    bare.shutdown();

    let rt = tokio_runtime();
    group.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            in_batches(iters, |rounds| {
                let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(1);
                let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(1);
                let pong = rt.spawn(async move {
                    while let Some(token) = ping_rx.recv().await {
                        if pong_tx.send(token).await.is_err() {
                            break;
                        }
                    }
                });
                let ping = rt.spawn(async move {
                    for token in 0..rounds {
                        ping_tx.send(token).await.expect("pong is alive");
                        pong_rx.recv().await.expect("pong is alive");
                    }
                });
                rt.block_on(async {
                    ping.await.expect("ping");
                    pong.await.expect("pong");
                });
            })
        });
    });
    shut_tokio(rt);

    group.finish();
}

criterion_group!(
    benches,
    spawn_join_inside,
    spawn_join_outside,
    sleeping_10k,
    yield_pingpong
);
criterion_main!(benches);
