//! The audit log and the dead-letter file.
//!
//! Every processed event appends one CSV line
//! `event_id,ts_iso,symbol,price,volume,company_name` to
//! `<audit dir>/audit_YYYYMMDD.log`, named by the UTC date of the event's
//! `ts`. Every event that is not processed, and every rejected row, appends
//! one JSON line to `<audit dir>/dead_letter.jsonl`.
//!
//! No file handle outlives the writes that need it: [`AuditWriter::write_batch`]
//! and [`DeadLetters::append`] open each file in append mode, write the whole
//! batch's bytes for it in one call, and close it before returning, so at rest
//! the process holds no audit file open. Both block on the file system: an
//! async caller runs them through `tally::unblock`. Lines are appended, not
//! synced to disk.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::event::{Event, Timestamp};
use crate::source::Rejected;

/// The dead-letter file's name inside the audit directory.
pub const DEAD_LETTER_FILE: &str = "dead_letter.jsonl";

/// The name of the audit file for events at `ts`: `audit_YYYYMMDD.log`, the
/// UTC date.
///
/// ```
/// use tally_pipeline::event::Timestamp;
///
/// let ts = Timestamp::from_secs(915_483_600); // 1999-01-04T21:00:00Z
/// assert_eq!(tally_pipeline::audit::audit_file_name(ts), "audit_19990104.log");
/// ```
pub fn audit_file_name(ts: Timestamp) -> String {
    format!("audit_{}.log", ts.utc_date().compact())
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLine {
    /// The event's id.
    pub event_id: String,
    /// The event's time; written in UTC ISO 8601.
    pub ts: Timestamp,
    /// The symbol.
    pub symbol: String,
    /// The price.
    pub price: f64,
    /// The volume.
    pub volume: i64,
    /// The company name from the enrichment service.
    pub company_name: String,
}

impl AuditLine {
    /// The audit line of `event`, enriched with `company_name`.
    pub fn new(event: &Event, company_name: impl Into<String>) -> AuditLine {
        AuditLine {
            event_id: event.event_id.clone(),
            ts: event.ts,
            symbol: event.symbol.clone(),
            price: event.price,
            volume: event.volume,
            company_name: company_name.into(),
        }
    }

    /// The file this line goes to: [`audit_file_name`] of its `ts`.
    pub fn file_name(&self) -> String {
        audit_file_name(self.ts)
    }

    /// The line as written, `\n` included: fields quoted per RFC 4180 where
    /// they hold a comma, a quote or a line break.
    ///
    /// ```
    /// use tally_pipeline::audit::AuditLine;
    /// use tally_pipeline::event::Timestamp;
    ///
    /// let line = AuditLine {
    ///     event_id: "stocks:1".into(),
    ///     ts: Timestamp::from_secs(946_760_400),
    ///     symbol: "MSFT".into(),
    ///     price: 39.81,
    ///     volume: 0,
    ///     company_name: "Microsoft, Inc.".into(),
    /// };
    /// assert_eq!(
    ///     line.to_csv().unwrap(),
    ///     "stocks:1,2000-01-01T21:00:00Z,MSFT,39.81,0,\"Microsoft, Inc.\"\n"
    /// );
    /// ```
    ///
    /// # Errors
    ///
    /// None in practice (the line is written to memory); a CSV writer error
    /// would come back as an `io::Error`.
    pub fn to_csv(&self) -> io::Result<String> {
        let mut csv = csv_writer();
        self.write_to(&mut csv)?;
        let bytes = csv.into_inner().map_err(|e| e.into_error())?;
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn write_to(&self, csv: &mut csv::Writer<Vec<u8>>) -> io::Result<()> {
        csv.write_record([
            self.event_id.as_str(),
            &self.ts.to_iso8601(),
            &self.symbol,
            &self.price.to_string(),
            &self.volume.to_string(),
            &self.company_name,
        ])?;
        Ok(())
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new())
}

/// Appends audit lines to the daily files of one directory.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    dir: PathBuf,
}

/// What [`AuditWriter::write_batch_each`] did.
#[derive(Debug, Default)]
pub struct BatchWrite {
    /// Lines written.
    pub written: usize,
    /// Lines not written, with the error of their file.
    pub failed: Vec<FailedLine>,
}

/// An audit line that could not be written.
#[derive(Debug)]
pub struct FailedLine {
    /// Its index in the batch.
    pub index: usize,
    /// The file it was meant for.
    pub file: PathBuf,
    /// What went wrong with that file.
    pub error: io::Error,
}

impl AuditWriter {
    /// A writer into `dir` (created on the first write if missing).
    pub fn new(dir: impl Into<PathBuf>) -> AuditWriter {
        AuditWriter { dir: dir.into() }
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `lines`, grouped by daily file: each file is opened in append
    /// mode, written with one call, and closed before this returns. Lines of
    /// one file keep their order in the batch. Blocking.
    ///
    /// # Errors
    ///
    /// The first file's error if any line could not be written (the other
    /// files are still attempted); [`AuditWriter::write_batch_each`] tells
    /// which lines landed.
    pub fn write_batch(&self, lines: &[AuditLine]) -> io::Result<usize> {
        let outcome = self.write_batch_each(lines);
        match outcome.failed.into_iter().next() {
            None => Ok(outcome.written),
            Some(failed) => Err(io::Error::new(
                failed.error.kind(),
                format!(
                    "cannot append to {}: {}",
                    failed.file.display(),
                    failed.error
                ),
            )),
        }
    }

    /// Like [`AuditWriter::write_batch`], telling line by line what failed.
    pub fn write_batch_each(&self, lines: &[AuditLine]) -> BatchWrite {
        let mut files: BTreeMap<String, (csv::Writer<Vec<u8>>, Vec<usize>)> = BTreeMap::new();
        let mut outcome = BatchWrite::default();
        for (index, line) in lines.iter().enumerate() {
            let (csv, indices) = files
                .entry(line.file_name())
                .or_insert_with(|| (csv_writer(), Vec::new()));
            match line.write_to(csv) {
                Ok(()) => indices.push(index),
                Err(error) => outcome.failed.push(FailedLine {
                    index,
                    file: self.dir.join(line.file_name()),
                    error,
                }),
            }
        }
        for (name, (csv, indices)) in files {
            let path = self.dir.join(name);
            let written = csv
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|bytes| append(&self.dir, &path, &bytes));
            match written {
                Ok(()) => outcome.written += indices.len(),
                Err(error) => {
                    for index in indices {
                        outcome.failed.push(FailedLine {
                            index,
                            file: path.clone(),
                            error: io::Error::new(error.kind(), error.to_string()),
                        });
                    }
                }
            }
        }
        outcome.failed.sort_by_key(|f| f.index);
        outcome
    }
}

/// Opens `path` for appending (creating `dir` if it is missing), writes
/// `bytes` and closes it.
fn append(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = match open_append(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            open_append(path)?
        }
        other => other?,
    };
    file.write_all(bytes)
    // `file` is dropped, so closed, here.
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What became of a dead-lettered item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadKind {
    /// A row that did not parse; it never reached admission.
    Rejected,
    /// An admitted event that failed.
    Failed,
    /// An admitted event cut by a shutdown before its outcome was known.
    Interrupted,
}

/// One line of the dead-letter file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The event's id (not for rejected rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The event's symbol (not for rejected rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// The rejected row's line number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The rejected row's file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The rejected row as it stands in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// What became of it.
    pub kind: DeadKind,
    /// Why, in words.
    pub reason: String,
    /// When it was recorded.
    pub at: Timestamp,
}

