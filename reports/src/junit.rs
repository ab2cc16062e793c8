//! A JUnit XML writer, by hand: the subset of the format that Jenkins,
//! GitLab, GitHub Actions reporters and nextest's own output agree on.
//!
//! ```text
//! <testsuites name tests failures errors time>
//!   <testsuite name tests failures errors skipped time>
//!     <testcase classname name time>
//!       <failure type message>details</failure>   (or <error>, <skipped>)
//!       <system-out>...</system-out>
//! ```
//!
//! Every string goes through [`escape`], so any scenario name, message or
//! output is well-formed XML.

use std::fmt::Write as _;
use std::time::Duration;

/// A whole report: one or more suites.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The name of the `<testsuites>` element.
    pub name: String,
    /// The suites, in order.
    pub suites: Vec<TestSuite>,
}

/// One `<testsuite>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestSuite {
    /// Its name.
    pub name: String,
    /// Its cases, in order.
    pub cases: Vec<TestCase>,
    /// Wall time of the whole suite, if measured.
    pub time: Option<Duration>,
}

/// One `<testcase>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestCase {
    /// The group CI systems show it under (we use the scenario name).
    pub classname: String,
    /// The case's name.
    pub name: String,
    /// Wall time, if measured.
    pub time: Option<Duration>,
    /// Passed, failed, errored or skipped.
    pub outcome: CaseOutcome,
    /// Text for `<system-out>`: seed, digest, replay command.
    pub system_out: Option<String>,
}

/// How a test case ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum CaseOutcome {
    /// It passed.
    #[default]
    Passed,
    /// It ran and a check failed (`<failure>`).
    Failure {
        /// A short machine-friendly kind, e.g. `expectation`, `nondeterministic`.
        kind: String,
        /// One line.
        message: String,
        /// Everything else, as the element's text.
        detail: String,
    },
    /// It could not run (`<error>`): a bad file, an unsupported fault, a crash.
    Error {
        /// A short machine-friendly kind, e.g. `unsupported`, `invalid-scenario`.
        kind: String,
        /// One line.
        message: String,
        /// Everything else, as the element's text.
        detail: String,
    },
    /// It was not run (`<skipped>`).
    Skipped {
        /// Why.
        message: String,
    },
}

impl TestSuite {
    fn count(&self, f: impl Fn(&CaseOutcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }

    /// How many cases failed (`<failure>`).
    pub fn failures(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Failure { .. }))
    }

    /// How many cases could not run (`<error>`).
    pub fn errors(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Error { .. }))
    }

    /// How many cases were skipped.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, CaseOutcome::Skipped { .. }))
    }
}

/// Escapes text for XML content and attribute values: `& < > " '`, and
/// every character XML 1.0 does not allow (control characters other than
/// tab, newline and carriage return) becomes U+FFFD. Newlines and tabs in
/// attributes are written as character references so parsers keep them.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// Whether XML 1.0 allows `c` in a document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn seconds(d: Option<Duration>) -> String {
    format!("{:.3}", d.unwrap_or_default().as_secs_f64())
}

/// Writes the report as a JUnit XML document (UTF-8, ending in a newline).
pub fn write(report: &Report) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let tests: usize = report.suites.iter().map(|s| s.cases.len()).sum();
    let failures: usize = report.suites.iter().map(TestSuite::failures).sum();
    let errors: usize = report.suites.iter().map(TestSuite::errors).sum();
    let time: Duration = report.suites.iter().filter_map(|s| s.time).sum();
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{}\">",
        escape(&report.name),
        seconds(Some(time))
    );
    for s in &report.suites {
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            escape(&s.name),
            s.cases.len(),
            s.failures(),
            s.errors(),
            s.skipped(),
            seconds(s.time)
        );
        for c in &s.cases {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
                escape(&c.classname),
                escape(&c.name),
                seconds(c.time)
            );
            if c.outcome == CaseOutcome::Passed && c.system_out.is_none() {
                x.push_str("/>\n");
                continue;
            }
            x.push_str(">\n");
            match &c.outcome {
                CaseOutcome::Passed => {}
                CaseOutcome::Failure {
                    kind,
                    message,
                    detail,
                } => element(&mut x, "failure", kind, message, detail),
                CaseOutcome::Error {
                    kind,
                    message,
                    detail,
                } => element(&mut x, "error", kind, message, detail),
                CaseOutcome::Skipped { message } => {
                    let _ = writeln!(x, "      <skipped message=\"{}\"/>", escape(message));
                }
            }
            if let Some(out) = &c.system_out {
                let _ = writeln!(x, "      <system-out>{}</system-out>", escape_text(out));
            }
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

