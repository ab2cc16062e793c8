//! glibc malloc's parameters, chosen for the shape of the command's work.
//!
//! The one place the workspace allows `unsafe`: a call to `mallopt(3)`,
//! which only sets two numbers malloc reads on later calls. Measured with
//! the same settings as environment variables (`MALLOC_MMAP_THRESHOLD_`,
//! `MALLOC_TRIM_THRESHOLD_`); the figures are in docs/observation.md, "The
//! allocator's parameters".
//!
//! - [`Profile::OneLargeWorld`] (`run`, and `bench`'s runs, each a `run`):
//!   an allocation of 32 KiB or more that the heap's free top cannot hold
//!   gets a mapping of its own instead of growing the heap. Each
//!   agent's quinn endpoint holds a receive batch of 32 datagrams (47 KB)
//!   that a simulated link fills one datagram at a time; in a mapping of its
//!   own its unwritten pages are never backed, where in the heap they sit
//!   between live data and are. 10,000 agents: 4,081 instead of 4,220 MiB.
//! - [`Profile::ManyWorlds`] (`sweep`): no trimming and no
//!   mappings below 32 MiB. A world on a worker thread frees what it built
//!   when it ends; glibc then hands the free top of that thread's arena back
//!   to the kernel (16.8 MB of `madvise` a world in a sweep of
//!   `udp-4433-blocked`) and the next world faults every page of it in
//!   again: system time as large as the wall time, and a sweep of 100 seeds
//!   that took 0.43, 0.9 or 2.9 s from one run to the next. Kept, the pages
//!   are reused.
//!
//! Other platforms and allocators: nothing (their defaults). Nor when the
//! environment tunes glibc itself (`GLIBC_TUNABLES`, or a `MALLOC_*_`
//! variable such as `MALLOC_MMAP_THRESHOLD_`): what a person set wins, and
//! one build can be measured both ways.

/// What the process is about to do, as far as its allocator cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// One world, possibly a large fleet, run once: memory first.
    OneLargeWorld,
    /// Many small worlds one after another on a few threads: no memory
    /// handed back between them.
    ManyWorlds,
    /// glibc's defaults.
    Default,
}

/// `M_MMAP_THRESHOLD` of [`Profile::OneLargeWorld`].
pub const ONE_WORLD_MMAP_THRESHOLD: i32 = 32 << 10;

/// `M_MMAP_THRESHOLD` of [`Profile::ManyWorlds`]: glibc's largest
/// (`DEFAULT_MMAP_THRESHOLD_MAX` on 64 bits).
pub const MANY_WORLDS_MMAP_THRESHOLD: i32 = 32 << 20;

/// `M_TRIM_THRESHOLD` of [`Profile::ManyWorlds`].
pub const MANY_WORLDS_TRIM_THRESHOLD: i32 = 256 << 20;

/// Sets malloc's parameters for `profile` ([`apply`]), unless the
/// environment tunes malloc itself ([`environment_tunes_malloc`]). Call
/// once, before the work starts (what was allocated before keeps its place).
pub fn tune(profile: Profile) -> bool {
    if environment_tunes_malloc(std::env::vars_os().map(|(k, _)| k)) {
        return false;
    }
    apply(profile)
}

/// Whether one of these environment variable names tunes glibc's malloc:
/// `GLIBC_TUNABLES`, or `MALLOC_` ... `_` (glibc's own spelling, such as
/// `MALLOC_TRIM_THRESHOLD_`).
pub fn environment_tunes_malloc(names: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    names.into_iter().any(|k| {
        k.to_str().is_some_and(|k| {
            k == "GLIBC_TUNABLES" || (k.starts_with("MALLOC_") && k.ends_with('_') && k.len() > 8)
        })
    })
}

/// Sets malloc's parameters for `profile`, whatever the environment says.
/// Returns whether `mallopt` reported success for each (`false` for
/// [`Profile::Default`], and on platforms without glibc).
pub fn apply(profile: Profile) -> bool {
    let settings: &[(i32, i32)] = match profile {
        Profile::OneLargeWorld => &[(M_MMAP_THRESHOLD, ONE_WORLD_MMAP_THRESHOLD)],
        Profile::ManyWorlds => &[
            (M_MMAP_THRESHOLD, MANY_WORLDS_MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, MANY_WORLDS_TRIM_THRESHOLD),
        ],
        Profile::Default => &[],
    };
    !settings.is_empty() && settings.iter().all(|&(param, value)| set(param, value))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use libc::{M_MMAP_THRESHOLD, M_TRIM_THRESHOLD};

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const M_MMAP_THRESHOLD: i32 = -3;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const M_TRIM_THRESHOLD: i32 = -1;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(param: i32, value: i32) -> bool {
    // SAFETY: mallopt takes two integers and changes only the numbers
    // malloc consults on its next calls, under malloc's own lock, so it is
    // sound with other threads allocating. The values are this module's
    // constants, within glibc's documented ranges (glibc 2.36 reports
    // success even for an out-of-range threshold, so the result proves
    // little; sim/tests/malloc.rs checks the effect instead).
    unsafe { libc::mallopt(param, value) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_param: i32, _value: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_changes_nothing() {
        assert!(!apply(Profile::Default));
    }

    #[test]
    fn a_person_s_malloc_settings_are_left_alone() {
        let names = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(environment_tunes_malloc(names(&[
            "PATH",
            "MALLOC_MMAP_THRESHOLD_"
        ])));
        assert!(environment_tunes_malloc(names(&["GLIBC_TUNABLES"])));
        assert!(!environment_tunes_malloc(names(&[
            "PATH", "MALLOC_", "MALLOCX"
        ])));
        assert!(!environment_tunes_malloc(names(&["HOME", "MALLOC_CONF"])));
    }
}
