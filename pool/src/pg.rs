//! Postgres pooling: [`PgManager`] and transaction scopes on [`PgPool`].
//!
//! A connection goes back to idle only in transaction status idle, in step,
//! unbroken; otherwise it is drained and rolled back, and if that fails or
//! takes too long it is closed and replaced.
//!
//! [`PgPool::transaction`] runs a closure inside BEGIN ... COMMIT: it
//! commits when the closure returns `Ok`, and rolls back explicitly when it
//! returns `Err`, when it panics (the panic is caught, the transaction rolled
//! back, and the panic resumed), and when the task's cancel signal is raised.
//! Only cancellation by drop (a `timeout` around the whole scope, a nursery
//! whose grace ran out) leaves the rollback to the pool's reclaimer, which
//! counts the lease as abandoned.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use tally_protocols::pg::{
    Config as PgConfig, Connection, Error, Pipeline, Row, StepResult, ToSql,
};

use crate::error::PoolError;
use crate::lease::Lease;
use crate::manager::Manager;
use crate::pool::Pool;

/// A Postgres pool.
pub type PgPool = Pool<PgManager>;

type OnConnect = Arc<
    dyn for<'c> Fn(
            &'c mut Connection,
        ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'c>>
        + Send
        + Sync,
>;

/// Makes and cleans Postgres connections for a [`PgPool`].
#[derive(Clone)]
pub struct PgManager {
    config: PgConfig,
    reset_on_return: bool,
    on_connect: Option<OnConnect>,
}

impl fmt::Debug for PgManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgManager")
            .field("config", &self.config)
            .field("reset_on_return", &self.reset_on_return)
            .field("on_connect", &self.on_connect.is_some())
            .finish()
    }
}

/// The default `idle_in_transaction_session_timeout` of pooled sessions.
pub const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

impl PgManager {
    /// Connections made from `config`, opened with `application_name`
    /// `tally` (unless the config names one) and an
    /// `idle_in_transaction_session_timeout` of 10 s, both in the startup
    /// packet, so a `RESET ALL` or `DISCARD ALL` keeps them.
    pub fn new(config: PgConfig) -> Self {
        let config = if config.get_application_name().is_none() {
            config.application_name("tally")
        } else {
            config
        };
        PgManager {
            config,
            reset_on_return: false,
            on_connect: None,
        }
        .idle_in_transaction_timeout(DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT)
    }

    /// The `application_name` of pooled sessions.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.config = self.config.application_name(name);
        self
    }

    /// The server-side `idle_in_transaction_session_timeout` of pooled
    /// sessions: defence in depth, should a session ever be left in a
    /// transaction.
    pub fn idle_in_transaction_timeout(mut self, limit: Duration) -> Self {
        self.config = self.config.param(
            "idle_in_transaction_session_timeout",
            limit.as_millis().to_string(),
        );
        self
    }

    /// Runs `DISCARD ALL` (and clears the statement cache) on every return.
    pub fn reset_on_return(mut self, reset: bool) -> Self {
        self.reset_on_return = reset;
        self
    }

    /// Runs `hook` on every new connection before it is first leased.
    pub fn on_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(
                &'c mut Connection,
            ) -> Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'c>>
            + Send
            + Sync
            + 'static,
    {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// The connection settings.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }
}

impl Manager for PgManager {
    type Object = Connection;
    type Error = Error;

    async fn create(&self) -> Result<Connection, Error> {
        let mut conn = Connection::connect(&self.config).await?;
        if let Some(hook) = &self.on_connect {
            if let Err(e) = hook(&mut conn).await {
                conn.close().await?;
                return Err(e);
            }
        }
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut Connection) -> bool {
        conn.is_idle()
    }

    async fn check(&self, conn: &mut Connection) -> Result<(), Error> {
        if conn.is_idle() {
            Ok(())
        } else {
            self.recycle(conn).await
        }
    }

    async fn recycle(&self, conn: &mut Connection) -> Result<(), Error> {
        conn.reset().await?;
        if self.reset_on_return {
            conn.batch_execute("DISCARD ALL").await?;
            conn.clear_statement_cache();
        }
        Ok(())
    }

