//! The pipeline: **fetch → understand → file → acknowledge → record**, then flag.
//!
//! This is the only place that knows the order of the stages. Messages travel in batches
//! (bounded by count and bytes) so that a large backlog costs one IMAP round trip and one fsync of
//! the store per batch, not per message. For each batch, [`Pipeline::pass`] downloads, and
//! [`process_batch`] runs one small function per stage for each message, in UID order:
//!
//! 1. **fetch** ([`fetch`], [`crate::mailbox`]): bodies of the UIDs above the high-water mark; a
//!    message over `limits.max_message_bytes` is never downloaded, its announced size is enough to
//!    set it aside;
//! 2. **understand** ([`crate::understand`]): pure, one typed outcome per message; run on a few
//!    threads as soon as a batch is downloaded (while the batch before it is still being filed),
//!    handed on in order ([`InOrder`]). A message that needs OCR is read aside instead
//!    ([`crate::understand::aside`]) and filed by the first commit after it is read; the
//!    high-water mark stays below it until then, and a later message of the same sender waits
//!    behind it;
//! 3. **file** ([`file`], [`set_aside`], [`crate::filing`]): documents, `.eml`, metadata, or the
//!    quarantine; the batch is made durable at once just before the commit;
//! 4. **acknowledge** ([`acknowledge`], [`crate::reply`]): decide and render; nothing is sent;
//! 5. **record** ([`crate::store`]): one transaction with every row, outbox entry and the new
//!    high-water mark. This is the commit point.
//!
//! After the commit the messages get our keyword on the server and the outbox sender is woken
//! ([`crate::outbox`]), and so is the publisher ([`crate::publish`]) when `[publish]` is
//! configured: the commit queued the application's files for the team's cloud folder. A crash anywhere before the commit replays the batch: filing is idempotent
//! and nothing was sent. A crash after it replays nothing.
//!
//! Errors act: a message whose filing fails for good (something in the way at its path) is set
//! aside with its reason and the batch moves on; a transient failure (a full disk) commits the
//! messages before it and ends the pass with the error, which the caller retries with backoff.
//! A failure that is the message's own (not the disk's) is counted in the store, and after
//! [`SET_ASIDE_AFTER`] of them the message is set aside too, if setting it aside works. Whatever
//! fails, what the failed part of a batch wrote is taken back ([`Filer::undo_since`]): nothing
//! stays in a folder that the store does not hold, and a full disk gets its space back.
//!
//! A download that times out (no byte for `imap.timeout_secs`) makes the next batches smaller,
//! and they grow back once downloads go through again. A stop cuts the network I/O in progress
//! (a download, the keyword) at once; the batch being filed locally finishes and commits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::antivirus::{self, Clamd, Decision, Scanner};
use crate::config::{Config, OnUnreachable};
use crate::error::{Classified, Retry};
use crate::filing::{Filed, Filer, FilingError, Mark};
use crate::mailbox::{Envelope, Mailbox, MailboxError};
use crate::reason::{QuarantineReason, SkipReason};
use crate::reply::{History, Replier, ReplyDecision};
use crate::service::{Monitor, unless_stopped};
use crate::store::{
    Area, Batch, Block, DuplicateOf, FiledRecord, Ledger, MailboxKey, MessageRecord, Outcome, PublishFile, StoreError,
};
use crate::understand::aside::{Aside, AsideQueue, ReadAside};
use crate::understand::{Application, Attention, Quarantine, Rules, Understood, sha256_hex, understand};

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
    /// clamd could not be asked and `antivirus.on_unreachable = "fail_closed"`: nothing is filed
    /// unscanned; the message waits and the pass is tried again.
    #[error(
        "antivirus: clamd cannot be reached ({error}); the message waits (antivirus.on_unreachable = \"fail_closed\")"
    )]
    Antivirus { error: String, retry: Retry },
}

impl Classified for PipelineError {
    fn retry(&self) -> Retry {
        match self {
            PipelineError::Mailbox(e) => e.retry(),
            PipelineError::Filing(e) => e.retry(),
            PipelineError::Store(e) => e.retry(),
            PipelineError::Worker(_) => Retry::Permanent,
            PipelineError::Antivirus { retry, .. } => *retry,
        }
    }
}

/// After this many failed tries (each its own pass, with backoff between passes), a message
/// whose filing keeps failing for a reason of its own is set aside in `_quarantine/`.
pub const SET_ASIDE_AFTER: usize = 5;

/// How many times batches may halve after downloads time out (100 messages → 1; 8 MiB → 2 KiB).
const MAX_SHRINK: u32 = 12;
/// Downloads that go through at a reduced size before batches double again.
const GROW_AFTER: u32 = 8;

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
    /// From addresses erased on request: not filed (see [`withheld`]).
    pub forgotten: usize,
}

impl Report {
    pub fn add(&mut self, o: Report) {
        self.fetched += o.fetched;
        self.filed += o.filed;
        self.quarantined += o.quarantined;
        self.duplicates += o.duplicates;
        self.replies_queued += o.replies_queued;
        self.replies_skipped += o.replies_skipped;
        self.forgotten += o.forgotten;
    }
}

/// One message as it enters understanding.
enum Incoming {
    Downloaded {
        uid: u32,
        internal_date: Option<DateTime<Utc>>,
        raw: Vec<u8>,
    },
    /// Over the size limit: judged from its envelope, never downloaded.
    TooLarge(Envelope),
}

/// One message as stage 2 hands it on: its UID, what it is, and its bytes (if downloaded).
type Understanding = (u32, Understood, Option<Vec<u8>>);

/// What a batch's commit reports: counts, and the UIDs committed (to flag on the server).
type BatchResult = Result<(Report, Vec<u32>), PipelineError>;

/// How messages are understood and answered: what a reload of the configuration replaces.
pub struct Rulebook {
    pub rules: Rules,
    pub replier: Replier,
}

/// The stages that run on the blocking worker, and what they share.
struct Stages<L> {
    /// Taken once per batch, so a reload swaps it between batches, never within one.
    rulebook: RwLock<Arc<Rulebook>>,
    store: L,
    /// One batch at a time: the filer's batch state (files to make durable) is per batch.
    filer: Mutex<Filer>,
    /// `[publish]` is configured: filed folders are queued for the cloud at the commit.
    publish: bool,
    /// `[antivirus]`: every document is scanned before it is filed; `None`: off.
    scanner: Option<Arc<dyn Scanner>>,
    on_unreachable: OnUnreachable,
}

