//! "Did you mean" suggestions: an edit distance and a picker.

/// The optimal-string-alignment distance between `a` and `b`: insertions,
/// deletions, substitutions and swaps of two neighbouring characters each
/// cost 1. Compares characters, not bytes (`strsim::osa_distance`).
pub fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

/// The candidate closest to `input`, when it is close enough to be a likely
/// typo: a case-insensitive match, or at most a third of the longer word's
/// characters changed (at least one). Ties go to the earlier candidate.
pub fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lowered = input.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == input {
            continue;
        }
        let distance = if candidate.to_lowercase() == lowered {
            0
        } else {
            edit_distance(&lowered, &candidate.to_lowercase())
        };
        let longer = input.chars().count().max(candidate.chars().count());
        let limit = (longer / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// The joint between a complaint and the list of valid choices:
/// `"; did you mean \"x\"? "` for a close candidate, else `"; "`.
pub(crate) fn hint<'a, I>(input: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match did_you_mean(input, candidates) {
        Some(c) => format!("; did you mean {c:?}? "),
        None => "; ".to_owned(),
    }
}

/// Like [`hint`] but names the candidate in backticks, for keys.
pub(crate) fn key_hint<'a, I>(input: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    match did_you_mean(input, candidates) {
        Some(c) => format!("; did you mean `{c}`? "),
        None => "; ".to_owned(),
    }
}

/// A list of choices for a message: `a, b, c`, cut after `max` entries
/// with `... (N more)`.
pub(crate) fn choices<'a, I>(items: I, max: usize) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    let items: Vec<&str> = items.into_iter().collect();
    let mut out = items
        .iter()
        .take(max)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        out.push_str(&format!(", ... ({} more)", items.len() - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("partion", "partition"), 2);
        assert_eq!(edit_distance("dispacth", "dispatch"), 1);
        assert_eq!(edit_distance("half_open", "half-open"), 1);
        assert_eq!(edit_distance("héllo", "hello"), 1);
    }

    #[test]
    fn suggestions() {
        let kinds = ["block", "partition", "half-open", "latency"];
        assert_eq!(did_you_mean("partion", kinds), Some("partition"));
        assert_eq!(did_you_mean("Block", kinds), Some("block"));
        assert_eq!(did_you_mean("half_open", kinds), Some("half-open"));
        assert_eq!(did_you_mean("parsecs", kinds), None);
        assert_eq!(did_you_mean("x", kinds), None);
    }
}
