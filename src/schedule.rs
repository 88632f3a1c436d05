//! When scheduled jobs (the digest, and any later one) fire: a cron expression evaluated in the
//! organisation's named time zone, and a timer that fires at the computed instant.
//!
//! **Why two parts.** tokio-cron-scheduler's time-zone jobs fix the UTC offset when the job is
//! created (upstream issues #87 and #107), so a job made in winter would fire an hour late all
//! summer. The calendar is therefore ours: [`Schedule::next_after`] evaluates the cron expression
//! in the named zone (`cron` crate + chrono-tz) every time, so 08:00 Europe/Paris stays 08:00 on
//! both sides of a DST change, and a test checks it by computation with a fixed clock.
//! tokio-cron-scheduler is the timer: [`Timer::sleep_until`] arms a one-shot job at the computed
//! UTC instant, and the job is re-armed for the next firing after each one. Its one-shot jobs fire
//! at whole-second precision (measured: a job 1.3 s ahead fired after 1.0 s), so the last
//! second before the instant is waited out with tokio's own timer: a job never runs early.
//!
//! May: read the clock. Nothing here touches the store, the network or the disk.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_cron_scheduler::{Job, JobScheduler};

/// A cron expression in a named time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: cron::Schedule,
    tz: Tz,
}

impl Schedule {
    /// Accepts the usual 5 fields (`min hour day month weekday`) or 6 with seconds first.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_owned(),
            _ => return Err(format!("{expr:?}: expected 5 cron fields (min hour day month weekday), found {fields}")),
        };
        let cron = full.parse::<cron::Schedule>().map_err(|e| format!("{expr:?}: {e}"))?;
        Ok(Schedule { cron, tz })
    }

    /// The first firing strictly after `t`. Local times that do not exist (the spring gap) are
    /// skipped; the repeated hour of autumn fires once.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.after(&t.with_timezone(&self.tz)).next().map(|d| d.with_timezone(&Utc))
    }

    /// The last firing at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let just_after = (t + chrono::Duration::seconds(1)).with_timezone(&self.tz);
        self.cron.after(&just_after).next_back().map(|d| d.with_timezone(&Utc))
    }
}

/// Where "now" comes from: the system, or a test.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the job timer (tokio-cron-scheduler): {0}")]
pub struct TimerError(String);

/// The process's job timer: one tokio-cron-scheduler shared by every scheduled job.
#[derive(Clone)]
pub struct Timer {
    scheduler: JobScheduler,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Timer")
    }
}

/// Below this, the remaining wait is tokio's: the scheduler's one-shots have whole-second precision.
const FINE_WAIT: Duration = Duration::from_secs(2);

impl Timer {
    /// Starts the scheduler (a few tasks on the current runtime).
    pub async fn start() -> Result<Timer, TimerError> {
        let err = |e: tokio_cron_scheduler::JobSchedulerError| TimerError(format!("{e:?}"));
        let scheduler = JobScheduler::new().await.map_err(err)?;
        scheduler.start().await.map_err(err)?;
        Ok(Timer { scheduler })
    }

    /// Returns once `clock` says `at` has passed. Cancel it by dropping the future (the one-shot
    /// job it armed is removed on the way out).
    pub async fn sleep_until(&self, at: DateTime<Utc>, clock: &dyn Clock) -> Result<(), TimerError> {
        loop {
            let left = (at - clock.now()).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                return Ok(());
            }
            if left <= FINE_WAIT {
                tokio::time::sleep(left).await;
                continue;
            }
            // Wake a little before the instant, then wait out the rest finely.
            self.one_shot(left - FINE_WAIT / 2).await?;
        }
    }

    async fn one_shot(&self, after: Duration) -> Result<(), TimerError> {
        let err = |e: tokio_cron_scheduler::JobSchedulerError| TimerError(format!("{e:?}"));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let job = Job::new_one_shot_at_instant(std::time::Instant::now() + after, move |_, _| {
            if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
        })
        .map_err(err)?;
        let id = self.scheduler.add(job).await.map_err(err)?;
        // Removed however this ends, so a cancelled wait leaves no job behind.
        let guard = RemoveOnDrop { scheduler: self.scheduler.clone(), id: Some(id) };
        let fired = rx.await;
        drop(guard);
        fired.map_err(|_| TimerError("the scheduler dropped a job before it fired".into()))
    }
}

struct RemoveOnDrop {
    scheduler: JobScheduler,
    id: Option<uuid::Uuid>,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let scheduler = self.scheduler.clone();
            // Removal is async; outside a runtime (a process exiting) there is nothing to clean.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = scheduler.remove(&id).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(DateTime<Utc>);
    impl Clock for Fixed {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    #[tokio::test]
    async fn the_timer_fires_at_the_instant_and_never_before() {
        let timer = Timer::start().await.unwrap();
        let at = Utc::now() + chrono::Duration::milliseconds(2600);
        timer.sleep_until(at, &SystemClock).await.unwrap();
        assert!(Utc::now() >= at);
        // An instant already passed returns at once, whatever the scheduler does.
        timer.sleep_until(at, &Fixed(at + chrono::Duration::hours(1))).await.unwrap();
    }
}
