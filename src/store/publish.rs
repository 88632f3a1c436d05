//! The `publish_queue` table: what must appear on (or vanish from) the team's cloud folder, in
//! the order it was committed.
//!
//! ```text
//! pending ──▶ done
//!    │  └───▶ failed       (a permanent error: reported, never retried blindly)
//!    └──────▶ superseded   (a newer metadata.json, or the folder's removal, made it moot)
//! ```
//!
//! Items are written in the transaction that changes the local folder, so the queue can never
//! disagree with the data root: the batch commit queues an application's new documents, its
//! `.eml` and the rewritten `metadata.json` ([`queue_put`]); a purge or forget queues the
//! folder's removal ([`queue_removal`]) in the transaction that deletes it locally.
//!
//! **Removing a folder remotely** (for purge and forget): inside the store, call
//! `publish::queue_removal(&tx, folder, &now)` in the same transaction as the local deletion's
//! rows; from outside, [`PublishStore::queue_folder_removal`] (its own transaction). `folder`
//! is the folder as the ledger keys it, relative to the data root (`posting/Family-Given--hash`).
//! The removal is queued only if something of that folder was ever queued for publishing (else
//! there is nothing remote to remove); it supersedes the folder's uploads still waiting, and the
//! publisher runs it after whatever of the folder is already under way. It deletes the remote
//! folder and, with `publish.nextcloud_trash = "empty"`, its entry in Nextcloud's trash bin.
//!
//! An item may run only when no earlier item of its folder (or of a folder above or below it)
//! is still pending, so a removal and the uploads around it keep their order.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, parse_ts, ts};
use crate::filing::FiledApplication;

/// One file of a candidate folder to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFile {
    /// The file's name in the folder (as filed locally).
    pub name: String,
    /// The committed bytes' hash; `None` for a file published as it is when its turn comes
    /// (`metadata.json`, rewritten from the store at every change).
    pub sha256: Option<String>,
}

/// What an item asks of the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOp {
    /// Upload one file of the folder.
    Put(PublishFile),
    /// Remove the folder and everything in it.
    Remove,
}

/// A queue item due for publishing.
#[derive(Debug, Clone)]
pub struct PublishItem {
    pub id: i64,
    /// The candidate folder, relative to the data root, `/`-separated.
    pub folder: String,
    pub op: PublishOp,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// One item that failed for good.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PublishFailure {
    pub folder: String,
    /// The file, or `None` for a folder's removal.
    pub name: Option<String>,
    pub error: String,
    pub at: Option<DateTime<Utc>>,
}

/// The queue as `mailroom status` and the digest show it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PublishStatus {
    /// Items waiting (new, or retrying after an error).
    pub waiting: u64,
    /// When the oldest waiting item was queued.
    pub oldest_waiting: Option<DateTime<Utc>>,
    pub done: u64,
    pub failed: u64,
    /// Why the first waiting item is waiting, if it was tried.
    pub last_error: Option<String>,
    /// Items that failed for good in the window asked for (the digest), newest first, at most 20.
    pub recent_failures: Vec<PublishFailure>,
}

