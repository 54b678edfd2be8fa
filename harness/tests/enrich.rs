//! The enrichment server against a hand-written HTTP/1.1 client on real
//! loopback sockets: routes, keep-alive, pipelining, each fault's exact
//! bytes, reuse violations, the seeded mix, latency, the connection cap.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use tally_harness::enrich::{
    EnrichConfig, EnrichServer, EnrichStats, Fault, FaultKind, Latency, RequestRecord,
};

const MSFT_JSON: &str = r#"{"company_name":"Microsoft Corporation","sector":"Information Technology","market_cap":3100000000000}"#;
const GSPC_JSON: &str = r#"{"company_name":"S&P 500 Index","sector":"Index","market_cap":null}"#;
const GRACE: Duration = Duration::from_secs(2);

fn start(config: EnrichConfig) -> EnrichServer {
    EnrichServer::start(config.linger(Duration::from_millis(800))).expect("start the server")
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// Waits up to 3 s for the server's counters to satisfy `check`.
fn wait_for(server: &EnrichServer, check: impl Fn(&EnrichStats) -> bool) -> EnrichStats {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = server.stats();
        if check(&stats) || Instant::now() > deadline {
            return stats;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A parsed answer.
#[derive(Debug)]
struct Response {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.status_line[9..12].parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// How reading an answer failed.
#[derive(Debug, PartialEq)]
enum Broken {
    /// The status line is not `HTTP/1.1 NNN ...`.
    StatusLine(String),
    /// EOF before `Content-Length` bytes: (promised, received).
    Truncated(usize, usize),
    /// A chunk-size line that is not hexadecimal.
    ChunkSize(String),
    /// EOF before any byte of an answer.
    Eof,
    /// The read failed (`ECONNRESET` is `ConnectionReset`).
    Io(ErrorKind),
}

/// A hand-written client connection: a socket and the bytes read past the
/// last answer.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(server: &EnrichServer) -> Client {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).unwrap();
    }

    /// Reads more bytes; `Ok(false)` at EOF.
    fn fill(&mut self) -> Result<bool, Broken> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) => Err(Broken::Io(e.kind())),
        }
    }

    /// Takes one CRLF-terminated line.
    fn line(&mut self) -> Result<String, Broken> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..i].to_vec()).unwrap();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if !self.fill()? {
                return Err(Broken::Eof);
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, Broken> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(Broken::Truncated(n, self.buf.len()));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_response(&mut self) -> Result<Response, Broken> {
        let status_line = self.line()?;
        let valid = status_line.len() >= 13
            && status_line.starts_with("HTTP/1.1 ")
            && status_line.as_bytes()[9..12].iter().all(u8::is_ascii_digit)
            && status_line.as_bytes()[12] == b' ';
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        if !valid {
            return Err(Broken::StatusLine(status_line));
        }
        let mut response = Response {
            status_line,
            headers,
            body: Vec::new(),
        };
        if response.header("transfer-encoding") == Some("chunked") {
            loop {
                let size_line = self.line()?;
                let size = usize::from_str_radix(&size_line, 16)
                    .map_err(|_| Broken::ChunkSize(size_line.clone()))?;
                if size == 0 {
                    assert_eq!(self.line()?, "", "no trailers");
                    break;
                }
                let data = self.take(size)?;
                response.body.extend_from_slice(&data);
                assert_eq!(self.line()?, "", "CRLF after chunk data");
            }
        } else {
            let len: usize = response.header("content-length").unwrap().parse().unwrap();
            response.body = self.take(len)?;
        }
        Ok(response)
    }

    fn request(&mut self, path: &str) -> Result<Response, Broken> {
        self.send(&get(path));
        self.read_response()
    }

    /// Reads until EOF, an error, or `wait` without bytes.
    fn rest(&mut self, wait: Duration) -> (Vec<u8>, io::Result<()>) {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut got = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => return (got, Err(e)),
            }
        }
    }

    /// Asserts that the server closed the connection (EOF, nothing more).
    fn assert_eof(&mut self) {
        let (rest, end) = self.rest(Duration::from_secs(2));
        assert!(rest.is_empty(), "bytes after the answer: {rest:?}");
        assert!(end.is_ok(), "expected EOF, got {end:?}");
    }

    /// Asserts that the connection stays open and silent for `wait`.
    fn assert_open(&mut self, wait: Duration) {
        let (rest, end) = self.rest(wait);
        assert!(rest.is_empty(), "bytes after the answer: {rest:?}");
        let kind = end.expect_err("the connection was closed").kind();
        assert!(
            matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{kind:?}"
        );
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("a JSON body")
}

