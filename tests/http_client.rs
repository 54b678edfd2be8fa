//! The HTTP/1.1 client against real sockets on 127.0.0.1: a scripted server
//! (a thread that reads each request and writes the exact bytes a case calls
//! for) covers every framing and every fault, byte for byte.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tally::protocols::http1::{Connection, Idle, Options, Origin, Request};
use tally::Runtime;

/// What the scripted server does with one request.
#[derive(Clone)]
enum Reply {
    /// Write these bytes, keep the connection.
    Bytes(&'static [u8]),
    /// Write these bytes, then close.
    BytesThenClose(&'static [u8]),
    /// Write these bytes, then stall (keep the socket open, send nothing).
    BytesThenStall(&'static [u8]),
    /// Wait for the request body, answer 100 Continue first when asked.
    Continue,
    /// Close at once (after reading the request).
    Close,
}

struct Script {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// Serves `replies` in order, one per request, over however many connections
/// the client opens.
fn serve(replies: Vec<Reply>) -> Script {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let replies = Arc::new(Mutex::new(replies.into_iter()));
    let (c, r) = (connections.clone(), requests.clone());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            c.fetch_add(1, Ordering::SeqCst);
            let replies = replies.clone();
            let requests = r.clone();
            thread::spawn(move || handle(stream, replies, requests));
        }
    });
    Script {
        address,
        connections,
        requests,
    }
}

fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&raw).into_owned())
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn handle(
    mut stream: TcpStream,
    replies: Arc<Mutex<std::vec::IntoIter<Reply>>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while let Some(head) = read_request(&mut stream) {
        let reply = replies.lock().unwrap().next();
        let mut body = vec![0u8; content_length(&head)];
        let expect = head.contains("Expect: 100-continue");
        if !expect && stream.read_exact(&mut body).is_err() {
            return;
        }
        requests.lock().unwrap().push(head);
        match reply {
            None | Some(Reply::Close) => return,
            Some(Reply::Bytes(b)) => stream.write_all(b).unwrap(),
            Some(Reply::BytesThenClose(b)) => {
                let _ = stream.write_all(b);
                return;
            }
            Some(Reply::BytesThenStall(b)) => {
                let _ = stream.write_all(b);
                thread::sleep(Duration::from_secs(5));
                return;
            }
            Some(Reply::Continue) => {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                stream.read_exact(&mut body).unwrap();
                let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                stream.write_all(answer.as_bytes()).unwrap();
                stream.write_all(&body).unwrap();
            }
        }
    }
}

fn origin(script: &Script) -> Origin {
    Origin {
        host: "127.0.0.1".into(),
        port: script.address.port(),
    }
}

fn quick() -> Options {
    Options {
        head_timeout: Duration::from_millis(500),
        body_idle_timeout: Duration::from_millis(500),
        ..Options::default()
    }
}

