//! CSV records read line by line, with their true line numbers.
//!
//! The csv crate's reader does not count lines the way a person reading the
//! file does (a blank line or a CRLF ending shifts its count), and a rejected
//! row should be reported as it stands in the file. So the source reads
//! physical lines itself, bounded in length, and splits each record with
//! [`split`], which follows RFC 4180's quoting: a field in double quotes may
//! hold commas, doubled quotes and line breaks.

use std::io::{self, BufRead};

/// The longest record kept; longer ones are skipped to their end and reported
/// as oversized, so one endless line cannot grow a buffer without bound.
pub(crate) const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One record of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The line the record starts on, counting from 1.
    pub(crate) line: u64,
    /// The record's bytes as in the file, without its line ending (a record
    /// over several lines keeps its inner `\n`s), cut at the size limit.
    pub(crate) raw: Vec<u8>,
    /// The fields, or why the record could not be split.
    pub(crate) fields: Result<Vec<Vec<u8>>, Malformed>,
}

/// Why a record has no fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Longer than [`MAX_RECORD_BYTES`].
    Oversized,
    /// A quoted field was still open at the end of the file.
    UnclosedQuote,
}

/// Splits one record into its fields, or `None` while a quoted field is still
/// open (the record goes on after a line break).
///
/// Outside quotes every byte is kept as is; inside, `""` is one quote. Bytes
/// after a closing quote and before the next comma are kept (lenient, as
/// spreadsheet exports are).
pub(crate) fn split(record: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut fields = Vec::new();
    let mut field = Vec::new();
    let mut in_quotes = false;
    let mut at_field_start = true;
    let mut bytes = record.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if in_quotes {
            if b == b'"' {
                if bytes.peek() == Some(&b'"') {
                    bytes.next();
                    field.push(b'"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(b);
            }
            continue;
        }
        match b {
            b',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                continue;
            }
            b'"' if at_field_start => in_quotes = true,
            _ => field.push(b),
        }
        at_field_start = false;
    }
    if in_quotes {
        return None;
    }
    fields.push(field);
    Some(fields)
}

/// Reads [`Record`]s from a buffered byte stream, skipping blank lines.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: R,
    /// Lines consumed completely so far.
    line: u64,
    limit: usize,
    oversized: bool,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        LineReader::with_limit(inner, MAX_RECORD_BYTES)
    }

    pub(crate) fn with_limit(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            line: 0,
            limit,
            oversized: false,
        }
    }

    /// Lines consumed completely so far (after an error: the last good line).
    pub(crate) fn lines(&self) -> u64 {
        self.line
    }

    /// The next non-blank record, or `None` at the end of the stream.
    ///
    /// # Errors
    ///
    /// What the stream reports; the partial line is dropped and
    /// [`LineReader::lines`] still counts the complete lines only.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut raw = Vec::new();
        loop {
            raw.clear();
            self.oversized = false;
            if !self.read_line(&mut raw)? {
                return Ok(None);
            }
            if !self.oversized && raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line = self.line;
            loop {
                if self.oversized {
                    return Ok(Some(Record {
                        line,
                        raw,
                        fields: Err(Malformed::Oversized),
                    }));
                }
                if let Some(fields) = split(&raw) {
                    return Ok(Some(Record {
                        line,
                        raw,
                        fields: Ok(fields),
                    }));
                }
                // A quoted field goes on past the line break.
                raw.push(b'\n');
                if !self.read_line(&mut raw)? {
                    raw.pop();
                    return Ok(Some(Record {
                        line,
                        raw,
                        fields: Err(Malformed::UnclosedQuote),
                    }));
                }
            }
        }
    }

    /// Appends one physical line to `out` without its `\n` or `\r\n`; false
    /// at the end of the stream. Past the limit, bytes are consumed but not
    /// kept, and `oversized` is set.
    fn read_line(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let mut read_any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if read_any {
                    // The last line has no line ending.
                    self.line += 1;
                    strip_cr(out);
                }
                return Ok(read_any);
            }
            read_any = true;
            let (chunk, used, ended) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            let room = self.limit.saturating_sub(out.len());
            if chunk.len() > room {
                self.oversized = true;
            }
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.inner.consume(used);
            if ended {
                self.line += 1;
                strip_cr(out);
                return Ok(true);
            }
        }
    }
}