#[test]
fn a_known_symbol_gets_200_and_its_exact_json() {
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    let response = client.request("/v1/symbols/MSFT").unwrap();
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.header("content-length"),
        Some(MSFT_JSON.len().to_string().as_str())
    );
    assert_eq!(response.header("connection"), None);
    assert_eq!(response.text(), MSFT_JSON);
    let value = json(&response.body);
    assert_eq!(value["company_name"], "Microsoft Corporation");
    assert!(value["market_cap"].is_number());
    let report = server.shutdown(GRACE);
    assert_eq!(report.stats.requests, 1);
    assert_eq!(report.stats.status(200), 1);
    assert_eq!(report.stats.faults_total(), 0);
    assert!(report.runtime.is_clean(), "{}", report.runtime);
}

#[test]
fn a_percent_encoded_symbol_is_decoded() {
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    let response = client.request("/v1/symbols/%5EGSPC").unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text(), GSPC_JSON);
    assert!(json(&response.body)["market_cap"].is_null());
    assert_eq!(server.records()[0].symbol, "^GSPC");
}

#[test]
fn unknown_symbols_and_paths_get_a_404_and_the_connection_stays_usable() {
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    let response = client.request("/v1/symbols/NOPE").unwrap();
    assert_eq!(response.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(
        response.text(),
        r#"{"error":"unknown symbol","symbol":"NOPE"}"#
    );
    let response = client.request("/v2/nothing").unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.text(), r#"{"error":"not found"}"#);
    let response = client.request("/v1/symbols/%E").unwrap();
    assert_eq!(response.status(), 400);
    client.send("DELETE /v1/symbols/MSFT HTTP/1.1\r\n\r\n");
    assert_eq!(client.read_response().unwrap().status(), 405);
    assert_eq!(client.request("/v1/symbols/MSFT").unwrap().status(), 200);
    let stats = server.stats();
    assert_eq!((stats.status(404), stats.status(400)), (2, 1));
    assert_eq!((stats.status(405), stats.status(200)), (1, 1));
    assert_eq!(stats.connections_accepted, 1);
}

#[test]
fn a_hundred_requests_on_one_keep_alive_connection_count_as_one_connection() {
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    let symbols = ["MSFT", "AMZN", "IBM", "GOOG", "AAPL"];
    for i in 0..100 {
        let response = client
            .request(&format!("/v1/symbols/{}", symbols[i % 5]))
            .unwrap();
        assert_eq!(response.status(), 200, "request {i}");
    }
    let stats = server.stats();
    assert_eq!(stats.requests, 100);
    assert_eq!(stats.status(200), 100);
    assert_eq!(stats.connections_accepted, 1);
    assert_eq!(stats.connections_open, 1);
    drop(client);
    let stats = wait_for(&server, |s| s.connections_open == 0);
    assert_eq!(stats.connections_open, 0);
    assert_eq!(stats.reuse_violations, 0);
}

#[test]
fn connection_close_is_answered_in_kind_and_the_server_closes() {
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    client.send("GET /v1/symbols/IBM HTTP/1.1\r\nConnection: close\r\n\r\n");
    let response = client.read_response().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("connection"), Some("close"));
    client.assert_eof();

    // HTTP/1.0 closes by default...
    let mut client = Client::connect(&server);
    client.send("GET /v1/symbols/IBM HTTP/1.0\r\n\r\n");
    let response = client.read_response().unwrap();
    assert_eq!(response.header("connection"), Some("close"));
    client.assert_eof();

    // ...and stays open when asked to.
    let mut client = Client::connect(&server);
    for _ in 0..2 {
        client.send("GET /v1/symbols/IBM HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = client.read_response().unwrap();
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    drop(client);
    let stats = wait_for(&server, |s| s.connections_open == 0);
    assert_eq!(stats.connections_accepted, 3);
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.reuse_violations, 0);
}

#[test]
fn pipelined_requests_are_answered_in_order_and_bodies_are_skipped() {
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    let batch = format!(
        "{}GET /v1/symbols/IBM HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world{}{}",
        get("/v1/symbols/MSFT"),
        get("/v1/symbols/NOPE"),
        get("/v1/symbols/%5EGSPC"),
    );
    client.send(&batch);
    let got: Vec<_> = (0..4)
        .map(|_| {
            let r = client.read_response().unwrap();
            (r.status(), json(&r.body))
        })
        .collect();
    assert_eq!(got[0], (200, json(MSFT_JSON.as_bytes())));
    assert_eq!(got[1].0, 200);
    assert_eq!(
        got[1].1["company_name"],
        "International Business Machines Corporation"
    );
    assert_eq!(got[2].0, 404);
    assert_eq!(got[3], (200, json(GSPC_JSON.as_bytes())));
    assert_eq!(server.stats().requests, 4);
}

#[test]
fn chunked_answers_decode_to_the_same_json() {
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    let response = client.request("/v1/symbols/MSFT?chunked=1").unwrap();
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.text(), MSFT_JSON);
    // Without the query, the same server frames with Content-Length.
    let response = client.request("/v1/symbols/MSFT").unwrap();
    assert_eq!(response.header("transfer-encoding"), None);

    let chunked = start(EnrichConfig::new().chunked(true));
    let mut client = Client::connect(&chunked);
    for _ in 0..3 {
        let response = client.request("/v1/symbols/%5EGSPC").unwrap();
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));
        assert_eq!(response.text(), GSPC_JSON);
    }
}

