//! The fault proxy on real loopback sockets, in front of an echo server on
//! plain threads and in front of the enrichment server.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tally_harness::enrich::{EnrichConfig, EnrichServer};
use tally_harness::proxy::{FaultProxy, ProxyMode, ProxyStats};

const GRACE: Duration = Duration::from_secs(2);

/// An echo server on threads of its own: each connection gets back what it
/// sends, until it closes. It lives as long as the test process.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn connect(proxy: &FaultProxy, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
}

/// Reads exactly `n` bytes.
fn read_n(stream: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads once: `Ok(0)` is EOF.
fn read_once(stream: &mut TcpStream) -> std::io::Result<usize> {
    let mut buf = [0u8; 64];
    stream.read(&mut buf)
}

fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Waits up to 3 s for the proxy's counters to satisfy `check`.
fn wait_for(proxy: &FaultProxy, check: impl Fn(&ProxyStats) -> bool) -> ProxyStats {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = proxy.stats();
        if check(&stats) || Instant::now() > deadline {
            return stats;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_proxy_forwards_bytes_both_ways() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut stream = connect(&proxy, Duration::from_secs(5));
    stream.write_all(b"hello").unwrap();
    assert_eq!(read_n(&mut stream, 5).unwrap(), b"hello");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&big).unwrap();
    assert_eq!(read_n(&mut stream, big.len()).unwrap(), big);
    let stats = wait_for(&proxy, |s| s.bytes_down == 200_005);
    assert_eq!((stats.bytes_up, stats.bytes_down), (200_005, 200_005));
    assert_eq!((stats.connections_accepted, stats.connections_open), (1, 1));
    // The client's half-close reaches the server, whose close comes back.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_once(&mut stream).unwrap(), 0);
    let stats = wait_for(&proxy, |s| s.connections_open == 0);
    assert_eq!(stats.connections_open, 0);
    let report = proxy.shutdown(GRACE);
    assert!(report.runtime.is_clean(), "{}", report.runtime);
}

#[test]
fn an_http_request_through_the_proxy_reaches_the_enrichment_server() {
    let server = EnrichServer::start(EnrichConfig::new()).unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    assert!(proxy.url().starts_with("http://127.0.0.1:"));
    let mut stream = connect(&proxy, Duration::from_secs(5));
    stream
        .write_all(b"GET /v1/symbols/%5EGSPC HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with(r#"{"company_name":"S&P 500 Index","sector":"Index","market_cap":null}"#)
    );
    assert_eq!(server.stats().requests, 1);
}

#[test]
fn delay_holds_each_chunk() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut stream = connect(&proxy, Duration::from_secs(5));
    proxy.set_mode(ProxyMode::Delay(Duration::from_millis(150)));
    assert_eq!(proxy.mode(), ProxyMode::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    stream.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut stream, 4).unwrap(), b"ping");
    // Once on the way up, once on the way down.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn stall_stops_the_bytes_until_forwarding_resumes() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut stream = connect(&proxy, Duration::from_millis(300));
    stream.write_all(b"one").unwrap();
    assert_eq!(read_n(&mut stream, 3).unwrap(), b"one");
    proxy.set_mode(ProxyMode::Stall);
    stream.write_all(b"two").unwrap();
    let err = read_once(&mut stream).expect_err("no bytes while stalled");
    assert!(is_timeout(err.kind()), "{err:?}");
    assert_eq!(proxy.stats().connections_open, 1, "the sockets stay open");
    proxy.set_mode(ProxyMode::Forward);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(read_n(&mut stream, 3).unwrap(), b"two");
}

#[test]
fn cut_all_closes_every_current_connection() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut streams: Vec<TcpStream> = (0..2)
        .map(|_| connect(&proxy, Duration::from_secs(2)))
        .collect();
    for stream in &mut streams {
        stream.write_all(b"hi").unwrap();
        assert_eq!(read_n(stream, 2).unwrap(), b"hi");
    }
    assert_eq!(proxy.cut_all(), 2);
    for stream in &mut streams {
        match read_once(stream) {
            Ok(0) => {}
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
            Ok(n) => panic!("read {n} bytes from a cut connection"),
        }
    }
    let stats = wait_for(&proxy, |s| s.connections_open == 0);
    assert_eq!((stats.connections_cut, stats.connections_open), (2, 0));
    // New connections are forwarded again.
    let mut stream = connect(&proxy, Duration::from_secs(5));
    stream.write_all(b"again").unwrap();
    assert_eq!(read_n(&mut stream, 5).unwrap(), b"again");
}

#[test]
fn refuse_closes_new_connections_at_once_and_spares_current_ones() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let mut current = connect(&proxy, Duration::from_secs(5));
    current.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut current, 1).unwrap(), b"a");
    proxy.set_mode(ProxyMode::Refuse);
    let mut refused = connect(&proxy, Duration::from_secs(2));
    let started = Instant::now();
    match read_once(&mut refused) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} bytes from a refused connection"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(proxy.stats().connections_refused, 1);
    current.write_all(b"b").unwrap();
    assert_eq!(read_n(&mut current, 1).unwrap(), b"b");
    proxy.set_mode(ProxyMode::Forward);
    let mut fresh = connect(&proxy, Duration::from_secs(5));
    fresh.write_all(b"c").unwrap();
    assert_eq!(read_n(&mut fresh, 1).unwrap(), b"c");
    let stats = proxy.stats();
    assert_eq!(
        (stats.connections_accepted, stats.connections_refused),
        (3, 1)
    );
}

#[test]
fn an_unreachable_target_closes_the_client_connection() {
    // A port that was just free: nothing listens on it.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start(dead).unwrap();
    let mut stream = connect(&proxy, Duration::from_secs(2));
    match read_once(&mut stream) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} bytes"),
    }
    let stats = wait_for(&proxy, |s| s.upstream_failures == 1);
    assert_eq!((stats.upstream_failures, stats.connections_open), (1, 0));
}

#[test]
fn shutdown_closes_connections_and_stops_listening() {
    let proxy = FaultProxy::start(echo_server()).unwrap();
    let addr = proxy.addr();
    let mut stream = connect(&proxy, Duration::from_secs(2));
    stream.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut stream, 1).unwrap(), b"x");
    let report = proxy.shutdown(GRACE);
    assert!(report.runtime.is_clean(), "{}", report.runtime);
    assert_eq!(report.stats.connections_open, 0);
    match read_once(&mut stream) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} bytes"),
    }
    assert!(TcpStream::connect(addr).is_err());
}
