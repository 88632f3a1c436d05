//! What privacy asks of the store: who is on file (with their hold and consent), a purge recorded
//! before it acts and done step by step, the tombstones of forgotten addresses, and the audit
//! trail. Also the two locks around a purge and the key of the keyed hashes.
//!
//! **Keyed hashes.** A tombstone, a purge's per-person mark and an audit line name a person by
//! HMAC-SHA256 of their normalised address, under a key generated once next to the state
//! (`<state>.privacy-key`, 0600). Without the key the hash cannot be tested against a guessed
//! address; with it, mailroom recognises a forgotten address without keeping it. A fingerprint of
//! the key is kept in `meta`, so a lost or swapped key is an error, never a silent new one.
//!
//! **Locks** (files next to the state, `flock`): the *filing lock* is held by the pipeline for a
//! batch, from before filing to the commit, and by a purge while it plans, so a purge never plans
//! around an application that is filed but not yet committed. The *purge lock* is held by
//! whoever runs a purge (the daemon's scheduled job or a command): one purge at a time, and a
//! purge found unfinished by the holder is necessarily an interrupted one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ring::hmac;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, parse_ts, ts};
use crate::filing::FiledApplication;
use crate::mail::OutgoingMail;
use crate::reason::ReplyNote;

/// Why mail from an address must not be filed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// `mailroom candidate forget`: never filed again.
    Forgotten,
    /// A purge is removing this person right now: filed once it has finished.
    Purging,
}

/// A person exempted from purges (a hire, a dispute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// One filed application, as the retention rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppRow {
    pub id: i64,
    pub posting: String,
    pub folder: String,
    pub received_at: DateTime<Utc>,
    /// Documents filed from it.
    pub documents: u32,
}

/// A person on file: everything the retention rules and `candidate list` need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonRow {
    pub address: String,
    /// The name of their latest application, or the address.
    pub name: String,
    pub consent_at: Option<DateTime<Utc>>,
    pub hold: Option<Hold>,
    /// Oldest first.
    pub applications: Vec<AppRow>,
}

impl PersonRow {
    pub fn last_application(&self) -> Option<DateTime<Utc>> {
        self.applications.iter().map(|a| a.received_at).max()
    }

    /// Their candidate folders (one per posting), relative to the data root.
    pub fn folders(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.applications.iter().map(|a| a.folder.clone()).filter(|f| !f.is_empty()).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Where one message sits in the mailbox, as recorded when it was fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// Its row in `messages`.
    pub row: i64,
    /// `user@host/folder`.
    pub mailbox: String,
    pub uidvalidity: u32,
    pub uid: u32,
    /// Of the raw message: confirms a message found by Message-ID after a UIDVALIDITY change.
    pub sha256: String,
    pub message_id: Option<String>,
}

/// Everything the store holds of one person's messages: their rows (filed applications and the
/// duplicates of them) and where each message sits in the mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonRecords {
    pub rows: Vec<i64>,
    pub locations: Vec<Location>,
}

/// A quarantined message past its retention (and its duplicates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub rows: Vec<i64>,
    /// `_quarantine/<stem>`: the `.eml` and `.reason.txt` there.
    pub path: Option<String>,
    pub locations: Vec<Location>,
}

/// The rows step of a purge: the message rows to remove, and for a person, what else names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowsTarget {
    /// The person (their outbox entries, the digests naming them, their hold and consent go too);
    /// `None` for quarantined messages.
    pub address: Option<String>,
    pub rows: Vec<i64>,
    /// Keep each row stripped to its mailbox, UID and sha256 instead of deleting it: the message
    /// is still in the mailbox (to be removed by a later step, or kept on purpose), and a stripped
    /// row is what stops it from being filed again.
    pub strip: bool,
}

/// What a purge removed, in counts. Stored with each step, summed in the audit trail.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PurgeTotals {
    pub people: u64,
    pub folders: u64,
    pub other_copies: u64,
    pub messages: u64,
    pub documents: u64,
    pub acknowledgements: u64,
    pub digests: u64,
    pub quarantined: u64,
    pub mailbox_deleted: u64,
    pub mailbox_moved: u64,
    pub mailbox_not_found: u64,
    pub mailbox_unreachable: u64,
    pub history: u64,
    pub audit: u64,
}