#[test]
fn every_framing_reads_its_body_and_keeps_or_ends_the_connection_as_rfc_9112_says() {
    let script = serve(vec![
        Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        Reply::Bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
        Reply::Bytes(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Reply::Bytes(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
        Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
        Reply::Bytes(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        Reply::Continue,
        Reply::Bytes(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"),
        Reply::BytesThenClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end"),
    ]);
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(&origin(&script), quick())
            .await
            .unwrap();
        let r = conn.request(&Request::get("/length"), 1024).await.unwrap();
        assert_eq!((r.head.status, &r.body[..]), (200, &b"hello"[..]));
        assert!(conn.is_reusable());
        let r = conn.request(&Request::get("/chunked"), 1024).await.unwrap();
        assert_eq!(&r.body[..], b"hello world");
        assert!(conn.is_reusable());
        let r = conn.request(&Request::get("/204"), 1024).await.unwrap();
        assert_eq!((r.head.status, r.body.len()), (204, 0));
        let r = conn.request(&Request::get("/304"), 1024).await.unwrap();
        assert_eq!((r.head.status, r.body.len()), (304, 0));
        let r = conn.request(&Request::head("/head"), 1024).await.unwrap();
        assert_eq!((r.head.status, r.body.len()), (200, 0));
        let r = conn
            .request(&Request::new("POST", "/interim").body("x"), 1024)
            .await
            .unwrap();
        assert_eq!(&r.body[..], b"ok");
        let r = conn
            .request(
                &Request::new("POST", "/continue")
                    .body("payload")
                    .expect_continue(),
                1024,
            )
            .await
            .unwrap();
        assert_eq!(&r.body[..], b"payload");
        // A 500 with a whole body is an answer, not a fault: still reusable.
        let r = conn.request(&Request::get("/500"), 1024).await.unwrap();
        assert_eq!((r.head.status, &r.body[..]), (500, &b"oops"[..]));
        assert!(conn.is_reusable());
        // An open, quiet connection passes the idle check.
        assert_eq!(conn.check_idle(), Idle::Ready);
        // A close-delimited body is complete at EOF, and ends the connection.
        let r = conn.request(&Request::get("/close"), 1024).await.unwrap();
        assert_eq!(&r.body[..], b"until the end");
        assert!(!conn.is_reusable());
        assert_eq!(conn.exchanges(), 9);
    });
    // Every one of them over one connection.
    assert_eq!(script.connections.load(Ordering::SeqCst), 1);
    let requests = script.requests.lock().unwrap();
    assert!(requests[0].starts_with("GET /length HTTP/1.1\r\nHost: 127.0.0.1:"));
    assert!(requests[6].contains("Expect: 100-continue"));
}

#[test]
fn each_transport_fault_gives_its_typed_error_and_leaves_the_connection_unusable() {
    type Check = fn(&tally::protocols::http1::Error) -> bool;
    let cases: Vec<(Reply, Check)> = vec![
        (Reply::Bytes(b"HTTP/1.1 2OO OK\r\n\r\n"), |e| {
            e.is_malformed()
        }),
        (Reply::Bytes(b"garbage that is not http\r\n\r\n"), |e| {
            e.is_malformed()
        }),
        (
            Reply::BytesThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"),
            |e| e.is_closed(),
        ),
        (
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            ),
            |e| e.is_framing(),
        ),
        (
            Reply::BytesThenClose(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            ),
            |e| e.is_framing(),
        ),
        (
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nhi",
            ),
            |e| e.is_framing(),
        ),
        (
            Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi"),
            |e| e.is_framing(),
        ),
        (
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
            ),
            |e| e.is_framing(),
        ),
        (
            Reply::BytesThenStall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            |e| e.timeout_stage() == Some("body"),
        ),
        (Reply::BytesThenStall(b"HTTP/1.1 200 O"), |e| {
            e.timeout_stage() == Some("response head")
        }),
        (Reply::Close, |e| e.is_closed()),
    ];
    let rt = Runtime::builder().workers(1).build().unwrap();
    for (i, (reply, check)) in cases.into_iter().enumerate() {
        let script = serve(vec![
            reply,
            Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]);
        rt.block_on(async {
            let mut conn = Connection::connect(&origin(&script), quick())
                .await
                .unwrap();
            let e = conn
                .request(&Request::get("/fault"), 1024)
                .await
                .unwrap_err();
            assert!(check(&e), "case {i}: {e}");
            assert!(e.is_transport(), "case {i}");
            assert!(!conn.is_reusable(), "case {i}");
            let again = conn
                .request(&Request::get("/again"), 1024)
                .await
                .unwrap_err();
            assert!(again.is_unusable(), "case {i}: {again}");
        });
        // The connection was never used again: the server saw one request.
        assert!(script.requests.lock().unwrap().len() <= 1, "case {i}");
    }
}

