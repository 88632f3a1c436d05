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
//!    threads ahead of the rest, handed on in order ([`InOrder`]);
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::error::{Classified, Retry};
use crate::filing::{Filed, Filer, FilingError};
use crate::mailbox::{Envelope, Mailbox, MailboxError};
use crate::reason::{QuarantineReason, SkipReason};
use crate::reply::{History, Replier, ReplyDecision};
use crate::service::Monitor;
use crate::store::{
    Batch, DuplicateOf, FiledRecord, Ledger, MailboxKey, MessageRecord, Outcome, PublishFile, StoreError,
};
use crate::understand::{Application, Quarantine, Rules, Understood, sha256_hex, understand};

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

/// The stages that run on the blocking worker, and what they share.
struct Stages<L> {
    rules: Rules,
    replier: Replier,
    store: L,
    /// One batch at a time: the filer's batch state (files to make durable) is per batch.
    filer: Mutex<Filer>,
    /// `[publish]` is configured: filed folders are queued for the cloud at the commit.
    publish: bool,
}

/// The pipeline over one store and one data root.
pub struct Pipeline<L: Ledger> {
    stages: Arc<Stages<L>>,
    limits: BatchLimits,
    keyword: String,
    /// Woken after each commit that queued a reply.
    outbox_ready: Arc<Notify>,
    /// Woken after each commit that filed something (the publisher waits on it).
    publish_ready: Arc<Notify>,
}

impl<L: Ledger> Pipeline<L> {
    pub fn new(cfg: &Config, replier: Replier, store: L) -> Pipeline<L> {
        Pipeline {
            stages: Arc::new(Stages {
                rules: Rules::from_config(cfg),
                replier,
                store,
                filer: Mutex::new(Filer::new(&cfg.storage.data_dir)),
                publish: cfg.publish.enabled(),
            }),
            limits: BatchLimits {
                messages: cfg.imap.batch_messages,
                bytes: cfg.imap.batch_bytes,
                max_message_bytes: cfg.limits.max_message_bytes,
            },
            keyword: cfg.imap.filed_keyword.clone(),
            outbox_ready: Arc::new(Notify::new()),
            publish_ready: Arc::new(Notify::new()),
        }
    }

    pub fn store(&self) -> &L {
        &self.stages.store
    }

    /// Notified after each commit that queued mail; the outbox sender waits on it.
    pub fn outbox_ready(&self) -> &Arc<Notify> {
        &self.outbox_ready
    }

