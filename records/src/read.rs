//! Reading frame and event logs: JSON Lines with a bound on every record,
//! a tolerated cut last line, and the merge of several processes' logs
//! into one log in time order (the full view of a real deployment).
//!
//! Sans-IO apart from the [`BufRead`] it is handed: no files, no clock.

use std::collections::BinaryHeap;
use std::io::BufRead;

use serde::de::DeserializeOwned;

/// The longest record (line) the reader accepts: 1 MiB. A frame record is
/// about 200 bytes; anything this long is not a log (`/dev/zero`, a core
/// dump) and is refused after reading at most this much of it.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Why a log could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// The reader failed.
    #[error("{name}: cannot read: {error}")]
    Io {
        /// The log's name (its path).
        name: String,
        /// The I/O error's text.
        error: String,
    },
    /// A line longer than [`MAX_RECORD_BYTES`].
    #[error("{name}:{line}: a line longer than {max} bytes is not a {what} record (is {name} a {what}?)", max = MAX_RECORD_BYTES)]
    TooLong {
        /// The log's name.
        name: String,
        /// 1-based line number.
        line: usize,
        /// `frame log` or `event log`.
        what: &'static str,
    },
    /// A complete line that is not a record.
    #[error(
        "{name}:{line}: not a {what} record: {error} (see docs/observation.md for the format)"
    )]
    Bad {
        /// The log's name.
        name: String,
        /// 1-based line number.
        line: usize,
        /// `frame log` or `event log`.
        what: &'static str,
        /// serde_json's message (bounded: it quotes no input).
        error: String,
    },
}

/// A log read: its records, their 1-based line numbers, and a warning when
/// its last line was cut.
#[derive(Debug)]
pub struct Log<T> {
    /// The records, in file order.
    pub records: Vec<T>,
    /// The line each record came from (1-based), same order.
    pub lines: Vec<usize>,
    /// Set when the last line had no newline and was not a record (a log
    /// cut by a crash): it is left out.
    pub cut_last_line: Option<usize>,
}

/// Reads one line of at most `max` bytes into `buf` (without the newline).
/// `Ok(None)` at the end; `Ok(Some(ended))` with `ended` false when the
/// line had no newline (the end of the input); `Err(true)` when the line is
/// longer than `max` (having consumed at most `max + 1` bytes of it).
fn read_line(
    r: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<bool>, std::io::Result<bool>> {
    buf.clear();
    let mut any = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Err(e)),
        };
        if avail.is_empty() {
            return Ok(any.then_some(false));
        }
        any = true;
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > max {
            return Err(Ok(true));
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(true));
        }
    }
}

/// Reads a JSON Lines log of `T` named `name` (`what`: `frame log` or
/// `event log`, for messages). Blank lines are skipped; a last line with
/// no newline that is not a record is left out and reported in
/// [`Log::cut_last_line`]; any other bad line is an error.
pub fn read_jsonl<T: DeserializeOwned>(
    mut r: impl BufRead,
    name: &str,
    what: &'static str,
) -> Result<Log<T>, ReadError> {
    let mut log = Log {
        records: Vec::new(),
        lines: Vec::new(),
        cut_last_line: None,
    };
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        line += 1;
        let ended = match read_line(&mut r, &mut buf, MAX_RECORD_BYTES) {
            Ok(None) => return Ok(log),
            Ok(Some(ended)) => ended,
            Err(Ok(_)) => {
                return Err(ReadError::TooLong {
                    name: name.to_string(),
                    line,
                    what,
                })
            }
            Err(Err(e)) => {
                return Err(ReadError::Io {
                    name: name.to_string(),
                    error: e.to_string(),
                })
            }
        };
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<T>(&buf) {
            Ok(rec) => {
                log.records.push(rec);
                log.lines.push(line);
            }
            Err(_) if !ended => {
                log.cut_last_line = Some(line);
                return Ok(log);
            }
            Err(e) => {
                return Err(ReadError::Bad {
                    name: name.to_string(),
                    line,
                    what,
                    error: bounded_error(&e),
                })
            }
        }
    }
}

/// serde_json's message, cut at 200 bytes: a message about an unknown
/// variant quotes the input, which a peer may have made huge.
fn bounded_error(e: &serde_json::Error) -> String {
    let mut s = e.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Where a merged record came from: the index of its log in the input and
/// its line there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// Index of the log (0-based, in the order given).
    pub log: usize,
    /// 1-based line in that log.
    pub line: usize,
}

