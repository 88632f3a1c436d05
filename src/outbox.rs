//! The outbox sender: the only way mail leaves mailroom.
//!
//! The pipeline commits a rendered acknowledgement in the same transaction as the message it
//! answers; the digest commits its mail with the window it covers. This loop works from the
//! committed entries (see [`crate::store::OutboxStore`] for their states) and hands each to the
//! [`Courier`]:
//!
//! - entries are claimed (`sending`, committed durably, one transaction for a group) just before
//!   they are handed to SMTP, and only as many are claimed as are in flight
//!   ([`SEND_CONCURRENCY`]), so a crash can catch few of them mid-send, and those become
//!   `uncertain`, never sent twice;
//! - each is marked `sent` as soon as the server accepts it; one whose connection was lost after
//!   the whole mail was sent, before the server answered, may have left: it is `uncertain` at
//!   once, never sent again;
//! - a transient failure puts the entry back with exponential backoff and jitter, and ends the
//!   pass (the server is likely away for all of them); a permanent one marks it `failed`;
//! - a stop gives the sends in flight [`SHUTDOWN_OUTBOX_GRACE`], then cuts them off, so a hung
//!   SMTP server cannot hold a stop up to its own timeout (what is cut off is `uncertain` at the
//!   next start, and looked for in the Sent folder: see the `recovery` module).
//!
//! May: read and update the outbox, talk to the courier. May not: create mail.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

use crate::courier::{Courier, SendError};
use crate::error::{Classified, backoff};
use crate::service::stopped;
use crate::store::{Area, OutboxEntry, OutboxStore, StoreError};

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
}

impl SendReport {
    pub fn add(&mut self, o: SendReport) {
        self.sent += o.sent;
        self.retrying += o.retrying;
        self.failed += o.failed;
    }
}

const RETRY_BASE: Duration = Duration::from_secs(5);
const RETRY_CAP: Duration = Duration::from_secs(30 * 60);
/// After this many transient failures an entry is given up and reported.
pub const MAX_ATTEMPTS: u32 = 50;

/// SMTP submissions in flight at once: enough to hide the round trips, few enough to be polite
/// to a submission server that limits connections per client; one pooled connection each.
pub const SEND_CONCURRENCY: usize = crate::courier::POOL_MAX;

/// How long the outbox may keep sending after a stop was asked for: well below the unit's
/// `TimeoutStopSec`, so a stop never turns into a kill.
pub const SHUTDOWN_OUTBOX_GRACE: Duration = Duration::from_secs(10);

/// What became of one entry in a pass.
enum Settled {
    Sent,
    Retrying,
    Failed,
}

/// Sends every outbox entry that is due, [`SEND_CONCURRENCY`] at a time.
pub async fn send_due<S: OutboxStore, C: Courier>(store: &S, courier: &C) -> Result<SendReport, StoreError> {
    let mut report = SendReport::default();
    loop {
        let due = store.due_outbox(Utc::now(), 64)?;
        if due.is_empty() {
            return Ok(report);
        }
        // Claimed [`SEND_CONCURRENCY`] at a time in one transaction: one fsync per group rather
        // than per mail (during a backlog each fsync also waits for the filed documents' writeback,
        // so a claim per mail held the acknowledgements to a few dozen a second). Then the group
        // is handed to SMTP at once, in the order of the queue; its settling writes are relaxed
        // (see the store), and run on blocking threads, as the claim does.
        let mut outcomes: Vec<Result<Settled, StoreError>> = Vec::new();
        let mut server_away = false;
        let mut due = due.into_iter();
        while !server_away {
            let group: Vec<OutboxEntry> = due.by_ref().take(SEND_CONCURRENCY).collect();
            if group.is_empty() {
                break;
            }
            let ids: Vec<i64> = group.iter().map(|e| e.id).collect();
            let claimed = blocking(store, move |s| s.claim_many(&ids, Utc::now())).await?;
            let sends = group.into_iter().filter(|e| claimed.contains(&e.id)).map(|entry| async move {
                tracing::trace!(outbox_id = entry.id, "claimed; handing to SMTP");
                let result = courier.deliver(&entry.mail).await;
                if result.is_ok() {
                    // The moment the server accepted it (the latency benchmark reads this line).
                    tracing::debug!(outbox_id = entry.id, "accepted by the SMTP server");
                }
                blocking(store, move |s| settle(s, &entry, result)).await
            });
            for outcome in futures::future::join_all(sends).await {
                server_away |= matches!(outcome, Ok(Settled::Retrying));
                outcomes.push(outcome);
            }
        }
        for outcome in outcomes {
            match outcome? {
                Settled::Sent => report.sent += 1,
                Settled::Retrying => report.retrying += 1,
                Settled::Failed => report.failed += 1,
            }
        }
        if server_away {
            return Ok(report);
        }
        if report.sent > 0 {
            // The server takes mail again: an ongoing "cannot send" is over.
            let _ = store.clear_problem(Area::Smtp);
        }
    }
}

