//! The enrichment server's HTTP/1.1, sans-IO: request heads parsed from a
//! byte buffer (httparse), the route, and the exact bytes of each answer,
//! faults included. Only `conn.rs` touches sockets.

use super::config::Fault;
use super::symbols;

/// The largest request head accepted; a longer one gets a 400.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// The most request headers accepted; more get a 400.
const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RequestHead {
    /// Bytes of the head, up to and including the blank line.
    pub(crate) len: usize,
    pub(crate) method: String,
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    /// Whether the connection may carry another request after this one's
    /// answer (RFC 9112 section 9.3).
    pub(crate) keep_alive: bool,
    pub(crate) content_length: u64,
    /// A `Transfer-Encoding` was sent: the server does not take such bodies.
    pub(crate) has_transfer_encoding: bool,
}

/// The outcome of parsing the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// More bytes are needed.
    Partial,
    Complete(RequestHead),
    /// Not a request the server can frame: answer 400 and close.
    Invalid(&'static str),
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

pub(crate) fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Head::Invalid("request head too large")
        }
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => return Head::Invalid("too many headers"),
        Err(_) => return Head::Invalid("malformed request head"),
    };
    if len > MAX_HEAD {
        return Head::Invalid("request head too large");
    }
    let minor = req.version.unwrap_or(1);
    let (mut close, mut keep_alive_token) = (false, false);
    let mut content_length: Option<u64> = None;
    let mut has_transfer_encoding = false;
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            close |= has_token(header.value, "close");
            keep_alive_token |= has_token(header.value, "keep-alive");
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(header.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (parsed, content_length) {
                (None, _) => return Head::Invalid("bad content-length"),
                (Some(n), Some(m)) if n != m => return Head::Invalid("conflicting content-length"),
                (Some(n), _) => content_length = Some(n),
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            has_transfer_encoding = true;
        }
    }
    // HTTP/1.1 defaults to keep-alive; HTTP/1.0 closes unless asked not to.
    let keep_alive = !close && (minor >= 1 || keep_alive_token);
    Head::Complete(RequestHead {
        len,
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        minor,
        keep_alive,
        content_length: content_length.unwrap_or(0),
        has_transfer_encoding,
    })
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /v1/symbols/{symbol}`, the symbol decoded; `chunked` from the
    /// query `chunked=1` (or `chunked=true`).
    Symbol { symbol: String, chunked: bool },
    /// A path that is not `/v1/symbols/{symbol}`.
    NotFound,
    /// The symbol's percent-encoding is broken.
    BadEncoding,
}

pub(crate) fn route(target: &str) -> Route {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    let Some(raw) = path.strip_prefix("/v1/symbols/") else {
        return Route::NotFound;
    };
    if raw.is_empty() || raw.contains('/') {
        return Route::NotFound;
    }
    let chunked = query
        .split('&')
        .any(|pair| pair == "chunked=1" || pair == "chunked=true");
    match percent_decode(raw) {
        Some(symbol) if !symbol.is_empty() => Route::Symbol { symbol, chunked },
        _ => Route::BadEncoding,
    }
}

/// A JSON string literal for `s`.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The answer a request gets when no fault is injected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
    /// Sent chunked if the client can take it.
    pub(crate) chunked: bool,
}

pub(crate) fn answer(head: &RequestHead, chunked_default: bool) -> Answer {
    let error = |status, message: &str| Answer {
        status,
        body: format!(r#"{{"error":{}}}"#, json_string(message)),
        chunked: false,
    };
    let route = route(&head.target);
    if head.method != "GET" {
        return match route {
            Route::NotFound => error(404, "not found"),
            _ => error(405, "method not allowed"),
        };
    }
    match route {
        Route::NotFound => error(404, "not found"),
        Route::BadEncoding => error(400, "bad percent-encoding in the symbol"),
        Route::Symbol { symbol, chunked } => match symbols::lookup(&symbol) {
            Some(company) => Answer {
                status: 200,
                body: company.json(),
                chunked: chunked || chunked_default,
            },
            None => Answer {
                status: 404,
                body: format!(
                    r#"{{"error":"unknown symbol","symbol":{}}}"#,
                    json_string(&symbol)
                ),
                chunked: false,
            },
        },
    }
}

/// What happens to the connection once a reply is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// It may carry the next request.
    KeepAlive,
    /// The reply said `Connection: close`: half-close (FIN), then linger; a
    /// further request is a reuse violation.
    Close,
    /// The reply was broken so the client must drop the connection: linger
    /// (after a FIN when `fin`); a further request is a reuse violation.
    Poisoned { fin: bool },
    /// Close at once, without having said so ([`Fault::CloseAfterResponse`]).
    SilentClose,
    /// Close with `SO_LINGER` 0, which sends a RST ([`Fault::Reset`]).
    Reset,
}

/// The bytes of a reply, in pieces written (and flushed) one by one.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) pieces: Vec<Vec<u8>>,
    pub(crate) after: After,
    /// The status code on the status line, if it has a valid one.
    pub(crate) status: Option<u16>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// How the reply's `Connection` header reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnHeader {
    None,
    Close,
    KeepAlive,
}

fn head_bytes(status_line: &str, framing: &str, conn: ConnHeader, extra: &str) -> Vec<u8> {
    let conn = match conn {
        ConnHeader::None => "",
        ConnHeader::Close => "Connection: close\r\n",
        ConnHeader::KeepAlive => "Connection: keep-alive\r\n",
    };
    format!(
        "{status_line}\r\nServer: tally-harness-enrich\r\nContent-Type: application/json\r\n{framing}{conn}{extra}\r\n"
    )
    .into_bytes()
}

fn status_line(status: u16) -> String {
    format!("HTTP/1.1 {status} {}", reason(status))
}

/// The body in three chunks (fewer if it is short), each its own piece.
fn chunk_pieces(body: &[u8]) -> Vec<Vec<u8>> {
    let step = body.len().div_ceil(3).max(1);
    let mut pieces: Vec<Vec<u8>> = body
        .chunks(step)
        .map(|chunk| {
            let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
            piece.extend_from_slice(chunk);
            piece.extend_from_slice(b"\r\n");
            piece
        })
        .collect();
    pieces.push(b"0\r\n\r\n".to_vec());
    pieces
}

/// The reply to a request whose head is `head`, with `answer` as its normal
/// answer and `fault` injected. A [`Fault::Delay`] replies normally: the
/// connection does the waiting.
pub(crate) fn reply(head: &RequestHead, answer: &Answer, fault: Option<Fault>) -> Reply {
    let conn = if !head.keep_alive {
        ConnHeader::Close
    } else if head.minor == 0 {
        ConnHeader::KeepAlive
    } else {
        ConnHeader::None
    };
    let after_ok = if head.keep_alive {
        After::KeepAlive
    } else {
        After::Close
    };
    let body = answer.body.as_bytes();
    let length = format!("Content-Length: {}\r\n", body.len());
    let single = |mut head: Vec<u8>, body: &[u8]| {
        head.extend_from_slice(body);
        vec![head]
    };
    match fault {
        None | Some(Fault::Delay(_)) | Some(Fault::CloseAfterResponse) => {
            let silent = fault == Some(Fault::CloseAfterResponse);
            let conn = if silent { ConnHeader::None } else { conn };
            // HTTP/1.0 has no chunked coding.
            let pieces = if answer.chunked && head.minor >= 1 {
                let mut pieces = vec![head_bytes(
                    &status_line(answer.status),
                    "Transfer-Encoding: chunked\r\n",
                    conn,
                    "",
                )];
                pieces.extend(chunk_pieces(body));
                pieces
            } else {
                single(
                    head_bytes(&status_line(answer.status), &length, conn, ""),
                    body,
                )
            };
            Reply {
                pieces,
                after: if silent { After::SilentClose } else { after_ok },
                status: Some(answer.status),
            }
        }
        Some(fault @ (Fault::Status500 | Fault::Status503)) => {
            let (status, message) = if fault == Fault::Status500 {
                (500, "injected fault: internal server error")
            } else {
                (503, "injected fault: service unavailable")
            };
            let body = format!(r#"{{"error":{}}}"#, json_string(message));
            let length = format!("Content-Length: {}\r\n", body.len());
            Reply {
                pieces: single(
                    head_bytes(&status_line(status), &length, conn, ""),
                    body.as_bytes(),
                ),
                after: after_ok,
                status: Some(status),
            }
        }
        Some(Fault::MalformedStatusLine) => Reply {
            pieces: single(head_bytes("HTTP/1.1 OK", &length, conn, ""), body),
            after: After::Poisoned { fin: false },
            status: None,
        },
        Some(Fault::TruncatedBody) => Reply {
            // Content-Length says the whole body; half of it is sent.
            pieces: single(
                head_bytes(&status_line(answer.status), &length, conn, ""),
                &body[..body.len() / 2],
            ),
            after: After::Poisoned { fin: true },
            status: Some(answer.status),
        },
        Some(Fault::BadChunkSize) => {
            let mut pieces = vec![head_bytes(
                &status_line(answer.status),
                "Transfer-Encoding: chunked\r\n",
                conn,
                "",
            )];
            let mut chunk = b"zz\r\n".to_vec();
            chunk.extend_from_slice(body);
            chunk.extend_from_slice(b"\r\n0\r\n\r\n");
            pieces.push(chunk);
            Reply {
                pieces,
                after: After::Poisoned { fin: false },
                status: Some(answer.status),
            }
        }
        Some(Fault::InvalidJson) => {
            // The first half of the real body: it looks like JSON and is not.
            let broken = &body[..body.len() / 2];
            let length = format!("Content-Length: {}\r\n", broken.len());
            Reply {
                pieces: single(head_bytes(&status_line(200), &length, conn, ""), broken),
                after: after_ok,
                status: Some(200),
            }
        }
        Some(Fault::Reset) => Reply {
            pieces: Vec::new(),
            after: After::Reset,
            status: None,
        },
    }
}

/// The reply to a request the server cannot frame or take: an error, then close.
pub(crate) fn refusal(status: u16, message: &str) -> Reply {
    let body = format!(r#"{{"error":{}}}"#, json_string(message));
    let length = format!("Content-Length: {}\r\n", body.len());
    let mut bytes = head_bytes(&status_line(status), &length, ConnHeader::Close, "");
    bytes.extend_from_slice(body.as_bytes());
    Reply {
        pieces: vec![bytes],
        after: After::Close,
        status: Some(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> RequestHead {
        match parse_head(bytes) {
            Head::Complete(head) => head,
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    fn joined(reply: &Reply) -> String {
        String::from_utf8(reply.pieces.concat()).unwrap()
    }

    #[test]
    fn every_strict_prefix_of_a_request_is_partial() {
        let req = b"GET /v1/symbols/MSFT HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        let head_len = req.len() - 3;
        for n in 0..head_len {
            assert_eq!(parse_head(&req[..n]), Head::Partial, "prefix {n}");
        }
        let head = complete(req);
        assert_eq!(head.len, head_len);
        assert_eq!(head.content_length, 3);
        assert!(head.keep_alive);
    }

    #[test]
    fn keep_alive_follows_rfc_9112() {
        let get = |version: &str, conn: &str| {
            let conn = if conn.is_empty() {
                String::new()
            } else {
                format!("Connection: {conn}\r\n")
            };
            complete(format!("GET / {version}\r\n{conn}\r\n").as_bytes()).keep_alive
        };
        assert!(get("HTTP/1.1", ""));
        assert!(!get("HTTP/1.1", "close"));
        assert!(!get("HTTP/1.1", "keep-alive, Close"));
        assert!(!get("HTTP/1.0", ""));
        assert!(get("HTTP/1.0", "Keep-Alive"));
        assert!(!get("HTTP/1.0", "keep-alive, close"));
    }

    #[test]
    fn bad_heads_are_invalid() {
        assert!(matches!(
            parse_head(b"GET\0 / HTTP/1.1\r\n\r\n"),
            Head::Invalid(_)
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Head::Invalid(_)
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Head::Invalid(_)
        ));
        let huge = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD + 1));
        assert!(matches!(parse_head(huge.as_bytes()), Head::Invalid(_)));
    }

    #[test]
    fn symbols_are_percent_decoded() {
        assert_eq!(
            route("/v1/symbols/%5EGSPC"),
            Route::Symbol {
                symbol: "^GSPC".into(),
                chunked: false
            }
        );
        assert_eq!(
            route("/v1/symbols/MSFT?chunked=1"),
            Route::Symbol {
                symbol: "MSFT".into(),
                chunked: true
            }
        );
        assert_eq!(route("/v1/symbols/%5"), Route::BadEncoding);
        assert_eq!(route("/v1/symbols/%ZZ"), Route::BadEncoding);
        assert_eq!(route("/v1/symbols/%FF"), Route::BadEncoding);
        assert_eq!(route("/v1/symbols/"), Route::NotFound);
        assert_eq!(route("/v1/symbols/a/b"), Route::NotFound);
        assert_eq!(route("/v2/x"), Route::NotFound);
    }

    #[test]
    fn a_known_symbol_gets_its_json_and_an_unknown_one_a_404() {
        let head = complete(b"GET /v1/symbols/IBM HTTP/1.1\r\n\r\n");
        let ok = answer(&head, false);
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.body,
            r#"{"company_name":"International Business Machines Corporation","sector":"Information Technology","market_cap":170000000000}"#
        );
        let head = complete(b"GET /v1/symbols/N%22PE HTTP/1.1\r\n\r\n");
        let missing = answer(&head, false);
        assert_eq!(missing.status, 404);
        assert_eq!(
            missing.body,
            r#"{"error":"unknown symbol","symbol":"N\"PE"}"#
        );
    }

    #[test]
    fn chunked_replies_decode_to_the_body() {
        let head = complete(b"GET /v1/symbols/AAPL?chunked=1 HTTP/1.1\r\n\r\n");
        let ans = answer(&head, false);
        let reply = reply(&head, &ans, None);
        assert_eq!(reply.pieces.len(), 5, "head, three chunks, last chunk");
        let text = joined(&reply);
        let (_, mut rest) = text.split_once("\r\n\r\n").unwrap();
        let mut body = String::new();
        loop {
            let (size, tail) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                assert_eq!(tail, "\r\n");
                break;
            }
            body.push_str(&tail[..size]);
            rest = tail[size..].strip_prefix("\r\n").unwrap();
        }
        assert_eq!(body, ans.body);
    }

    #[test]
    fn faults_have_their_wire_shapes() {
        let head = complete(b"GET /v1/symbols/MSFT HTTP/1.1\r\n\r\n");
        let ans = answer(&head, false);
        let body_len = ans.body.len();

        let r = reply(&head, &ans, Some(Fault::MalformedStatusLine));
        assert!(joined(&r).starts_with("HTTP/1.1 OK\r\n"));
        assert_eq!(r.after, After::Poisoned { fin: false });

        let r = reply(&head, &ans, Some(Fault::TruncatedBody));
        let text = joined(&r);
        let (head_text, sent) = text.split_once("\r\n\r\n").unwrap();
        assert!(head_text.contains(&format!("Content-Length: {body_len}")));
        assert!(sent.len() < body_len);

        let r = reply(&head, &ans, Some(Fault::BadChunkSize));
        assert!(joined(&r).contains("\r\n\r\nzz\r\n"));

        let r = reply(&head, &ans, Some(Fault::InvalidJson));
        let text = joined(&r);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert_eq!(r.after, After::KeepAlive);

        let r = reply(&head, &ans, Some(Fault::CloseAfterResponse));
        assert!(!joined(&r).contains("Connection"));
        assert_eq!(r.after, After::SilentClose);

        let r = reply(&head, &ans, Some(Fault::Reset));
        assert!(r.pieces.is_empty());
        assert_eq!(r.after, After::Reset);
    }

    #[test]
    fn http_1_0_keep_alive_is_said_and_never_chunked() {
        let head = complete(b"GET /v1/symbols/MSFT HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = reply(&head, &answer(&head, true), None);
        let text = joined(&r);
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(text.contains("Content-Length: "));
        assert_eq!(r.after, After::KeepAlive);
    }
}