/// The pipeline over one store and one data root.
pub struct Pipeline<L: Ledger> {
    stages: Arc<Stages<L>>,
    limits: BatchLimits,
    /// Batches are `limits` halved this many times (after downloads that timed out).
    shrink: AtomicU32,
    /// Downloads that went through since the last change of `shrink`.
    good_downloads: AtomicU32,
    keyword: String,
    /// Woken after each commit that queued a reply.
    outbox_ready: Arc<Notify>,
    /// Woken after each commit that filed something (the publisher waits on it).
    publish_ready: Arc<Notify>,
    /// Woken when a pass finds new messages and replies are on: an SMTP connection can be opened
    /// while they are filed ([`crate::courier::Courier::warm`]).
    incoming: Arc<Notify>,
    /// Batches committed since start: work done (the daemon gives memory back after it).
    committed: AtomicU64,
}

impl<L: Ledger> Pipeline<L> {
    pub fn new(cfg: &Config, replier: Replier, store: L) -> Pipeline<L> {
        Pipeline {
            stages: Arc::new(Stages {
                rulebook: RwLock::new(Arc::new(Rulebook { rules: Rules::from_config(cfg), replier })),
                store,
                filer: Mutex::new(Filer::new(&cfg.storage.data_dir)),
                publish: cfg.publish.enabled(),
                scanner: Clamd::from_config(&cfg.antivirus).map(|c| Arc::new(c) as Arc<dyn Scanner>),
                on_unreachable: cfg.antivirus.on_unreachable,
            }),
            limits: BatchLimits {
                messages: cfg.imap.batch_messages,
                bytes: cfg.imap.batch_bytes,
                max_message_bytes: cfg.limits.max_message_bytes,
            },
            shrink: AtomicU32::new(0),
            good_downloads: AtomicU32::new(0),
            keyword: cfg.imap.filed_keyword.clone(),
            outbox_ready: Arc::new(Notify::new()),
            publish_ready: Arc::new(Notify::new()),
            incoming: Arc::new(Notify::new()),
            committed: AtomicU64::new(0),
        }
    }

    pub fn store(&self) -> &L {
        &self.stages.store
    }

    /// Scans with `scanner` instead of the configured clamd (tests: a fake antivirus).
    pub fn with_scanner(mut self, scanner: Arc<dyn Scanner>, on_unreachable: OnUnreachable) -> Pipeline<L> {
        let stages = Arc::get_mut(&mut self.stages).expect("a new pipeline's stages are not shared yet");
        stages.scanner = Some(scanner);
        stages.on_unreachable = on_unreachable;
        self
    }

    /// Reads documents with `text` instead of this machine's readers (tests: OCR programs of
    /// their own).
    pub fn with_text_reader(mut self, text: crate::understand::extract::TextReader) -> Pipeline<L> {
        let stages = Arc::get_mut(&mut self.stages).expect("a new pipeline's stages are not shared yet");
        let book = stages.rulebook.get_mut().unwrap_or_else(|p| p.into_inner());
        Arc::get_mut(book).expect("a new pipeline's rulebook is not shared yet").rules.text = text;
        self
    }

