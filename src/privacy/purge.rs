//! The purge: planned, recorded, then done step by step (see the module above for why).
//!
//! A plan lists, for each person due: their folders, the other copies of each folder, their rows;
//! then the quarantine entries past their days; then, per mailbox folder, the recorded messages
//! to delete or move; then the store's history past its days. Local steps come first, so the
//! retention promise holds on our disk even while the mail server is away; a mailbox step that
//! fails leaves the purge unfinished and is tried again at the next purge (a person's later
//! application is filed meanwhile: their rows are gone, and the rows kept for the mailbox step
//! are stripped to the mailbox, UID and sha256, which is what keeps that old message from being
//! filed again).
//!
//! **Finding the messages in the mailbox.** By the UID the store recorded when the folder's
//! UIDVALIDITY is still the one recorded: UIDs are never reused within a UIDVALIDITY, so that UID
//! is that message. When the UIDVALIDITY changed (a restored or migrated mailbox), by Message-ID
//! (`UID SEARCH HEADER Message-ID`), each hit confirmed by the SHA-256 of its bytes, so a message
//! that merely shares the id is never touched; a message without a Message-ID is then counted as
//! not found rather than guessed.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::policy::{Keep, Policy};
use super::{NoOtherCopies, OtherCopies, PrivacyError};
use crate::config::{Config, PurgeMailbox};
use crate::filing::QUARANTINE_DIR;
use crate::mailbox::{Mailbox, MailboxError};
use crate::schedule::{Clock, Schedule, Timer};
use crate::store::{
    Location, PersonRow, PrivacyStore, PurgeLock, PurgeRecord, PurgeTotals, QuarantineRecord, RowsTarget,
};
use crate::understand::sha256_hex;

/// What happens to the recorded messages in the mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxAction {
    Delete,
    Move(String),
}

/// One recorded step of a purge (stored as JSON in `purge_steps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `<data_dir>/<folder>` and everything in it.
    Folder { folder: String },
    /// Every other copy of that folder ([`OtherCopies`]).
    OtherCopies { folder: String },
    /// The store's rows.
    Rows(RowsTarget),
    /// `_quarantine/<stem>.eml` and `.reason.txt`.
    Quarantine { path: String },
    /// The recorded messages of one mailbox folder (`user@host/folder`).
    Mailbox { mailbox: String, action: MailboxAction, locations: Vec<Location> },
    /// Sent mail, message records and audit lines past their days.
    History,
}

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Folder { .. } => "folder",
            Step::OtherCopies { .. } => "other_copies",
            Step::Rows(_) => "rows",
            Step::Quarantine { .. } => "quarantine",
            Step::Mailbox { .. } => "mailbox",
            Step::History => "history",
        }
    }
}

/// What a purge will do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The people it removes, and the rule that made them due.
    pub people: Vec<(PersonRow, Keep)>,
    pub quarantined: usize,
    /// Messages to remove from (or move out of) the mailbox.
    pub mailbox_messages: usize,
    pub steps: Vec<Step>,
}

/// What a run did (counts only: this is what the logs and the digest say).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PurgeReport {
    pub totals: PurgeTotals,
    /// Purges finished in this run (resumed ones included).
    pub finished: usize,
    /// Interrupted purges this run took up again.
    pub resumed: usize,
    /// Purges left with a step to do (tried again at the next purge).
    pub unfinished: usize,
    /// Why, as the logs may say it.
    pub errors: Vec<String>,
}

/// Runs purges and erasures over one store and data root.
#[derive(Clone)]
pub struct Purger<S> {
    store: S,
    pub policy: Policy,
    data_dir: PathBuf,
    /// `user@host/`: how the store names the folders of the configured account.
    account: String,
    copies: Arc<dyn OtherCopies>,
    enabled: bool,
    schedule: Schedule,
}

impl<S> std::fmt::Debug for Purger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger").field("enabled", &self.enabled).finish_non_exhaustive()
    }
}

impl<S: PrivacyStore> Purger<S> {
    pub fn new(cfg: &Config, store: S) -> Purger<S> {
        let tz = cfg.identity.timezone();
        Purger {
            store,
            policy: Policy::from_config(cfg),
            data_dir: cfg.storage.data_dir.clone(),
            account: format!("{}@{}/", cfg.imap.username, cfg.imap.host),
            copies: Arc::new(NoOtherCopies),
            enabled: cfg.privacy.enabled,
            // Validated with the configuration.
            schedule: Schedule::parse(&cfg.privacy.schedule, tz)
                .unwrap_or_else(|_| Schedule::parse("0 3 * * *", tz).expect("a valid expression")),
        }
    }

