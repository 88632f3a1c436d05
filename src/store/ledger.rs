//! What the pipeline records: one row per message, its documents, the mailbox's high-water mark,
//! and the outbox entry of its acknowledgement, committed together.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{
    Block, FilingGuard, PrivacyStore, PublishFile, Recognition, Store, StoreError, outbox, parse_ts, publish, ts,
};
use crate::filing::FiledApplication;
use crate::mail::{MailKind, OutgoingMail, ReplyKind};
use crate::reason::{QuarantineReason, ReplyNote};

/// Which mailbox a UID belongs to: UIDs mean nothing without the folder and its UIDVALIDITY.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailboxKey {
    /// `user@host/folder`
    pub name: String,
    pub uidvalidity: u32,
}

/// What a duplicate duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateOf {
    /// The same message came twice in one fetch.
    EarlierInBatch,
    /// A message recorded before (its row id).
    Record(i64),
}

/// A filed application as the store keeps it.
#[derive(Debug, Clone)]
pub struct FiledRecord {
    /// The candidate's address (their identity).
    pub candidate: String,
    /// "Jeanne Dupré", or the address.
    pub candidate_name: String,
    /// The candidate folder, relative to the data root.
    pub folder: String,
    /// What filing did: the truth about the folder.
    pub application: FiledApplication,
    pub reply: ReplyNote,
    /// The acknowledgement to send, if one was decided.
    pub outbox: Option<OutgoingMail>,
    /// The folder's files to publish to the cloud (empty when publishing is off).
    pub publish: Vec<PublishFile>,
}

/// What became of one message.
#[derive(Debug, Clone)]
pub enum Outcome {
    Filed(Box<FiledRecord>),
    /// Set aside in `_quarantine/` (`path`: the stem there; `None` if even that could not be written).
    Quarantined {
        reason: QuarantineReason,
        path: Option<String>,
    },
    /// Seen before (same bytes, or same Message-ID and content), under another UID or
    /// UIDVALIDITY: not filed or answered again.
    Duplicate {
        of: DuplicateOf,
    },
    /// From an address erased on request (`candidate forget`): not filed, not answered, and
    /// recorded without anything that names the sender.
    Forgotten,
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Filed(_) => "filed",
            Outcome::Quarantined { .. } => "quarantined",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Forgotten => "forgotten",
        }
    }
}

/// Everything the store keeps about one message.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub uid: u32,
    pub sha256: String,
    pub message_id: Option<String>,
    /// The content fingerprint ([`crate::understand::fingerprint`]), when it was downloaded.
    pub content_sha256: Option<String>,
    pub received_at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// One group commit.
#[derive(Debug, Clone)]
pub struct Batch {
    pub mailbox: MailboxKey,
    /// The highest UID this batch covers: the next fetch starts above it.
    pub high_water: u32,
    pub records: Vec<MessageRecord>,
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

/// The store in the pipeline's role.
pub trait Ledger: Recognition + Clone + Send + Sync + super::Attempts + super::Health + 'static {
    /// When this state was first used: older mail is backlog.
    fn first_start(&self) -> DateTime<Utc>;
    fn high_water(&self, mailbox: &MailboxKey) -> Result<u32, StoreError>;
    /// The commit point: the batch's rows, documents, outbox entries, publish items and
    /// high-water mark, atomically.
    fn commit(&self, batch: &Batch) -> Result<(), StoreError>;
    fn record_contact(&self, mailbox: &MailboxKey, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The applications committed in a candidate folder (relative path), oldest first.
    fn committed_in_folder(&self, folder: &str) -> Result<Vec<FiledApplication>, StoreError>;
    /// When this address was last answered (any acknowledgement queued, whatever became of it), and how.
    fn last_reply_to(&self, address: &str) -> Result<Option<(DateTime<Utc>, ReplyKind)>, StoreError>;
    /// Acknowledgements queued since `t`, all addresses (the digest does not count).
    fn replies_since(&self, t: DateTime<Utc>) -> Result<u64, StoreError>;
    fn totals(&self) -> Result<Totals, StoreError>;
    /// Held for a batch, from before filing to its commit: a purge plans only between batches.
    fn filing_guard(&self) -> Result<FilingGuard, StoreError>;
    /// Whether mail from this address must not be filed now: forgotten, or being purged.
    fn privacy_block(&self, address: &str) -> Result<Option<Block>, StoreError>;
    /// Gives back what the store keeps only to be fast (its page cache, its prepared statements),
    /// once work is over: see [`crate::memory`]. Costs a few re-reads at the next work.
    fn release_memory(&self) {}
}

impl Store {
    /// What `mailroom status` shows: read-only, safe while the daemon runs.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
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
        let filed_today: i64 = conn.query_row(
            "SELECT count(*) FROM messages WHERE outcome = 'filed' AND recorded_at >= ?1",
            params![today],
            |r| r.get(0),
        )?;
        let last_message: Option<String> =
            conn.query_row("SELECT max(recorded_at) FROM messages WHERE outcome != 'duplicate'", [], |r| r.get(0))?;
        drop(stmt);
        drop(conn);
        Ok(Snapshot {
            first_start: self.first_start,
            mailboxes,
            filed_today: filed_today as u64,
            last_message: last_message.map(|s| parse_ts(&s)),
            totals: self.totals()?,
        })
    }