#[test]
fn a_bad_request_head_gets_400_and_a_close() {
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    client.send("NOT HTTP\0\r\n\r\n");
    let response = client.read_response().unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.header("connection"), Some("close"));
    client.assert_eof();
    assert_eq!(server.stats().reuse_violations, 0);
}

/// A server whose symbol `X` always gets `fault`, and a client that asked for it.
fn faulted(fault: Fault) -> (EnrichServer, Client) {
    let server = start(EnrichConfig::new().fault_for("MSFT", fault));
    let mut client = Client::connect(&server);
    client.send(&get("/v1/symbols/MSFT"));
    (server, client)
}

#[test]
fn status_faults_are_well_framed_and_keep_the_connection() {
    for (fault, line) in [
        (Fault::Status500, "HTTP/1.1 500 Internal Server Error"),
        (Fault::Status503, "HTTP/1.1 503 Service Unavailable"),
    ] {
        let (server, mut client) = faulted(fault);
        let response = client.read_response().unwrap();
        assert_eq!(response.status_line, line);
        assert!(json(&response.body)["error"].is_string());
        // Reusing the connection after a well-framed 5xx is fine.
        assert_eq!(client.request("/v1/symbols/IBM").unwrap().status(), 200);
        let stats = server.stats();
        assert_eq!(stats.fault(fault.kind()), 1);
        assert_eq!(stats.reuse_violations, 0);
    }
}

#[test]
fn a_malformed_status_line_has_no_code_and_the_connection_stays_open() {
    let (server, mut client) = faulted(Fault::MalformedStatusLine);
    assert_eq!(
        client.read_response().unwrap_err(),
        Broken::StatusLine("HTTP/1.1 OK".to_owned())
    );
    // The headers and body follow as usual; then nothing, and no FIN.
    assert_eq!(client.buf, MSFT_JSON.as_bytes());
    client.buf.clear();
    client.assert_open(Duration::from_millis(300));
    let stats = server.stats();
    assert_eq!(stats.fault(FaultKind::MalformedStatusLine), 1);
    assert!(stats.responses.is_empty(), "{:?}", stats.responses);
}

#[test]
fn a_truncated_body_promises_more_than_it_sends_then_eof() {
    let (server, mut client) = faulted(Fault::TruncatedBody);
    match client.read_response().unwrap_err() {
        Broken::Truncated(promised, received) => {
            assert_eq!(promised, MSFT_JSON.len());
            assert!(received < promised, "{received} < {promised}");
            assert_eq!(client.buf, MSFT_JSON.as_bytes()[..received]);
        }
        other => panic!("expected a truncated body, got {other:?}"),
    }
    assert_eq!(server.stats().fault(FaultKind::TruncatedBody), 1);
}

#[test]
fn a_bad_chunk_size_is_not_hexadecimal() {
    let (server, mut client) = faulted(Fault::BadChunkSize);
    assert_eq!(
        client.read_response().unwrap_err(),
        Broken::ChunkSize("zz".to_owned())
    );
    assert_eq!(server.stats().status(200), 1);
    assert_eq!(server.stats().fault(FaultKind::BadChunkSize), 1);
}

#[test]
fn invalid_json_is_well_framed_but_not_json() {
    let (server, mut client) = faulted(Fault::InvalidJson);
    let response = client.read_response().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<serde_json::Value>(&response.body).is_err());
    assert!(MSFT_JSON.starts_with(response.text()));
    // Well framed, so the connection may carry the next request.
    assert_eq!(client.request("/v1/symbols/IBM").unwrap().status(), 200);
    assert_eq!(server.stats().reuse_violations, 0);
}

