//! glibc's `malloc_trim`, behind a safe function.
//!
//! mailroom's own crate forbids `unsafe` code. After a backlog, glibc's allocator keeps the
//! pages of freed blocks that lie below live ones (fragmentation, not data), and only
//! `malloc_trim` gives them back; calling it from Rust needs `unsafe`. This crate is that one call,
//! kept apart so the exception is one line that can be read in full.

/// Asks glibc to give the free pages of every arena back to the system (`malloc_trim(0)`).
/// Returns whether it gave anything back. Elsewhere than on glibc it does nothing and returns
/// false. It walks the whole heap and holds the allocator's locks meanwhile: call it when the
/// program is quiet, and from a thread that may block.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition; glibc serializes it with
    // every other allocator call.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Asks glibc to give free pages back; not on glibc here, so it does nothing.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_blocks_below_a_live_one_are_given_back() {
        // Many small blocks (below the mmap threshold, so they are in the heap), then one kept
        // above them: freeing the rest cannot shrink the heap from its top, only a trim helps.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 4000]).collect();
        let keep = vec![1u8; 100];
        drop(blocks);
        let gave_back = super::trim();
        assert_eq!(keep[0], 1);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(gave_back, "16 MB freed below a live block: glibc should give pages back");
        }
    }
}
