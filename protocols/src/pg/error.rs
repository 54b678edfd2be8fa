//! Errors of the PostgreSQL client: the server's own (`DbError`, with its
//! SQLSTATE and a transient/permanent classification) and the client's.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::ErrorFields;

/// An ErrorResponse or NoticeResponse from the server, field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbError {
    /// `ERROR`, `FATAL`, `PANIC`, or for notices `WARNING`, `NOTICE`...
    pub severity: String,
    /// The SQLSTATE code, such as `23505`.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// An optional second message with more detail.
    pub detail: Option<String>,
    /// An optional suggestion of what to do.
    pub hint: Option<String>,
    /// The 1-based character position in the query where the error is.
    pub position: Option<u32>,
    /// The schema, table, column, constraint named by the error, if any.
    pub constraint: Option<String>,
    /// The table named by the error, if any.
    pub table: Option<String>,
    /// The column named by the error, if any.
    pub column: Option<String>,
}

impl DbError {
    pub(crate) fn parse(mut fields: ErrorFields<'_>) -> io::Result<DbError> {
        let mut error = DbError::default();
        while let Some(field) = fields.next()? {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => error.severity = value,
                b'S' if error.severity.is_empty() => error.severity = value,
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                b'P' => error.position = value.parse().ok(),
                b'n' => error.constraint = Some(value),
                b't' => error.table = Some(value),
                b'c' => error.column = Some(value),
                _ => {}
            }
        }
        Ok(error)
    }

    /// Whether the server ended the session with this error (`FATAL` or `PANIC`).
    pub fn is_fatal(&self) -> bool {
        self.severity == "FATAL" || self.severity == "PANIC"
    }

    /// Whether trying the same work again may succeed: serialization failure
    /// and deadlock (class 40), connection failures (class 08), an
    /// administrator's or crash shutdown (57P01..57P03), too many connections
    /// (53300), lock not available (55P03), and the server out of resources
    /// (class 53).
    pub fn is_transient(&self) -> bool {
        let code = self.code.as_str();
        code.starts_with("08")
            || code.starts_with("53")
            || matches!(
                code,
                "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "55P03" | "57014"
            )
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

/// What went wrong in the client, with its cause.
#[derive(Clone, Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// The server answered with an error; the connection is still usable
    /// unless the error was fatal.
    Db(Box<DbError>),
    /// The connection cannot be used again.
    Broken(Arc<Broken>),
    /// An earlier operation was dropped before it finished.
    OutOfStep,
    /// A connection string or setting is wrong.
    Config(String),
    /// Authentication failed or needs what the client does not have.
    Auth(String),
    /// The server requires TLS, which this client does not speak yet.
    TlsRequired(String),
    /// The operation ran out of time at the given stage.
    Timeout {
        stage: &'static str,
        after: Duration,
    },
    /// A value could not be converted to or from the PostgreSQL type.
    Type(String),
    /// A row has no such column.
    Column(String),
}

/// Why a connection is broken.
#[derive(Debug)]
pub(crate) struct Broken {
    pub(crate) reason: String,
    pub(crate) io: Option<io::ErrorKind>,
    pub(crate) db: Option<DbError>,
}

impl Error {
    pub(crate) fn db(error: DbError) -> Error {
        Error {
            kind: Kind::Db(Box::new(error)),
        }
    }

    pub(crate) fn broken(broken: Arc<Broken>) -> Error {
        Error {
            kind: Kind::Broken(broken),
        }
    }

    pub(crate) fn out_of_step() -> Error {
        Error {
            kind: Kind::OutOfStep,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Config(message.into()),
        }
    }

    pub(crate) fn auth(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Auth(message.into()),
        }
    }

    pub(crate) fn tls_required(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::TlsRequired(message.into()),
        }
    }

    pub(crate) fn timeout(stage: &'static str, after: Duration) -> Error {
        Error {
            kind: Kind::Timeout { stage, after },
        }
    }

    pub(crate) fn type_error(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Type(message.into()),
        }
    }

    pub(crate) fn column(message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Column(message.into()),
        }
    }

    /// An error for work on a connection that a layer above gave up on after
    /// `after` (a pool's recycle timeout, say).
    pub fn timed_out(stage: &'static str, after: Duration) -> Error {
        Error::timeout(stage, after)
    }

    /// The server's error, if this is one (also for a fatal error that broke
    /// the connection, such as `57P01` from `pg_terminate_backend`).
    pub fn as_db_error(&self) -> Option<&DbError> {
        match &self.kind {
            Kind::Db(e) => Some(e),
            Kind::Broken(b) => b.db.as_ref(),
            _ => None,
        }
    }

    /// The SQLSTATE of the server's error, if this is one.
    pub fn code(&self) -> Option<&str> {
        self.as_db_error().map(|e| e.code.as_str())
    }

    /// Whether the connection can no longer be used: closed by the server,
    /// reset, a protocol violation, an oversized message, or a timeout that
    /// could not be recovered from.
    pub fn is_broken(&self) -> bool {
        matches!(self.kind, Kind::Broken(_))
    }

    /// The I/O error behind a broken connection, if one was.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match &self.kind {
            Kind::Broken(b) => b.io,
            _ => None,
        }
    }

    /// Whether an earlier operation on the connection was dropped midway, so
    /// that it must be recovered (`Connection::recover`) or discarded.
    pub fn is_out_of_step(&self) -> bool {
        matches!(self.kind, Kind::OutOfStep)
    }

    /// Whether the operation ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout { .. })
    }

    /// Whether a value did not fit the PostgreSQL type, or a row had no such column.
    pub fn is_type(&self) -> bool {
        matches!(self.kind, Kind::Type(_) | Kind::Column(_))
    }

    /// Whether authentication failed (including the server's 28P01 and 28000).
    pub fn is_auth(&self) -> bool {
        matches!(self.kind, Kind::Auth(_)) || self.code().is_some_and(|c| c.starts_with("28"))
    }

    /// Whether the server demands TLS.
    pub fn is_tls_required(&self) -> bool {
        matches!(self.kind, Kind::TlsRequired(_))
    }

    /// Whether the connection string or a setting was wrong.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config(_))
    }

    /// Whether the same work may succeed if tried again (on a fresh connection
    /// when this one is broken): transient server errors, lost connections and
    /// timeouts.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            Kind::Db(e) => e.is_transient(),
            Kind::Broken(_) | Kind::Timeout { .. } => true,
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Db(e) => write!(f, "the server said {e}"),
            Kind::Broken(b) => write!(f, "connection broken: {}", b.reason),
            Kind::OutOfStep => f.write_str(
                "connection out of step: an earlier operation was dropped midway; recover or discard it",
            ),
            Kind::Config(m) => write!(f, "bad connection setting: {m}"),
            Kind::Auth(m) => write!(f, "authentication failed: {m}"),
            Kind::TlsRequired(m) => write!(
                f,
                "the server requires TLS, which tally's client does not support yet: {m}"
            ),
            Kind::Timeout { stage, after } => write!(f, "{stage} timed out after {after:?}"),
            Kind::Type(m) => write!(f, "type mismatch: {m}"),
            Kind::Column(m) => write!(f, "no such column: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Db(e) => Some(&**e),
            Kind::Broken(b) => b.db.as_ref().map(|e| e as _),
            _ => None,
        }
    }
}
