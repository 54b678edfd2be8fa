//! Reading market data files into [`Event`]s, a bounded batch at a time.
//!
//! Two CSV layouts are known, told apart by their header line:
//!
//! - [`Format::Daily`], Yahoo-Finance daily OHLCV:
//!   `Date,Open,High,Low,Close,Adj Close,Volume`, dates like `1/4/1999`. The
//!   file has no symbol: it comes from [`ReaderOptions::symbol`], or else
//!   from the file name ([`default_symbol`]). Price = Close, volume = Volume.
//! - [`Format::Stocks`]: `symbol,date,price`, dates like `Jan 1 2000`,
//!   volume 0.
//!
//! Either may be gzip-compressed: a `.gz` name or the gzip magic bytes at the
//! start of the file select decompression. Every event's `ts` is 16:00 New
//! York time on its date ([`Date::ny_close`]), and its id is
//! `<file name without its extensions>:<data row, from 1>`, plus `:<pass>` on
//! passes after the first, so replaying a file yields the same ids.
//!
//! A row that does not parse becomes an [`Item::Rejected`] carrying its line
//! number (the header is line 1) and the reading goes on. A file that cannot
//! be opened or has no known header fails in [`Reader::open`], before any item
//! exists. An I/O error later on (a truncated or corrupt gzip stream) ends the
//! reading: the rows read before it are handed out first, then the error.
//!
//! Reading is blocking I/O. A [`Reader`] is `Send` and hands out at most `max`
//! items per [`Reader::next_batch`], so an async caller moves it onto the
//! runtime's blocking pool for each batch and never holds a whole file in
//! memory:
//!
//! ```
//! # let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
//! #     .join("data/stocks-monthly-2000-2010.csv");
//! use tally_pipeline::source::{Item, Reader, ReaderOptions};
//!
//! let rt = tally::Runtime::new();
//! let events = rt.block_on(async move {
//!     let opened = tally::unblock(move || Reader::open(&path, &ReaderOptions::default()));
//!     let mut reader = opened.await.unwrap().unwrap();
//!     let mut events = 0;
//!     loop {
//!         let (back, batch) = tally::unblock(move || {
//!             let batch = reader.next_batch(256);
//!             (reader, batch)
//!         })
//!         .await
//!         .unwrap();
//!         reader = back;
//!         let batch = batch.unwrap();
//!         if batch.is_empty() {
//!             break events;
//!         }
//!         events += batch.iter().filter(|item| matches!(item, Item::Event(_))).count();
//!     }
//! });
//! assert_eq!(events, 560);
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::csvline::{LineReader, Malformed, Record};
use crate::event::{Date, Event};

/// The symbol of the bundled S&P 500 file, which carries none itself.
pub const SP500_SYMBOL: &str = "^GSPC";
/// The name stem of the bundled S&P 500 file.
pub const SP500_STEM: &str = "sp500-daily-1999-2018";

/// How much of an unknown header an error shows, in characters.
const MAX_HEADER_SHOWN: usize = 200;
/// The two gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const DAILY_HEADER: [&str; 7] = [
    "date",
    "open",
    "high",
    "low",
    "close",
    "adj close",
    "volume",
];
const STOCKS_HEADER: [&str; 3] = ["symbol", "date", "price"];

/// The layout of a market data file, known from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Date,Open,High,Low,Close,Adj Close,Volume` (Yahoo-Finance daily).
    Daily,
    /// `symbol,date,price`.
    Stocks,
}

/// What a reader yields: an event, or a row that did not parse.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A parsed row.
    Event(Event),
    /// A row that did not parse; the reading went on after it.
    Rejected(Rejected),
}

/// A data row that could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The file's line number where the row starts (the header is line 1).
    pub line: u64,
    /// Why, in words.
    pub reason: String,
    /// The row as it stands in the file, without its line ending (invalid
    /// UTF-8 replaced, cut at 64 KiB).
    pub raw: String,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Reading failed: unreadable bytes, or a truncated or corrupt gzip stream.
    #[error("cannot read {} after line {line}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The last line read completely before the failure (0: none).
        line: u64,
        /// What went wrong.
        source: io::Error,
    },
    /// The file holds no header line.
    #[error("{} is empty: expected a header line", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The header is neither known layout.
    #[error(
        "{} has an unknown header {found:?}: expected `Date,Open,High,Low,Close,Adj Close,Volume` or `symbol,date,price`",
        path.display()
    )]
    UnknownHeader {
        /// The file.
        path: PathBuf,
        /// The header as read (its first 200 characters).
        found: String,
    },
}

