//! The pipeline: **fetch → understand → file → acknowledge → record**, then flag and send.
//!
//! This is the only place that knows the order of the stages. Messages travel in batches
//! (bounded by count and bytes) so that a large backlog costs one IMAP round trip and one fsync of
//! the store per batch, not per message. For each batch:
//!
//! 1. **fetch** ([`crate::mailbox`]): bodies of the UIDs above the high-water mark; a message over
//!    `limits.max_message_bytes` is never downloaded, its announced size is enough to quarantine it;
//! 2. **understand** ([`crate::understand`]): pure, one typed outcome per message;
//! 3. **file** ([`crate::filing`]): documents, `.eml`, metadata, or the quarantine; then one
//!    group fsync of the directories touched;
//! 4. **acknowledge** ([`crate::reply`]): decide and render; nothing is sent yet;
//! 5. **record** ([`crate::store`]): one transaction with every row, outbox entry and the new
//!    high-water mark. This is the commit point.
//!
//! After the commit the messages get our keyword on the server and the outbox sender is woken.
//! A crash anywhere before the commit replays the batch: filing is idempotent and nothing was
//! sent. A crash after it replays nothing.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::courier::{Courier, SendReport, lock, send_due};
use crate::error::{Classified, Retry, backoff};
use crate::filing::{Filer, FilingError};
use crate::mailbox::{Envelope, Mailbox, MailboxError};
use crate::reply::{CAP_REASON, History, Replier, ReplyDecision, ReplyKind};
use crate::service::Monitor;
use crate::store::{Batch, Ledger, MailboxKey, MessageRecord, Outcome, StoreError};
use crate::understand::{Quarantine, Rules, Understood, sha256_hex, understand};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    #[error("filing: {0}")]
    Filing(#[from] FilingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a pipeline worker stopped: {0}")]
    Worker(String),
}

impl Classified for PipelineError {
    fn retry(&self) -> Retry {
        match self {
            PipelineError::Mailbox(e) => e.retry(),
            PipelineError::Filing(e) => e.retry(),
            PipelineError::Store(e) => e.retry(),
            PipelineError::Worker(_) => Retry::Permanent,
        }
    }
}

/// What a batch's commit reports: counts, and the UIDs committed (to flag on the server).
type BatchResult = Result<(Report, Vec<u32>), PipelineError>;

/// How batches are cut.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub messages: usize,
    pub bytes: u64,
    pub max_message_bytes: u64,
}

/// What a pass (or a whole run) did, in counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub fetched: usize,
    pub filed: usize,
    pub quarantined: usize,
    pub duplicates: usize,
    pub replies_queued: usize,
    pub replies_skipped: usize,
}

impl Report {
    pub fn add(&mut self, o: Report) {
        self.fetched += o.fetched;
        self.filed += o.filed;
        self.quarantined += o.quarantined;
        self.duplicates += o.duplicates;
        self.replies_queued += o.replies_queued;
        self.replies_skipped += o.replies_skipped;
    }
}

/// The pure and local stages, shared with the blocking worker that runs them.
struct Stages {
    rules: Rules,
    replier: Replier,
}

/// One message as it enters understanding.
enum Incoming {
    Downloaded {
        uid: u32,
        internal_date: Option<chrono::DateTime<Utc>>,
        raw: Vec<u8>,
    },
    /// Over the size limit: judged from its envelope, never downloaded.
    TooLarge(Envelope),
}

/// The pipeline over one store and one data root.
pub struct Pipeline<L: Ledger> {
    stages: Arc<Stages>,
    filer: Arc<Mutex<Filer>>,
    ledger: Arc<Mutex<L>>,
    limits: BatchLimits,
    keyword: String,
    /// Woken after each commit that queued a reply.
    outbox_ready: Arc<Notify>,
}

