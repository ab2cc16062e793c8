//! Scoring the hypothesis engine against the truth: a confusion table per
//! view.
//!
//! Sans-IO: the input is outcome documents (report.json read as a typed
//! [`records::outcome::Outcome`]), the output counts and a plain-text rendering. For
//! every agent of every outcome (one *case*), every view (`server`, `full`)
//! and every hypothesis H1..H7:
//!
//! | | in `diagnosis.truth` | not in truth |
//! |---|---|---|
//! | in `diagnosis.<view>.supported` | true positive | false positive |
//! | not supported | false negative | true negative |
//!
//! A case is an *exact match* in a view when its supported set equals its
//! truth set (as sets: order and duplicates do not matter).
//!
//! An agent without a `diagnosis` key (the engine never saw it, e.g. it never
//! reached the command channel) counts as supported = [] in both views and
//! truth = []; a missing view or `truth` inside a present `diagnosis`
//! counts as absent the same way. A document whose entries have the wrong
//! type does not read ([`records::outcome::Outcome::from_value`] says where).
//!
//! The rendering uses comfy-table with content arrangement disabled and no
//! tty styling, so it does not depend on the terminal.

use std::collections::BTreeSet;
use std::fmt;

use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use records::outcome::{DiagnosisDoc, Outcome};

use crate::View;

/// The hypotheses of incident 2, in table order.
pub const HYPOTHESES: [&str; 7] = ["H1", "H2", "H3", "H4", "H5", "H6", "H7"];

/// Every incident's hypotheses, one table each: `(incident, ids)`.
pub const INCIDENTS: [(&str, &[&str]); 5] = [
    ("1 enrollment-tunnel", &crate::INCIDENT1),
    ("2 command-delivery", &HYPOTHESES),
    ("3 managed-resilience", &crate::INCIDENT3),
    ("4 wake-checkin", &crate::INCIDENT4),
    ("5 agent-upgrade", &crate::INCIDENT5),
];

/// The views scored, in rendering order.
pub const VIEWS: [View; 2] = [View::Server, View::Full];

/// The key of a view in `agents.<name>.diagnosis`.
pub fn view_key(view: View) -> &'static str {
    match view {
        View::Server => "server",
        View::Full => "full",
    }
}

/// One agent of one run, as its outcome document tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Case {
    /// The outcome's `scenario` (empty when absent).
    pub scenario: String,
    /// The outcome's `seed`.
    pub seed: Option<u64>,
    /// The agent's name.
    pub agent: String,
    /// `diagnosis.truth`: what the run injected.
    pub truth: BTreeSet<String>,
    /// `diagnosis.server.supported`.
    pub server: BTreeSet<String>,
    /// `diagnosis.full.supported`.
    pub full: BTreeSet<String>,
}

impl Case {
    /// The hypotheses a view supports.
    pub fn supported(&self, view: View) -> &BTreeSet<String> {
        match view {
            View::Server => &self.server,
            View::Full => &self.full,
        }
    }

    /// The view supports exactly the truth.
    pub fn exact(&self, view: View) -> bool {
        self.supported(view) == &self.truth
    }

    /// Hypotheses in the truth that the view does not support.
    pub fn false_negatives(&self, view: View) -> Vec<&str> {
        self.truth
            .difference(self.supported(view))
            .map(String::as_str)
            .collect()
    }

    /// Hypotheses the view supports that are not in the truth.
    pub fn false_positives(&self, view: View) -> Vec<&str> {
        self.supported(view)
            .difference(&self.truth)
            .map(String::as_str)
            .collect()
    }
}

/// Every agent of an outcome document, sorted by name.
pub fn cases(outcome: &Outcome) -> Vec<Case> {
    let ids = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let supported =
        |d: &Option<DiagnosisDoc>| d.as_ref().map(|d| ids(&d.supported)).unwrap_or_default();
    // `agents` is a sorted map: the cases come back sorted by name.
    outcome
        .agents
        .iter()
        .map(|(name, a)| Case {
            scenario: outcome.scenario.clone(),
            seed: Some(outcome.seed),
            agent: name.clone(),
            truth: ids(&a.diagnosis.truth),
            server: supported(&a.diagnosis.server),
            full: supported(&a.diagnosis.full),
        })
        .collect()
}