    /// Who removes the other copies of a folder (see [`OtherCopies`]).
    pub fn with_other_copies(mut self, copies: Arc<dyn OtherCopies>) -> Purger<S> {
        self.copies = copies;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// One purge at a time: `wait` blocks until the running one ends, else `None` when busy.
    pub fn lock(&self, wait: bool) -> Result<Option<PurgeLock>, PrivacyError> {
        Ok(self.store.purge_lock(wait)?)
    }

    fn mailbox_action(&self) -> Option<MailboxAction> {
        match &self.policy.mailbox {
            PurgeMailbox::Delete => Some(MailboxAction::Delete),
            PurgeMailbox::Move(folder) => Some(MailboxAction::Move(folder.clone())),
            PurgeMailbox::Keep => None,
        }
    }

    /// What a purge at `now` would remove. Reads only.
    pub fn plan(&self, now: DateTime<Utc>) -> Result<Plan, PrivacyError> {
        let people = self.store.people()?;
        let action = self.mailbox_action();
        let mut plan = Plan::default();
        let mut mailbox: BTreeMap<String, Vec<Location>> = BTreeMap::new();
        for p in self.policy.due(&people, now) {
            self.person_steps(p, action.is_some(), &mut plan.steps, &mut mailbox)?;
            plan.people.push((p.clone(), self.policy.keep(p)));
        }
        let before = now - chrono::Duration::days(self.policy.quarantine_days.into());
        let quarantined = self.store.quarantined_before(before)?;
        plan.quarantined = quarantined.len();
        quarantine_steps(quarantined, action.is_some(), &mut plan.steps, &mut mailbox);
        if let Some(action) = action {
            mailbox_steps(mailbox, &action, &mut plan);
        }
        plan.steps.push(Step::History);
        Ok(plan)
    }

    /// What erasing one person removes (the mailbox always: erasure is not a move).
    fn plan_forget(&self, person: &PersonRow) -> Result<Plan, PrivacyError> {
        let mut plan = Plan::default();
        let mut mailbox: BTreeMap<String, Vec<Location>> = BTreeMap::new();
        self.person_steps(person, true, &mut plan.steps, &mut mailbox)?;
        plan.people.push((person.clone(), self.policy.keep(person)));
        let quarantined = self.quarantine_mentioning(&person.address)?;
        plan.quarantined = quarantined.len();
        quarantine_steps(quarantined, true, &mut plan.steps, &mut mailbox);
        mailbox_steps(mailbox, &MailboxAction::Delete, &mut plan);
        Ok(plan)
    }

    fn person_steps(
        &self,
        p: &PersonRow,
        in_mailbox: bool,
        steps: &mut Vec<Step>,
        mailbox: &mut BTreeMap<String, Vec<Location>>,
    ) -> Result<(), PrivacyError> {
        for folder in p.folders() {
            steps.push(Step::Folder { folder: folder.clone() });
            steps.push(Step::OtherCopies { folder });
        }
        let records = self.store.person_records(&p.address)?;
        steps.push(Step::Rows(RowsTarget { address: Some(p.address.clone()), rows: records.rows, strip: true }));
        if in_mailbox {
            for l in records.locations {
                mailbox.entry(l.mailbox.clone()).or_default().push(l);
            }
        }
        Ok(())
    }

    /// Quarantined messages whose bytes mention the address (they were never tied to a person:
    /// mailroom could not make sense of them). Only an erasure looks.
    fn quarantine_mentioning(&self, address: &str) -> Result<Vec<QuarantineRecord>, PrivacyError> {
        let all = self.store.quarantined_before(Utc::now() + chrono::Duration::days(1))?;
        let needle = address.to_lowercase();
        Ok(all
            .into_iter()
            .filter(|q| {
                let Some(path) = q.path.as_deref().filter(|p| safe_quarantine(p)) else { return false };
                ["eml", "reason.txt"].iter().any(|ext| {
                    fs::read(self.data_dir.join(format!("{path}.{ext}")))
                        .is_ok_and(|b| String::from_utf8_lossy(&b).to_lowercase().contains(&needle))
                })
            })
            .collect())
    }

    /// Records a plan: its steps, the marks of its people, and for an erasure the tombstone.
    fn record(
        &self,
        plan: &Plan,
        command: &str,
        action: &str,
        person: Option<&str>,
        tombstone: bool,
        now: DateTime<Utc>,
    ) -> Result<i64, PrivacyError> {
        let steps: Vec<(String, String)> = plan
            .steps
            .iter()
            .map(|s| (s.kind().to_owned(), serde_json::to_string(s).expect("a step serialises")))
            .collect();
        let marks = plan.people.iter().map(|(p, _)| self.store.keyed(&p.address)).collect::<Result<Vec<_>, _>>()?;
        let tombstone = if tombstone { person } else { None };
        Ok(self.store.begin_purge(command, action, person, &steps, &marks, tombstone, now)?)
    }

    /// The scheduled purge, and `mailroom purge`: takes up interrupted purges, then plans, records
    /// and runs a new one.
    pub async fn purge<M, F, Fut>(
        &self,
        _lock: &PurgeLock,
        connect: F,
        command: &str,
        clock: &dyn Clock,
        stop: &watch::Receiver<bool>,
    ) -> Result<PurgeReport, PrivacyError>
    where
        M: Mailbox,
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<M, MailboxError>>,
    {
        let mut connect = connect;
        let mut report = self.resume_all(&mut connect, clock, stop).await?;
        if *stop.borrow() {
            return Ok(report);
        }
        let now = clock.now();
        let this = self.clone();
        let command_owned = command.to_owned();
        // Planned between batches: a batch holds the filing lock from before filing to its commit.
        // Recorded even when nobody is due: the history step runs, and the audit trail shows the
        // purge ran.
        let id = tokio::task::spawn_blocking(move || -> Result<i64, PrivacyError> {
            let _filing = this.store.filing_lock()?;
            let plan = this.plan(now)?;
            this.record(&plan, &command_owned, "purge", None, false, now)
        })
        .await
        .map_err(|e| PrivacyError::Worker(e.to_string()))??;
        if let Some(record) = self.store.unfinished_purges()?.into_iter().find(|p| p.id == id) {
            self.run_recorded(record, &mut connect, clock, stop, &mut report).await?;
        }
        Ok(report)
    }

    /// `mailroom candidate forget`: erases one person now, mailbox included, and leaves a
    /// tombstone (the keyed hash of the address) so a copy left on the server is never filed again.
    pub async fn forget<M, F, Fut>(
        &self,
        _lock: &PurgeLock,
        address: &str,
        connect: F,
        command: &str,
        clock: &dyn Clock,
        stop: &watch::Receiver<bool>,
    ) -> Result<PurgeReport, PrivacyError>
    where
        M: Mailbox,
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<M, MailboxError>>,
    {
        let mut connect = connect;
        let mut report = self.resume_all(&mut connect, clock, stop).await?;
        let now = clock.now();
        let (this, address_owned, command_owned) = (self.clone(), address.to_owned(), command.to_owned());
        let id = tokio::task::spawn_blocking(move || -> Result<i64, PrivacyError> {
            let _filing = this.store.filing_lock()?;
            let person =
                this.store.person(&address_owned)?.ok_or_else(|| PrivacyError::Unknown(address_owned.clone()))?;
            if let Some(hold) = &person.hold {
                return Err(PrivacyError::Held { address: address_owned, reason: hold.reason.clone() });
            }
            let plan = this.plan_forget(&person)?;
            let hash = this.store.keyed(&address_owned)?;
            this.record(&plan, &command_owned, "forget", Some(&hash), true, now)
        })
        .await
        .map_err(|e| PrivacyError::Worker(e.to_string()))??;
        if let Some(record) = self.store.unfinished_purges()?.into_iter().find(|p| p.id == id) {
            self.run_recorded(record, &mut connect, clock, stop, &mut report).await?;
        }
        Ok(report)
    }

    /// Takes up every unfinished purge, oldest first.
    pub async fn resume_all<M, F, Fut>(
        &self,
        connect: &mut F,
        clock: &dyn Clock,
        stop: &watch::Receiver<bool>,
    ) -> Result<PurgeReport, PrivacyError>
    where
        M: Mailbox,
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<M, MailboxError>>,
    {
        let mut report = PurgeReport::default();
        for record in self.store.unfinished_purges()? {
            report.resumed += 1;
            tracing::info!(purge = record.id, "taking up an unfinished purge");
            self.run_recorded(record, connect, clock, stop, &mut report).await?;
        }
        Ok(report)
    }

    /// Runs the steps of a recorded purge not done yet, in order; finishes it when all are done.
    async fn run_recorded<M, F, Fut>(
        &self,
        record: PurgeRecord,
        connect: &mut F,
        clock: &dyn Clock,
        stop: &watch::Receiver<bool>,
        report: &mut PurgeReport,
    ) -> Result<(), PrivacyError>
    where
        M: Mailbox,
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<M, MailboxError>>,
    {
        let mut left = 0;
        for step in record.steps.iter().filter(|s| !s.done) {
            if *stop.borrow() {
                report.unfinished += 1;
                tracing::info!(purge = record.id, "purge stopped between steps; it resumes at the next start");
                return Ok(());
            }
            let parsed: Step = serde_json::from_str(&step.target)
                .map_err(|e| PrivacyError::BadStep { step: step.id, message: e.to_string() })?;
            tracing::debug!(purge = record.id, step = step.id, kind = parsed.kind(), "purge step");
            match parsed {
                Step::Mailbox { mailbox, action, locations } => {
                    match self.mailbox_step(connect, &mailbox, &action, &locations).await {
                        Ok(t) => {
                            // Gone from the mailbox (or moved out of it on purpose): after a
                            // delete, the stripped rows have nothing left to guard.
                            let rows: Vec<i64> = match action {
                                MailboxAction::Delete => locations.iter().map(|l| l.row).collect(),
                                MailboxAction::Move(_) => Vec::new(),
                            };
                            self.store.drop_stripped(step.id, &rows, &t, clock.now())?;
                        }
                        Err(e) => {
                            let why = e.loggable();
                            tracing::warn!(purge = record.id, step = step.id, error = %why, "the mailbox step of a purge failed; it is tried again at the next purge");
                            self.store.step_failed(step.id, &why)?;
                            report.errors.push(why);
                            left += 1;
                        }
                    }
                }
                local => {
                    let (this, now, id) = (self.clone(), clock.now(), step.id);
                    let done = tokio::task::spawn_blocking(move || this.local_step(id, local, now))
                        .await
                        .map_err(|e| PrivacyError::Worker(e.to_string()))?;
                    if let Err(e) = done {
                        let why = e.loggable();
                        tracing::error!(purge = record.id, step = step.id, error = %why, "a purge step failed; the purge resumes there next time");
                        self.store.step_failed(step.id, &why)?;
                        report.unfinished += 1;
                        return Err(e);
                    }
                }
            }
        }
        if left > 0 {
            report.unfinished += 1;
            return Ok(());
        }
        let totals = self.store.finish_purge(record.id, clock.now())?;
        // The deleted rows' old pages leave the write-ahead log as well.
        if let Err(e) = self.store.checkpoint() {
            tracing::warn!(error = %e, "could not checkpoint the state after a purge");
        }
        report.totals.add(&totals);
        report.finished += 1;
        tracing::info!(
            purge = record.id,
            people = totals.people,
            folders = totals.folders,
            messages = totals.messages,
            documents = totals.documents,
            quarantined = totals.quarantined,
            mailbox_deleted = totals.mailbox_deleted,
            mailbox_moved = totals.mailbox_moved,
            mailbox_not_found = totals.mailbox_not_found,
            history = totals.history,
            "purge finished"
        );
        Ok(())
    }

    /// A step on our own disk or in the store; recorded as done when it is.
    fn local_step(&self, id: i64, step: Step, now: DateTime<Utc>) -> Result<(), PrivacyError> {
        let store = &self.store;
        let mut t = PurgeTotals::default();
        match step {
            Step::Folder { folder } => {
                let path = self.candidate_folder(&folder)?;
                match fs::remove_dir_all(&path) {
                    Ok(()) => sync_parent(&path),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(PrivacyError::Io { path, source }),
                }
                t.folders = 1;
                store.step_done(id, &t, now)?;
            }
            Step::OtherCopies { folder } => {
                t.other_copies = self.copies.remove_copies_of(&folder).map_err(PrivacyError::OtherCopies)?;
                store.step_done(id, &t, now)?;
            }
            Step::Rows(target) => {
                store.purge_rows(id, &target, now)?;
            }
            Step::Quarantine { path } => {
                if !safe_quarantine(&path) {
                    return Err(PrivacyError::UnsafePath(path));
                }
                for ext in ["eml", "reason.txt"] {
                    let file = self.data_dir.join(format!("{path}.{ext}"));
                    match fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(PrivacyError::Io { path: file, source }),
                    }
                }
                sync_parent(&self.data_dir.join(&path));
                store.step_done(id, &t, now)?;
            }
            Step::History => {
                let history = now - chrono::Duration::days(self.policy.history_days.into());
                let audit = now - chrono::Duration::days(self.policy.audit_days.into());
                store.purge_history(id, history, audit, now)?;
            }
            Step::Mailbox { .. } => {
                return Err(PrivacyError::BadStep { step: id, message: "a mailbox step is not local".into() });
            }
        }
        Ok(())
    }

