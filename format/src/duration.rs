//! Durations as scenario files write them: `"90s"`, `"5m"`, `"1h30m"`, `"250ms"`.
//!
//! A duration is one or more `<whole number><unit>` parts with no spaces,
//! units `h`, `m`, `s`, `ms`, largest first, each at most once. A clock
//! offset may also carry a sign (`"-2m"`, `"+30s"`).

use std::fmt;
use std::time::Duration;

/// The units a duration may use, largest first, with their length.
pub const DURATION_UNITS: &[(&str, Duration)] = &[
    ("h", Duration::from_secs(3600)),
    ("m", Duration::from_secs(60)),
    ("s", Duration::from_secs(1)),
    ("ms", Duration::from_millis(1)),
];

/// Why a duration string was refused; `Display` gives the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub problem: DurationProblem,
    /// A spelling that would have worked, when one is obvious.
    pub suggestion: Option<String>,
}

/// What is wrong with a duration string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationProblem {
    /// Not a sequence of `<number><unit>` parts.
    Syntax,
    /// A unit repeats or comes after a smaller one (`"1m1h"`).
    UnitOrder,
    /// Longer than a `Duration` holds.
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration {:?}: ", self.text)?;
        match self.problem {
            DurationProblem::Syntax => f.write_str(
                "expected a number followed by a unit, e.g. \"90s\", \"5m\", \"1h30m\" (units: ms, s, m, h)",
            )?,
            DurationProblem::UnitOrder => f.write_str(
                "units must go from the largest to the smallest, each at most once, e.g. \"1h30m\"",
            )?,
            DurationProblem::Overflow => f.write_str("it is too long to represent")?,
        }
        if let Some(s) = &self.suggestion {
            write!(f, "; did you mean {s:?}?")?;
        }
        Ok(())
    }
}

impl std::error::Error for DurationError {}

/// Parses `"90s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"0s"`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |problem| DurationError {
        text: text.to_owned(),
        problem,
        suggestion: None,
    };
    if text.is_empty() {
        return Err(fail(DurationProblem::Syntax));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    // Index into DURATION_UNITS of the last unit seen; the next must be smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let letters = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || letters == 0 {
            return Err(with_suggestion(fail(DurationProblem::Syntax)));
        }
        let number = &rest[..digits];
        let unit = &rest[digits..digits + letters];
        rest = &rest[digits + letters..];
        let Some(index) = DURATION_UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(with_suggestion(fail(DurationProblem::Syntax)));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(fail(DurationProblem::UnitOrder));
        }
        last_unit = Some(index);
        let count: u32 = number
            .parse()
            .map_err(|_| fail(DurationProblem::Overflow))?;
        let part = DURATION_UNITS[index]
            .1
            .checked_mul(count)
            .ok_or_else(|| fail(DurationProblem::Overflow))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| fail(DurationProblem::Overflow))?;
    }
    Ok(total)
}

/// A duration with a sign, for clock offsets: `"-2m"` is two minutes behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignedDuration {
    /// True when the offset is behind (negative).
    pub negative: bool,
    /// The size of the offset.
    pub magnitude: Duration,
}

impl fmt::Display for SignedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative && !self.magnitude.is_zero() {
            f.write_str("-")?;
        }
        f.write_str(&format_duration(self.magnitude))
    }
}

/// Parses a duration with an optional leading `+` or `-`.
pub fn parse_signed_duration(text: &str) -> Result<SignedDuration, DurationError> {
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    match parse_duration(body) {
        Ok(magnitude) => Ok(SignedDuration {
            negative,
            magnitude,
        }),
        Err(mut e) => {
            e.text = text.to_owned();
            if let Some(s) = &mut e.suggestion {
                if text.len() > body.len() {
                    s.insert_str(0, &text[..1]);
                }
            }
            Err(e)
        }
    }
}

/// Writes a duration the way [`parse_duration`] reads it: `"1h30m"`,
/// `"250ms"`, `"0s"`. Parts below a millisecond are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut out = String::new();
    let mut left = d.as_millis();
    for (unit, len) in DURATION_UNITS {
        let len = len.as_millis();
        let count = left / len;
        left %= len;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Parses a CPU cost: any [`parse_duration`] form, or whole microseconds
/// (`"400us"`), since the work of one connection takes less than the
/// clock's millisecond.
pub fn parse_cost(text: &str) -> Result<Duration, DurationError> {
    if let Some(n) = text.strip_suffix("us") {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(us) = n.parse::<u64>() {
                return Ok(Duration::from_micros(us));
            }
        }
    }
    parse_duration(text)
}

