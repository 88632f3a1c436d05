//! Memory given back to the system once work is done.
//!
//! glibc's allocator returns freed memory only from the top of its heap; the pages of blocks freed
//! below a live one stay resident. After a 2,000-application backlog the idle daemon kept about
//! 29 MB, of which some 12 MB were free heap (heaptrack: 2.8 MB still allocated). The malloc
//! settings (`cli.rs`) keep attachment-sized buffers out of the heap; this gives back the rest:
//! every [`CHECK_EVERY`] the resident size is read, and glibc is asked to give its free pages back
//! (`malloc_trim`, in the `mailroom-trim` crate, the one call of the program that needs `unsafe`)
//! when the size is [`GROWTH`] above the size at start *and* either it has moved since the last
//! trim or work was done since and has stopped (the caller counts it: batches committed; none
//! since the previous check).
//!
//! Why: a trim in the middle of a backlog leaves a high size behind, and the heap at the end of
//! the backlog holds megabytes of free pages while the size may be lower than that (large buffers
//! are unmapped by themselves), or about the same; a rule "grown since the last trim" never fires
//! then (measured: 28 MB for good after the backlog), and "moved since the last trim" alone
//! missed the second case in one run of three (28.6 MB during the backlog's last trim, 28.6 MB for
//! good after it). "Work done since, and over" fires once after the work ends, whatever the size
//! did: not at every check while applications trickle in (each trim also drops the store's caches,
//! which the next message then rebuilds), and an idle daemon whose size stays flat is not trimmed
//! again and again for nothing. A busy daemon trims at most once per check; memory is back within
//! two checks of the end of the work.
//!
//! Before a trim the store is asked to drop its caches (SQLite's page cache, the prepared
//! statements): measured after 300 applications, the heap kept 1.8 MB more than at start, and
//! those caches were most of it.
//!
//! May: read `/proc/self/status`, ask the store to drop its caches, call the allocator. Nothing
//! else.

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

/// Whether to trim now: well above the size at start, and either not where the last trim left it
/// or after work done since the last trim that is now over (otherwise a trim would find nothing
/// new to give back).
fn worth_a_trim(now: u64, at_start: u64, after_last_trim: Option<u64>, work_done_and_over: bool) -> bool {
    let above_start = now >= at_start.saturating_add(GROWTH);
    let moved = after_last_trim.is_none_or(|after| now.abs_diff(after) >= GROWTH / 2);
    above_start && (moved || work_done_and_over)
}

/// The work counter as the checks saw it.
struct WorkSeen {
    at_last_trim: u64,
    at_last_check: u64,
}

impl WorkSeen {
    fn new(now: u64) -> WorkSeen {
        WorkSeen { at_last_trim: now, at_last_check: now }
    }

    /// Work was done since the last trim, and none since the previous check.
    fn done_and_over(&mut self, now: u64) -> bool {
        let over = now != self.at_last_trim && now == self.at_last_check;
        self.at_last_check = now;
        over
    }

    fn trimmed(&mut self, now: u64) {
        self.at_last_trim = now;
    }
}

/// Runs until `stop` turns true: trims after work, as described above, calling `release` (the
/// store's `Ledger::release_memory`) first. `work` counts the work done so far (any number that
/// changes when work was done). Without `/proc` (not Linux) it returns at once.
pub async fn give_back<R, W>(release: R, work: W, mut stop: watch::Receiver<bool>)
where
    R: Fn() + Clone + Send + 'static,
    W: Fn() -> u64,
{
    let Some(at_start) = resident_bytes() else { return };
    let mut after_last_trim = None;
    let mut seen = WorkSeen::new(work());
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let Some(now) = resident_bytes() else { return };
        let work_now = work();
        if !worth_a_trim(now, at_start, after_last_trim, seen.done_and_over(work_now)) {
            continue;
        }
        seen.trimmed(work_now);
        // It waits for the store's lock and walks the heap under the allocator's: not on the
        // runtime's threads.
        let release = release.clone();
        let trim = move || {
            release();
            mailroom_trim::trim()
        };
        let Ok(gave_back) = tokio::task::spawn_blocking(trim).await else { return };
        let after = resident_bytes().unwrap_or(now);
        after_last_trim = Some(after);
        tracing::debug!(
            before_kib = now / 1024,
            after_kib = after / 1024,
            gave_back,
            "free memory given back to the system"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_well_above_the_start() {
        let start = 14_000_000;
        assert!(!worth_a_trim(start, start, None, true));
        assert!(!worth_a_trim(start + GROWTH - 1, start, None, true));
        assert!(worth_a_trim(start + GROWTH, start, None, false));
    }

    #[test]
    fn trims_again_only_when_the_size_moved() {
        let start = 14_000_000;
        // Idle after a trim that left 18 MB: flat, so no trim every ten seconds.
        assert!(!worth_a_trim(18_000_000, start, Some(18_000_000), false));
        assert!(!worth_a_trim(18_000_000 + GROWTH / 2 - 1, start, Some(18_000_000), false));
        // Busy: it grew again.
        assert!(worth_a_trim(30_000_000, start, Some(18_000_000), false));
    }

    #[test]
    fn trims_after_a_backlog_that_ended_lower_than_its_last_trim() {
        // The case measured: the last trim during the backlog left 44 MB, the end left 28 MB of
        // which 12 were free heap. A "grown since" rule never trimmed here.
        let start = 14_000_000;
        assert!(worth_a_trim(28_000_000, start, Some(44_000_000), false));
    }

    #[test]
    fn trims_after_work_even_when_the_size_did_not_move() {
        // Measured once: the backlog's last trim left 28.6 MB and the end of the backlog too, its
        // heap full of free pages: flat, but work was done since that trim, and is over.
        let start = 14_000_000;
        assert!(worth_a_trim(28_600_000, start, Some(28_600_000), true));
        assert!(!worth_a_trim(28_600_000, start, Some(28_600_000), false));
    }

    #[test]
    fn work_counts_once_it_is_over() {
        let mut seen = WorkSeen::new(0);
        assert!(!seen.done_and_over(0), "no work yet");
        // Applications trickling in: work at every check, never over.
        assert!(!seen.done_and_over(3));
        assert!(!seen.done_and_over(5));
        // A quiet check: the work is over.
        assert!(seen.done_and_over(5));
        seen.trimmed(5);
        assert!(!seen.done_and_over(5), "trimmed since; nothing new");
        assert!(!seen.done_and_over(6));
        assert!(seen.done_and_over(6));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_its_own_resident_size() {
        let rss = resident_bytes().expect("VmRSS in /proc/self/status");
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
