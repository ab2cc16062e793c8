//! `sim::malloc`'s profiles change where glibc puts a large allocation:
//! what `mallinfo2` counts as mapped chunks. One test, because the counts
//! are the whole process's and the steps depend on their order.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use sim::malloc::{apply, Profile};

#[allow(unsafe_code)]
fn mapped_chunks() -> usize {
    // SAFETY: mallinfo2 takes no arguments and only reads malloc's own
    // statistics, under malloc's lock.
    unsafe { libc::mallinfo2() }.hblks
}

fn hold(n: usize, bytes: usize) -> Vec<Vec<u8>> {
    (0..n).map(|_| vec![1u8; bytes]).collect()
}

// glibc applies the mapping threshold when an arena must grow: what fits
// in the free top of the heap is served from there whatever its size. So
// the counts below are of many allocations, held, and bounded rather than
// exact.
#[test]
fn each_profile_puts_large_allocations_where_its_documentation_says() {
    // glibc's own threshold starts at 128 KiB: 1 MiB gets a mapping, 40 KiB
    // (a quinn receive batch's size) grows the heap.
    let before = mapped_chunks();
    let big = hold(4, 1 << 20);
    let small = hold(16, 40 << 10);
    assert_eq!(
        mapped_chunks(),
        before + 4,
        "glibc's default: 1 MiB mapped, 40 KiB not"
    );
    drop(big);

    // run: 40 KiB gets a mapping of its own (all but what the top held).
    assert!(apply(Profile::OneLargeWorld));
    let before = mapped_chunks();
    let batches = hold(64, 40 << 10);
    let mapped = mapped_chunks() - before;
    assert!(
        mapped >= 48,
        "OneLargeWorld maps 40 KiB: {mapped} of 64 mapped"
    );

    // sweep: even 1 MiB stays in the heap, to be reused by the next world.
    assert!(apply(Profile::ManyWorlds));
    let before = mapped_chunks();
    let big = hold(4, 1 << 20);
    assert_eq!(
        mapped_chunks(),
        before,
        "ManyWorlds keeps 1 MiB in the heap"
    );
    drop((big, small, batches));
}
