//! Sockets for both protocols: TCP (with name resolution off the executor
//! threads) and Unix, whose reads and writes spend the task's cooperative budget.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_io::Async;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use tally_executor::coop;

/// A connected stream socket.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(Async<TcpStream>),
    Unix(Async<UnixStream>),
}

/// Resolves `host:port`: an IP literal at once, a name on the blocking pool.
pub(crate) async fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_owned();
    let addrs = tally_executor::unblock(move || (name.as_str(), port).to_socket_addrs())
        .await
        .map_err(io::Error::other)??;
    let addrs: Vec<SocketAddr> = addrs.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ));
    }
    Ok(addrs)
}

impl Socket {
    /// Connects to the first address of `host` that answers.
    pub(crate) async fn connect_tcp(host: &str, port: u16) -> io::Result<Socket> {
        let mut last = None;
        for addr in resolve(host, port).await? {
            match Async::<TcpStream>::connect(addr).await {
                Ok(stream) => {
                    stream.get_ref().set_nodelay(true)?;
                    return Ok(Socket::Tcp(stream));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
    }

    pub(crate) async fn connect_unix(path: &Path) -> io::Result<Socket> {
        Ok(Socket::Unix(Async::<UnixStream>::connect(path).await?))
    }

    fn poll_read_raw(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }

    fn poll_write_raw(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    /// Reads what is there (0 at EOF).
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        future::poll_fn(|cx| coop::poll_budgeted(cx, |cx| self.poll_read_raw(cx, buf))).await
    }

    /// Writes some of `buf`; returns how much.
    pub(crate) async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        future::poll_fn(|cx| coop::poll_budgeted(cx, |cx| self.poll_write_raw(cx, buf))).await
    }

    /// Writes all of `buf`.
    pub(crate) async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Looks at what is waiting to be read, without waiting or consuming:
    /// `Ok(None)` when nothing is, `Ok(Some(0))` at EOF, `Ok(Some(n))` when
    /// bytes are there. Only TCP sockets can be peeked; a Unix socket says
    /// `Ok(None)`.
    pub(crate) fn peek_now(&self) -> io::Result<Option<usize>> {
        let Socket::Tcp(stream) = self else {
            return Ok(None);
        };
        let mut probe = [0u8; 1];
        // async-io keeps its sockets non-blocking, so peek cannot wait.
        match stream.get_ref().peek(&mut probe) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Shuts both directions down; the descriptor closes when the socket drops.
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        let result = match self {
            Socket::Tcp(s) => s.get_ref().shutdown(std::net::Shutdown::Both),
            Socket::Unix(s) => s.get_ref().shutdown(std::net::Shutdown::Both),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}