impl PurgeTotals {
    pub fn add(&mut self, o: &PurgeTotals) {
        self.people += o.people;
        self.folders += o.folders;
        self.other_copies += o.other_copies;
        self.messages += o.messages;
        self.documents += o.documents;
        self.acknowledgements += o.acknowledgements;
        self.digests += o.digests;
        self.quarantined += o.quarantined;
        self.mailbox_deleted += o.mailbox_deleted;
        self.mailbox_moved += o.mailbox_moved;
        self.mailbox_not_found += o.mailbox_not_found;
        self.mailbox_unreachable += o.mailbox_unreachable;
        self.history += o.history;
        self.audit += o.audit;
    }
}

/// One recorded step of a purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    pub id: i64,
    pub kind: String,
    /// The step's target, as JSON (see `privacy::Step`).
    pub target: String,
    pub done: bool,
    /// The last failure of a step not done yet.
    pub error: Option<String>,
    pub outcome: PurgeTotals,
}

/// A purge that has not finished (interrupted, or with a step that keeps failing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRecord {
    pub id: i64,
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub steps: Vec<StepRecord>,
}

/// An acknowledgement as the outbox keeps it, for an export.
#[derive(Debug, Clone)]
pub struct SentMail {
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub state: String,
    pub mail: Option<OutgoingMail>,
}

/// One filed application as committed, for an export.
#[derive(Debug, Clone)]
pub struct FiledRow {
    pub folder: String,
    pub received_at: DateTime<Utc>,
    pub application: Option<FiledApplication>,
    pub reply: ReplyNote,
}

/// One line of the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    /// `purge`, `forget`, `export`, `hold`, `release`, `consent`, `withdraw`, `unforget`.
    pub action: String,
    /// What ran it: `schedule`, or the command line's words (never its arguments).
    pub command: String,
    /// The keyed hash of the person's address, when the action concerns one person.
    pub person: Option<String>,
    pub counts: serde_json::Value,
}

/// The privacy state at a glance, for `mailroom status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrivacyOverview {
    pub held: u64,
    pub consented: u64,
    pub forgotten: u64,
    pub unfinished_purges: u64,
    /// Steps of unfinished purges still to do, and the last error of one.
    pub steps_left: u64,
    pub steps_done: u64,
    pub last_error: Option<String>,
    pub last_purge: Option<DateTime<Utc>>,
}

/// Held from before a batch is filed to its commit (see the module's notes). Released when dropped.
#[derive(Debug)]
pub struct FilingGuard {
    _file: File,
}

/// Held by whoever runs a purge. Released when dropped.
#[derive(Debug)]
pub struct PurgeLock {
    _file: File,
}

