//! Stage 5, record: the SQLite store, and the commit point of the pipeline.
//!
//! One transaction per batch writes every message's row, its documents, its outbox entry and the
//! mailbox's new high-water mark; `synchronous=FULL` in WAL mode makes the commit durable with one
//! fsync per batch (a group commit). A message is known by mailbox + UIDVALIDITY + UID, and
//! also by its raw sha256 and Message-ID, so a UIDVALIDITY reset or a move between servers is
//! recognised and nobody is filed or answered twice.
//!
//! The outbox is a small state machine that makes acknowledgements *at most once*:
//! `pending → sending → sent`, with `sending → pending` on a transient failure (retried with
//! backoff) and `sending → failed` on a permanent one. An entry found in `sending` at start was
//! caught mid-send by a crash: it may or may not have left, so it becomes `uncertain` and is
//! reported, never sent again blindly.

use std::fs::File;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::courier::OutgoingMail;
use crate::error::{Classified, Retry};
use crate::filing::FiledDocument;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database {path}: {message}")]
    Open { path: String, message: String },
    #[error("another mailroom is already running on {0} (its lock is held)")]
    Locked(String),
}

impl Classified for StoreError {
    fn retry(&self) -> Retry {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::DiskFull
                ) =>
            {
                Retry::Transient
            }
            _ => Retry::Permanent,
        }
    }
}

/// Which mailbox a UID belongs to: UIDs mean nothing without the folder and its UIDVALIDITY.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxKey {
    /// `user@host/folder`
    pub name: String,
    pub uidvalidity: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Filed,
    Quarantined,
    /// Seen before (same bytes or Message-ID), under another UID or UIDVALIDITY.
    Duplicate,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Filed => "filed",
            Outcome::Quarantined => "quarantined",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// Everything the store keeps about one message.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub uid: u32,
    pub sha256: String,
    pub message_id: Option<String>,
    pub received_at: DateTime<Utc>,
    pub outcome: Outcome,
    /// Quarantine reason, or what the duplicate duplicates.
    pub reason: Option<String>,
    pub candidate: Option<String>,
    pub candidate_name: Option<String>,
    pub posting: Option<String>,
    /// The kinds this message lacked (`cv`, `cover_letter`).
    pub missing: Vec<crate::understand::DocKind>,
    /// An earlier application from the same person was already on file.
    pub repeat: bool,
    /// What filing did (for a filed application): kept as the truth about the folder.
    pub filed: Option<crate::filing::FiledApplication>,
    /// Relative to the data root: the candidate folder or the quarantine stem.
    pub path: Option<String>,
    /// `queued: <kind>` or `skipped: <reason>`.
    pub reply: String,
    pub documents: Vec<FiledDocument>,
    pub outbox: Option<OutgoingMail>,
}

impl MessageRecord {
    /// A message that was not filed (a duplicate, a quarantine): no candidate, no documents, no reply.
    pub fn not_filed(
        uid: u32,
        sha256: String,
        message_id: Option<String>,
        received_at: DateTime<Utc>,
        outcome: Outcome,
        reason: String,
        path: Option<String>,
    ) -> MessageRecord {
        let reply = match outcome {
            Outcome::Duplicate => "skipped: duplicate",
            _ => "skipped: quarantined",
        };
        MessageRecord {
            uid,
            sha256,
            message_id,
            received_at,
            outcome,
            reason: Some(reason),
            candidate: None,
            candidate_name: None,
            posting: None,
            missing: Vec::new(),
            repeat: false,
            filed: None,
            path,
            reply: reply.into(),
            documents: Vec::new(),
            outbox: None,
        }
    }
}

/// One group commit.
#[derive(Debug, Clone)]
pub struct Batch {
    pub mailbox: MailboxKey,
    /// The highest UID this batch covers: the next fetch starts above it.
    pub high_water: u32,
    pub records: Vec<MessageRecord>,
}

#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub attempts: u32,
    pub mail: OutgoingMail,
}

/// Counts for summaries and `status`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub filed: u64,
    pub quarantined: u64,
    pub duplicates: u64,
    pub outbox_pending: u64,
    pub outbox_sent: u64,
    pub outbox_failed: u64,
    pub outbox_uncertain: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MailboxStatus {
    pub name: String,
    pub uidvalidity: u32,
    pub high_water: u32,
    /// The last time a pass selected this folder successfully.
    pub last_contact: Option<DateTime<Utc>>,
}

/// The state as `mailroom status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub first_start: DateTime<Utc>,
    pub mailboxes: Vec<MailboxStatus>,
    pub filed_today: u64,
    pub last_message: Option<DateTime<Utc>>,
    pub totals: Totals,
}

