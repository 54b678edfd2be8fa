//! HTTP pooling: [`HttpPool`], keyed by origin, with a limit per origin and
//! in total.
//!
//! A response gives its connection back only once its body has been read to
//! the end. A response dropped with its body unread is the last line of
//! defence: the reclaimer drains what remains if it fits a small budget
//! (bytes and time) and reuses the connection, or closes it. A transport
//! fault (timeout, malformed or truncated response, reset) always closes the
//! connection. An idle connection the server closed is caught before reuse,
//! and an idempotent request that met such a stale connection before any
//! response byte is tried once more.

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use tally_executor::{Nursery, Spawner};
use tally_protocols::http1::{Connection, Error, Head, Idle, Options, Origin, Request, Url};

use crate::config::Config;
use crate::error::{PoolError, Stage};
use crate::lease::Lease;
use crate::manager::Manager;
use crate::metrics::Metrics;
use crate::pool::{Pool, StartError};

/// Makes and checks HTTP/1.1 connections to one origin.
#[derive(Clone, Debug)]
pub struct HttpManager {
    origin: Origin,
    options: Options,
    drain_bytes: usize,
    drain_time: Duration,
}

impl Manager for HttpManager {
    type Object = Connection;
    type Error = Error;

    async fn create(&self) -> Result<Connection, Error> {
        Connection::connect(&self.origin, self.options).await
    }

    fn is_valid(&self, conn: &mut Connection) -> bool {
        conn.check_idle() == Idle::Ready
    }

    async fn check(&self, conn: &mut Connection) -> Result<(), Error> {
        if conn.check_idle() == Idle::Ready {
            Ok(())
        } else {
            Err(Error::not_reusable(
                "the server closed it while it was idle",
            ))
        }
    }

    async fn recycle(&self, conn: &mut Connection) -> Result<(), Error> {
        if conn.is_body_pending() && !conn.drain(self.drain_bytes, self.drain_time).await? {
            return Err(Error::not_reusable(
                "its unread body was over the drain budget",
            ));
        }
        if conn.is_reusable() {
            Ok(())
        } else {
            Err(Error::not_reusable("its last exchange ended its reuse"))
        }
    }

    async fn close(&self, conn: Connection) {
        conn.close();
    }
}

/// Settings of an [`HttpPool`].
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Settings of each origin's pool (its `max_size` is the limit per origin).
    pub per_origin: Config,
    /// The most connections across all origins. Default 64.
    pub max_total: usize,
    /// Timeouts and limits of each connection.
    pub options: Options,
    /// The most unread body bytes drained to save a connection. Default 64 KiB.
    pub drain_bytes: usize,
    /// The longest a drain may take. Default 100 ms.
    pub drain_time: Duration,
    /// The largest body [`HttpPool::request`] reads. Default 4 MiB.
    pub body_cap: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            per_origin: Config::named("http").max_size(16),
            max_total: 64,
            options: Options::default(),
            drain_bytes: 64 * 1024,
            drain_time: Duration::from_millis(100),
            body_cap: 4 << 20,
        }
    }
}

/// Why an HTTP exchange through the pool failed.
#[derive(Debug)]
pub struct HttpPoolError {
    kind: HttpKind,
}

#[derive(Debug)]
enum HttpKind {
    Acquire(PoolError<Error>),
    Http(Error),
}

impl HttpPoolError {
    /// The HTTP error, if the exchange itself failed.
    pub fn http(&self) -> Option<&Error> {
        match &self.kind {
            HttpKind::Http(e) => Some(e),
            HttpKind::Acquire(e) => e.create_error(),
        }
    }

    /// The pool's error, if no connection could be had.
    pub fn acquire(&self) -> Option<&PoolError<Error>> {
        match &self.kind {
            HttpKind::Acquire(e) => Some(e),
            HttpKind::Http(_) => None,
        }
    }

    /// Whether trying again may succeed (connect errors, timeouts, resets,
    /// malformed or truncated responses, a busy pool).
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            HttpKind::Acquire(e) => {
                e.is_timeout() || e.create_error().is_some_and(Error::is_transient)
            }
            HttpKind::Http(e) => e.is_transient(),
        }
    }
}