/// The store in the publisher's role.
pub trait PublishStore: Clone + Send + Sync + 'static {
    /// Pending items due at `now` whose folder has no earlier item pending, oldest first.
    fn due_publish(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<PublishItem>, StoreError>;
    /// When the next pending item is due.
    fn next_publish_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn publish_done(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
    fn publish_retry(&self, id: i64, error: &str, next_attempt: DateTime<Utc>) -> Result<(), StoreError>;
    fn publish_failed(&self, id: i64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Counts for `mailroom status`; `recent_failures` covers the last day.
    fn publish_status(&self) -> Result<PublishStatus, StoreError>;
    /// Queues the removal of a folder's remote copy, in a transaction of its own (see the module
    /// documentation). False: nothing of it was ever queued for publishing, so nothing was queued.
    fn queue_folder_removal(&self, folder: &str) -> Result<bool, StoreError>;
    /// Every filed application with its folder, oldest first: what was filed before publishing
    /// was turned on (or while it was off) is published from it.
    fn filed_applications(&self) -> Result<Vec<(String, FiledApplication)>, StoreError>;
    /// Queues, in one transaction, the files of each folder that are neither waiting nor
    /// published with the same bytes; a folder's `metadata.json` (listed last) only when something
    /// of the folder was queued, or it never was. Returns how many items were queued.
    fn queue_backfill(&self, folders: &[(String, Vec<PublishFile>)]) -> Result<usize, StoreError>;
}

/// Queues one file of a folder inside the caller's transaction (the batch commit). A file already
/// waiting or published with the same bytes is not queued again; a newer `metadata.json`
/// supersedes the one still waiting.
pub(super) fn queue_put(
    tx: &rusqlite::Transaction<'_>,
    folder: &str,
    file: &PublishFile,
    now: &str,
) -> Result<usize, StoreError> {
    let queued = match &file.sha256 {
        Some(sha) => tx
            .prepare_cached(
                "INSERT INTO publish_queue (op, folder, name, sha256, next_attempt_at, created_at)
                 SELECT 'put', ?1, ?2, ?3, ?4, ?4
                 WHERE NOT EXISTS (SELECT 1 FROM publish_queue WHERE folder = ?1 AND op = 'put' AND name = ?2
                                   AND sha256 = ?3 AND state IN ('pending', 'done'))",
            )?
            .execute(params![folder, file.name, sha, now])?,
        None => {
            tx.prepare_cached(
                "UPDATE publish_queue SET state = 'superseded'
                 WHERE folder = ?1 AND op = 'put' AND name = ?2 AND sha256 IS NULL AND state = 'pending'",
            )?
            .execute(params![folder, file.name])?;
            tx.prepare_cached(
                "INSERT INTO publish_queue (op, folder, name, next_attempt_at, created_at) VALUES ('put', ?1, ?2, ?3, ?3)",
            )?
            .execute(params![folder, file.name, now])?
        }
    };
    Ok(queued)
}

/// Queues the removal of `folder` (and everything below it) inside the caller's transaction: the
/// one that deletes the folder locally. Returns false when nothing of it was ever queued for
/// publishing since its last removal: then there is nothing remote to remove and nothing is queued.
pub(super) fn queue_removal(tx: &rusqlite::Transaction<'_>, folder: &str, now: &str) -> Result<bool, StoreError> {
    let folder = folder.trim_matches('/');
    let inserted = tx
        .prepare_cached(
            "INSERT INTO publish_queue (op, folder, next_attempt_at, created_at)
             SELECT 'remove', ?1, ?2, ?2
             WHERE EXISTS (SELECT 1 FROM publish_queue p WHERE p.op = 'put'
                 AND (p.folder = ?1 OR substr(p.folder, 1, length(?1) + 1) = ?1 || '/')
                 AND p.id > coalesce((SELECT max(r.id) FROM publish_queue r WHERE r.op = 'remove'
                     AND (r.folder = ?1 OR substr(?1, 1, length(r.folder) + 1) = r.folder || '/')), 0))",
        )?
        .execute(params![folder, now])?;
    if inserted == 0 {
        return Ok(false);
    }
    tx.prepare_cached(
        "UPDATE publish_queue SET state = 'superseded'
         WHERE op = 'put' AND state = 'pending' AND (folder = ?1 OR substr(folder, 1, length(?1) + 1) = ?1 || '/')",
    )?
    .execute(params![folder])?;
    Ok(true)
}

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<PublishItem> {
    let op: String = r.get(1)?;
    let name: Option<String> = r.get(3)?;
    Ok(PublishItem {
        id: r.get(0)?,
        folder: r.get(2)?,
        op: match (op.as_str(), name) {
            ("put", Some(name)) => PublishOp::Put(PublishFile { name, sha256: r.get(4)? }),
            _ => PublishOp::Remove,
        },
        attempts: r.get(5)?,
        created_at: parse_ts(&r.get::<_, String>(6)?),
    })
}

/// The queue's health: what is waiting, since when, and what failed for good since `failed_since`.
pub(super) fn status(conn: &Connection, failed_since: DateTime<Utc>) -> Result<PublishStatus, StoreError> {
    let (waiting, oldest): (i64, Option<String>) =
        conn.query_row("SELECT count(*), min(created_at) FROM publish_queue WHERE state = 'pending'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let count = |state: &str| -> Result<u64, StoreError> {
        Ok(conn
            .query_row("SELECT count(*) FROM publish_queue WHERE state = ?1", params![state], |r| r.get::<_, i64>(0))?
            as u64)
    };
    let last_error = conn
        .query_row(
            "SELECT last_error FROM publish_queue WHERE state = 'pending' AND last_error IS NOT NULL ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let mut stmt = conn.prepare_cached(
        "SELECT folder, name, coalesce(last_error, ''), done_at FROM publish_queue
         WHERE state = 'failed' AND done_at >= ?1 ORDER BY id DESC LIMIT 20",
    )?;
    let recent_failures = stmt
        .query_map(params![ts(failed_since)], |r| {
            Ok(PublishFailure {
                folder: r.get(0)?,
                name: r.get(1)?,
                error: r.get(2)?,
                at: r.get::<_, Option<String>>(3)?.map(|s| parse_ts(&s)),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(PublishStatus {
        waiting: waiting as u64,
        oldest_waiting: oldest.map(|s| parse_ts(&s)),
        done: count("done")?,
        failed: count("failed")?,
        last_error,
        recent_failures,
    })
}

impl PublishStore for Store {
    fn due_publish(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<PublishItem>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, op, folder, name, sha256, attempts, created_at FROM publish_queue q
             WHERE state = 'pending' AND next_attempt_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM publish_queue e WHERE e.state = 'pending' AND e.id < q.id
                   AND (e.folder = q.folder
                        OR substr(q.folder, 1, length(e.folder) + 1) = e.folder || '/'
                        OR substr(e.folder, 1, length(q.folder) + 1) = q.folder || '/'))
             ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![ts(now), limit as i64], item)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn next_publish_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> = self.conn().query_row(
            "SELECT min(next_attempt_at) FROM publish_queue WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(next.map(|s| parse_ts(&s)))
    }

    fn publish_done(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        // A metadata.json superseded while it was uploading stays superseded: the newer one follows.
        self.conn().execute(
            "UPDATE publish_queue SET state = 'done', done_at = ?2, last_error = NULL WHERE id = ?1 AND state = 'pending'",
            params![id, ts(now)],
        )?;
        Ok(())
    }

    fn publish_retry(&self, id: i64, error: &str, next_attempt: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE publish_queue SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
             WHERE id = ?1 AND state = 'pending'",
            params![id, error, ts(next_attempt)],
        )?;
        Ok(())
    }

    fn publish_failed(&self, id: i64, error: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE publish_queue SET state = 'failed', attempts = attempts + 1, last_error = ?2, done_at = ?3
             WHERE id = ?1 AND state = 'pending'",
            params![id, error, ts(now)],
        )?;
        Ok(())
    }

    fn publish_status(&self) -> Result<PublishStatus, StoreError> {
        status(&self.conn(), Utc::now() - chrono::Duration::days(1))
    }

    fn queue_folder_removal(&self, folder: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let queued = queue_removal(&tx, folder, &ts(Utc::now()))?;
        tx.commit()?;
        Ok(queued)
    }

    fn filed_applications(&self) -> Result<Vec<(String, FiledApplication)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT path, filed FROM messages WHERE outcome = 'filed' AND path IS NOT NULL AND filed IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (folder, json) = row?;
            match serde_json::from_str(&json) {
                Ok(application) => out.push((folder, application)),
                Err(e) => tracing::error!(error = %e, "unreadable filing record; not published"),
            }
        }
        Ok(out)
    }

    fn queue_backfill(&self, folders: &[(String, Vec<PublishFile>)]) -> Result<usize, StoreError> {
        let now = ts(Utc::now());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut queued = 0;
        for (folder, files) in folders {
            let mut here = 0;
            for file in files {
                if file.sha256.is_none() {
                    let ever: bool = tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM publish_queue WHERE folder = ?1 AND op = 'put' AND name = ?2)",
                        params![folder, file.name],
                        |r| r.get(0),
                    )?;
                    if ever && here == 0 {
                        continue;
                    }
                }
                here += queue_put(&tx, folder, file, &now)?;
            }
            queued += here;
        }
        tx.commit()?;
        Ok(queued)
    }
}