#[test]
fn a_reset_fault_gives_econnreset() {
    let (server, mut client) = faulted(Fault::Reset);
    assert_eq!(
        client.read_response().unwrap_err(),
        Broken::Io(ErrorKind::ConnectionReset)
    );
    assert_eq!(server.stats().fault(FaultKind::Reset), 1);
    let stats = wait_for(&server, |s| s.connections_open == 0);
    assert_eq!(stats.connections_open, 0);
}

#[test]
fn close_after_response_sends_a_whole_keep_alive_answer_then_eof() {
    let (server, mut client) = faulted(Fault::CloseAfterResponse);
    let response = client.read_response().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("connection"), None);
    assert_eq!(response.text(), MSFT_JSON);
    client.assert_eof();
    assert_eq!(server.stats().fault(FaultKind::CloseAfterResponse), 1);
}

#[test]
fn a_delay_fault_holds_the_answer_and_sees_a_client_give_up() {
    let delay = Duration::from_millis(400);
    let (server, mut client) = faulted(Fault::Delay(delay));
    let started = Instant::now();
    let response = client.read_response().unwrap();
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(response.text(), MSFT_JSON);

    // A client that times out and closes is counted as having given up.
    let mut impatient = Client::connect(&server);
    impatient.send(&get("/v1/symbols/MSFT"));
    let (_, end) = impatient.rest(Duration::from_millis(100));
    assert!(end.is_err(), "timed out");
    drop(impatient);
    let stats = wait_for(&server, |s| s.delays_abandoned == 1);
    assert_eq!(stats.delays_abandoned, 1);
    assert_eq!(stats.reuse_violations, 0);
}

#[test]
fn a_request_after_an_answer_that_ended_reuse_is_a_violation() {
    // After a truncated body, on the same socket.
    let (server, mut client) = faulted(Fault::TruncatedBody);
    assert!(matches!(client.read_response(), Err(Broken::Truncated(..))));
    assert_eq!(server.reuse_violations(), 0);
    client.send(&get("/v1/symbols/IBM"));
    let stats = wait_for(&server, |s| s.reuse_violations == 1);
    assert_eq!(stats.reuse_violations, 1);
    // Nothing is answered on it.
    client.buf.clear();
    let (rest, _) = client.rest(Duration::from_secs(2));
    assert!(rest.is_empty());

    // After a bad chunk size and a malformed status line.
    for fault in [Fault::BadChunkSize, Fault::MalformedStatusLine] {
        let (server, mut client) = faulted(fault);
        assert!(client.read_response().is_err());
        client.send(&get("/v1/symbols/IBM"));
        let stats = wait_for(&server, |s| s.reuse_violations == 1);
        assert_eq!(stats.reuse_violations, 1, "{fault}");
    }

    // After `Connection: close`.
    let server = start(EnrichConfig::new());
    let mut client = Client::connect(&server);
    client.send("GET /v1/symbols/IBM HTTP/1.1\r\nConnection: close\r\n\r\n");
    client.read_response().unwrap();
    client.send(&get("/v1/symbols/IBM"));
    let stats = wait_for(&server, |s| s.reuse_violations == 1);
    assert_eq!(stats.reuse_violations, 1);

    // While a delayed answer is still due: the client timed out and reused.
    let (server, mut client) = faulted(Fault::Delay(Duration::from_millis(400)));
    thread::sleep(Duration::from_millis(100));
    client.send(&get("/v1/symbols/IBM"));
    let stale = client.read_response().unwrap();
    assert_eq!(stale.text(), MSFT_JSON, "the stale answer comes first");
    assert_eq!(server.reuse_violations(), 1);
}

/// What a client sees of one request on a fresh connection, as a word.
fn observe(server: &EnrichServer) -> String {
    let mut client = Client::connect(server);
    match client.request("/v1/symbols/AAPL") {
        Ok(r) if serde_json::from_slice::<serde_json::Value>(&r.body).is_err() => {
            format!("{} not-json", r.status())
        }
        Ok(r) => format!("{} {}", r.status(), r.header("connection").unwrap_or("-")),
        Err(Broken::StatusLine(_)) => "malformed".into(),
        Err(Broken::Truncated(..)) => "truncated".into(),
        Err(Broken::ChunkSize(_)) => "bad-chunk".into(),
        Err(Broken::Eof) => "eof".into(),
        Err(Broken::Io(kind)) => format!("{kind:?}"),
    }
}