impl fmt::Display for HttpPoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            HttpKind::Acquire(e) => write!(f, "no connection: {e}"),
            HttpKind::Http(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HttpPoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            HttpKind::Acquire(e) => Some(e),
            HttpKind::Http(e) => Some(e),
        }
    }
}

/// Room under the total limit, taken by every lease and given back at its end.
#[derive(Debug)]
struct Total {
    used: AtomicUsize,
    max: usize,
    freed: Event,
}

impl Total {
    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    async fn take(&self, deadline: Instant) -> bool {
        tally_executor::wait_until(&self.freed, Some(deadline), || self.try_take()).await
    }

    fn give_back(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify(1);
    }
}

/// Holds one unit of the total limit; gives it back when dropped (bookkeeping
/// of a count, not cleanup of a resource).
#[derive(Debug)]
struct Permit {
    total: Arc<Total>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.total.give_back();
    }
}

struct Shared {
    config: HttpConfig,
    pools: Mutex<HashMap<Origin, Pool<HttpManager>>>,
    total: Arc<Total>,
    spawner: Spawner,
}

/// A pool of HTTP/1.1 connections, keyed by origin.
///
/// Cheap to clone: clones share one pool.
#[derive(Clone)]
pub struct HttpPool {
    shared: Arc<Shared>,
}

