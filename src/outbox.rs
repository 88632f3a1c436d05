//! The outbox sender: the only way mail leaves mailroom.
//!
//! The pipeline commits a rendered acknowledgement in the same transaction as the message it
//! answers; the digest commits its mail with the window it covers. This loop works from the
//! committed entries (see [`crate::store::OutboxStore`] for their states) and hands each to the
//! [`Courier`]:
//!
//! - entries are claimed (`sending`, committed durably, one transaction for a group of
//!   [`CLAIM_GROUP`]) before they are handed to SMTP, never after. [`SEND_CONCURRENCY`] (4) are
//!   on SMTP at once, one pooled connection each, and the next group is claimed while they are on
//!   their way, so a connection that comes free takes the next entry at once instead of waiting
//!   for the slowest of its group and then for a claim's fsync. **The bound:** never more than
//!   [`MAX_UNSETTLED`] (8) entries are claimed and unsettled at any moment, a claim counting from
//!   before it commits; of those, at most [`SEND_CONCURRENCY`] (4) have been handed to SMTP. A
//!   crash therefore leaves at most 8 entries `uncertain` at the next start (looked for in the
//!   Sent folder, never sent again), at most 4 of which can have left. Claimed entries whose turn
//!   never came when a pass ends early (the server went away, a store error, a stop that cut the
//!   pass off) are put back to `pending`: nothing of them left;
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

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use chrono::Utc;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

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

/// Entries claimed in one transaction (one fsync).
pub const CLAIM_GROUP: usize = SEND_CONCURRENCY;

/// Claimed (`sending`) and not yet settled, at most, at any moment: the sends in flight and one
/// group claimed ahead, so that a connection that comes free never waits for a claim's fsync.
/// This bounds what a crash can leave `uncertain`; of those, at most [`SEND_CONCURRENCY`] were
/// handed to SMTP at all.
pub const MAX_UNSETTLED: usize = SEND_CONCURRENCY + CLAIM_GROUP;

/// How long the outbox may keep sending after a stop was asked for: well below the unit's
/// `TimeoutStopSec`, so a stop never turns into a kill.
pub const SHUTDOWN_OUTBOX_GRACE: Duration = Duration::from_secs(10);

/// What became of one entry in a pass.
enum Settled {
    Sent,
    Retrying,
    Failed,
}

