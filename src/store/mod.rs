//! Stage 5, record: the SQLite store, and the commit point of the pipeline.
//!
//! All SQL lives below this module, behind [`Store`], a cheap-to-clone handle that hides its lock
//! (as mini-redis's `Db` does): callers never see a connection or a mutex. What each part of
//! mailroom may ask of it is a trait named by role:
//!
//! | trait | who | what |
//! |---|---|---|
//! | [`Ledger`] | the pipeline | high-water marks, duplicates, what a folder holds, reply history, the batch commit |
//! | [`OutboxStore`] | the outbox sender | the outbox's state machine |
//! | [`DigestStore`] | the digest job | what happened in a window; claiming a window with its mail |
//! | [`PublishStore`] | the publisher | the publish queue: what the cloud folder must show, in order |
//!
//! One transaction per batch writes every message's row, its documents, its outbox entry and the
//! mailbox's new high-water mark; `synchronous=FULL` in WAL mode makes the commit durable with one
//! fsync per batch (a group commit). A message is known by mailbox + UIDVALIDITY + UID, and also by
//! its raw sha256 and Message-ID, so a UIDVALIDITY reset or a move between servers is recognised
//! and nobody is filed or answered twice.
//!
//! | file | tables |
//! |---|---|
//! | `schema.rs` | the schema and its migrations |
//! | `ledger.rs` | `messages`, `documents`, `mailboxes`: the commit, duplicates, status |
//! | `outbox.rs` | `outbox`: pending → sending → sent / failed / uncertain |
//! | `digest.rs` | `digests` and the digest's reading of the others |
//! | `publish.rs` | `publish_queue`: pending → done / failed / superseded; folder removals |

mod digest;
mod ledger;
mod outbox;
mod publish;
mod schema;

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

pub use digest::{ApplicationRow, DigestRows, DigestStore, FailedReply, QuarantineRow, StaleCandidate};
pub use ledger::{
    Batch, DuplicateOf, FiledRecord, Ledger, MailboxKey, MailboxStatus, MessageRecord, Outcome, Snapshot, Totals,
};
pub use outbox::{OutboxEntry, OutboxState, OutboxStore};
pub use publish::{PublishFailure, PublishFile, PublishItem, PublishOp, PublishStatus, PublishStore};

use crate::error::{Classified, Retry};

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
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::CannotOpen
                ) =>
            {
                Retry::Transient
            }
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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("first_start", &self.first_start).finish_non_exhaustive()
    }
}

struct Db {
    conn: Connection,
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
        // 1 MiB of page cache instead of 2: the daemon's idle memory has a 15 MB budget, and the
        // operating system caches the file anyway.
        conn.pragma_update(None, "cache_size", -1024)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        schema::migrate(&conn)?;
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('first_start', ?1)", params![ts(Utc::now())])?;
        let first: String = conn.query_row("SELECT value FROM meta WHERE key = 'first_start'", [], |r| r.get(0))?;
        Ok(Store { db: Arc::new(Mutex::new(Db { conn, _lock: lock })), first_start: parse_ts(&first) })
    }

    /// When this state was first used: older mail is backlog.
    pub fn first_start(&self) -> DateTime<Utc> {
        self.first_start
    }

    /// The one place the lock is taken. A panic while holding it is a bug we want to see in the
    /// logs, not a reason to stop every later store call, so a poisoned lock is taken over.
    fn conn(&self) -> Conn<'_> {
        Conn(self.db.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
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
