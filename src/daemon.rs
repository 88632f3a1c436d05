//! The loops that drive the pipeline: `mailroom once` (one pass per folder, then the outbox) and
//! `mailroom run` (a watch loop per folder, the outbox sender, and the scheduled jobs beside them),
//! with reconnection, the watchdog and the status line.
//!
//! May: call the pipeline and the outbox sender, talk to the service manager through
//! [`Monitor`]. May not: touch a message itself: everything a message goes through is in
//! [`crate::pipeline`]. There is one cancellation path: the `stop` watch. Every loop checks it at
//! its safe points (between batches, while waiting), so a stop is bounded.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::courier::Courier;
use crate::error::{Classified, backoff};
use crate::mailbox::{Mailbox, MailboxError};
use crate::outbox::{self, SendReport};
use crate::pipeline::{Pipeline, PipelineError, Report};
use crate::publish::{Backend, Publisher};
use crate::service::Monitor;
use crate::store::{Ledger, OutboxStore, PublishStore};

/// `mailroom once` on one folder: one pass, then the outbox's chance to send what it queued.
pub async fn once<L, M, C>(
    pipeline: &Pipeline<L>,
    mailbox: &mut M,
    courier: &C,
    monitor: &dyn Monitor,
    stop: watch::Receiver<bool>,
) -> Result<(Report, SendReport), PipelineError>
where
    L: Ledger + OutboxStore,
    M: Mailbox,
    C: Courier,
{
    let (done_tx, done_rx) = watch::channel(false);
    let work = async {
        let r = pipeline.pass(mailbox, monitor, &stop).await;
        let _ = done_tx.send(true);
        r
    };
    let (report, sent) = tokio::join!(work, outbox::run(pipeline.store(), courier, pipeline.outbox_ready(), done_rx));
    Ok((report?, sent))
}

/// `mailroom run`: one watch loop per folder (see [`watch`]), the outbox sender and, when
/// `[publish]` is configured, the publisher, until `stop` turns true. The watchdog is pinged only
/// while every watch loop is alive.
pub async fn run<L, M, C, F, Fut, B>(
    pipeline: &Pipeline<L>,
    connectors: Vec<F>,
    courier: &C,
    publisher: Option<&Publisher<L, B>>,
    poll_interval: Duration,
    monitor: &dyn Monitor,
    stop: watch::Receiver<bool>,
) where
    L: Ledger + OutboxStore + PublishStore,
    M: Mailbox,
    C: Courier,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<M, MailboxError>>,
    B: Backend,
{
    let liveness = Liveness::new(connectors.len(), monitor.watchdog_interval());
    let watchers = connectors
        .into_iter()
        .enumerate()
        .map(|(slot, connect)| watch(pipeline, connect, poll_interval, monitor, &liveness, slot, stop.clone()));
    let publishing = async {
        if let Some(publisher) = publisher {
            publisher.run(pipeline.publish_ready(), stop.clone()).await;
        }
    };
    tokio::join!(
        futures::future::join_all(watchers),
        outbox::run(pipeline.store(), courier, pipeline.outbox_ready(), stop.clone()),
        publishing
    );
    monitor.stopping();
}

/// One folder: a pass, then wait for the server to announce new mail (IDLE) or for the poll
/// interval, then another pass, until `stop` turns true. A lost connection is replaced with
/// backoff and jitter, for ever; failures are logged once per change of state, not per try.
async fn watch<L, M, F, Fut>(
    pipeline: &Pipeline<L>,
    mut connect: F,
    poll_interval: Duration,
    monitor: &dyn Monitor,
    liveness: &Liveness,
    slot: usize,
    mut stop: watch::Receiver<bool>,
) where
    L: Ledger + PublishStore,
    M: Mailbox,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<M, MailboxError>>,
{
    let mut ticker = tokio::time::interval(liveness.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: u32 = 0;
    let mut last_error: Option<String> = None;
    let alive = || liveness.alive(slot, monitor);
    while !*stop.borrow() {
        alive();
        let result: Result<(), PipelineError> = async {
            let mut mailbox = connect().await?;
            if last_error.take().is_some() {
                tracing::info!(mailbox = mailbox.name(), after_failures = failures, "mailbox reachable again");
            }
            failures = 0;
            monitor.ready();
            loop {
                alive();
                let report = pipeline.pass(&mut mailbox, monitor, &stop).await?;
                monitor.status(&status_line(pipeline.store(), &report));
                if *stop.borrow() {
                    break;
                }
                let wait = mailbox.wait_for_change(poll_interval);
                tokio::pin!(wait);
                let woke = loop {
                    tokio::select! {
                        r = &mut wait => break Some(r),
                        _ = ticker.tick() => alive(),
                        _ = stop.changed() => break None,
                    }
                };
                match woke {
                    Some(r) => {
                        r?;
                    }
                    None => break,
                }
            }
            mailbox.logout().await;
            Ok(())
        }
        .await;
        let Err(e) = result else { continue };
        let text = e.to_string();
        if last_error.as_deref() != Some(text.as_str()) {
            tracing::error!(error = %text, transient = e.is_transient(), "mailbox unavailable; retrying with backoff");
        }
        // Started, but the server is away: systemd should not wait for it.
        monitor.ready();
        monitor.status(&format!("mailbox unavailable, retrying: {text}"));
        last_error = Some(text);
        let wait = backoff(failures, Duration::from_secs(1), Duration::from_secs(300));
        tracing::debug!(failures, retry_in_ms = wait.as_millis() as u64, "reconnect attempt failed");
        failures = failures.saturating_add(1);
        let pause = tokio::time::sleep(wait);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                _ = ticker.tick() => alive(),
                _ = stop.changed() => break,
            }
        }
    }
}

/// The `STATUS=` line: counts only, no personal data.
fn status_line<L: Ledger + PublishStore>(store: &L, last: &Report) -> String {
    // The publish queue only when something waits for the cloud.
    let publish = match store.publish_status() {
        Ok(p) if p.waiting > 0 => format!("publish {} waiting; ", p.waiting),
        _ => String::new(),
    };
    match store.totals() {
        Ok(t) => format!(
            "watching; {} filed, {} quarantined, outbox {} waiting, {} failed; {publish}last pass fetched {}",
            t.filed,
            t.quarantined,
            t.outbox_pending,
            t.outbox_failed + t.outbox_uncertain,
            last.fetched
        ),
        Err(e) => format!("watching; store unreadable: {e}"),
    }
}

/// The watchdog is pinged only when every watch loop has shown life within two intervals, so one
/// stuck folder is enough for systemd to restart the daemon.
struct Liveness {
    every: Duration,
    started: Instant,
    last_ms: Vec<AtomicU64>,
}

impl Liveness {
    fn new(loops: usize, watchdog: Option<Duration>) -> Liveness {
        Liveness {
            every: watchdog.unwrap_or(Duration::from_secs(3600)),
            started: Instant::now(),
            last_ms: (0..loops).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn alive(&self, slot: usize, monitor: &dyn Monitor) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms[slot].store(now, Relaxed);
        let fresh = (self.every * 2).as_millis() as u64;
        if self.last_ms.iter().all(|t| now.saturating_sub(t.load(Relaxed)) <= fresh) {
            monitor.watchdog();
        }
    }
}