impl SourceError {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            SourceError::Open { path, .. }
            | SourceError::Read { path, .. }
            | SourceError::Empty { path }
            | SourceError::UnknownHeader { path, .. } => path,
        }
    }
}

/// How to read a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReaderOptions {
    /// The symbol for a [`Format::Daily`] file (which has none); `None` picks
    /// [`default_symbol`] of the file's name. Stocks files name their symbol
    /// on every row, and this is not used for them.
    pub symbol: Option<String>,
    /// Which pass over the file this is, counting from 1. Passes after the
    /// first add `:<pass>` to every event id; 0 reads as 1.
    pub pass: u32,
}

/// A reader moves to the blocking pool and back for every batch.
#[allow(dead_code)]
fn _ensure_send() {
    fn send<T: Send>() {}
    send::<Reader>();
    send::<SourceError>();
}

/// The symbol given to a daily file's rows when none is passed: `^GSPC` for
/// the bundled S&P 500 file, else the file name without its extensions.
///
/// ```
/// assert_eq!(tally_pipeline::source::default_symbol("sp500-daily-1999-2018"), "^GSPC");
/// assert_eq!(tally_pipeline::source::default_symbol("AAPL"), "AAPL");
/// ```
pub fn default_symbol(stem: &str) -> String {
    if stem == SP500_STEM {
        SP500_SYMBOL.to_owned()
    } else {
        stem.to_owned()
    }
}

/// The file name without any of its extensions: `a/sp500.csv.gz` gives
/// `sp500` (a name with nothing before its first dot is kept whole).
pub fn file_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.split('.').next() {
        Some(stem) if !stem.is_empty() => stem.to_owned(),
        _ => name,
    }
}