impl<L: Ledger + Send + 'static> Pipeline<L> {
    pub fn new(cfg: &Config, replier: Replier, ledger: L) -> Pipeline<L> {
        Pipeline {
            stages: Arc::new(Stages { rules: Rules::from_config(cfg), replier }),
            filer: Arc::new(Mutex::new(Filer::new(&cfg.storage.data_dir))),
            ledger: Arc::new(Mutex::new(ledger)),
            limits: BatchLimits {
                messages: cfg.imap.batch_messages,
                bytes: cfg.imap.batch_bytes,
                max_message_bytes: cfg.limits.max_message_bytes,
            },
            keyword: cfg.imap.filed_keyword.clone(),
            outbox_ready: Arc::new(Notify::new()),
        }
    }

    pub fn ledger(&self) -> &Arc<Mutex<L>> {
        &self.ledger
    }

    /// Wakes the outbox sender; for jobs beside the pipeline (the digest) that queue mail.
    pub fn outbox_ready(&self) -> &Notify {
        &self.outbox_ready
    }

    /// One pass over the folder: everything above the high-water mark, batch after batch.
    /// Stops early, between batches, when `stop` turns true.
    pub async fn pass<M: Mailbox>(
        &self,
        mailbox: &mut M,
        monitor: &dyn Monitor,
        stop: &watch::Receiver<bool>,
    ) -> Result<Report, PipelineError> {
        let selected = mailbox.select().await?;
        let key = MailboxKey { name: mailbox.name().to_owned(), uidvalidity: selected.uid_validity };
        let high_water = {
            let mut ledger = lock(&self.ledger);
            ledger.record_contact(&key, Utc::now())?;
            ledger.high_water(&key)?
        };
        let envelopes = mailbox.list_after(high_water).await?;
        let mut report = Report::default();
        if envelopes.is_empty() {
            return Ok(report);
        }
        let total = envelopes.len();
        tracing::info!(mailbox = %key.name, uidvalidity = key.uidvalidity, after_uid = high_water, new = total, "new messages");
        // While batch k is understood, filed and committed on a blocking thread, batch k+1 is
        // downloaded: the network and the disk work at the same time. Commits stay in UID order,
        // and at most two batches are in memory.
        let mut done = 0;
        let mut in_flight: Option<(tokio::task::JoinHandle<BatchResult>, usize)> = None;
        let mut outcome = Ok(());
        for batch in plan_batches(&envelopes, self.limits) {
            if *stop.borrow() {
                tracing::info!(done, total, "stopping between batches");
                break;
            }
            let items = match self.download(mailbox, batch).await {
                Ok(items) => items,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            if let Some((handle, len)) = in_flight.take() {
                done += len;
                self.finish(mailbox, handle, &mut report, done, total, monitor).await?;
            }
            let high_water = batch.last().map(|e| e.uid).unwrap_or(high_water);
            in_flight = Some((self.process(key.clone(), high_water, items), batch.len()));
        }
        if let Some((handle, len)) = in_flight.take() {
            done += len;
            self.finish(mailbox, handle, &mut report, done, total, monitor).await?;
        }
        outcome.map(|()| report)
    }

    /// Downloads one batch (never the messages over the size limit).
    async fn download<M: Mailbox>(&self, mailbox: &mut M, batch: &[Envelope]) -> Result<Vec<Incoming>, PipelineError> {
        let wanted: Vec<u32> =
            batch.iter().filter(|e| e.size <= self.limits.max_message_bytes).map(|e| e.uid).collect();
        let mut downloaded = mailbox.fetch(&wanted).await?.into_iter();
        let mut items = Vec::with_capacity(batch.len());
        for env in batch {
            if env.size > self.limits.max_message_bytes {
                items.push(Incoming::TooLarge(*env));
            } else if let Some(m) = downloaded.by_ref().find(|m| m.uid == env.uid) {
                items.push(Incoming::Downloaded {
                    uid: m.uid,
                    internal_date: m.internal_date.or(env.internal_date),
                    raw: m.raw,
                });
            }
            // A message expunged between listing and fetching is simply gone.
        }
        Ok(items)
    }

    /// Waits for a batch's commit, then reports it, wakes the sender and flags the messages.
    async fn finish<M: Mailbox>(
        &self,
        mailbox: &mut M,
        handle: tokio::task::JoinHandle<BatchResult>,
        report: &mut Report,
        done: usize,
        total: usize,
        monitor: &dyn Monitor,
    ) -> Result<(), PipelineError> {
        let (batch_report, committed) = handle.await.map_err(|e| PipelineError::Worker(e.to_string()))??;
        monitor.progress(done, total);
        report.add(batch_report);
        tracing::info!(
            done,
            total,
            filed = batch_report.filed,
            quarantined = batch_report.quarantined,
            "batch committed"
        );
        if batch_report.replies_queued > 0 {
            self.outbox_ready.notify_one();
        }
        // The keyword is a courtesy to people reading the mailbox; the store is the truth.
        if let Err(e) = mailbox.add_keyword(&committed, &self.keyword).await {
            tracing::warn!(error = %e, "could not set the filed keyword; continuing");
        }
        Ok(())
    }

    /// Stages 2–5 for one batch, on a blocking thread (parsing, hashing and fsync are not async).
    fn process(&self, key: MailboxKey, high_water: u32, items: Vec<Incoming>) -> tokio::task::JoinHandle<BatchResult> {
        let stages = Arc::clone(&self.stages);
        let filer = Arc::clone(&self.filer);
        let ledger = Arc::clone(&self.ledger);
        tokio::task::spawn_blocking(move || {
            let mut filer = lock(&filer);
            process_batch(&stages, &mut filer, &ledger, key, high_water, items)
        })
    }

    /// Sends what is due in the outbox until `stop` turns true, sleeping until the next due
    /// entry or until a commit queues a new reply. At stop it gives the outbox one last chance,
    /// bounded by [`SHUTDOWN_OUTBOX_GRACE`]; what is left waits for the next start.
    pub async fn sender<C: Courier>(&self, courier: &C, mut stop: watch::Receiver<bool>) -> SendReport {
        let mut total = SendReport::default();
        let mut add = |r: Result<SendReport, StoreError>| match r {
            Ok(r) => total.add(r),
            Err(e) => tracing::error!(error = %e, "outbox: store error"),
        };
        loop {
            if *stop.borrow() {
                match tokio::time::timeout(SHUTDOWN_OUTBOX_GRACE, send_due(&self.ledger, courier)).await {
                    Ok(r) => add(r),
                    Err(_) => {
                        tracing::warn!("outbox: stopped before everything was sent; the rest goes at the next start")
                    }
                }
                return total;
            }
            add(send_due(&self.ledger, courier).await);
            let next = lock(&self.ledger).next_outbox_due().ok().flatten();
            let wait = next
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600))
                .max(Duration::from_millis(50));
            tokio::select! {
                _ = self.outbox_ready.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// `mailroom once`: one pass, then the outbox's chance to send what it queued.
    pub async fn once<M: Mailbox, C: Courier>(
        &self,
        mailbox: &mut M,
        courier: &C,
        monitor: &dyn Monitor,
        stop: watch::Receiver<bool>,
    ) -> Result<(Report, SendReport), PipelineError> {
        let (done_tx, done_rx) = watch::channel(false);
        let work = async {
            let r = self.pass(mailbox, monitor, &stop).await;
            let _ = done_tx.send(true);
            r
        };
        let (report, sent) = tokio::join!(work, self.sender(courier, done_rx));
        Ok((report?, sent))
    }

    /// `mailroom run`: one watch loop per folder (see [`Pipeline::watch`]) and the outbox sender,
    /// until `stop` turns true. The watchdog is pinged only while every loop is alive.
    pub async fn run<M, C, F, Fut>(
        &self,
        connectors: Vec<F>,
        courier: &C,
        poll_interval: Duration,
        monitor: &dyn Monitor,
        stop: watch::Receiver<bool>,
    ) where
        M: Mailbox,
        C: Courier,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<M, MailboxError>>,
    {
        let liveness = Liveness::new(connectors.len(), monitor.watchdog_interval());
        let watchers = connectors
            .into_iter()
            .enumerate()
            .map(|(slot, connect)| self.watch(connect, poll_interval, monitor, &liveness, slot, stop.clone()));
        tokio::join!(futures::future::join_all(watchers), self.sender(courier, stop.clone()));
        monitor.stopping();
    }

    /// One folder: a pass, then wait for the server to announce new mail (IDLE) or for the poll
    /// interval, then another pass, until `stop` turns true. A lost connection is replaced with
    /// backoff and jitter, for ever; failures are logged once per change of state, not per try.
    async fn watch<M, F, Fut>(
        &self,
        mut connect: F,
        poll_interval: Duration,
        monitor: &dyn Monitor,
        liveness: &Liveness,
        slot: usize,
        mut stop: watch::Receiver<bool>,
    ) where
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
                    let report = self.pass(&mut mailbox, monitor, &stop).await?;
                    monitor.status(&self.status_line(&report));
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
    fn status_line(&self, last: &Report) -> String {
        match lock(&self.ledger).totals() {
            Ok(t) => format!(
                "watching; {} filed, {} quarantined, outbox {} waiting, {} failed; last pass fetched {}",
                t.filed,
                t.quarantined,
                t.outbox_pending,
                t.outbox_failed + t.outbox_uncertain,
                last.fetched
            ),
            Err(e) => format!("watching; store unreadable: {e}"),
        }
    }
}

/// The watchdog is pinged only when every watch loop has shown life within two intervals, so one
/// stuck folder is enough for systemd to restart the daemon.
struct Liveness {
    every: Duration,
    started: std::time::Instant,
    last_ms: Vec<std::sync::atomic::AtomicU64>,
}

impl Liveness {
    fn new(loops: usize, watchdog: Option<Duration>) -> Liveness {
        Liveness {
            every: watchdog.unwrap_or(Duration::from_secs(3600)),
            started: std::time::Instant::now(),
            last_ms: (0..loops).map(|_| std::sync::atomic::AtomicU64::new(0)).collect(),
        }
    }

    fn alive(&self, slot: usize, monitor: &dyn Monitor) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms[slot].store(now, Relaxed);
        let fresh = (self.every * 2).as_millis() as u64;
        if self.last_ms.iter().all(|t| now.saturating_sub(t.load(Relaxed)) <= fresh) {
            monitor.watchdog();
        }
    }
}

