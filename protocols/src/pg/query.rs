//! What queries take and give: encoded parameters, columns, rows, pipelines
//! of steps and their results.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{DataRowBody, RowDescriptionBody};

use super::error::{DbError, Error};
use super::types::{type_name, FromSql, IsNull, Oid, ToSql};

/// Parameters in binary format, encoded once, with their types.
#[derive(Clone, Debug, Default)]
pub(crate) struct Params {
    pub(crate) oids: Vec<Oid>,
    pub(crate) values: Vec<Option<Range<usize>>>,
    pub(crate) bytes: Bytes,
}

impl Params {
    pub(crate) fn encode(params: &[&dyn ToSql]) -> Result<Params, Error> {
        if params.len() > i16::MAX as usize {
            return Err(Error::type_error(format!(
                "{} parameters; PostgreSQL takes at most {}",
                params.len(),
                i16::MAX
            )));
        }
        let mut buf = BytesMut::new();
        let mut oids = Vec::with_capacity(params.len());
        let mut values = Vec::with_capacity(params.len());
        for param in params {
            oids.push(param.oid());
            let start = buf.len();
            match param.to_sql(&mut buf) {
                IsNull::Yes => {
                    buf.truncate(start);
                    values.push(None);
                }
                IsNull::No => {
                    if buf.len() - start > i32::MAX as usize {
                        return Err(Error::type_error("a parameter is larger than 2 GiB"));
                    }
                    values.push(Some(start..buf.len()));
                }
            }
        }
        Ok(Params {
            oids,
            values,
            bytes: buf.freeze(),
        })
    }

    pub(crate) fn value(&self, i: usize) -> Option<&[u8]> {
        self.values[i].clone().map(|r| &self.bytes[r])
    }
}

/// A result column: its name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    name: String,
    oid: Oid,
}

impl Column {
    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The column's type id.
    pub fn type_oid(&self) -> Oid {
        self.oid
    }
}

pub(crate) fn parse_columns(body: &RowDescriptionBody) -> std::io::Result<Arc<[Column]>> {
    body.fields()
        .map(|f| {
            Ok(Column {
                name: f.name().to_owned(),
                oid: f.type_oid(),
            })
        })
        .collect::<Vec<_>>()
        .map(Arc::from)
}

/// One row of a result, values in binary format.
#[derive(Clone)]
pub struct Row {
    columns: Arc<[Column]>,
    body: DataRowBody,
    ranges: Vec<Option<Range<usize>>>,
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// How to name a column: by position or by name.
pub trait ColumnIndex: fmt::Display {
    /// The position of this column among `columns`, if it is there.
    fn index(&self, columns: &[Column]) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl ColumnIndex for &str {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|c| c.name == *self)
    }
}

impl Row {
    pub(crate) fn new(columns: Arc<[Column]>, body: DataRowBody) -> std::io::Result<Row> {
        let ranges: Vec<_> = body.ranges().collect()?;
        if ranges.len() != columns.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a row has {} values for {} columns",
                    ranges.len(),
                    columns.len()
                ),
            ));
        }
        Ok(Row {
            columns,
            body,
            ranges,
        })
    }

    /// The result's columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the row has no values.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Reads a value as `T`.
    ///
    /// # Errors
    ///
    /// When there is no such column, when the column's type cannot be read as
    /// `T` (an `int8` as a `String`, say), when the value is NULL and `T` is
    /// not an `Option`, or when its bytes are not a valid value.
    pub fn get<'a, T: FromSql<'a>>(&'a self, index: impl ColumnIndex) -> Result<T, Error> {
        let i = index.index(&self.columns).ok_or_else(|| {
            Error::column(format!(
                "{index} (the row has {} columns)",
                self.columns.len()
            ))
        })?;
        let column = &self.columns[i];
        if !T::accepts(column.oid) {
            return Err(Error::type_error(format!(
                "column {} ({:?}) is {}, which cannot be read as {}",
                i,
                column.name,
                type_name(column.oid),
                std::any::type_name::<T>()
            )));
        }
        let result = match &self.ranges[i] {
            Some(range) => T::from_sql(column.oid, &self.body.buffer()[range.clone()]),
            None => T::from_null(column.oid),
        };
        result.map_err(|e| Error::type_error(format!("column {} ({:?}): {e}", i, column.name)))
    }

    /// The raw bytes of a value (`None` for NULL).
    ///
    /// # Errors
    ///
    /// When there is no such column.
    pub fn raw(&self, index: impl ColumnIndex) -> Result<Option<&[u8]>, Error> {
        let i = index
            .index(&self.columns)
            .ok_or_else(|| Error::column(index.to_string()))?;
        Ok(self.ranges[i].clone().map(|r| &self.body.buffer()[r]))
    }
}