/// One hypothesis's confusion counts in one view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Supported and in the truth.
    pub tp: u64,
    /// Supported, not in the truth.
    pub fp: u64,
    /// In the truth, not supported.
    pub fn_: u64,
    /// Neither.
    pub tn: u64,
}

impl Counts {
    /// TP / (TP + FP); `None` when nothing was supported.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    /// TP / (TP + FN); `None` when nothing was true.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    fn add(&mut self, o: &Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
        self.tn += o.tn;
    }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    // Counts stay far below 2^53: the conversion is exact.
    (d > 0).then(|| n as f64 / d as f64)
}

fn show(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"))
}

/// One view's confusion table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewScore {
    /// The hypotheses scored, in table order.
    pub hypotheses: Vec<&'static str>,
    /// Per hypothesis, in `hypotheses` order.
    pub counts: Vec<Counts>,
    /// Cases scored.
    pub cases: u64,
    /// Cases whose supported set equals their truth.
    pub exact: u64,
}

impl Default for ViewScore {
    fn default() -> Self {
        Self::of(&HYPOTHESES)
    }
}

impl ViewScore {
    /// An empty table of `hypotheses`.
    pub fn of(hypotheses: &[&'static str]) -> Self {
        ViewScore {
            hypotheses: hypotheses.to_vec(),
            counts: vec![Counts::default(); hypotheses.len()],
            cases: 0,
            exact: 0,
        }
    }

    /// The counts of one hypothesis (`"H1"`, `"I1-udp-blocked"`, ...).
    pub fn get(&self, hypothesis: &str) -> Option<&Counts> {
        self.hypotheses
            .iter()
            .position(|h| *h == hypothesis)
            .map(|i| &self.counts[i])
    }

    /// `set` restricted to this table's hypotheses.
    pub fn restrict(&self, set: &BTreeSet<String>) -> BTreeSet<String> {
        set.iter()
            .filter(|h| self.hypotheses.contains(&h.as_str()))
            .cloned()
            .collect()
    }

    fn add_case(&mut self, supported: &BTreeSet<String>, truth: &BTreeSet<String>) {
        let (supported, truth) = (&self.restrict(supported), &self.restrict(truth));
        for (h, c) in self.hypotheses.iter().zip(self.counts.iter_mut()) {
            match (supported.contains(*h), truth.contains(*h)) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        self.cases += 1;
        self.exact += u64::from(supported == truth);
    }

    fn merge(&mut self, o: &ViewScore) {
        for (c, oc) in self.counts.iter_mut().zip(o.counts.iter()) {
            c.add(oc);
        }
        self.cases += o.cases;
        self.exact += o.exact;
    }

    /// The table: one row per hypothesis, columns TP FP FN TN precision
    /// recall.
    pub fn table(&self) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::ASCII_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Disabled)
            .force_no_tty()
            .set_header(["", "TP", "FP", "FN", "TN", "precision", "recall"]);
        for (h, c) in self.hypotheses.iter().zip(self.counts.iter()) {
            t.add_row([
                (*h).to_owned(),
                c.tp.to_string(),
                c.fp.to_string(),
                c.fn_.to_string(),
                c.tn.to_string(),
                show(c.precision()),
                show(c.recall()),
            ]);
        }
        for i in 1..7 {
            if let Some(col) = t.column_mut(i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        t
    }
}

/// Confusion tables for both views over any number of outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Score {
    /// The server point only.
    pub server: ViewScore,
    /// Every point.
    pub full: ViewScore,
}

impl Score {
    /// An empty score of incident 2's H1..H7.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty score of `hypotheses` (one incident's).
    pub fn of_hypotheses(hypotheses: &[&'static str]) -> Self {
        Score {
            server: ViewScore::of(hypotheses),
            full: ViewScore::of(hypotheses),
        }
    }

    /// Scores every agent of every outcome.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Self {
        let mut s = Self::new();
        for o in outcomes {
            s.add_outcome(o);
        }
        s
    }

    /// One view's table.
    pub fn view(&self, view: View) -> &ViewScore {
        match view {
            View::Server => &self.server,
            View::Full => &self.full,
        }
    }

