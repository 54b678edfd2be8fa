//! A TCP fault proxy on loopback: forwards each connection to a target, and
//! can be told at run time to slow down, stall, refuse new connections or
//! cut the current ones.
//!
//! # The model
//!
//! [`FaultProxy::start`] binds `127.0.0.1:0` and starts a tally [`Runtime`]
//! of its own (one worker, `proxy-0`). A nursery `/proxy` holds the accept
//! task; each accepted connection gets a task in the nursery `connections`
//! that connects to the target and pumps bytes both ways (an EOF on one side
//! is passed on as a half-close of the other). [`FaultProxy::shutdown`]
//! closes every connection and stops the runtime; dropping the proxy does
//! the same.
//!
//! | [`ProxyMode`] | effect |
//! |---|---|
//! | `Forward` | bytes pass as they come |
//! | `Delay(d)` | each chunk read, in either direction, waits `d` before it is written on |
//! | `Stall` | nothing is passed on (at most one chunk per direction is held) while the sockets stay open; the held bytes go on when the mode changes |
//! | `Refuse` | a new connection is accepted and closed at once (the client reads EOF); current ones go on |
//!
//! [`FaultProxy::cut_all`] closes every current connection at once, both
//! sides, with a RST (`SO_LINGER` 0).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tally_harness::enrich::{EnrichConfig, EnrichServer};
//! use tally_harness::proxy::{FaultProxy, ProxyMode};
//!
//! let server = EnrichServer::start(EnrichConfig::new())?;
//! let proxy = FaultProxy::start(server.addr())?;
//! // Clients use proxy.url() instead of server.url().
//! proxy.set_mode(ProxyMode::Stall);
//! proxy.set_mode(ProxyMode::Forward);
//! proxy.cut_all();
//! let report = proxy.shutdown(Duration::from_secs(1));
//! assert_eq!(report.stats.connections_open, 0);
//! # server.shutdown(Duration::from_secs(1));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_io::Async;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use tally_executor::{cancelled, sleep, Nursery, NurseryBuilder, Runtime, ShutdownReport};

/// How often a stalled pump looks at the mode again.
const STALL_POLL: Duration = Duration::from_millis(5);
/// The size of one read.
const CHUNK: usize = 16 * 1024;

/// What the proxy does with the bytes and connections it sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// Passes bytes on as they come.
    #[default]
    Forward,
    /// Holds each chunk this long before passing it on.
    Delay(Duration),
    /// Passes nothing on, keeping the sockets open.
    Stall,
    /// Accepts new connections and closes them at once.
    Refuse,
}

/// What the proxy has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted, refused ones included.
    pub connections_accepted: u64,
    /// Connections open now (accepted, not refused, not yet closed).
    pub connections_open: u64,
    /// Connections closed at once under [`ProxyMode::Refuse`].
    pub connections_refused: u64,
    /// Connections closed because the target could not be reached.
    pub upstream_failures: u64,
    /// Connections closed by [`FaultProxy::cut_all`].
    pub connections_cut: u64,
    /// Bytes passed from clients to the target.
    pub bytes_up: u64,
    /// Bytes passed from the target to clients.
    pub bytes_down: u64,
}

/// What [`FaultProxy::shutdown`] reports.
#[derive(Clone, Debug)]
pub struct ProxyReport {
    /// The counters once every connection was closed.
    pub stats: ProxyStats,
    /// What the proxy's runtime did with its tasks.
    pub runtime: ShutdownReport,
}

/// Both sockets of one proxied connection.
type Pair = (Arc<Async<TcpStream>>, Arc<Async<TcpStream>>);

#[derive(Debug, Default)]
struct Shared {
    mode: Mutex<ProxyMode>,
    accepted: AtomicU64,
    open: AtomicU64,
    refused: AtomicU64,
    upstream_failures: AtomicU64,
    cut: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    /// The open connections, for [`FaultProxy::cut_all`].
    live: Mutex<HashMap<u64, Pair>>,
    next_id: AtomicU64,
}

impl Shared {
    fn mode(&self) -> ProxyMode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> ProxyStats {
        // Relaxed: statistics, each read on its own.
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            connections_accepted: load(&self.accepted),
            connections_open: load(&self.open),
            connections_refused: load(&self.refused),
            upstream_failures: load(&self.upstream_failures),
            connections_cut: load(&self.cut),
            bytes_up: load(&self.bytes_up),
            bytes_down: load(&self.bytes_down),
        }
    }
}

