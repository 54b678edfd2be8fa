//! Errors of the HTTP/1.1 client.

use std::fmt;
use std::io;
use std::time::Duration;

/// What went wrong in an exchange. Every error except a bad URL or request
/// ([`Error::is_url`], found before anything is sent) is a transport fault
/// that leaves the connection unusable ([`Error::is_transport`]). A response
/// with any status is not an error.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// The URL or a request part is not valid.
    Url(String),
    /// A header name or value is not valid (CR or LF in it, say).
    Request(String),
    /// Connecting failed.
    Connect(io::Error),
    /// Reading or writing failed (reset, broken pipe...).
    Io(io::Error),
    /// The server closed the connection before the response was complete.
    Closed(&'static str),
    /// The response head is not valid HTTP/1.1.
    Malformed(String),
    /// The response frames its body ambiguously or wrongly.
    Framing(String),
    /// A limit was exceeded.
    TooLarge { what: &'static str, limit: usize },
    /// A stage took too long.
    Timeout {
        stage: &'static str,
        after: Duration,
    },
    /// The connection cannot be used for this (a previous exchange was left
    /// unfinished, or it failed).
    Unusable(&'static str),
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error { kind }
    }

    pub(crate) fn url(m: impl Into<String>) -> Self {
        Error::new(Kind::Url(m.into()))
    }

    pub(crate) fn request(m: impl Into<String>) -> Self {
        Error::new(Kind::Request(m.into()))
    }

    pub(crate) fn malformed(m: impl Into<String>) -> Self {
        Error::new(Kind::Malformed(m.into()))
    }

    pub(crate) fn framing(m: impl Into<String>) -> Self {
        Error::new(Kind::Framing(m.into()))
    }

    pub(crate) fn too_large(what: &'static str, limit: usize) -> Self {
        Error::new(Kind::TooLarge { what, limit })
    }

    pub(crate) fn timeout(stage: &'static str, after: Duration) -> Self {
        Error::new(Kind::Timeout { stage, after })
    }

    /// An error for a connection that a layer above found unfit to use (a
    /// pool's check before reuse, say).
    pub fn not_reusable(why: &'static str) -> Self {
        Error::new(Kind::Unusable(why))
    }

    /// Whether the URL or the request was at fault (nothing was sent).
    pub fn is_url(&self) -> bool {
        matches!(self.kind, Kind::Url(_) | Kind::Request(_))
    }

    /// Whether connecting failed.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect(_))
    }

    /// Whether a stage ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout { .. })
    }

    /// Which stage timed out: `connect`, `response head`, `body`, `exchange`.
    pub fn timeout_stage(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Timeout { stage, .. } => Some(stage),
            _ => None,
        }
    }

    /// Whether the response was malformed (bad status line or headers).
    pub fn is_malformed(&self) -> bool {
        matches!(self.kind, Kind::Malformed(_))
    }

    /// Whether the body's framing was refused: Transfer-Encoding with
    /// Content-Length, differing Content-Lengths, a bad chunk size, a chunked
    /// body without its last chunk.
    pub fn is_framing(&self) -> bool {
        matches!(self.kind, Kind::Framing(_))
    }

    /// Whether the server closed the connection mid-response (a truncated body, say).
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed(_))
    }

    /// Whether a limit (head size, header count, body size, chunk
    /// extensions) was exceeded.
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, Kind::TooLarge { .. })
    }

    /// Whether the connection was reset or another I/O error happened.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_))
    }

    /// The I/O error kind, for connect and I/O errors.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match &self.kind {
            Kind::Connect(e) | Kind::Io(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// Whether the connection was not in a state to be used.
    pub fn is_unusable(&self) -> bool {
        matches!(self.kind, Kind::Unusable(_))
    }

    /// Whether this is a transport fault: the exchange failed on the wire,
    /// and the connection must be discarded.
    pub fn is_transport(&self) -> bool {
        !self.is_url()
    }

    /// Whether trying again on a fresh connection may succeed: connect
    /// errors, resets, timeouts, truncated or malformed responses.
    pub fn is_transient(&self) -> bool {
        !self.is_url() && !self.is_too_large()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Url(m) => write!(f, "bad URL: {m}"),
            Kind::Request(m) => write!(f, "bad request: {m}"),
            Kind::Connect(e) => write!(f, "cannot connect: {e}"),
            Kind::Io(e) => write!(f, "connection failed: {e}"),
            Kind::Closed(when) => write!(f, "the server closed the connection {when}"),
            Kind::Malformed(m) => write!(f, "malformed response: {m}"),
            Kind::Framing(m) => write!(f, "bad body framing: {m}"),
            Kind::TooLarge { what, limit } => {
                write!(f, "{what} is over the limit of {limit} bytes")
            }
            Kind::Timeout { stage, after } => write!(f, "{stage} timed out after {after:?}"),
            Kind::Unusable(why) => write!(f, "connection unusable: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Connect(e) | Kind::Io(e) => Some(e),
            _ => None,
        }
    }
}