    /// `<data_dir>/<posting>/<person>`, refusing anything else.
    fn candidate_folder(&self, folder: &str) -> Result<PathBuf, PrivacyError> {
        let parts: Vec<Component> = Path::new(folder).components().collect();
        let plain = parts.len() == 2 && parts.iter().all(|c| matches!(c, Component::Normal(_)));
        if !plain || folder.starts_with(QUARANTINE_DIR) {
            return Err(PrivacyError::UnsafePath(folder.to_owned()));
        }
        Ok(self.data_dir.join(folder))
    }

    /// Removes (or moves) the recorded messages of one mailbox folder.
    async fn mailbox_step<M, F, Fut>(
        &self,
        connect: &mut F,
        mailbox: &str,
        action: &MailboxAction,
        locations: &[Location],
    ) -> Result<PurgeTotals, PrivacyError>
    where
        M: Mailbox,
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<M, MailboxError>>,
    {
        let mut t = PurgeTotals::default();
        let Some(folder) = mailbox.strip_prefix(&self.account) else {
            // Recorded from another account than the one configured now: out of reach.
            t.mailbox_unreachable = locations.len() as u64;
            tracing::warn!(
                messages = locations.len(),
                "messages recorded from another IMAP account than the configured one cannot be removed"
            );
            return Ok(t);
        };
        let mut mb = connect(folder.to_owned()).await?;
        let result = async {
            let selected = mb.select().await?;
            let (same, moved): (Vec<&Location>, Vec<&Location>) =
                locations.iter().partition(|l| l.uidvalidity == selected.uid_validity);
            let wanted: Vec<u32> = same.iter().map(|l| l.uid).collect();
            let mut uids = mb.existing(&wanted).await?;
            for l in moved {
                let Some(mid) = l.message_id.as_deref() else { continue };
                let hits = mb.search_message_id(mid).await?;
                if hits.is_empty() {
                    continue;
                }
                for m in mb.fetch(&hits).await? {
                    if sha256_hex(&m.raw) == l.sha256 {
                        uids.push(m.uid);
                    }
                }
            }
            uids.sort_unstable();
            uids.dedup();
            match action {
                MailboxAction::Delete => mb.delete(&uids).await?,
                MailboxAction::Move(to) => mb.move_to(&uids, to).await?,
            }
            Ok::<_, MailboxError>(uids.len() as u64)
        }
        .await;
        mb.logout().await;
        let removed = result?;
        match action {
            MailboxAction::Delete => t.mailbox_deleted = removed,
            MailboxAction::Move(_) => t.mailbox_moved = removed,
        }
        t.mailbox_not_found = (locations.len() as u64).saturating_sub(removed);
        Ok(t)
    }

