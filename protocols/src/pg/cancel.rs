//! Query cancellation: a CancelRequest sent on a new connection with the
//! session's backend key.

use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use super::config::Host;
use super::error::{Broken, Error};
use crate::net::Socket;

/// Cancels the query a connection is running, from any task.
#[derive(Clone)]
pub struct CancelToken {
    host: Host,
    port: u16,
    process_id: i32,
    secret_key: i32,
    timeout: Duration,
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("process_id", &self.process_id)
            .finish_non_exhaustive()
    }
}

impl CancelToken {
    pub(crate) fn new(
        host: Host,
        port: u16,
        process_id: i32,
        secret_key: i32,
        timeout: Duration,
    ) -> Self {
        CancelToken {
            host,
            port,
            process_id,
            secret_key,
            timeout,
        }
    }

    /// Sends the CancelRequest and waits until the server has taken it (it
    /// closes the cancel connection once it has signalled the backend), within
    /// the connection's cancel timeout. Whether the query is then cancelled
    /// depends on whether it was still running.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or does not take the request in time.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may or may not have delivered the request.
    pub async fn cancel(&self) -> Result<(), Error> {
        match tally_executor::timeout(self.timeout, self.send()).await {
            Ok(result) => result.map_err(|e| {
                Error::broken(std::sync::Arc::new(Broken {
                    reason: format!("the cancel request failed: {e}"),
                    io: Some(e.kind()),
                    db: None,
                }))
            }),
            Err(_) => Err(Error::timeout("cancel request", self.timeout)),
        }
    }

    async fn send(&self) -> std::io::Result<()> {
        let mut socket = match &self.host {
            Host::Tcp(host) => Socket::connect_tcp(host, self.port).await?,
            Host::Unix(dir) => {
                Socket::connect_unix(&dir.join(format!(".s.PGSQL.{}", self.port))).await?
            }
        };
        let mut buf = BytesMut::new();
        frontend::cancel_request(self.process_id, self.secret_key, &mut buf);
        socket.write_all(&buf).await?;
        // The server answers nothing and closes the connection when done.
        let mut sink = [0u8; 64];
        while socket.read(&mut sink).await? > 0 {}
        Ok(())
    }
}
