//! One HTTP/1.1 client connection: a plain value whose state says at every
//! moment whether it may carry another request.
//!
//! A connection is reusable only once a response's body has been read to its
//! end under a framing that keeps it open. An exchange that failed on the
//! wire, timed out, or was dropped midway leaves it unusable; whoever holds it
//! then closes it instead of handing it out again.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tally_executor::timeout;

use super::decode::{framing, keep_alive, parse_head, BodyDecoder, Decoded, Head, Limits};
use super::encode::Request;
use super::error::{Error, Kind};
use super::url::Origin;
use crate::net::Socket;

/// Timeouts and limits of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Resolving and connecting. Default 5 s.
    pub connect_timeout: Duration,
    /// From the start of sending a request to its response head. Default 10 s.
    pub head_timeout: Duration,
    /// The longest wait for the next bytes of a body. Default 10 s.
    pub body_idle_timeout: Duration,
    /// How long `Expect: 100-continue` waits before sending the body anyway. Default 1 s.
    pub continue_timeout: Duration,
    /// Limits on the response head and body framing.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(5),
            head_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            continue_timeout: Duration::from_secs(1),
            limits: Limits::default(),
        }
    }
}

/// A response read whole.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status line and headers.
    pub head: Head,
    /// The body.
    pub body: Bytes,
}

#[derive(Debug)]
enum State {
    /// Ready for a request.
    Idle,
    /// A request is being sent or its head awaited.
    Exchange,
    /// The head is read; the body is not, yet.
    Body {
        decoder: BodyDecoder,
        keep_alive: bool,
    },
    /// No more requests: the last response ended reuse (`fault: false`) or
    /// the exchange failed (`fault: true`).
    Closed { why: &'static str, fault: bool },
}

/// Whether an idle connection is still fit to use, as seen without waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Nothing came from the server: fit to use.
    Ready,
    /// The server closed it.
    ClosedByServer,
    /// The server sent bytes nobody asked for.
    StrayBytes,
    /// It is not idle: an exchange is unfinished, or it was closed.
    NotIdle,
}

/// A client connection to one origin.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), tally_protocols::http1::Error> {
/// use tally_protocols::http1::{Connection, Options, Request, Url};
///
/// let rt = tally_executor::Runtime::new();
/// rt.block_on(async {
///     let url = Url::parse("http://127.0.0.1:8080/v1/symbols/MSFT")?;
///     let mut conn = Connection::connect(url.origin(), Options::default()).await?;
///     let response = conn.request(&Request::get(url.target()), 1 << 20).await?;
///     assert_eq!(response.head.status, 200);
///     assert!(conn.is_reusable());
///     Ok(())
/// })
/// # }
/// ```
pub struct Connection {
    socket: Socket,
    origin: Origin,
    options: Options,
    read_buf: BytesMut,
    write_buf: BytesMut,
    scratch: Box<[u8]>,
    state: State,
    /// Whether any byte of the current exchange's response has arrived.
    got_response_bytes: bool,
    exchanges: u64,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("origin", &self.origin)
            .field("state", &self.state)
            .field("exchanges", &self.exchanges)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Resolves the origin's host off the executor threads and connects,
    /// within the connect timeout.
    ///
    /// # Errors
    ///
    /// A connect error, or a timeout at the `connect` stage.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-made connection.
    pub async fn connect(origin: &Origin, options: Options) -> Result<Connection, Error> {
        let socket = match timeout(
            options.connect_timeout,
            Socket::connect_tcp(&origin.host, origin.port),
        )
        .await
        {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => return Err(Error::new(Kind::Connect(e))),
            Err(_) => return Err(Error::timeout("connect", options.connect_timeout)),
        };
        Ok(Connection {
            socket,
            origin: origin.clone(),
            options,
            read_buf: BytesMut::with_capacity(8 * 1024),
            write_buf: BytesMut::with_capacity(1024),
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
            state: State::Idle,
            got_response_bytes: false,
            exchanges: 0,
        })
    }

    /// The origin it is connected to.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// How many requests it has carried.
    pub fn exchanges(&self) -> u64 {
        self.exchanges
    }