    /// The scheduled job beside the digest: at each firing of `privacy.schedule` (in the
    /// organisation's zone), a purge; a firing missed while the daemon was down is caught up at
    /// start; an unfinished purge (a killed command, a mail server away) is taken up again every
    /// few minutes until it finishes. Skipped while another process purges.
    pub async fn run_scheduled<M, F, Fut>(
        &self,
        first_start: DateTime<Utc>,
        timer: &Timer,
        clock: &dyn Clock,
        mut connect: F,
        mut stop: watch::Receiver<bool>,
    ) where
        M: Mailbox,
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<M, MailboxError>>,
    {
        if !self.enabled {
            return;
        }
        let mut last_run = match self.store.privacy_overview() {
            Ok(o) => o.last_purge.unwrap_or(first_start),
            Err(e) => {
                tracing::error!(error = %e, "privacy: cannot read the state; the scheduled purge stops until the next start");
                return;
            }
        };
        loop {
            let now = clock.now();
            let fired = self.schedule.last_at_or_before(now).is_some_and(|f| f > last_run);
            let unfinished = self.store.privacy_overview().map(|o| o.unfinished_purges).unwrap_or(0);
            if fired || unfinished > 0 {
                match self.lock(false) {
                    Ok(Some(lock)) => {
                        let result = if fired {
                            self.purge(&lock, &mut connect, "schedule", clock, &stop).await
                        } else {
                            self.resume_all(&mut connect, clock, &stop).await
                        };
                        if fired {
                            last_run = now;
                        }
                        if let Err(e) = result {
                            tracing::error!(error = %e.loggable(), "the scheduled purge failed; it is tried again");
                        }
                    }
                    Ok(None) => tracing::info!("another process is purging; the scheduled purge waits"),
                    Err(e) => tracing::error!(error = %e.loggable(), "cannot take the purge lock"),
                }
            }
            let Some(next) = self.schedule.next_after(now) else {
                tracing::warn!("privacy.schedule never fires again");
                return;
            };
            let still = self.store.privacy_overview().map(|o| o.unfinished_purges).unwrap_or(0);
            let wake = if still > 0 { next.min(clock.now() + RETRY_UNFINISHED) } else { next };
            tokio::select! {
                r = timer.sleep_until(wake, clock) => if let Err(e) = r {
                    tracing::error!(error = %e, "privacy: the timer failed; the scheduled purge stops until the next start");
                    return;
                },
                _ = stop.changed() => return,
            }
        }
    }
}

