//! The table style and the time formats every report uses.

use std::time::Duration;

use comfy_table::modifiers::UTF8_ROUND_CORNERS;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

/// A table in the house style: rounded UTF-8 borders, no row separators.
/// It wraps to the terminal's width when stdout is a terminal and never
/// otherwise, so piped output and snapshots do not depend on the terminal.
pub fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .apply_modifier(UTF8_ROUND_CORNERS)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

/// A simulated time in microseconds as `m:ss.mmm` (`1:10.012`), or
/// `h:mm:ss.mmm` from one hour on. Sub-millisecond digits are cut.
pub fn sim_time(t_us: u64) -> String {
    let ms = t_us / 1_000;
    let (h, m, s, milli) = (
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000,
    );
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{milli:03}")
    } else {
        format!("{m}:{s:02}.{milli:03}")
    }
}

/// A wall-clock duration for people: `0.84 s`, `12.3 s`, `2m05s`.
pub fn wall_time(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.2} s")
    } else if secs < 120.0 {
        format!("{secs:.1} s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// `n` followed by `one` or `many`: `1 seed`, `3 seeds`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_times() {
        assert_eq!(sim_time(0), "0:00.000");
        assert_eq!(sim_time(70_012_345), "1:10.012");
        assert_eq!(sim_time(180_000_000), "3:00.000");
        assert_eq!(sim_time(3_723_004_000), "1:02:03.004");
    }

    #[test]
    fn wall_times() {
        assert_eq!(wall_time(Duration::from_millis(840)), "0.84 s");
        assert_eq!(wall_time(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(wall_time(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn counts() {
        assert_eq!(count(1, "seed", "seeds"), "1 seed");
        assert_eq!(count(0, "seed", "seeds"), "0 seeds");
    }
}
