//! The first line of defence of a snapshot reader: a `Read` adaptor that counts the bytes
//! (after decompression) and, byte by byte, the length of the current token and the nesting
//! depth, and fails the read the moment one is over its limit. A parser behind it never buffers
//! more than one bounded token, however the snapshot is built.

use std::io::{self, Read};

use super::Format;

/// Longest string (between its quotes, escapes included) or bare number or literal of a JSON
/// snapshot. The longest valid value, a 255-character avatar written as `\u` escapes, is
/// about 3 KB; unknown fields are held to the same bound.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Deepest nesting of a JSON snapshot (a snapshot needs 4: the document, `members`, a member,
/// its `group_remote_ids`); unknown fields are held to the same bound.
pub const MAX_DEPTH: usize = 16;
/// Longest line of a CSV snapshot: a member with 1,000 groups of 64 characters fits.
pub const MAX_CSV_LINE_BYTES: usize = 1024 * 1024;

/// Why the guard stopped a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tripped {
    #[error("the snapshot is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("a string or number at byte {at} is longer than {max} bytes")]
    TokenTooLong { at: u64, max: usize },
    #[error("the snapshot is nested deeper than {max} levels at byte {at}")]
    TooDeep { at: u64, max: usize },
    #[error("a line at byte {at} is longer than {max} bytes")]
    LineTooLong { at: u64, max: usize },
}

/// Where the scanner is in the JSON grammar (strings only need care: brackets and quotes
/// inside them are not structure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Outside,
    InString,
    Escaped,
}

/// A reader of a snapshot in one format, within `max_bytes`.
pub struct Guard<R> {
    inner: R,
    json: bool,
    max_bytes: u64,
    read: u64,
    state: State,
    /// Bytes of the current token (JSON) or line (CSV).
    token: usize,
    depth: usize,
}

impl<R: Read> Guard<R> {
    pub fn new(inner: R, format: Format, max_bytes: u64) -> Guard<R> {
        Guard {
            inner,
            json: format != Format::Csv,
            max_bytes,
            read: 0,
            state: State::Outside,
            token: 0,
            depth: 0,
        }
    }

    fn scan_json(&mut self, bytes: &[u8], start: u64) -> Result<(), Tripped> {
        for (offset, byte) in bytes.iter().enumerate() {
            let at = start + offset as u64;
            match self.state {
                State::Escaped => {
                    self.state = State::InString;
                    self.token += 1;
                }
                State::InString => match byte {
                    b'"' => {
                        self.state = State::Outside;
                        self.token = 0;
                    }
                    b'\\' => {
                        self.state = State::Escaped;
                        self.token += 1;
                    }
                    _ => self.token += 1,
                },
                State::Outside => match byte {
                    b'"' => {
                        self.state = State::InString;
                        self.token = 0;
                    }
                    b'{' | b'[' => {
                        self.depth += 1;
                        self.token = 0;
                        if self.depth > MAX_DEPTH {
                            return Err(Tripped::TooDeep { at, max: MAX_DEPTH });
                        }
                    }
                    b'}' | b']' => {
                        self.depth = self.depth.saturating_sub(1);
                        self.token = 0;
                    }
                    b',' | b':' | b' ' | b'\t' | b'\r' | b'\n' => self.token = 0,
                    _ => self.token += 1,
                },
            }
            if self.token > MAX_TOKEN_BYTES {
                return Err(Tripped::TokenTooLong {
                    at,
                    max: MAX_TOKEN_BYTES,
                });
            }
        }
        Ok(())
    }

    fn scan_lines(&mut self, bytes: &[u8], start: u64) -> Result<(), Tripped> {
        for (offset, byte) in bytes.iter().enumerate() {
            if *byte == b'\n' {
                self.token = 0;
                continue;
            }
            self.token += 1;
            if self.token > MAX_CSV_LINE_BYTES {
                return Err(Tripped::LineTooLong {
                    at: start + offset as u64,
                    max: MAX_CSV_LINE_BYTES,
                });
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        let start = self.read;
        self.read += read as u64;
        if self.read > self.max_bytes {
            return Err(trip(Tripped::TooLarge {
                limit: self.max_bytes,
            }));
        }
        let bytes = &buffer[..read];
        let scanned = if self.json {
            self.scan_json(bytes, start)
        } else {
            self.scan_lines(bytes, start)
        };
        scanned.map_err(trip)?;
        Ok(read)
    }
}

fn trip(tripped: Tripped) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, tripped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &str) -> Result<(), Tripped> {
        let mut guard = Guard::new(body.as_bytes(), Format::Json, u64::MAX);
        let mut sink = Vec::new();
        match guard.read_to_end(&mut sink) {
            Ok(_) => Ok(()),
            Err(error) => Err(error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<Tripped>())
                .cloned()
                .expect("a tripped guard")),
        }
    }

    #[test]
    fn brackets_and_quotes_inside_strings_are_not_structure() {
        let quoted = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert_eq!(scan(&quoted), Ok(()));
        let escaped_backslash = r#"{"a":"\\","b":[[[]]]}"#;
        assert_eq!(scan(escaped_backslash), Ok(()));
    }

    #[test]
    fn tokens_are_counted_across_reads_and_numbers_count_too() {
        let string = format!("[\"{}\"]", "x".repeat(MAX_TOKEN_BYTES));
        assert_eq!(scan(&string), Ok(()));
        let longer = format!("[\"{}\"]", "x".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(scan(&longer), Err(Tripped::TokenTooLong { .. })));
        let number = format!("[{}]", "9".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(scan(&number), Err(Tripped::TokenTooLong { .. })));
        let many_short = format!("[{}\"x\"]", "\"x\",".repeat(MAX_TOKEN_BYTES));
        assert_eq!(scan(&many_short), Ok(()));
    }

    #[test]
    fn depth_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(scan(&ok), Ok(()));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(scan(&deep), Err(Tripped::TooDeep { .. })));
    }
}