/// How soon an unfinished purge is taken up again by the daemon.
const RETRY_UNFINISHED: chrono::Duration = chrono::Duration::minutes(5);

fn quarantine_steps(
    records: Vec<QuarantineRecord>,
    in_mailbox: bool,
    steps: &mut Vec<Step>,
    mailbox: &mut BTreeMap<String, Vec<Location>>,
) {
    if records.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    for q in records {
        if let Some(path) = q.path.filter(|p| safe_quarantine(p)) {
            steps.push(Step::Quarantine { path });
        }
        rows.extend(q.rows);
        if in_mailbox {
            for l in q.locations {
                mailbox.entry(l.mailbox.clone()).or_default().push(l);
            }
        }
    }
    steps.push(Step::Rows(RowsTarget { address: None, rows, strip: true }));
}

fn mailbox_steps(mailbox: BTreeMap<String, Vec<Location>>, action: &MailboxAction, plan: &mut Plan) {
    for (name, locations) in mailbox {
        plan.mailbox_messages += locations.len();
        plan.steps.push(Step::Mailbox { mailbox: name, action: action.clone(), locations });
    }
}

/// `_quarantine/<stem>` and nothing else.
fn safe_quarantine(path: &str) -> bool {
    let parts: Vec<Component> = Path::new(path).components().collect();
    parts.len() == 2
        && parts[0] == Component::Normal(QUARANTINE_DIR.as_ref())
        && matches!(parts[1], Component::Normal(_))
}

