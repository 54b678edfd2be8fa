//! Sans-IO decoding of responses: the head (httparse, over partial reads,
//! with limits), the framing decision of RFC 9112 section 6.3, the keep-alive
//! decision, and the body decoder for every framing.

use bytes::{Buf, Bytes, BytesMut};

use super::error::Error;

/// Limits on what a response may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most bytes of a response head (status line and headers). Default 16 KiB.
    pub max_head: usize,
    /// The most headers in a head. Default 64.
    pub max_headers: usize,
    /// The most bytes of chunk extensions in one body. Default 4 KiB.
    pub max_chunk_extensions: usize,
    /// The most bytes of trailers in one body. Default 8 KiB.
    pub max_trailers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 64,
            max_chunk_extensions: 4 * 1024,
            max_trailers: 8 * 1024,
        }
    }
}

/// A response's status line and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of a header, by case-insensitive name.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether a comma-separated header holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name).any(|v| {
            v.split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }
}

/// Parses a response head off the front of `buf`: `Ok(None)` when more bytes
/// are needed; the consumed bytes are removed.
pub(crate) fn parse_head(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Head>, Error> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            if len > limits.max_head {
                return Err(Error::too_large("the response head", limits.max_head));
            }
            let head = Head {
                version: response.version.unwrap_or(1),
                status: response.code.unwrap_or(0),
                reason: response.reason.unwrap_or("").to_owned(),
                headers: response
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
            };
            if !(100..=999).contains(&head.status) {
                return Err(Error::malformed(format!("status {}", head.status)));
            }
            buf.advance(len);
            Ok(Some(head))
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head {
                Err(Error::too_large("the response head", limits.max_head))
            } else {
                Ok(None)
            }
        }
        Err(httparse::Error::TooManyHeaders) => Err(Error::too_large(
            "the number of headers",
            limits.max_headers,
        )),
        Err(e) => Err(Error::malformed(e.to_string())),
    }
}

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// Decides the body's framing, refusing what is ambiguous.
pub(crate) fn framing(head: &Head, request_was_head: bool) -> Result<Framing, Error> {
    if request_was_head
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304
    {
        return Ok(Framing::Empty);
    }
    let has_te = head.header("transfer-encoding").is_some();
    let lengths: Vec<&[u8]> = head.header_all("content-length").collect();
    if has_te && !lengths.is_empty() {
        return Err(Error::framing("both Transfer-Encoding and Content-Length"));
    }
    if has_te {
        let codings: Vec<Vec<u8>> = head
            .header_all("transfer-encoding")
            .flat_map(|v| v.split(|b| *b == b','))
            .map(|t| t.trim_ascii().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        let chunked = codings
            .iter()
            .filter(|c| c.as_slice() == b"chunked")
            .count();
        return match (codings.last().map(Vec::as_slice), chunked) {
            (Some(b"chunked"), 1) => Ok(Framing::Chunked),
            (_, 0) => Ok(Framing::Close),
            _ => Err(Error::framing(
                "chunked is applied twice or is not the last coding",
            )),
        };
    }
    let mut length: Option<u64> = None;
    for value in lengths.iter().flat_map(|v| v.split(|b| *b == b',')) {
        let value = value.trim_ascii();
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(Error::framing(format!(
                "Content-Length {:?} is not a number",
                String::from_utf8_lossy(value)
            )));
        }
        let n: u64 = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::framing("Content-Length overflows"))?;
        match length {
            Some(previous) if previous != n => {
                return Err(Error::framing("Content-Length headers that differ"))
            }
            _ => length = Some(n),
        }
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Whether the connection may carry another request once this response's
/// body is read to the end (RFC 9112 section 9.3).
pub(crate) fn keep_alive(head: &Head, framing: Framing, request_asked_close: bool) -> bool {
    if request_asked_close || framing == Framing::Close || head.has_token("connection", "close") {
        return false;
    }
    head.version >= 1 || head.has_token("connection", "keep-alive")
}

/// What the body decoder found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The body is complete.
    Done,
    /// More bytes are needed.
    NeedMore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// Decodes a body over partial reads.
#[derive(Clone, Debug)]
pub(crate) struct BodyDecoder {
    state: State,
    extensions: usize,
    trailers: usize,
    limits: Limits,
}

impl BodyDecoder {
    pub(crate) fn new(framing: Framing, limits: Limits) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size),
            Framing::Close => State::Close,
        };
        BodyDecoder {
            state,
            extensions: 0,
            trailers: 0,
            limits,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes body bytes (or the end) off the front of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Close => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                State::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                State::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Decoded::Data(data));
                }
                State::Chunked(Chunk::DataEnd) => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::framing("a chunk's data is not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::Chunked(Chunk::Size);
                }
                State::Chunked(Chunk::Size) => {
                    let Some(line) = self.take_line(buf, LineKind::Size)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_chunk_size(
                        &line,
                        &mut self.extensions,
                        self.limits.max_chunk_extensions,
                    )?;
                    self.state = State::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                State::Chunked(Chunk::Trailers) => {
                    let Some(line) = self.take_line(buf, LineKind::Trailer)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                    } else if !line.contains(&b':') {
                        return Err(Error::framing("a trailer line without a colon"));
                    }
                }
            }
        }
    }

    /// Takes a CRLF-terminated line, within the line's budget.
    fn take_line(&mut self, buf: &mut BytesMut, kind: LineKind) -> Result<Option<Bytes>, Error> {
        let budget = match kind {
            // A size line: 16 hex digits, and the extensions' budget.
            LineKind::Size => {
                18 + self
                    .limits
                    .max_chunk_extensions
                    .saturating_sub(self.extensions)
            }
            LineKind::Trailer => self.limits.max_trailers.saturating_sub(self.trailers) + 2,
        };
        match buf.windows(2).position(|w| w == b"\r\n") {
            Some(end) => {
                if end > budget {
                    return Err(self.line_too_long(kind));
                }
                let line = buf.split_to(end).freeze();
                buf.advance(2);
                if kind == LineKind::Trailer {
                    self.trailers += end + 2;
                }
                Ok(Some(line))
            }
            None if buf.len() > budget + 1 => Err(self.line_too_long(kind)),
            None => Ok(None),
        }
    }

    fn line_too_long(&self, kind: LineKind) -> Error {
        match kind {
            LineKind::Size => {
                Error::too_large("the chunk extensions", self.limits.max_chunk_extensions)
            }
            LineKind::Trailer => Error::too_large("the trailers", self.limits.max_trailers),
        }
    }

    /// The connection reached EOF: the end of a close-delimited body, or a
    /// truncated one.
    pub(crate) fn eof(&mut self) -> Result<Decoded, Error> {
        match self.state {
            State::Done => Ok(Decoded::Done),
            State::Close => {
                self.state = State::Done;
                Ok(Decoded::Done)
            }
            State::Length(left) => Err(Error::new(super::error::Kind::Closed(if left > 0 {
                "before the body's Content-Length was reached"
            } else {
                "mid-body"
            }))),
            State::Chunked(_) => Err(Error::framing(
                "the chunked body ended without its last chunk",
            )),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Size,
    Trailer,
}

fn parse_chunk_size(
    line: &[u8],
    extensions: &mut usize,
    max_extensions: usize,
) -> Result<u64, Error> {
    let (size, ext) = match line.iter().position(|b| *b == b';') {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, &line[..0]),
    };
    // Whitespace before the extensions is tolerated (RFC 9112 BWS).
    let size = size.trim_ascii_end();
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(Error::framing(format!(
            "chunk size {:?} is not a hexadecimal number",
            String::from_utf8_lossy(&size[..size.len().min(32)])
        )));
    }
    let mut n: u64 = 0;
    for digit in size {
        let value = (*digit as char).to_digit(16).unwrap_or(0) as u64;
        n = n
            .checked_mul(16)
            .and_then(|n| n.checked_add(value))
            .ok_or_else(|| Error::framing("chunk size overflows"))?;
    }
    if ext.iter().any(|b| *b < b' ' && *b != b'\t' || *b == 0x7f) {
        return Err(Error::framing("control characters in chunk extensions"));
    }
    *extensions += ext.len();
    if *extensions > max_extensions {
        return Err(Error::too_large("the chunk extensions", max_extensions));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(raw: &str) -> Head {
        parse_head(&mut BytesMut::from(raw.as_bytes()), &Limits::default())
            .unwrap()
            .unwrap()
    }

    /// Decodes a whole body fed `chunk` bytes at a time; `eof` says whether the
    /// connection closes after the bytes.
    fn body(
        framing: Framing,
        bytes: &[u8],
        chunk: usize,
        eof: bool,
    ) -> Result<(Vec<u8>, usize), Error> {
        let mut decoder = BodyDecoder::new(framing, Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        for piece in bytes.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            fed += piece.len();
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    // What is left over: unread in the buffer, and not yet fed.
                    Decoded::Done => return Ok((out, buf.len() + bytes.len() - fed)),
                    Decoded::NeedMore => break,
                }
            }
        }
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::Done => return Ok((out, buf.len())),
                Decoded::NeedMore if eof => {
                    decoder.eof()?;
                    return Ok((out, buf.len()));
                }
                Decoded::NeedMore => return Err(Error::framing("incomplete")),
            }
        }
    }

    #[test]
    fn a_head_parses_at_every_partial_prefix() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi";
        let head_len = raw.len() - 2;
        for cut in 0..head_len {
            let mut buf = BytesMut::from(&raw[..cut]);
            assert!(
                parse_head(&mut buf, &Limits::default()).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let mut buf = BytesMut::from(&raw[..]);
        let h = parse_head(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(
            (h.status, h.version, h.header("x-a")),
            (200, 1, Some(&b"b"[..]))
        );
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn limits_on_the_head_give_typed_errors() {
        let limits = Limits {
            max_head: 64,
            max_headers: 2,
            ..Limits::default()
        };
        let mut big =
            BytesMut::from(format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(100)).as_bytes());
        assert!(parse_head(&mut big, &limits).unwrap_err().is_too_large());
        let mut many = BytesMut::from(&b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"[..]);
        assert!(parse_head(&mut many, &limits).unwrap_err().is_too_large());
        let mut bad = BytesMut::from(&b"HTTP/1.1 2x0 OK\r\n\r\n"[..]);
        assert!(parse_head(&mut bad, &limits).unwrap_err().is_malformed());
        let mut garbage = BytesMut::from(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]);
        assert!(parse_head(&mut garbage, &limits)
            .unwrap_err()
            .is_malformed());
    }

    #[test]
    fn framing_follows_rfc_9112_and_refuses_ambiguity() {
        let cases: &[(&str, bool, Result<Framing, ()>)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Ok(Framing::Length(5)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                Ok(Framing::Empty),
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                false,
                Ok(Framing::Empty),
            ),
            (
                "HTTP/1.1 304 Not Modified\r\n\r\n",
                false,
                Ok(Framing::Empty),
            ),
            ("HTTP/1.1 100 Continue\r\n\r\n", false, Ok(Framing::Empty)),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Ok(Framing::Chunked),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false,
                Ok(Framing::Chunked),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                Ok(Framing::Close),
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Ok(Framing::Close)),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                false,
                Ok(Framing::Length(5)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
                false,
                Ok(Framing::Length(5)),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                false,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                false,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
                false,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                false,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                false,
                Err(()),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                false,
                Err(()),
            ),
        ];
        for (raw, is_head, expected) in cases {
            let got = framing(&head(raw), *is_head);
            match expected {
                Ok(f) => assert_eq!(got.unwrap(), *f, "{raw}"),
                Err(()) => assert!(got.unwrap_err().is_framing(), "{raw}"),
            }
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let h11 = head("HTTP/1.1 200 OK\r\n\r\n");
        assert!(keep_alive(&h11, Framing::Length(1), false));
        assert!(!keep_alive(&h11, Framing::Length(1), true));
        assert!(!keep_alive(&h11, Framing::Close, false));
        let close = head("HTTP/1.1 200 OK\r\nConnection: foo, Close\r\n\r\n");
        assert!(!keep_alive(&close, Framing::Length(1), false));
        let h10 = head("HTTP/1.0 200 OK\r\n\r\n");
        assert!(!keep_alive(&h10, Framing::Length(1), false));
        let h10ka = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n");
        assert!(keep_alive(&h10ka, Framing::Length(1), false));
    }

    #[test]
    fn every_body_framing_decodes_at_every_split() {
        let chunked = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 1..=chunked.len() {
            assert_eq!(
                body(Framing::Chunked, chunked, split, false).unwrap(),
                (b"hello world".to_vec(), 4),
                "split {split}"
            );
        }
        let fixed = b"hello worldNEXT";
        for split in 1..=fixed.len() {
            assert_eq!(
                body(Framing::Length(11), fixed, split, false).unwrap(),
                (b"hello world".to_vec(), 4)
            );
        }
        for split in 1..=11 {
            assert_eq!(
                body(Framing::Close, b"hello world", split, true).unwrap().0,
                b"hello world".to_vec()
            );
        }
        assert_eq!(
            body(Framing::Empty, b"NEXT", 1, false).unwrap(),
            (Vec::new(), 4)
        );
    }

    #[test]
    fn bad_chunked_bodies_give_framing_errors() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
        ] {
            let e = body(Framing::Chunked, bad, 3, false).unwrap_err();
            assert!(e.is_framing(), "{:?}: {e}", String::from_utf8_lossy(bad));
        }
        // A chunked body cut before its last chunk.
        let e = body(Framing::Chunked, b"5\r\nhello\r\n", 4, true).unwrap_err();
        assert!(e.is_framing(), "{e}");
        // A Content-Length body cut short.
        let e = body(Framing::Length(10), b"hello", 4, true).unwrap_err();
        assert!(e.is_closed(), "{e}");
        // Extensions over the budget.
        let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(5000));
        assert!(body(Framing::Chunked, long.as_bytes(), 64, false)
            .unwrap_err()
            .is_too_large());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), split in 1usize..64, eof: bool) {
            let mut buf = BytesMut::new();
            for piece in bytes.chunks(split) {
                buf.extend_from_slice(piece);
                if let Ok(Some(h)) = parse_head(&mut buf, &Limits::default()) {
                    if let Ok(f) = framing(&h, false) {
                        let _ = keep_alive(&h, f, false);
                        let _ = body(f, &buf, split, eof);
                    }
                    break;
                }
            }
            for f in [Framing::Chunked, Framing::Length(300), Framing::Close] {
                let _ = body(f, &bytes, split, eof);
            }
        }

        #[test]
        fn mutated_responses_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            split in 1usize..32,
        ) {
            let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n4;a=b\r\nwiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n".to_vec();
            for (at, byte) in flips {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
            let mut buf = BytesMut::new();
            for piece in raw.chunks(split) {
                buf.extend_from_slice(piece);
                if let Ok(Some(h)) = parse_head(&mut buf, &Limits::default()) {
                    if let Ok(f) = framing(&h, false) {
                        let _ = body(f, &buf, split, true);
                    }
                    break;
                }
            }
        }
    }
}