/// Reads one market data file in bounded batches. Blocking: call it from
/// `tally::unblock`, not on an executor thread.
pub struct Reader {
    path: PathBuf,
    stem: String,
    format: Format,
    symbol: String,
    pass: u32,
    lines: LineReader<Box<dyn BufRead + Send>>,
    rows: u64,
    rejected: u64,
    stashed: Option<SourceError>,
    done: bool,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("symbol", &self.symbol)
            .field("pass", &self.pass)
            .field("rows", &self.rows)
            .field("rejected", &self.rejected)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Opens `path`, decompressing gzip if it is named `.gz` or starts with the
    /// gzip magic bytes, and reads its header.
    ///
    /// # Errors
    ///
    /// [`SourceError::Open`] if the file cannot be opened,
    /// [`SourceError::Read`] if its first bytes cannot be read or decompressed,
    /// [`SourceError::Empty`] without a header line, and
    /// [`SourceError::UnknownHeader`] for a header of neither layout.
    pub fn open(path: &Path, options: &ReaderOptions) -> Result<Reader, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut buffered = BufReader::new(file);
        let starts_gzip = buffered
            .fill_buf()
            .map_err(|source| SourceError::Read {
                path: path.to_owned(),
                line: 0,
                source,
            })?
            .starts_with(&GZIP_MAGIC);
        let named_gz = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("gz"));
        if named_gz && !starts_gzip {
            return Err(SourceError::Read {
                path: path.to_owned(),
                line: 0,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    "it is named .gz but is not gzip-compressed",
                ),
            });
        }
        let input: Box<dyn BufRead + Send> = if starts_gzip || named_gz {
            Box::new(BufReader::new(MultiGzDecoder::new(buffered)))
        } else {
            Box::new(buffered)
        };
        let mut lines = LineReader::new(input);
        let header = match lines.next_record() {
            Ok(Some(header)) => header,
            Ok(None) => {
                return Err(SourceError::Empty {
                    path: path.to_owned(),
                })
            }
            Err(source) => {
                return Err(SourceError::Read {
                    path: path.to_owned(),
                    line: lines.lines(),
                    source,
                })
            }
        };
        let format = detect(&header).ok_or_else(|| SourceError::UnknownHeader {
            path: path.to_owned(),
            found: String::from_utf8_lossy(&header.raw)
                .chars()
                .take(MAX_HEADER_SHOWN)
                .collect(),
        })?;
        let stem = file_stem(path);
        let symbol = options
            .symbol
            .clone()
            .unwrap_or_else(|| default_symbol(&stem));
        Ok(Reader {
            path: path.to_owned(),
            stem,
            format,
            symbol,
            pass: options.pass.max(1),
            lines,
            rows: 0,
            rejected: 0,
            stashed: None,
            done: false,
        })
    }

    /// The file's layout.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The event-id prefix: the file name without its extensions.
    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// Data rows read so far, rejected ones included.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Whether the reading is over (end of file, or an error handed out).
    pub fn is_done(&self) -> bool {
        self.done && self.stashed.is_none()
    }

    /// Reads up to `max` items (at least one is asked for even if `max` is 0).
    /// An empty batch means the file is over; after that, and after an error,
    /// every call returns an empty batch.
    ///
    /// # Errors
    ///
    /// [`SourceError::Read`] when the stream breaks. The rows read before the
    /// break come first, in an `Ok` batch; the error is the next call's
    /// answer.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Item>, SourceError> {
        if let Some(error) = self.stashed.take() {
            return Err(error);
        }
        let max = max.max(1);
        let mut batch = Vec::with_capacity(max.min(4096));
        while !self.done && batch.len() < max {
            match self.lines.next_record() {
                Ok(Some(record)) => {
                    self.rows += 1;
                    let item = self.parse_row(record);
                    if matches!(item, Item::Rejected(_)) {
                        self.rejected += 1;
                    }
                    batch.push(item);
                }
                Ok(None) => self.done = true,
                Err(source) => {
                    self.done = true;
                    let error = SourceError::Read {
                        path: self.path.clone(),
                        line: self.lines.lines(),
                        source,
                    };
                    if batch.is_empty() {
                        return Err(error);
                    }
                    self.stashed = Some(error);
                }
            }
        }
        Ok(batch)
    }

    fn parse_row(&self, record: Record) -> Item {
        let parsed = match &record.fields {
            Ok(fields) => match self.format {
                Format::Daily => self.parse_daily(fields),
                Format::Stocks => self.parse_stocks(fields),
            },
            Err(Malformed::Oversized) => Err(format!(
                "row longer than {} bytes",
                crate::csvline::MAX_RECORD_BYTES
            )),
            Err(Malformed::UnclosedQuote) => {
                Err("a quoted field is not closed before the end of the file".to_owned())
            }
        };
        match parsed {
            Ok(event) => Item::Event(event),
            Err(reason) => Item::Rejected(Rejected {
                line: record.line,
                reason,
                raw: String::from_utf8_lossy(&record.raw).into_owned(),
            }),
        }
    }

    fn event_id(&self) -> String {
        if self.pass > 1 {
            format!("{}:{}:{}", self.stem, self.rows, self.pass)
        } else {
            format!("{}:{}", self.stem, self.rows)
        }
    }

    fn parse_daily(&self, fields: &[Vec<u8>]) -> Result<Event, String> {
        let fields = utf8_fields(fields, DAILY_HEADER.len())?;
        let ts = Date::parse(fields[0])
            .and_then(Date::ny_close)
            .map_err(|e| e.to_string())?;
        Ok(Event {
            event_id: self.event_id(),
            symbol: self.symbol.clone(),
            price: parse_price(fields[4], "Close")?,
            volume: parse_volume(fields[6])?,
            ts,
        })
    }

    fn parse_stocks(&self, fields: &[Vec<u8>]) -> Result<Event, String> {
        let fields = utf8_fields(fields, STOCKS_HEADER.len())?;
        if fields[0].is_empty() {
            return Err("empty symbol".to_owned());
        }
        if fields[0].chars().any(char::is_control) {
            return Err(format!("symbol {:?} holds control characters", fields[0]));
        }
        let ts = Date::parse(fields[1])
            .and_then(Date::ny_close)
            .map_err(|e| e.to_string())?;
        Ok(Event {
            event_id: self.event_id(),
            symbol: fields[0].to_owned(),
            price: parse_price(fields[2], "price")?,
            volume: 0,
            ts,
        })
    }
}

