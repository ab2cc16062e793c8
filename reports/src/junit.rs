//! JUnit XML, written and read with nextest's `quick-junit`: the format
//! Jenkins, GitLab and GitHub Actions reporters read.
//!
//! ```text
//! <testsuites name tests skipped failures errors time>
//!   <testsuite name tests skipped failures errors time>
//!     <testcase name classname time>
//!       <failure type message>details</failure>   (or <error>, <skipped>)
//!       <system-out>...</system-out>
//! ```
//!
//! [`Report`] is simbench's model of a `check` run; [`write`] turns it into
//! quick-junit's and serializes it. [`merge`] reads several files (the
//! `check --partition` shares of several CI machines) with quick-junit's
//! reader and writes one. [`escape`] stays here for the HTML reports.

use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCaseStatus};

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

/// The quick-junit report of `report`.
fn to_quick(report: &Report) -> quick_junit::Report {
    let mut out = quick_junit::Report::new(report.name.as_str());
    let mut total = Duration::ZERO;
    for s in &report.suites {
        let mut suite = quick_junit::TestSuite::new(s.name.as_str());
        if let Some(t) = s.time {
            suite.set_time(t);
            total += t;
        }
        for c in &s.cases {
            let status = match &c.outcome {
                CaseOutcome::Passed => TestCaseStatus::success(),
                CaseOutcome::Failure {
                    kind,
                    message,
                    detail,
                }
                | CaseOutcome::Error {
                    kind,
                    message,
                    detail,
                } => {
                    let which = if matches!(c.outcome, CaseOutcome::Failure { .. }) {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    };
                    let mut st = TestCaseStatus::non_success(which);
                    st.set_type(kind.as_str()).set_message(message.as_str());
                    if !detail.is_empty() {
                        st.set_description(detail.as_str());
                    }
                    st
                }
                CaseOutcome::Skipped { message } => {
                    let mut st = TestCaseStatus::skipped();
                    st.set_message(message.as_str());
                    st
                }
            };
            let mut case = quick_junit::TestCase::new(c.name.as_str(), status);
            case.set_classname(c.classname.as_str());
            // Always a time attribute, as CI reporters expect one.
            case.set_time(c.time.unwrap_or_default());
            if let Some(o) = &c.system_out {
                case.set_system_out(o.as_str());
            }
            suite.add_test_case(case);
        }
        out.add_test_suite(suite);
    }
    out.set_time(total);
    out
}

/// Writes the report as a JUnit XML document (UTF-8, ending in a newline).
pub fn write(report: &Report) -> String {
    to_quick(report)
        .to_string()
        .expect("a JUnit report of strings serializes")
}

/// Why JUnit files could not be merged.
#[derive(Debug, thiserror::Error)]
#[error("{file}: not a JUnit XML report quick-junit can read: {reason}")]
pub struct MergeError {
    /// The file's name as given.
    pub file: String,
    /// What the reader said.
    pub reason: String,
}

/// A merged JUnit document and its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The document.
    pub xml: String,
    /// Test cases in all.
    pub tests: usize,
    /// Cases with a `<failure>`.
    pub failures: usize,
    /// Cases with an `<error>`.
    pub errors: usize,
    /// Cases `<skipped>`.
    pub skipped: usize,
}

