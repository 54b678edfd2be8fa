//! A connection: a plain value with `async fn(&mut self)` operations and no
//! background task. It counts the ReadyForQuery messages the server still owes
//! it and keeps unsent bytes in its write buffer, so an operation dropped
//! midway leaves a connection that knows it is out of step (and can be
//! recovered by reading up to those ReadyForQuery messages) rather than one
//! that silently reads the wrong answer.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tally_executor::timeout;

use super::cache::StatementCache;
use super::cancel::CancelToken;
use super::codec::{decode, DecodeError};
use super::config::{Config, Host};
use super::error::{Broken, DbError, Error};
use super::query::{
    parse_columns, tag_count, Column, Entry, Params, Pipeline, Row, SimpleResult, SimpleRow,
    Statement, StepResult,
};
use super::types::{type_name, ToSql};
use crate::net::Socket;

/// The transaction status the server reported in its last ReadyForQuery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Not in a transaction block.
    Idle,
    /// In a transaction block.
    InTransaction,
    /// In a failed transaction block: only ROLLBACK helps.
    Failed,
}

/// The most notices kept for [`Connection::take_notices`]; older ones are dropped.
const MAX_NOTICES: usize = 64;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A connection to a PostgreSQL server.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), tally_protocols::pg::Error> {
/// use tally_protocols::pg::{Connection, TransactionStatus};
///
/// let rt = tally_executor::Runtime::new();
/// rt.block_on(async {
///     let config = "postgres://app@127.0.0.1:5432/app".parse()?;
///     let mut conn = Connection::connect(&config).await?;
///     let rows = conn.query("SELECT $1::int8 + 1", &[&41i64]).await?;
///     assert_eq!(rows[0].get::<i64>(0)?, 42);
///     assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
///     conn.close().await
/// })
/// # }
/// ```
pub struct Connection {
    socket: Socket,
    read_buf: BytesMut,
    pub(super) write_buf: BytesMut,
    scratch: Box<[u8]>,
    max_message: usize,
    status: TransactionStatus,
    /// ReadyForQuery messages the server owes for what was sent (or queued).
    pending_ready: usize,
    broken: Option<Arc<Broken>>,
    parameters: HashMap<String, String>,
    process_id: i32,
    secret_key: i32,
    host: Host,
    port: u16,
    cancel_timeout: Duration,
    query_timeout: Option<Duration>,
    notices: VecDeque<DbError>,
    cache: StatementCache,
    /// Set when a `query_canceled` error goes by, for the cancel fence.
    saw_cancel: bool,
    next_prepared: u64,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("backend_pid", &self.process_id)
            .field("status", &self.status)
            .field("pending_ready", &self.pending_ready)
            .field("broken", &self.broken.as_ref().map(|b| &b.reason))
            .finish_non_exhaustive()
    }
}

/// Runs an operation under the connection's query timeout, if it has one:
/// past it the query is cancelled on the server and the connection recovered
/// (or marked broken).
macro_rules! limited {
    ($self:ident, $op:expr) => {
        match $self.query_timeout {
            None => $op.await,
            Some(limit) => match timeout(limit, $op).await {
                Ok(result) => result,
                Err(_) => Err($self.after_timeout(limit).await),
            },
        }
    };
}