    /// The rules and templates in force.
    pub fn rulebook(&self) -> Arc<Rulebook> {
        Arc::clone(&self.stages.rulebook.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts a new rulebook in force from the next batch on (the batch in hand keeps the old one).
    pub fn replace_rulebook(&self, rulebook: Rulebook) {
        *self.stages.rulebook.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rulebook);
    }

    /// Notified after each commit that queued mail; the outbox sender waits on it.
    pub fn outbox_ready(&self) -> &Arc<Notify> {
        &self.outbox_ready
    }

    /// The batch limits now: the configured ones, halved after downloads that timed out.
    fn current_limits(&self) -> BatchLimits {
        let shrink = self.shrink.load(Ordering::Relaxed);
        BatchLimits {
            messages: (self.limits.messages >> shrink).max(1),
            bytes: (self.limits.bytes >> shrink).max(1),
            max_message_bytes: self.limits.max_message_bytes,
        }
    }

    /// A download timed out: the next batches are half as large.
    fn shrink_batches(&self) {
        let shrink = (self.shrink.load(Ordering::Relaxed) + 1).min(MAX_SHRINK);
        self.shrink.store(shrink, Ordering::Relaxed);
        self.good_downloads.store(0, Ordering::Relaxed);
        let now = self.current_limits();
        tracing::warn!(
            batch_messages = now.messages,
            batch_bytes = now.bytes,
            "a download timed out: the next batches are smaller"
        );
    }

    /// A download went through: after a few in a row, batches grow back towards the configured size.
    fn download_went_through(&self) {
        let shrink = self.shrink.load(Ordering::Relaxed);
        if shrink == 0 || self.good_downloads.fetch_add(1, Ordering::Relaxed) + 1 < GROW_AFTER {
            return;
        }
        self.shrink.store(shrink - 1, Ordering::Relaxed);
        self.good_downloads.store(0, Ordering::Relaxed);
        tracing::info!(
            batch_messages = self.current_limits().messages,
            "downloads go through again: batches grow back"
        );
    }

    /// Notified after each commit that filed something; the publisher waits on it.
    pub fn publish_ready(&self) -> &Arc<Notify> {
        &self.publish_ready
    }

    /// Batches committed since this pipeline was made (it only grows).
    pub fn batches_committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Notified when a pass finds new messages while replies are on, before they are downloaded.
    pub fn incoming(&self) -> &Arc<Notify> {
        &self.incoming
    }

    /// One pass over the folder: everything above the high-water mark, batch after batch.
    /// Messages that need OCR are read aside ([`crate::understand::aside`]) while the ones after
    /// them are filed, and filed as each is read; the pass ends when none is left, and meanwhile
    /// lists new mail every [`NEW_MAIL_EVERY`] and files it too.
    /// Stops early when `stop` turns true: between batches, or by dropping a download in progress.
    pub async fn pass<M: Mailbox>(
        &self,
        mailbox: &mut M,
        monitor: &dyn Monitor,
        stop: &watch::Receiver<bool>,
    ) -> Result<Report, PipelineError> {
        let Some(selected) = unless_stopped(stop, mailbox.select()).await else { return Ok(Report::default()) };
        let selected = selected?;
        let key = MailboxKey { name: mailbox.name().to_owned(), uidvalidity: selected.uid_validity };
        let store = &self.stages.store;
        store.record_contact(&key, Utc::now())?;
        let high_water = store.high_water(&key)?;
        let Some(envelopes) = unless_stopped(stop, mailbox.list_after(high_water)).await else {
            return Ok(Report::default());
        };
        let mut envelopes = envelopes?;
        let mut report = Report::default();
        let Some(mut listed_last) = envelopes.last().map(|e| e.uid) else { return Ok(report) };
        // Messages recorded above the mark: the ones committed after a message read aside that a
        // crash or a stop then lost. They are skipped; the mark may pass them.
        let recorded = store.recorded_after(&key, high_water)?;
        if !recorded.is_empty() {
            envelopes.retain(|e| !recorded.contains(&e.uid));
            tracing::info!(skipped = recorded.len(), "messages recorded before, above the high-water mark: skipped");
            if envelopes.is_empty() {
                store.commit(&Batch { mailbox: key.clone(), high_water: listed_last, records: Vec::new() })?;
                return Ok(report);
            }
        }
        let mut progress = Progress { done: 0, total: envelopes.len() };
        // The size limit and the replies of the rulebook in force when the pass starts; batch
        // sizes as they adapt.
        let book_at_start = self.rulebook();
        let limits =
            BatchLimits { max_message_bytes: book_at_start.rules.limits.max_message_bytes, ..self.current_limits() };
        tracing::info!(mailbox = %key.name, uidvalidity = key.uidvalidity, after_uid = high_water, new = progress.total, "new messages");
        if book_at_start.replier.enabled() {
            self.incoming.notify_one();
        }
        let aside = Aside::new(ASIDE_THREADS, ASIDE_MESSAGES, ASIDE_BYTES);
        let queue = aside.queue();
        let mut todo = envelopes.clone();
        let mut listed_at = std::time::Instant::now();
        loop {
            if !todo.is_empty() {
                self.round(
                    mailbox,
                    &todo,
                    limits,
                    &queue,
                    &key,
                    listed_last,
                    &mut report,
                    &mut progress,
                    monitor,
                    stop,
                )
                .await?;
            }
            if *stop.borrow() {
                break;
            }
            // The messages left while the lane was full: downloaded again once it is empty.
            if queue.is_empty() {
                let left = queue.take_left();
                if left.is_empty() {
                    break;
                }
                let again: Vec<Envelope> = envelopes.iter().filter(|e| left.contains(&e.uid)).copied().collect();
                if again.len() == todo.len() && again.iter().zip(&todo).all(|(a, t)| a.uid == t.uid) {
                    // Not one of them went through the lane: they wait for the next pass.
                    tracing::warn!(
                        left = again.len(),
                        "messages that need OCR could not be read aside; the next pass tries again"
                    );
                    break;
                }
                tracing::info!(again = again.len(), "messages that waited for room in the OCR lane: downloaded again");
                todo = again;
                continue;
            }
            // Scans are being read: each is filed as soon as it is read, and new mail meanwhile is
            // listed now and then and filed at once, not held up by them.
            todo = Vec::new();
            self.file_aside(mailbox, &aside, &key, listed_last, &mut report, &progress, monitor, stop).await?;
            if *stop.borrow() {
                break;
            }
            if listed_at.elapsed() >= NEW_MAIL_EVERY {
                listed_at = std::time::Instant::now();
                let Some(new) = unless_stopped(stop, mailbox.list_after(listed_last)).await else { break };
                let new = new?;
                if let Some(last) = new.last() {
                    listed_last = last.uid;
                    progress.total += new.len();
                    tracing::info!(new = new.len(), read_aside = queue.len(), "new messages while scans are read");
                    if book_at_start.replier.enabled() {
                        self.incoming.notify_one();
                    }
                    envelopes.extend_from_slice(&new);
                    todo = new;
                }
            }
        }
        Ok(report)
    }

    /// One round of a pass over `envelopes`, batch after batch; each batch's commit also files the
    /// messages read aside since the one before.
    #[allow(clippy::too_many_arguments)]
    async fn round<M: Mailbox>(
        &self,
        mailbox: &mut M,
        envelopes: &[Envelope],
        limits: BatchLimits,
        aside: &AsideQueue,
        key: &MailboxKey,
        listed_last: u32,
        report: &mut Report,
        progress: &mut Progress,
        monitor: &dyn Monitor,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        // While batch k is understood, filed and committed on a blocking thread, batch k+1 is
        // downloaded, and then understood: the network, the cores and the disk work at the same
        // time. Commits stay in UID order (except for the messages read aside), and at most two
        // batches are in memory.
        let mut in_flight: Option<(tokio::task::JoinHandle<BatchResult>, usize)> = None;
        let mut outcome = Ok(());
        let batches = plan_batches(envelopes, limits);
        for (i, batch) in batches.iter().enumerate() {
            if *stop.borrow() {
                tracing::info!(done = progress.done, total = progress.total, "stopping between batches");
                break;
            }
            let items = match unless_stopped(stop, fetch(mailbox, batch, limits.max_message_bytes)).await {
                None => {
                    tracing::info!(
                        done = progress.done,
                        total = progress.total,
                        "stopping: the download in progress is dropped"
                    );
                    break;
                }
                Some(Ok(items)) => {
                    self.download_went_through();
                    tracing::debug!(messages = items.len(), "batch downloaded");
                    items
                }
                Some(Err(e)) => {
                    if matches!(e, PipelineError::Mailbox(MailboxError::Timeout { .. })) {
                        self.shrink_batches();
                    }
                    outcome = Err(e);
                    break;
                }
            };
            // Its understanding starts now, on threads of its own, while the batch before it is
            // still being filed: the cores do not wait for that batch's commit.
            let book = self.rulebook();
            let understanding = InOrder::new(items, &book.rules, key, Some(aside));
            if let Some((handle, len)) = in_flight.take() {
                progress.done += len;
                if let Err(e) = self.finish(mailbox, handle.await, report, progress, monitor, stop).await {
                    // Dropping it joins its workers: not on the runtime's thread.
                    drop(tokio::task::spawn_blocking(move || drop(understanding)));
                    return Err(e);
                }
            }
            // The batch covers the UIDs up to the next one's first: any between were recorded.
            let high_water = batches.get(i + 1).and_then(|b| b.first()).map_or(listed_last, |e| e.uid - 1);
            let (stages, key, aside) = (Arc::clone(&self.stages), key.clone(), aside.clone());
            let handle = tokio::task::spawn_blocking(move || {
                process_batch(&stages, key, high_water, &book, understanding, &aside)
            });
            in_flight = Some((handle, batch.len()));
        }
        if let Some((handle, len)) = in_flight.take() {
            progress.done += len;
            self.finish(mailbox, handle.await, report, progress, monitor, stop).await?;
        }
        outcome
    }

    /// Files the messages read aside as they are read, waiting at most [`NEW_MAIL_EVERY`] for
    /// one. A stop closes the lane: what is still read aside is left to the next pass (the
    /// high-water mark is below it).
    #[allow(clippy::too_many_arguments)]
    async fn file_aside<M: Mailbox>(
        &self,
        mailbox: &mut M,
        aside: &Aside,
        key: &MailboxKey,
        listed_last: u32,
        report: &mut Report,
        progress: &Progress,
        monitor: &dyn Monitor,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let queue = aside.queue();
        tracing::debug!(read_aside = queue.len(), "waiting for messages read aside (OCR)");
        let (stages, key, book, q) = (Arc::clone(&self.stages), key.clone(), self.rulebook(), queue.clone());
        let mut handle = tokio::task::spawn_blocking(move || {
            // Before any lock: a purge may plan while OCR runs.
            if !q.wait(NEW_MAIL_EVERY) {
                return Ok((Report::default(), Vec::new()));
            }
            process_batch(&stages, key, listed_last, &book, InOrder::Empty, &q)
        });
        let joined = match unless_stopped(stop, &mut handle).await {
            Some(joined) => joined,
            None => {
                // A message being filed now still commits; the ones being read wait for the next pass.
                tracing::info!(
                    read_aside = queue.len(),
                    "stopping: the messages still read aside wait for the next pass"
                );
                aside.close();
                handle.await
            }
        };
        self.finish(mailbox, joined, report, progress, monitor, stop).await
    }

    /// Waits for a batch's commit, then reports it, wakes the sender and flags the messages.
    #[allow(clippy::too_many_arguments)]
    async fn finish<M: Mailbox>(
        &self,
        mailbox: &mut M,
        joined: Result<BatchResult, tokio::task::JoinError>,
        report: &mut Report,
        progress: &Progress,
        monitor: &dyn Monitor,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let (batch_report, committed) = joined.map_err(|e| PipelineError::Worker(e.to_string()))??;
        // Messages downloaded again after waiting for room in the OCR lane count once.
        let (done, total) = (progress.done.min(progress.total), progress.total);
        monitor.progress(done, total);
        report.add(batch_report);
        if committed.is_empty() {
            // Every message of the batch went to the OCR lane (or nothing was read aside yet).
            return Ok(());
        }
        self.committed.fetch_add(1, Ordering::Relaxed);
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
        if batch_report.filed > 0 {
            self.publish_ready.notify_one();
        }
        // The keyword is a courtesy to people reading the mailbox; the store is the truth.
        if let Some(Err(e)) = unless_stopped(stop, mailbox.add_keyword(&committed, &self.keyword)).await {
            tracing::warn!(error = %e, "could not set the filed keyword; continuing");
        }
        Ok(())
    }
}

/// Stage 1: downloads one batch (never the messages over the size limit).
async fn fetch<M: Mailbox>(
    mailbox: &mut M,
    batch: &[Envelope],
    max_message_bytes: u64,
) -> Result<Vec<Incoming>, PipelineError> {
    let wanted: Vec<u32> = batch.iter().filter(|e| e.size <= max_message_bytes).map(|e| e.uid).collect();
    let mut downloaded = mailbox.fetch(&wanted).await?.into_iter();
    let mut items = Vec::with_capacity(batch.len());
    for env in batch {
        if env.size > max_message_bytes {
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

/// Stages 2–5 for one batch, on a blocking thread (parsing, hashing and fsync are not async).
/// Messages that need OCR were handed to `aside` by their understanding and are filed by a later
/// call, once read; the ones read since the last call are filed by this one, first. Returns the
/// counts and the UIDs committed.
fn process_batch<L: Ledger>(
    stages: &Stages<L>,
    mailbox: MailboxKey,
    high_water: u32,
    book: &Rulebook,
    mut understanding: InOrder,
    aside: &AsideQueue,
) -> BatchResult {
    // Held to the commit: a purge plans between batches, never around a filed, uncommitted one.
    let _filing = stages.store.filing_guard()?;
    let mut filer = stages.filer.lock().unwrap_or_else(|p| p.into_inner());
    // A batch that failed before its commit left files behind; they are leftovers now.
    filer.discard();
    let failing = stages.store.failing(&mailbox)?;
    let mut batch = BatchState::new(stages.store.first_start());
    let mut records = Vec::new();
    let mut stopped: Option<(u32, PipelineError)> = None;
    loop {
        // The messages read aside first: they came before the ones in hand.
        let (uid, understood, raw) = match aside.take() {
            Some(ReadAside { uid, understood: Ok(understood), raw, .. }) => (uid, understood, Some(raw)),
            Some(ReadAside { uid, understood: Err(panic), .. }) => {
                tracing::error!(uid, error = %panic, "understanding this message failed; the next pass tries again");
                stopped = Some((uid, PipelineError::Worker(panic)));
                break;
            }
            None => match understanding.next() {
                Some(Step::Ready((uid, Understood::Application(app), Some(raw))))
                    if aside.holds(&app.candidate.email) =>
                {
                    // One person's messages keep their order: this one waits behind theirs.
                    let sender = app.candidate.email.clone();
                    if !aside.follow(uid, sender.clone(), Understood::Application(app), raw) {
                        aside.leave(uid, Some(sender));
                    }
                    tracing::debug!(uid, "waits behind a message of the same sender read aside");
                    continue;
                }
                Some(Step::Ready(understanding)) => understanding,
                Some(Step::Aside(uid)) => {
                    tracing::debug!(uid, "needs OCR: read aside; the messages after it go on");
                    continue;
                }
                None => break,
            },
        };
        batch.report.fetched += 1;
        let span = tracing::info_span!("message", uid, sha = &understood.sha256()[..12]);
        let _enter = span.enter();
        tracing::trace!("understood");
        let mark = filer.mark();
        let result = match dedupe(&stages.store, &mut batch, &understood) {
            Ok(Some(of)) => Ok(duplicate(&mut batch, uid, &understood, of)),
            Ok(None) => match understood {
                Understood::Quarantine(q) => set_aside(&mut filer, &mut batch, uid, q, raw.as_deref()),
                Understood::Application(app) => match stages.store.privacy_block(&app.candidate.email) {
                    Ok(Some(block)) => withheld(&mut batch, uid, &app, block),
                    Err(e) => Err(e.into()),
                    Ok(None) => match failing.get(&uid) {
                        Some((tries, error)) if *tries as usize >= SET_ASIDE_AFTER => {
                            set_aside_after_tries(&mut filer, &mut batch, uid, &app, raw.as_deref(), *tries, error)
                        }
                        _ => match screen(stages, &app) {
                            Ok(Screened::File) => {
                                file_and_acknowledge(stages, &book.replier, &mut filer, &mut batch, uid, &app, raw)
                            }
                            Ok(Screened::SetAside(reason)) => {
                                let q = Quarantine {
                                    sha256: app.sha256.clone(),
                                    message_id: app.message_id.clone(),
                                    content_sha256: app.content_sha256.clone(),
                                    received_at: app.received_at,
                                    reason,
                                    attention: Some(Attention::DangerousAttachment),
                                };
                                set_aside(&mut filer, &mut batch, uid, q, raw.as_deref())
                            }
                            Err(e) => Err(e),
                        },
                    },
                },
            },
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(record) => records.push(record),
            Err(e) => {
                // The store will not hold this message: nothing of it may stay on disk.
                filer.undo_since(mark, |folder| stages.store.committed_in_folder(folder).ok());
                stopped = Some((uid, e));
                break;
            }
        }
    }
    // Its workers stop here, before the commit: a failure below returns at once.
    drop(understanding);
    // A transient failure: what came before it is committed, and the next pass starts at it.
    let high_water = match &stopped {
        Some((uid, _)) => uid.saturating_sub(1).min(high_water),
        None => high_water,
    };
    // Never past a message still read aside: a crash must replay it. (The ones after it that
    // commit now are recorded, and the next pass skips them.)
    let high_water = aside.lowest().map_or(high_water, |low| high_water.min(low.saturating_sub(1)));
    if !records.is_empty() || stopped.is_none() {
        let committed: Vec<u32> = records.iter().map(|r| r.uid).collect();
        let batch_record = Batch { mailbox: mailbox.clone(), high_water, records };
        let durable = filer.sync().map_err(PipelineError::from).and_then(|()| {
            tracing::trace!("files durable; committing");
            Ok(stages.store.commit(&batch_record)?)
        });
        if let Err(e) = durable {
            // A full disk fails here as often as while writing: take the whole batch back.
            filer.undo_since(Mark::START, |folder| stages.store.committed_in_folder(folder).ok());
            tracing::warn!(error = %e, transient = e.is_transient(), "the batch could not be committed; what it wrote is taken back");
            return Err(e);
        }
        filer.committed();
        if !failing.is_empty() {
            let _ = stages.store.forget_failures(&mailbox, high_water);
        }
        if stopped.is_none() {
            return Ok((batch.report, committed));
        }
    }
    let (uid, e) = stopped.expect("a batch that committed everything returned above");
    if is_the_messages_own(&e) {
        match stages.store.record_failure(&mailbox, uid, &e.to_string()) {
            Ok(tries) => tracing::warn!(
                uid,
                tries,
                set_aside_after = SET_ASIDE_AFTER,
                error = %e,
                "filing this message failed; the next pass tries again, and sets it aside after a few failures"
            ),
            Err(se) => {
                tracing::warn!(uid, error = %e, store_error = %se, "filing this message failed; could not count the try");
            }
        }
    } else {
        tracing::warn!(uid, error = %e, transient = e.is_transient(), "filing stopped at this message; the next pass starts here");
    }
    Err(e)
}

/// Whether a failure may be this message's own, so that it could keep failing for it alone,
/// rather than the machine's: a full disk, a quota or a busy store fail every message alike, and
/// must never set good mail aside.
fn is_the_messages_own(e: &PipelineError) -> bool {
    use std::io::ErrorKind::*;
    match e {
        PipelineError::Filing(f) => {
            !matches!(f.source.kind(), StorageFull | QuotaExceeded | OutOfMemory | Interrupted | ResourceBusy)
        }
        PipelineError::Mailbox(_)
        | PipelineError::Store(_)
        | PipelineError::Worker(_)
        | PipelineError::Antivirus { .. } => false,
    }
}

/// A message that failed [`SET_ASIDE_AFTER`] times in a row: set aside with the last error, if
/// that works (if it does not, it stays where it is and is tried again).
fn set_aside_after_tries(
    filer: &mut Filer,
    batch: &mut BatchState,
    uid: u32,
    app: &Application,
    raw: Option<&[u8]>,
    tries: u32,
    error: &str,
) -> Result<MessageRecord, PipelineError> {
    tracing::error!(tries, "this message keeps failing; setting it aside");
    let q = Quarantine {
        sha256: app.sha256.clone(),
        message_id: app.message_id.clone(),
        received_at: app.received_at,
        content_sha256: app.content_sha256.clone(),
        reason: QuarantineReason::Unfileable { error: error.to_owned(), attempts: tries },
        attention: None,
    };
    set_aside(filer, batch, uid, q, raw)
}

/// What screening says of an application.
enum Screened {
    File,
    SetAside(QuarantineReason),
}

/// Between stages 2 and 3: every document the application would file goes through the antivirus
/// ([`crate::antivirus`]) when one is configured. An infected message is set aside unanswered
/// (the digest lists it); one clamd could not scan is set aside too, unless
/// `antivirus.on_unreachable = "fail_open"`; when clamd cannot be reached at all, `fail_closed`
/// keeps the message waiting (an error for this pass) and `fail_open` files it, said in the log
/// and in `mailroom status`.
fn screen<L: Ledger>(stages: &Stages<L>, app: &Application) -> Result<Screened, PipelineError> {
    let Some(scanner) = stages.scanner.as_deref() else { return Ok(Screened::File) };
    let documents = app.filed_documents().map(|d| d.bytes.as_slice());
    let problem = |label: &str, message: &str| {
        let _ = stages.store.set_problem(Area::Antivirus, label, message);
    };
    match antivirus::decide(scanner, documents, stages.on_unreachable) {
        Decision::File => {
            let _ = stages.store.clear_problem(Area::Antivirus);
            Ok(Screened::File)
        }
        Decision::Infected { signature, .. } => {
            let _ = stages.store.clear_problem(Area::Antivirus);
            tracing::warn!(outcome = "infected", signature = %signature, "an attachment is infected: set aside, no reply");
            Ok(Screened::SetAside(QuarantineReason::Infected { signature }))
        }
        Decision::Unscannable { message, .. } if stages.on_unreachable == OnUnreachable::FailClosed => {
            tracing::warn!(error = %message, "clamd could not scan an attachment: set aside for a person");
            Ok(Screened::SetAside(QuarantineReason::Unscanned { error: message }))
        }
        Decision::Unscannable { message, .. } => {
            tracing::warn!(error = %message, "clamd could not scan an attachment: filed unscanned (fail_open)");
            Ok(Screened::File)
        }
        Decision::Wait { error, transient } => {
            problem("antivirus unreachable", &format!("{error}; messages wait (fail_closed)"));
            let retry = if transient { Retry::Transient } else { Retry::Permanent };
            Err(PipelineError::Antivirus { error, retry })
        }
        Decision::FileUnscanned { error } => {
            tracing::warn!(error = %error, "clamd cannot be reached: filed without a scan (antivirus.on_unreachable = \"fail_open\")");
            problem("antivirus unreachable", &format!("{error}; filing unscanned (fail_open)"));
            Ok(Screened::File)
        }
    }
}

/// Stages 3 and 4 for one application. A filing failure that will not go away (something in the
/// way at its path) sets the message aside instead, so it does not hold up the ones after it.
fn file_and_acknowledge<L: Ledger>(
    stages: &Stages<L>,
    replier: &Replier,
    filer: &mut Filer,
    batch: &mut BatchState,
    uid: u32,
    app: &Application,
    raw: Option<Vec<u8>>,
) -> Result<MessageRecord, PipelineError> {
    let raw = raw.unwrap_or_default();
    let filed = match file(&stages.store, filer, batch, app, &raw) {
        Ok(filed) => filed,
        Err(PipelineError::Filing(e)) if e.retry() == Retry::Permanent => {
            tracing::error!(error_kind = ?e.source.kind(), "this message cannot be filed; setting it aside");
            let q = Quarantine {
                sha256: app.sha256.clone(),
                message_id: app.message_id.clone(),
                content_sha256: app.content_sha256.clone(),
                received_at: app.received_at,
                reason: QuarantineReason::Unfileable { error: e.source.to_string(), attempts: 1 },
                attention: None,
            };
            return set_aside(filer, batch, uid, q, Some(&raw));
        }
        Err(e) => return Err(e),
    };
    tracing::trace!("filed; deciding the reply");
    let decision = acknowledge(replier, &stages.store, batch, app, &filed)?;
    let publish = if stages.publish { crate::publish::files_of(&filed.application) } else { Vec::new() };
    Ok(record(batch, uid, app, filed, decision, publish))
}

/// Before stage 3, privacy: an address erased on request (`candidate forget`) is never filed
/// again (recorded with nothing that names the sender); one being purged right now waits for the
/// purge to finish (a transient error: the pass ends here and resumes at this message).
fn withheld(batch: &mut BatchState, uid: u32, app: &Application, block: Block) -> Result<MessageRecord, PipelineError> {
    match block {
        Block::Purging => Err(StoreError::PurgeInProgress.into()),
        Block::Forgotten => {
            batch.report.forgotten += 1;
            tracing::info!(outcome = "forgotten", "from an erased address; not filed or answered");
            Ok(MessageRecord {
                uid,
                sha256: app.sha256.clone(),
                message_id: None,
                content_sha256: None,
                received_at: app.received_at,
                outcome: Outcome::Forgotten,
            })
        }
    }
}

/// Stage 3 for an application: into the candidate's folder, next to what the store says it holds.
/// One address has one folder per posting, named when it is first filed: the store (or this
/// batch) remembers it, so a later message signed with another name joins it as a repeat.
fn file<L: Ledger>(
    store: &L,
    filer: &mut Filer,
    batch: &mut BatchState,
    app: &Application,
    raw: &[u8],
) -> Result<Filed, PipelineError> {
    let person = (app.candidate.email.clone(), app.posting.slug.clone());
    let folder = match batch.folders.get(&person) {
        Some(folder) => folder.clone(),
        None => store.folder_of(&person.0, &person.1)?.unwrap_or_else(|| Filer::folder_key(app)),
    };
    let committed = store.committed_in_folder(&folder)?;
    let filed = filer.file_application_in(app, &folder, raw, &committed)?;
    batch.folders.insert(person, filed.folder.clone());
    Ok(filed)
}

/// Stage 3 for a message that is not an application: into `_quarantine/`, with its reason.
fn set_aside(
    filer: &mut Filer,
    batch: &mut BatchState,
    uid: u32,
    q: Quarantine,
    raw: Option<&[u8]>,
) -> Result<MessageRecord, PipelineError> {
    let path = filer.file_quarantine(&q, raw)?;
    batch.report.quarantined += 1;
    tracing::warn!(outcome = "quarantined", reason = q.reason.code(), "message set aside");
    Ok(MessageRecord {
        uid,
        sha256: q.sha256,
        message_id: q.message_id,
        content_sha256: q.content_sha256,
        received_at: q.received_at,
        outcome: Outcome::Quarantined { reason: q.reason, path: Some(path) },
    })
}

/// Stage 4: whether and how to answer, from what the store and this batch already sent.
fn acknowledge<L: Ledger>(
    replier: &Replier,
    store: &L,
    batch: &mut BatchState,
    app: &Application,
    filed: &Filed,
) -> Result<ReplyDecision, StoreError> {
    let history = batch.history(store, &app.candidate.email)?;
    let decision = replier.decide(app, filed, batch.first_start, &history);
    match &decision {
        ReplyDecision::Queue { kind, .. } => {
            batch.report.replies_queued += 1;
            batch.queued.insert(app.candidate.email.clone(), *kind);
        }
        ReplyDecision::Skip(reason) => {
            batch.report.replies_skipped += 1;
            if matches!(reason, SkipReason::HourlyCap { .. }) && !batch.cap_warned {
                tracing::warn!("the hourly reply cap is reached: further replies are held back and reported");
                batch.cap_warned = true;
            }
        }
    }
    Ok(decision)
}

/// What stage 5 commits for a filed application.
fn record(
    batch: &mut BatchState,
    uid: u32,
    app: &Application,
    filed: Filed,
    decision: ReplyDecision,
    publish: Vec<PublishFile>,
) -> MessageRecord {
    batch.report.filed += 1;
    let reply = decision.note();
    let outbox = match decision {
        ReplyDecision::Queue { mail, .. } => Some(*mail),
        ReplyDecision::Skip(_) => None,
    };
    tracing::info!(
        outcome = "filed",
        documents = filed.application.documents.len(),
        missing = ?app.missing,
        reply = reply.code(),
        "application filed"
    );
    MessageRecord {
        uid,
        sha256: app.sha256.clone(),
        message_id: app.message_id.clone(),
        content_sha256: app.content_sha256.clone(),
        received_at: app.received_at,
        outcome: Outcome::Filed(Box::new(FiledRecord {
            candidate: app.candidate.email.clone(),
            candidate_name: app.candidate.display(),
            folder: filed.folder,
            application: filed.application,
            reply,
            outbox,
            publish,
        })),
    }
}

/// Whether this message was recorded before, or came twice in this batch: the same bytes, or the
/// same Message-ID with the same content ([`crate::understand::fingerprint`]). A Message-ID
/// alone is no evidence: two different messages that share one are both kept.
fn dedupe<L: Ledger>(
    store: &L,
    batch: &mut BatchState,
    understood: &Understood,
) -> Result<Option<DuplicateOf>, StoreError> {
    let sha = understood.sha256();
    let same = match (understood.message_id(), understood.content_sha256()) {
        (Some(mid), Some(content)) if !mid.is_empty() => Some((mid.to_owned(), content.to_owned())),
        _ => None,
    };
    let in_batch = batch.seen_sha.contains(sha) || same.as_ref().is_some_and(|s| batch.seen_same.contains(s));
    batch.seen_sha.insert(sha.to_owned());
    if let Some(s) = same {
        batch.seen_same.insert(s);
    }
    if in_batch {
        return Ok(Some(DuplicateOf::EarlierInBatch));
    }
    Ok(store.same_message(sha, understood.message_id(), understood.content_sha256())?.map(DuplicateOf::Record))
}

fn duplicate(batch: &mut BatchState, uid: u32, understood: &Understood, of: DuplicateOf) -> MessageRecord {
    batch.report.duplicates += 1;
    tracing::info!(outcome = "duplicate", "already recorded; not filed or answered again");
    let (sha256, message_id, received_at) = match understood {
        Understood::Application(a) => (a.sha256.clone(), a.message_id.clone(), a.received_at),
        Understood::Quarantine(q) => (q.sha256.clone(), q.message_id.clone(), q.received_at),
    };
    let content_sha256 = understood.content_sha256().map(str::to_owned);
    MessageRecord { uid, sha256, message_id, content_sha256, received_at, outcome: Outcome::Duplicate { of } }
}

/// What one batch knows beyond the store: what it has seen and queued but not yet committed.
struct BatchState {
    first_start: DateTime<Utc>,
    report: Report,
    seen_sha: HashSet<String>,
    /// (Message-ID, content fingerprint) of the messages seen in this batch.
    seen_same: HashSet<(String, String)>,
    /// The folder each (address, posting) was filed in during this batch, not committed yet.
    folders: HashMap<(String, String), String>,
    queued: HashMap<String, crate::mail::ReplyKind>,
    cap_warned: bool,
}

impl BatchState {
    fn new(first_start: DateTime<Utc>) -> BatchState {
        BatchState {
            first_start,
            report: Report::default(),
            seen_sha: HashSet::new(),
            seen_same: HashSet::new(),
            folders: HashMap::new(),
            queued: HashMap::new(),
            cap_warned: false,
        }
    }

    /// What the store says about earlier replies, plus what this batch has queued.
    fn history<L: Ledger>(&self, store: &L, address: &str) -> Result<History, StoreError> {
        let now = Utc::now();
        let last_reply = match self.queued.get(address) {
            Some(kind) => Some((now, *kind)),
            None => store.last_reply_to(address)?,
        };
        let replies_last_hour = store.replies_since(now - chrono::Duration::hours(1))? + self.queued.len() as u64;
        Ok(History { last_reply, replies_last_hour })
    }
}

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

/// Threads that understand a batch at once (capped by the machine's cores).
const UNDERSTAND_THREADS: usize = 4;

/// Threads that read messages aside with OCR: as many as OCR programs may run at once (the other
/// child slot stays free for reading ordinary PDFs).
const ASIDE_THREADS: usize = crate::understand::extract::MAX_OCR_CHILDREN;
/// Messages read aside at most at once, and their bytes: past that, a message that needs OCR is
/// left on the server for now, and downloaded again once the lane is empty.
const ASIDE_MESSAGES: usize = 16;
const ASIDE_BYTES: u64 = 32 << 20;
/// While scans are read aside the pass does not go back to IDLE: it lists new mail this often.
const NEW_MAIL_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Messages of a pass handed on, and how many the pass knows of (for progress).
struct Progress {
    done: usize,
    total: usize,
}

/// What stage 2 hands on for each message of a batch, in the batch's order.
enum Step {
    Ready(Understanding),
    /// It needs OCR: handed to the lane (or left for later), filed once read
    /// ([`crate::understand::aside`]).
    Aside(u32),
}

/// How one thread understands: with a reader that puts OCR off, and the lane a message that
/// needs it is handed to.
struct Deferring {
    rules: Rules,
    wanted_ocr: Arc<AtomicBool>,
    full: Arc<Rules>,
    aside: AsideQueue,
}

impl Deferring {
    fn new(full: &Arc<Rules>, aside: &AsideQueue) -> Deferring {
        let (text, wanted_ocr) = full.text.deferring_ocr();
        let rules = Rules { text, ..(**full).clone() };
        Deferring { rules, wanted_ocr, full: Arc::clone(full), aside: aside.clone() }
    }
}

/// Stage 2 for a batch, as an iterator that yields each message in the batch's order as soon as
/// it is understood. A message that needs OCR is handed to the lane instead and yielded as
/// [`Step::Aside`]: seconds of OCR never hold up the messages after it. Understanding is a pure
/// function of each message and decoding a backlog's attachments is the pipeline's largest CPU
/// cost, so up to [`UNDERSTAND_THREADS`] workers start
/// on the batch as soon as it exists (the pipeline makes one per downloaded batch, while the batch
/// before is still being filed) and work through all of it; the batch is in memory already, and
/// its understood form is about as large. Dropping the iterator (a filing error ends the batch)
/// stops the workers and waits for them, so drop it on a thread that may block.
enum InOrder {
    /// Nothing to understand (a call that only files what was read aside).
    Empty,
    /// One message, or one core: understood on the consumer's thread, as it asks.
    Inline {
        items: std::vec::IntoIter<Incoming>,
        rules: Arc<Rules>,
        mailbox: MailboxKey,
        deferring: Option<Box<Deferring>>,
    },
    Threads {
        rx: Option<Receiver<(usize, Step)>>,
        waiting: BTreeMap<usize, Step>,
        next: usize,
        total: usize,
        stop: Arc<AtomicBool>,
        workers: Vec<std::thread::JoinHandle<()>>,
    },
}

impl InOrder {
    /// `aside`: where messages that need OCR go; `None`: OCR is run in place.
    fn new(items: Vec<Incoming>, rules: &Rules, mailbox: &MailboxKey, aside: Option<&AsideQueue>) -> InOrder {
        // Asked once: the standard library reads the cgroup's CPU quota from /proc and /sys at
        // every call (a dozen system calls), on the way to every new application.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let threads = cores.min(UNDERSTAND_THREADS);
        // One copy of the rules for the batch's workers and the lane it hands messages to.
        let rules = Arc::new(rules.clone());
        let deferring = || aside.map(|a| Deferring::new(&rules, a));
        if threads < 2 || items.len() < 2 {
            let deferring = deferring().map(Box::new);
            return InOrder::Inline { items: items.into_iter(), rules, mailbox: mailbox.clone(), deferring };
        }
        let total = items.len();
        let slots: Arc<Vec<Mutex<Option<Incoming>>>> =
            Arc::new(items.into_iter().map(|i| Mutex::new(Some(i))).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel(total);
        let workers = (0..threads.min(total))
            .map(|_| {
                let (tx, slots, next, stop) = (tx.clone(), Arc::clone(&slots), Arc::clone(&next), Arc::clone(&stop));
                let (rules, mailbox, deferring) = (Arc::clone(&rules), mailbox.clone(), deferring());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = slots.get(i).and_then(|s| s.lock().unwrap_or_else(|p| p.into_inner()).take())
                        else {
                            break;
                        };
                        // The receiver is gone when the batch ended early: stop quietly.
                        let step = understand_step(item, &rules, &mailbox, deferring.as_ref());
                        if tx.send((i, step)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        InOrder::Threads { rx: Some(rx), waiting: BTreeMap::new(), next: 0, total, stop, workers }
    }
}

impl Iterator for InOrder {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        match self {
            InOrder::Empty => None,
            InOrder::Inline { items, rules, mailbox, deferring } => {
                items.next().map(|i| understand_step(i, rules, mailbox, deferring.as_deref()))
            }
            InOrder::Threads { rx, waiting, next, total, .. } => loop {
                if let Some(item) = waiting.remove(next) {
                    *next += 1;
                    return Some(item);
                }
                if *next >= *total {
                    return None;
                }
                let (i, item) = rx.as_ref()?.recv().ok()?;
                waiting.insert(i, item);
            },
        }
    }
}

impl Drop for InOrder {
    fn drop(&mut self) {
        if let InOrder::Threads { rx, stop, workers, .. } = self {
            stop.store(true, Ordering::Relaxed);
            // Closing the channel unblocks a worker waiting to send.
            drop(rx.take());
            for w in workers.drain(..) {
                let _ = w.join();
            }
        }
    }
}

/// Stage 2 for one message: understood without OCR first; if it needs OCR, handed to the lane,
/// or, when the lane is full, left for the pass to download again (the mark stays below it).
fn understand_step(item: Incoming, rules: &Rules, mailbox: &MailboxKey, deferring: Option<&Deferring>) -> Step {
    let Some(d) = deferring else { return Step::Ready(understand_one(item, rules, mailbox)) };
    let (uid, internal_date, raw) = match item {
        Incoming::Downloaded { uid, internal_date, raw } => (uid, internal_date, raw),
        too_large @ Incoming::TooLarge(_) => return Step::Ready(understand_one(too_large, rules, mailbox)),
    };
    d.wanted_ocr.store(false, Ordering::Relaxed);
    let understood = understand(&raw, internal_date, &d.rules);
    if !d.wanted_ocr.load(Ordering::Relaxed) {
        return Step::Ready((uid, understood, Some(raw)));
    }
    let sender = match &understood {
        Understood::Application(app) => Some(app.candidate.email.clone()),
        Understood::Quarantine(_) => None,
    };
    // A full lane: the bytes go, the UID stays noted, and the pass downloads it again later.
    if d.aside.try_hand(uid, sender.clone(), internal_date, raw, &d.full).is_err() {
        d.aside.leave(uid, sender);
    }
    Step::Aside(uid)
}

fn understand_one(item: Incoming, rules: &Rules, mailbox: &MailboxKey) -> Understanding {
    match item {
        Incoming::Downloaded { uid, internal_date, raw } => (uid, understand(&raw, internal_date, rules), Some(raw)),
        Incoming::TooLarge(env) => (
            env.uid,
            Understood::Quarantine(Quarantine {
                sha256: sha256_hex(format!("too-large:{}:{}", mailbox.name, env.uid).as_bytes()),
                message_id: None,
                content_sha256: None,
                received_at: env.internal_date.unwrap_or_else(Utc::now),
                reason: QuarantineReason::TooLarge {
                    size: env.size,
                    limit: rules.limits.max_message_bytes,
                    announced: true,
                },
                attention: None,
            }),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::Lang;

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
            default_language: Lang::Fr,
            own_addresses: Vec::new(),
            text: crate::understand::extract::TextReader::with_program(None),
        }
    }

    #[test]
    fn understood_messages_come_in_batch_order() {
        let key = MailboxKey { name: "test".into(), uidvalidity: 1 };
        let seen: Vec<u32> = InOrder::new(incoming(50), &rules(), &key, None)
            .map(|step| match step {
                Step::Ready((uid, understood, _)) => {
                    assert!(matches!(understood, Understood::Application(_)));
                    uid
                }
                Step::Aside(uid) => panic!("{uid} handed aside without a lane"),
            })
            .collect();
        assert_eq!(seen, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn stopping_early_stops_the_workers() {
        let key = MailboxKey { name: "test".into(), uidvalidity: 1 };
        let uid = |step: Option<Step>| match step {
            Some(Step::Ready((uid, _, _))) => Some(uid),
            _ => None,
        };
        let mut it = InOrder::new(incoming(200), &rules(), &key, None);
        assert_eq!(uid(it.next()), Some(1));
        assert_eq!(uid(it.next()), Some(2));
        // Dropping joins every worker: this returns, it does not hang on a full channel.
        drop(it);
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