    async fn close(&self, conn: Connection) {
        let _ = conn.close().await;
    }
}

/// A transaction on a pooled connection, which must be ended by
/// [`commit`](Transaction::commit) or [`rollback`](Transaction::rollback).
/// Dropped without either, its lease goes to the pool's reclaimer, which
/// rolls it back and counts it as abandoned.
#[derive(Debug)]
pub struct Transaction {
    lease: Lease<PgManager>,
}

impl Transaction {
    async fn begin(mut lease: Lease<PgManager>) -> Result<Transaction, Error> {
        match lease.batch_execute("BEGIN").await {
            Ok(()) => Ok(Transaction { lease }),
            Err(e) => {
                end_after_error(lease, &e).await;
                Err(e)
            }
        }
    }

    /// The connection, for anything the shortcuts here do not cover.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.lease
    }

    /// See [`Connection::query`].
    ///
    /// # Errors
    ///
    /// As [`Connection::query`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step; the
    /// transaction's end (or the reclaimer) recovers it.
    pub async fn query(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<Row>, Error> {
        self.lease.query(sql, params).await
    }

    /// See [`Connection::query_one`].
    ///
    /// # Errors
    ///
    /// As [`Connection::query_one`].
    ///
    /// # Cancel safety
    ///
    /// As [`query`](Self::query).
    pub async fn query_one(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<Row, Error> {
        self.lease.query_one(sql, params).await
    }

    /// See [`Connection::execute`].
    ///
    /// # Errors
    ///
    /// As [`Connection::execute`].
    ///
    /// # Cancel safety
    ///
    /// As [`query`](Self::query).
    pub async fn execute(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<u64, Error> {
        self.lease.execute(sql, params).await
    }

    /// See [`Connection::pipeline`].
    ///
    /// # Errors
    ///
    /// As [`Connection::pipeline`].
    ///
    /// # Cancel safety
    ///
    /// As [`query`](Self::query).
    pub async fn pipeline(&mut self, pipeline: &Pipeline) -> Result<Vec<StepResult>, Error> {
        self.lease.pipeline(pipeline).await
    }

    /// Commits, then gives the connection back.
    ///
    /// # Errors
    ///
    /// The server's error when the commit fails (the transaction is then
    /// rolled back, as PostgreSQL does), or a broken connection (closed and
    /// replaced).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the lease to the reclaimer; the commit
    /// may or may not have happened.
    pub async fn commit(mut self) -> Result<(), Error> {
        let result = self.lease.batch_execute("COMMIT").await;
        match &result {
            Ok(()) => self.lease.release().await,
            Err(e) => end_after_error(self.lease, e).await,
        }
        result
    }

    /// Rolls back explicitly, then gives the connection back (draining it
    /// first if an operation was dropped midway).
    ///
    /// # Errors
    ///
    /// A broken connection (closed and replaced) or a timeout.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the lease to the reclaimer, which rolls back.
    pub async fn rollback(mut self) -> Result<(), Error> {
        let limit = self.lease.recycle_timeout();
        match tally_executor::timeout(limit, self.lease.reset()).await {
            Ok(Ok(())) => {
                self.lease.release().await;
                Ok(())
            }
            Ok(Err(e)) => {
                end_after_error(self.lease, &e).await;
                Err(e)
            }
            Err(_) => {
                self.lease.discard_broken().await;
                Err(Error::timed_out("rollback", limit))
            }
        }
    }
}

/// After an error: a broken connection is closed; anything else goes back
/// through the recycle path (which rolls back or closes).
async fn end_after_error(lease: Lease<PgManager>, error: &Error) {
    if error.is_broken() || lease.is_broken() {
        lease.discard_broken().await;
    } else {
        lease.release().await;
    }
}

/// Why a transaction scope did not commit.
pub struct TxError<E> {
    kind: TxKind<E>,
}

enum TxKind<E> {
    Acquire(PoolError<Error>),
    Begin(Error),
    Commit(Error),
    Failed(E),
    Cancelled,
}

impl<E> TxError<E> {
    /// Whether no connection could be had.
    pub fn is_acquire(&self) -> bool {
        matches!(self.kind, TxKind::Acquire(_))
    }

    /// Whether the task's cancel signal ended the scope (after a rollback).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, TxKind::Cancelled)
    }

    /// The closure's own error (after a rollback).
    pub fn failed(&self) -> Option<&E> {
        match &self.kind {
            TxKind::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The closure's own error, owned.
    pub fn into_failed(self) -> Option<E> {
        match self.kind {
            TxKind::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The database error from BEGIN or COMMIT, if that is what failed.
    pub fn db_error(&self) -> Option<&Error> {
        match &self.kind {
            TxKind::Begin(e) | TxKind::Commit(e) => Some(e),
            TxKind::Acquire(e) => e.create_error(),
            _ => None,
        }
    }
}

impl<E: Transient> TxError<E> {
    /// Whether trying the whole transaction again may succeed.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            TxKind::Acquire(e) => {
                e.is_timeout() || e.create_error().is_some_and(Error::is_transient)
            }
            TxKind::Begin(e) | TxKind::Commit(e) => e.is_transient(),
            TxKind::Failed(e) => e.is_transient(),
            TxKind::Cancelled => false,
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for TxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TxKind::Acquire(e) => f.debug_tuple("Acquire").field(e).finish(),
            TxKind::Begin(e) => f.debug_tuple("Begin").field(e).finish(),
            TxKind::Commit(e) => f.debug_tuple("Commit").field(e).finish(),
            TxKind::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            TxKind::Cancelled => f.write_str("Cancelled"),
        }
    }
}

impl<E: fmt::Display> fmt::Display for TxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TxKind::Acquire(e) => write!(f, "no connection for the transaction: {e}"),
            TxKind::Begin(e) => write!(f, "BEGIN failed: {e}"),
            TxKind::Commit(e) => write!(f, "COMMIT failed, the transaction was rolled back: {e}"),
            TxKind::Failed(e) => write!(f, "the transaction was rolled back: {e}"),
            TxKind::Cancelled => {
                f.write_str("the task was cancelled; the transaction was rolled back")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for TxError<E> {}

/// Errors that say whether trying again may help.
pub trait Transient {
    /// Whether trying the same work again may succeed.
    fn is_transient(&self) -> bool;
}

impl Transient for Error {
    fn is_transient(&self) -> bool {
        Error::is_transient(self)
    }
}

/// How [`PgPool::transaction_with_retry`] retries.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// The most attempts in all (at least 1). Default 3.
    pub attempts: u32,
    /// No attempt starts after this long from the first. Default 5 s.
    pub deadline: Duration,
    /// The pause before the second attempt, doubled (with jitter) after each. Default 10 ms.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            deadline: Duration::from_secs(5),
            backoff: Duration::from_millis(10),
        }
    }
}