impl Connection {
    /// Connects and logs in: TCP or Unix socket, startup parameters,
    /// authentication (trust, cleartext, MD5, SCRAM-SHA-256), all within the
    /// config's connect timeout.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached (a broken error), refuses the login
    /// ([`Error::is_auth`]), demands TLS ([`Error::is_tls_required`]), or
    /// does not answer in time ([`Error::is_timeout`]).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-made connection and its socket.
    pub async fn connect(config: &Config) -> Result<Connection, Error> {
        match timeout(config.connect_timeout, Self::start(config)).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(
                "connecting and logging in",
                config.connect_timeout,
            )),
        }
    }

    async fn start(config: &Config) -> Result<Connection, Error> {
        let socket = match &config.host {
            Host::Tcp(host) => Socket::connect_tcp(host, config.port).await,
            Host::Unix(dir) => {
                Socket::connect_unix(&dir.join(format!(".s.PGSQL.{}", config.port))).await
            }
        }
        .map_err(|e| {
            Error::broken(Arc::new(Broken {
                reason: format!(
                    "cannot connect to {}: {e}",
                    describe(&config.host, config.port)
                ),
                io: Some(e.kind()),
                db: None,
            }))
        })?;
        let mut conn = Connection {
            socket,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(1024),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            max_message: config.max_message_size,
            status: TransactionStatus::Idle,
            pending_ready: 1,
            broken: None,
            parameters: HashMap::new(),
            process_id: 0,
            secret_key: 0,
            host: config.host.clone(),
            port: config.port,
            cancel_timeout: config.cancel_timeout,
            query_timeout: config.query_timeout,
            notices: VecDeque::new(),
            cache: StatementCache::new(config.statement_cache),
            saw_cancel: false,
            next_prepared: 0,
        };
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &config.user),
            ("database", config.get_dbname()),
            ("client_encoding", "UTF8"),
        ];
        if let Some(name) = &config.application_name {
            params.push(("application_name", name));
        }
        if let Some(options) = &config.options {
            params.push(("options", options));
        }
        for (k, v) in &config.params {
            params.push((k, v));
        }
        frontend::startup_message(params, &mut conn.write_buf)
            .map_err(|e| Error::config(format!("a startup parameter holds a NUL byte: {e}")))?;
        conn.flush().await?;
        conn.authenticate(config).await?;
        loop {
            match conn.recv().await? {
                Message::BackendKeyData(body) => {
                    conn.process_id = body.process_id();
                    conn.secret_key = body.secret_key();
                }
                Message::ReadyForQuery(body) => {
                    conn.ready(body.status())?;
                    return Ok(conn);
                }
                Message::ErrorResponse(body) => {
                    let error =
                        DbError::parse(body.fields()).map_err(|e| conn.violation(e.to_string()))?;
                    return Err(conn.startup_failed(error));
                }
                other => return Err(conn.unexpected(&other, "logging in")),
            }
        }
    }

    // ----- state -----

    /// The transaction status from the server's last ReadyForQuery.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.status
    }

    /// Whether the connection can no longer be used.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Whether an operation was dropped midway: the server still owes
    /// answers, or a request is half-sent. [`recover`](Self::recover) reads
    /// up to where the connection is in step again.
    pub fn is_out_of_step(&self) -> bool {
        self.pending_ready > 0 || !self.write_buf.is_empty()
    }

    /// Whether the connection is in step, unbroken and outside any
    /// transaction: fit to go back to a pool as it is.
    pub fn is_idle(&self) -> bool {
        !self.is_broken() && !self.is_out_of_step() && self.status == TransactionStatus::Idle
    }

    /// The server's process id for this session.
    pub fn backend_pid(&self) -> i32 {
        self.process_id
    }

    /// A run-time parameter the server reported (`server_version`,
    /// `TimeZone`, `application_name`...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The notices (and warnings) received since the last call, oldest first;
    /// at most 64 are kept.
    pub fn take_notices(&mut self) -> Vec<DbError> {
        self.notices.drain(..).collect()
    }

    /// A token that can cancel this connection's running query from anywhere.
    pub fn cancel_token(&self) -> CancelToken {
        CancelToken::new(
            self.host.clone(),
            self.port,
            self.process_id,
            self.secret_key,
            self.cancel_timeout,
        )
    }

    /// Changes the client-side limit on each query.
    pub fn set_query_timeout(&mut self, limit: Option<Duration>) {
        self.query_timeout = limit;
    }

    /// Forgets every cached statement without telling the server: for after
    /// `DISCARD ALL` or `DEALLOCATE ALL`, which drop them server-side.
    pub fn clear_statement_cache(&mut self) {
        self.cache.clear();
    }

    /// The number of statements in the cache.
    pub fn cached_statements(&self) -> usize {
        self.cache.len()
    }

    fn check(&self) -> Result<(), Error> {
        if let Some(broken) = &self.broken {
            return Err(Error::broken(broken.clone()));
        }
        if self.is_out_of_step() {
            return Err(Error::out_of_step());
        }
        Ok(())
    }

    pub(super) fn break_with(
        &mut self,
        reason: String,
        io: Option<std::io::ErrorKind>,
        db: Option<DbError>,
    ) -> Error {
        let broken = self
            .broken
            .get_or_insert_with(|| Arc::new(Broken { reason, io, db }))
            .clone();
        Error::broken(broken)
    }

    pub(super) fn violation(&mut self, what: String) -> Error {
        self.break_with(format!("protocol violation: {what}"), None, None)
    }

    pub(super) fn unexpected(&mut self, message: &Message, when: &str) -> Error {
        self.violation(format!("unexpected {} while {when}", message_name(message)))
    }

    // ----- I/O -----

    pub(super) async fn flush(&mut self) -> Result<(), Error> {
        while !self.write_buf.is_empty() {
            match self.socket.write(&self.write_buf).await {
                Ok(0) => {
                    return Err(self.break_with(
                        "the socket accepts no more bytes".into(),
                        None,
                        None,
                    ))
                }
                // Only what was written leaves the buffer: a flush dropped
                // midway leaves the rest for `recover`.
                Ok(n) => self.write_buf.advance(n),
                Err(e) => {
                    return Err(self.break_with(
                        format!("writing to the server failed: {e}"),
                        Some(e.kind()),
                        None,
                    ))
                }
            }
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<(), Error> {
        match self.socket.read(&mut self.scratch).await {
            Ok(0) => Err(self.break_with(
                "the server closed the connection".into(),
                Some(std::io::ErrorKind::UnexpectedEof),
                None,
            )),
            Ok(n) => {
                self.read_buf.extend_from_slice(&self.scratch[..n]);
                Ok(())
            }
            Err(e) => Err(self.break_with(
                format!("reading from the server failed: {e}"),
                Some(e.kind()),
                None,
            )),
        }
    }

    /// The next message that answers a request: asynchronous ones (parameter
    /// changes, notices, notifications, close confirmations) are taken care
    /// of here.
    pub(super) async fn recv(&mut self) -> Result<Message, Error> {
        if let Some(broken) = &self.broken {
            return Err(Error::broken(broken.clone()));
        }
        loop {
            match decode(&mut self.read_buf, self.max_message) {
                Ok(Some(message)) => match message {
                    Message::ParameterStatus(body) => {
                        let (name, value) = match (body.name(), body.value()) {
                            (Ok(n), Ok(v)) => (n.to_owned(), v.to_owned()),
                            _ => {
                                return Err(self.violation("a ParameterStatus is not UTF-8".into()))
                            }
                        };
                        self.parameters.insert(name, value);
                    }
                    Message::NoticeResponse(body) => {
                        let notice = DbError::parse(body.fields())
                            .map_err(|e| self.violation(e.to_string()))?;
                        if self.notices.len() == MAX_NOTICES {
                            self.notices.pop_front();
                        }
                        self.notices.push_back(notice);
                    }
                    Message::NotificationResponse(_) | Message::CloseComplete => {}
                    other => return Ok(other),
                },
                Ok(None) => self.fill().await?,
                Err(DecodeError::TooLarge { len, max }) => {
                    return Err(self.break_with(
                        format!("the server sent a message of {len} bytes, over the cap of {max}"),
                        None,
                        None,
                    ))
                }
                Err(DecodeError::Invalid(what)) => return Err(self.violation(what)),
            }
        }
    }

    fn ready(&mut self, status: u8) -> Result<(), Error> {
        self.status = match status {
            b'I' => TransactionStatus::Idle,
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            other => return Err(self.violation(format!("transaction status {other:#x}"))),
        };
        self.pending_ready = self.pending_ready.saturating_sub(1);
        Ok(())
    }

    /// Reads up to the next ReadyForQuery; returns an error the server sent
    /// on the way (a deferred constraint failing at the implicit commit, say).
    async fn read_ready(&mut self) -> Result<Option<DbError>, Error> {
        let mut error = None;
        loop {
            match self.recv().await? {
                Message::ReadyForQuery(body) => {
                    self.ready(body.status())?;
                    return Ok(error);
                }
                Message::ErrorResponse(body) => {
                    let e = self.server_error(body)?;
                    error.get_or_insert(e);
                }
                other => return Err(self.unexpected(&other, "waiting for ReadyForQuery")),
            }
        }
    }

    /// Parses an ErrorResponse; a fatal one breaks the connection.
    fn server_error(
        &mut self,
        body: postgres_protocol::message::backend::ErrorResponseBody,
    ) -> Result<DbError, Error> {
        let error = DbError::parse(body.fields()).map_err(|e| self.violation(e.to_string()))?;
        if error.code == "57014" {
            self.saw_cancel = true;
        }
        if error.is_fatal() {
            return Err(self.break_with(
                format!("the server ended the session: {error}"),
                None,
                Some(error),
            ));
        }
        Ok(error)
    }

    /// Finishes whatever a dropped operation left: sends the rest of a
    /// half-sent request, then reads and discards up to every ReadyForQuery
    /// the server still owes. Afterwards the connection is in step and its
    /// transaction status is known.
    ///
    /// # Errors
    ///
    /// When the connection is broken, or breaks while draining.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a dropped recovery can be started again.
    pub async fn recover(&mut self) -> Result<(), Error> {
        self.drain().await.map(|_| ())
    }

    /// Brings the session back to idle: recovers a dropped operation, then
    /// rolls back an open or failed transaction. Afterwards the connection
    /// is [idle](Self::is_idle), or the error says why not.
    ///
    /// # Errors
    ///
    /// A broken connection, or the server's error for the ROLLBACK.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a dropped reset leaves the connection out of step, and
    /// can be started again.
    pub async fn reset(&mut self) -> Result<(), Error> {
        if self.is_out_of_step() {
            self.recover().await?;
        }
        if self.status != TransactionStatus::Idle {
            self.simple_query_inner("ROLLBACK").await?;
        }
        self.check()?;
        if self.status != TransactionStatus::Idle {
            return Err(self.violation("a ROLLBACK left the session in a transaction".into()));
        }
        Ok(())
    }

    async fn drain(&mut self) -> Result<bool, Error> {
        if let Some(broken) = &self.broken {
            return Err(Error::broken(broken.clone()));
        }
        self.saw_cancel = false;
        self.flush().await?;
        self.discard_until_ready().await?;
        // A dropped operation may have parsed statements whose descriptions
        // were discarded above: close them (closing one the server never made
        // is no error) and forget them, so nothing half-known is reused.
        let unconfirmed = self.cache.take_unconfirmed();
        if !unconfirmed.is_empty() {
            for name in &unconfirmed {
                let _ = frontend::close(b'S', name, &mut self.write_buf);
            }
            frontend::sync(&mut self.write_buf);
            self.pending_ready += 1;
            self.flush().await?;
            self.discard_until_ready().await?;
        }
        Ok(self.saw_cancel)
    }

    async fn discard_until_ready(&mut self) -> Result<(), Error> {
        while self.pending_ready > 0 {
            match self.recv().await? {
                Message::ReadyForQuery(body) => self.ready(body.status())?,
                Message::ErrorResponse(body) => {
                    self.server_error(body)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// After a query ran out of time: cancel it on the server, read up to its
    /// ReadyForQuery, and fence off a cancel that might still be in flight;
    /// if any of that fails or takes too long, the connection is broken.
    async fn after_timeout(&mut self, limit: Duration) -> Error {
        let error = Error::timeout("query", limit);
        if self.broken.is_some() {
            return error;
        }
        let token = self.cancel_token();
        let delivered = token.cancel().await.is_ok();
        let grace = self.cancel_timeout;
        match timeout(grace, self.drain()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) if delivered => {
                // The query ended before the cancel landed: the cancel may
                // still hit the next query. Run a fence for it to hit.
                for _ in 0..2 {
                    match timeout(grace, self.simple_query_inner("SELECT 1")).await {
                        Ok(Ok(_)) => return error,
                        Ok(Err(e)) if e.code() == Some("57014") => continue,
                        _ => break,
                    }
                }
                if self.broken.is_none() && self.is_idle() {
                    return error;
                }
                self.break_with("a cancelled query could not be fenced".into(), None, None);
            }
            Ok(Ok(false)) => {}
            Ok(Err(_)) => {}
            Err(_) => {
                self.break_with(
                    format!("the query did not stop within {grace:?} of its cancel"),
                    None,
                    None,
                );
            }
        }
        error
    }

    // ----- simple query -----

    /// Runs one or more statements with the simple query protocol, values as
    /// text. A failing statement ends the string.
    ///
    /// # Errors
    ///
    /// The server's first error, or a broken, out-of-step or timed-out connection.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleResult>, Error> {
        limited!(self, self.simple_query_inner(sql))
    }

    /// Runs statements with the simple query protocol, ignoring any rows.
    ///
    /// # Errors
    ///
    /// As [`simple_query`](Self::simple_query).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        self.simple_query(sql).await.map(|_| ())
    }

    async fn simple_query_inner(&mut self, sql: &str) -> Result<Vec<SimpleResult>, Error> {
        self.check()?;
        frontend::query(sql, &mut self.write_buf)
            .map_err(|_| Error::type_error("the query holds a NUL byte"))?;
        self.pending_ready += 1;
        self.flush().await?;
        let mut results = Vec::new();
        let mut columns: Arc<[String]> = Arc::from(Vec::new());
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.recv().await? {
                Message::RowDescription(body) => {
                    let parsed = parse_columns(&body).map_err(|e| self.violation(e.to_string()))?;
                    columns = parsed.iter().map(|c| c.name().to_owned()).collect();
                }
                Message::DataRow(body) => {
                    let buffer = body.buffer();
                    let ranges: Vec<_> = body
                        .ranges()
                        .collect()
                        .map_err(|e| self.violation(e.to_string()))?;
                    let values = ranges
                        .into_iter()
                        .map(|r| r.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned()))
                        .collect();
                    rows.push(SimpleRow {
                        columns: columns.clone(),
                        values,
                    });
                }
                Message::CommandComplete(body) => {
                    let tag = body
                        .tag()
                        .map_err(|e| self.violation(e.to_string()))?
                        .to_owned();
                    results.push(SimpleResult {
                        rows: std::mem::take(&mut rows),
                        tag,
                    });
                }
                Message::EmptyQueryResponse => results.push(SimpleResult {
                    rows: Vec::new(),
                    tag: String::new(),
                }),
                Message::ErrorResponse(body) => {
                    let e = self.server_error(body)?;
                    error.get_or_insert(e);
                }
                Message::ReadyForQuery(body) => {
                    self.ready(body.status())?;
                    return match error {
                        Some(e) => Err(Error::db(e)),
                        None => Ok(results),
                    };
                }
                other => return Err(self.unexpected(&other, "running a simple query")),
            }
        }
    }

    // ----- extended query -----

    /// Runs a statement with typed parameters and returns its rows. Uses (and
    /// fills) the statement cache: the first run of a statement parses it,
    /// later runs only bind and execute; one round trip either way.
    ///
    /// # Errors
    ///
    /// The server's error (the connection stays usable), or a broken,
    /// out-of-step or timed-out connection.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn query(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<Row>, Error> {
        let params = Params::encode(params)?;
        match limited!(self, self.run_one(sql, &params, true))? {
            StepResult::Rows(rows) => Ok(rows),
            _ => Ok(Vec::new()),
        }
    }

    /// Runs a statement that should return exactly one row.
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query), and a type error for any other number of rows.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn query_one(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<Row, Error> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(Error::type_error(format!("expected one row, got {n}"))),
        }
    }

    /// Runs a statement and returns the number of rows it affected.
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn execute(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<u64, Error> {
        let params = Params::encode(params)?;
        Ok(limited!(self, self.run_one(sql, &params, false))?.count())
    }

    async fn run_one(
        &mut self,
        sql: &str,
        params: &Params,
        rows: bool,
    ) -> Result<StepResult, Error> {
        self.check()?;
        if sql.contains('\0') {
            return Err(Error::type_error("the statement holds a NUL byte"));
        }
        let mut plan = self.encode_step(sql, params, rows)?;
        frontend::sync(&mut self.write_buf);
        self.pending_ready += 1;
        self.flush().await?;
        let mut result = match self.read_step(&mut plan).await? {
            Ok(result) => result,
            Err(e) => StepResult::Failed(e),
        };
        let late = self.read_ready().await?;
        self.forget_unparsed(&plan);
        if let (Some(e), true) = (late, result.is_ok()) {
            result = StepResult::Failed(e);
        }
        match result {
            StepResult::Failed(e) => Err(Error::db(e)),
            other => Ok(other),
        }
    }

    /// Sends a pipeline in one round trip and reads every statement's result.
    ///
    /// # Errors
    ///
    /// Only for the connection as a whole (broken, out of step, timed out);
    /// the server's errors are in the statements' results, and the
    /// connection's transaction status tells where the session stands.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn pipeline(&mut self, pipeline: &Pipeline) -> Result<Vec<StepResult>, Error> {
        limited!(self, self.pipeline_inner(pipeline))
    }

    async fn pipeline_inner(&mut self, pipeline: &Pipeline) -> Result<Vec<StepResult>, Error> {
        self.check()?;
        let mut plans = Vec::with_capacity(pipeline.entries.len() + 1);
        for entry in &pipeline.entries {
            match entry {
                Entry::Step { sql, params, rows } => {
                    plans.push(Some(self.encode_step(sql, params, *rows)?))
                }
                Entry::Sync => {
                    frontend::sync(&mut self.write_buf);
                    self.pending_ready += 1;
                    plans.push(None);
                }
            }
        }
        if !matches!(plans.last(), Some(None)) {
            frontend::sync(&mut self.write_buf);
            self.pending_ready += 1;
            plans.push(None);
        }
        self.flush().await?;
        let mut results: Vec<StepResult> = Vec::with_capacity(pipeline.len());
        let mut segment_failed = false;
        for plan in &mut plans {
            match plan {
                Some(plan) if segment_failed => {
                    self.forget_unparsed(plan);
                    results.push(StepResult::Skipped);
                }
                Some(plan) => {
                    let result = self.read_step(plan).await?;
                    self.forget_unparsed(plan);
                    match result {
                        Ok(r) => results.push(r),
                        Err(e) => {
                            segment_failed = true;
                            results.push(StepResult::Failed(e));
                        }
                    }
                }
                None => {
                    if let Some(late) = self.read_ready().await? {
                        if let Some(last) = results.iter_mut().rev().find(|r| r.is_ok()) {
                            *last = StepResult::Failed(late);
                        }
                    }
                    segment_failed = false;
                }
            }
        }
        Ok(results)
    }

    /// Queues Parse (when the statement is new), Bind and Execute for one statement.
    fn encode_step(&mut self, sql: &str, params: &Params, rows: bool) -> Result<Plan, Error> {
        let (name, parse, columns) = if self.cache.capacity == 0 {
            (String::new(), true, None)
        } else if let Some((name, columns)) = self.cache.lookup(sql, &params.oids) {
            (name, false, columns)
        } else {
            let (name, evicted) = self.cache.insert(sql, &params.oids);
            if let Some(old) = evicted {
                let _ = frontend::close(b'S', &old, &mut self.write_buf);
            }
            (name, true, None)
        };
        let result = (|| {
            if parse {
                frontend::parse(&name, sql, params.oids.iter().copied(), &mut self.write_buf)?;
                frontend::describe(b'S', &name, &mut self.write_buf)?;
            }
            frontend::bind(
                "",
                &name,
                Some(1),
                0..params.values.len(),
                |i, buf| match params.value(i) {
                    Some(bytes) => {
                        buf.extend_from_slice(bytes);
                        Ok(postgres_protocol::IsNull::No)
                    }
                    None => Ok(postgres_protocol::IsNull::Yes),
                },
                Some(1),
                &mut self.write_buf,
            )
            .map_err(|e| match e {
                frontend::BindError::Conversion(e) => std::io::Error::other(e.to_string()),
                frontend::BindError::Serialization(e) => e,
            })?;
            frontend::execute("", 0, &mut self.write_buf)
        })();
        if let Err(e) = result {
            // Nothing half-queued may reach the server.
            self.write_buf.clear();
            self.cache.remove(&name);
            return Err(Error::type_error(format!(
                "cannot encode the statement: {e}"
            )));
        }
        Ok(Plan {
            name,
            parse,
            parsed: false,
            columns,
            rows,
        })
    }

    /// Drops a statement from the cache whose Parse never completed.
    fn forget_unparsed(&mut self, plan: &Plan) {
        if plan.parse && !plan.parsed && !plan.name.is_empty() {
            self.cache.remove(&plan.name);
        }
    }

    /// Reads one statement's answer: `Ok(Err(..))` when the server refused it.
    async fn read_step(&mut self, plan: &mut Plan) -> Result<Result<StepResult, DbError>, Error> {
        let mut rows = Vec::new();
        loop {
            match self.next_event(plan).await? {
                Event::Row(row) => rows.push(row),
                Event::Done(count) => {
                    return Ok(Ok(if plan.rows {
                        StepResult::Rows(rows)
                    } else {
                        StepResult::Done(count)
                    }))
                }
                Event::Failed(e) => return Ok(Err(e)),
            }
        }
    }

    async fn next_event(&mut self, plan: &mut Plan) -> Result<Event, Error> {
        loop {
            match self.recv().await? {
                Message::ParseComplete => plan.parsed = true,
                Message::ParameterDescription(_) => {}
                Message::RowDescription(body) => {
                    let columns =
                        parse_columns(&body).map_err(|e| self.violation(e.to_string()))?;
                    self.cache.set_columns(&plan.name, &columns);
                    plan.columns = Some(columns);
                }
                Message::NoData => {
                    let columns: Arc<[Column]> = Arc::from(Vec::new());
                    self.cache.set_columns(&plan.name, &columns);
                    plan.columns = Some(columns);
                }
                Message::BindComplete => {
                    if plan.columns.is_none() {
                        plan.columns = self.cache.columns_of(&plan.name);
                    }
                }
                Message::DataRow(body) => {
                    let Some(columns) = plan.columns.clone() else {
                        return Err(self.violation("a row came before its description".into()));
                    };
                    let row = Row::new(columns, body).map_err(|e| self.violation(e.to_string()))?;
                    return Ok(Event::Row(row));
                }
                Message::CommandComplete(body) => {
                    let tag = body.tag().map_err(|e| self.violation(e.to_string()))?;
                    return Ok(Event::Done(tag_count(tag)));
                }
                Message::EmptyQueryResponse | Message::PortalSuspended => {
                    return Ok(Event::Done(0))
                }
                Message::ErrorResponse(body) => {
                    let error = self.server_error(body)?;
                    if error.code == "26000" {
                        // The server no longer has a statement we cached.
                        self.cache.remove(&plan.name);
                    }
                    return Ok(Event::Failed(error));
                }
                other => return Err(self.unexpected(&other, "reading a statement's result")),
            }
        }
    }

    /// Starts a query whose rows are read one at a time, so a large result
    /// never sits in memory whole. The query timeout does not apply.
    ///
    /// # Errors
    ///
    /// When the connection is broken or out of step, or the statement cannot
    /// be encoded; the server's errors come from [`RowStream::next`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future, or the stream before its end, leaves the
    /// connection out of step.
    pub async fn query_stream(
        &mut self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<RowStream<'_>, Error> {
        self.check()?;
        if sql.contains('\0') {
            return Err(Error::type_error("the statement holds a NUL byte"));
        }
        let params = Params::encode(params)?;
        let plan = self.encode_step(sql, &params, true)?;
        frontend::sync(&mut self.write_buf);
        self.pending_ready += 1;
        self.flush().await?;
        Ok(RowStream {
            conn: self,
            plan,
            done: false,
        })
    }

    /// Prepares a named statement outside the cache; it lives until
    /// [`close_statement`](Self::close_statement) or the session's end.
    ///
    /// # Errors
    ///
    /// The server's error for bad SQL, or a broken, out-of-step or timed-out connection.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        limited!(self, self.prepare_inner(sql))
    }

    async fn prepare_inner(&mut self, sql: &str) -> Result<Statement, Error> {
        self.check()?;
        if sql.contains('\0') {
            return Err(Error::type_error("the statement holds a NUL byte"));
        }
        self.next_prepared += 1;
        let name = format!("tally_p{}", self.next_prepared);
        let queued = frontend::parse(&name, sql, std::iter::empty(), &mut self.write_buf)
            .and_then(|()| frontend::describe(b'S', &name, &mut self.write_buf));
        if let Err(e) = queued {
            self.write_buf.clear();
            return Err(Error::type_error(e.to_string()));
        }
        frontend::sync(&mut self.write_buf);
        self.pending_ready += 1;
        self.flush().await?;
        let mut params = Vec::new();
        let mut columns: Option<Arc<[Column]>> = None;
        let mut error = None;
        loop {
            match self.recv().await? {
                Message::ParseComplete => {}
                Message::ParameterDescription(body) => {
                    params = body
                        .parameters()
                        .collect()
                        .map_err(|e| self.violation(e.to_string()))?;
                }
                Message::RowDescription(body) => {
                    columns =
                        Some(parse_columns(&body).map_err(|e| self.violation(e.to_string()))?);
                }
                Message::NoData => columns = Some(Arc::from(Vec::new())),
                Message::ErrorResponse(body) => {
                    let e = self.server_error(body)?;
                    error.get_or_insert(e);
                }
                Message::ReadyForQuery(body) => {
                    self.ready(body.status())?;
                    break;
                }
                other => return Err(self.unexpected(&other, "preparing a statement")),
            }
        }
        match (error, columns) {
            (Some(e), _) => Err(Error::db(e)),
            (None, Some(columns)) => Ok(Statement {
                name,
                params,
                columns,
            }),
            (None, None) => {
                Err(self.violation("a statement was prepared without a description".into()))
            }
        }
    }

    /// Runs a prepared statement. The parameters' types must be the ones the
    /// server described for it.
    ///
    /// # Errors
    ///
    /// A type error when a parameter's type differs from the statement's (no
    /// byte is sent), the server's error, or a broken, out-of-step or
    /// timed-out connection.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn query_prepared(
        &mut self,
        statement: &Statement,
        params: &[&dyn ToSql],
    ) -> Result<Vec<Row>, Error> {
        if params.len() != statement.params.len() {
            return Err(Error::type_error(format!(
                "the statement takes {} parameters, {} were given",
                statement.params.len(),
                params.len()
            )));
        }
        for (i, (param, expected)) in params.iter().zip(&statement.params).enumerate() {
            if param.oid() != *expected {
                return Err(Error::type_error(format!(
                    "parameter ${} is {}, but a {} was given",
                    i + 1,
                    type_name(*expected),
                    type_name(param.oid())
                )));
            }
        }
        let params = Params::encode(params)?;
        limited!(self, self.run_prepared(statement, &params))
    }

    async fn run_prepared(
        &mut self,
        statement: &Statement,
        params: &Params,
    ) -> Result<Vec<Row>, Error> {
        self.check()?;
        frontend::bind(
            "",
            &statement.name,
            Some(1),
            0..params.values.len(),
            |i, buf| match params.value(i) {
                Some(bytes) => {
                    buf.extend_from_slice(bytes);
                    Ok(postgres_protocol::IsNull::No)
                }
                None => Ok(postgres_protocol::IsNull::Yes),
            },
            Some(1),
            &mut self.write_buf,
        )
        .map_err(|_| Error::type_error("cannot encode the parameters"))?;
        frontend::execute("", 0, &mut self.write_buf)
            .map_err(|e| Error::type_error(e.to_string()))?;
        frontend::sync(&mut self.write_buf);
        self.pending_ready += 1;
        self.flush().await?;
        let mut plan = Plan {
            name: statement.name.clone(),
            parse: false,
            parsed: true,
            columns: Some(statement.columns.clone()),
            rows: true,
        };
        let result = self.read_step(&mut plan).await?;
        let late = self.read_ready().await?;
        match (result, late) {
            (Err(e), _) | (Ok(_), Some(e)) => Err(Error::db(e)),
            (Ok(StepResult::Rows(rows)), None) => Ok(rows),
            (Ok(_), None) => Ok(Vec::new()),
        }
    }

    /// Closes a prepared statement on the server.
    ///
    /// # Errors
    ///
    /// A broken, out-of-step or timed-out connection.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step.
    pub async fn close_statement(&mut self, statement: Statement) -> Result<(), Error> {
        self.check()?;
        frontend::close(b'S', &statement.name, &mut self.write_buf)
            .map_err(|e| Error::type_error(e.to_string()))?;
        frontend::sync(&mut self.write_buf);
        self.pending_ready += 1;
        self.flush().await?;
        match self.read_ready().await? {
            Some(e) => Err(Error::db(e)),
            None => Ok(()),
        }
    }

    /// Ends the session: sends Terminate (unless the connection is broken)
    /// and shuts the socket down. The socket's descriptor closes before this returns.
    ///
    /// # Errors
    ///
    /// None in practice: a failure to say goodbye still closes the socket.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connection, which closes the socket.
    pub async fn close(mut self) -> Result<(), Error> {
        if self.broken.is_none() {
            frontend::terminate(&mut self.write_buf);
            let limit = self.cancel_timeout;
            let _ = timeout(limit, self.flush()).await;
        }
        let _ = self.socket.shutdown();
        Ok(())
    }
}

