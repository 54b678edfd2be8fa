//! tally's HTTP/1.1 client side by side with hyper 1's, in one run, against
//! one [`EnrichServer`] (no faults, no latency, one worker) started at the
//! beginning and stopped at the end. The server runs in a process of its own
//! (this binary, run again): in the bench's process tally's clients would
//! share async-io's one reactor with it, and hyper's would not. Every request
//! is `GET /v1/symbols/MSFT`, its body read to the end and checked (status
//! 200, the expected length), on keep-alive connections opened before
//! measuring.
//!
//! The contenders:
//!
//! - `tally`: [`tally::protocols::http1::Connection`]s moved into tasks of a
//!   [`tally::Nursery`] of a [`tally::Runtime`] with one worker per available
//!   core (how a service uses it);
//! - `tally-bo`: a connection on the same runtime driven by
//!   [`tally::Runtime::block_on`] on the calling thread, which drives the
//!   reactor while it waits (unless an idle worker holds it);
//! - `hyper`: hyper's connection-level client
//!   (`hyper::client::conn::http1::handshake` over a tokio `TcpStream`, with
//!   `TCP_NODELAY` as tally sets it), each connection driven by a task of its
//!   own, `SendRequest`s moved into tasks of a multi-thread tokio runtime
//!   with as many workers: the closest match to tally's connection API;
//! - `hyper-ct`: the same on a current-thread tokio runtime, so the client
//!   and its connection's task never cross threads (to compare with
//!   `tally-bo`);
//! - `hyper-util`: hyper-util's pooled `legacy::Client` (an `HttpConnector`
//!   with `TCP_NODELAY`) on the multi-thread runtime, cloned into the tasks:
//!   what most hyper users call.
//!
//! The groups (criterion reports time per request and requests per second):
//!
//! 1. `sequential_1conn`: one connection, one request after another; every
//!    contender.
//! 2. `concurrent_32conn`: 32 clients at once, each with a connection of its
//!    own (hyper-util: one shared pool, which grows to 32 or a little more),
//!    each sending its share of the batch's requests one after another; time
//!    for the whole batch over its number of requests. `tally`, `hyper` and
//!    `hyper-util`.
//!
//! After the groups (only under `cargo bench`, not in criterion's test mode)
//! it prints a summary: for `sequential_1conn`, the median (p10, p90) and
//! the mean of 4,000 requests per contender timed one by one, interleaved
//! over 40 rounds; for `concurrent_32conn`, the median (p10, p90) of 20
//! batches of 3,200 requests per contender, interleaved; the ratios of
//! tally's time per request to hyper's with the same threading (below 1:
//! tally is faster); and the server's counts (every answer a 200, no
//! connection reused wrongly, connections accepted).
//!
//! Sequential latencies are bimodal on a VM: about 12 µs per request when
//! the client's and the server's threads share a CPU, 60 to 80 µs when every
//! request wakes a thread on another, idle, virtual CPU; which mode dominates
//! changes from run to run and from contender to contender, for hyper as for
//! tally. Pinned to one CPU (`taskset -c 0 cargo bench ...`, the server's
//! process inherits it) every contender stays in the fast mode and the
//! sequential ratios are steady. With 32 clients on two cores the server
//! shares the CPU with the clients, so that group measures how much CPU each
//! client leaves it as much as the client's own speed.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p tally-benches --bench http
//! ```
//!
//! (about 50 s of measuring, plus the build); add a filter such as
//! `-- sequential` to run one group (the summary still runs).

mod common;

use common::{micros, percentiles};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tally::protocols::http1::{Connection, Options, Origin, Request};
use tally_harness::enrich::symbols::COMPANIES;
use tally_harness::enrich::{EnrichConfig, EnrichServer};

/// The one request.
const TARGET: &str = "/v1/symbols/MSFT";
/// Clients (and connections) of `concurrent_32conn`.
const CLIENTS: usize = 32;
/// The most body bytes read.
const BODY_CAP: usize = 64 * 1024;