fn element(x: &mut String, tag: &str, kind: &str, message: &str, detail: &str) {
    let _ = writeln!(
        x,
        "      <{tag} type=\"{}\" message=\"{}\">{}</{tag}>",
        escape(kind),
        escape(message),
        escape_text(detail)
    );
}

/// Like [`escape`] but keeps newlines and tabs as they are: for element text,
/// where they are preserved anyway and easier to read in the raw file.
fn escape_text(text: &str) -> String {
    escape(text).replace("&#10;", "\n").replace("&#9;", "\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c\"'d'"),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;"
        );
        assert_eq!(escape("x\u{1}y\u{FFFE}"), "x\u{FFFD}y\u{FFFD}");
        assert_eq!(escape("l1\nl2\t"), "l1&#10;l2&#9;");
        assert_eq!(escape("héllo ✓ 𝄞"), "héllo ✓ 𝄞");
    }

    #[test]
    fn writes_counts_and_one_element_per_outcome() {
        let case = |name: &str, outcome| TestCase {
            classname: "smoke".into(),
            name: name.into(),
            time: Some(Duration::from_millis(1500)),
            outcome,
            system_out: None,
        };
        let report = Report {
            name: "simbench".into(),
            suites: vec![TestSuite {
                name: "simbench check".into(),
                time: Some(Duration::from_secs(3)),
                cases: vec![
                    case("expectations", CaseOutcome::Passed),
                    case(
                        "determinism",
                        CaseOutcome::Failure {
                            kind: "nondeterministic".into(),
                            message: "digests differ: a <> b".into(),
                            detail: "run 1: a\nrun 2: b".into(),
                        },
                    ),
                    case(
                        "x",
                        CaseOutcome::Error {
                            kind: "unsupported".into(),
                            message: "uses fault `loss`".into(),
                            detail: String::new(),
                        },
                    ),
                    TestCase {
                        system_out: Some("seed 7 & more".into()),
                        ..case(
                            "y",
                            CaseOutcome::Skipped {
                                message: "later".into(),
                            },
                        )
                    },
                ],
            }],
        };
        let x = write(&report);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"simbench\" tests=\"4\" failures=\"1\" errors=\"1\" time=\"3.000\">\n"), "{x}");
        assert!(x.contains("<testsuite name=\"simbench check\" tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\" time=\"3.000\">"), "{x}");
        assert!(
            x.contains("<testcase classname=\"smoke\" name=\"expectations\" time=\"1.500\"/>"),
            "{x}"
        );
        assert!(x.contains("<failure type=\"nondeterministic\" message=\"digests differ: a &lt;&gt; b\">run 1: a\nrun 2: b</failure>"), "{x}");
        assert!(
            x.contains("<error type=\"unsupported\" message=\"uses fault `loss`\"></error>"),
            "{x}"
        );
        assert!(x.contains("<skipped message=\"later\"/>"), "{x}");
        assert!(
            x.contains("<system-out>seed 7 &amp; more</system-out>"),
            "{x}"
        );
        assert_eq!(x.matches("<testcase ").count(), 4);
        assert_eq!(x.matches("</testcase>").count(), 3);
        assert!(x.ends_with("</testsuite>\n</testsuites>\n"));
    }
}