    /// Whether it can carry another request now: the last response was read
    /// to its end and kept the connection open.
    pub fn is_reusable(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Whether a response's body is still to be read.
    pub fn is_body_pending(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// Checks, without waiting, that an idle connection is still good: the
    /// server has not closed it and sent nothing unasked. A connection found
    /// bad is marked unusable.
    pub fn check_idle(&mut self) -> Idle {
        if !matches!(self.state, State::Idle) {
            return Idle::NotIdle;
        }
        if !self.read_buf.is_empty() {
            self.fail("stray bytes arrived while it was idle");
            return Idle::StrayBytes;
        }
        match self.socket.peek_now() {
            Ok(None) => Idle::Ready,
            Ok(Some(0)) | Err(_) => {
                self.fail("the server closed it while it was idle");
                Idle::ClosedByServer
            }
            Ok(Some(_)) => {
                self.fail("stray bytes arrived while it was idle");
                Idle::StrayBytes
            }
        }
    }

    fn fail(&mut self, why: &'static str) {
        self.state = State::Closed { why, fault: true };
    }

    fn usable(&self) -> Result<(), Error> {
        match &self.state {
            State::Idle => Ok(()),
            State::Exchange => Err(Error::new(Kind::Unusable(
                "an earlier exchange was dropped before its response head",
            ))),
            State::Body { .. } => Err(Error::new(Kind::Unusable(
                "the last response's body was not read to its end",
            ))),
            State::Closed { why, .. } => Err(Error::new(Kind::Unusable(why))),
        }
    }

    /// Sends a request and reads the response's head (skipping 100-continue
    /// and other interim responses). The body is then read with
    /// [`read_chunk`](Self::read_chunk), [`read_to_end`](Self::read_to_end)
    /// or [`drain`](Self::drain).
    ///
    /// # Errors
    ///
    /// A bad request (nothing sent), or a transport fault (the connection is
    /// then unusable): I/O, a malformed head, refused framing, a timeout at
    /// the `response head` stage. A response of any status is not an error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection unusable.
    pub async fn send(&mut self, request: &Request) -> Result<Head, Error> {
        self.usable()?;
        request.validate()?;
        self.state = State::Exchange;
        self.exchanges += 1;
        self.got_response_bytes = false;
        let limit = self.options.head_timeout;
        match timeout(limit, self.exchange_head(request)).await {
            Ok(Ok(head)) => Ok(head),
            Ok(Err(e)) => {
                self.fail("its exchange failed");
                Err(e)
            }
            Err(_) => {
                self.fail("its exchange timed out");
                Err(Error::timeout("response head", limit))
            }
        }
    }

    async fn exchange_head(&mut self, request: &Request) -> Result<Head, Error> {
        self.write_buf.clear();
        request.encode_head(&self.origin, &mut self.write_buf);
        let mut body_sent = !request.wants_continue();
        if body_sent {
            request.encode_body(&mut self.write_buf);
        }
        self.write_out().await?;
        let mut head = None;
        if !body_sent {
            match timeout(self.options.continue_timeout, self.read_head()).await {
                Ok(Ok(h)) if h.status == 100 => {}
                Ok(Ok(h)) => head = Some(h),
                Ok(Err(e)) => return Err(e),
                // No word from the server: send the body anyway.
                Err(_) => {}
            }
            if head.is_none() {
                request.encode_body(&mut self.write_buf);
                self.write_out().await?;
                body_sent = true;
            }
        }
        let head = match head {
            Some(h) => h,
            None => self.read_final_head().await?,
        };
        let framing = framing(&head, request.is_head())?;
        // A body announced but never sent leaves the server's framing
        // unknown: the connection cannot be reused.
        let keep = keep_alive(&head, framing, request.asks_close()) && body_sent;
        let decoder = BodyDecoder::new(framing, self.options.limits);
        self.state = State::Body {
            decoder,
            keep_alive: keep,
        };
        self.finish_if_done();
        Ok(head)
    }

    async fn write_out(&mut self) -> Result<(), Error> {
        let result = self.socket.write_all(&self.write_buf).await;
        self.write_buf.clear();
        result.map_err(|e| Error::new(Kind::Io(e)))
    }

    async fn read_final_head(&mut self) -> Result<Head, Error> {
        loop {
            let head = self.read_head().await?;
            match head.status {
                101 => {
                    return Err(Error::malformed(
                        "101 Switching Protocols, which this client does not ask for",
                    ))
                }
                100..=199 => continue,
                _ => return Ok(head),
            }
        }
    }

    async fn read_head(&mut self) -> Result<Head, Error> {
        loop {
            if let Some(head) = parse_head(&mut self.read_buf, &self.options.limits)? {
                return Ok(head);
            }
            if !self.fill().await? {
                return Err(Error::new(Kind::Closed(if self.got_response_bytes {
                    "in the middle of the response head"
                } else {
                    "before sending any response"
                })));
            }
        }
    }

    /// Reads more bytes; `false` at EOF.
    async fn fill(&mut self) -> Result<bool, Error> {
        let n = self
            .socket
            .read(&mut self.scratch)
            .await
            .map_err(|e| Error::new(Kind::Io(e)))?;
        if n > 0 {
            self.got_response_bytes = true;
            self.read_buf.extend_from_slice(&self.scratch[..n]);
        }
        Ok(n > 0)
    }

    fn finish_if_done(&mut self) {
        if let State::Body {
            decoder,
            keep_alive,
        } = &self.state
        {
            if decoder.is_done() {
                self.state = if *keep_alive && self.read_buf.is_empty() {
                    State::Idle
                } else if *keep_alive {
                    State::Closed {
                        why: "the server sent more than the response",
                        fault: true,
                    }
                } else {
                    State::Closed {
                        why: "the last response ended the connection's reuse",
                        fault: false,
                    }
                };
            }
        }
    }

    /// The next piece of the body, or `None` at its end.
    ///
    /// # Errors
    ///
    /// A transport fault: I/O, a truncated body, bad chunked framing, a
    /// timeout at the `body` stage. The connection is then unusable.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the body unfinished: the connection is not
    /// reusable until it is drained.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let idle = self.options.body_idle_timeout;
        loop {
            let State::Body { decoder, .. } = &mut self.state else {
                return match &self.state {
                    State::Closed { why, fault: true } => Err(Error::new(Kind::Unusable(why))),
                    _ => Ok(None),
                };
            };
            let decoded = match decoder.decode(&mut self.read_buf) {
                Ok(d) => d,
                Err(e) => {
                    self.fail("its response body was badly framed");
                    return Err(e);
                }
            };
            match decoded {
                Decoded::Data(data) => return Ok(Some(data)),
                Decoded::Done => {
                    self.finish_if_done();
                    return Ok(None);
                }
                Decoded::NeedMore => match timeout(idle, self.fill()).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        let State::Body { decoder, .. } = &mut self.state else {
                            return Ok(None);
                        };
                        match decoder.eof() {
                            Ok(_) => {
                                // A close-delimited body: complete, and the end of the connection.
                                self.state = State::Closed {
                                    why: "the server closed it after the response",
                                    fault: false,
                                };
                                return Ok(None);
                            }
                            Err(e) => {
                                self.fail("the server closed it mid-body");
                                return Err(e);
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        self.fail("reading its body failed");
                        return Err(e);
                    }
                    Err(_) => {
                        self.fail("its body timed out");
                        return Err(Error::timeout("body", idle));
                    }
                },
            }
        }
    }

    /// Reads the rest of the body, up to `cap` bytes.
    ///
    /// # Errors
    ///
    /// As [`read_chunk`](Self::read_chunk), and a too-large error past `cap`
    /// (the connection is then unusable, its body unread).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the body unfinished.
    pub async fn read_to_end(&mut self, cap: usize) -> Result<Bytes, Error> {
        let mut body = BytesMut::new();
        while let Some(chunk) = self.read_chunk().await? {
            if body.len() + chunk.len() > cap {
                self.fail("its response body was over the cap");
                return Err(Error::too_large("the response body", cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Reads and discards the rest of the body if it fits in `max_bytes` and
    /// arrives within `max_time`; says whether the connection is reusable
    /// afterwards. Past either budget the connection is marked unusable.
    ///
    /// # Errors
    ///
    /// As [`read_chunk`](Self::read_chunk).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the body unfinished.
    pub async fn drain(&mut self, max_bytes: usize, max_time: Duration) -> Result<bool, Error> {
        let deadline = Instant::now() + max_time;
        let mut drained = 0usize;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.read_chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    drained += chunk.len();
                    if drained > max_bytes {
                        self.fail("its unread body was over the drain budget");
                        return Ok(false);
                    }
                }
                Ok(Ok(None)) => return Ok(self.is_reusable()),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    self.fail("its unread body took longer than the drain budget");
                    return Ok(false);
                }
            }
        }
    }

    /// Sends a request and reads its whole response (body up to `body_cap`
    /// bytes), all within `exchange_timeout` if given.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send) and [`read_to_end`](Self::read_to_end), and a
    /// timeout at the `exchange` stage.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection unusable.
    pub async fn request(&mut self, request: &Request, body_cap: usize) -> Result<Response, Error> {
        let head = self.send(request).await?;
        let body = self.read_to_end(body_cap).await?;
        Ok(Response { head, body })
    }

    /// As [`request`](Self::request), the whole exchange within `limit`.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request), and a timeout at the `exchange` stage.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection unusable.
    pub async fn request_within(
        &mut self,
        request: &Request,
        body_cap: usize,
        limit: Duration,
    ) -> Result<Response, Error> {
        match timeout(limit, self.request(request, body_cap)).await {
            Ok(result) => result,
            Err(_) => {
                self.fail("its exchange timed out");
                Err(Error::timeout("exchange", limit))
            }
        }
    }

    /// Whether the last error happened before any byte of the response
    /// arrived (so an idempotent request may be retried on a fresh connection).
    pub fn failed_before_response(&self) -> bool {
        !self.got_response_bytes
    }

    /// Closes the connection: shuts the socket down; its descriptor closes
    /// when this returns.
    pub fn close(self) {
        let _ = self.socket.shutdown();
    }
}