/// Sequential requests per contender in the summary, timed one by one.
const SUMMARY_SEQUENTIAL: u64 = 4_000;
/// Rounds the sequential summary is interleaved over.
const SUMMARY_ROUNDS: u64 = 40;
/// Batches per contender in the concurrent summary.
const SUMMARY_BATCHES: usize = 20;
/// Requests per batch in the concurrent summary (100 per client).
const SUMMARY_BATCH: u64 = 3_200;
/// Requests per contender before the summary's.
const SUMMARY_WARM_UP: u64 = 500;

/// Worker threads for the clients' runtimes: one per available core.
fn workers() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get())
}

/// The body the server sends for MSFT.
fn expected_body() -> String {
    COMPANIES
        .iter()
        .find(|c| c.symbol == "MSFT")
        .expect("MSFT is known")
        .json()
}

/// What each batch does.
#[derive(Clone, Copy, Debug)]
enum Work {
    Sequential,
    Concurrent,
}

impl Work {
    const ALL: [Work; 2] = [Work::Sequential, Work::Concurrent];

    fn group(self) -> &'static str {
        match self {
            Work::Sequential => "sequential_1conn",
            Work::Concurrent => "concurrent_32conn",
        }
    }
}

/// Client `i`'s share of `iters` requests.
fn share(iters: u64, i: usize) -> u64 {
    iters / CLIENTS as u64 + u64::from((i as u64) < iters % CLIENTS as u64)
}

/// What a batch took: in all, and each request when asked (sequential only).
#[derive(Debug)]
struct Timing {
    total: Duration,
    each: Vec<Duration>,
}

/// Times a batch, request by request when `each`.
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

/// One exchange on tally's client; the body's length.
async fn tally_get(conn: &mut Connection, request: &Request) -> usize {
    let response = conn.request(request, BODY_CAP).await.expect("tally GET");
    assert_eq!(response.head.status, 200);
    assert!(conn.is_reusable());
    response.body.len()
}

/// tally's client: connections moved into tasks for each batch (the first
/// one does the sequential work), or one driven by `block_on` on the calling
/// thread. Both tally contenders share one runtime, as they share async-io's
/// one reactor anyway.
#[derive(Debug)]
struct TallyHttp {
    in_task: bool,
    rt: Arc<tally::Runtime>,
    nursery: tally::Nursery,
    conns: Vec<Connection>,
    request: Arc<Request>,
    expected_len: usize,
}

impl TallyHttp {
    fn runtime() -> Arc<tally::Runtime> {
        let rt = tally::Runtime::builder()
            .name("bench-tally")
            .workers(workers())
            .build()
            .expect("tally runtime");
        Arc::new(rt)
    }

