//! A PostgreSQL client on postgres-protocol's message codecs.
//!
//! A [`Connection`] is a plain value with `async fn(&mut self)` operations and
//! no background task, so whoever holds it sees every state it is in:
//!
//! - its [`TransactionStatus`] from the last ReadyForQuery;
//! - whether it is *out of step*: an operation was dropped midway (a
//!   `timeout` around it, a cancelled task), so the server still owes answers
//!   or a request is half-sent. The next operation says so instead of
//!   reading someone else's answer; [`Connection::recover`] drains it;
//! - whether it is *broken* (closed by the server, reset, a protocol
//!   violation, an oversized message): every later operation says so at once.
//!
//! Queries take typed parameters ([`ToSql`]) and give rows whose values are
//! read as typed values ([`FromSql`]), both in binary format. A [`Pipeline`]
//! sends a whole transaction in one round trip. Errors from the server are
//! [`DbError`]s with their SQLSTATE and a transient/permanent classification.
//! A client-side query timeout cancels the query on the server
//! ([`CancelToken`]) and leaves the connection usable or broken, never
//! half-read.
//!
//! TLS is not supported yet: a server that demands it gives a clear error.

mod auth;
mod cache;
mod cancel;
mod codec;
mod config;
mod connection;
mod error;
mod query;
pub mod types;

pub use cancel::CancelToken;
pub use config::{Config, Host};
pub use connection::{Connection, RowStream, TransactionStatus};
pub use error::{DbError, Error};
pub use query::{
    Column, ColumnIndex, Pipeline, Row, SimpleIndex, SimpleResult, SimpleRow, Statement, StepResult,
};
pub use types::{Date, FromSql, IsNull, Json, Jsonb, Oid, SqlType, Timestamp, ToSql, Uuid};