/// The store in the privacy role: the purge job and the rights commands.
pub trait PrivacyStore: Clone + Send + Sync + 'static {
    /// HMAC-SHA256 of the (normalised) address under the state's privacy key, as hex.
    fn keyed(&self, address: &str) -> Result<String, StoreError>;
    fn filing_lock(&self) -> Result<FilingGuard, StoreError>;
    /// The purge lock: `wait` blocks until it is free; otherwise `None` when someone holds it.
    fn purge_lock(&self, wait: bool) -> Result<Option<PurgeLock>, StoreError>;
    /// Everyone with a filed application, by address.
    fn people(&self) -> Result<Vec<PersonRow>, StoreError>;
    fn person(&self, address: &str) -> Result<Option<PersonRow>, StoreError>;
    /// The people whose last application was received at or before `t` (and perhaps a second
    /// later): the few who can become due soon (see `Policy::upcoming_bound`), without reading
    /// everyone on file.
    fn people_last_applied_by(&self, t: DateTime<Utc>) -> Result<Vec<PersonRow>, StoreError>;
    fn person_records(&self, address: &str) -> Result<PersonRecords, StoreError>;
    fn quarantined_before(&self, t: DateTime<Utc>) -> Result<Vec<QuarantineRecord>, StoreError>;
    /// Sets (`Some(reason)`) or lifts a hold. True when something changed.
    fn set_hold(&self, address: &str, reason: Option<&str>, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Records (`Some(when)`) or withdraws a consent to be kept longer. True when something changed.
    fn set_consent(&self, address: &str, at: Option<DateTime<Utc>>) -> Result<bool, StoreError>;
    /// Records a purge's intent: its steps, a mark per person (pipeline: wait), and for an erasure
    /// the tombstone, in one transaction. Returns the purge's id.
    #[allow(clippy::too_many_arguments)]
    fn begin_purge(
        &self,
        command: &str,
        action: &str,
        person: Option<&str>,
        steps: &[(String, String)],
        marks: &[String],
        tombstone: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError>;
    fn unfinished_purges(&self) -> Result<Vec<PurgeRecord>, StoreError>;
    fn step_done(&self, step: i64, outcome: &PurgeTotals, now: DateTime<Utc>) -> Result<(), StoreError>;
    fn step_failed(&self, step: i64, error: &str) -> Result<(), StoreError>;
    /// The rows step, done and recorded as done in one transaction.
    fn purge_rows(&self, step: i64, target: &RowsTarget, now: DateTime<Utc>) -> Result<PurgeTotals, StoreError>;
    /// After the mailbox step: the stripped rows of the messages now gone from the mailbox.
    fn drop_stripped(
        &self,
        step: i64,
        rows: &[i64],
        outcome: &PurgeTotals,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Sent mail and message records older than `history`, audit lines older than `audit`.
    fn purge_history(
        &self,
        step: i64,
        history: DateTime<Utc>,
        audit: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<PurgeTotals, StoreError>;
    /// Every step done: the counts go to the audit trail, the steps and marks are removed.
    fn finish_purge(&self, purge: i64, now: DateTime<Utc>) -> Result<PurgeTotals, StoreError>;
    fn record_audit(
        &self,
        action: &str,
        command: &str,
        person: Option<&str>,
        counts: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    fn audit_since(&self, t: DateTime<Utc>) -> Result<Vec<AuditRow>, StoreError>;
    /// Purges and erasures finished in `[start, end)`, summed.
    fn purged_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<PurgeTotals, StoreError>;
    fn acknowledgements_to(&self, address: &str) -> Result<Vec<SentMail>, StoreError>;
    fn filed_rows(&self, address: &str) -> Result<Vec<FiledRow>, StoreError>;
    fn is_forgotten(&self, hash: &str) -> Result<bool, StoreError>;
    fn remove_tombstone(&self, hash: &str) -> Result<bool, StoreError>;
    fn privacy_overview(&self) -> Result<PrivacyOverview, StoreError>;
    /// Moves the write-ahead log into the database and empties it: the old pages of deleted rows
    /// leave the `-wal` file too.
    fn checkpoint(&self) -> Result<(), StoreError>;
}

const KEY_CHECK: &[u8] = b"mailroom privacy key check";

impl Store {
    fn key_path(&self) -> PathBuf {
        self.path.with_extension("privacy-key")
    }

    fn lock_file(&self, ext: &str) -> Result<File, StoreError> {
        let path = self.path.with_extension(ext);
        File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: format!("cannot open the lock file: {e}"),
        })
    }

    /// The privacy key: read, or made on first use (never over an existing one).
    fn key(&self) -> Result<&hmac::Key, StoreError> {
        if let Some(k) = self.key.get() {
            return Ok(k);
        }
        let path = self.key_path();
        let err = |message: String| StoreError::Key { path: path.display().to_string(), message };
        let check: Option<String> = self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = 'privacy_key_check'", [], |r| r.get(0))
            .optional()?;
        let bytes = match File::open(&path) {
            Ok(mut f) => {
                let mut b = Vec::new();
                f.read_to_end(&mut b).map_err(|e| err(format!("cannot read: {e}")))?;
                b
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && check.is_none() => {
                make_key(&path).map_err(|e| err(format!("cannot create: {e}")))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(
                    "missing, but this state has used one: forgotten addresses cannot be recognised without it; \
                     restore it from the backup of the state"
                        .into(),
                ));
            }
            Err(e) => return Err(err(format!("cannot open: {e}"))),
        };
        if bytes.len() != 32 {
            return Err(err(format!("holds {} bytes; a privacy key is 32", bytes.len())));
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        let fingerprint = hex::encode(hmac::sign(&key, KEY_CHECK).as_ref());
        match check {
            Some(c) if c != fingerprint => {
                return Err(err("does not belong to this state (restored from another one?)".into()));
            }
            Some(_) => {}
            None => {
                self.conn().execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('privacy_key_check', ?1)",
                    params![fingerprint],
                )?;
            }
        }
        let _ = self.key.set(key);
        Ok(self.key.get().expect("the key was just set"))
    }

    /// Whether mail from this address may be filed now (the pipeline asks before filing).
    pub(super) fn block_for(&self, address: &str) -> Result<Option<Block>, StoreError> {
        let hash = self.keyed(address)?;
        let conn = self.conn();
        let found = |sql: &str| -> Result<bool, StoreError> {
            Ok(conn.prepare_cached(sql)?.query_row(params![hash], |_| Ok(())).optional()?.is_some())
        };
        if found("SELECT 1 FROM tombstones WHERE hash = ?1")? {
            return Ok(Some(Block::Forgotten));
        }
        if found("SELECT 1 FROM purging WHERE hash = ?1")? {
            return Ok(Some(Block::Purging));
        }
        Ok(None)
    }

    fn people_where(&self, address: Option<&str>) -> Result<Vec<PersonRow>, StoreError> {
        self.people_matching("(?1 IS NULL OR m.candidate = ?1)", &address, address)
    }

    /// The people whose applications pass `filter` (SQL on `messages m`, its one parameter
    /// `arg`); `address`, if any, narrows the holds and consents read to that person's.
    fn people_matching(
        &self,
        filter: &str,
        arg: &dyn rusqlite::ToSql,
        address: Option<&str>,
    ) -> Result<Vec<PersonRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT m.id, m.candidate, coalesce(m.candidate_name, m.candidate), coalesce(m.posting, ''), coalesce(m.path, ''),
                    m.received_at, (SELECT count(*) FROM documents d WHERE d.message = m.id AND d.filename IS NOT NULL)
             FROM messages m WHERE m.outcome = 'filed' AND m.candidate IS NOT NULL AND {filter}
             ORDER BY m.candidate, m.received_at, m.id"
        ))?;
        let rows = stmt.query_map(params![arg], |r| {
            Ok((
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                AppRow {
                    id: r.get(0)?,
                    posting: r.get(3)?,
                    folder: r.get(4)?,
                    received_at: parse_ts(&r.get::<_, String>(5)?),
                    documents: r.get(6)?,
                },
            ))
        })?;
        let mut people: BTreeMap<String, PersonRow> = BTreeMap::new();
        for row in rows {
            let (address, name, app) = row?;
            let p = people.entry(address.clone()).or_insert_with(|| PersonRow {
                address,
                name: String::new(),
                consent_at: None,
                hold: None,
                applications: Vec::new(),
            });
            p.name = name;
            p.applications.push(app);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT address, consent_at, hold_reason, held_at FROM people WHERE ?1 IS NULL OR address = ?1",
        )?;
        let extra = stmt.query_map(params![address], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in extra {
            let (address, consent, reason, held_at) = row?;
            if let Some(p) = people.get_mut(&address) {
                p.consent_at = consent.map(|s| parse_ts(&s));
                p.hold = reason.map(|reason| Hold { reason, at: held_at.map(|s| parse_ts(&s)).unwrap_or_default() });
            }
        }
        Ok(people.into_values().collect())
    }

    fn locations(&self, sql: &str, arg: &str) -> Result<Vec<(Location, String, Option<String>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![arg], |r| {
            Ok((
                Location {
                    row: r.get(0)?,
                    mailbox: r.get(1)?,
                    uidvalidity: r.get(2)?,
                    uid: r.get(3)?,
                    sha256: r.get(4)?,
                    message_id: r.get(5)?,
                },
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn make_key(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use ring::rand::SecureRandom;
    let mut bytes = vec![0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| std::io::Error::other("no system randomness"))?;
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(&bytes)?;
            f.sync_all()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(bytes)
        }
        // Another process made it first: theirs is the key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path),
        Err(e) => Err(e),
    }
}

// Every transaction here is IMMEDIATE: one that reads first and writes later would fail at once
// (SQLITE_BUSY_SNAPSHOT, no busy wait) when another connection (the daemon, `mailroom status`)
// wrote in between.

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serialises")
}

fn totals_of(s: Option<String>) -> PurgeTotals {
    s.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
}

impl PrivacyStore for Store {
    fn keyed(&self, address: &str) -> Result<String, StoreError> {
        let key = self.key()?;
        Ok(hex::encode(hmac::sign(key, address.trim().to_lowercase().as_bytes()).as_ref()))
    }

    fn filing_lock(&self) -> Result<FilingGuard, StoreError> {
        let file = self.lock_file("filing-lock")?;
        file.lock().map_err(|e| StoreError::Open {
            path: self.path.display().to_string(),
            message: format!("cannot take the filing lock: {e}"),
        })?;
        Ok(FilingGuard { _file: file })
    }

    fn purge_lock(&self, wait: bool) -> Result<Option<PurgeLock>, StoreError> {
        let file = self.lock_file("purge-lock")?;
        let failed = |e: std::io::Error| StoreError::Open {
            path: self.path.display().to_string(),
            message: format!("cannot take the purge lock: {e}"),
        };
        if wait {
            file.lock().map_err(failed)?;
            return Ok(Some(PurgeLock { _file: file }));
        }
        match file.try_lock() {
            Ok(()) => Ok(Some(PurgeLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
        }
    }

    fn people(&self) -> Result<Vec<PersonRow>, StoreError> {
        self.people_where(None)
    }

    fn person(&self, address: &str) -> Result<Option<PersonRow>, StoreError> {
        Ok(self.people_where(Some(address))?.into_iter().next())
    }

    fn people_last_applied_by(&self, t: DateTime<Utc>) -> Result<Vec<PersonRow>, StoreError> {
        // Compared as stored text, which orders as time for ts()'s one format; a second more lets
        // a row stored without milliseconds ("…:05Z" sorts after "…:05.000Z") count as the
        // instant it is. Read person by person from messages_filed_person alone.
        let by = ts(t.checked_add_signed(chrono::Duration::seconds(1)).unwrap_or(t));
        self.people_matching(
            "m.candidate IN (SELECT candidate FROM messages WHERE outcome = 'filed' AND candidate IS NOT NULL
                              GROUP BY candidate HAVING max(received_at) <= ?1)",
            &by,
            None,
        )
    }

    fn person_records(&self, address: &str) -> Result<PersonRecords, StoreError> {
        // Their applications, and every copy of the same message recorded as a duplicate
        // (another UID, folder or UIDVALIDITY).
        let found = self.locations(
            "WITH own AS (SELECT id, sha256, message_id FROM messages WHERE candidate = ?1 AND outcome = 'filed')
             SELECT id, mailbox, uidvalidity, uid, sha256, message_id, outcome, path FROM messages
             WHERE id IN (SELECT id FROM own)
                OR (outcome = 'duplicate' AND (sha256 IN (SELECT sha256 FROM own)
                    OR message_id IN (SELECT message_id FROM own WHERE message_id IS NOT NULL)))
             ORDER BY id",
            address,
        )?;
        Ok(PersonRecords {
            rows: found.iter().map(|(l, _, _)| l.row).collect(),
            locations: found.into_iter().map(|(l, _, _)| l).collect(),
        })
    }

    fn quarantined_before(&self, t: DateTime<Utc>) -> Result<Vec<QuarantineRecord>, StoreError> {
        let found = self.locations(
            "WITH q AS (SELECT id, sha256 FROM messages WHERE outcome = 'quarantined' AND recorded_at < ?1)
             SELECT id, mailbox, uidvalidity, uid, sha256, message_id, outcome, path FROM messages
             WHERE id IN (SELECT id FROM q) OR (outcome = 'duplicate' AND sha256 IN (SELECT sha256 FROM q))
             ORDER BY id",
            &ts(t),
        )?;
        let mut out: Vec<QuarantineRecord> = Vec::new();
        let mut by_sha: BTreeMap<String, usize> = BTreeMap::new();
        for (loc, outcome, path) in found.iter().filter(|(_, o, _)| o == "quarantined") {
            let _ = outcome;
            by_sha.insert(loc.sha256.clone(), out.len());
            out.push(QuarantineRecord { rows: vec![loc.row], path: path.clone(), locations: vec![loc.clone()] });
        }
        for (loc, _, _) in found.iter().filter(|(_, o, _)| o == "duplicate") {
            if let Some(&i) = by_sha.get(&loc.sha256) {
                out[i].rows.push(loc.row);
                out[i].locations.push(loc.clone());
            }
        }
        Ok(out)
    }

    fn set_hold(&self, address: &str, reason: Option<&str>, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = match reason {
            Some(reason) => conn.execute(
                "INSERT INTO people (address, hold_reason, held_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (address) DO UPDATE SET hold_reason = excluded.hold_reason, held_at = excluded.held_at",
                params![address, reason, ts(now)],
            )?,
            None => conn.execute(
                "UPDATE people SET hold_reason = NULL, held_at = NULL WHERE address = ?1 AND hold_reason IS NOT NULL",
                params![address],
            )?,
        };
        conn.execute("DELETE FROM people WHERE consent_at IS NULL AND hold_reason IS NULL", [])?;
        Ok(n > 0)
    }

    fn set_consent(&self, address: &str, at: Option<DateTime<Utc>>) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = match at {
            Some(at) => conn.execute(
                "INSERT INTO people (address, consent_at) VALUES (?1, ?2)
                 ON CONFLICT (address) DO UPDATE SET consent_at = excluded.consent_at",
                params![address, ts(at)],
            )?,
            None => conn.execute(
                "UPDATE people SET consent_at = NULL WHERE address = ?1 AND consent_at IS NOT NULL",
                params![address],
            )?,
        };
        conn.execute("DELETE FROM people WHERE consent_at IS NULL AND hold_reason IS NULL", [])?;
        Ok(n > 0)
    }

    fn begin_purge(
        &self,
        command: &str,
        action: &str,
        person: Option<&str>,
        steps: &[(String, String)],
        marks: &[String],
        tombstone: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO purges (command, action, person, started_at) VALUES (?1, ?2, ?3, ?4)",
            params![command, action, person, ts(now)],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut step = tx.prepare_cached("INSERT INTO purge_steps (purge, kind, target) VALUES (?1, ?2, ?3)")?;
            for (kind, target) in steps {
                step.execute(params![id, kind, target])?;
            }
            let mut mark = tx.prepare_cached("INSERT OR REPLACE INTO purging (hash, purge) VALUES (?1, ?2)")?;
            for hash in marks {
                mark.execute(params![hash, id])?;
            }
        }
        if let Some(hash) = tombstone {
            tx.execute("INSERT OR IGNORE INTO tombstones (hash, created_at) VALUES (?1, ?2)", params![hash, ts(now)])?;
        }
        tx.commit()?;
        Ok(id)
    }

    fn unfinished_purges(&self) -> Result<Vec<PurgeRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT id, command, started_at FROM purges WHERE finished_at IS NULL ORDER BY id")?;
        let purges: Vec<(i64, String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let mut steps = conn.prepare_cached(
            "SELECT id, kind, target, done_at IS NOT NULL, error, outcome FROM purge_steps WHERE purge = ?1 ORDER BY id",
        )?;
        let mut out = Vec::new();
        for (id, command, started) in purges {
            let found = steps
                .query_map(params![id], |r| {
                    Ok(StepRecord {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        target: r.get(2)?,
                        done: r.get(3)?,
                        error: r.get(4)?,
                        outcome: totals_of(r.get(5)?),
                    })
                })?
                .collect::<Result<_, _>>()?;
            out.push(PurgeRecord { id, command, started_at: parse_ts(&started), steps: found });
        }
        Ok(out)
    }

    fn step_done(&self, step: i64, outcome: &PurgeTotals, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE purge_steps SET done_at = ?2, outcome = ?3, error = NULL WHERE id = ?1",
            params![step, ts(now), json(outcome)],
        )?;
        Ok(())
    }

    fn step_failed(&self, step: i64, error: &str) -> Result<(), StoreError> {
        self.conn().execute("UPDATE purge_steps SET error = ?2 WHERE id = ?1", params![step, error])?;
        Ok(())
    }

    fn purge_rows(&self, step: i64, target: &RowsTarget, now: DateTime<Utc>) -> Result<PurgeTotals, StoreError> {
        let hash = match &target.address {
            Some(a) => Some(self.keyed(a)?),
            None => None,
        };
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut t = PurgeTotals::default();
        {
            let mut outcome = tx.prepare_cached("SELECT outcome FROM messages WHERE id = ?1")?;
            let mut documents = tx.prepare_cached("DELETE FROM documents WHERE message = ?1")?;
            let mut outbox = tx.prepare_cached("DELETE FROM outbox WHERE message = ?1")?;
            let mut strip = tx.prepare_cached(
                "UPDATE messages SET outcome = 'purged', reason = NULL, message_id = NULL, candidate = NULL,
                     candidate_name = NULL, posting = NULL, path = NULL, reply = '', reply_code = NULL, missing = NULL,
                     repeat = 0, filed = NULL
                 WHERE id = ?1",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
            for &id in &target.rows {
                let Some(was): Option<String> = outcome.query_row(params![id], |r| r.get(0)).optional()? else {
                    continue;
                };
                t.messages += u64::from(was == "filed");
                t.quarantined += u64::from(was == "quarantined");
                t.documents += documents.execute(params![id])? as u64;
                t.acknowledgements += outbox.execute(params![id])? as u64;
                if target.strip {
                    strip.execute(params![id])?;
                } else {
                    delete.execute(params![id])?;
                }
            }
        }
        if let (Some(address), Some(hash)) = (&target.address, &hash) {
            t.people = 1;
            t.acknowledgements += tx.execute(
                "DELETE FROM outbox WHERE recipient = ?1 AND coalesce(kind, '') != 'digest'",
                params![address],
            )? as u64;
            // The team's digests list names and addresses: the ones that name this person go too.
            t.digests += tx
                .execute("DELETE FROM outbox WHERE kind = 'digest' AND instr(mail, ?1) > 0", params![address])?
                as u64;
            tx.execute("DELETE FROM people WHERE address = ?1", params![address])?;
            tx.execute("DELETE FROM purging WHERE hash = ?1", params![hash])?;
        }
        tx.execute(
            "UPDATE purge_steps SET done_at = ?2, outcome = ?3, error = NULL WHERE id = ?1",
            params![step, ts(now), json(&t)],
        )?;
        tx.commit()?;
        Ok(t)
    }

    fn drop_stripped(
        &self,
        step: i64,
        rows: &[i64],
        outcome: &PurgeTotals,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1 AND outcome = 'purged'")?;
            for &id in rows {
                delete.execute(params![id])?;
            }
        }
        tx.execute(
            "UPDATE purge_steps SET done_at = ?2, outcome = ?3, error = NULL WHERE id = ?1",
            params![step, ts(now), json(outcome)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn purge_history(
        &self,
        step: i64,
        history: DateTime<Utc>,
        audit: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<PurgeTotals, StoreError> {
        let (h, a) = (ts(history), ts(audit));
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut t = PurgeTotals::default();
        t.history += tx.execute(
            "DELETE FROM outbox WHERE state IN ('sent', 'failed', 'uncertain') AND created_at < ?1",
            params![h],
        )? as u64;
        t.history += tx.execute(
            "DELETE FROM messages WHERE outcome IN ('duplicate', 'forgotten') AND recorded_at < ?1
                 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message = messages.id)
                 AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.message = messages.id)",
            params![h],
        )? as u64;
        // The latest window stays: it is where the next digest starts.
        t.history += tx.execute(
            "DELETE FROM digests WHERE window_end < ?1 AND window_end < (SELECT max(window_end) FROM digests)",
            params![h],
        )? as u64;
        t.audit += tx.execute("DELETE FROM audit WHERE at < ?1", params![a])? as u64;
        tx.execute("DELETE FROM purges WHERE finished_at IS NOT NULL AND finished_at < ?1", params![a])?;
        tx.execute(
            "UPDATE purge_steps SET done_at = ?2, outcome = ?3, error = NULL WHERE id = ?1",
            params![step, ts(now), json(&t)],
        )?;
        tx.commit()?;
        Ok(t)
    }

    fn finish_purge(&self, purge: i64, now: DateTime<Utc>) -> Result<PurgeTotals, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (command, action, person, left): (String, String, Option<String>, i64) = tx.query_row(
            "SELECT command, action, person, (SELECT count(*) FROM purge_steps WHERE purge = ?1 AND done_at IS NULL)
             FROM purges WHERE id = ?1",
            params![purge],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        debug_assert_eq!(left, 0, "a purge finishes when every step is done");
        let mut total = PurgeTotals::default();
        {
            let mut stmt = tx.prepare_cached("SELECT outcome FROM purge_steps WHERE purge = ?1")?;
            for o in stmt.query_map(params![purge], |r| r.get::<_, Option<String>>(0))? {
                total.add(&totals_of(o?));
            }
        }
        let counts = json(&total);
        tx.execute("UPDATE purges SET finished_at = ?2, counts = ?3 WHERE id = ?1", params![purge, ts(now), counts])?;
        tx.execute("DELETE FROM purge_steps WHERE purge = ?1", params![purge])?;
        tx.execute("DELETE FROM purging WHERE purge = ?1", params![purge])?;
        tx.execute(
            "INSERT INTO audit (at, action, command, person, counts) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ts(now), action, command, person, counts],
        )?;
        tx.commit()?;
        Ok(total)
    }

    fn record_audit(
        &self,
        action: &str,
        command: &str,
        person: Option<&str>,
        counts: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO audit (at, action, command, person, counts) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ts(now), action, command, person, counts.to_string()],
        )?;
        Ok(())
    }

    fn audit_since(&self, t: DateTime<Utc>) -> Result<Vec<AuditRow>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT at, action, command, person, counts FROM audit WHERE at >= ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![ts(t)], |r| {
            Ok(AuditRow {
                at: parse_ts(&r.get::<_, String>(0)?),
                action: r.get(1)?,
                command: r.get(2)?,
                person: r.get(3)?,
                counts: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn purged_between(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<PurgeTotals, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT counts FROM audit WHERE action IN ('purge', 'forget') AND at >= ?1 AND at < ?2")?;
        let mut total = PurgeTotals::default();
        for c in stmt.query_map(params![ts(start), ts(end)], |r| r.get::<_, Option<String>>(0))? {
            total.add(&totals_of(c?));
        }
        Ok(total)
    }

    fn acknowledgements_to(&self, address: &str) -> Result<Vec<SentMail>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT created_at, sent_at, state, mail FROM outbox WHERE recipient = ?1 AND coalesce(kind, '') != 'digest' ORDER BY id",
        )?;
        let rows = stmt.query_map(params![address], |r| {
            Ok(SentMail {
                created_at: parse_ts(&r.get::<_, String>(0)?),
                sent_at: r.get::<_, Option<String>>(1)?.map(|s| parse_ts(&s)),
                state: r.get(2)?,
                mail: serde_json::from_str(&r.get::<_, String>(3)?).ok(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn filed_rows(&self, address: &str) -> Result<Vec<FiledRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT coalesce(path, ''), received_at, filed, reply FROM messages WHERE candidate = ?1 AND outcome = 'filed'
             ORDER BY received_at, id",
        )?;
        let rows = stmt.query_map(params![address], |r| {
            Ok(FiledRow {
                folder: r.get(0)?,
                received_at: parse_ts(&r.get::<_, String>(1)?),
                application: r.get::<_, Option<String>>(2)?.and_then(|s| serde_json::from_str(&s).ok()),
                reply: ReplyNote::from_stored(&r.get::<_, String>(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn is_forgotten(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM tombstones WHERE hash = ?1", params![hash], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn remove_tombstone(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute("DELETE FROM tombstones WHERE hash = ?1", params![hash])? > 0)
    }

    fn privacy_overview(&self) -> Result<PrivacyOverview, StoreError> {
        let conn = self.conn();
        let count =
            |sql: &str| -> Result<u64, StoreError> { Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        Ok(PrivacyOverview {
            held: count("SELECT count(*) FROM people WHERE hold_reason IS NOT NULL")?,
            consented: count("SELECT count(*) FROM people WHERE consent_at IS NOT NULL")?,
            forgotten: count("SELECT count(*) FROM tombstones")?,
            unfinished_purges: count("SELECT count(*) FROM purges WHERE finished_at IS NULL")?,
            steps_left: count(
                "SELECT count(*) FROM purge_steps s JOIN purges p ON p.id = s.purge WHERE p.finished_at IS NULL AND s.done_at IS NULL",
            )?,
            steps_done: count(
                "SELECT count(*) FROM purge_steps s JOIN purges p ON p.id = s.purge WHERE p.finished_at IS NULL AND s.done_at IS NOT NULL",
            )?,
            last_error: conn
                .query_row(
                    "SELECT error FROM purge_steps WHERE error IS NOT NULL AND done_at IS NULL ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?,
            last_purge: conn
                .query_row("SELECT max(finished_at) FROM purges WHERE action = 'purge'", [], |r| {
                    r.get::<_, Option<String>>(0)
                })?
                .map(|s| parse_ts(&s)),
        })
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_last_applied_by_a_time_are_everyone_whose_every_application_is_that_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite3")).unwrap();
        // (candidate, received_at, outcome); one row stored without milliseconds, as old rows are.
        let rows = [
            ("old@x", "2026-01-01T10:00:00.000Z", "filed"),
            ("old@x", "2026-02-01T10:00:00.000Z", "filed"),
            ("new@x", "2026-01-01T10:00:00.000Z", "filed"),
            ("new@x", "2026-03-01T10:00:00.000Z", "filed"),
            ("edge@x", "2026-02-10T00:00:00Z", "filed"),
            ("dup@x", "2026-01-01T10:00:00.000Z", "filed"),
            ("dup@x", "2026-03-05T10:00:00.000Z", "duplicate"),
        ];
        {
            let conn = store.conn();
            for (uid, (candidate, at, outcome)) in rows.iter().enumerate() {
                conn.execute(
                    "INSERT INTO messages (mailbox, uidvalidity, uid, sha256, received_at, recorded_at, outcome, candidate, reply)
                     VALUES ('m', 1, ?1, ?2, ?3, ?3, ?4, ?5, '')",
                    params![uid as i64, format!("raw-{uid}"), at, outcome, candidate],
                )
                .unwrap();
            }
        }
        let who = |t: &str| {
            let people = store.people_last_applied_by(parse_ts(t)).unwrap();
            people.iter().map(|p| format!("{}:{}", p.address, p.applications.len())).collect::<Vec<_>>()
        };
        assert_eq!(who("2026-02-09T23:59:58.000Z"), ["dup@x:1", "old@x:2"]);
        assert_eq!(who("2026-02-10T00:00:00.000Z"), ["dup@x:1", "edge@x:1", "old@x:2"], "at the very instant");
        assert_eq!(who("2026-03-01T10:00:00.000Z"), ["dup@x:1", "edge@x:1", "new@x:2", "old@x:2"]);
        // The same rows as everyone's, for those it names.
        let all = store.people().unwrap();
        let some = store.people_last_applied_by(parse_ts("2026-02-10T00:00:00.000Z")).unwrap();
        assert!(some.iter().all(|p| all.contains(p)));
    }
}
