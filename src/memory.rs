//! Memory given back to the system once work is done.
//!
//! glibc's allocator returns freed memory only from the top of its heap; the pages of blocks freed
//! below a live one stay resident. After a 2,000-application backlog the idle daemon kept about
//! 29 MB, of which some 12 MB were free heap (heaptrack: 2.8 MB still allocated). The malloc
//! settings (`cli.rs`) keep attachment-sized buffers out of the heap; this gives back the rest:
//! every [`CHECK_EVERY`] the resident size is read, and glibc is asked to give its free pages back
//! (`malloc_trim`, in the `mailroom-trim` crate, the one call of the program that needs `unsafe`):
//!
//! - after work (the caller counts it: batches committed, acknowledgements sent), at the first
//!   check with none since the previous one (the work is over), and once more at the next quiet
//!   check (it has settled), whenever the size is above the size at start ([`AFTER_WORK`]);
//! - otherwise, busy or idle, when the size is [`GROWTH`] above the size at start and has moved
//!   since the last trim.
//!
//! Why: a trim in the middle of a backlog leaves a high size behind, and the heap at the end of
//! the backlog holds megabytes of free pages while the size may be lower than that (large buffers
//! are unmapped by themselves), or about the same; a rule "grown since the last trim" never fires
//! then (measured: 28 MB for good after the backlog), and "moved since the last trim" alone
//! missed the second case in one run of three (28.6 MB during the backlog's last trim, 28.6 MB for
//! good after it). "Work done since, and over" fires once after the work ends, whatever the size
//! did: not at every check while applications trickle in (each trim also drops the store's caches,
//! which the next message then rebuilds), and an idle daemon whose size stays flat is not trimmed
//! again and again for nothing. The acknowledgements count as work because they go on for seconds
//! after a backlog's last commit: a trim while they were sent left their garbage behind (16,260 kB
//! for good in one run, 15,556 kB in the next). The settling trim gives back what the work freed
//! later: the blocking threads and the pooled SMTP connection go 10 s after their last use.
//!
//! Before a trim the store is asked to drop its caches (SQLite's page cache, the prepared
//! statements): measured after 300 applications, the heap kept 1.8 MB more than at start, and
//! those caches were most of it. So are the acknowledgements' compiled templates (with the
//! digest's, which are dropped after each digest, about 0.6 MB; compiled again at the next use).
//!
//! May: read `/proc/self/status`, ask the store and the replier to drop their caches, call the allocator. Nothing
//! else.

use std::time::Duration;

use tokio::sync::watch;

/// How often the resident size is read: a file read, nothing more.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Growth of the resident size since the last trim that is worth a trim.
pub const GROWTH: u64 = 2 * 1024 * 1024;
/// After work, what above the size at start is worth a trim.
pub const AFTER_WORK: u64 = 256 * 1024;

/// The process's resident size in bytes (`VmRSS`), when the system says.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// What the work counter did, as the checks saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Nothing since the last trim (or ever).
    None,
    /// Done since the last trim, and still going (some since the previous check).
    Going,
    /// Done since the last trim, and none since the previous check: over.
    Over,
    /// Nothing since the last trim, which was the last one of a spell of work: what the work
    /// left to be freed later (idle threads, pooled connections, both gone 10 s after their last
    /// use) is free by now.
    Settled,
}

/// Whether to trim now: after work, once it is over and once more when it has settled, if the size
/// is above the size at start at all; otherwise (busy, or idle) only well above the size at start
/// and not where the last trim left it (a trim would find nothing new to give back).
fn worth_a_trim(now: u64, at_start: u64, after_last_trim: Option<u64>, work: Work) -> bool {
    match work {
        Work::Over | Work::Settled => now >= at_start.saturating_add(AFTER_WORK),
        Work::None | Work::Going => {
            let moved = after_last_trim.is_none_or(|after| now.abs_diff(after) >= GROWTH / 2);
            now >= at_start.saturating_add(GROWTH) && moved
        }
    }
}

/// The work counter as the checks saw it.
struct WorkSeen {
    at_last_trim: u64,
    at_last_check: u64,
    /// A trim was made and its settling trim is still to come.
    settling: bool,
}

impl WorkSeen {
    fn new(now: u64) -> WorkSeen {
        WorkSeen { at_last_trim: now, at_last_check: now, settling: false }
    }

    fn check(&mut self, now: u64) -> Work {
        let quiet = now == self.at_last_check;
        self.at_last_check = now;
        if now != self.at_last_trim {
            return if quiet { Work::Over } else { Work::Going };
        }
        if quiet && std::mem::take(&mut self.settling) { Work::Settled } else { Work::None }
    }

