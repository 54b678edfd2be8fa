//! The client side of HTTP/1.1, on httparse.
//!
//! Decoding is sans-IO ([`Head`], the framing decision and the body decoder
//! work on byte buffers); [`Connection`] is the only part that touches a
//! socket. Every body framing is handled: Content-Length, chunked (with
//! extensions under a budget, and trailers), close-delimited, and no body for
//! HEAD, 1xx, 204 and 304; `Expect: 100-continue` waits for the go-ahead.
//! Ambiguous framing is refused. A connection is reusable only after a
//! response's body was read to its end under a framing that keeps it open;
//! any transport fault or timeout leaves it unusable. A response of any status
//! with a well-framed body is not an error and leaves the connection reusable.

mod conn;
mod decode;
mod encode;
mod error;
mod url;

pub use conn::{Connection, Idle, Options, Response};
pub use decode::{Head, Limits};
pub use encode::{Body, Request};
pub use error::Error;
pub use url::{encode_path_segment, Origin, Url};
