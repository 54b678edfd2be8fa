//! A load spike through a capped nursery, with the runtime's own counters and
//! the process's file descriptors read before, during and after.
//!
//! ```text
//! cargo run --release --example spike -- [SPIKE_TASKS]
//! ```
//!
//! A long-lived "service" nursery holds a few tasks (the baseline); then a
//! burst of short tasks, each holding a loopback socket pair for a few
//! milliseconds, goes through a nursery capped at 2,000 live tasks. The
//! example prints the live tasks and open descriptors every 100 ms, and at the
//! end how long the runtime took to get back to its baseline.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tally::{Nursery, Runtime};
use tally_harness::probe;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spike: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 50_000,
    };
    let rt = Runtime::new();
    println!(
        "tally spike: {spike} tasks through a nursery capped at 2,000, on {} workers",
        rt.workers()
    );

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let service = rt.nursery();
    // The baseline: a few long-lived service tasks.
    for _ in 0..4 {
        let _handle = service.try_spawn(tally::cancelled())?;
    }
    // A task that accepts and drops the burst's connections, off the workers.
    let acceptor = std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_err() {
                break;
            }
        }
    });
    rt.block_on(tally::sleep(Duration::from_millis(10)));
    let baseline = (rt.stats().live, probe::open_fds()?);
    println!(
        "baseline: {} live tasks, {} open fds",
        baseline.0, baseline.1
    );

    let start = Instant::now();
    let (peak, last_outcome) = rt.block_on(async {
        let burst = Nursery::builder().name("burst").cap(2_000).build();
        let mut peak = (0, 0);
        let mut next_print = Instant::now();
        for i in 0..spike {
            let _ = burst
                .spawn(async move {
                    let stream = async_io::Async::<TcpStream>::connect(address).await?;
                    tally::sleep(Duration::from_millis(1 + i % 5)).await;
                    drop(stream);
                    Ok::<_, std::io::Error>(())
                })
                .await;
            if Instant::now() >= next_print {
                let fds = probe::open_fds().unwrap_or(0);
                let live = rt.stats().live;
                peak = (peak.0.max(live), peak.1.max(fds));
                println!("{:>7.1?} live {live:>5}  fds {fds:>5}", start.elapsed());
                next_print = Instant::now() + Duration::from_millis(100);
            }
        }
        let stats = burst.join().await;
        println!(
            "burst done: {} completed, {} failed, {} panicked, {} cancelled",
            stats.completed, stats.failed, stats.panicked, stats.cancelled
        );
        (peak, Instant::now())
    });
    // Wait (bounded) for the runtime's counts to come back to the baseline.
    while rt.stats().live != baseline.0 && last_outcome.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let back = last_outcome.elapsed();
    let last = (rt.stats().live, probe::open_fds()?);
    println!(
        "live tasks: baseline {} peak {} final {} (back in {back:?}); fds: baseline {} peak {} final {}",
        baseline.0, peak.0, last.0, baseline.1, peak.1, last.1
    );
    service.cancel();
    let report = rt.shutdown(Duration::from_secs(1));
    println!("{report}");
    drop(acceptor);
    if last.0 != baseline.0 {
        return Err("tasks did not come back to their baseline".into());
    }
    Ok(())
}
