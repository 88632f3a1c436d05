//! Stage 5, record: the SQLite store, and the commit point of the pipeline.
//!
//! All SQL lives below this module, behind [`Store`], a cheap-to-clone handle that hides its lock
//! (as mini-redis's `Db` does): callers never see a connection or a mutex. What each part of
//! mailroom may ask of it is a trait named by role:
//!
//! | trait | who | what |
//! |---|---|---|
//! | [`Ledger`] | the pipeline | high-water marks, what a folder holds, reply history, the batch commit |
//! | [`Recognition`] | the pipeline (part of `Ledger`) | the same message seen again; the folder of an address |
//! | [`OutboxStore`] | the outbox sender | the outbox's state machine |
//! | [`DigestStore`] | the digest job | what happened in a window; claiming a window with its mail |
//! | [`AuthStore`] | the credentials ([`crate::auth`], as its journal) | whether authentication works, since when, why not |
//! | [`PrivacyStore`] | the purge and the rights commands | people, holds, consent; purges recorded before they act; tombstones; the audit trail |
//! | [`MetricsStore`] | the metrics endpoint, `status --json` | totals since the start, by mailbox, reason and kind |
//! | [`PublishStore`] | the publisher | the publish queue: what the cloud folder must show, in order |
//!
//! One transaction per batch writes every message's row, its documents, its outbox entry and the
//! mailbox's new high-water mark; `synchronous=FULL` in WAL mode makes the commit durable with one
//! fsync per batch (a group commit). A message is known by mailbox + UIDVALIDITY + UID, and also by
//! its raw sha256, or its Message-ID together with the fingerprint of its content, so a
//! UIDVALIDITY reset or a move between servers is recognised and nobody is filed or answered
//! twice, while two different messages that share a Message-ID are both kept.
//!
//! | file | tables |
//! |---|---|
//! | `schema.rs` | the schema and its migrations |
//! | `ledger.rs` | `messages`, `documents`, `mailboxes`: the commit, duplicates, status |
//! | `outbox.rs` | `outbox`: pending → sending → sent / failed / uncertain |
//! | `digest.rs` | `digests` and the digest's reading of the others |
//! | `recognition.rs` | `messages`, read: copies of a message, the folder of an address |
//! | `attempts.rs` | `attempts`: failed filing tries per message ([`Attempts`], part of the ledger) |
//! | `health.rs` | `problems` and the last start: what `status` reports ([`Health`]) |
//! | `recovery.rs` | after a crash: uncertain acknowledgements looked for in Sent ([`SentCheck`]) |
//! | `auth.rs` | `auth_state`: whether authentication works, per part ([`AuthStore`]) |
//! | `privacy.rs` | `people`, `purges`, `purge_steps`, `purging`, `tombstones`, `audit`; the keyed hash; the filing and purge locks |
//! | `metrics.rs` | none of its own: the counts the metrics read from the others |
//! | `publish.rs` | `publish_queue`: pending → done / failed / superseded; folder removals |
//!
//! `secure_delete` is on: a deleted row's bytes are overwritten, not left in free pages.

mod attempts;
mod auth;
mod digest;
mod health;
mod ledger;
mod metrics;
mod outbox;
mod privacy;
mod publish;
mod recognition;
mod recovery;
mod schema;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

pub use auth::AuthStore;
pub use digest::{ApplicationRow, DigestRows, DigestStore, FailedReply, QuarantineRow, StaleCandidate, UpcomingPurge};
pub use ledger::{
    Batch, DuplicateOf, FiledRecord, Ledger, MailboxKey, MailboxStatus, MessageRecord, Outcome, Snapshot, Totals,
};
pub use metrics::{MailboxCounts, MetricCounts, MetricsStore};
pub use outbox::{OutboxEntry, OutboxState, OutboxStore};
pub use recognition::Recognition;

pub use attempts::Attempts;
pub use health::{Area, Health, Problem, Started};
pub use privacy::{
    AppRow, AuditRow, Block, FiledRow, FilingGuard, Hold, Location, PersonRecords, PersonRow, PrivacyOverview,
    PrivacyStore, PurgeLock, PurgeRecord, PurgeTotals, QuarantineRecord, RowsTarget, SentMail, StepRecord,
};
pub use publish::{PublishFailure, PublishFile, PublishItem, PublishOp, PublishStatus, PublishStore};
pub use recovery::{LOOK_FOR, SentCheck};

use crate::error::{Classified, Retry};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database {path}: {message}")]
    Open { path: String, message: String },
    #[error("another mailroom is already running on {0} (its lock is held)")]
    Locked(String),
    #[error("privacy key {path}: {message}")]
    Key { path: String, message: String },
    #[error("a purge is removing this sender's earlier data; the message is filed once it has finished")]
    PurgeInProgress,
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
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::CannotOpen
                ) =>
            {
                Retry::Transient
            }
            StoreError::PurgeInProgress => Retry::Transient,
            _ => Retry::Permanent,
        }
    }
}

/// The state database. Clones share one connection; every call takes the lock for one short
/// query or transaction, never across an await.
#[derive(Clone)]
pub struct Store {
    db: Arc<Mutex<Db>>,
    first_start: DateTime<Utc>,
    /// The state file: the lock files and the privacy key sit next to it.
    path: Arc<PathBuf>,
    /// The key of the keyed hashes (tombstones, audit), read or made on first use.
    key: Arc<OnceLock<ring::hmac::Key>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("first_start", &self.first_start).finish_non_exhaustive()
    }
}