/// Sends every outbox entry that is due: [`SEND_CONCURRENCY`] on SMTP at once, the next group
/// claimed while they are on their way, never more than [`MAX_UNSETTLED`] claimed and unsettled.
pub async fn send_due<S: OutboxStore, C: Courier>(store: &S, courier: &C) -> Result<SendReport, StoreError> {
    let mut report = SendReport::default();
    // Read from the queue, not claimed yet (still `pending`), in the order of the queue.
    let mut due: VecDeque<OutboxEntry> = VecDeque::new();
    // Worth reading the queue again once `due` is empty: at the start, after a read that filled
    // its limit, and after a send settled (the pipeline may have queued more meanwhile). Not after
    // a read that came back short with nothing settled since: that would spin.
    let mut read_again = true;
    // Claimed and never handed to SMTP: given back if the pass ends first (see `Ready`).
    let mut ready = Ready { store: store.clone(), entries: VecDeque::new() };
    // Handed to SMTP, settled as each one ends.
    let mut sends = FuturesUnordered::new();
    // The one store call under way (a read of the queue, or a claim): they share the store's lock.
    let mut call: Option<JoinHandle<Result<StoreStep, StoreError>>> = None;
    // Ids met in this pass: an entry is handed to SMTP at most once per pass, whatever a re-read
    // of the queue returns.
    let mut seen: HashSet<i64> = HashSet::new();
    // A transient failure (the server is likely away for all of them) or a store error: nothing
    // more is claimed or handed over; what is on its way ends, and the pass with it.
    let mut halt = false;
    let mut error: Option<StoreError> = None;
    loop {
        while !halt && sends.len() < SEND_CONCURRENCY {
            let Some(entry) = ready.entries.pop_front() else { break };
            sends.push(send_one(store, courier, entry));
        }
        if call.is_none() && !halt {
            if due.is_empty() && read_again {
                read_again = false;
                call = Some(spawn_blocking(store, |s| Ok(StoreStep::Read(s.due_outbox(Utc::now(), READ_AHEAD)?))));
            } else if !due.is_empty() {
                let n = due.len().min(CLAIM_GROUP);
                // The claim counts before it commits: a crash may catch it committed.
                if sends.len() + ready.entries.len() + n <= MAX_UNSETTLED {
                    let group: Vec<OutboxEntry> = due.drain(..n).collect();
                    call = Some(spawn_blocking(store, move |s| {
                        let ids: Vec<i64> = group.iter().map(|e| e.id).collect();
                        let started = std::time::Instant::now();
                        let claimed = s.claim_many(&ids, Utc::now())?;
                        tracing::trace!(
                            claimed = claimed.len(),
                            claim_ms = started.elapsed().as_secs_f64() * 1e3,
                            "claimed (durable)"
                        );
                        Ok(StoreStep::Claimed(group.into_iter().filter(|e| claimed.contains(&e.id)).collect()))
                    }));
                }
            }
        }
        if call.is_none() && sends.is_empty() {
            break;
        }
        let event = tokio::select! {
            Some(outcome) = sends.next(), if !sends.is_empty() => Event::Settled(outcome),
            step = finish(&mut call) => Event::Store(step),
        };
        if let Event::Settled(_) = event {
            read_again = true;
        }
        match event {
            Event::Settled(Ok(settled)) => match settled {
                Settled::Sent => {
                    if report.sent == 0 && !halt {
                        // The server takes mail again: an ongoing "cannot send" is over.
                        let _ = store.clear_problem(Area::Smtp);
                    }
                    report.sent += 1;
                }
                Settled::Retrying => {
                    report.retrying += 1;
                    halt = true;
                }
                Settled::Failed => report.failed += 1,
            },
            Event::Store(Ok(StoreStep::Read(entries))) => {
                read_again = entries.len() == READ_AHEAD;
                due.extend(entries.into_iter().filter(|e| seen.insert(e.id)));
            }
            Event::Store(Ok(StoreStep::Claimed(entries))) => ready.entries.extend(entries),
            Event::Settled(Err(e)) | Event::Store(Err(e)) => {
                tracing::error!(error = %e, "outbox: store error; this pass ends once what is on its way is settled");
                halt = true;
                error.get_or_insert(e);
            }
        }
    }
    drop(ready);
    match error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// How many due entries one read of the queue takes.
const READ_AHEAD: usize = 64;

/// What a store call of the sender returns.
enum StoreStep {
    Read(Vec<OutboxEntry>),
    /// The entries of the group that were claimed (`sending`, on the disk).
    Claimed(Vec<OutboxEntry>),
}

enum Event {
    Settled(Result<Settled, StoreError>),
    Store(Result<StoreStep, StoreError>),
}

/// Claimed entries that were never handed to SMTP. Whenever the pass ends before they go (the
/// server went away, a store error, a stop that cut the pass off), they are put back to
/// `pending`: nothing of them left, so they are not `uncertain`. Should that write be lost, they
/// stay `sending` and become `uncertain` at the next start: never sent twice either way.
struct Ready<S: OutboxStore> {
    store: S,
    entries: VecDeque<OutboxEntry>,
}

impl<S: OutboxStore> Drop for Ready<S> {
    fn drop(&mut self) {
        if self.entries.is_empty() {
            return;
        }
        let ids: Vec<i64> = self.entries.iter().map(|e| e.id).collect();
        match self.store.unclaim(&ids) {
            Ok(n) => tracing::debug!(unclaimed = n, "claimed but never handed to SMTP: back in the queue"),
            Err(e) => tracing::warn!(
                error = %e,
                entries = ids.len(),
                "could not put unsent claims back; they become uncertain at the next start"
            ),
        }
    }
}

/// Hands one claimed entry to SMTP and records what became of it.
async fn send_one<S: OutboxStore, C: Courier>(
    store: &S,
    courier: &C,
    entry: OutboxEntry,
) -> Result<Settled, StoreError> {
    let started = std::time::Instant::now();
    let result = courier.deliver(&entry.mail).await;
    if result.is_ok() {
        // The moment the server accepted it (the latency benchmark reads this line).
        tracing::debug!(
            outbox_id = entry.id,
            smtp_ms = started.elapsed().as_secs_f64() * 1e3,
            "accepted by the SMTP server"
        );
    }
    blocking(store, move |s| settle(s, &entry, result)).await
}

/// Waits for the store call under way, if any (never ends otherwise), and clears it.
async fn finish<T>(call: &mut Option<JoinHandle<T>>) -> T {
    let Some(handle) = call.as_mut() else { return std::future::pending().await };
    let out = handle.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    *call = None;
    out
}

/// Starts a store call on a blocking thread (a commit waits for the disk).
fn spawn_blocking<S: OutboxStore, T: Send + 'static>(
    store: &S,
    f: impl FnOnce(&S) -> T + Send + 'static,
) -> JoinHandle<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
}