    /// Adds one case in both views.
    pub fn add_case(&mut self, c: &Case) {
        self.server.add_case(&c.server, &c.truth);
        self.full.add_case(&c.full, &c.truth);
    }

    /// Adds every agent of an outcome; returns its cases.
    pub fn add_outcome(&mut self, outcome: &Outcome) -> Vec<Case> {
        let cs = cases(outcome);
        for c in &cs {
            self.add_case(c);
        }
        cs
    }

    /// Adds another score (e.g. one thread's share).
    pub fn merge(&mut self, o: &Score) {
        self.server.merge(&o.server);
        self.full.merge(&o.full);
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, view) in VIEWS.iter().enumerate() {
            let v = self.view(*view);
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(
                f,
                "{} view: {} agent-runs, exact matches {}/{}",
                view_key(*view),
                v.cases,
                v.exact,
                v.cases
            )?;
            writeln!(f, "{}", v.table())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome() -> Outcome {
        Outcome::from_value(&json!({
            "scenario": "hand-built",
            "seed": 3,
            "agents": {
                // Listed out of order: cases come back sorted.
                "d-bare": { "online": true },
                "a-exact": { "diagnosis": {
                    "truth": ["H3", "H6"],
                    "server": { "supported": ["H2", "H3", "H6"] },
                    "full": { "supported": ["H6", "H3"] },
                }},
                "b-missed": { "diagnosis": {
                    "truth": ["H5"],
                    "server": { "supported": [] },
                    "full": { "supported": ["H1"] },
                }},
                "c-healthy": { "diagnosis": {
                    "truth": [],
                    "server": { "supported": [] },
                    "full": { "supported": [] },
                }},
            }
        }))
        .expect("a partial document reads")
    }

    fn c(tp: u64, fp: u64, fn_: u64, tn: u64) -> Counts {
        Counts { tp, fp, fn_, tn }
    }

    #[test]
    fn cases_read_every_agent_sorted_and_a_missing_diagnosis_as_empty() {
        let cs = cases(&outcome());
        let names: Vec<_> = cs.iter().map(|c| c.agent.as_str()).collect();
        assert_eq!(names, ["a-exact", "b-missed", "c-healthy", "d-bare"]);
        assert!(cs
            .iter()
            .all(|c| c.scenario == "hand-built" && c.seed == Some(3)));
        let bare = &cs[3];
        assert!(bare.truth.is_empty() && bare.server.is_empty() && bare.full.is_empty());
        assert!(bare.exact(View::Server) && bare.exact(View::Full));
        let a = &cs[0];
        assert!(!a.exact(View::Server), "H2 is extra in the server view");
        assert!(a.exact(View::Full), "order does not matter");
        assert_eq!(a.false_positives(View::Server), ["H2"]);
        assert_eq!(cs[1].false_negatives(View::Full), ["H5"]);
        assert_eq!(cs[1].false_positives(View::Full), ["H1"]);
    }

    #[test]
    fn counts_per_hypothesis_and_view() {
        let s = Score::of([&outcome()]);
        for v in VIEWS {
            assert_eq!(s.view(v).cases, 4);
        }
        // Server: a-exact H2 FP, H3/H6 TP; b-missed H5 FN; the rest TN.
        let sv = &s.server;
        assert_eq!(sv.get("H1"), Some(&c(0, 0, 0, 4)));
        assert_eq!(sv.get("H2"), Some(&c(0, 1, 0, 3)));
        assert_eq!(sv.get("H3"), Some(&c(1, 0, 0, 3)));
        assert_eq!(sv.get("H4"), Some(&c(0, 0, 0, 4)));
        assert_eq!(sv.get("H5"), Some(&c(0, 0, 1, 3)));
        assert_eq!(sv.get("H6"), Some(&c(1, 0, 0, 3)));
        assert_eq!(sv.get("H7"), Some(&c(0, 0, 0, 4)));
        assert_eq!(sv.exact, 2, "c-healthy and d-bare");
        // Full: b-missed supports H1 instead of H5.
        let fv = &s.full;
        assert_eq!(fv.get("H1"), Some(&c(0, 1, 0, 3)));
        assert_eq!(fv.get("H2"), Some(&c(0, 0, 0, 4)));
        assert_eq!(fv.get("H5"), Some(&c(0, 0, 1, 3)));
        assert_eq!(fv.exact, 3);
        assert_eq!(fv.get("H8"), None);
        for v in VIEWS {
            for k in &s.view(v).counts {
                assert_eq!(k.tp + k.fp + k.fn_ + k.tn, 4, "every case once per row");
            }
        }
    }

    #[test]
    fn precision_and_recall_are_undefined_without_a_denominator() {
        assert_eq!(c(0, 0, 0, 5).precision(), None);
        assert_eq!(c(0, 0, 0, 5).recall(), None);
        assert_eq!(c(3, 1, 0, 0).precision(), Some(0.75));
        assert_eq!(c(1, 0, 3, 0).recall(), Some(0.25));
        assert_eq!(c(0, 2, 2, 0).precision(), Some(0.0));
    }

    #[test]
    fn merging_shares_equals_scoring_at_once() {
        let mut other = outcome();
        other.seed = 4;
        other.agents.get_mut("b-missed").unwrap().diagnosis.full = Some(DiagnosisDoc {
            supported: vec!["H5".into()],
            ..DiagnosisDoc::default()
        });
        let whole = Score::of([&outcome(), &other]);
        let mut a = Score::of([&outcome()]);
        a.merge(&Score::of([&other]));
        assert_eq!(a, whole);
        assert_eq!(whole.full.exact, 3 + 4);
        assert_eq!(whole.full.get("H5"), Some(&c(1, 0, 1, 6)));
    }

    #[test]
    fn an_empty_outcome_scores_nothing_and_an_odd_one_does_not_read() {
        let empty = Outcome::from_value(&json!({})).unwrap();
        assert_eq!(Score::of([&empty]), Score::new());
        let bare = Outcome::from_value(&json!({"agents": {"x": {}}})).unwrap();
        let cs = cases(&bare);
        assert!(cs[0].truth.is_empty() && cs[0].server.is_empty() && cs[0].full.is_empty());
        assert_eq!(cs[0].scenario, "");
        // A typed document refuses what is not one, naming what is wrong,
        // instead of scoring it as empty.
        let odd = json!({"agents": {"x": {"diagnosis": {
            "truth": ["H7", 7, null],
        }}}});
        let e = Outcome::from_value(&odd).unwrap_err().to_string();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn renders_both_views_deterministically() {
        let s = Score::of([&outcome()]);
        let text = s.to_string();
        assert_eq!(text, Score::of([&outcome()]).to_string());
        let expected = "\
server view: 4 agent-runs, exact matches 2/4
+----+----+----+----+----+-----------+--------+
|    | TP | FP | FN | TN | precision | recall |
+=============================================+
| H1 |  0 |  0 |  0 |  4 |         - |      - |
| H2 |  0 |  1 |  0 |  3 |     0.000 |      - |
| H3 |  1 |  0 |  0 |  3 |     1.000 |  1.000 |
| H4 |  0 |  0 |  0 |  4 |         - |      - |
| H5 |  0 |  0 |  1 |  3 |         - |  0.000 |
| H6 |  1 |  0 |  0 |  3 |     1.000 |  1.000 |
| H7 |  0 |  0 |  0 |  4 |         - |      - |
+----+----+----+----+----+-----------+--------+

full view: 4 agent-runs, exact matches 3/4
+----+----+----+----+----+-----------+--------+
|    | TP | FP | FN | TN | precision | recall |
+=============================================+
| H1 |  0 |  1 |  0 |  3 |     0.000 |      - |
| H2 |  0 |  0 |  0 |  4 |         - |      - |
| H3 |  1 |  0 |  0 |  3 |     1.000 |  1.000 |
| H4 |  0 |  0 |  0 |  4 |         - |      - |
| H5 |  0 |  0 |  1 |  3 |         - |  0.000 |
| H6 |  1 |  0 |  0 |  3 |     1.000 |  1.000 |
| H7 |  0 |  0 |  0 |  4 |         - |      - |
+----+----+----+----+----+-----------+--------+
";
        assert_eq!(text, expected, "rendered:\n{text}");
    }
}
