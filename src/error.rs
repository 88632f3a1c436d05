//! Errors at the boundaries know whether trying again can help.
//!
//! A *transient* failure (a dropped connection, a 4xx reply, a busy disk) is retried with backoff;
//! a *permanent* one (bad credentials, a 5xx reply, a message we cannot understand) is recorded
//! and reported, and never retried in a tight loop. Bad mail is not an error at all: the
//! understand stage turns it into a quarantine outcome.

use std::time::Duration;

/// Whether an operation that failed may succeed if tried again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Transient,
    Permanent,
}

/// Implemented by every error that crosses a boundary (mailbox, courier, store, filing).
pub trait Classified {
    fn retry(&self) -> Retry;

    fn is_transient(&self) -> bool {
        self.retry() == Retry::Transient
    }
}

/// Exponential backoff with full jitter, capped: the delay before try number `attempt` (0-based).
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(cap);
    // Full jitter keeps many restarted instances (or many outbox rows) from retrying in step.
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(millis / 2 + fastrand::u64(0..=millis / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for attempt in 0..40 {
            let d = backoff(attempt, base, cap);
            assert!(d <= cap, "attempt {attempt}: {d:?}");
            let floor = base.saturating_mul(1u32 << attempt.min(16)).min(cap) / 2;
            assert!(d >= floor, "attempt {attempt}: {d:?} below {floor:?}");
        }
    }
}