/// A query's rows, read one at a time.
#[derive(Debug)]
pub struct RowStream<'c> {
    conn: &'c mut Connection,
    plan: Plan,
    done: bool,
}

impl RowStream<'_> {
    /// The next row, or `None` at the end.
    ///
    /// # Errors
    ///
    /// The server's error (after which the stream is over and the connection
    /// in step), or a broken connection.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the connection out of step, like dropping
    /// the stream before its end.
    pub async fn next(&mut self) -> Option<Result<Row, Error>> {
        if self.done {
            return None;
        }
        let event = match self.conn.next_event(&mut self.plan).await {
            Ok(event) => event,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let outcome = match event {
            Event::Row(row) => return Some(Ok(row)),
            Event::Done(_) => None,
            Event::Failed(e) => Some(Err(Error::db(e))),
        };
        self.done = true;
        self.conn.forget_unparsed(&self.plan);
        match self.conn.read_ready().await {
            Ok(None) => outcome,
            Ok(Some(late)) => Some(Err(Error::db(late))),
            Err(e) => Some(Err(e)),
        }
    }
}

#[derive(Debug)]
struct Plan {
    name: String,
    parse: bool,
    parsed: bool,
    columns: Option<Arc<[Column]>>,
    rows: bool,
}

enum Event {
    Row(Row),
    Done(u64),
    Failed(DbError),
}