#[cfg(test)]
impl Store {
    /// Queues one file in a transaction of its own, as the batch commit would.
    pub(crate) fn queue_for_test(&self, folder: &str, file: &PublishFile) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        queue_put(&tx, folder, file, &ts(Utc::now()))?;
        tx.commit()?;
        Ok(())
    }

    /// Every waiting item is due now (its backoff waited out).
    pub(crate) fn due_now_for_test(&self) {
        self.conn().execute("UPDATE publish_queue SET next_attempt_at = ''", []).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite3")).unwrap();
        (dir, store)
    }

    fn put(store: &Store, folder: &str, name: &str, sha: Option<&str>) {
        store.queue_for_test(folder, &PublishFile { name: name.into(), sha256: sha.map(str::to_owned) }).unwrap();
    }

    fn due(store: &Store) -> Vec<(String, PublishOp)> {
        store.due_publish(Utc::now(), 100).unwrap().into_iter().map(|i| (i.folder, i.op)).collect()
    }

    fn file(name: &str, sha: Option<&str>) -> PublishOp {
        PublishOp::Put(PublishFile { name: name.into(), sha256: sha.map(str::to_owned) })
    }

    #[test]
    fn one_item_per_folder_at_a_time_in_commit_order() {
        let (_dir, store) = store();
        put(&store, "p/a", "cv.pdf", Some("1"));
        put(&store, "p/a", "metadata.json", None);
        put(&store, "p/b", "cv.pdf", Some("2"));
        assert_eq!(due(&store), [("p/a".into(), file("cv.pdf", Some("1"))), ("p/b".into(), file("cv.pdf", Some("2")))]);
        let first = store.due_publish(Utc::now(), 1).unwrap().remove(0);
        store.publish_done(first.id, Utc::now()).unwrap();
        assert_eq!(due(&store)[0], ("p/a".into(), file("metadata.json", None)));
    }

    #[test]
    fn same_bytes_are_queued_once_and_a_newer_metadata_supersedes_the_waiting_one() {
        let (_dir, store) = store();
        put(&store, "p/a", "cv.pdf", Some("1"));
        put(&store, "p/a", "cv.pdf", Some("1"));
        put(&store, "p/a", "metadata.json", None);
        put(&store, "p/a", "metadata.json", None);
        let status = store.publish_status().unwrap();
        assert_eq!(status.waiting, 2, "one CV, one metadata.json");
        // Published, the same bytes are still not queued again.
        for item in store.due_publish(Utc::now(), 10).unwrap() {
            store.publish_done(item.id, Utc::now()).unwrap();
        }
        let head = store.due_publish(Utc::now(), 10).unwrap();
        store.publish_done(head[0].id, Utc::now()).unwrap();
        put(&store, "p/a", "cv.pdf", Some("1"));
        assert_eq!(store.publish_status().unwrap().waiting, 0);
        put(&store, "p/a", "cv.pdf", Some("changed"));
        assert_eq!(store.publish_status().unwrap().waiting, 1);
    }

    #[test]
    fn a_removal_is_queued_only_for_a_published_folder_and_supersedes_its_waiting_uploads() {
        let (_dir, store) = store();
        assert!(!store.queue_folder_removal("p/never").unwrap(), "nothing of it was ever published");
        put(&store, "p/a", "cv.pdf", Some("1"));
        put(&store, "p/a", "metadata.json", None);
        put(&store, "p/b", "cv.pdf", Some("2"));
        assert!(store.queue_folder_removal("p/a").unwrap());
        assert!(!store.queue_folder_removal("p/a").unwrap(), "removed already; nothing new since");
        assert_eq!(due(&store), [("p/b".into(), file("cv.pdf", Some("2"))), ("p/a".into(), PublishOp::Remove)]);
        // The candidate applies again after being forgotten: the new upload waits for the removal.
        put(&store, "p/a", "cv.pdf", Some("3"));
        let ids: Vec<(String, PublishOp)> = due(&store);
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(store.queue_folder_removal("p/a").unwrap(), "something new was queued since the removal");
    }

    #[test]
    fn a_posting_removal_and_the_folders_below_it_keep_their_order() {
        let (_dir, store) = store();
        put(&store, "p/a", "cv.pdf", Some("1"));
        put(&store, "pa/x", "cv.pdf", Some("9"));
        assert!(store.queue_folder_removal("p").unwrap());
        put(&store, "p/b", "cv.pdf", Some("2"));
        // p/a's upload was superseded by the removal of p; pa/x is not below p; p/b waits for it.
        assert_eq!(due(&store), [("pa/x".into(), file("cv.pdf", Some("9"))), ("p".into(), PublishOp::Remove)]);
    }

    #[test]
    fn a_backfill_queues_only_what_is_neither_waiting_nor_published() {
        let (_dir, store) = store();
        let f = |name: &str, sha: Option<&str>| PublishFile { name: name.into(), sha256: sha.map(str::to_owned) };
        let folders = vec![
            ("p/a".to_owned(), vec![f("cv.pdf", Some("1")), f("metadata.json", None)]),
            ("p/b".to_owned(), vec![f("cv.pdf", Some("2")), f("metadata.json", None)]),
        ];
        assert_eq!(store.queue_backfill(&folders).unwrap(), 4);
        assert_eq!(store.queue_backfill(&folders).unwrap(), 0, "again: all waiting already");
        for item in store.due_publish(Utc::now(), 10).unwrap() {
            store.publish_done(item.id, Utc::now()).unwrap();
        }
        for item in store.due_publish(Utc::now(), 10).unwrap() {
            store.publish_done(item.id, Utc::now()).unwrap();
        }
        assert_eq!(store.queue_backfill(&folders).unwrap(), 0, "all published");
        // A letter filed while publishing was off: it and the folder's metadata.json are queued.
        let more = vec![(
            "p/a".to_owned(),
            vec![f("cv.pdf", Some("1")), f("letter.pdf", Some("3")), f("metadata.json", None)],
        )];
        assert_eq!(store.queue_backfill(&more).unwrap(), 2);
    }

    #[test]
    fn status_counts_waiting_and_failures() {
        let (_dir, store) = store();
        put(&store, "p/a", "cv.pdf", Some("1"));
        put(&store, "p/b", "cv.pdf", Some("2"));
        let items = store.due_publish(Utc::now(), 10).unwrap();
        store.publish_retry(items[0].id, "server away", Utc::now() + chrono::Duration::hours(1)).unwrap();
        store.publish_failed(items[1].id, "413 Payload Too Large", Utc::now()).unwrap();
        let s = store.publish_status().unwrap();
        assert_eq!((s.waiting, s.done, s.failed), (1, 0, 1));
        assert_eq!(s.last_error.as_deref(), Some("server away"));
        assert!(s.oldest_waiting.is_some());
        assert_eq!(s.recent_failures[0].name.as_deref(), Some("cv.pdf"));
        assert!(store.due_publish(Utc::now(), 10).unwrap().is_empty(), "retrying later");
        assert!(store.next_publish_due().unwrap().unwrap() > Utc::now());
    }
}