impl DeadLetter {
    /// A row of `file` that did not parse.
    pub fn rejected(file: &Path, rejected: &Rejected, at: Timestamp) -> DeadLetter {
        DeadLetter {
            event_id: None,
            symbol: None,
            line: Some(rejected.line),
            file: Some(file.display().to_string()),
            raw: Some(rejected.raw.clone()),
            kind: DeadKind::Rejected,
            reason: rejected.reason.clone(),
            at,
        }
    }

    /// An admitted event that failed.
    pub fn failed(event: &Event, reason: impl Into<String>, at: Timestamp) -> DeadLetter {
        DeadLetter::of_event(event, DeadKind::Failed, reason.into(), at)
    }

    /// An admitted event cut by a shutdown.
    pub fn interrupted(event: &Event, reason: impl Into<String>, at: Timestamp) -> DeadLetter {
        DeadLetter::of_event(event, DeadKind::Interrupted, reason.into(), at)
    }

    fn of_event(event: &Event, kind: DeadKind, reason: String, at: Timestamp) -> DeadLetter {
        DeadLetter {
            event_id: Some(event.event_id.clone()),
            symbol: Some(event.symbol.clone()),
            line: None,
            file: None,
            raw: None,
            kind,
            reason,
            at,
        }
    }

    /// The JSON line as written, `\n` included.
    ///
    /// # Errors
    ///
    /// None in practice: every field serializes.
    pub fn to_json_line(&self) -> io::Result<String> {
        let mut line = serde_json::to_string(self)?;
        line.push('\n');
        Ok(line)
    }
}