    /// A trim was made, for `work`: every trim but a settling one gets a settling one after it.
    fn trimmed(&mut self, now: u64, work: Work) {
        self.at_last_trim = now;
        self.settling = work != Work::Settled;
    }
}

/// Runs until `stop` turns true: trims after work, as described above, first calling what
/// `release` returns (on a blocking thread: the store's `Ledger::release_memory`, the
/// templates'). `work` counts the work done so far (any number that changes when work was done).
/// Without `/proc` (not Linux) it returns at once.
pub async fn give_back<R, F, W>(release: R, work: W, mut stop: watch::Receiver<bool>)
where
    R: Fn() -> F,
    F: FnOnce() + Send + 'static,
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
        let state = seen.check(work_now);
        if !worth_a_trim(now, at_start, after_last_trim, state) {
            continue;
        }
        seen.trimmed(work_now, state);
        // It waits for the store's lock and walks the heap under the allocator's: not on the
        // runtime's threads.
        let release = release();
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

    const START: u64 = 14_000_000;

    #[test]
    fn busy_or_idle_trims_only_well_above_the_start_and_when_the_size_moved() {
        assert!(!worth_a_trim(START + GROWTH - 1, START, None, Work::Going));
        assert!(worth_a_trim(START + GROWTH, START, None, Work::Going));
        // Idle after a trim that left 18 MB: flat, so no trim every ten seconds.
        assert!(!worth_a_trim(18_000_000, START, Some(18_000_000), Work::None));
        assert!(!worth_a_trim(18_000_000 + GROWTH / 2 - 1, START, Some(18_000_000), Work::None));
        // Busy: it grew again.
        assert!(worth_a_trim(30_000_000, START, Some(18_000_000), Work::Going));
        // The case measured: the last trim during the backlog left 44 MB, the end left 28 MB of
        // which 12 were free heap. A "grown since" rule never trimmed here.
        assert!(worth_a_trim(28_000_000, START, Some(44_000_000), Work::None));
    }

    #[test]
    fn after_work_trims_whatever_the_size_did_when_above_the_start() {
        // Measured once: the backlog's last trim left 28.6 MB and the end of the backlog too, its
        // heap full of free pages: flat, but work was done since that trim, and is over.
        assert!(worth_a_trim(28_600_000, START, Some(28_600_000), Work::Over));
        assert!(!worth_a_trim(28_600_000, START, Some(28_600_000), Work::None));
        // 1.9 MB above the start is worth a trim once the work is over (measured: 16,260 kB left
        // for good with a 14,436 kB start), nothing at the start is not.
        assert!(worth_a_trim(START + 1_900_000, START, Some(START + 1_900_000), Work::Settled));
        assert!(worth_a_trim(START + AFTER_WORK, START, None, Work::Over));
        assert!(!worth_a_trim(START + AFTER_WORK - 1, START, None, Work::Over));
        assert!(!worth_a_trim(START + AFTER_WORK - 1, START, None, Work::Settled));
    }

    #[test]
    fn work_is_over_after_a_quiet_check_then_settles_once() {
        let mut seen = WorkSeen::new(0);
        assert_eq!(seen.check(0), Work::None, "no work yet");
        // Applications trickling in: work at every check, never over.
        assert_eq!(seen.check(3), Work::Going);
        assert_eq!(seen.check(5), Work::Going);
        // A quiet check: the work is over.
        assert_eq!(seen.check(5), Work::Over);
        seen.trimmed(5, Work::Over);
        // The next quiet check: settled, once.
        assert_eq!(seen.check(5), Work::Settled);
        seen.trimmed(5, Work::Settled);
        assert_eq!(seen.check(5), Work::None);
        assert_eq!(seen.check(5), Work::None);
        // More work: going, over, and its own settling.
        assert_eq!(seen.check(6), Work::Going);
        assert_eq!(seen.check(6), Work::Over);
        seen.trimmed(6, Work::Over);
        assert_eq!(seen.check(7), Work::Going, "work again before it settled");
        assert_eq!(seen.check(7), Work::Over);
    }

    #[test]
    fn a_settling_trim_not_worth_it_is_not_tried_again() {
        let mut seen = WorkSeen::new(0);
        assert_eq!(seen.check(2), Work::Going);
        seen.trimmed(2, Work::Going);
        assert_eq!(seen.check(2), Work::Settled);
        // Not trimmed (below the margin): idle from then on.
        assert_eq!(seen.check(2), Work::None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_its_own_resident_size() {
        let rss = resident_bytes().expect("VmRSS in /proc/self/status");
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