#[test]
fn a_body_over_the_cap_or_the_drain_budget_retires_the_connection_and_a_small_one_is_drained() {
    let script = serve(vec![
        Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
        Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
        Reply::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
    ]);
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(&origin(&script), quick())
            .await
            .unwrap();
        let head = conn.send(&Request::get("/small")).await.unwrap();
        assert_eq!(head.status, 200);
        assert!(conn.is_body_pending() && !conn.is_reusable());
        assert!(conn.drain(64, Duration::from_secs(1)).await.unwrap());
        assert!(conn.is_reusable());

        conn.send(&Request::get("/large")).await.unwrap();
        assert!(!conn.drain(4, Duration::from_secs(1)).await.unwrap());
        assert!(!conn.is_reusable());

        let mut conn = Connection::connect(&origin(&script), quick())
            .await
            .unwrap();
        let e = conn.request(&Request::get("/capped"), 5).await.unwrap_err();
        assert!(e.is_too_large(), "{e}");
        assert!(!conn.is_reusable());
    });
}

#[test]
fn an_idle_connection_closed_by_the_server_is_detected_before_reuse() {
    let script = serve(vec![Reply::BytesThenClose(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )]);
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(&origin(&script), quick())
            .await
            .unwrap();
        let r = conn
            .request(&Request::get("/then-close"), 1024)
            .await
            .unwrap();
        assert_eq!(&r.body[..], b"ok");
        // The response said nothing about closing: the connection looks reusable...
        assert!(conn.is_reusable());
        tally::sleep(Duration::from_millis(100)).await;
        // ...until the check sees the server's FIN.
        assert_eq!(conn.check_idle(), Idle::ClosedByServer);
        assert!(!conn.is_reusable());
        let e = conn.request(&Request::get("/x"), 1024).await.unwrap_err();
        assert!(e.is_unusable());
    });
}

#[test]
fn a_request_that_meets_a_closed_connection_says_no_response_byte_arrived() {
    let script = serve(vec![Reply::Close]);
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(&origin(&script), quick())
            .await
            .unwrap();
        let e = conn.request(&Request::get("/x"), 1024).await.unwrap_err();
        assert!(e.is_closed() && e.is_transient(), "{e}");
        assert!(conn.failed_before_response());
    });
}

#[test]
fn a_dropped_exchange_leaves_the_connection_unusable() {
    let script = serve(vec![Reply::BytesThenStall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
    )]);
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(&origin(&script), quick())
            .await
            .unwrap();
        let cut = tally::timeout(
            Duration::from_millis(100),
            conn.request(&Request::get("/slow"), 1024),
        )
        .await;
        assert!(cut.is_err());
        assert!(!conn.is_reusable());
        assert!(conn
            .request(&Request::get("/next"), 1024)
            .await
            .unwrap_err()
            .is_unusable());
    });
}

#[test]
fn requests_that_would_inject_headers_are_refused_before_sending() {
    let script = serve(vec![Reply::Bytes(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )]);
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(&origin(&script), quick())
            .await
            .unwrap();
        let e = conn
            .request(&Request::get("/x").header("X-Id", "1\r\nEvil: yes"), 1024)
            .await
            .unwrap_err();
        assert!(e.is_url(), "{e}");
        // Nothing was sent: the connection is still fine.
        assert!(conn.is_reusable());
        assert_eq!(
            conn.request(&Request::get("/ok"), 1024)
                .await
                .unwrap()
                .head
                .status,
            200
        );
    });
    assert_eq!(script.requests.lock().unwrap().len(), 1);
}

#[test]
fn ipv6_loopback_and_refused_connections() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        // A port nobody listens on.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = Connection::connect(
            &Origin {
                host: "127.0.0.1".into(),
                port,
            },
            quick(),
        )
        .await
        .unwrap_err();
        assert!(e.is_connect(), "{e}");
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            let port = v6.local_addr().unwrap().port();
            let server = thread::spawn(move || {
                let (mut s, _) = v6.accept().unwrap();
                let head = read_request(&mut s).unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6")
                    .unwrap();
                head
            });
            let url =
                tally::protocols::http1::Url::parse(&format!("http://[::1]:{port}/six")).unwrap();
            let mut conn = Connection::connect(url.origin(), quick()).await.unwrap();
            let r = conn.request(&Request::get(url.target()), 64).await.unwrap();
            assert_eq!(&r.body[..], b"v6");
            let head = server.join().unwrap();
            assert!(head.contains(&format!("Host: [::1]:{port}")), "{head}");
        }
    });
}