fn describe(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(h) => format!("{h}:{port}"),
        Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
    }
}

fn message_name(message: &Message) -> &'static str {
    match message {
        Message::AuthenticationOk => "AuthenticationOk",
        Message::BackendKeyData(_) => "BackendKeyData",
        Message::BindComplete => "BindComplete",
        Message::CommandComplete(_) => "CommandComplete",
        Message::CopyData(_)
        | Message::CopyDone
        | Message::CopyInResponse(_)
        | Message::CopyOutResponse(_) => "a COPY message (COPY is not supported)",
        Message::DataRow(_) => "DataRow",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        Message::ErrorResponse(_) => "ErrorResponse",
        Message::NoData => "NoData",
        Message::ParameterDescription(_) => "ParameterDescription",
        Message::ParseComplete => "ParseComplete",
        Message::PortalSuspended => "PortalSuspended",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        _ => "message",
    }
}

/// Walks a message the way the connection would, for the codec's property
/// tests: every field accessor must return an error rather than panic.
#[cfg(test)]
pub(crate) fn inspect_for_tests(message: &Message) {
    match message {
        Message::RowDescription(body) => {
            if let Ok(columns) = parse_columns(body) {
                let _ = columns.len();
            }
        }
        Message::DataRow(body) => {
            let ranges: Result<Vec<_>, _> = body.ranges().collect();
            if let Ok(ranges) = ranges {
                for r in ranges.into_iter().flatten() {
                    let _ = body.buffer().get(r);
                }
            }
        }
        Message::ErrorResponse(body) => {
            let _ = DbError::parse(body.fields());
        }
        Message::NoticeResponse(body) => {
            let _ = DbError::parse(body.fields());
        }
        Message::CommandComplete(body) => {
            let _ = body.tag().map(tag_count);
        }
        Message::ParameterStatus(body) => {
            let _ = (body.name(), body.value());
        }
        Message::ParameterDescription(body) => {
            let _: Result<Vec<u32>, _> = body.parameters().collect();
        }
        Message::AuthenticationSasl(body) => {
            let _: Result<Vec<&str>, _> = body.mechanisms().collect();
        }
        _ => {}
    }
}