/// Makes a removal durable in its directory (best effort: the store already says it is done).
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = fs::File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_survive_the_store_as_json() {
        let steps = vec![
            Step::Folder { folder: "stage/Dupré-Jeanne--0a1b2c3d".into() },
            Step::OtherCopies { folder: "stage/Dupré-Jeanne--0a1b2c3d".into() },
            Step::Rows(RowsTarget { address: Some("jeanne@example.test".into()), rows: vec![1, 2], strip: true }),
            Step::Quarantine { path: "_quarantine/20261123T101500Z-1a2b3c4d".into() },
            Step::Mailbox {
                mailbox: "contact@imap/INBOX".into(),
                action: MailboxAction::Move("Purged".into()),
                locations: vec![Location {
                    row: 1,
                    mailbox: "contact@imap/INBOX".into(),
                    uidvalidity: 7,
                    uid: 3,
                    sha256: "ab".into(),
                    message_id: Some("x@y".into()),
                }],
            },
            Step::History,
        ];
        for s in steps {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<Step>(&json).unwrap(), s, "{json}");
        }
    }

    #[test]
    fn only_candidate_folders_and_quarantine_entries_are_removed() {
        assert!(safe_quarantine("_quarantine/20261123T101500Z-1a2b3c4d"));
        for bad in ["_quarantine", "_quarantine/../x", "stage/x", "/_quarantine/x", "_quarantine/a/b"] {
            assert!(!safe_quarantine(bad), "{bad}");
        }
    }
}