fn strip_cr(out: &mut Vec<u8>) {
    if out.last() == Some(&b'\r') {
        out.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(record: &str) -> Option<Vec<String>> {
        split(record.as_bytes()).map(|fields| {
            fields
                .into_iter()
                .map(|f| String::from_utf8(f).unwrap())
                .collect()
        })
    }

    fn records(input: &[u8], limit: usize) -> Vec<Record> {
        let mut reader = LineReader::with_limit(input, limit);
        let mut out = Vec::new();
        while let Some(record) = reader.next_record().unwrap() {
            out.push(record);
        }
        out
    }

    #[test]
    fn fields_split_on_commas_with_rfc_4180_quotes() {
        assert_eq!(fields("a,b,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(fields("").unwrap(), [""]);
        assert_eq!(fields(",").unwrap(), ["", ""]);
        assert_eq!(fields("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(fields("\"say \"\"hi\"\"\",x").unwrap(), ["say \"hi\"", "x"]);
        assert_eq!(fields("\"\"").unwrap(), [""]);
        assert_eq!(fields("a\"b,c").unwrap(), ["a\"b", "c"]);
        assert_eq!(fields("\"a\"b,c").unwrap(), ["ab", "c"]);
        assert_eq!(fields("\"line\nbreak\",x").unwrap(), ["line\nbreak", "x"]);
        assert_eq!(fields("\"open,x"), None);
        assert_eq!(fields("a,\"open"), None);
    }

    #[test]
    fn every_prefix_of_a_record_splits_without_panicking() {
        let record = b"\"A,\"\"B\"\"\",Jan 1 2000,\xff12.5";
        for end in 0..=record.len() {
            let _ = split(&record[..end]);
        }
    }

    #[test]
    fn line_numbers_count_blank_lines_and_crlf_endings() {
        let got = records(
            b"h1,h2\r\n\r\na,b\r\n  \n\"x\ny\",z\nlast,row",
            MAX_RECORD_BYTES,
        );
        let summary: Vec<(u64, &[u8], usize)> = got
            .iter()
            .map(|r| (r.line, &r.raw[..], r.fields.as_ref().unwrap().len()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, &b"h1,h2"[..], 2),
                (3, &b"a,b"[..], 2),
                (5, &b"\"x\ny\",z"[..], 2),
                (7, &b"last,row"[..], 2),
            ]
        );
    }

    #[test]
    fn an_oversized_line_is_skipped_to_its_end_and_reported() {
        let got = records(b"ok\n0123456789abcdef\nnext\n", 8);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].line, 2);
        assert_eq!(got[1].raw, b"01234567");
        assert_eq!(got[1].fields, Err(Malformed::Oversized));
        assert_eq!((got[2].line, &got[2].raw[..]), (3, &b"next"[..]));
    }

    #[test]
    fn a_quote_left_open_at_the_end_is_reported() {
        let got = records(b"a\n\"b,\nc", MAX_RECORD_BYTES);
        assert_eq!(got[1].line, 2);
        assert_eq!(got[1].raw, b"\"b,\nc");
        assert_eq!(got[1].fields, Err(Malformed::UnclosedQuote));
    }

    #[test]
    fn a_read_error_keeps_the_count_of_complete_lines() {
        struct Failing<'a>(&'a [u8]);
        impl io::Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut"));
                }
                let n = self.0.len().min(buf.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut reader = LineReader::new(io::BufReader::new(Failing(b"a,b\nc,d\npartial")));
        assert_eq!(reader.next_record().unwrap().unwrap().line, 1);
        assert_eq!(reader.next_record().unwrap().unwrap().line, 2);
        let e = reader.next_record().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(reader.lines(), 2);
    }
}
