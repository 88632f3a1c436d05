//! The loops that drive the pipeline: `mailroom once` (one pass per folder, then the outbox) and
//! `mailroom run` (a watch loop per folder, the outbox sender, and the scheduled jobs beside them),
//! with reconnection, the watchdog and the status line.
//!
//! May: call the pipeline and the outbox sender, talk to the service manager through
//! [`Monitor`]. May not: touch a message itself: everything a message goes through is in
//! [`crate::pipeline`]. There is one cancellation path: the `stop` watch. Every loop checks it at
//! its safe points (between batches, while waiting) and network I/O is dropped when it turns
//! ([`unless_stopped`]), so a stop is bounded even when a server hangs.
//!
//! Failures are paced: a pass that fails waits longer each time, and a successful login does
//! not start the count again (only a pass that works does), so an error that persists never
//! becomes a tight loop of logins and downloads. A server that refuses connections is tried at
//! least every [`RECONNECT_CAP`], so its return is noticed within seconds. The daemon's ongoing
//! error is recorded in the store for `mailroom status` ("cannot file since …").

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::courier::{Courier, SendError};
use crate::error::{Classified, backoff};
use crate::mail::OutgoingMail;
use crate::mailbox::{Mailbox, MailboxError};
use crate::outbox::{self, SendReport};
use crate::pipeline::{Pipeline, PipelineError, Report};
use crate::publish::{Backend, Publisher};
use crate::recovery;
use crate::service::{Monitor, unless_stopped};
use crate::store::{Area, AuthStore, Health, Ledger, OutboxStore, PublishStore, SentCheck, StoreError};

/// A server that refuses or drops connections (before a login) is tried again at least this
/// often: its return is noticed within seconds. Reconnecting costs it nothing.
pub const RECONNECT_CAP: Duration = Duration::from_secs(5);
/// A pass that fails after a successful login (it downloads, it files) waits up to this long.
pub const RETRY_CAP: Duration = Duration::from_secs(300);

/// `mailroom once` on one folder: one pass, and the outbox sends what it queued (as batches
/// commit, then until nothing is due); a stop gives the sends in flight their grace.
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
        let mut never_looked = None;
        let looked = unless_stopped(&stop, recovery::look_up_sent(pipeline.store(), mailbox, &mut never_looked)).await;
        let r = match looked {
            Some(Err(e)) => Err(e.into()),
            _ => pipeline.pass(mailbox, monitor, &stop).await,
        };
        record_outcome(pipeline.store(), &r);
        let _ = done_tx.send(true);
        r
    };
    let (report, sent) =
        tokio::join!(work, outbox::drain(pipeline.store(), courier, pipeline.outbox_ready(), done_rx, stop.clone()));
    Ok((report?, sent))
}

/// `mailroom run`: one watch loop per folder (see [`watch`]), the outbox sender and, when
/// `[publish]` is configured, the publisher, until `stop` turns true; memory freed by the work is
/// given back ([`crate::memory`]). The watchdog is pinged only while every watch loop is alive.
pub async fn run<L, M, C, F, Fut, B>(
    pipeline: &Pipeline<L>,
    connectors: Vec<F>,
    courier: &C,
    publisher: Option<&Publisher<L, B>>,
    poll_interval: Duration,
    monitor: &dyn Monitor,
    stop: watch::Receiver<bool>,
) where
    L: Ledger + OutboxStore + AuthStore + PublishStore,
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
    let store = pipeline.store().clone();
    let courier = Counted { inner: courier, delivered: AtomicU64::new(0) };
    // Work, for the memory given back after it: the filing's commits and the acknowledgements'
    // sends, which go on for seconds after the last commit of a backlog.
    let work = || pipeline.batches_committed() + courier.delivered.load(Relaxed);
    tokio::join!(
        futures::future::join_all(watchers),
        outbox::run(pipeline.store(), &courier, pipeline.outbox_ready(), stop.clone()),
        warm_on_incoming(pipeline.incoming(), &courier, stop.clone()),
        publishing,
        crate::memory::give_back(
            || {
                let (store, book) = (store.clone(), pipeline.rulebook());
                move || {
                    store.release_memory();
                    book.replier.release_memory();
                }
            },
            work,
            stop.clone()
        )
    );
    monitor.stopping();
}

