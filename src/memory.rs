//! Memory given back to the system once work is done.
//!
//! glibc's allocator returns freed memory only from the top of its heap; the pages of blocks freed
//! below a live one stay resident. After a 2,000-application backlog the idle daemon kept about
//! 29 MB, of which some 12 MB were free heap (heaptrack: 2.8 MB still allocated). The malloc
//! settings (`cli.rs`) keep attachment-sized buffers out of the heap; this gives back the rest:
//! every [`CHECK_EVERY`] the resident size is read, and when it has grown by [`GROWTH`] since the
//! last trim, glibc is asked to give its free pages back (`malloc_trim`, in the `mailroom-trim`
//! crate, the one call of the program that needs `unsafe`). An idle daemon never trims (its size
//! stays flat); a backlog trims at most once per check; memory is back within one check of the
//! end of the work.
//!
//! May: read `/proc/self/status`, call the allocator. Nothing else.

use std::time::Duration;

use tokio::sync::watch;

/// How often the resident size is read: a file read, nothing more.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Growth of the resident size since the last trim that is worth a trim.
pub const GROWTH: u64 = 2 * 1024 * 1024;

/// The process's resident size in bytes (`VmRSS`), when the system says.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Whether the resident size grew enough since the last trim to trim again.
fn worth_a_trim(now: u64, after_last_trim: u64) -> bool {
    now >= after_last_trim.saturating_add(GROWTH)
}

/// Runs until `stop` turns true: trims after work, as described above. Without `/proc` (not
/// Linux) it returns at once.
pub async fn give_back(mut stop: watch::Receiver<bool>) {
    let Some(mut after_last_trim) = resident_bytes() else { return };
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let Some(now) = resident_bytes() else { return };
        if !worth_a_trim(now, after_last_trim) {
            continue;
        }
        // It walks the heap under the allocator's lock: not on the runtime's threads.
        let Ok(gave_back) = tokio::task::spawn_blocking(mailroom_trim::trim).await else { return };
        after_last_trim = resident_bytes().unwrap_or(now);
        tracing::debug!(
            before_kib = now / 1024,
            after_kib = after_last_trim / 1024,
            gave_back,
            "free memory given back to the system"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_growth() {
        let base = 15_000_000;
        assert!(!worth_a_trim(base, base));
        assert!(!worth_a_trim(base + GROWTH - 1, base));
        assert!(worth_a_trim(base + GROWTH, base));
        // Smaller than after the last trim (memory freed by itself): nothing to do.
        assert!(!worth_a_trim(base - 5_000_000, base));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_its_own_resident_size() {
        let rss = resident_bytes().expect("VmRSS in /proc/self/status");
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
