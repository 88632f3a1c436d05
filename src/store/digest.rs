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

/// One filing of a person, as the stale candidates and the totals need it.
struct Filing {
    id: i64,
    posting: String,
    missing: Vec<DocKind>,
    /// As stored: filings are ordered by it as SQL orders them (as text).
    recorded_at: String,
}

/// A person's filings (any order): counts them under the posting of the first (the earliest
/// recorded, then the earliest row), names every posting they filed to in `totals` (0 if none
/// counts there), and returns the first with `missing` narrowed to what every filing lacked.
fn first_and_lacking(mut filings: Vec<Filing>, totals: &mut BTreeMap<String, u64>) -> Option<Filing> {
    let at = (0..filings.len()).min_by(|&a, &b| {
        let (a, b) = (&filings[a], &filings[b]);
        a.recorded_at.cmp(&b.recorded_at).then(a.id.cmp(&b.id))
    })?;
    let mut first = filings.swap_remove(at);
    *totals.entry(first.posting.clone()).or_default() += 1;
    for f in &filings {
        totals.entry(f.posting.clone()).or_default();
        first.missing.retain(|k| f.missing.contains(k));
    }
    Some(first)
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
        // Per person, what every application lacked, and since when; and the distinct candidates
        // per posting, each counted under the posting of their first filing. One pass over the
        // filings person by person, read from the index messages_filed_person alone (not from
        // every filing's row: at 100,000 candidates that was most of the digest's time); the
        // name and folder are read only for those the digest lists.
        let mut stmt = conn.prepare(
            "SELECT id, candidate, posting, missing, recorded_at FROM messages
             WHERE outcome = 'filed' AND candidate IS NOT NULL AND recorded_at < ?1 ORDER BY candidate",
        )?;
        let found = stmt.query_map(params![ts(end)], |r| {
            Ok((
                r.get::<_, String>(1)?,
                Filing {
                    id: r.get(0)?,
                    posting: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    missing: parse_kinds(r.get(3)?),
                    recorded_at: r.get(4)?,
                },
            ))
        })?;
        let mut stale: Vec<(String, Filing)> = Vec::new();
        let mut person: Option<(String, Vec<Filing>)> = None;
        let mut close = |candidate: String, filings: Vec<Filing>, totals: &mut BTreeMap<String, u64>| {
            if let Some(first) = first_and_lacking(filings, totals)
                && !first.missing.is_empty()
                && parse_ts(&first.recorded_at) < stale_before
            {
                stale.push((candidate, first));
            }
        };
        for row in found {
            let (candidate, filing) = row?;
            match &mut person {
                Some((c, filings)) if *c == candidate => filings.push(filing),
                _ => {
                    if let Some((c, filings)) = person.replace((candidate, vec![filing])) {
                        close(c, filings, &mut rows.totals);
                    }
                }
            }
        }
        if let Some((c, filings)) = person.take() {
            close(c, filings, &mut rows.totals);
        }
        stale.sort_by(|a, b| a.0.cmp(&b.0));
        let mut stmt =
            conn.prepare_cached("SELECT coalesce(candidate_name, candidate), path FROM messages WHERE id = ?1")?;
        for (candidate, f) in stale {
            let (name, folder) = stmt.query_row(params![f.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?.unwrap_or_default()))
            })?;
            rows.stale.push(StaleCandidate {
                candidate,
                name,
                posting: f.posting,
                folder,
                missing: f.missing,
                since: parse_ts(&f.recorded_at),
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the digest said before it read person by person: every filing in order of recording.
    fn by_recording(store: &Store, end: DateTime<Utc>, stale_before: DateTime<Utc>) -> (String, String) {
        let conn = store.conn();
        let mut stmt = conn
            .prepare(
                "SELECT candidate, coalesce(candidate_name, candidate), posting, path, missing, recorded_at FROM messages
                 WHERE outcome = 'filed' AND candidate IS NOT NULL AND recorded_at < ?1 ORDER BY recorded_at, id",
            )
            .unwrap();
        let mut totals: BTreeMap<String, u64> = BTreeMap::new();
        let mut people: BTreeMap<String, StaleCandidate> = BTreeMap::new();
        let found = stmt
            .query_map(params![ts(end)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    parse_kinds(r.get(4)?),
                    parse_ts(&r.get::<_, String>(5)?),
                ))
            })
            .unwrap();
        for row in found {
            let (candidate, name, posting, folder, missing, at) = row.unwrap();
            *totals.entry(posting.clone()).or_default() += !people.contains_key(&candidate) as u64;
            people
                .entry(candidate.clone())
                .and_modify(|p| p.missing.retain(|k| missing.contains(k)))
                .or_insert(StaleCandidate { candidate, name, posting, folder, missing, since: at });
        }
        let stale: Vec<_> = people.into_values().filter(|p| !p.missing.is_empty() && p.since < stale_before).collect();
        (format!("{stale:?}"), format!("{totals:?}"))
    }

    #[test]
    fn stale_candidates_and_totals_are_what_every_filing_in_order_of_recording_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite3")).unwrap();
        let t = |s: &str| format!("2026-03-{s}.000Z");
        // (candidate, name, posting, missing, recorded_at, outcome)
        type Row<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str, String, &'a str);
        let rows: &[Row] = &[
            // Two filings recorded at the same instant: the first row counts, its posting and name.
            (Some("a@x"), Some("A one"), Some("p2"), "cover_letter,cv", t("01T10:00:00"), "filed"),
            (Some("a@x"), Some("A two"), Some("p1"), "cv,cover_letter", t("01T10:00:00"), "filed"),
            // Complete once: never stale. Counted under p3; p4 named with nobody first there.
            (Some("b@x"), None, Some("p3"), "", t("02T10:00:00"), "filed"),
            (Some("b@x"), Some("B"), Some("p4"), "cover_letter", t("03T10:00:00"), "filed"),
            // Lacking different things each time: nothing in common.
            (Some("c@x"), Some("C"), Some("p1"), "cv", t("01T09:00:00"), "filed"),
            (Some("c@x"), Some("C"), Some("p1"), "cover_letter", t("04T09:00:00"), "filed"),
            // No posting; its later filing is after the window's end, so it does not count.
            (Some("d@x"), Some("D"), None, "cover_letter", t("05T09:00:00"), "filed"),
            (Some("d@x"), Some("D"), Some("p5"), "", t("30T09:00:00"), "filed"),
            // Lacking since after stale_before: not stale yet.
            (Some("e@x"), Some("E"), Some("p1"), "cv", t("20T09:00:00"), "filed"),
            // Not filings of a person.
            (None, None, Some("p6"), "cv", t("01T08:00:00"), "filed"),
            (Some("f@x"), Some("F"), Some("p7"), "cv", t("01T08:00:00"), "quarantined"),
        ];
        {
            let conn = store.conn();
            for (uid, (candidate, name, posting, missing, at, outcome)) in rows.iter().enumerate() {
                conn.execute(
                    "INSERT INTO messages (mailbox, uidvalidity, uid, sha256, received_at, recorded_at, outcome, candidate,
                                           candidate_name, posting, path, reply, missing)
                     VALUES ('m', 1, ?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, '', ?9)",
                    params![
                        uid as i64,
                        format!("raw-{uid}"),
                        at,
                        outcome,
                        candidate,
                        name,
                        posting,
                        posting.map(|p| format!("{p}/folder-{uid}")),
                        missing
                    ],
                )
                .unwrap();
            }
        }
        let end = parse_ts(&t("25T00:00:00"));
        let stale_before = parse_ts(&t("15T00:00:00"));
        let got = store.digest_rows(end - chrono::Duration::days(1), end, stale_before).unwrap();
        let (stale, totals) = by_recording(&store, end, stale_before);
        assert_eq!(format!("{:?}", got.stale), stale);
        assert_eq!(format!("{:?}", got.totals), totals);
        // And what that is, spelled out.
        let listed: Vec<_> =
            got.stale.iter().map(|s| (s.candidate.as_str(), s.name.as_str(), s.posting.as_str())).collect();
        assert_eq!(listed, [("a@x", "A one", "p2"), ("d@x", "D", "")]);
        assert_eq!(got.stale[0].missing, [DocKind::CoverLetter, DocKind::Cv], "in the first filing's order");
        assert_eq!(got.stale[0].folder, "p2/folder-0");
        assert_eq!(
            got.totals,
            BTreeMap::from([("".into(), 1), ("p1".into(), 2), ("p2".into(), 1), ("p3".into(), 1), ("p4".into(), 0)])
        );
    }
}