    fn connect(rt: &Arc<tally::Runtime>, addr: SocketAddr, in_task: bool) -> TallyHttp {
        let origin = Origin {
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        let count = if in_task { CLIENTS } else { 1 };
        let conns = rt.block_on(async {
            let mut conns = Vec::with_capacity(count);
            for _ in 0..count {
                let conn = Connection::connect(&origin, Options::default()).await;
                conns.push(conn.expect("tally connects"));
            }
            conns
        });
        TallyHttp {
            in_task,
            rt: rt.clone(),
            nursery: rt.nursery(),
            conns,
            request: Arc::new(Request::get(TARGET)),
            expected_len: expected_body().len(),
        }
    }

    fn probe(&mut self) -> Vec<u8> {
        let conn = &mut self.conns[0];
        let response = self
            .rt
            .block_on(conn.request(&self.request, BODY_CAP))
            .expect("tally GET");
        response.body.to_vec()
    }

    fn run(&mut self, work: Work, iters: u64, each: bool) -> Timing {
        let len = self.expected_len;
        let sequential = |mut conn: Connection, request: Arc<Request>| async move {
            let mut laps = Laps::start(each, iters);
            for _ in 0..iters {
                assert_eq!(tally_get(&mut conn, &request).await, len);
                laps.lap();
            }
            (conn, laps.finish())
        };
        match work {
            Work::Sequential if !self.in_task => {
                let conn = self.conns.pop().expect("the connection is back");
                let (conn, timing) = self.rt.block_on(sequential(conn, self.request.clone()));
                self.conns.push(conn);
                timing
            }
            Work::Sequential => {
                let conn = self.conns.swap_remove(0);
                let task = self
                    .nursery
                    .try_spawn(sequential(conn, self.request.clone()))
                    .expect("room in the nursery");
                let (conn, timing) = self.rt.block_on(task).expect("tally task");
                self.conns.push(conn);
                timing
            }
            Work::Concurrent => {
                let start = Instant::now();
                let tasks: Vec<_> = self
                    .conns
                    .drain(..)
                    .enumerate()
                    .map(|(i, mut conn)| {
                        let request = self.request.clone();
                        let n = share(iters, i);
                        self.nursery
                            .try_spawn(async move {
                                for _ in 0..n {
                                    assert_eq!(tally_get(&mut conn, &request).await, len);
                                }
                                (conn, n)
                            })
                            .expect("room in the nursery")
                    })
                    .collect();
                let mut done = 0;
                for task in tasks {
                    let (conn, n) = self.rt.block_on(task).expect("tally task");
                    self.conns.push(conn);
                    done += n;
                }
                let total = start.elapsed();
                assert_eq!(done, iters);
                Timing {
                    total,
                    each: Vec::new(),
                }
            }
        }
    }

    fn close(self) {
        for conn in self.conns {
            conn.close();
        }
        drop(self.nursery);
        // The last one shuts the runtime down.
        if let Some(rt) = Arc::into_inner(self.rt) {
            let report = rt.shutdown(Duration::from_secs(1));
            assert!(report.is_clean(), "tally left tasks behind:\n{report}");
        }
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .thread_name("bench-tokio")
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One exchange on a hyper connection; the body's length.
async fn hyper_get(sender: &mut SendRequest<Empty<Bytes>>, host: &HeaderValue) -> usize {
    sender.ready().await.expect("hyper connection ready");
    let request = hyper::Request::get(TARGET)
        .header(HOST, host.clone())
        .body(Empty::new())
        .expect("a valid request");
    let response = sender.send_request(request).await.expect("hyper GET");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("hyper body")
        .to_bytes();
    body.len()
}

/// hyper's connection-level client: connections (`CLIENTS` on the
/// multi-thread runtime, one on the current-thread one), each driven by a
/// task of its own, their `SendRequest`s moved into tasks for each batch.
#[derive(Debug)]
struct HyperConn {
    rt: tokio::runtime::Runtime,
    senders: Vec<SendRequest<Empty<Bytes>>>,
    drivers: Vec<tokio::task::JoinHandle<hyper::Result<()>>>,
    host: HeaderValue,
    expected_len: usize,
}

impl HyperConn {
    fn connect(addr: SocketAddr, multi_thread: bool) -> HyperConn {
        let rt = if multi_thread {
            tokio_runtime()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
        };
        let count = if multi_thread { CLIENTS } else { 1 };
        let (senders, drivers) = rt.block_on(async {
            let mut senders = Vec::with_capacity(count);
            let mut drivers = Vec::with_capacity(count);
            for _ in 0..count {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .expect("tokio connects");
                stream.set_nodelay(true).expect("TCP_NODELAY");
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("hyper handshake");
                senders.push(sender);
                drivers.push(tokio::spawn(conn));
            }
            (senders, drivers)
        });
        HyperConn {
            rt,
            senders,
            drivers,
            host: HeaderValue::from_str(&addr.to_string()).expect("a valid Host"),
            expected_len: expected_body().len(),
        }
    }

    fn probe(&mut self) -> Vec<u8> {
        let sender = &mut self.senders[0];
        let host = self.host.clone();
        self.rt.block_on(async {
            sender.ready().await.expect("ready");
            let request = hyper::Request::get(TARGET)
                .header(HOST, host)
                .body(Empty::new())
                .expect("a valid request");
            let response = sender.send_request(request).await.expect("hyper GET");
            let body = response.into_body().collect().await.expect("hyper body");
            body.to_bytes().to_vec()
        })
    }

    fn run(&mut self, work: Work, iters: u64, each: bool) -> Timing {
        let len = self.expected_len;
        match work {
            Work::Sequential => {
                let mut sender = self.senders.swap_remove(0);
                let host = self.host.clone();
                let task = self.rt.spawn(async move {
                    let mut laps = Laps::start(each, iters);
                    for _ in 0..iters {
                        assert_eq!(hyper_get(&mut sender, &host).await, len);
                        laps.lap();
                    }
                    (sender, laps.finish())
                });
                let (sender, timing) = self.rt.block_on(task).expect("tokio task");
                self.senders.push(sender);
                timing
            }
            Work::Concurrent => {
                let start = Instant::now();
                let tasks: Vec<_> = self
                    .senders
                    .drain(..)
                    .enumerate()
                    .map(|(i, mut sender)| {
                        let host = self.host.clone();
                        let n = share(iters, i);
                        self.rt.spawn(async move {
                            for _ in 0..n {
                                assert_eq!(hyper_get(&mut sender, &host).await, len);
                            }
                            (sender, n)
                        })
                    })
                    .collect();
                let mut done = 0;
                for task in tasks {
                    let (sender, n) = self.rt.block_on(task).expect("tokio task");
                    self.senders.push(sender);
                    done += n;
                }
                let total = start.elapsed();
                assert_eq!(done, iters);
                Timing {
                    total,
                    each: Vec::new(),
                }
            }
        }
    }

    fn close(self) {
        drop(self.senders);
        for driver in self.drivers {
            self.rt
                .block_on(driver)
                .expect("hyper connection task")
                .expect("hyper connection closes");
        }
        self.rt.shutdown_timeout(Duration::from_secs(1));
    }
}

type Pooled = Client<HttpConnector, Empty<Bytes>>;

/// One exchange on hyper-util's pooled client; the body's length.
async fn pooled_get(client: &Pooled, uri: &hyper::Uri) -> usize {
    let response = client.get(uri.clone()).await.expect("hyper-util GET");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("hyper-util body")
        .to_bytes();
    body.len()
}

/// hyper-util's pooled client, cloned into the tasks.
#[derive(Debug)]
struct HyperPool {
    rt: tokio::runtime::Runtime,
    client: Pooled,
    uri: hyper::Uri,
    expected_len: usize,
}

impl HyperPool {
    fn connect(addr: SocketAddr) -> HyperPool {
        let rt = tokio_runtime();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = {
            let _context = rt.enter();
            Client::builder(TokioExecutor::new()).build(connector)
        };
        let uri = format!("http://{addr}{TARGET}")
            .parse()
            .expect("a valid URI");
        HyperPool {
            rt,
            client,
            uri,
            expected_len: expected_body().len(),
        }
    }

    fn probe(&mut self) -> Vec<u8> {
        self.rt.block_on(async {
            let response = self.client.get(self.uri.clone()).await.expect("GET");
            let body = response.into_body().collect().await.expect("body");
            body.to_bytes().to_vec()
        })
    }

    fn run(&mut self, work: Work, iters: u64, each: bool) -> Timing {
        let len = self.expected_len;
        let clients = match work {
            Work::Sequential => 1,
            Work::Concurrent => CLIENTS,
        };
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let client = self.client.clone();
                let uri = self.uri.clone();
                let n = if clients == 1 { iters } else { share(iters, i) };
                self.rt.spawn(async move {
                    let mut laps = Laps::start(each, n);
                    for _ in 0..n {
                        assert_eq!(pooled_get(&client, &uri).await, len);
                        laps.lap();
                    }
                    (laps.finish(), n)
                })
            })
            .collect();
        let mut each = Vec::new();
        let mut done = 0;
        for task in tasks {
            let (timing, n) = self.rt.block_on(task).expect("tokio task");
            each.extend(timing.each);
            done += n;
        }
        let total = start.elapsed();
        assert_eq!(done, iters);
        Timing { total, each }
    }

    fn close(self) {
        drop(self.client);
        self.rt.shutdown_timeout(Duration::from_secs(1));
    }
}

/// One contender.
#[derive(Debug)]
enum Contender {
    Tally(&'static str, TallyHttp),
    Hyper(&'static str, HyperConn),
    Pool(HyperPool),
}

impl Contender {
    fn all(addr: SocketAddr) -> Vec<Contender> {
        let tally = TallyHttp::runtime();
        vec![
            Contender::Tally("tally", TallyHttp::connect(&tally, addr, true)),
            Contender::Tally("tally-bo", TallyHttp::connect(&tally, addr, false)),
            Contender::Hyper("hyper", HyperConn::connect(addr, true)),
            Contender::Hyper("hyper-ct", HyperConn::connect(addr, false)),
            Contender::Pool(HyperPool::connect(addr)),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Contender::Tally(name, _) | Contender::Hyper(name, _) => name,
            Contender::Pool(_) => "hyper-util",
        }
    }

    /// Whether it takes part in `work`: the one-connection contenders only in
    /// the sequential group.
    fn does(&self, work: Work) -> bool {
        matches!(work, Work::Sequential) || !matches!(self.name(), "tally-bo" | "hyper-ct")
    }

    /// One request's body, to check before measuring.
    fn probe(&mut self) -> Vec<u8> {
        match self {
            Contender::Tally(_, c) => c.probe(),
            Contender::Hyper(_, c) => c.probe(),
            Contender::Pool(c) => c.probe(),
        }
    }

    fn run(&mut self, work: Work, iters: u64, each: bool) -> Timing {
        match self {
            Contender::Tally(_, c) => c.run(work, iters, each),
            Contender::Hyper(_, c) => c.run(work, iters, each),
            Contender::Pool(c) => c.run(work, iters, each),
        }
    }

    fn close(self) {
        match self {
            Contender::Tally(_, c) => c.close(),
            Contender::Hyper(_, c) => c.close(),
            Contender::Pool(c) => c.close(),
        }
    }
}

/// The summary's ratios: tally's time over hyper's, with the same threading.
const RATIOS: [(&str, &str); 3] = [
    ("tally", "hyper"),
    ("tally", "hyper-util"),
    ("tally-bo", "hyper-ct"),
];

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
}

fn bench_group(c: &mut Criterion, work: Work, contenders: &mut [Contender]) {
    let mut group = c.benchmark_group(work.group());
    configure(&mut group);
    for contender in contenders.iter_mut().filter(|c| c.does(work)) {
        group.bench_function(contender.name(), |b| {
            b.iter_custom(|iters| contender.run(work, iters, false).total);
        });
    }
    group.finish();
}

/// The 10th, 50th and 90th percentiles.
/// Requests per second at `per_request`.
fn rate(per_request: Duration) -> String {
    format!("{:.0} req/s", 1.0 / per_request.as_secs_f64())
}

/// The summary's lines for one group: each contender's median time per
/// request, and tally's ratio to each of the others.
fn summarize(work: Work, all: &mut [Contender]) -> String {
    let mut contenders: Vec<&mut Contender> = all.iter_mut().filter(|c| c.does(work)).collect();
    for contender in contenders.iter_mut() {
        contender.run(work, SUMMARY_WARM_UP, false);
    }
    // Time per request: each request (sequential), or each batch's total over
    // its requests (concurrent).
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    match work {
        Work::Sequential => {
            for _ in 0..SUMMARY_ROUNDS {
                for (contender, times) in contenders.iter_mut().zip(&mut times) {
                    let timing = contender.run(work, SUMMARY_SEQUENTIAL / SUMMARY_ROUNDS, true);
                    times.extend(timing.each);
                }
            }
        }
        Work::Concurrent => {
            for _ in 0..SUMMARY_BATCHES {
                for (contender, times) in contenders.iter_mut().zip(&mut times) {
                    let timing = contender.run(work, SUMMARY_BATCH, false);
                    times.push(timing.total / SUMMARY_BATCH as u32);
                }
            }
        }
    }
    let means: Vec<Duration> = times
        .iter()
        .map(|t| t.iter().sum::<Duration>() / t.len() as u32)
        .collect();
    let spreads: Vec<[Duration; 3]> = times.into_iter().map(percentiles).collect();
    let mut line = work.group().to_owned();
    for ((contender, [p10, p50, p90]), mean) in contenders.iter().zip(&spreads).zip(&means) {
        line += &match work {
            Work::Sequential => format!(
                "\n    {:<11} {} per request (p10 {}, p90 {}), {} at the median; \
                 mean {}, {}",
                contender.name(),
                micros(*p50),
                micros(*p10),
                micros(*p90),
                rate(*p50),
                micros(*mean),
                rate(*mean)
            ),
            // A shorter time is a higher rate: p90 of the times is p10 of the rates.
            Work::Concurrent => format!(
                "\n    {:<11} {} (p10 {}, p90 {}), {} per request at the median",
                contender.name(),
                rate(*p50),
                rate(*p90),
                rate(*p10),
                micros(*p50)
            ),
        };
    }
    let of = |name: &str| contenders.iter().position(|c| c.name() == name);
    for (ours, theirs) in RATIOS {
        let (Some(a), Some(b)) = (of(ours), of(theirs)) else {
            continue;
        };
        let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();
        line += &format!(
            "\n    ratio {ours}/{theirs} (time per request): {:.2} at the median",
            ratio(spreads[a][1], spreads[b][1])
        );
        if let Work::Sequential = work {
            line += &format!(", {:.2} in the mean", ratio(means[a], means[b]));
        }
    }
    line
}

/// Set in the server's process: this binary, run again, serves.
const SERVE_ENV: &str = "TALLY_BENCH_HTTP_SERVE";

/// The server's side: starts the server, prints its address, serves until
/// stdin closes, then prints its counts (requests, 200s, connections
/// accepted, reuse violations).
fn serve() {
    // Connections stay open across groups: no idle timeout in the way.
    let server = EnrichServer::start(EnrichConfig::new().idle_timeout(Duration::from_secs(3600)))
        .expect("the enrichment server starts");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", server.addr()).expect("stdout");
    stdout.flush().expect("stdout");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let stats = server.shutdown(Duration::from_secs(2)).stats;
    writeln!(
        stdout,
        "{} {} {} {}",
        stats.requests,
        stats.status(200),
        stats.connections_accepted,
        stats.reuse_violations
    )
    .expect("stdout");
}

/// The server, in a process of its own so that its reactor and threads are
/// not the clients' (tally's clients would otherwise share async-io's one
/// reactor with it, and hyper's would not).
#[derive(Debug)]
struct ServerProcess {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start() -> ServerProcess {
        let exe = std::env::current_exe().expect("the bench's own path");
        let mut child = Command::new(exe)
            .env(SERVE_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server process starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the server's address");
        let addr = line.trim().parse().expect("an address");
        ServerProcess {
            child,
            stdout,
            addr,
        }
    }