/// Appends to `<audit dir>/dead_letter.jsonl`.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    dir: PathBuf,
    path: PathBuf,
}

impl DeadLetters {
    /// The dead-letter file of audit directory `dir` (created on the first
    /// write if missing).
    pub fn new(dir: impl Into<PathBuf>) -> DeadLetters {
        let dir = dir.into();
        let path = dir.join(DEAD_LETTER_FILE);
        DeadLetters { dir, path }
    }

    /// The dead-letter file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `letters`, one JSON line each, with one write; the file is
    /// opened and closed inside this call. Blocking.
    ///
    /// # Errors
    ///
    /// If the file cannot be opened or written; then none, or (after a short
    /// write) only some, of the lines are there.
    pub fn append(&self, letters: &[DeadLetter]) -> io::Result<usize> {
        if letters.is_empty() {
            return Ok(0);
        }
        let mut bytes = Vec::new();
        for letter in letters {
            serde_json::to_writer(&mut bytes, letter)?;
            bytes.push(b'\n');
        }
        append(&self.dir, &self.path, &bytes)?;
        Ok(letters.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{open_fds_under, TempDir};

    fn line(event_id: &str, secs: i64, company_name: &str) -> AuditLine {
        AuditLine {
            event_id: event_id.to_owned(),
            ts: Timestamp::from_secs(secs),
            symbol: "^GSPC".to_owned(),
            price: 1228.099976,
            volume: 877_000_000,
            company_name: company_name.to_owned(),
        }
    }

    #[test]
    fn lines_land_in_their_utc_daily_files_with_exact_content() {
        let dir = TempDir::new("audit-lines");
        let audit = dir.path().join("audit");
        let writer = AuditWriter::new(&audit);
        let batch = [
            line("sp500:1", 915_483_600, "S&P 500"), // 1999-01-04T21:00:00Z
            line("sp500:2", 1_530_561_600, "Smith, \"Jr\" & Co"), // 2018-07-02T20:00:00Z
            line("sp500:3", 915_494_399, "Late"),    // 1999-01-04T23:59:59Z
            line("sp500:4", 915_494_400, "Midnight"), // 1999-01-05T00:00:00Z
        ];
        assert_eq!(writer.write_batch(&batch).unwrap(), 4);
        assert_eq!(writer.write_batch(&batch[..1]).unwrap(), 1);

        let read = |name: &str| std::fs::read_to_string(audit.join(name)).unwrap();
        assert_eq!(
            read("audit_19990104.log"),
            "sp500:1,1999-01-04T21:00:00Z,^GSPC,1228.099976,877000000,S&P 500\n\
             sp500:3,1999-01-04T23:59:59Z,^GSPC,1228.099976,877000000,Late\n\
             sp500:1,1999-01-04T21:00:00Z,^GSPC,1228.099976,877000000,S&P 500\n"
        );
        assert_eq!(
            read("audit_20180702.log"),
            "sp500:2,2018-07-02T20:00:00Z,^GSPC,1228.099976,877000000,\"Smith, \"\"Jr\"\" & Co\"\n"
        );
        assert_eq!(
            read("audit_19990105.log"),
            "sp500:4,1999-01-05T00:00:00Z,^GSPC,1228.099976,877000000,Midnight\n"
        );
        let mut names: Vec<String> = std::fs::read_dir(&audit)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "audit_19990104.log",
                "audit_19990105.log",
                "audit_20180702.log"
            ]
        );
        // The quoted line reads back as the same six fields.
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(audit.join("audit_20180702.log"))
            .unwrap();
        let record = csv.records().next().unwrap().unwrap();
        assert_eq!(&record[5], "Smith, \"Jr\" & Co");
        assert_eq!(record.len(), 6);
    }