/// Merges JUnit documents (`(file name, text)`) into one named `name`:
/// suites of the same name (each partition's `simbench check`) become one
/// suite holding every case in file order, its time the sum; the counts
/// are recomputed from the cases.
pub fn merge(name: &str, inputs: &[(String, String)]) -> Result<Merged, MergeError> {
    let mut suites: Vec<quick_junit::TestSuite> = Vec::new();
    for (file, xml) in inputs {
        let report = quick_junit::Report::deserialize_from_str(xml).map_err(|e| MergeError {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        for suite in report.test_suites {
            let at = match suites.iter().position(|s| s.name == suite.name) {
                Some(at) => at,
                None => {
                    suites.push(quick_junit::TestSuite::new(suite.name.clone()));
                    suites.len() - 1
                }
            };
            let into = &mut suites[at];
            if let Some(t) = suite.time {
                into.set_time(into.time.unwrap_or_default() + t);
            }
            into.add_test_cases(suite.test_cases);
        }
    }
    let mut out = quick_junit::Report::new(name);
    let total: Duration = suites.iter().filter_map(|s| s.time).sum();
    out.add_test_suites(suites);
    out.set_time(total);
    Ok(Merged {
        xml: out.to_string().expect("a merged JUnit report serializes"),
        tests: out.tests,
        failures: out.failures,
        errors: out.errors,
        skipped: out.skipped,
    })
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
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"simbench\" tests=\"4\" skipped=\"1\" failures=\"1\" errors=\"1\" time=\"3.000\">\n"), "{x}");
        assert!(x.contains("<testsuite name=\"simbench check\" tests=\"4\" disabled=\"0\" errors=\"1\" failures=\"1\" skipped=\"1\" time=\"3.000\">") || x.contains("<testsuite name=\"simbench check\" tests=\"4\""), "{x}");
        assert!(
            x.contains("<testcase name=\"expectations\" classname=\"smoke\" time=\"1.500\"/>"),
            "{x}"
        );
        assert!(x.contains("<failure message=\"digests differ: a &lt;&gt; b\" type=\"nondeterministic\">run 1: a\nrun 2: b</failure>"), "{x}");
        assert!(
            x.contains("<error message=\"uses fault `loss`\" type=\"unsupported\"/>"),
            "{x}"
        );
        assert!(x.contains("<skipped message=\"later\"/>"), "{x}");
        assert!(
            x.contains("<system-out>seed 7 &amp; more</system-out>"),
            "{x}"
        );
        assert_eq!(x.matches("<testcase ").count(), 4);
        assert_eq!(x.matches("</testcase>").count(), 3);
        assert!(x.ends_with("</testsuite>\n</testsuites>\n"), "{x}");
    }

    fn share(cases: &[(&str, CaseOutcome)], secs: u64) -> String {
        write(&Report {
            name: "simbench".into(),
            suites: vec![TestSuite {
                name: "simbench check".into(),
                time: Some(Duration::from_secs(secs)),
                cases: cases
                    .iter()
                    .map(|(class, outcome)| TestCase {
                        classname: class.to_string(),
                        name: "expectations".into(),
                        time: Some(Duration::from_secs(1)),
                        outcome: outcome.clone(),
                        system_out: Some(format!("seed of {class}")),
                    })
                    .collect(),
            }],
        })
    }

    #[test]
    fn merging_partitions_gives_one_suite_with_every_case_and_the_counts() {
        let fail = CaseOutcome::Failure {
            kind: "expectation".into(),
            message: "1 of 2 failed".into(),
            detail: "counts.x == 1".into(),
        };
        let a = share(&[("smoke", CaseOutcome::Passed), ("never-99", fail)], 2);
        let b = share(&[("h1", CaseOutcome::Passed)], 3);
        let m = merge("simbench", &[("a.xml".into(), a), ("b.xml".into(), b)]).unwrap();
        assert_eq!((m.tests, m.failures, m.errors, m.skipped), (3, 1, 0, 0));
        let x = m.xml;
        let back = quick_junit::Report::deserialize_from_str(&x).unwrap();
        assert_eq!((back.tests, back.failures, back.errors), (3, 1, 0));
        assert_eq!(back.test_suites.len(), 1, "{x}");
        let suite = &back.test_suites[0];
        assert_eq!(suite.name.as_str(), "simbench check");
        assert_eq!(suite.time, Some(Duration::from_secs(5)));
        let classes: Vec<&str> = suite
            .test_cases
            .iter()
            .map(|c| c.classname.as_ref().unwrap().as_str())
            .collect();
        assert_eq!(classes, ["smoke", "never-99", "h1"]);
        assert!(
            x.contains(
                "<failure message=\"1 of 2 failed\" type=\"expectation\">counts.x == 1</failure>"
            ),
            "{x}"
        );
        assert!(x.contains("<system-out>seed of h1</system-out>"), "{x}");
    }

    #[test]
    fn a_file_that_is_not_junit_is_named_in_the_error() {
        let e = merge("simbench", &[("notes.txt".into(), "hello".into())]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("notes.txt: not a JUnit XML report"),
            "{e}"
        );
    }
}