/// Runs a store call on a blocking thread (a commit waits for the disk).
async fn blocking<S: OutboxStore, T: Send + 'static>(
    store: &S,
    f: impl FnOnce(&S) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store)).await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Records what became of one claimed entry, at once.
fn settle<S: OutboxStore>(
    store: &S,
    entry: &OutboxEntry,
    result: Result<(), SendError>,
) -> Result<Settled, StoreError> {
    let attempt = entry.attempts + 1;
    match result {
        Err(e) if e.maybe_sent => {
            store.mark_uncertain(entry.id, &e.message)?;
            tracing::error!(outbox_id = entry.id, attempt, error = %e, "perhaps sent: not sent again (at most once); looked for in the Sent folder");
            Ok(Settled::Failed)
        }
        Ok(()) => {
            store.mark_sent(entry.id, Utc::now())?;
            tracing::info!(outbox_id = entry.id, attempt, kind = %entry.mail.kind, "sent");
            Ok(Settled::Sent)
        }
        Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
            let wait = backoff(attempt - 1, RETRY_BASE, RETRY_CAP);
            let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            store.mark_retry(entry.id, &e.message, next)?;
            let _ = store.set_problem(Area::Smtp, "cannot send", &e.message);
            tracing::warn!(outbox_id = entry.id, attempt, retry_in_s = wait.as_secs(), error = %e, "sending failed; will retry");
            Ok(Settled::Retrying)
        }
        Err(e) => {
            store.mark_failed(entry.id, &e.message)?;
            tracing::error!(outbox_id = entry.id, attempt, error = %e, "sending failed for good");
            Ok(Settled::Failed)
        }
    }
}

/// Sends what is due until `stop` turns true, sleeping until the next due entry or until `ready`
/// is notified (a commit queued new mail). At stop it gives the outbox one last chance, bounded by
/// [`SHUTDOWN_OUTBOX_GRACE`]; what is left waits for the next start.
pub async fn run<S: OutboxStore, C: Courier>(
    store: &S,
    courier: &C,
    ready: &Notify,
    stop: watch::Receiver<bool>,
) -> SendReport {
    run_until(store, courier, ready, None, stop).await
}

/// `mailroom once`: sends as the pass commits, and once `done` turns true (the pass is over),
/// until nothing is due; a stop (`stop`) ends it as it ends [`run`]. Entries waiting out a
/// backoff are not due: they wait for the next run.
pub async fn drain<S: OutboxStore, C: Courier>(
    store: &S,
    courier: &C,
    ready: &Notify,
    done: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) -> SendReport {
    run_until(store, courier, ready, Some(done), stop).await
}

async fn run_until<S: OutboxStore, C: Courier>(
    store: &S,
    courier: &C,
    ready: &Notify,
    mut finish: Option<watch::Receiver<bool>>,
    mut stop: watch::Receiver<bool>,
) -> SendReport {
    let mut total = SendReport::default();
    let mut add = |r: Result<SendReport, StoreError>| match r {
        Ok(r) => total.add(r),
        Err(e) => tracing::error!(error = %e, "outbox: store error"),
    };
    let cut_off = || {
        tracing::warn!(
            "outbox: stopped before everything was sent; what was in flight may or may not have left \
             (looked for in the Sent folder at the next start), the rest goes then"
        );
    };
    loop {
        if *stop.borrow() {
            match tokio::time::timeout(SHUTDOWN_OUTBOX_GRACE, send_due(store, courier)).await {
                Ok(r) => add(r),
                Err(_) => cut_off(),
            }
            return total;
        }
        // A stop while sending: the pass gets the grace, then is dropped where it waits.
        let pass = send_due(store, courier);
        tokio::pin!(pass);
        let done = tokio::select! {
            r = &mut pass => Some(r),
            _ = stopped(&mut stop) => None,
        };
        match done {
            Some(r) => add(r),
            None => {
                match tokio::time::timeout(SHUTDOWN_OUTBOX_GRACE, pass).await {
                    Ok(r) => add(r),
                    Err(_) => cut_off(),
                }
                return total;
            }
        }
        let next = store.next_outbox_due().ok().flatten();
        if let Some(finish) = &finish
            && *finish.borrow()
            && next.is_none_or(|t| t > Utc::now())
        {
            // The pass is over and what it queued is sent (or waits out a backoff).
            return total;
        }
        let wait = next
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(50));
        let finished = async {
            match finish.as_mut() {
                Some(finish) => {
                    let _ = finish.wait_for(|d| *d).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ready.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
            _ = finished => {}
        }
    }
}