/// Merges several logs into one in time order (`t_us`), keeping each log's
/// own order (a log's records are never reordered among themselves) and,
/// at equal times, the order the logs were given in. O(n log k).
pub fn merge<T>(logs: Vec<Log<T>>, t_us: impl Fn(&T) -> u64) -> (Vec<T>, Vec<Source>) {
    let total = logs.iter().map(|l| l.records.len()).sum();
    let mut out = Vec::with_capacity(total);
    let mut src = Vec::with_capacity(total);
    let mut iters: Vec<_> = logs
        .into_iter()
        .map(|l| l.records.into_iter().zip(l.lines).peekable())
        .collect();
    // Min-heap on (t_us of the log's next record, log index).
    let mut heap = BinaryHeap::new();
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some((r, _)) = it.peek() {
            heap.push(std::cmp::Reverse((t_us(r), i)));
        }
    }
    while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
        let (r, line) = iters[i].next().expect("a log in the heap has a record");
        out.push(r);
        src.push(Source { log: i, line });
        if let Some((next, _)) = iters[i].peek() {
            heap.push(std::cmp::Reverse((t_us(next), i)));
        }
    }
    (out, src)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameRecord;

    fn frames(text: &str) -> Result<Log<FrameRecord>, ReadError> {
        read_jsonl(text.as_bytes(), "f.jsonl", "frame log")
    }

    const REC: &str = r#"{"t_us":5,"point":"server","conn":"c1","peer":"a","dir":"rx","stage":"read","frame":"ping"}"#;

    #[test]
    fn a_cut_last_line_is_left_out_and_reported() {
        let text = format!("{REC}\n\n{REC}\n{}", &REC[..40]);
        let log = frames(&text).unwrap();
        assert_eq!(log.records.len(), 2);
        assert_eq!(log.lines, vec![1, 3]);
        assert_eq!(log.cut_last_line, Some(4));
        // A complete last record without its newline is a record.
        let log = frames(&format!("{REC}\n{REC}")).unwrap();
        assert_eq!((log.records.len(), log.cut_last_line), (2, None));
    }

    #[test]
    fn a_bad_line_before_the_end_is_an_error_naming_the_line() {
        let err = frames(&format!("{REC}\n{{\"t_us\":1}}\n{REC}\n")).unwrap_err();
        assert!(matches!(&err, ReadError::Bad { line: 2, .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("f.jsonl:2: not a frame log record"));
    }

    #[test]
    fn an_endless_line_is_refused_after_reading_at_most_the_bound() {
        // An endless reader (like /dev/zero) that counts what it handed out.
        struct Zeros(usize);
        impl std::io::Read for Zeros {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                b.fill(0);
                self.0 += b.len();
                Ok(b.len())
            }
        }
        let mut z = std::io::BufReader::new(Zeros(0));
        let err = read_jsonl::<FrameRecord>(&mut z, "/dev/zero", "frame log").unwrap_err();
        assert_eq!(
            err,
            ReadError::TooLong {
                name: "/dev/zero".into(),
                line: 1,
                what: "frame log"
            }
        );
        assert!(
            z.get_ref().0 <= MAX_RECORD_BYTES + 2 * 8192,
            "{}",
            z.get_ref().0
        );
    }

    #[test]
    fn an_error_about_a_huge_value_does_not_quote_it_whole() {
        let huge = "x".repeat(100_000);
        let line = REC.replace("\"ping\"", &format!("\"{huge}\""));
        let err = frames(&format!("{line}\n{REC}\n")).unwrap_err().to_string();
        assert!(err.len() < 400, "{}", err.len());
    }

    #[test]
    fn merge_orders_by_time_and_keeps_each_logs_order() {
        let log = |ts: &[u64]| Log {
            records: ts.to_vec(),
            lines: (1..=ts.len()).collect(),
            cut_last_line: None,
        };
        // Log 0 is out of order at 9 -> 3: its order is kept.
        let (recs, src) = merge(vec![log(&[1, 9, 3]), log(&[2, 3, 10])], |t| *t);
        assert_eq!(recs, vec![1, 2, 3, 9, 3, 10]);
        assert_eq!(
            src.iter().map(|s| (s.log, s.line)).collect::<Vec<_>>(),
            vec![(0, 1), (1, 1), (1, 2), (0, 2), (0, 3), (1, 3)]
        );
    }
}