/// A row of a simple query, values as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleRow {
    /// The column names.
    pub columns: Arc<[String]>,
    /// The values, as PostgreSQL prints them; `None` for NULL.
    pub values: Vec<Option<String>>,
}

impl SimpleRow {
    /// The value of a column by name or position, as text.
    pub fn get(&self, index: impl SimpleIndex) -> Option<&str> {
        index
            .position(&self.columns)
            .and_then(|i| self.values.get(i))
            .and_then(|v| v.as_deref())
    }
}

/// How to name a column of a [`SimpleRow`].
pub trait SimpleIndex {
    /// Its position.
    fn position(&self, columns: &[String]) -> Option<usize>;
}

impl SimpleIndex for usize {
    fn position(&self, _columns: &[String]) -> Option<usize> {
        Some(*self)
    }
}

impl SimpleIndex for &str {
    fn position(&self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
}

/// What one statement of a simple query gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleResult {
    /// The rows it returned (none for commands).
    pub rows: Vec<SimpleRow>,
    /// The command tag, such as `INSERT 0 1` or `SELECT 2`.
    pub tag: String,
}

/// A prepared statement on one connection.
#[derive(Clone, Debug)]
pub struct Statement {
    pub(crate) name: String,
    pub(crate) params: Vec<Oid>,
    pub(crate) columns: Arc<[Column]>,
}

impl Statement {
    /// The types of its parameters, as the server described them.
    pub fn params(&self) -> &[Oid] {
        &self.params
    }

    /// Its result columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Step {
        sql: String,
        params: Params,
        rows: bool,
    },
    Sync,
}

/// A sequence of statements sent in one round trip, with the caller
/// deciding where the Syncs go. An error skips the rest of its segment (up
/// to the next Sync), as PostgreSQL does; later segments still run.
///
/// # Examples
///
/// A whole transaction in one round trip:
///
/// ```
/// use tally_protocols::pg::Pipeline;
///
/// let mut tx = Pipeline::new();
/// tx.execute("BEGIN", &[]).unwrap();
/// tx.execute("INSERT INTO t (id, note) VALUES ($1, $2)", &[&7i64, &"seven"]).unwrap();
/// tx.execute("COMMIT", &[]).unwrap();
/// tx.sync();
/// assert_eq!(tx.len(), 3);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    pub(crate) entries: Vec<Entry>,
    steps: usize,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, sql: &str, params: &[&dyn ToSql], rows: bool) -> Result<&mut Self, Error> {
        if sql.contains('\0') {
            return Err(Error::type_error("a statement contains a NUL byte"));
        }
        self.entries.push(Entry::Step {
            sql: sql.to_owned(),
            params: Params::encode(params)?,
            rows,
        });
        self.steps += 1;
        Ok(self)
    }

    /// Adds a statement whose rows are wanted.
    ///
    /// # Errors
    ///
    /// When a parameter cannot be encoded or the SQL holds a NUL byte.
    pub fn query(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<&mut Self, Error> {
        self.push(sql, params, true)
    }

    /// Adds a statement whose row count is wanted.
    ///
    /// # Errors
    ///
    /// When a parameter cannot be encoded or the SQL holds a NUL byte.
    pub fn execute(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<&mut Self, Error> {
        self.push(sql, params, false)
    }

    /// Ends a segment: the server answers ReadyForQuery here, and an error
    /// before it skips only to here.
    pub fn sync(&mut self) -> &mut Self {
        if !matches!(self.entries.last(), Some(Entry::Sync) | None) {
            self.entries.push(Entry::Sync);
        }
        self
    }

    /// The number of statements.
    pub fn len(&self) -> usize {
        self.steps
    }

    /// Whether it has no statements.
    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }
}

/// How one statement of a pipeline went.
#[derive(Clone, Debug)]
pub enum StepResult {
    /// A query's rows.
    Rows(Vec<Row>),
    /// A command's row count (0 for commands that count nothing).
    Done(u64),
    /// The server refused it; the rest of its segment was skipped.
    Failed(DbError),
    /// Not run, because an earlier statement in its segment failed.
    Skipped,
}

impl StepResult {
    /// Whether it ran without error.
    pub fn is_ok(&self) -> bool {
        matches!(self, StepResult::Rows(_) | StepResult::Done(_))
    }

    /// The server's error, if it failed.
    pub fn error(&self) -> Option<&DbError> {
        match self {
            StepResult::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The rows affected or returned.
    pub fn count(&self) -> u64 {
        match self {
            StepResult::Rows(rows) => rows.len() as u64,
            StepResult::Done(n) => *n,
            _ => 0,
        }
    }
}

/// The row count at the end of a command tag (`INSERT 0 3` gives 3).
pub(crate) fn tag_count(tag: &str) -> u64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
