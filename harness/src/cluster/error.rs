//! The error of every cluster operation.

use std::fmt;
use std::io;
use std::time::Duration;

/// What went wrong while starting, administering or stopping a [`Cluster`].
///
/// [`Cluster`]: super::Cluster
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterError {
    /// The PostgreSQL server binaries (`initdb`, `pg_ctl`) were not found.
    BinariesNotFound {
        /// Where they were looked for.
        searched: String,
    },
    /// We run as root, and the server (which refuses to run as root) needs the
    /// `postgres` OS user, which does not exist or cannot be switched to.
    NoPostgresUser {
        /// What is missing.
        detail: String,
    },
    /// `initdb` failed.
    InitdbFailed {
        /// Its standard output and error.
        output: String,
    },
    /// No free loopback port could be found (or every one tried was taken by
    /// the time the server bound it).
    NoFreePort {
        /// The last failure.
        detail: String,
    },
    /// The server did not start (bad setting, crash at startup, ...).
    StartFailed {
        /// The output of `pg_ctl`.
        output: String,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// The server did not accept connections within the timeout.
    NotReady {
        /// The timeout that expired.
        timeout: Duration,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// An administrative command (`psql`, `pg_ctl stop`, ...) failed.
    CommandFailed {
        /// The command, in short.
        command: String,
        /// Its standard error (or output).
        output: String,
    },
    /// An I/O error, with what was being done.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

impl ClusterError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::BinariesNotFound { searched } => write!(
                f,
                "PostgreSQL server binaries (initdb, pg_ctl) not found (searched: {searched}); \
                 install the `postgresql` package (Debian/Ubuntu: `apt-get install postgresql`) \
                 or set PG_BIN to the directory holding them"
            ),
            ClusterError::NoPostgresUser { detail } => write!(
                f,
                "running as root, the server must run as the `postgres` OS user: {detail} \
                 (installing the `postgresql` package creates it)"
            ),
            ClusterError::InitdbFailed { output } => write!(f, "initdb failed:\n{output}"),
            ClusterError::NoFreePort { detail } => {
                write!(f, "no free loopback port for the server: {detail}")
            }
            ClusterError::StartFailed { output, log_tail } => write!(
                f,
                "the PostgreSQL server did not start: {output}\n--- server log (tail) ---\n{log_tail}"
            ),
            ClusterError::NotReady { timeout, log_tail } => write!(
                f,
                "the PostgreSQL server did not accept connections within {timeout:?}\n\
                 --- server log (tail) ---\n{log_tail}"
            ),
            ClusterError::CommandFailed { command, output } => {
                write!(f, "`{command}` failed: {output}")
            }
            ClusterError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClusterError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
