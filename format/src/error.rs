//! The error a bad scenario file gets: one line with `file:line:column`,
//! what was expected, the valid choices and a "did you mean" when one is
//! close.

use std::ops::Range;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read the scenario file: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is not a valid scenario.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file name used in messages.
        file: String,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// What kind of mistake it is.
        kind: ErrorKind,
        /// The message after the location.
        message: String,
    },
}

/// The kinds of mistake a scenario file can make, for callers that branch on
/// them (the message already says everything a person needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// A key the format does not have.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// A value of the right type but out of range or malformed.
    BadValue,
    /// A duration string that does not parse.
    BadDuration,
    /// A `kind` not in the fault catalogue.
    UnknownFaultKind,
    /// A `do` not in the action catalogue.
    UnknownAction,
    /// A behavior switch not in the catalogue.
    UnknownSwitch,
    /// A behavior preset other than `legacy` / `fixed`.
    UnknownPreset,
    /// A value not among a key's fixed choices (protocol, frame type, ...).
    UnknownChoice,
    /// A reference to an agent that is not declared.
    UnknownAgent,
    /// A reference to a site no agent sits in.
    UnknownSite,
    /// Two agents with the same name.
    DuplicateAgent,
    /// `from` not before `until`.
    TimeOrder,
    /// A time later than the scenario's `duration`.
    PastDuration,
    /// An `[[expect]]` with no operator or more than one.
    ExpectOperator,
    /// An `observe` path that no outcome document has.
    UnknownPath,
}

/// The longest message an error carries: one that echoes a huge key or
/// value keeps its start and its end (where the hint is) and says how much
/// was cut.
pub const MAX_MESSAGE_CHARS: usize = 1_000;

fn cut_message(message: String) -> String {
    let chars = message.chars().count();
    if chars <= MAX_MESSAGE_CHARS {
        return message;
    }
    let keep = MAX_MESSAGE_CHARS / 2 - 20;
    let head: String = message.chars().take(keep).collect();
    let tail: String = message.chars().skip(chars - keep).collect();
    format!(
        "{head} [... {} characters cut ...] {tail}",
        chars - 2 * keep
    )
}

impl ScenarioError {
    /// Builds a located error; `span` is a byte range in `text`, or `None` to
    /// point at the start of the file.
    pub(crate) fn at(
        file: &str,
        text: &str,
        span: Option<Range<usize>>,
        kind: ErrorKind,
        message: String,
    ) -> Self {
        let (line, column) = line_column(text, span.map_or(0, |s| s.start));
        ScenarioError::Invalid {
            file: file.to_owned(),
            line,
            column,
            kind,
            message: cut_message(message),
        }
    }

    /// The 1-based line of the mistake; `None` when the file was unreadable.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Invalid { line, .. } => Some(*line),
            ScenarioError::Read { .. } => None,
        }
    }

    /// The 1-based column (in characters) of the mistake; `None` when the
    /// file was unreadable.
    pub fn column(&self) -> Option<usize> {
        match self {
            ScenarioError::Invalid { column, .. } => Some(*column),
            ScenarioError::Read { .. } => None,
        }
    }

    /// What kind of mistake it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ScenarioError::Invalid { kind, .. } => *kind,
            ScenarioError::Read { .. } => ErrorKind::Io,
        }
    }

    /// The message without the `file:line:column: ` prefix.
    pub fn message(&self) -> String {
        match self {
            ScenarioError::Invalid { message, .. } => message.clone(),
            ScenarioError::Read { source, .. } => {
                format!("cannot read the scenario file: {source}")
            }
        }
    }
}

/// 1-based line and character column of byte `offset` in `text`. An offset
/// past the end or inside a character is clamped, never a panic.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 7), (2, 4)); // after the two-byte é
        assert_eq!(line_column(text, 6), (2, 3)); // inside é: clamped back
        assert_eq!(line_column(text, 999), (3, 2));
    }
}
