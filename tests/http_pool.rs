//! The HTTP pool against the enrichment server (and, for a stall mid-body, a
//! scripted server) on real loopback sockets: faults never lead to reuse,
//! in-use returns to 0, small remainders are drained and reused.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use tally::pool::http::{HttpConfig, HttpPool};
use tally::pool::Config;
use tally::protocols::http1::{encode_path_segment, Options, Request, Url};
use tally::{Nursery, Runtime};
use tally_harness::enrich::{EnrichConfig, EnrichServer, Fault};

fn config(drain_bytes: usize) -> HttpConfig {
    HttpConfig {
        per_origin: Config::named("enrich")
            .max_size(4)
            .housekeeping_interval(Duration::from_millis(20)),
        max_total: 8,
        options: Options {
            head_timeout: Duration::from_millis(300),
            body_idle_timeout: Duration::from_millis(300),
            ..Options::default()
        },
        drain_bytes,
        drain_time: Duration::from_millis(100),
        body_cap: 1 << 20,
    }
}

fn symbol(server: &EnrichServer, symbol: &str) -> Url {
    Url::parse(&format!(
        "{}/v1/symbols/{}",
        server.url(),
        encode_path_segment(symbol)
    ))
    .unwrap()
}

#[test]
fn every_transport_fault_closes_its_connection_and_in_use_returns_to_zero() {
    let server = EnrichServer::start(
        EnrichConfig::new()
            .fault_for("DELAY", Fault::Delay(Duration::from_secs(2)))
            .fault_for("MALFORMED", Fault::MalformedStatusLine)
            .fault_for("TRUNCATED", Fault::TruncatedBody)
            .fault_for("BADCHUNK", Fault::BadChunkSize)
            .fault_for("RESET", Fault::Reset)
            .linger(Duration::from_millis(300)),
    )
    .unwrap();
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = HttpPool::new(config(64 * 1024), &services);
        let good = Request::get(symbol(&server, "MSFT").target());
        for fault in ["DELAY", "MALFORMED", "TRUNCATED", "BADCHUNK", "RESET"] {
            // Warm a connection, then hit the fault on it.
            let (head, _) = pool.request(&symbol(&server, "MSFT"), &good).await.unwrap();
            assert_eq!(head.status, 200);
            let url = symbol(&server, fault);
            let e = pool
                .request(&url, &Request::get(url.target()))
                .await
                .unwrap_err();
            assert!(e.http().is_some_and(|h| h.is_transport()), "{fault}: {e}");
            let m = pool.metrics();
            assert_eq!(m.total.in_use, 0, "{fault}");
            assert_eq!(m.in_use_total, 0, "{fault}");
        }
        // The pool goes on serving, on fresh connections.
        for _ in 0..20 {
            let (head, body) = pool.request(&symbol(&server, "AAPL"), &good).await.unwrap();
            assert_eq!(head.status, 200);
            assert!(!body.is_empty());
        }
        let m = pool.metrics();
        assert!(m.total.discarded_broken >= 5, "{m:?}");
        assert_eq!((m.total.in_use, m.total.abandoned), (0, 0));
        tally::sleep(Duration::from_millis(400)).await;
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    assert_eq!(
        server.reuse_violations(),
        0,
        "a faulted connection was used again"
    );
}

#[test]
fn a_response_dropped_with_a_small_remainder_is_drained_and_its_connection_reused() {
    let server = EnrichServer::start(EnrichConfig::new()).unwrap();
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = HttpPool::new(config(64 * 1024), &services);
        let url = symbol(&server, "IBM");
        let response = pool.send(&url, &Request::get(url.target())).await.unwrap();
        assert_eq!(response.head.status, 200);
        drop(response);
        assert!(pool.settle(Duration::from_secs(1)).await);
        let m = pool.metrics();
        assert_eq!(
            (
                m.total.abandoned,
                m.total.idle,
                m.total.in_use,
                m.total.discarded_broken
            ),
            (1, 1, 0, 0)
        );
        // And an explicit discard drains without counting as abandoned.
        let response = pool.send(&url, &Request::get(url.target())).await.unwrap();
        response.discard().await;
        for _ in 0..10 {
            pool.request(&url, &Request::get(url.target()))
                .await
                .unwrap();
        }
        let m = pool.metrics();
        assert_eq!(
            (m.total.abandoned, m.total.created, m.total.idle),
            (1, 1, 1)
        );
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    let stats = server.stats();
    assert_eq!((stats.connections_accepted, stats.requests), (1, 12));
}

#[test]
fn a_response_dropped_with_more_than_the_drain_budget_unread_is_closed() {
    let server = EnrichServer::start(EnrichConfig::new()).unwrap();
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        // A budget smaller than any answer's body.
        let pool = HttpPool::new(config(8), &services);
        let url = symbol(&server, "GOOG");
        let response = pool.send(&url, &Request::get(url.target())).await.unwrap();
        drop(response);
        assert!(pool.settle(Duration::from_secs(1)).await);
        let m = pool.metrics();
        assert_eq!(
            (
                m.total.abandoned,
                m.total.discarded_broken,
                m.total.size,
                m.total.in_use
            ),
            (1, 1, 0, 0)
        );
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    assert_eq!(server.reuse_violations(), 0);
}

#[test]
fn a_timeout_mid_body_closes_the_connection() {
    // A server that sends half a body, then stalls.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
            .unwrap();
        // Hold the socket open past the client's body timeout, then see
        // whether the client ever sends another request on it.
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.read(&mut buf).unwrap_or(0)
    });
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = HttpPool::new(config(64 * 1024), &services);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/slow")).unwrap();
        let e = pool
            .request(&url, &Request::get(url.target()))
            .await
            .unwrap_err();
        assert_eq!(
            e.http().and_then(|h| h.timeout_stage()),
            Some("body"),
            "{e}"
        );
        let m = pool.metrics();
        assert_eq!(
            (m.total.in_use, m.total.size, m.total.discarded_broken),
            (0, 0, 1)
        );
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    // The client closed the connection and sent nothing more on it.
    assert_eq!(server.join().unwrap(), 0);
}

#[test]
fn an_idempotent_request_on_a_connection_closed_while_idle_is_caught_or_retried() {
    let server =
        EnrichServer::start(EnrichConfig::new().fault_for("IBM", Fault::CloseAfterResponse))
            .unwrap();
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(async {
        let services = Nursery::builder().name("services").build();
        let pool = HttpPool::new(config(64 * 1024), &services);
        for _ in 0..20 {
            // The server closes after each IBM answer; the next request must
            // still succeed: the stale connection is caught by the idle check
            // or retried once on a fresh one.
            let url = symbol(&server, "IBM");
            let (head, _) = pool
                .request(&url, &Request::get(url.target()))
                .await
                .unwrap();
            assert_eq!(head.status, 200);
        }
        let m = pool.metrics();
        assert_eq!(m.total.in_use, 0);
        assert!(m.total.created >= 2);
        pool.close(Duration::from_secs(1)).await;
        services.cancel();
    });
    assert_eq!(server.stats().requests, 20);
}