    #[test]
    fn no_file_stays_open_after_a_write() {
        let dir = TempDir::new("audit-fds");
        // The probe sees a file that is open.
        let probe = File::create(dir.path().join("probe")).unwrap();
        assert_eq!(open_fds_under(dir.path()), 1);
        drop(probe);
        assert_eq!(open_fds_under(dir.path()), 0);

        let writer = AuditWriter::new(dir.path());
        let batch: Vec<AuditLine> = (0..50)
            .map(|i| line(&format!("e:{i}"), 915_483_600 + i * 86_400, "Co"))
            .collect();
        assert_eq!(writer.write_batch(&batch).unwrap(), 50);
        assert_eq!(open_fds_under(dir.path()), 0);
        let dead = DeadLetters::new(dir.path());
        let event = Event {
            event_id: "e:1".to_owned(),
            symbol: "X".to_owned(),
            price: 1.0,
            volume: 0,
            ts: Timestamp::EPOCH,
        };
        dead.append(&[DeadLetter::failed(&event, "boom", Timestamp::EPOCH)])
            .unwrap();
        assert_eq!(open_fds_under(dir.path()), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 52);
    }

    #[test]
    fn a_file_that_cannot_be_written_is_reported_line_by_line() {
        let dir = TempDir::new("audit-fail");
        // The "audit directory" is a file, so nothing can be created inside it.
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, "").unwrap();
        let writer = AuditWriter::new(&not_a_dir);
        let batch = [line("a", 915_483_600, "A"), line("b", 1_530_561_600, "B")];
        let outcome = writer.write_batch_each(&batch);
        assert_eq!(outcome.written, 0);
        let indices: Vec<usize> = outcome.failed.iter().map(|f| f.index).collect();
        assert_eq!(indices, [0, 1]);
        assert_eq!(outcome.failed[1].file, not_a_dir.join("audit_20180702.log"));
        let e = writer.write_batch(&batch).unwrap_err();
        assert!(e.to_string().starts_with("cannot append to "), "{e}");
        assert!(DeadLetters::new(&not_a_dir).append(&[]).is_ok());
        assert_eq!(writer.write_batch(&[]).unwrap(), 0);
    }

    #[test]
    fn dead_letters_are_json_lines_with_the_documented_keys() {
        let dir = TempDir::new("audit-dead");
        let dead = DeadLetters::new(dir.path());
        let event = Event {
            event_id: "stocks:7".to_owned(),
            symbol: "IBM".to_owned(),
            price: 100.52,
            volume: 0,
            ts: Timestamp::from_secs(946_760_400),
        };
        let at = Timestamp::from_secs(1_700_000_000);
        let rejected = Rejected {
            line: 3,
            reason: "price \"abc\" is not a finite, non-negative number".to_owned(),
            raw: "IBM,Mar 1 2000,abc".to_owned(),
        };
        let letters = [
            DeadLetter::rejected(Path::new("data/stocks.csv"), &rejected, at),
            DeadLetter::failed(&event, "enrichment: 404 Not Found", at),
            DeadLetter::interrupted(&event, "shutdown", at),
        ];
        assert_eq!(dead.append(&letters).unwrap(), 3);
        assert_eq!(dead.append(&letters[1..2]).unwrap(), 1);
        let text = std::fs::read_to_string(dead.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            serde_json::json!({
                "line": 3,
                "file": "data/stocks.csv",
                "raw": "IBM,Mar 1 2000,abc",
                "kind": "rejected",
                "reason": "price \"abc\" is not a finite, non-negative number",
                "at": "2023-11-14T22:13:20Z",
            })
        );
        assert_eq!(
            lines[1],
            serde_json::json!({
                "event_id": "stocks:7",
                "symbol": "IBM",
                "kind": "failed",
                "reason": "enrichment: 404 Not Found",
                "at": "2023-11-14T22:13:20Z",
            })
        );
        assert_eq!(lines[2]["kind"], "interrupted");
        assert_eq!(lines[3], lines[1]);
        assert_eq!(
            letters[2].to_json_line().unwrap(),
            format!("{}\n", text.lines().nth(2).unwrap())
        );
    }
}
