//! Reading newline-terminated messages with a length limit: a peer that
//! sends bytes without a newline gets its stream refused at `max` bytes
//! instead of growing the reader's buffer without bound.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The read buffer for line-at-a-time streams (the QUIC tunnel's). Each
/// message is one short JSON line (a longer one takes several reads);
/// tokio's default buffer, 8 KiB filled with zeros up front, would be held
/// by every tunnel stream of both ends.
pub const READ_BUFFER_BYTES: usize = 1 << 10;

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// More than the limit arrived without a newline.
    #[error("a line longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The line is not UTF-8.
    #[error("a line that is not UTF-8")]
    NotUtf8,
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Lines of at most `max` bytes (without the newline) from `reader`.
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    /// Reads lines of at most `max` bytes.
    pub fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader,
            max,
            buf: Vec::new(),
        }
    }

    /// The next line without its `\n` (and a `\r` before it); `None` at the
    /// end of the stream. A last line without a newline is returned too.
    /// After an error the stream is not usable any more.
    pub async fn next_line(&mut self) -> Result<Option<String>, LineError> {
        self.buf.clear();
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                break;
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.buf.len() + i > self.max {
                        return Err(LineError::TooLong { max: self.max });
                    }
                    self.buf.extend_from_slice(&available[..i]);
                    self.reader.consume(i + 1);
                    break;
                }
                None => {
                    let n = available.len();
                    if self.buf.len() + n > self.max {
                        return Err(LineError::TooLong { max: self.max });
                    }
                    self.buf.extend_from_slice(available);
                    self.reader.consume(n);
                }
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        String::from_utf8(std::mem::take(&mut self.buf))
            .map(Some)
            .map_err(|_| LineError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> (Vec<String>, Option<String>) {
        let mut l = BoundedLines::new(input, max);
        let mut out = Vec::new();
        loop {
            match l.next_line().await {
                Ok(Some(s)) => out.push(s),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[tokio::test]
    async fn lines_up_to_the_limit_pass_and_a_longer_one_is_refused() {
        assert_eq!(
            all(b"ab\ncd\r\n\nlast", 4).await,
            (
                vec!["ab".into(), "cd".into(), "".into(), "last".into()],
                None
            )
        );
        assert_eq!(all(b"abcd\n", 4).await.1, None);
        let (ok, err) = all(b"ab\nabcde\nx\n", 4).await;
        assert_eq!(ok, ["ab"]);
        assert_eq!(err.as_deref(), Some("a line longer than 4 bytes"));
        // No newline at all: refused at the limit, not read to the end.
        assert!(all(&vec![b'x'; 1 << 20], 1024).await.1.is_some());
        assert_eq!(
            all(b"\xff\n", 4).await.1.as_deref(),
            Some("a line that is not UTF-8")
        );
    }
}