impl fmt::Debug for HttpPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPool")
            .field(
                "total_in_use",
                &self.shared.total.used.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

/// A response whose body is still to be read. Reading it to the end gives
/// its connection back; [`discard`](PooledResponse::discard) drains or closes
/// it explicitly. Dropped with its body unread, it goes to the reclaimer.
#[derive(Debug)]
pub struct PooledResponse {
    /// Status line and headers.
    pub head: Head,
    lease: Option<Lease<HttpManager>>,
    _permit: Permit,
}

impl PooledResponse {
    /// The next piece of the body, or `None` at its end, when the connection
    /// goes back to the pool.
    ///
    /// # Errors
    ///
    /// A transport fault; the connection is then closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the body unread; the response's end (or
    /// the reclaimer) deals with it.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(None);
        };
        match lease.read_chunk().await {
            Ok(Some(chunk)) => Ok(Some(chunk)),
            Ok(None) => {
                if let Some(lease) = self.lease.take() {
                    lease.release().await;
                }
                Ok(None)
            }
            Err(e) => {
                if let Some(lease) = self.lease.take() {
                    lease.discard_broken().await;
                }
                Err(e)
            }
        }
    }

    /// Reads the rest of the body (up to `cap` bytes) and gives the
    /// connection back.
    ///
    /// # Errors
    ///
    /// A transport fault or a body over `cap`; the connection is then closed.
    ///
    /// # Cancel safety
    ///
    /// As [`read_chunk`](Self::read_chunk).
    pub async fn read_to_end(mut self, cap: usize) -> Result<Bytes, Error> {
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = self.read_chunk().await? {
            if body.len() + chunk.len() > cap {
                if let Some(lease) = self.lease.take() {
                    lease.discard_broken().await;
                }
                return Err(Error::not_reusable("the response body was over the cap"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Ends the response without its body: drains what remains within the
    /// pool's budget and gives the connection back, or closes it.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the lease to the reclaimer.
    pub async fn discard(mut self) {
        if let Some(lease) = self.lease.take() {
            // Release recycles, and recycling drains within the budget.
            lease.release().await;
        }
    }
}

fn idempotent(method: &str) -> bool {
    ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

impl HttpPool {
    /// A pool whose per-origin pools run their housekeepers and reclaimers in
    /// `nursery`.
    pub fn new(config: HttpConfig, nursery: &Nursery) -> HttpPool {
        HttpPool {
            shared: Arc::new(Shared {
                total: Arc::new(Total {
                    used: AtomicUsize::new(0),
                    max: config.max_total.max(1),
                    freed: Event::new(),
                }),
                config,
                pools: Mutex::new(HashMap::new()),
                spawner: nursery.spawner(),
            }),
        }
    }

    fn pool_for(&self, origin: &Origin) -> Result<Pool<HttpManager>, StartError> {
        let mut pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(origin) {
            return Ok(pool.clone());
        }
        let config = &self.shared.config;
        let mut per_origin = config.per_origin.clone();
        per_origin.name = format!("{}-{origin}", per_origin.name);
        let manager = HttpManager {
            origin: origin.clone(),
            options: config.options,
            drain_bytes: config.drain_bytes,
            drain_time: config.drain_time,
        };
        let pool = Pool::with_spawner(manager, per_origin, &self.shared.spawner)?;
        pools.insert(origin.clone(), pool.clone());
        Ok(pool)
    }

    /// Sends a request and reads the response head; the body is read from
    /// the returned [`PooledResponse`]. An idempotent request that met a
    /// connection the server had closed, before any response byte, is tried
    /// once more.
    ///
    /// # Errors
    ///
    /// No connection (a timeout naming its stage, a connect error), or a
    /// transport fault (its connection closed). A response of any status is
    /// not an error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the lease to the reclaimer, which closes
    /// the half-used connection.
    #[track_caller]
    pub fn send<'a>(
        &'a self,
        url: &'a Url,
        request: &'a Request,
    ) -> impl std::future::Future<Output = Result<PooledResponse, HttpPoolError>> + Send + 'a {
        let location = Location::caller();
        async move { self.send_at(location, url, request).await }
    }

    async fn send_at(
        &self,
        location: &'static Location<'static>,
        url: &Url,
        request: &Request,
    ) -> Result<PooledResponse, HttpPoolError> {
        let pool = self.origin_pool(url)?;
        let start = Instant::now();
        let permit = self.total_permit(&pool, start).await?;
        let mut retried = false;
        loop {
            let mut lease = pool.acquire_at(location).await.map_err(|e| HttpPoolError {
                kind: HttpKind::Acquire(e),
            })?;
            let reused = lease.exchanges() > 0;
            match lease.send(request).await {
                Ok(head) => {
                    let mut response = PooledResponse {
                        head,
                        lease: Some(lease),
                        _permit: permit,
                    };
                    // A body-less response is complete: give the connection back now.
                    if response
                        .lease
                        .as_ref()
                        .is_some_and(|l| !l.is_body_pending())
                    {
                        if let Some(lease) = response.lease.take() {
                            lease.release().await;
                        }
                    }
                    return Ok(response);
                }
                Err(e) => {
                    let stale = reused
                        && lease.failed_before_response()
                        && e.is_transport()
                        && !e.is_timeout();
                    lease.discard_broken().await;
                    if stale && !retried && idempotent(request.method()) {
                        retried = true;
                        continue;
                    }
                    return Err(HttpPoolError {
                        kind: HttpKind::Http(e),
                    });
                }
            }
        }
    }

    /// Sends a request and reads its whole response (body up to the
    /// config's `body_cap`), giving the connection back.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and a transport fault while reading the body.
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Self::send).
    #[track_caller]
    pub fn request<'a>(
        &'a self,
        url: &'a Url,
        request: &'a Request,
    ) -> impl std::future::Future<Output = Result<(Head, Bytes), HttpPoolError>> + Send + 'a {
        let location = Location::caller();
        async move { self.request_at(location, url, request, None).await }
    }

    /// As [`request`](Self::request), the whole exchange within `limit`: past
    /// it the connection is closed explicitly (not dropped) and a timeout at
    /// the `exchange` stage is returned.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Self::send).
    #[track_caller]
    pub fn request_within<'a>(
        &'a self,
        url: &'a Url,
        request: &'a Request,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<(Head, Bytes), HttpPoolError>> + Send + 'a {
        let location = Location::caller();
        async move { self.request_at(location, url, request, Some(limit)).await }
    }

    async fn request_at(
        &self,
        location: &'static Location<'static>,
        url: &Url,
        request: &Request,
        limit: Option<Duration>,
    ) -> Result<(Head, Bytes), HttpPoolError> {
        let pool = self.origin_pool(url)?;
        let start = Instant::now();
        let _permit = self.total_permit(&pool, start).await?;
        let cap = self.shared.config.body_cap;
        let mut retried = false;
        loop {
            let mut lease = pool.acquire_at(location).await.map_err(|e| HttpPoolError {
                kind: HttpKind::Acquire(e),
            })?;
            let reused = lease.exchanges() > 0;
            let result = match limit {
                Some(limit) => {
                    let left = limit.saturating_sub(start.elapsed());
                    lease.request_within(request, cap, left).await
                }
                None => lease.request(request, cap).await,
            };
            match result {
                Ok(response) => {
                    lease.release().await;
                    return Ok((response.head, response.body));
                }
                Err(e) => {
                    let stale = reused
                        && lease.failed_before_response()
                        && e.is_transport()
                        && !e.is_timeout();
                    lease.discard_broken().await;
                    if stale && !retried && idempotent(request.method()) {
                        retried = true;
                        continue;
                    }
                    return Err(HttpPoolError {
                        kind: HttpKind::Http(e),
                    });
                }
            }
        }
    }

    fn origin_pool(&self, url: &Url) -> Result<Pool<HttpManager>, HttpPoolError> {
        self.pool_for(url.origin()).map_err(|e| HttpPoolError {
            kind: HttpKind::Http(Error::not_reusable(if e.is_closed() {
                "the pool's nursery is closed"
            } else {
                "the pool's nursery is full"
            })),
        })
    }

    async fn total_permit(
        &self,
        pool: &Pool<HttpManager>,
        start: Instant,
    ) -> Result<Permit, HttpPoolError> {
        let deadline = start + pool.config().wait_timeout;
        if !self.shared.total.take(deadline).await {
            return Err(HttpPoolError {
                kind: HttpKind::Acquire(PoolError::timeout(Stage::Wait, start.elapsed(), 0)),
            });
        }
        Ok(Permit {
            total: self.shared.total.clone(),
        })
    }

    /// Metrics per origin, and their sum.
    pub fn metrics(&self) -> HttpMetrics {
        let pools: Vec<(Origin, Pool<HttpManager>)> = self
            .shared
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(o, p)| (o.clone(), p.clone()))
            .collect();
        let per_origin: Vec<(Origin, Metrics)> =
            pools.into_iter().map(|(o, p)| (o, p.metrics())).collect();
        let mut total = Metrics::default();
        for (_, m) in &per_origin {
            total.size += m.size;
            total.idle += m.idle;
            total.in_use += m.in_use;
            total.waiters += m.waiters;
            total.waiters_peak = total.waiters_peak.max(m.waiters_peak);
            total.acquired += m.acquired;
            total.released += m.released;
            total.abandoned += m.abandoned;
            total.discarded += m.discarded;
            total.discarded_broken += m.discarded_broken;
            total.created += m.created;
            total.create_failures += m.create_failures;
            total.closed += m.closed;
            total.acquire_timeouts += m.acquire_timeouts;
            total.failed_checks += m.failed_checks;
            total.leak_warnings += m.leak_warnings;
            total.acquire_p50 = total.acquire_p50.max(m.acquire_p50);
            total.acquire_p99 = total.acquire_p99.max(m.acquire_p99);
            total
                .abandoned_sites
                .extend(m.abandoned_sites.iter().cloned());
        }
        HttpMetrics {
            total,
            in_use_total: self.shared.total.used.load(Ordering::Acquire),
            per_origin,
        }
    }

    /// Waits until every response has ended and every abandoned one has been
    /// reclaimed, or `limit`; says whether it settled.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let pools: Vec<Pool<HttpManager>> = self
            .shared
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for pool in pools {
            if !pool
                .settle(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                return false;
            }
        }
        true
    }

    /// Closes every origin's pool (see [`Pool::close`]).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves some pools unclosed.
    pub async fn close(&self, limit: Duration) {
        let pools: Vec<Pool<HttpManager>> = self
            .shared
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        for pool in pools {
            pool.close(limit).await;
        }
    }
}

/// An [`HttpPool`]'s metrics.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    /// Summed over origins (peaks and percentiles: the highest origin's).
    pub total: Metrics,
    /// Leases out across all origins, against the total limit.
    pub in_use_total: usize,
    /// Each origin's own.
    pub per_origin: Vec<(Origin, Metrics)>,
}
