//! `http://` URLs and percent-encoding of path segments.

use std::fmt;

use super::error::Error;

/// Where a connection goes: host and port. Connections are pooled by origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// A host name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for Origin {
    /// As the `Host` header wants it: `host:port`, IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// An `http://` URL: origin, and path with query.
///
/// # Examples
///
/// ```
/// use tally_protocols::http1::{encode_path_segment, Url};
///
/// let base = Url::parse("http://127.0.0.1:8080/v1").unwrap();
/// let url = base.join_segment("symbols").join_segment(&encode_path_segment("^GSPC"));
/// assert_eq!(url.target(), "/v1/symbols/%5EGSPC");
/// assert_eq!(url.origin().port, 8080);
/// assert_eq!(Url::parse("http://[::1]/x?q=1").unwrap().origin().host, "::1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    origin: Origin,
    target: String,
}

impl Url {
    /// Parses `http://host[:port][/path][?query]` (no fragment, no user info).
    ///
    /// # Errors
    ///
    /// When the scheme is not `http`, the host is missing, the port is not a
    /// number, or the URL holds spaces or control characters.
    pub fn parse(s: &str) -> Result<Url, Error> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| Error::url(format!("{s:?} is not an http:// URL")))?;
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::url(format!(
                "{s:?} holds spaces or control characters"
            )));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(Error::url("user info in URLs is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| Error::url("an IPv6 host needs its closing ]"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(Error::url(format!("{s:?} has no host")));
        }
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| Error::url(format!("port {p:?} is not a number")))?,
            None => 80,
        };
        let target = if target.is_empty() {
            "/".to_owned()
        } else if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_owned()
        };
        Ok(Url {
            origin: Origin {
                host: host.to_owned(),
                port,
            },
            target,
        })
    }

    /// The origin (host and port).
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The request target: path and query.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// This URL with one more path segment (already encoded: see
    /// [`encode_path_segment`]); the query, if any, is dropped.
    pub fn join_segment(&self, segment: &str) -> Url {
        let path = self.target.split('?').next().unwrap_or("/");
        let target = if path.ends_with('/') {
            format!("{path}{segment}")
        } else {
            format!("{path}/{segment}")
        };
        Url {
            origin: self.origin.clone(),
            target,
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.origin, self.target)
    }
}

/// Percent-encodes a path segment built from data: everything but the
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded, so `/`, `?`,
/// `#` and `%` cannot change the path's meaning.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_origin_and_target() {
        let u = Url::parse("http://example.com").unwrap();
        assert_eq!(
            (u.origin().host.as_str(), u.origin().port, u.target()),
            ("example.com", 80, "/")
        );
        let u = Url::parse("http://10.0.0.1:8080/a/b?c=d#frag").unwrap();
        assert_eq!((u.origin().port, u.target()), (8080, "/a/b?c=d"));
        let u = Url::parse("http://h?x=1").unwrap();
        assert_eq!(u.target(), "/?x=1");
        let u = Url::parse("http://[::1]:9/").unwrap();
        assert_eq!(u.origin().to_string(), "[::1]:9");
        for bad in [
            "https://h/",
            "http://",
            "http://h:port/",
            "http://u@h/",
            "http://h/a b",
            "http://[::1/",
        ] {
            assert!(Url::parse(bad).unwrap_err().is_url(), "{bad}");
        }
    }

    #[test]
    fn path_segments_from_data_cannot_escape_their_segment() {
        assert_eq!(encode_path_segment("^GSPC"), "%5EGSPC");
        assert_eq!(encode_path_segment("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
        assert_eq!(encode_path_segment("BRK.B-x_y~"), "BRK.B-x_y~");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }
}
