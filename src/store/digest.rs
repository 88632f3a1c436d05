//! What the digest reads: a window's applications, quarantines and failed replies, and the
//! candidates still missing a document; and the `digests` table, where a window is claimed
//! together with the mail that carries it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::{AuthStore, OutboxState, PublishStatus, Store, StoreError, outbox, parse_ts, publish, ts};
use crate::auth::AuthRecord;
use crate::mail::OutgoingMail;
use crate::reason::{QuarantineReason, ReplyNote};
use crate::understand::DocKind;

/// One application of the window, as the digest shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationRow {
    pub candidate: String,
    pub name: String,
    pub posting: String,
    pub folder: String,
    pub received_at: DateTime<Utc>,
    pub missing: Vec<DocKind>,
    pub repeat: bool,
    pub reply: ReplyNote,
    pub documents: Vec<(DocKind, Option<String>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineRow {
    pub received_at: DateTime<Utc>,
    pub reason: QuarantineReason,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedReply {
    pub recipient: String,
    pub state: OutboxState,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StaleCandidate {
    pub candidate: String,
    pub name: String,
    pub posting: String,
    pub folder: String,
    pub missing: Vec<DocKind>,
    pub since: DateTime<Utc>,
}

/// A candidate the retention policy removes soon (privacy: the digest announces them).
#[derive(Debug, Clone, Serialize)]
pub struct UpcomingPurge {
    pub candidate: String,
    pub name: String,
    pub postings: Vec<String>,
    pub at: DateTime<Utc>,
}

/// Everything a digest says, read from the store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DigestRows {
    pub applications: Vec<ApplicationRow>,
    pub quarantined: Vec<QuarantineRow>,
    pub failed_replies: Vec<FailedReply>,
    /// Replies held back by the hourly cap in the window.
    pub held_by_cap: u64,
    pub stale: Vec<StaleCandidate>,
    /// Distinct candidates per posting, since the beginning.
    pub totals: BTreeMap<String, u64>,
    /// The authentication state now (a failing login or an expiring refresh token needs a human).
    pub auth: Vec<AuthRecord>,
    /// What purges and erasures removed in the window (counts only).
    pub purged: super::PurgeTotals,
    /// Who the retention policy removes in the coming days.
    pub upcoming_purges: Vec<UpcomingPurge>,
    /// The publish queue now, and what failed for good in the window.
    pub publish: PublishStatus,
}

/// The store in the digest job's role.
pub trait DigestStore {
    fn first_start(&self) -> DateTime<Utc>;
    /// The end of the last digest window claimed.
    fn last_digest_end(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn digest_rows(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<DigestRows, StoreError>;
    /// Claims `[start, end)` and queues its mails, atomically. False: already claimed.
    fn claim_digest(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        candidates: usize,
        mails: &[OutgoingMail],
    ) -> Result<bool, StoreError>;
    /// Queues mails outside any window (a past window rebuilt on request).
    fn queue_mails(&self, mails: &[OutgoingMail]) -> Result<(), StoreError>;
}

fn parse_kinds(s: Option<String>) -> Vec<DocKind> {
    s.unwrap_or_default().split(',').filter_map(DocKind::parse).collect()
}

impl DigestStore for Store {
    fn first_start(&self) -> DateTime<Utc> {
        self.first_start
    }

    fn last_digest_end(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let end: Option<String> = self.conn().query_row("SELECT max(window_end) FROM digests", [], |r| r.get(0))?;
        Ok(end.map(|s| parse_ts(&s)))
    }

    fn digest_rows(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<DigestRows, StoreError> {
        // Read before the connection is held for the rest: the store's lock is not reentrant.
        let auth = self.auth_records()?;
        let conn = self.conn();
        let mut rows = DigestRows::default();
        let mut docs_of: HashMap<i64, Vec<(DocKind, Option<String>)>> = HashMap::new();
        {
            let mut stmt = conn.prepare(
                "SELECT d.message, d.kind, d.original_name FROM documents d JOIN messages m ON m.id = d.message
                 WHERE m.recorded_at >= ?1 AND m.recorded_at < ?2 AND d.filename IS NOT NULL ORDER BY d.rowid",
            )?;
            let found = stmt.query_map(params![ts(start), ts(end)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
            })?;
            for row in found {
                let (id, kind, name) = row?;
                docs_of.entry(id).or_default().push((DocKind::parse(&kind).unwrap_or(DocKind::Other), name));
            }
        }
        let mut stmt = conn.prepare(
            "SELECT id, candidate, coalesce(candidate_name, candidate), posting, path, received_at, missing, repeat, reply
             FROM messages WHERE outcome = 'filed' AND recorded_at >= ?1 AND recorded_at < ?2 ORDER BY posting, received_at",
        )?;
        let found = stmt.query_map(params![ts(start), ts(end)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                ApplicationRow {
                    candidate: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    posting: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    folder: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    received_at: parse_ts(&r.get::<_, String>(5)?),
                    missing: parse_kinds(r.get(6)?),
                    repeat: r.get(7)?,
                    reply: ReplyNote::from_stored(&r.get::<_, String>(8)?),
                    documents: Vec::new(),
                },
            ))
        })?;
        for row in found {
            let (id, mut app) = row?;
            app.documents = docs_of.remove(&id).unwrap_or_default();
            rows.applications.push(app);
        }
        let mut stmt = conn.prepare(
            "SELECT received_at, coalesce(reason, ''), coalesce(path, '') FROM messages
             WHERE outcome = 'quarantined' AND recorded_at >= ?1 AND recorded_at < ?2 ORDER BY received_at",
        )?;
        rows.quarantined = stmt
            .query_map(params![ts(start), ts(end)], |r| {
                Ok(QuarantineRow {
                    received_at: parse_ts(&r.get::<_, String>(0)?),
                    reason: QuarantineReason::from_stored(&r.get::<_, String>(1)?),
                    path: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT recipient, state, coalesce(last_error, '') FROM outbox
             WHERE state IN ('failed', 'uncertain') AND created_at < ?2 AND (created_at >= ?1 OR sent_at IS NULL) ORDER BY id",
        )?;
        rows.failed_replies = stmt
            .query_map(params![ts(start), ts(end)], |r| {
                Ok(FailedReply {
                    recipient: r.get(0)?,
                    state: OutboxState::parse(&r.get::<_, String>(1)?).unwrap_or(OutboxState::Failed),
                    error: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        rows.held_by_cap = conn.query_row(
            "SELECT count(*) FROM messages WHERE reply_code = 'hourly_cap' AND recorded_at >= ?1 AND recorded_at < ?2",
            params![ts(start), ts(end)],
            |r| r.get::<_, i64>(0),
        )? as u64;
        // Per person, what every application lacked, and since when.
        let mut stmt = conn.prepare(
            "SELECT candidate, coalesce(candidate_name, candidate), posting, path, missing, recorded_at FROM messages
             WHERE outcome = 'filed' AND candidate IS NOT NULL AND recorded_at < ?1 ORDER BY recorded_at",
        )?;
        let mut people: BTreeMap<String, StaleCandidate> = BTreeMap::new();
        let found = stmt.query_map(params![ts(end)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                parse_kinds(r.get(4)?),
                parse_ts(&r.get::<_, String>(5)?),
            ))
        })?;
        for row in found {
            let (candidate, name, posting, folder, missing, at) = row?;
            *rows.totals.entry(posting.clone()).or_default() += !people.contains_key(&candidate) as u64;
            people
                .entry(candidate.clone())
                .and_modify(|p| p.missing.retain(|k| missing.contains(k)))
                .or_insert(StaleCandidate { candidate, name, posting, folder, missing, since: at });
        }
        rows.stale = people.into_values().filter(|p| !p.missing.is_empty() && p.since < stale_before).collect();
        rows.auth = auth;
        rows.publish = publish::status(&conn, start)?;
        Ok(rows)
    }

    fn claim_digest(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        candidates: usize,
        mails: &[OutgoingMail],
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = ts(Utc::now());
        let claimed = tx.execute(
            "INSERT OR IGNORE INTO digests (window_start, window_end, created_at, candidates) VALUES (?1, ?2, ?3, ?4)",
            params![ts(start), ts(end), now, candidates as i64],
        )?;
        if claimed == 0 {
            return Ok(false);
        }
        for mail in mails {
            outbox::insert(&tx, None, mail, &now)?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn queue_mails(&self, mails: &[OutgoingMail]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = ts(Utc::now());
        for mail in mails {
            outbox::insert(&tx, None, mail, &now)?;
        }
        tx.commit()?;
        Ok(())
    }
}