/// New messages are being filed: the courier gets a connection ready meanwhile, so their
/// acknowledgements do not wait for a login (see [`Courier::warm`]). Until `stop` turns true.
async fn warm_on_incoming<C: Courier>(incoming: &Notify, courier: &C, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        tokio::select! {
            _ = incoming.notified() => {}
            _ = stop.changed() => break,
        }
        // A login to a hung server must not hold up a stop.
        tokio::select! {
            _ = courier.warm() => {}
            _ = stop.changed() => break,
        }
    }
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
    L: Ledger + SentCheck + AuthStore + PublishStore,
    M: Mailbox,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<M, MailboxError>>,
{
    let mut ticker = tokio::time::interval(liveness.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Failures in a row, of any kind, since the last pass that worked.
    let mut failures: u32 = 0;
    let mut last_error: Option<String> = None;
    let mut looked_in_sent = None;
    let alive = || liveness.alive(slot, monitor);
    while !*stop.borrow() {
        alive();
        let mut logged_in = false;
        let result: Result<(), PipelineError> = async {
            let Some(mailbox) = unless_stopped(&stop, connect()).await else { return Ok(()) };
            let mut mailbox = mailbox?;
            logged_in = true;
            if last_error.take().is_some() {
                tracing::info!(mailbox = mailbox.name(), after_failures = failures, "mailbox reachable again");
            }
            monitor.ready();
            loop {
                alive();
                if let Some(found) =
                    unless_stopped(&stop, recovery::look_up_sent(pipeline.store(), &mut mailbox, &mut looked_in_sent))
                        .await
                {
                    found?;
                }
                // A pass may be long (a backlog; scans read aside): each step it makes is a sign of life.
                let beating = Beating { inner: monitor, liveness, slot };
                let report = pipeline.pass(&mut mailbox, &beating, &stop).await?;
                record_outcome(pipeline.store(), &Ok::<_, PipelineError>(report));
                failures = 0;
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
        record_outcome(pipeline.store(), &Err::<Report, _>(&e));
        let text = e.to_string();
        if last_error.as_deref() != Some(text.as_str()) {
            tracing::error!(error = %text, transient = e.is_transient(), "mailbox unavailable; retrying with backoff");
        }
        // Started, but the server is away: systemd should not wait for it.
        monitor.ready();
        match auth_failing(pipeline.store()) {
            Some(auth) => monitor.status(&format!("{auth}; retrying with backoff")),
            None => monitor.status(&format!("mailbox unavailable, retrying: {text}")),
        }
        last_error = Some(text);
        // Refused connections are cheap to retry and say nothing of the next one; a pass that
        // failed after a login cost a download, and would cost it again.
        let cap = if logged_in || e.retry() == crate::error::Retry::Permanent { RETRY_CAP } else { RECONNECT_CAP };
        let wait = backoff(failures, Duration::from_secs(1), cap);
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

/// Records what a pass (or a connection) came to, for `mailroom status`: an error starts (or
/// continues) the problem of its area, and a pass that worked ends the problems of the areas it
/// went through. Best effort: the store may be what fails.
fn record_outcome<S: Health, E: std::borrow::Borrow<PipelineError>>(store: &S, outcome: &Result<Report, E>) {
    let _ = match outcome {
        Ok(_) => [Area::Imap, Area::Filing, Area::Store].into_iter().try_for_each(|a| store.clear_problem(a)),
        Err(e) => {
            let (area, label, message) = problem_of(e.borrow());
            store.set_problem(area, label, &message)
        }
    };
}

/// Where an error is, what to call it, and what to say (no personal data: filing errors show no
/// names, see [`crate::filing::shown_path`]).
fn problem_of(e: &PipelineError) -> (Area, &'static str, String) {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    let disk_full = |message: String| format!("disk full: {message}");
    match e {
        PipelineError::Mailbox(MailboxError::Auth { .. }) => (Area::Imap, "IMAP login failing", e.to_string()),
        PipelineError::Mailbox(_) => (Area::Imap, "IMAP unavailable", e.to_string()),
        PipelineError::Filing(f) if matches!(f.source.kind(), StorageFull | QuotaExceeded) => {
            (Area::Filing, "cannot file", disk_full(e.to_string()))
        }
        PipelineError::Filing(_) | PipelineError::Worker(_) => (Area::Filing, "cannot file", e.to_string()),
        PipelineError::Store(StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)))
            if f.code == rusqlite::ErrorCode::DiskFull =>
        {
            (Area::Filing, "cannot file", disk_full(e.to_string()))
        }
        PipelineError::Store(_) => (Area::Store, "state database failing", e.to_string()),
        PipelineError::Antivirus { .. } => (Area::Antivirus, "antivirus unreachable", e.to_string()),
    }
}

/// The `STATUS=` line: counts only, no personal data; a failing authentication comes first.
fn status_line<L: Ledger + AuthStore + PublishStore>(store: &L, last: &Report) -> String {
    // The publish queue only when something waits for the cloud.
    let publish = match store.publish_status() {
        Ok(p) if p.waiting > 0 => format!("publish {} waiting; ", p.waiting),
        _ => String::new(),
    };
    let line = match store.totals() {
        Ok(t) => format!(
            "watching; {} filed, {} quarantined, outbox {} waiting, {} failed; {publish}last pass fetched {}",
            t.filed,
            t.quarantined,
            t.outbox_pending,
            t.outbox_failed + t.outbox_uncertain,
            last.fetched
        ),
        Err(e) => format!("watching; store unreadable: {e}"),
    };
    match auth_failing(store) {
        Some(auth) => format!("{auth}; {line}"),
        None => line,
    }
}

/// `auth failing since 2026-11-23 10:00:00 UTC: identity provider: …`, when a part fails.
pub fn auth_failing<S: AuthStore>(store: &S) -> Option<String> {
    let records = store.auth_records().ok()?;
    let failing: Vec<_> = records.iter().filter(|r| !r.ok).collect();
    let first = failing.iter().map(|r| r.since).min()?;
    let reasons: Vec<String> =
        failing.iter().map(|r| format!("{}: {}", r.part.label(), r.reason.as_deref().unwrap_or("failing"))).collect();
    Some(format!("auth failing since {}: {}", first.format("%Y-%m-%d %H:%M:%S UTC"), reasons.join("; ")))
}

/// The monitor a pass reports to: the daemon's, and every step of progress counts as a sign of
/// life of its watch loop. A pass that stops making progress (hung) stops the pings.
struct Beating<'a> {
    inner: &'a dyn Monitor,
    liveness: &'a Liveness,
    slot: usize,
}

impl Monitor for Beating<'_> {
    crate::service::forward_monitor!(inner; ready, status, watchdog_interval, watchdog, stopping, reloading);
    fn progress(&self, done: usize, total: usize) {
        self.inner.progress(done, total);
        self.liveness.alive(self.slot, self.inner);
    }
}

/// The daemon's courier, counting what it was asked to deliver.
struct Counted<'a, C> {
    inner: &'a C,
    delivered: AtomicU64,
}

impl<C: Courier> Courier for Counted<'_, C> {
    fn deliver(&self, mail: &OutgoingMail) -> impl Future<Output = Result<(), SendError>> + Send {
        let delivery = self.inner.deliver(mail);
        let delivered = &self.delivered;
        async move {
            let r = delivery.await;
            delivered.fetch_add(1, Relaxed);
            r
        }
    }

    fn warm(&self) -> impl Future<Output = ()> + Send {
        self.inner.warm()
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