    /// Stops the server; its counts: requests, 200s, connections accepted,
    /// reuse violations.
    fn stop(mut self) -> [u64; 4] {
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("the server's counts");
        let status = self.child.wait().expect("the server process");
        assert!(status.success(), "the server process: {status}");
        let counts: Vec<u64> = line
            .split_whitespace()
            .map(|n| n.parse().expect("a count"))
            .collect();
        counts.try_into().expect("four counts")
    }
}

fn main() {
    if std::env::var_os(SERVE_ENV).is_some() {
        serve();
        return;
    }
    // As criterion decides: without `--bench` (e.g. `cargo test --benches`)
    // it runs each function once, to test it.
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");

    let server = ServerProcess::start();
    let mut contenders = Contender::all(server.addr);
    let expected = expected_body();
    for contender in &mut contenders {
        let body = contender.probe();
        assert_eq!(
            String::from_utf8_lossy(&body),
            expected,
            "{}'s body",
            contender.name()
        );
    }

    let mut c = Criterion::default().configure_from_args();
    for work in Work::ALL {
        bench_group(&mut c, work, &mut contenders);
    }
    c.final_summary();

    let summary: Vec<String> = if benching {
        Work::ALL
            .into_iter()
            .map(|work| summarize(work, &mut contenders))
            .collect()
    } else {
        Vec::new()
    };
    for contender in contenders {
        contender.close();
    }
    let [requests, ok, accepted, violations] = server.stop();
    assert_eq!(violations, 0, "a connection was reused wrongly");
    assert_eq!(ok, requests, "every answer was a 200");
    if benching {
        println!(
            "\nsummary (sequential: medians of {SUMMARY_SEQUENTIAL} requests timed one by one, \
             {SUMMARY_ROUNDS} interleaved rounds; concurrent: medians of {SUMMARY_BATCHES} \
             interleaved batches of {SUMMARY_BATCH} requests over {CLIENTS} connections):"
        );
        for line in summary {
            println!("  {line}");
        }
        println!(
            "  server: {requests} requests, all 200, {accepted} connections accepted, \
             {violations} reuse violations"
        );
    }
}