/// The fields, trimmed, if there are exactly `n` and all are UTF-8.
fn utf8_fields(fields: &[Vec<u8>], n: usize) -> Result<Vec<&str>, String> {
    if fields.len() != n {
        return Err(format!("expected {n} fields, found {}", fields.len()));
    }
    fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            std::str::from_utf8(field)
                .map(str::trim)
                .map_err(|_| format!("field {} is not UTF-8", i + 1))
        })
        .collect()
}

fn detect(header: &Record) -> Option<Format> {
    let fields = header.fields.as_ref().ok()?;
    let names: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            // A UTF-8 byte-order mark may precede the first name.
            let field = if i == 0 {
                field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
            } else {
                field
            };
            String::from_utf8_lossy(field).trim().to_ascii_lowercase()
        })
        .collect();
    if names == DAILY_HEADER {
        Some(Format::Daily)
    } else if names == STOCKS_HEADER {
        Some(Format::Stocks)
    } else {
        None
    }
}

fn parse_price(text: &str, name: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(price) if price.is_finite() && price >= 0.0 => Ok(price),
        _ => Err(format!(
            "{name} {text:?} is not a finite, non-negative number"
        )),
    }
}

fn parse_volume(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(volume) if volume >= 0 => Ok(volume),
        _ => Err(format!("Volume {text:?} is not a non-negative integer")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;
    use crate::event::Timestamp;
    use crate::testutil::TempDir;

    fn bundled(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(name)
    }

    /// Every item of a file, in batches of `max`, and the error if one ended it.
    fn read_all(
        path: &Path,
        options: &ReaderOptions,
        max: usize,
    ) -> (Vec<Item>, Option<SourceError>) {
        let mut reader = Reader::open(path, options).unwrap();
        let mut items = Vec::new();
        loop {
            match reader.next_batch(max) {
                Ok(batch) if batch.is_empty() => return (items, None),
                Ok(batch) => {
                    assert!(batch.len() <= max.max(1));
                    items.extend(batch);
                }
                Err(e) => {
                    assert!(reader.is_done());
                    assert!(reader.next_batch(max).unwrap().is_empty());
                    return (items, Some(e));
                }
            }
        }
    }

    fn events(items: &[Item]) -> Vec<&Event> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Event(e) => Some(e),
                Item::Rejected(_) => None,
            })
            .collect()
    }

    fn rejected(items: &[Item]) -> Vec<&Rejected> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Rejected(r) => Some(r),
                Item::Event(_) => None,
            })
            .collect()
    }

    #[test]
    fn the_bundled_sp500_file_gives_5031_events() {
        let path = bundled("sp500-daily-1999-2018.csv.gz");
        let reader = Reader::open(&path, &ReaderOptions::default()).unwrap();
        assert_eq!(reader.format(), Format::Daily);
        assert_eq!(reader.stem(), SP500_STEM);
        let (items, error) = read_all(&path, &ReaderOptions::default(), 1000);
        assert!(error.is_none());
        let events = events(&items);
        assert_eq!(events.len(), 5031);
        assert!(rejected(&items).is_empty());
        assert_eq!(
            *events[0],
            Event {
                event_id: "sp500-daily-1999-2018:1".to_owned(),
                symbol: "^GSPC".to_owned(),
                price: 1228.099976,
                volume: 877_000_000,
                ts: Date::parse("1/4/1999").unwrap().ny_close().unwrap(),
            }
        );
        assert_eq!(events[0].ts.to_string(), "1999-01-04T21:00:00Z");
        let last = events[5030];
        assert_eq!(last.event_id, "sp500-daily-1999-2018:5031");
        assert_eq!(last.price, 2506.850098);
        assert_eq!(last.volume, 3_442_870_000);
        assert_eq!(last.ts.to_string(), "2018-12-31T21:00:00Z");
        // A summer day of the file is stamped 20:00 UTC.
        let july = events
            .iter()
            .find(|e| e.ts.utc_date() == Date::new(2018, 7, 2).unwrap())
            .unwrap();
        assert_eq!(july.ts.to_string(), "2018-07-02T20:00:00Z");
    }

    #[test]
    fn the_bundled_stocks_file_gives_560_events() {
        let path = bundled("stocks-monthly-2000-2010.csv");
        let (items, error) = read_all(&path, &ReaderOptions::default(), 64);
        assert!(error.is_none());
        let events = events(&items);
        assert_eq!(events.len(), 560);
        assert_eq!(
            *events[0],
            Event {
                event_id: "stocks-monthly-2000-2010:1".to_owned(),
                symbol: "MSFT".to_owned(),
                price: 39.81,
                volume: 0,
                ts: Timestamp::from_secs(946_760_400),
            }
        );
        assert_eq!(events[0].ts.to_string(), "2000-01-01T21:00:00Z");
        let last = events[559];
        assert_eq!(last.event_id, "stocks-monthly-2000-2010:560");
        assert_eq!(last.symbol, "AAPL");
        assert_eq!(last.price, 223.02);
        assert_eq!(last.ts.to_string(), "2010-03-01T21:00:00Z");
        let count = |s: &str| events.iter().filter(|e| e.symbol == s).count();
        assert_eq!(
            [
                count("MSFT"),
                count("AMZN"),
                count("IBM"),
                count("GOOG"),
                count("AAPL")
            ],
            [123, 123, 123, 68, 123]
        );
    }

    #[test]
    fn later_passes_and_a_symbol_flag_change_ids_and_symbols() {
        let path = bundled("sp500-daily-1999-2018.csv.gz");
        let options = ReaderOptions {
            symbol: Some("SPX".to_owned()),
            pass: 3,
        };
        let mut reader = Reader::open(&path, &options).unwrap();
        let batch = reader.next_batch(2).unwrap();
        let Item::Event(second) = &batch[1] else {
            panic!("expected an event")
        };
        assert_eq!(second.event_id, "sp500-daily-1999-2018:2:3");
        assert_eq!(second.symbol, "SPX");
        assert_eq!(second.price, 1244.780029);
        assert_eq!(reader.rows(), 2);
        let first_pass = ReaderOptions {
            symbol: None,
            pass: 1,
        };
        let mut reader = Reader::open(&path, &first_pass).unwrap();
        let Item::Event(first) = &reader.next_batch(1).unwrap()[0] else {
            panic!("expected an event")
        };
        assert_eq!(first.event_id, "sp500-daily-1999-2018:1");
    }

    #[test]
    fn malformed_stock_rows_are_rejected_with_their_line_numbers() {
        let dir = TempDir::new("source-stocks");
        let path = dir.path().join("bad.csv");
        std::fs::write(
            &path,
            "symbol,date,price\n\
             MSFT,Jan 1 2000,39.81\n\
             MSFT,Foo 1 2000,1\n\
             MSFT,Feb 1 2000\n\
             \n\
             IBM,Mar 1 2000,abc\n\
             IBM,Apr 1 2000,-1\n\
             ,Apr 1 2000,2\n\
             \"AA,PL\",Feb 30 2000,2\n\
             GOOG,Apr 1 2000,NaN\n\
             AAPL,Mar 1 2010,223.02\n",
        )
        .unwrap();
        let (items, error) = read_all(&path, &ReaderOptions::default(), 3);
        assert!(error.is_none());
        let got: Vec<(u64, &str, &str)> = rejected(&items)
            .iter()
            .map(|r| (r.line, r.reason.as_str(), r.raw.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    3,
                    "date \"Foo 1 2000\" is not M/D/YYYY, YYYY-MM-DD or Mon D YYYY",
                    "MSFT,Foo 1 2000,1"
                ),
                (4, "expected 3 fields, found 2", "MSFT,Feb 1 2000"),
                (
                    6,
                    "price \"abc\" is not a finite, non-negative number",
                    "IBM,Mar 1 2000,abc"
                ),
                (
                    7,
                    "price \"-1\" is not a finite, non-negative number",
                    "IBM,Apr 1 2000,-1"
                ),
                (8, "empty symbol", ",Apr 1 2000,2"),
                (
                    9,
                    "2000-02-30 is not a calendar date",
                    "\"AA,PL\",Feb 30 2000,2"
                ),
                (
                    10,
                    "price \"NaN\" is not a finite, non-negative number",
                    "GOOG,Apr 1 2000,NaN"
                ),
            ]
        );
        let ids: Vec<&str> = events(&items).iter().map(|e| e.event_id.as_str()).collect();
        // Rejected rows keep their row numbers, so the good rows' ids do not move.
        assert_eq!(ids, ["bad:1", "bad:9"]);
    }

    #[test]
    fn malformed_daily_rows_are_rejected_and_crlf_and_bom_are_fine() {
        let dir = TempDir::new("source-daily");
        let path = dir.path().join("AAPL.csv");
        std::fs::write(
            &path,
            "\u{feff}Date,Open,High,Low,Close,Adj Close,Volume\r\n\
             1/4/1999,1,2,0.5,1.5,1.5,100\r\n\
             1/5/1999,null,null,null,null,null,null\r\n\
             1/6/1999,1,2,0.5,1.5,1.5,1e3\r\n\
             1/32/1999,1,2,0.5,1.5,1.5,100\r\n\
             7/1/1960,1,2,0.5,1.5,1.5,100\r\n\
             2018-07-02,1,2,0.5,2.5,2.5,200\r\n",
        )
        .unwrap();
        let (items, error) = read_all(&path, &ReaderOptions::default(), 100);
        assert!(error.is_none());
        let got: Vec<(u64, &str)> = rejected(&items)
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "Close \"null\" is not a finite, non-negative number"),
                (4, "Volume \"1e3\" is not a non-negative integer"),
                (5, "1999-01-32 is not a calendar date"),
                (
                    6,
                    "no New York daylight-saving rule is known for 1960 (only 1967 onwards)"
                ),
            ]
        );
        let events = events(&items);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].symbol, "AAPL");
        assert_eq!(events[0].event_id, "AAPL:1");
        assert_eq!((events[0].price, events[0].volume), (1.5, 100));
        assert_eq!(events[1].event_id, "AAPL:6");
        assert_eq!(events[1].ts.to_string(), "2018-07-02T20:00:00Z");
    }

    #[test]
    fn quoted_line_breaks_long_rows_and_bad_bytes_keep_line_numbers_right() {
        let dir = TempDir::new("source-odd");
        let path = dir.path().join("odd.csv");
        let mut bytes = b"symbol,date,price\n\"MS\nFT\",Jan 1 2000,1\nIBM,Jan 1 2000,2\n".to_vec();
        bytes.extend_from_slice(b"IBM,Feb 1 2000,");
        bytes.extend(std::iter::repeat_n(b'9', crate::csvline::MAX_RECORD_BYTES));
        bytes.extend_from_slice(b"\nIB\xffM,Mar 1 2000,3\nIBM,Apr 1 2000,4");
        std::fs::write(&path, bytes).unwrap();
        let (items, error) = read_all(&path, &ReaderOptions::default(), 2);
        assert!(error.is_none());
        let got: Vec<(u64, &str)> = rejected(&items)
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "symbol \"MS\\nFT\" holds control characters"),
                (5, "row longer than 65536 bytes"),
                (6, "field 1 is not UTF-8"),
            ]
        );
        assert_eq!(rejected(&items)[0].raw, "\"MS\nFT\",Jan 1 2000,1");
        assert_eq!(rejected(&items)[2].raw, "IB\u{fffd}M,Mar 1 2000,3");
        let events = events(&items);
        let got: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.event_id.as_str(), e.symbol.as_str()))
            .collect();
        // The quoted symbol spans lines 2 and 3 but is one row: the next row,
        // on line 4, is row 2.
        assert_eq!(got, [("odd:2", "IBM"), ("odd:5", "IBM")]);
    }

    #[test]
    fn a_bad_header_or_a_missing_file_fails_before_any_item() {
        let dir = TempDir::new("source-header");
        let unknown = dir.path().join("x.csv");
        std::fs::write(&unknown, "when,what\n1/4/1999,1\n").unwrap();
        let e = Reader::open(&unknown, &ReaderOptions::default()).unwrap_err();
        assert!(matches!(&e, SourceError::UnknownHeader { found, .. } if found == "when,what"));
        assert_eq!(e.path(), unknown);

        let empty = dir.path().join("empty.csv");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            Reader::open(&empty, &ReaderOptions::default()),
            Err(SourceError::Empty { .. })
        ));

        let missing = dir.path().join("missing.csv");
        let e = Reader::open(&missing, &ReaderOptions::default()).unwrap_err();
        assert!(
            matches!(&e, SourceError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );

        let not_gzip = dir.path().join("plain.csv.gz");
        std::fs::write(&not_gzip, "symbol,date,price\n").unwrap();
        let e = Reader::open(&not_gzip, &ReaderOptions::default()).unwrap_err();
        assert!(matches!(&e, SourceError::Read { line: 0, .. }));
        assert!(e.to_string().contains("not gzip-compressed"), "{e}");

        let binary = dir.path().join("binary.csv");
        std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01, b'\n', 0x80]).unwrap();
        assert!(matches!(
            Reader::open(&binary, &ReaderOptions::default()),
            Err(SourceError::UnknownHeader { .. })
        ));
    }

    #[test]
    fn gzip_is_recognised_by_its_magic_bytes_without_a_gz_name() {
        let dir = TempDir::new("source-magic");
        let path = dir.path().join("stocks.csv");
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(b"symbol,date,price\nIBM,Jan 1 2000,100.52\n")
            .unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let (items, error) = read_all(&path, &ReaderOptions::default(), 10);
        assert!(error.is_none());
        let events = events(&items);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id, "stocks:1");
        assert_eq!(events[0].price, 100.52);
    }

    #[test]
    fn a_truncated_gzip_gives_the_rows_before_the_cut_then_an_error() {
        let full = std::fs::read(bundled("sp500-daily-1999-2018.csv.gz")).unwrap();
        let (all, _) = read_all(
            &bundled("sp500-daily-1999-2018.csv.gz"),
            &ReaderOptions::default(),
            5031,
        );
        let dir = TempDir::new("source-truncated");
        let path = dir.path().join("sp500-daily-1999-2018.csv.gz");
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let (items, error) = read_all(&path, &ReaderOptions::default(), 500);
        let error = error.expect("the cut must surface as an error");
        assert!(
            matches!(&error, SourceError::Read { source, line, .. }
                if source.kind() == io::ErrorKind::UnexpectedEof && *line as usize == items.len() + 1),
            "{error:?}"
        );
        assert!(items.len() > 1000 && items.len() < 5031, "{}", items.len());
        assert_eq!(items[..], all[..items.len()]);
    }

    #[test]
    fn a_corrupt_gzip_stream_ends_with_an_error_after_its_good_rows() {
        let mut bytes = std::fs::read(bundled("sp500-daily-1999-2018.csv.gz")).unwrap();
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 64] {
            *b ^= 0x5a;
        }
        let dir = TempDir::new("source-corrupt");
        let path = dir.path().join("sp500.csv.gz");
        std::fs::write(&path, &bytes).unwrap();
        let (items, error) = read_all(&path, &ReaderOptions::default(), 256);
        assert!(matches!(error, Some(SourceError::Read { .. })), "{error:?}");
        assert!(items.len() < 5031 + 1);
    }

    #[test]
    fn file_stems_drop_every_extension() {
        assert_eq!(
            file_stem(Path::new("a/sp500-daily-1999-2018.csv.gz")),
            SP500_STEM
        );
        assert_eq!(file_stem(Path::new("stocks.csv")), "stocks");
        assert_eq!(file_stem(Path::new(".hidden")), ".hidden");
        assert_eq!(file_stem(Path::new("AAPL")), "AAPL");
    }
}