struct Db {
    conn: Connection,
    /// A relaxed write (`execute_relaxed`) could not put `synchronous` back to FULL: it is put
    /// back before the connection serves anyone else, so no claim or batch commit runs relaxed.
    relaxed: bool,
    // Held for the life of the store: a second daemon on the same state would fetch and send twice.
    _lock: Option<File>,
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

impl Store {
    /// Opens (creating if needed) the state for a daemon: takes the exclusive lock.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        Self::open_with(path, Some(lock))
    }

    /// Opens without the daemon lock, for readers such as `status` and for `digest --now`
    /// (WAL lets them run alongside the daemon).
    pub fn open_unlocked(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, None)
    }

    fn open_with(path: &Path, lock: Option<File>) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Erased means erased: deleted rows are overwritten, not left in the file's free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        // 1 MiB of page cache instead of 2: the daemon's idle memory has a 15 MB budget, and the
        // operating system caches the file anyway.
        conn.pragma_update(None, "cache_size", -1024)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::migrate(&conn)?;
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('first_start', ?1)", params![ts(Utc::now())])?;
        let first: String = conn.query_row("SELECT value FROM meta WHERE key = 'first_start'", [], |r| r.get(0))?;
        Ok(Store {
            db: Arc::new(Mutex::new(Db { conn, relaxed: false, _lock: lock })),
            first_start: parse_ts(&first),
            path: Arc::new(path.to_path_buf()),
            key: Arc::new(OnceLock::new()),
        })
    }

    /// Opens for reading only, for `mailroom status`: never writes, never migrates, works on a
    /// read-only folder. When SQLite cannot share the state read-only there (no daemon runs, so
    /// nothing is being written), it reads the file as it is (`immutable`).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(StoreError::Open { path: shown, message: "no such file".into() });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // A URI file name: '%', '?' and '#' are the characters it gives a meaning to.
        let escaped: String = path
            .to_string_lossy()
            .chars()
            .map(|c| match c {
                '%' => "%25".to_owned(),
                '?' => "%3f".to_owned(),
                '#' => "%23".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let version = |c: &Connection| c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0));
        let conn = match Connection::open_with_flags(format!("file:{escaped}?mode=ro"), flags)
            .and_then(|c| version(&c).map(|_| c))
        {
            Ok(conn) => conn,
            Err(_) => Connection::open_with_flags(format!("file:{escaped}?mode=ro&immutable=1"), flags)?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // A daemon starting this very moment may be creating or migrating the state: it sets the
        // version last, in one transaction, so wait (briefly) for it rather than read half a schema.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while version(&conn).unwrap_or(0) < schema::current_version() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let first: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'first_start'", [], |r| r.get(0))
            .optional()
            .ok()
            .flatten();
        let first_start = first.map(|s: String| parse_ts(&s)).unwrap_or_else(Utc::now);
        Ok(Store {
            db: Arc::new(Mutex::new(Db { conn, relaxed: false, _lock: None })),
            first_start,
            path: Arc::new(path.to_path_buf()),
            key: Arc::new(OnceLock::new()),
        })
    }

    /// Whether a daemon (or `mailroom once`) holds the state's lock now: the only sure sign that
    /// one runs (a killed daemon cannot say it stopped). Reads only.
    pub fn in_use(path: &Path) -> bool {
        let Ok(lock) = File::open(path.with_extension("lock")) else { return false };
        matches!(lock.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// When this state was first used: older mail is backlog.
    pub fn first_start(&self) -> DateTime<Utc> {
        self.first_start
    }

    /// The one place the lock is taken. A panic while holding it is a bug we want to see in the
    /// logs, not a reason to stop every later store call, so a poisoned lock is taken over.
    fn conn(&self) -> Conn<'_> {
        let mut db = self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if db.relaxed && db.conn.pragma_update(None, "synchronous", "FULL").is_ok() {
            db.relaxed = false;
        }
        Conn(db)
    }
}

/// One statement committed at once but without an fsync of its own (`synchronous = NORMAL` for
/// it alone): the next durable commit's fsync, or a checkpoint, carries it to the disk with the
/// WAL frames before it. For writes a power loss may lose without harm: the outbox's settling of
/// a claimed entry (see `outbox.rs`), the last contact with a mailbox.
/// A connection left relaxed by a failure is put back to FULL at its next use (see `Db::relaxed`),
/// and a claim refuses to run on it until then ([`durable_conn`]).
fn execute_relaxed(store: &Store, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
    let mut conn = durable_conn(store)?;
    conn.0.relaxed = true;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = conn.execute(sql, params);
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.0.relaxed = false;
    Ok(result?)
}

/// The connection, certainly at `synchronous = FULL`: for a write that must be on the disk before
/// anything leaves (the outbox's claim).
fn durable_conn(store: &Store) -> Result<Conn<'_>, StoreError> {
    let mut conn = store.conn();
    if conn.0.relaxed {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.0.relaxed = false;
    }
    Ok(conn)
}

/// A locked connection, for one call.
struct Conn<'a>(MutexGuard<'a, Db>);

impl std::ops::Deref for Conn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.conn
    }
}