/// The running proxy. See the [module docs](self).
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    // Dropped before the runtime: dropping it aborts the proxy's tasks.
    nursery: Nursery,
    runtime: Runtime,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("mode", &self.mode())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Binds `127.0.0.1:0`, starts the proxy's runtime and begins forwarding
    /// to `target`, in [`ProxyMode::Forward`].
    ///
    /// # Errors
    ///
    /// Fails if no port can be bound or the runtime's thread cannot be started.
    pub fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        let listener = Async::<TcpListener>::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.get_ref().local_addr()?;
        let runtime = Runtime::builder()
            .workers(1)
            .name("proxy")
            .blocking_threads(1)
            .build()?;
        let nursery = NurseryBuilder::default()
            .name("proxy")
            .build_in(&runtime)
            .map_err(io::Error::other)?;
        let shared = Arc::new(Shared::default());
        // The handle is not needed: the nursery owns the task.
        let _accept = nursery
            .try_spawn_named("accept", accept(listener, target, shared.clone()))
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(FaultProxy {
            addr,
            target,
            shared,
            nursery,
            runtime,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for HTTP clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.shared.mode()
    }

    /// Switches the mode; it applies to the next chunk and the next
    /// connection (a pump already waiting out a delay finishes that wait).
    pub fn set_mode(&self, mode: ProxyMode) {
        *self.shared.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// Closes every current connection now, on both sides, with a RST.
    /// Returns how many it cut.
    pub fn cut_all(&self) -> usize {
        let pairs: Vec<Pair> = self
            .shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, pair)| pair)
            .collect();
        for (client, upstream) in &pairs {
            for socket in [client, upstream] {
                let _ = socket2::SockRef::from(socket.get_ref()).set_linger(Some(Duration::ZERO));
                // Wakes the pumps: their reads end, and they drop the sockets.
                let _ = socket.get_ref().shutdown(Shutdown::Both);
            }
        }
        self.shared
            .cut
            .fetch_add(pairs.len() as u64, Ordering::Relaxed);
        pairs.len()
    }

    /// A snapshot of its counters.
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Stops the proxy: stops accepting, closes every connection, waits up
    /// to `grace` for its tasks to end, then stops its thread. Blocks the
    /// calling thread.
    pub fn shutdown(self, grace: Duration) -> ProxyReport {
        let FaultProxy {
            shared,
            nursery,
            runtime,
            ..
        } = self;
        let report = runtime.shutdown(grace);
        drop(nursery);
        ProxyReport {
            stats: shared.stats(),
            runtime: report,
        }
    }
}

async fn accept(listener: Async<TcpListener>, target: SocketAddr, shared: Arc<Shared>) {
    let connections = Nursery::builder().name("connections").build();
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            cancelled().await;
            None
        })
        .await;
        let client = match accepted {
            None => break,
            Some(Ok((client, _))) => client,
            Some(Err(_)) => {
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.mode() == ProxyMode::Refuse {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let task = relay(client, target, shared.clone());
        let task = async move {
            future::or(task, cancelled()).await;
        };
        if connections.spawn_named("relay", task).await.is_err() {
            break;
        }
    }
}

/// Counts a connection open while it lives, and takes it off the live list.
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let pair = self
            .shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        drop(pair);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn relay(client: Async<TcpStream>, target: SocketAddr, shared: Arc<Shared>) {
    let _ = client.get_ref().set_nodelay(true);
    let upstream = match Async::<TcpStream>::connect(target).await {
        Ok(upstream) => upstream,
        Err(_) => {
            shared.upstream_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = upstream.get_ref().set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    shared.open.fetch_add(1, Ordering::Relaxed);
    // Declared before the sockets' handles, so it drops after them: the
    // live list holds the last handles, and the connection stops counting as
    // open once they are closed.
    let _registered = Registered {
        shared: &shared,
        id,
    };
    let (client, upstream) = (Arc::new(client), Arc::new(upstream));
    shared
        .live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (client.clone(), upstream.clone()));
    future::zip(
        pump(&client, &upstream, &shared, &shared.bytes_up),
        pump(&upstream, &client, &shared, &shared.bytes_down),
    )
    .await;
}

/// Passes bytes from `from` to `to` until EOF or an error, under the mode.
async fn pump(from: &Async<TcpStream>, to: &Async<TcpStream>, shared: &Shared, count: &AtomicU64) {
    let mut buf = vec![0u8; CHUNK];
    let (mut reader, mut writer) = (from, to);
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        loop {
            match shared.mode() {
                ProxyMode::Stall => sleep(STALL_POLL).await,
                ProxyMode::Delay(d) => {
                    sleep(d).await;
                    break;
                }
                ProxyMode::Forward | ProxyMode::Refuse => break,
            }
        }
        if writer.write_all(&buf[..n]).await.is_err() {
            // The other side is gone: end both directions.
            let _ = from.get_ref().shutdown(Shutdown::Both);
            return;
        }
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
    // Pass the EOF on as a half-close.
    let _ = to.get_ref().shutdown(Shutdown::Write);
}
