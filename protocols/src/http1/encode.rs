//! Requests and their encoding.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::Error;
use super::url::Origin;

/// How a request's body is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// A body sent with its Content-Length.
    Full(Bytes),
    /// A body sent with the chunked transfer coding.
    Chunked(Bytes),
}

/// An HTTP/1.1 request.
///
/// # Examples
///
/// ```
/// use tally_protocols::http1::Request;
///
/// let get = Request::get("/v1/symbols/MSFT").header("Accept", "application/json");
/// let post = Request::new("POST", "/events").body("{\"id\": 1}").expect_continue();
/// assert_eq!(get.method(), "GET");
/// assert!(post.has_body());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Body,
    expect_continue: bool,
    close: bool,
}

impl Request {
    /// A request with a method (`GET`, `POST`...) and a target (path and query).
    pub fn new(method: impl Into<String>, target: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Body::Empty,
            expect_continue: false,
            close: false,
        }
    }

    /// A `GET` request.
    pub fn get(target: impl Into<String>) -> Self {
        Self::new("GET", target)
    }

    /// A `HEAD` request.
    pub fn head(target: impl Into<String>) -> Self {
        Self::new("HEAD", target)
    }

    /// Adds a header. `Host`, `Content-Length`, `Transfer-Encoding` and
    /// `Connection` are written by the client itself.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A body sent with Content-Length.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Body::Full(body.into());
        self
    }

    /// A body sent chunked.
    pub fn chunked_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Body::Chunked(body.into());
        self
    }

    /// Sends `Expect: 100-continue` and waits (briefly) for the server's
    /// go-ahead before sending the body.
    pub fn expect_continue(mut self) -> Self {
        self.expect_continue = true;
        self
    }

    /// Asks the server to close the connection after the response.
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The target.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the request has a body.
    pub fn has_body(&self) -> bool {
        !matches!(self.body, Body::Empty)
    }

    pub(crate) fn asks_close(&self) -> bool {
        self.close
    }

    pub(crate) fn wants_continue(&self) -> bool {
        self.expect_continue && self.has_body()
    }

    pub(crate) fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }

    /// Checks every part for what would let data change the message's framing.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        if !token(&self.method) {
            return Err(Error::request(format!(
                "method {:?} is not a token",
                self.method
            )));
        }
        if self.target.is_empty() || self.target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::request(format!(
                "target {:?} is empty or holds spaces or control characters",
                self.target
            )));
        }
        for (name, value) in &self.headers {
            if !token(name) {
                return Err(Error::request(format!(
                    "header name {name:?} is not a token"
                )));
            }
            if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
                return Err(Error::request(format!(
                    "header {name} holds control characters"
                )));
            }
            let reserved = [
                "host",
                "content-length",
                "transfer-encoding",
                "connection",
                "expect",
            ];
            if reserved.iter().any(|r| name.eq_ignore_ascii_case(r)) {
                return Err(Error::request(format!(
                    "header {name} is written by the client itself"
                )));
            }
        }
        Ok(())
    }

    /// Writes the head (and, unless the body waits for 100-continue, the body).
    pub(crate) fn encode_head(&self, origin: &Origin, out: &mut BytesMut) {
        out.put_slice(self.method.as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.target.as_bytes());
        out.put_slice(b" HTTP/1.1\r\nHost: ");
        out.put_slice(origin.to_string().as_bytes());
        out.put_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        match &self.body {
            Body::Empty => {}
            Body::Full(b) => out.put_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes()),
            Body::Chunked(_) => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        if self.wants_continue() {
            out.put_slice(b"Expect: 100-continue\r\n");
        }
        if self.close {
            out.put_slice(b"Connection: close\r\n");
        }
        out.put_slice(b"\r\n");
    }

    pub(crate) fn encode_body(&self, out: &mut BytesMut) {
        match &self.body {
            Body::Empty => {}
            Body::Full(b) => out.put_slice(b),
            Body::Chunked(b) => {
                if !b.is_empty() {
                    out.put_slice(format!("{:x}\r\n", b.len()).as_bytes());
                    out.put_slice(b);
                    out.put_slice(b"\r\n");
                }
                out.put_slice(b"0\r\n\r\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(r: &Request) -> String {
        let mut out = BytesMut::new();
        let origin = Origin {
            host: "::1".into(),
            port: 8080,
        };
        r.encode_head(&origin, &mut out);
        if !r.wants_continue() {
            r.encode_body(&mut out);
        }
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn requests_encode_with_host_and_framing() {
        assert_eq!(
            encode(&Request::get("/a?b=c")),
            "GET /a?b=c HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"
        );
        assert_eq!(
            encode(&Request::new("POST", "/x").header("X-Id", "7").body("hi")),
            "POST /x HTTP/1.1\r\nHost: [::1]:8080\r\nX-Id: 7\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert_eq!(
            encode(&Request::new("PUT", "/x").chunked_body("hello").close()),
            "PUT /x HTTP/1.1\r\nHost: [::1]:8080\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        assert_eq!(
            encode(&Request::new("POST", "/x").body("abc").expect_continue()),
            "POST /x HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        );
    }

    #[test]
    fn data_cannot_inject_headers_or_change_framing() {
        assert!(Request::get("/a b").validate().is_err());
        assert!(Request::get("/a")
            .header("X", "v\r\nEvil: 1")
            .validate()
            .is_err());
        assert!(Request::get("/a")
            .header("Bad Name", "v")
            .validate()
            .is_err());
        assert!(Request::get("/a")
            .header("Content-Length", "5")
            .validate()
            .is_err());
        assert!(Request::new("G T", "/").validate().is_err());
        assert!(Request::get("/a")
            .header("X", "ok\tvalue")
            .validate()
            .is_ok());
    }
}
