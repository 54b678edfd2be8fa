//! One connection of the enrichment server: read request heads, skip their
//! bodies, answer in order, and watch what the client does after an answer
//! that ended the connection's reuse.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Async;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use tally_executor::{sleep, sleep_until, timeout};

use super::config::Fault;
use super::stats::{OpenGuard, RequestRecord};
use super::wire::{self, After, Head, RequestHead, Route};
use super::Shared;

/// The size of one read.
const READ_CHUNK: usize = 8 * 1024;
/// Bytes of early requests kept while a delay is pending; more are dropped.
const EARLY_LIMIT: usize = 64 * 1024;

/// What waiting for the next request gave.
enum Next {
    Head(RequestHead),
    /// The client closed, the read failed, or the connection sat idle too long.
    Gone,
    Invalid(&'static str),
}

/// How a [`Fault::Delay`] ended.
enum DelayEnd {
    /// The delay ran out; `early` if request bytes arrived meanwhile.
    Elapsed { early: bool },
    /// The client closed (or reset) the connection meanwhile.
    Abandoned,
}

/// The state of one connection.
struct Conn<'a> {
    stream: Async<TcpStream>,
    shared: &'a Shared,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// A reuse violation was counted on this connection (counted once).
    violated: bool,
}

/// Serves one accepted connection until it ends.
pub(crate) async fn serve(stream: Async<TcpStream>, shared: Arc<Shared>) {
    let _open = OpenGuard::new(&shared.counters);
    // Declared after the guard, so the socket is closed before the
    // connection stops counting as open.
    let mut conn = Conn {
        stream,
        shared: &shared,
        buf: Vec::with_capacity(READ_CHUNK),
        violated: false,
    };
    conn.run().await;
}

impl Conn<'_> {
    async fn run(&mut self) {
        let shared = self.shared;
        let config = &shared.config;
        let counters = &shared.counters;
        loop {
            let head = match self.next_head().await {
                Next::Head(head) => head,
                Next::Gone => return,
                Next::Invalid(why) => {
                    counters.request();
                    return self.refuse(400, why).await;
                }
            };
            self.buf.drain(..head.len);
            if head.has_transfer_encoding {
                counters.request();
                return self
                    .refuse(501, "request bodies with transfer-encoding are not taken")
                    .await;
            }
            if !self.skip_body(head.content_length).await {
                return;
            }

            let answer = wire::answer(&head, config.chunked);
            let symbol = match wire::route(&head.target) {
                Route::Symbol { symbol, .. } => symbol,
                _ => head.target.clone(),
            };
            let (index, fault) = shared.decide(&symbol);
            counters.record(
                RequestRecord {
                    index,
                    symbol,
                    fault,
                },
                config.record_limit,
            );
            if let Some(fault) = fault {
                counters.fault(fault.kind());
            }

            let latency = shared.latency();
            if !latency.is_zero() {
                sleep(latency).await;
            }
            if let Some(Fault::Delay(delay)) = fault {
                match self.delay(delay).await {
                    DelayEnd::Abandoned => {
                        counters.abandoned();
                        return;
                    }
                    DelayEnd::Elapsed { early: true } => self.violate(),
                    DelayEnd::Elapsed { early: false } => {}
                }
            }

            let reply = wire::reply(&head, &answer, fault);
            if let Some(status) = reply.status {
                counters.status(status);
            }
            if self.write(&reply.pieces).await.is_err() {
                return;
            }
            match reply.after {
                After::KeepAlive => continue,
                After::Close => return self.linger(true).await,
                After::Poisoned { fin } => return self.linger(fin).await,
                After::SilentClose => return,
                After::Reset => {
                    // SO_LINGER 0: closing sends a RST instead of a FIN.
                    let _ = socket2::SockRef::from(self.stream.get_ref())
                        .set_linger(Some(Duration::ZERO));
                    return;
                }
            }
        }
    }

    /// Counts a reuse violation, once per connection.
    fn violate(&mut self) {
        if !self.violated {
            self.violated = true;
            self.shared.counters.violation();
        }
    }

    /// Reads once into the buffer; `None` at EOF, on an error, or past `limit`.
    async fn read_some(&mut self, limit: Duration) -> Option<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut reader = &self.stream;
        match timeout(limit, reader.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => None,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
        }
    }

    async fn next_head(&mut self) -> Next {
        loop {
            if !self.buf.is_empty() {
                match wire::parse_head(&self.buf) {
                    Head::Complete(head) => return Next::Head(head),
                    Head::Invalid(why) => return Next::Invalid(why),
                    Head::Partial => {}
                }
            }
            if self
                .read_some(self.shared.config.idle_timeout)
                .await
                .is_none()
            {
                return Next::Gone;
            }
        }
    }

    /// Reads and drops `len` bytes of request body. False if the connection ended.
    async fn skip_body(&mut self, len: u64) -> bool {
        let mut remaining = len;
        loop {
            let take = remaining.min(self.buf.len() as u64) as usize;
            self.buf.drain(..take);
            remaining -= take as u64;
            if remaining == 0 {
                return true;
            }
            if self
                .read_some(self.shared.config.idle_timeout)
                .await
                .is_none()
            {
                return false;
            }
        }
    }

    /// Waits `delay` while watching the socket: a client that gives up
    /// closes it, and one that sends another request meanwhile is reusing a
    /// connection whose answer is still due.
    async fn delay(&mut self, delay: Duration) -> DelayEnd {
        let deadline = Instant::now() + delay;
        let mut early = false;
        loop {
            if self.buf.len() >= EARLY_LIMIT {
                sleep_until(deadline).await;
                return DelayEnd::Elapsed { early };
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut reader = &self.stream;
            let read = future::or(async { Some(reader.read(&mut chunk).await) }, async {
                sleep_until(deadline).await;
                None
            })
            .await;
            match read {
                None => return DelayEnd::Elapsed { early },
                Some(Ok(0)) | Some(Err(_)) => return DelayEnd::Abandoned,
                Some(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    early = true;
                }
            }
        }
    }

    async fn write(&self, pieces: &[Vec<u8>]) -> std::io::Result<()> {
        let mut writer = &self.stream;
        for piece in pieces {
            writer.write_all(piece).await?;
            writer.flush().await?;
        }
        Ok(())
    }

    /// Answers with an error and `Connection: close`, then lingers.
    async fn refuse(&mut self, status: u16, why: &str) {
        // What is left of a request the server will not read is not a new one.
        self.buf.clear();
        let reply = wire::refusal(status, why);
        self.shared.counters.status(status);
        if self.write(&reply.pieces).await.is_ok() {
            self.linger(true).await;
        }
    }

    /// After an answer that ends the connection's reuse: half-closes when
    /// `fin`, then keeps reading until the client closes or the linger runs
    /// out. Any request byte seen meanwhile, or left over from before, is a
    /// reuse violation.
    async fn linger(&mut self, fin: bool) {
        if fin {
            let _ = self.stream.get_ref().shutdown(Shutdown::Write);
        }
        let deadline = Instant::now() + self.shared.config.linger;
        loop {
            if !self.buf.is_empty() {
                self.violate();
                self.buf.clear();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.read_some(left).await.is_none() {
                return;
            }
        }
    }
}