fn run_mix(seed: u64) -> (Vec<String>, Vec<RequestRecord>, EnrichStats) {
    let config = EnrichConfig::new()
        .fault_percent(50.0)
        .mix(Fault::all(Duration::from_millis(30)))
        .seed(seed);
    let server = start(config);
    let seen: Vec<String> = (0..40).map(|_| observe(&server)).collect();
    let records = server.records();
    let report = server.shutdown(GRACE);
    (seen, records, report.stats)
}

#[test]
fn the_seeded_fault_mix_repeats_with_the_same_seed() {
    let (seen_a, records_a, stats_a) = run_mix(7);
    let (seen_b, records_b, stats_b) = run_mix(7);
    assert_eq!(records_a, records_b);
    assert_eq!(seen_a, seen_b);
    assert_eq!(stats_a.faults, stats_b.faults);
    let faults = stats_a.faults_total();
    assert!((5..=35).contains(&faults), "{faults} faults in 40 at 50 %");
    assert!(
        stats_a.faults.len() >= 5,
        "several kinds: {:?}",
        stats_a.faults
    );
    // What the client saw matches the fault the server says it injected.
    for (record, seen) in records_a.iter().zip(&seen_a) {
        let expected = match record.fault.map(|f| f.kind()) {
            None | Some(FaultKind::Delay) | Some(FaultKind::CloseAfterResponse) => "200 -",
            Some(FaultKind::Status500) => "500 -",
            Some(FaultKind::Status503) => "503 -",
            Some(FaultKind::MalformedStatusLine) => "malformed",
            Some(FaultKind::TruncatedBody) => "truncated",
            Some(FaultKind::BadChunkSize) => "bad-chunk",
            Some(FaultKind::InvalidJson) => "200 not-json",
            Some(FaultKind::Reset) => "ConnectionReset",
        };
        assert_eq!(seen, expected, "request {}", record.index);
    }

    let (_, records_c, _) = run_mix(8);
    assert_ne!(records_a, records_c, "another seed, another sequence");
}

#[test]
fn a_fault_for_the_first_requests_only_lets_a_retry_succeed() {
    let server = start(EnrichConfig::new().fault_for_first("IBM", Fault::Status503, 2));
    let mut client = Client::connect(&server);
    let statuses: Vec<u16> = (0..4)
        .map(|_| client.request("/v1/symbols/IBM").unwrap().status())
        .collect();
    assert_eq!(statuses, [503, 503, 200, 200]);
}

#[test]
fn latency_delays_every_answer() {
    let server = start(EnrichConfig::new().latency(Latency::Fixed(Duration::from_millis(150))));
    let mut client = Client::connect(&server);
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(client.request("/v1/symbols/MSFT").unwrap().status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }
    let min = Duration::from_millis(60);
    let server = start(EnrichConfig::new().latency(Latency::Uniform {
        min,
        max: Duration::from_millis(120),
    }));
    let mut client = Client::connect(&server);
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(client.request("/v1/symbols/MSFT").unwrap().status(), 200);
        assert!(started.elapsed() >= min);
    }
}

#[test]
fn the_connection_cap_holds_new_connections_until_one_ends() {
    let server = start(EnrichConfig::new().max_connections(2));
    let mut first = Client::connect(&server);
    let mut second = Client::connect(&server);
    assert_eq!(first.request("/v1/symbols/MSFT").unwrap().status(), 200);
    assert_eq!(second.request("/v1/symbols/MSFT").unwrap().status(), 200);
    let mut third = Client::connect(&server);
    third.send(&get("/v1/symbols/MSFT"));
    third.assert_open(Duration::from_millis(300));
    assert_eq!(server.stats().connections_open, 2);
    drop(first);
    third
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(third.read_response().unwrap().status(), 200);
    assert_eq!(server.stats().connections_accepted, 3);
}

#[test]
fn shutdown_closes_open_connections_and_dropping_stops_the_server() {
    let server = start(EnrichConfig::new());
    let mut idle = Client::connect(&server);
    assert_eq!(idle.request("/v1/symbols/MSFT").unwrap().status(), 200);
    let mut waiting = Client::connect(&server);
    waiting.send("GET /v1/symbols/MSFT HTTP/1.1\r\n"); // half a head
    wait_for(&server, |s| s.connections_open == 2);
    let started = Instant::now();
    let report = server.shutdown(GRACE);
    assert!(started.elapsed() < Duration::from_secs(1), "{report:?}");
    assert!(report.runtime.is_clean(), "{}", report.runtime);
    assert_eq!(report.stats.connections_open, 0);
    idle.assert_eof();
    waiting.assert_eof();

    let server = start(EnrichConfig::new());
    let addr = server.addr();
    drop(server);
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}