    /// Every message row, for tests: (uid, outcome, what became of its reply).
    pub fn messages(&self) -> Result<Vec<(u32, String, Option<ReplyNote>)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT uid, outcome, reply FROM messages ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let reply: String = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, (!reply.is_empty()).then(|| ReplyNote::from_stored(&reply))))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Ledger for Store {
    fn first_start(&self) -> DateTime<Utc> {
        self.first_start
    }

    fn high_water(&self, mailbox: &MailboxKey) -> Result<u32, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT high_water FROM mailboxes WHERE name = ?1 AND uidvalidity = ?2",
                params![mailbox.name, mailbox.uidvalidity],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        let now = ts(Utc::now());
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert_message = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages (mailbox, uidvalidity, uid, sha256, message_id, received_at, recorded_at, outcome, reason, candidate, posting, path, reply, reply_code, candidate_name, missing, repeat, filed, content_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            let mut insert_document = tx.prepare_cached(
                "INSERT INTO documents (message, kind, filename, original_name, content_type, size, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in &batch.records {
                let (reason, candidate, posting, path, reply, reply_code, name, missing, repeat, filed) =
                    match &r.outcome {
                        Outcome::Filed(f) => (
                            None,
                            Some(f.candidate.as_str()),
                            Some(f.application.posting.as_str()),
                            Some(f.folder.clone()),
                            json(&f.reply),
                            Some(f.reply.code()),
                            Some(f.candidate_name.as_str()),
                            f.application.missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(","),
                            f.application.repeat,
                            Some(json(&f.application)),
                        ),
                        Outcome::Quarantined { reason, path } => (
                            Some(json(reason)),
                            None,
                            None,
                            path.clone(),
                            String::new(),
                            None,
                            None,
                            String::new(),
                            false,
                            None,
                        ),
                        Outcome::Duplicate { of } => {
                            (Some(json(of)), None, None, None, String::new(), None, None, String::new(), false, None)
                        }
                        Outcome::Forgotten => {
                            (None, None, None, None, String::new(), None, None, String::new(), false, None)
                        }
                    };
                let inserted = insert_message.execute(params![
                    batch.mailbox.name,
                    batch.mailbox.uidvalidity,
                    r.uid,
                    r.sha256,
                    r.message_id,
                    ts(r.received_at),
                    now,
                    r.outcome.as_str(),
                    reason,
                    candidate,
                    posting,
                    path,
                    reply,
                    reply_code,
                    name,
                    missing,
                    repeat,
                    filed,
                    r.content_sha256,
                ])?;
                if inserted == 0 {
                    continue; // this UID was committed before: nothing twice
                }
                let id = tx.last_insert_rowid();
                let Outcome::Filed(f) = &r.outcome else { continue };
                for d in &f.application.documents {
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
                if let Some(mail) = &f.outbox {
                    outbox::insert(&tx, Some(id), mail, &now)?;
                }
                for file in &f.publish {
                    publish::queue_put(&tx, &f.folder, file, &now)?;
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

    fn record_contact(&self, mailbox: &MailboxKey, at: DateTime<Utc>) -> Result<(), StoreError> {
        // Every pass writes it, on the way to new mail: no fsync of its own (a power loss may
        // lose the last contact, which the next pass writes again).
        super::execute_relaxed(
            self,
            "INSERT INTO mailboxes (name, uidvalidity, high_water, last_contact) VALUES (?1, ?2, 0, ?3)
             ON CONFLICT (name, uidvalidity) DO UPDATE SET last_contact = excluded.last_contact",
            params![mailbox.name, mailbox.uidvalidity, ts(at)],
        )?;
        Ok(())
    }

    fn committed_in_folder(&self, folder: &str) -> Result<Vec<FiledApplication>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT filed FROM messages WHERE path = ?1 AND outcome = 'filed' AND filed IS NOT NULL ORDER BY received_at, id",
        )?;
        let rows = stmt.query_map(params![folder], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            match serde_json::from_str(&row?) {
                Ok(f) => out.push(f),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable filing record; the folder's metadata will lack it");
                }
            }
        }
        Ok(out)
    }

    fn last_reply_to(&self, address: &str) -> Result<Option<(DateTime<Utc>, ReplyKind)>, StoreError> {
        let row: Option<(String, Option<String>)> = self
            .conn()
            .query_row(
                "SELECT created_at, kind FROM outbox WHERE recipient = ?1 AND coalesce(kind, '') != 'digest'
                 ORDER BY created_at DESC, id DESC LIMIT 1",
                params![address],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(at, kind)| {
            let kind = match kind.as_deref().and_then(MailKind::parse) {
                Some(MailKind::Ack(k)) => k,
                // An entry older than the kind column: an acknowledgement that asked for nothing.
                _ => ReplyKind::Complete,
            };
            (parse_ts(&at), kind)
        }))
    }

    fn replies_since(&self, t: DateTime<Utc>) -> Result<u64, StoreError> {
        // Counted from the index on `created_at` alone, minus the few digests: reading `kind` from
        // every row of the hour read the whole outbox for each message of a backlog (quadratic).
        let n: i64 = self.conn().query_row(
            "SELECT (SELECT count(*) FROM outbox WHERE created_at >= ?1)
                  - (SELECT count(*) FROM outbox WHERE kind = 'digest' AND created_at >= ?1)",
            params![ts(t)],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn totals(&self) -> Result<Totals, StoreError> {
        let conn = self.conn();
        let count =
            |sql: &str| -> Result<u64, StoreError> { Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
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

    fn filing_guard(&self) -> Result<FilingGuard, StoreError> {
        self.filing_lock()
    }

    fn privacy_block(&self, address: &str) -> Result<Option<Block>, StoreError> {
        self.block_for(address)
    }

    fn release_memory(&self) {
        let conn = self.conn();
        conn.flush_prepared_statement_cache();
        // Only unused cache pages are freed; an error here means nothing was, which is harmless.
        let _ = conn.release_memory();
    }
}

/// The typed values a row holds are plain data, so serialising them cannot fail.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}