/// The store, by role: what the pipeline and the outbox sender need of it.
pub trait Ledger {
    /// When this state was first used: older mail is backlog.
    fn first_start(&self) -> DateTime<Utc>;
    fn high_water(&self, mailbox: &MailboxKey) -> Result<u32, StoreError>;
    /// A message already recorded with these bytes or this Message-ID: its row id.
    fn find_duplicate(&self, sha256: &str, message_id: Option<&str>) -> Result<Option<i64>, StoreError>;
    /// The commit point: the batch's rows, documents, outbox entries and high-water mark, atomically.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
    fn record_contact(&mut self, mailbox: &MailboxKey, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Pending entries due at `now`, oldest first.
    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// `pending → sending`, committed before the mail is handed to SMTP. False if already taken.
    fn claim(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
    fn mark_sent(&mut self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
    fn mark_retry(&mut self, id: i64, error: &str, next_attempt: DateTime<Utc>) -> Result<(), StoreError>;
    fn mark_failed(&mut self, id: i64, error: &str) -> Result<(), StoreError>;
    /// At start: entries left in `sending` by a crash become `uncertain`. Returns how many.
    fn recover_interrupted(&mut self) -> Result<usize, StoreError>;
    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// When this address was last answered (any reply queued, whatever became of it), and how.
    fn last_reply_to(&self, address: &str) -> Result<Option<(DateTime<Utc>, String)>, StoreError>;
    /// Replies queued since `t`, all addresses.
    fn replies_since(&self, t: DateTime<Utc>) -> Result<u64, StoreError>;
    /// The applications committed in a candidate folder (relative path), oldest first.
    fn committed_in_folder(&self, folder: &str) -> Result<Vec<crate::filing::FiledApplication>, StoreError>;
    fn totals(&self) -> Result<Totals, StoreError>;
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes (
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    high_water INTEGER NOT NULL DEFAULT 0,
    last_contact TEXT,
    PRIMARY KEY (name, uidvalidity)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    mailbox TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    message_id TEXT,
    received_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    candidate TEXT,
    posting TEXT,
    path TEXT,
    reply TEXT NOT NULL,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX IF NOT EXISTS messages_sha256 ON messages (sha256);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id);
CREATE TABLE IF NOT EXISTS documents (
    message INTEGER NOT NULL REFERENCES messages (id),
    kind TEXT NOT NULL,
    filename TEXT,
    original_name TEXT,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages (id),
    reply_message_id TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    mail TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
"#;

/// Schema changes after the first release, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "ALTER TABLE outbox ADD COLUMN kind TEXT; CREATE INDEX IF NOT EXISTS outbox_recipient ON outbox (recipient, created_at);",
    // What the digest shows without reopening every metadata.json. The outbox is rebuilt so a
    // digest (which answers no message) can sit in it. A window's start is unique: the same
    // window can never be claimed (and so sent) twice, by a restart or a second process.
    "ALTER TABLE messages ADD COLUMN candidate_name TEXT;
     ALTER TABLE messages ADD COLUMN missing TEXT;
     ALTER TABLE messages ADD COLUMN repeat INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX IF NOT EXISTS messages_recorded ON messages (recorded_at);
     CREATE TABLE outbox_v2 (
         id INTEGER PRIMARY KEY,
         message INTEGER REFERENCES messages (id),
         reply_message_id TEXT NOT NULL UNIQUE,
         recipient TEXT NOT NULL,
         mail TEXT NOT NULL,
         state TEXT NOT NULL DEFAULT 'pending',
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_at TEXT NOT NULL,
         last_error TEXT,
         created_at TEXT NOT NULL,
         sent_at TEXT,
         kind TEXT
     );
     INSERT INTO outbox_v2 SELECT id, message, reply_message_id, recipient, mail, state, attempts, next_attempt_at, last_error, created_at, sent_at, kind FROM outbox;
     DROP TABLE outbox;
     ALTER TABLE outbox_v2 RENAME TO outbox;
     CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
     CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
     CREATE TABLE IF NOT EXISTS digests (
         id INTEGER PRIMARY KEY,
         window_start TEXT NOT NULL UNIQUE,
         window_end TEXT NOT NULL,
         created_at TEXT NOT NULL,
         candidates INTEGER NOT NULL
     );",
    // The filing of each application, as committed: the truth about what a candidate folder
    // holds, so files are flushed once per batch and metadata.json can always be rebuilt.
    "ALTER TABLE messages ADD COLUMN filed TEXT;
     CREATE INDEX IF NOT EXISTS messages_path ON messages (path);",
];

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    // The version is read under the write lock: `mailroom status` may open a new state at the
    // very moment the daemon creates it, and only one of them may apply each migration.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let applied = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
        for sql in MIGRATIONS.iter().skip(applied) {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        Ok::<_, rusqlite::Error>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

/// The SQLite implementation of [`Ledger`].
#[derive(Debug)]
pub struct SqliteLedger {
    conn: Connection,
    first_start: DateTime<Utc>,
    // Held for the life of the ledger: a second daemon on the same state would fetch and send twice.
    _lock: Option<File>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

impl SqliteLedger {
    /// Opens (creating if needed) the state for a daemon: takes the exclusive lock.
    pub fn open(path: &Path) -> Result<SqliteLedger, StoreError> {
        let shown = path.display().to_string();
        let open_err = |message: String| StoreError::Open { path: shown.clone(), message };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| open_err(format!("cannot open {}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(shown)),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(open_err(format!("cannot lock {}: {e}", lock_path.display())));
            }
        }
        let mut ledger = Self::open_unlocked(path)?;
        ledger._lock = Some(lock);
        Ok(ledger)
    }

    /// Opens without the daemon lock, for readers such as `status` (WAL lets them run alongside).
    pub fn open_unlocked(path: &Path) -> Result<SqliteLedger, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 1 MiB of page cache instead of 2: the daemon's idle memory has a 15 MB budget, and the
        // operating system caches the file anyway.
        conn.pragma_update(None, "cache_size", -1024)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('first_start', ?1)", params![ts(Utc::now())])?;
        let first: String = conn.query_row("SELECT value FROM meta WHERE key = 'first_start'", [], |r| r.get(0))?;
        Ok(SqliteLedger { conn, first_start: parse_ts(&first), _lock: None })
    }

    /// What `mailroom status` shows: read-only, safe while the daemon runs.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT name, uidvalidity, high_water, last_contact FROM mailboxes m
             WHERE uidvalidity = (SELECT uidvalidity FROM mailboxes WHERE name = m.name ORDER BY last_contact DESC LIMIT 1)
             ORDER BY name",
        )?;
        let mailboxes = stmt
            .query_map([], |r| {
                Ok(MailboxStatus {
                    name: r.get(0)?,
                    uidvalidity: r.get(1)?,
                    high_water: r.get(2)?,
                    last_contact: r.get::<_, Option<String>>(3)?.map(|s| parse_ts(&s)),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let today = ts(Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
        let filed_today: i64 = self.conn.query_row(
            "SELECT count(*) FROM messages WHERE outcome = 'filed' AND recorded_at >= ?1",
            params![today],
            |r| r.get(0),
        )?;
        let last_message: Option<String> =
            self.conn
                .query_row("SELECT max(recorded_at) FROM messages WHERE outcome != 'duplicate'", [], |r| r.get(0))?;
        Ok(Snapshot {
            first_start: self.first_start,
            mailboxes,
            filed_today: filed_today as u64,
            last_message: last_message.map(|s| parse_ts(&s)),
            totals: self.totals()?,
        })
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Every message row, for tests and `status`: (uid, outcome, reply).
    pub fn messages(&self) -> Result<Vec<(u32, String, String)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT uid, outcome, reply FROM messages ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Ledger for SqliteLedger {
    fn first_start(&self) -> DateTime<Utc> {
        self.first_start
    }

    fn high_water(&self, mailbox: &MailboxKey) -> Result<u32, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT high_water FROM mailboxes WHERE name = ?1 AND uidvalidity = ?2",
                params![mailbox.name, mailbox.uidvalidity],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    fn find_duplicate(&self, sha256: &str, message_id: Option<&str>) -> Result<Option<i64>, StoreError> {
        let by_sha = self
            .conn
            .query_row(
                "SELECT id FROM messages WHERE sha256 = ?1 AND outcome != 'duplicate' LIMIT 1",
                params![sha256],
                |r| r.get(0),
            )
            .optional()?;
        if by_sha.is_some() {
            return Ok(by_sha);
        }
        match message_id {
            Some(mid) if !mid.is_empty() => Ok(self
                .conn
                .query_row(
                    "SELECT id FROM messages WHERE message_id = ?1 AND outcome != 'duplicate' LIMIT 1",
                    params![mid],
                    |r| r.get(0),
                )
                .optional()?),
            _ => Ok(None),
        }
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let now = ts(Utc::now());
        let tx = self.conn.transaction()?;
        {
            let mut insert_message = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages (mailbox, uidvalidity, uid, sha256, message_id, received_at, recorded_at, outcome, reason, candidate, posting, path, reply, candidate_name, missing, repeat, filed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )?;
            let mut insert_document = tx.prepare_cached(
                "INSERT INTO documents (message, kind, filename, original_name, content_type, size, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut insert_outbox = tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (message, reply_message_id, recipient, mail, next_attempt_at, created_at, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            )?;
            for r in &batch.records {
                let inserted = insert_message.execute(params![
                    batch.mailbox.name,
                    batch.mailbox.uidvalidity,
                    r.uid,
                    r.sha256,
                    r.message_id,
                    ts(r.received_at),
                    now,
                    r.outcome.as_str(),
                    r.reason,
                    r.candidate,
                    r.posting,
                    r.path,
                    r.reply,
                    r.candidate_name,
                    r.missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","),
                    r.repeat,
                    r.filed.as_ref().map(|f| serde_json::to_string(f).expect("filing serialises")),
                ])?;
                if inserted == 0 {
                    continue; // this UID was committed before: nothing twice
                }
                let id = tx.last_insert_rowid();
                for d in &r.documents {
                    insert_document.execute(params![
                        id,
                        d.kind.as_str(),
                        d.filename,
                        d.original_name,
                        d.content_type,
                        d.size as i64,
                        d.sha256
                    ])?;
                }
                if let Some(mail) = &r.outbox {
                    let json = serde_json::to_string(mail).expect("outgoing mail serialises");
                    insert_outbox.execute(params![id, mail.message_id, mail.to, json, now, mail.kind])?;
                }
            }
        }
        tx.execute(
            "INSERT INTO mailboxes (name, uidvalidity, high_water, last_contact) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name, uidvalidity) DO UPDATE SET high_water = max(high_water, excluded.high_water), last_contact = excluded.last_contact",
            params![batch.mailbox.name, batch.mailbox.uidvalidity, batch.high_water, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn record_contact(&mut self, mailbox: &MailboxKey, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO mailboxes (name, uidvalidity, high_water, last_contact) VALUES (?1, ?2, 0, ?3)
             ON CONFLICT (name, uidvalidity) DO UPDATE SET last_contact = excluded.last_contact",
            params![mailbox.name, mailbox.uidvalidity, ts(at)],
        )?;
        Ok(())
    }

    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, attempts, mail FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![ts(now), limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?, r.get::<_, String>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, attempts, json) = row?;
            match serde_json::from_str(&json) {
                Ok(mail) => out.push(OutboxEntry { id, attempts, mail }),
                Err(e) => {
                    tracing::error!(outbox_id = id, error = %e, "unreadable outbox entry; marking it failed");
                    self.conn.execute(
                        "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1",
                        params![id, format!("unreadable entry: {e}")],
                    )?;
                }
            }
        }
        Ok(out)
    }

    fn claim(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, ts(now)],
        )?;
        Ok(n == 1)
    }

    fn mark_sent(&mut self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1",
            params![id, ts(now)],
        )?;
        Ok(())
    }

    fn mark_retry(&mut self, id: i64, error: &str, next_attempt: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'pending', last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
            params![id, error, ts(next_attempt)],
        )?;
        Ok(())
    }

    fn mark_failed(&mut self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn.execute("UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1", params![id, error])?;
        Ok(())
    }

    fn recover_interrupted(&mut self) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET state = 'uncertain', last_error = 'interrupted while sending; not retried (at most once)' WHERE state = 'sending'",
            [],
        )?)
    }

    fn last_reply_to(&self, address: &str) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        let row: Option<(String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT created_at, kind FROM outbox WHERE recipient = ?1 ORDER BY created_at DESC, id DESC LIMIT 1",
                params![address],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(at, kind)| (parse_ts(&at), kind.unwrap_or_default())))
    }

    fn replies_since(&self, t: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE created_at >= ?1 AND coalesce(kind, '') != 'digest'",
            params![ts(t)],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn committed_in_folder(&self, folder: &str) -> Result<Vec<crate::filing::FiledApplication>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT filed FROM messages WHERE path = ?1 AND outcome = 'filed' AND filed IS NOT NULL ORDER BY received_at, id",
        )?;
        let rows = stmt.query_map(params![folder], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            match serde_json::from_str(&row?) {
                Ok(f) => out.push(f),
                Err(e) => {
                    tracing::error!(folder, error = %e, "unreadable filing record; the folder's metadata will lack it")
                }
            }
        }
        Ok(out)
    }

    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> =
            self.conn.query_row("SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'", [], |r| r.get(0))?;
        Ok(next.map(|s| parse_ts(&s)))
    }

    fn totals(&self) -> Result<Totals, StoreError> {
        let count =
            |sql: &str| -> Result<u64, StoreError> { Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        Ok(Totals {
            filed: count("SELECT count(*) FROM messages WHERE outcome = 'filed'")?,
            quarantined: count("SELECT count(*) FROM messages WHERE outcome = 'quarantined'")?,
            duplicates: count("SELECT count(*) FROM messages WHERE outcome = 'duplicate'")?,
            outbox_pending: count("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')")?,
            outbox_sent: count("SELECT count(*) FROM outbox WHERE state = 'sent'")?,
            outbox_failed: count("SELECT count(*) FROM outbox WHERE state = 'failed'")?,
            outbox_uncertain: count("SELECT count(*) FROM outbox WHERE state = 'uncertain'")?,
        })
    }
}
