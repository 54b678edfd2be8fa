//! Shutdown of tasks blocked on socket reads, with the process's open file
//! descriptors counted before and after. Alone in its binary, since
//! `/proc/self/fd` is per process.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::AsyncReadExt;
use tally_executor::{Nursery, Runtime};

const TASKS: usize = 4_000;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// Lets this process open the 2 x 4,000 sockets even where the soft limit is low.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit).unwrap();
    }
}

#[test]
fn four_thousand_tasks_blocked_on_socket_reads_end_within_the_grace_and_release_every_fd() {
    raise_fd_limit();
    let rt = Runtime::builder().workers(2).build().unwrap();
    // async-io's reactor is process-wide and opens its own descriptors (epoll,
    // a notifier) on first use: start it before taking the baseline.
    rt.block_on(tally_executor::sleep(Duration::from_millis(1)));
    let before = open_fds();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    // The far ends stay open on this side: no EOF will ever wake the readers.
    let mut far_ends = Vec::with_capacity(TASKS);
    let mut near_ends = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let near = TcpStream::connect(address).unwrap();
        let (far, _) = listener.accept().unwrap();
        near_ends.push(near);
        far_ends.push(far);
    }
    let cleanups = Arc::new(AtomicUsize::new(0));
    let report = rt.block_on(async {
        let nursery = Nursery::builder().name("readers").cap(TASKS).build();
        for (i, near) in near_ends.drain(..).enumerate() {
            let cleanups = cleanups.clone();
            let mut stream = Async::new(near).unwrap();
            let _handle = nursery
                .spawn(async move {
                    let mut buf = [0u8; 64];
                    if i % 2 == 0 {
                        // Half watch the signal and end themselves...
                        let read = stream.read(&mut buf);
                        let outcome = futures_lite::future::or(async { Some(read.await) }, async {
                            tally_executor::cancelled().await;
                            None
                        })
                        .await;
                        assert!(outcome.is_none());
                        cleanups.fetch_add(1, Ordering::SeqCst);
                    } else {
                        // ...half ignore it and are dropped at the deadline.
                        let _ = stream.read(&mut buf).await;
                    }
                })
                .await
                .unwrap();
        }
        // Let every reader reach its read.
        tally_executor::sleep(Duration::from_millis(100)).await;
        assert_eq!(nursery.stats().live, TASKS as u64);
        let start = Instant::now();
        let report = nursery.shutdown(Duration::from_millis(100)).await;
        let took = start.elapsed();
        // The grace plus the drop wait, with room for a busy machine.
        assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
        assert_eq!(nursery.stats().live, 0);
        report
    });
    assert_eq!(report.cancelled_cleanly, (TASKS / 2) as u64, "{report}");
    assert_eq!(report.dropped, (TASKS / 2) as u64, "{report}");
    assert!(report.stuck.is_empty(), "{report}");
    assert_eq!(cleanups.load(Ordering::SeqCst), TASKS / 2);
    assert_eq!(rt.stats().live, 0);

    // Every near end was closed by its task's drop: the far ends read EOF.
    for far in far_ends.iter_mut().take(10) {
        far.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(far.read(&mut [0u8; 8]).unwrap(), 0);
    }
    drop(far_ends);
    drop(listener);
    assert_eq!(open_fds(), before);
}