/// Writes a CPU cost the way [`parse_cost`] reads it (microseconds when it
/// is not a whole number of milliseconds).
pub fn format_cost(d: Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        format_duration(d)
    } else {
        format!("{}us", d.as_micros())
    }
}

/// Adds an obvious fix for common near-misses: `"5 min"`, `"30 seconds"`,
/// `"90"` (no unit), `"2M"`.
fn with_suggestion(mut e: DurationError) -> DurationError {
    let compact: String = e.text.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = compact.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return e;
    }
    let (number, word) = compact.split_at(digits);
    let unit = match word.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "ms" | "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => "ms",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        _ => return e,
    };
    let candidate = format!("{number}{unit}");
    if parse_duration(&candidate).is_ok() && candidate != e.text {
        e.suggestion = Some(candidate);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn costs_take_microseconds_and_every_duration_form() {
        assert_eq!(parse_cost("400us").unwrap(), Duration::from_micros(400));
        assert_eq!(parse_cost("2ms").unwrap(), Duration::from_millis(2));
        assert_eq!(parse_cost("1s").unwrap(), Duration::from_secs(1));
        assert!(parse_cost("us").is_err());
        assert!(parse_cost("-5us").is_err());
        assert!(parse_cost("1.5us").is_err());
        for d in [
            Duration::from_micros(1_250),
            Duration::from_millis(3),
            Duration::from_micros(7),
        ] {
            assert_eq!(parse_cost(&format_cost(d)).unwrap(), d);
        }
        assert_eq!(format_cost(Duration::from_micros(1_250)), "1250us");
    }

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("10ms"), Duration::from_millis(10));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "5",
            "s",
            "5 parsecs",
            "5parsecs",
            "1.5s",
            "-5s",
            "5s ",
            " 5s",
            "5S",
            "1h 30m",
            "5us",
            "1d",
            "ms",
            "5m5",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e.problem, DurationProblem::Syntax, "{bad:?}");
        }
        for bad in ["1m1h", "5s5s", "1s1m"] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e.problem, DurationProblem::UnitOrder, "{bad:?}");
        }
        for bad in ["99999999999999999999s", "4294967295h4294967295h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_duration("18446744073709551615h").unwrap_err().problem,
            DurationProblem::Overflow
        );
    }

    #[test]
    fn message_and_suggestions() {
        let e = parse_duration("5 parsecs").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid duration \"5 parsecs\": expected a number followed by a unit, \
             e.g. \"90s\", \"5m\", \"1h30m\" (units: ms, s, m, h)"
        );
        let hint = |t: &str| parse_duration(t).unwrap_err().suggestion;
        assert_eq!(hint("5 min"), Some("5m".into()));
        assert_eq!(hint("30 seconds"), Some("30s".into()));
        assert_eq!(hint("90"), Some("90s".into()));
        assert_eq!(hint("2M"), Some("2m".into()));
        assert_eq!(hint("5 parsecs"), None);
        assert!(parse_duration("5 min")
            .unwrap_err()
            .to_string()
            .ends_with("; did you mean \"5m\"?"));
    }

    #[test]
    fn format_round_trips() {
        for text in ["90s", "5m", "1h30m", "250ms", "0s", "1h2m3s4ms", "26h"] {
            let d = ok(text);
            assert_eq!(ok(&format_duration(d)), d, "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(5_400_000)), "1h30m");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn signed() {
        let s = parse_signed_duration("-2m").unwrap();
        assert!(s.negative);
        assert_eq!(s.magnitude, Duration::from_secs(120));
        assert_eq!(s.to_string(), "-2m");
        assert!(!parse_signed_duration("+30s").unwrap().negative);
        assert!(!parse_signed_duration("30s").unwrap().negative);
        let e = parse_signed_duration("-2 min").unwrap_err();
        assert_eq!(e.text, "-2 min");
        assert_eq!(e.suggestion, Some("-2m".into()));
        assert!(parse_signed_duration("-").is_err());
        assert!(parse_signed_duration("--2m").is_err());
    }
}