    /// Notified after each commit that filed something; the publisher waits on it.
    pub fn publish_ready(&self) -> &Arc<Notify> {
        &self.publish_ready
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
        let store = &self.stages.store;
        store.record_contact(&key, Utc::now())?;
        let high_water = store.high_water(&key)?;
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
            let items = match fetch(mailbox, batch, self.limits.max_message_bytes).await {
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
            let (stages, key) = (Arc::clone(&self.stages), key.clone());
            let handle = tokio::task::spawn_blocking(move || process_batch(&stages, key, high_water, items));
            in_flight = Some((handle, batch.len()));
        }
        if let Some((handle, len)) = in_flight.take() {
            done += len;
            self.finish(mailbox, handle, &mut report, done, total, monitor).await?;
        }
        outcome.map(|()| report)
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
        if batch_report.filed > 0 {
            self.publish_ready.notify_one();
        }
        // The keyword is a courtesy to people reading the mailbox; the store is the truth.
        if let Err(e) = mailbox.add_keyword(&committed, &self.keyword).await {
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
/// Returns the counts and the UIDs committed.
fn process_batch<L: Ledger>(
    stages: &Stages<L>,
    mailbox: MailboxKey,
    high_water: u32,
    items: Vec<Incoming>,
) -> BatchResult {
    let mut filer = stages.filer.lock().unwrap_or_else(|p| p.into_inner());
    // A batch that failed before its commit left files behind; they are leftovers now.
    filer.discard();
    let mut batch = BatchState::new(stages.store.first_start());
    let mut records = Vec::new();
    let mut stopped: Option<(u32, PipelineError)> = None;
    for (uid, understood, raw) in InOrder::new(items, &stages.rules, &mailbox) {
        batch.report.fetched += 1;
        let span = tracing::info_span!("message", uid, sha = &understood.sha256()[..12]);
        let _enter = span.enter();
        let result = match dedupe(&stages.store, &mut batch, &understood) {
            Ok(Some(of)) => Ok(duplicate(&mut batch, uid, &understood, of)),
            Ok(None) => match understood {
                Understood::Quarantine(q) => set_aside(&mut filer, &mut batch, uid, q, raw.as_deref()),
                Understood::Application(app) => file_and_acknowledge(stages, &mut filer, &mut batch, uid, &app, raw),
            },
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(record) => records.push(record),
            Err(e) => {
                stopped = Some((uid, e));
                break;
            }
        }
    }
    // A transient failure: what came before it is committed, and the next pass starts at it.
    let high_water = match &stopped {
        Some((uid, _)) => uid.saturating_sub(1),
        None => high_water,
    };
    if !records.is_empty() || stopped.is_none() {
        filer.sync()?;
        let committed: Vec<u32> = records.iter().map(|r| r.uid).collect();
        stages.store.commit(&Batch { mailbox, high_water, records })?;
        if stopped.is_none() {
            return Ok((batch.report, committed));
        }
    }
    let (uid, e) = stopped.expect("a batch that committed everything returned above");
    tracing::warn!(uid, error = %e, transient = e.is_transient(), "filing stopped at this message; the next pass starts here");
    Err(e)
}

/// Stages 3 and 4 for one application. A filing failure that will not go away (something in the
/// way at its path) sets the message aside instead, so it does not hold up the ones after it.
fn file_and_acknowledge<L: Ledger>(
    stages: &Stages<L>,
    filer: &mut Filer,
    batch: &mut BatchState,
    uid: u32,
    app: &Application,
    raw: Option<Vec<u8>>,
) -> Result<MessageRecord, PipelineError> {
    let raw = raw.unwrap_or_default();
    let filed = match file(&stages.store, filer, app, &raw) {
        Ok(filed) => filed,
        Err(PipelineError::Filing(e)) if e.retry() == Retry::Permanent => {
            tracing::error!(error_kind = ?e.source.kind(), "this message cannot be filed; setting it aside");
            let q = Quarantine {
                sha256: app.sha256.clone(),
                message_id: app.message_id.clone(),
                received_at: app.received_at,
                reason: QuarantineReason::Unfileable { error: e.source.to_string(), attempts: 1 },
            };
            return set_aside(filer, batch, uid, q, Some(&raw));
        }
        Err(e) => return Err(e),
    };
    let decision = acknowledge(&stages.replier, &stages.store, batch, app, &filed)?;
    let publish = if stages.publish { crate::publish::files_of(&filed.application) } else { Vec::new() };
    Ok(record(batch, uid, app, filed, decision, publish))
}

/// Stage 3 for an application: into the candidate's folder, next to what the store says it holds.
fn file<L: Ledger>(store: &L, filer: &mut Filer, app: &Application, raw: &[u8]) -> Result<Filed, PipelineError> {
    let committed = store.committed_in_folder(&Filer::folder_key(app))?;
    Ok(filer.file_application(app, raw, &committed)?)
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

/// Whether this message was recorded before (same bytes or Message-ID), or came twice in this batch.
fn dedupe<L: Ledger>(
    store: &L,
    batch: &mut BatchState,
    understood: &Understood,
) -> Result<Option<DuplicateOf>, StoreError> {
    let sha = understood.sha256();
    let mid = understood.message_id();
    let in_batch = batch.seen_sha.contains(sha) || mid.is_some_and(|m| batch.seen_mid.contains(m));
    batch.seen_sha.insert(sha.to_owned());
    if let Some(m) = mid {
        batch.seen_mid.insert(m.to_owned());
    }
    if in_batch {
        return Ok(Some(DuplicateOf::EarlierInBatch));
    }
    Ok(store.find_duplicate(sha, mid)?.map(DuplicateOf::Record))
}

fn duplicate(batch: &mut BatchState, uid: u32, understood: &Understood, of: DuplicateOf) -> MessageRecord {
    batch.report.duplicates += 1;
    tracing::info!(outcome = "duplicate", "already recorded; not filed or answered again");
    let (sha256, message_id, received_at) = match understood {
        Understood::Application(a) => (a.sha256.clone(), a.message_id.clone(), a.received_at),
        Understood::Quarantine(q) => (q.sha256.clone(), q.message_id.clone(), q.received_at),
    };
    MessageRecord { uid, sha256, message_id, received_at, outcome: Outcome::Duplicate { of } }
}

/// What one batch knows beyond the store: what it has seen and queued but not yet committed.
struct BatchState {
    first_start: DateTime<Utc>,
    report: Report,
    seen_sha: HashSet<String>,
    seen_mid: HashSet<String>,
    queued: HashMap<String, crate::mail::ReplyKind>,
    cap_warned: bool,
}

impl BatchState {
    fn new(first_start: DateTime<Utc>) -> BatchState {
        BatchState {
            first_start,
            report: Report::default(),
            seen_sha: HashSet::new(),
            seen_mid: HashSet::new(),
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

/// Stage 2 for a batch, as an iterator that yields each message in the batch's order as soon as
/// it is understood. Understanding is a pure function of each message and decoding a backlog's
/// attachments is the pipeline's largest CPU cost, so up to [`UNDERSTAND_THREADS`] workers parse
/// ahead while the caller files; a bounded channel keeps only a few understood messages in memory.
/// Dropping the iterator (a filing error ends the batch) stops the workers.
enum InOrder {
    Inline(std::vec::IntoIter<Understanding>),
    Threads {
        rx: Option<Receiver<(usize, Understanding)>>,
        waiting: BTreeMap<usize, Understanding>,
        next: usize,
        total: usize,
        stop: Arc<AtomicBool>,
        workers: Vec<std::thread::JoinHandle<()>>,
    },
}

impl InOrder {
    fn new(items: Vec<Incoming>, rules: &Rules, mailbox: &MailboxKey) -> InOrder {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(UNDERSTAND_THREADS);
        if threads < 2 || items.len() < 2 {
            let done: Vec<Understanding> = items.into_iter().map(|i| understand_one(i, rules, mailbox)).collect();
            return InOrder::Inline(done.into_iter());
        }
        let total = items.len();
        let slots: Arc<Vec<Mutex<Option<Incoming>>>> =
            Arc::new(items.into_iter().map(|i| Mutex::new(Some(i))).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel(threads * 2);
        let shared = Arc::new((rules.clone(), mailbox.clone()));
        let workers = (0..threads.min(total))
            .map(|_| {
                let (tx, slots, next, stop, shared) =
                    (tx.clone(), Arc::clone(&slots), Arc::clone(&next), Arc::clone(&stop), Arc::clone(&shared));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = slots.get(i).and_then(|s| s.lock().unwrap_or_else(|p| p.into_inner()).take())
                        else {
                            break;
                        };
                        // The receiver is gone when the batch ended early: stop quietly.
                        if tx.send((i, understand_one(item, &shared.0, &shared.1))).is_err() {
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
    type Item = Understanding;

    fn next(&mut self) -> Option<Understanding> {
        match self {
            InOrder::Inline(items) => items.next(),
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

fn understand_one(item: Incoming, rules: &Rules, mailbox: &MailboxKey) -> Understanding {
    match item {
        Incoming::Downloaded { uid, internal_date, raw } => (uid, understand(&raw, internal_date, rules), Some(raw)),
        Incoming::TooLarge(env) => (
            env.uid,
            Understood::Quarantine(Quarantine {
                sha256: sha256_hex(format!("too-large:{}:{}", mailbox.name, env.uid).as_bytes()),
                message_id: None,
                received_at: env.internal_date.unwrap_or_else(Utc::now),
                reason: QuarantineReason::TooLarge {
                    size: env.size,
                    limit: rules.limits.max_message_bytes,
                    announced: true,
                },
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
        let seen: Vec<u32> = InOrder::new(incoming(50), &rules(), &key)
            .map(|(uid, understood, _)| {
                assert!(matches!(understood, Understood::Application(_)));
                uid
            })
            .collect();
        assert_eq!(seen, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn stopping_early_stops_the_workers() {
        let key = MailboxKey { name: "test".into(), uidvalidity: 1 };
        let mut it = InOrder::new(incoming(200), &rules(), &key);
        assert_eq!(it.next().map(|(uid, _, _)| uid), Some(1));
        assert_eq!(it.next().map(|(uid, _, _)| uid), Some(2));
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