/// Runs a store call on a blocking thread (a commit waits for the disk).
async fn blocking<S: OutboxStore, T: Send + 'static>(
    store: &S,
    f: impl FnOnce(&S) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    spawn_blocking(store, f).await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use chrono::DateTime;

    use super::*;
    use crate::error::Retry;
    use crate::mail::{MailKind, OutgoingMail, ReplyKind};
    use crate::store::{Health, OutboxState, SentCheck};

    /// The outbox's states in memory, and the most ever claimed and unsettled at once.
    #[derive(Clone, Default)]
    struct FakeOutbox(Arc<Mutex<Fake>>);

    #[derive(Default)]
    struct Fake {
        states: BTreeMap<i64, (OutboxState, u32)>,
        most_sending: usize,
        claims_running: usize,
    }

    impl Fake {
        fn sending(&self) -> usize {
            self.states.values().filter(|(s, _)| *s == OutboxState::Sending).count()
        }
    }

    impl FakeOutbox {
        fn with(n: i64) -> FakeOutbox {
            let fake = FakeOutbox::default();
            fake.0.lock().unwrap().states = (1..=n).map(|id| (id, (OutboxState::Pending, 0))).collect();
            fake
        }
        fn get(&self) -> std::sync::MutexGuard<'_, Fake> {
            self.0.lock().unwrap()
        }
        fn set(&self, id: i64, from: OutboxState, to: OutboxState) -> usize {
            let mut f = self.get();
            match f.states.get_mut(&id) {
                Some(entry) if entry.0 == from => {
                    entry.0 = to;
                    1
                }
                _ => 0,
            }
        }
    }

    fn mail(id: i64) -> OutgoingMail {
        OutgoingMail {
            to: format!("candidate{id}@example.test"),
            to_name: None,
            subject: "Re: Candidature".into(),
            text: "Bonjour".into(),
            html: None,
            message_id: format!("mailroom.ack.{id}@example.test"),
            in_reply_to: None,
            references: Vec::new(),
            kind: MailKind::Ack(ReplyKind::Complete),
            attachments: Vec::new(),
        }
    }

    impl Health for FakeOutbox {
        fn record_start(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn set_problem(&self, _: Area, _: &str, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        fn clear_problem(&self, _: Area) -> Result<(), StoreError> {
            Ok(())
        }
    }

    impl SentCheck for FakeOutbox {
        fn to_look_up(&self, _: DateTime<Utc>) -> Result<Vec<(i64, String)>, StoreError> {
            Ok(Vec::new())
        }
        fn found_sent(&self, _: i64, _: DateTime<Utc>) -> Result<(), StoreError> {
            Ok(())
        }
    }

    impl OutboxStore for FakeOutbox {
        fn due_outbox(&self, _: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
            let f = self.get();
            Ok(f.states
                .iter()
                .filter(|(_, (s, _))| *s == OutboxState::Pending)
                .take(limit)
                .map(|(&id, &(_, attempts))| OutboxEntry { id, attempts, mail: mail(id) })
                .collect())
        }
        fn claim(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
            Ok(self.claim_many(&[id], now)?.len() == 1)
        }
        fn claim_many(&self, ids: &[i64], _: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
            self.get().claims_running += 1;
            // The claim's fsync: other work goes on meanwhile.
            std::thread::yield_now();
            let mut f = self.get();
            let mut claimed = Vec::new();
            for id in ids {
                if let Some((state @ OutboxState::Pending, attempts)) = f.states.get_mut(id) {
                    *state = OutboxState::Sending;
                    *attempts += 1;
                    claimed.push(*id);
                }
            }
            f.most_sending = f.most_sending.max(f.sending());
            f.claims_running -= 1;
            Ok(claimed)
        }
        fn unclaim(&self, ids: &[i64]) -> Result<usize, StoreError> {
            let mut f = self.get();
            let mut n = 0;
            for id in ids {
                if let Some((state @ OutboxState::Sending, attempts)) = f.states.get_mut(id) {
                    *state = OutboxState::Pending;
                    *attempts -= 1;
                    n += 1;
                }
            }
            Ok(n)
        }
        fn mark_sent(&self, id: i64, _: DateTime<Utc>) -> Result<(), StoreError> {
            assert_eq!(self.set(id, OutboxState::Sending, OutboxState::Sent), 1, "{id} settled unclaimed");
            Ok(())
        }
        fn mark_retry(&self, id: i64, _: &str, _: DateTime<Utc>) -> Result<(), StoreError> {
            // Waits out a backoff: not due again in this test.
            assert_eq!(self.set(id, OutboxState::Sending, OutboxState::Failed), 1);
            Ok(())
        }
        fn mark_failed(&self, id: i64, _: &str) -> Result<(), StoreError> {
            assert_eq!(self.set(id, OutboxState::Sending, OutboxState::Failed), 1);
            Ok(())
        }
        fn mark_uncertain(&self, id: i64, _: &str) -> Result<(), StoreError> {
            self.set(id, OutboxState::Sending, OutboxState::Uncertain);
            Ok(())
        }
        fn recover_interrupted(&self) -> Result<usize, StoreError> {
            Ok(0)
        }
        fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
            Ok(None)
        }
    }

    /// Checks, at every hand-over, that the entry was claimed and the bounds hold; takes a few
    /// turns of the runtime per mail, as a round trip would.
    struct FakeCourier {
        store: FakeOutbox,
        delivered: Mutex<Vec<i64>>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
        /// This one fails with a transient error (the server went away).
        fail: Option<i64>,
        /// The first delivery waits until a group is claimed ahead of it.
        wait_for_claim_ahead: bool,
        /// Never answers.
        hang: bool,
    }

    impl FakeCourier {
        fn new(store: &FakeOutbox) -> FakeCourier {
            FakeCourier {
                store: store.clone(),
                delivered: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                most_in_flight: AtomicUsize::new(0),
                fail: None,
                wait_for_claim_ahead: false,
                hang: false,
            }
        }
    }

    fn id_of(mail: &OutgoingMail) -> i64 {
        mail.to.trim_start_matches("candidate").trim_end_matches("@example.test").parse().unwrap()
    }

    /// Waits (by turns of the runtime, with a deadline) until `f` holds.
    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting: {what}");
            tokio::task::yield_now().await;
        }
    }

    impl Courier for FakeCourier {
        async fn deliver(&self, mail: &OutgoingMail) -> Result<(), SendError> {
            let id = id_of(mail);
            let first = self.delivered.lock().unwrap().is_empty();
            self.delivered.lock().unwrap().push(id);
            {
                let f = self.store.get();
                assert_eq!(f.states[&id].0, OutboxState::Sending, "{id} handed to SMTP before its claim");
                assert!(f.sending() <= MAX_UNSETTLED, "{} claimed and unsettled", f.sending());
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            if self.hang {
                std::future::pending::<()>().await;
            }
            if first && self.wait_for_claim_ahead {
                until("a group claimed while the first is on its way", || self.store.get().sending() == MAX_UNSETTLED)
                    .await;
            }
            for _ in 0..(id % 5 + 1) {
                tokio::task::yield_now().await;
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.fail == Some(id) {
                return Err(SendError { retry: Retry::Transient, message: "421 later".into(), maybe_sent: false });
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn claims_run_ahead_of_the_sends_within_the_bound() {
        let store = FakeOutbox::with(200);
        let courier = FakeCourier { wait_for_claim_ahead: true, ..FakeCourier::new(&store) };
        let report = send_due(&store, &courier).await.unwrap();
        assert_eq!(report, SendReport { sent: 200, retrying: 0, failed: 0 });
        let delivered = courier.delivered.lock().unwrap().clone();
        assert_eq!(delivered, (1..=200).collect::<Vec<_>>(), "each once, in the order of the queue");
        let f = store.get();
        assert!(f.states.values().all(|(s, attempts)| *s == OutboxState::Sent && *attempts == 1));
        assert_eq!(f.most_sending, MAX_UNSETTLED, "never more claimed and unsettled, and a group claimed ahead");
        assert!(courier.most_in_flight.load(Ordering::SeqCst) <= SEND_CONCURRENCY);
    }

    #[tokio::test]
    async fn a_server_going_away_puts_the_claims_not_yet_sent_back() {
        let store = FakeOutbox::with(50);
        let courier = FakeCourier { fail: Some(6), ..FakeCourier::new(&store) };
        let report = send_due(&store, &courier).await.unwrap();
        assert_eq!(report.retrying, 1);
        let delivered = courier.delivered.lock().unwrap().clone();
        let f = store.get();
        assert_eq!(f.sending(), 0, "nothing left claimed: {:?}", f.states);
        for (id, (state, attempts)) in &f.states {
            let times = delivered.iter().filter(|d| *d == id).count();
            assert!(times <= 1, "{id} handed over {times} times");
            match state {
                OutboxState::Pending => assert_eq!((times, *attempts), (0, 0), "{id}: put back untried"),
                OutboxState::Sent => assert_eq!(times, 1),
                OutboxState::Failed => assert_eq!(*id, 6),
                other => panic!("{id} is {other:?}"),
            }
        }
        assert!(f.states.values().any(|(s, _)| *s == OutboxState::Pending), "the pass stopped early");
    }

    #[tokio::test]
    async fn a_pass_cut_off_leaves_at_most_the_bound_claimed() {
        let store = FakeOutbox::with(50);
        let courier = FakeCourier { hang: true, ..FakeCourier::new(&store) };
        {
            let pass = send_due(&store, &courier);
            tokio::pin!(pass);
            tokio::select! {
                _ = &mut pass => panic!("a hung server cannot end the pass"),
                _ = until("every connection busy", || courier.in_flight.load(Ordering::SeqCst) == SEND_CONCURRENCY) => {}
            }
            // Dropped here, as a stop past its grace drops it.
        }
        until("no claim running", || store.get().claims_running == 0).await;
        let f = store.get();
        // What is still `sending` becomes `uncertain` at the next start: at most the bound, and
        // what was claimed ahead and never handed over went back to the queue.
        assert!(f.sending() <= MAX_UNSETTLED, "{}", f.sending());
        assert!(f.most_sending <= MAX_UNSETTLED);
        assert_eq!(courier.delivered.lock().unwrap().len(), SEND_CONCURRENCY);
    }
}
