//! The HTTP/1.1 client against tally-harness's enrichment server on a real
//! loopback socket: the server counts connections and requests, and records
//! any request that arrived on a connection that should no longer be reused.

use std::time::Duration;

use tally::protocols::http1::{encode_path_segment, Connection, Idle, Options, Request, Url};
use tally::Runtime;
use tally_harness::enrich::{EnrichConfig, EnrichServer, Fault, FaultKind};

fn options() -> Options {
    Options {
        head_timeout: Duration::from_millis(500),
        body_idle_timeout: Duration::from_millis(500),
        ..Options::default()
    }
}

fn symbol_target(symbol: &str) -> String {
    format!("/v1/symbols/{}", encode_path_segment(symbol))
}

#[test]
fn ten_thousand_requests_over_keep_alive_use_one_connection_counted_by_the_server() {
    let server = EnrichServer::start(EnrichConfig::new()).unwrap();
    let url = Url::parse(&server.url()).unwrap();
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(url.origin(), options()).await.unwrap();
        for i in 0..10_000 {
            let symbol = ["MSFT", "AAPL", "^GSPC", "IBM"][i % 4];
            let target = if i % 10 == 0 {
                format!("{}?chunked=1", symbol_target(symbol))
            } else {
                symbol_target(symbol)
            };
            let response = conn
                .request(&Request::get(target), 64 * 1024)
                .await
                .unwrap();
            assert_eq!(response.head.status, 200);
            let body = std::str::from_utf8(&response.body).unwrap();
            assert!(body.contains("\"company_name\""), "{body}");
            if symbol == "^GSPC" {
                assert!(body.contains("\"market_cap\":null"), "{body}");
            }
        }
        assert!(conn.is_reusable());
        assert_eq!(conn.exchanges(), 10_000);
        conn.close();
    });
    let stats = server.stats();
    assert_eq!(stats.requests, 10_000);
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(server.reuse_violations(), 0);
}

#[test]
fn each_transport_fault_gives_its_typed_error_and_its_connection_is_never_reused() {
    let server = EnrichServer::start(
        EnrichConfig::new()
            .fault_for("DELAY", Fault::Delay(Duration::from_secs(3)))
            .fault_for("MALFORMED", Fault::MalformedStatusLine)
            .fault_for("TRUNCATED", Fault::TruncatedBody)
            .fault_for("BADCHUNK", Fault::BadChunkSize)
            .fault_for("RESET", Fault::Reset)
            .linger(Duration::from_millis(500)),
    )
    .unwrap();
    let url = Url::parse(&server.url()).unwrap();
    let rt = Runtime::builder().workers(1).build().unwrap();
    type Check = fn(&tally::protocols::http1::Error) -> bool;
    let cases: [(&str, Check); 5] = [
        ("DELAY", |e| e.timeout_stage() == Some("response head")),
        ("MALFORMED", |e| e.is_malformed()),
        ("TRUNCATED", |e| e.is_closed()),
        ("BADCHUNK", |e| e.is_framing()),
        ("RESET", |e| {
            e.io_kind() == Some(std::io::ErrorKind::ConnectionReset) || e.is_closed()
        }),
    ];
    rt.block_on(async {
        for (symbol, check) in cases {
            let mut conn = Connection::connect(url.origin(), options()).await.unwrap();
            // A good exchange first: the connection was fine before the fault.
            let ok = conn
                .request(&Request::get(symbol_target("MSFT")), 4096)
                .await
                .unwrap();
            assert_eq!(ok.head.status, 200);
            let e = conn
                .request(&Request::get(symbol_target(symbol)), 4096)
                .await
                .unwrap_err();
            assert!(check(&e), "{symbol}: {e}");
            assert!(!conn.is_reusable(), "{symbol}");
            let again = conn
                .request(&Request::get(symbol_target("MSFT")), 4096)
                .await
                .unwrap_err();
            assert!(again.is_unusable(), "{symbol}: {again}");
            conn.close();
        }
        // Let the server's lingering connections run out.
        tally::sleep(Duration::from_millis(600)).await;
    });
    let stats = server.stats();
    for kind in [
        FaultKind::Delay,
        FaultKind::MalformedStatusLine,
        FaultKind::TruncatedBody,
        FaultKind::BadChunkSize,
        FaultKind::Reset,
    ] {
        assert_eq!(stats.fault(kind), 1, "{kind:?}");
    }
    // The server saw no request on a connection that should have been dropped.
    assert_eq!(server.reuse_violations(), 0);
}

#[test]
fn a_500_with_a_full_body_and_invalid_json_leave_the_connection_reusable() {
    let server = EnrichServer::start(
        EnrichConfig::new()
            .fault_for("BROKEN", Fault::Status500)
            .fault_for("BUSY", Fault::Status503)
            .fault_for("GARBLED", Fault::InvalidJson),
    )
    .unwrap();
    let url = Url::parse(&server.url()).unwrap();
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(url.origin(), options()).await.unwrap();
        for (symbol, status) in [
            ("BROKEN", 500),
            ("BUSY", 503),
            ("GARBLED", 200),
            ("MSFT", 200),
        ] {
            let r = conn
                .request(&Request::get(symbol_target(symbol)), 4096)
                .await
                .unwrap();
            assert_eq!(r.head.status, status, "{symbol}");
            assert!(conn.is_reusable(), "{symbol}");
        }
        assert_eq!(conn.exchanges(), 4);
    });
    assert_eq!(server.stats().connections_accepted, 1);
    assert_eq!(server.reuse_violations(), 0);
}

#[test]
fn a_keep_alive_connection_closed_by_the_server_after_a_response_is_detected_while_idle() {
    let server =
        EnrichServer::start(EnrichConfig::new().fault_for("IBM", Fault::CloseAfterResponse))
            .unwrap();
    let url = Url::parse(&server.url()).unwrap();
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(async {
        let mut conn = Connection::connect(url.origin(), options()).await.unwrap();
        let r = conn
            .request(&Request::get(symbol_target("IBM")), 4096)
            .await
            .unwrap();
        assert_eq!(r.head.status, 200);
        // The response did not say it closes; the idle check finds out.
        tally::sleep(Duration::from_millis(100)).await;
        assert_eq!(conn.check_idle(), Idle::ClosedByServer);
        assert!(!conn.is_reusable());
    });
    let stats = server.stats();
    assert_eq!((stats.connections_accepted, stats.requests), (1, 1));
}