/// How long the outbox may keep sending after a stop was asked for: well below the unit's
/// `TimeoutStopSec`, so a stop never turns into a kill.
pub const SHUTDOWN_OUTBOX_GRACE: Duration = Duration::from_secs(10);

/// Cuts the envelopes into batches of at most `messages` messages and `bytes` bytes
/// (a single larger message makes a batch of its own).
fn plan_batches(envelopes: &[Envelope], limits: BatchLimits) -> Vec<&[Envelope]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, e) in envelopes.iter().enumerate() {
        let size = if e.size > limits.max_message_bytes { 0 } else { e.size };
        let count = i - start;
        if count > 0 && (count >= limits.messages || bytes + size > limits.bytes) {
            out.push(&envelopes[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < envelopes.len() {
        out.push(&envelopes[start..]);
    }
    out
}

/// What the store says about earlier replies, plus what this batch has queued (not yet committed).
#[derive(Default)]
struct BatchReplies {
    queued: std::collections::HashMap<String, ReplyKind>,
    cap_warned: bool,
}

impl BatchReplies {
    fn history<L: Ledger>(&self, ledger: &L, address: &str) -> Result<History, StoreError> {
        let now = Utc::now();
        let last_reply = match self.queued.get(address) {
            Some(kind) => Some((now, *kind)),
            None => ledger
                .last_reply_to(address)?
                .map(|(at, kind)| (at, ReplyKind::parse(&kind).unwrap_or(ReplyKind::Complete))),
        };
        let replies_last_hour = ledger.replies_since(now - chrono::Duration::hours(1))? + self.queued.len() as u64;
        Ok(History { last_reply, replies_last_hour })
    }

    fn queued(&mut self, address: &str, kind: ReplyKind) {
        self.queued.insert(address.to_owned(), kind);
    }

    fn warn_cap_once(&mut self) {
        if !self.cap_warned {
            tracing::warn!("the hourly reply cap is reached: further replies are held back and reported");
            self.cap_warned = true;
        }
    }
}

/// Stage 2 for a batch, on up to [`UNDERSTAND_THREADS`] threads, handing each message to `file`
/// in the batch's order as soon as it is understood: understanding is a pure function of each
/// message and decoding a backlog's attachments is the pipeline's largest CPU cost, so the
/// workers parse ahead while the caller files. A bounded channel keeps only a few understood
/// messages in memory. An error from `file` stops the workers and is returned.
fn understand_each(
    items: Vec<Incoming>,
    rules: &Rules,
    mailbox: &MailboxKey,
    mut file: impl FnMut(u32, Understood, Option<Vec<u8>>) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    let one = |item: Incoming| match item {
        Incoming::Downloaded { uid, internal_date, raw } => (uid, understand(&raw, internal_date, rules), Some(raw)),
        Incoming::TooLarge(env) => (
            env.uid,
            Understood::Quarantine(Quarantine {
                sha256: sha256_hex(format!("too-large:{}:{}", mailbox.name, env.uid).as_bytes()),
                message_id: None,
                received_at: env.internal_date.unwrap_or_else(Utc::now),
                reason: format!(
                    "announced size {} bytes is over limits.max_message_bytes; not downloaded, left in the mailbox",
                    env.size
                ),
            }),
            None,
        ),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(UNDERSTAND_THREADS).min(items.len());
    if threads < 2 {
        for item in items {
            let (uid, understood, raw) = one(item);
            file(uid, understood, raw)?;
        }
        return Ok(());
    }
    let slots: Vec<Mutex<Option<Incoming>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(threads * 2);
        for _ in 0..threads {
            let (tx, slots, next, one) = (tx.clone(), &slots, &next, &one);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = slots.get(i).and_then(|slot| lock_plain(slot).take()) else { break };
                    // The receiver is gone when filing failed: stop quietly.
                    if tx.send((i, one(item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut wanted = 0;
        for (i, understood) in rx {
            waiting.insert(i, understood);
            while let Some((uid, understood, raw)) = waiting.remove(&wanted) {
                file(uid, understood, raw)?;
                wanted += 1;
            }
        }
        Ok(())
    })
}

fn lock_plain<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Threads that understand a batch at once (capped by the machine's cores).
const UNDERSTAND_THREADS: usize = 4;

fn process_batch<L: Ledger>(
    stages: &Stages,
    filer: &mut Filer,
    ledger: &Arc<Mutex<L>>,
    mailbox: MailboxKey,
    high_water: u32,
    items: Vec<Incoming>,
) -> Result<(Report, Vec<u32>), PipelineError> {
    let first_start = lock(ledger).first_start();
    let mut report = Report::default();
    let mut records = Vec::with_capacity(items.len());
    let mut seen_sha: HashSet<String> = HashSet::new();
    let mut seen_mid: HashSet<String> = HashSet::new();
    let mut replies = BatchReplies::default();
    // A batch that failed before its commit left files behind; they are leftovers now.
    filer.discard();
    understand_each(items, &stages.rules, &mailbox, |uid, understood, raw| {
        report.fetched += 1;
        let sha = understood.sha256().to_owned();
        let mid = understood.message_id().map(str::to_owned);
        let dup_in_batch = seen_sha.contains(&sha) || mid.as_ref().is_some_and(|m| seen_mid.contains(m));
        let dup_of = if dup_in_batch { Some(-1) } else { lock(ledger).find_duplicate(&sha, mid.as_deref())? };
        seen_sha.insert(sha.clone());
        if let Some(m) = &mid {
            seen_mid.insert(m.clone());
        }
        let span = tracing::info_span!("message", uid, sha = &sha[..12]);
        let _enter = span.enter();
        let record = if let Some(original) = dup_of {
            report.duplicates += 1;
            tracing::info!(outcome = "duplicate", "already recorded; not filed or answered again");
            MessageRecord::not_filed(
                uid,
                sha,
                mid,
                Utc::now(),
                Outcome::Duplicate,
                if original < 0 {
                    "same message twice in one fetch".into()
                } else {
                    format!("same message as record {original}")
                },
                None,
            )
        } else {
            match understood {
                Understood::Quarantine(q) => {
                    let path = filer.file_quarantine(&q, raw.as_deref())?;
                    report.quarantined += 1;
                    tracing::warn!(outcome = "quarantined", reason = %q.reason, "message quarantined");
                    MessageRecord::not_filed(
                        uid,
                        q.sha256,
                        q.message_id,
                        q.received_at,
                        Outcome::Quarantined,
                        q.reason,
                        Some(path),
                    )
                }
                Understood::Application(app) => {
                    let raw = raw.as_deref().unwrap_or_default();
                    let committed = lock(ledger).committed_in_folder(&Filer::folder_key(&app))?;
                    let filed = filer.file_application(&app, raw, &committed)?;
                    let history = replies.history(&*lock(ledger), &app.candidate.email)?;
                    let decision = stages.replier.decide(&app, &filed, first_start, &history);
                    report.filed += 1;
                    let outbox = match &decision {
                        ReplyDecision::Queue(mail, kind) => {
                            report.replies_queued += 1;
                            replies.queued(&app.candidate.email, *kind);
                            Some((**mail).clone())
                        }
                        ReplyDecision::Skip(reason) => {
                            report.replies_skipped += 1;
                            if reason.starts_with(CAP_REASON) {
                                replies.warn_cap_once();
                            }
                            None
                        }
                    };
                    let state = if !app.unsure.is_empty() {
                        format!("unsure {}", app.unsure.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
                    } else if app.missing.is_empty() {
                        "complete".to_owned()
                    } else {
                        format!("missing {}", app.missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
                    };
                    tracing::info!(outcome = "filed", documents = filed.application.documents.len(), state = %state, reply = outbox.is_some(), "application filed");
                    MessageRecord {
                        uid,
                        sha256: app.sha256.clone(),
                        message_id: app.message_id.clone(),
                        received_at: app.received_at,
                        outcome: Outcome::Filed,
                        reason: None,
                        candidate: Some(app.candidate.email.clone()),
                        candidate_name: Some(app.candidate.display()),
                        posting: Some(app.posting.slug.clone()),
                        missing: app.missing.clone(),
                        repeat: filed.application.repeat,
                        filed: Some(filed.application.clone()),
                        path: Some(filed.folder.clone()),
                        reply: decision.note(),
                        documents: filed.application.documents.clone(),
                        outbox,
                    }
                }
            }
        };
        records.push(record);
        Ok(())
    })?;
    filer.sync()?;
    let committed: Vec<u32> = records.iter().map(|r| r.uid).collect();
    lock(ledger).commit(&Batch { mailbox, high_water, records })?;
    Ok((report, committed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(uid: u32, size: u64) -> Envelope {
        Envelope { uid, size, internal_date: None }
    }

    fn incoming(n: u32) -> Vec<Incoming> {
        (1..=n)
            .map(|uid| Incoming::Downloaded {
                uid,
                internal_date: None,
                raw: format!("Return-Path: <p{uid}@example.test>\r\nFrom: p{uid}@example.test\r\nSubject: {uid}\r\n\r\nBonjour\r\n")
                    .into_bytes(),
            })
            .collect()
    }

    fn rules() -> Rules {
        Rules {
            postings: Vec::new(),
            limits: Default::default(),
            default_language: "fr".into(),
            own_addresses: Vec::new(),
            text: crate::understand::extract::TextReader::with_program(None),
        }
    }

    #[test]
    fn understood_messages_are_filed_in_batch_order() {
        let key = MailboxKey { name: "test".into(), uidvalidity: 1 };
        let mut seen = Vec::new();
        understand_each(incoming(50), &rules(), &key, |uid, understood, _| {
            assert!(matches!(understood, Understood::Application(_)));
            seen.push(uid);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn a_filing_error_stops_the_workers_and_is_returned() {
        let key = MailboxKey { name: "test".into(), uidvalidity: 1 };
        let mut filed = 0;
        let result = understand_each(incoming(200), &rules(), &key, |uid, _, _| {
            if uid == 3 {
                return Err(PipelineError::Worker("disk full".into()));
            }
            filed += 1;
            Ok(())
        });
        assert!(matches!(result, Err(PipelineError::Worker(_))));
        assert_eq!(filed, 2);
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let limits = BatchLimits { messages: 3, bytes: 100, max_message_bytes: 1000 };
        let envs: Vec<_> = (1..=7).map(|u| env(u, 10)).collect();
        let sizes: Vec<usize> = plan_batches(&envs, limits).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        let envs = vec![env(1, 60), env(2, 60), env(3, 500), env(4, 10)];
        let sizes: Vec<usize> = plan_batches(&envs, limits).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1], "60+60 > 100 splits; a message over the byte budget is a batch of its own");
        // Oversize messages are not downloaded, so they cost nothing in the byte budget.
        let envs = vec![env(1, 90), env(2, 5000), env(3, 5)];
        assert_eq!(plan_batches(&envs, limits).len(), 1);
        assert!(plan_batches(&[], limits).is_empty());
    }
}