enum Outcome<T, E> {
    Done(Result<T, E>),
    Panicked(Box<dyn Any + Send>),
    Cancelled,
}

impl Pool<PgManager> {
    /// Leases a connection and opens a transaction on it.
    ///
    /// # Errors
    ///
    /// When no connection can be had, or BEGIN fails.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future after the lease was taken abandons it to the
    /// reclaimer.
    #[track_caller]
    pub fn begin(&self) -> impl Future<Output = Result<Transaction, TxError<Error>>> + Send + '_ {
        let acquire = self.acquire_at(Location::caller());
        async move {
            let lease = acquire.await.map_err(|e| TxError {
                kind: TxKind::Acquire(e),
            })?;
            Transaction::begin(lease).await.map_err(|e| TxError {
                kind: TxKind::Begin(e),
            })
        }
    }

    /// Runs `work` inside a transaction: COMMIT when it returns `Ok`; an
    /// explicit ROLLBACK when it returns `Err`, when it panics (the panic is
    /// then resumed) and when the task's cancel signal is raised.
    ///
    /// # Errors
    ///
    /// No connection, BEGIN or COMMIT failed, the closure's error, or
    /// cancelled.
    ///
    /// # Panics
    ///
    /// Resumes the closure's panic, after the rollback.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future (a `timeout` around it) leaves the rollback to
    /// the reclaimer, which counts the lease as abandoned; prefer the task's
    /// cancel signal, which rolls back here.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: tally_pool::pg::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    /// let id = 7i64;
    /// let stored = pool
    ///     .transaction(async |tx| {
    ///         tx.execute("INSERT INTO t (id) VALUES ($1) ON CONFLICT DO NOTHING", &[&id]).await
    ///     })
    ///     .await?;
    /// assert!(stored <= 1);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn transaction<'p, F, T, E>(
        &'p self,
        work: F,
    ) -> impl Future<Output = Result<T, TxError<E>>> + 'p
    where
        F: AsyncFnOnce(&mut Transaction) -> Result<T, E> + 'p,
        T: 'p,
        E: 'p,
    {
        let location = Location::caller();
        async move { self.run_transaction(location, work).await }
    }

    async fn run_transaction<F, T, E>(
        &self,
        location: &'static Location<'static>,
        work: F,
    ) -> Result<T, TxError<E>>
    where
        F: AsyncFnOnce(&mut Transaction) -> Result<T, E>,
    {
        if tally_executor::is_cancelled() {
            return Err(TxError {
                kind: TxKind::Cancelled,
            });
        }
        let lease = self.acquire_at(location).await.map_err(|e| TxError {
            kind: TxKind::Acquire(e),
        })?;
        let mut tx = Transaction::begin(lease).await.map_err(|e| TxError {
            kind: TxKind::Begin(e),
        })?;
        let outcome = {
            let body = AssertUnwindSafe(work(&mut tx)).catch_unwind();
            futures_lite::future::or(
                async {
                    match body.await {
                        Ok(result) => Outcome::Done(result),
                        Err(panic) => Outcome::Panicked(panic),
                    }
                },
                async {
                    tally_executor::cancelled().await;
                    Outcome::Cancelled
                },
            )
            .await
        };
        match outcome {
            Outcome::Done(Ok(value)) => match tx.commit().await {
                Ok(()) => Ok(value),
                Err(e) => Err(TxError {
                    kind: TxKind::Commit(e),
                }),
            },
            Outcome::Done(Err(e)) => {
                let _ = tx.rollback().await;
                Err(TxError {
                    kind: TxKind::Failed(e),
                })
            }
            Outcome::Panicked(panic) => {
                let _ = tx.rollback().await;
                std::panic::resume_unwind(panic)
            }
            Outcome::Cancelled => {
                let _ = tx.rollback().await;
                Err(TxError {
                    kind: TxKind::Cancelled,
                })
            }
        }
    }

    /// As [`transaction`](Self::transaction), trying the whole transaction
    /// again while it fails with a transient error (serialization failure,
    /// deadlock, lost connection...), within `retry`'s attempts and deadline.
    ///
    /// # Errors
    ///
    /// The last attempt's error.
    ///
    /// # Panics
    ///
    /// Resumes the closure's panic, after the rollback.
    ///
    /// # Cancel safety
    ///
    /// As [`transaction`](Self::transaction).
    #[track_caller]
    pub fn transaction_with_retry<'p, F, T, E>(
        &'p self,
        retry: Retry,
        mut work: F,
    ) -> impl Future<Output = Result<T, TxError<E>>> + 'p
    where
        F: AsyncFnMut(&mut Transaction) -> Result<T, E> + 'p,
        T: 'p,
        E: Transient + 'p,
    {
        let location = Location::caller();
        async move {
            let start = Instant::now();
            let mut pause = retry.backoff;
            let mut attempt = 1;
            loop {
                let result = self
                    .run_transaction(location, async |tx: &mut Transaction| work(tx).await)
                    .await;
                match result {
                    Err(e)
                        if e.is_transient()
                            && attempt < retry.attempts.max(1)
                            && start.elapsed() + pause < retry.deadline =>
                    {
                        attempt += 1;
                        let jitter = Duration::from_micros(fastrand::u64(
                            0..=pause.as_micros() as u64 / 2 + 1,
                        ));
                        tally_executor::sleep(pause + jitter).await;
                        pause = pause.saturating_mul(2);
                    }
                    other => return other,
                }
            }
        }
    }
}
