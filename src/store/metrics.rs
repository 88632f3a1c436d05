//! What the metrics endpoint and `mailroom status --json` count: totals since the state was
//! created, read from `messages`, `outbox` and `mailboxes` at each scrape. Counting from the store
//! (rather than in memory) makes the counters survive a restart and agree with `mailroom status`.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Store, StoreError, parse_ts};

/// One mailbox's messages by outcome, and the last time a pass reached it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MailboxCounts {
    /// `user@host/folder`, as the store names it.
    pub name: String,
    pub filed: u64,
    pub quarantined: u64,
    pub duplicates: u64,
    pub last_contact: Option<DateTime<Utc>>,
}

/// Every count the metrics show. Labels are codes and kinds, never personal data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricCounts {
    /// Every mailbox the store knows (contacted, or holding messages), by name.
    pub mailboxes: Vec<MailboxCounts>,
    /// `(mailbox, quarantine reason code, count)`.
    pub quarantined: Vec<(String, String, u64)>,
    /// Acknowledgements by `(reply kind, outbox state, count)`: each one queued is in one state.
    pub replies: Vec<(String, String, u64)>,
    /// Applications not answered, by skip reason code.
    pub skipped: Vec<(String, u64)>,
    /// Digest mails (one per recipient) by outbox state.
    pub digests: Vec<(String, u64)>,
    /// Mail waiting to be sent (pending, or being sent): what `mailroom status` calls waiting.
    pub outbox_depth: u64,
}

/// The store in the metrics endpoint's role (and `mailroom status --json`'s).
pub trait MetricsStore: Clone + Send + Sync + 'static {
    fn metric_counts(&self) -> Result<MetricCounts, StoreError>;
}

impl MetricsStore for Store {
    fn metric_counts(&self) -> Result<MetricCounts, StoreError> {
        let conn = self.conn();
        let mut out = MetricCounts::default();
        let mut by_name = std::collections::BTreeMap::<String, MailboxCounts>::new();
        {
            let mut stmt = conn.prepare("SELECT name, max(last_contact) FROM mailboxes GROUP BY name")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
            for row in rows {
                let (name, at) = row?;
                by_name
                    .entry(name.clone())
                    .or_insert_with(|| MailboxCounts { name, ..Default::default() })
                    .last_contact = at.map(|s| parse_ts(&s));
            }
            let mut stmt = conn.prepare("SELECT mailbox, outcome, count(*) FROM messages GROUP BY mailbox, outcome")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (name, outcome, n) = row?;
                let m = by_name.entry(name.clone()).or_insert_with(|| MailboxCounts { name, ..Default::default() });
                match outcome.as_str() {
                    "filed" => m.filed += n as u64,
                    "quarantined" => m.quarantined += n as u64,
                    "duplicate" => m.duplicates += n as u64,
                    _ => {}
                }
            }
        }
        out.mailboxes = by_name.into_values().collect();
        // Reasons are stored as JSON with their code; rows from before that hold English text.
        let mut stmt = conn.prepare(
            "SELECT mailbox,
                    CASE WHEN json_valid(reason) THEN coalesce(json_extract(reason, '$.code'), 'legacy') ELSE 'legacy' END,
                    count(*)
             FROM messages WHERE outcome = 'quarantined' GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        out.quarantined = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
            .collect::<Result<_, _>>()?;
        // An entry older than the kind column is an acknowledgement that asked for nothing.
        let mut stmt = conn.prepare(
            "SELECT coalesce(kind, 'complete'), state, count(*) FROM outbox
             WHERE coalesce(kind, '') != 'digest' GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        out.replies = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT reply_code, count(*) FROM messages
             WHERE outcome = 'filed' AND reply_code IS NOT NULL AND reply_code != 'queued' GROUP BY 1 ORDER BY 1",
        )?;
        out.skipped = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect::<Result<_, _>>()?;
        let mut stmt =
            conn.prepare("SELECT state, count(*) FROM outbox WHERE kind = 'digest' GROUP BY state ORDER BY state")?;
        out.digests = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect::<Result<_, _>>()?;
        out.outbox_depth =
            conn.query_row("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')", params![], |r| {
                r.get::<_, i64>(0)
            })? as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filing::FiledApplication;
    use crate::mail::{MailKind, OutgoingMail, ReplyKind};
    use crate::reason::{QuarantineReason, ReplyNote, SkipReason};
    use crate::store::{Batch, DigestStore, FiledRecord, Ledger, MailboxKey, MessageRecord, OutboxStore, Outcome};

    fn mail(to: &str, kind: MailKind) -> OutgoingMail {
        OutgoingMail {
            to: to.into(),
            to_name: None,
            subject: "s".into(),
            text: "t".into(),
            html: None,
            message_id: format!("{to}.{kind}@example.test"),
            in_reply_to: None,
            references: Vec::new(),
            kind,
            attachments: Vec::new(),
        }
    }

    fn filed(uid: u32, who: &str, reply: ReplyNote, outbox: Option<OutgoingMail>) -> MessageRecord {
        let now = Utc::now();
        MessageRecord {
            uid,
            sha256: format!("sha{uid}"),
            message_id: None,
            content_sha256: None,
            received_at: now,
            outcome: Outcome::Filed(Box::new(FiledRecord {
                candidate: who.into(),
                candidate_name: who.into(),
                folder: format!("p/{who}"),
                application: FiledApplication {
                    sha256: format!("sha{uid}"),
                    message_id: None,
                    subject: String::new(),
                    received_at: now,
                    eml: "x.eml".into(),
                    repeat: false,
                    posting: "p".into(),
                    documents: Vec::new(),
                    missing: Vec::new(),
                },
                reply,
                outbox,
                publish: Vec::new(),
            })),
        }
    }

    #[test]
    fn counts_by_mailbox_reason_kind_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite3")).unwrap();
        assert_eq!(store.metric_counts().unwrap(), MetricCounts::default());
        let inbox = MailboxKey { name: "c@h/INBOX".into(), uidvalidity: 7 };
        let other = MailboxKey { name: "c@h/Other".into(), uidvalidity: 1 };
        store.record_contact(&other, Utc::now()).unwrap();
        let records = vec![
            filed(
                1,
                "a@x",
                ReplyNote::Queued(ReplyKind::Complete),
                Some(mail("a@x", MailKind::Ack(ReplyKind::Complete))),
            ),
            filed(
                2,
                "b@x",
                ReplyNote::Queued(ReplyKind::MissingCv),
                Some(mail("b@x", MailKind::Ack(ReplyKind::MissingCv))),
            ),
            filed(3, "c@x", ReplyNote::Skipped(SkipReason::Backlog), None),
            MessageRecord {
                uid: 4,
                sha256: "q".into(),
                message_id: None,
                content_sha256: None,
                received_at: Utc::now(),
                outcome: Outcome::Quarantined {
                    reason: QuarantineReason::TooLarge { size: 10, limit: 5, announced: true },
                    path: None,
                },
            },
            MessageRecord {
                uid: 5,
                sha256: "sha1".into(),
                message_id: None,
                content_sha256: None,
                received_at: Utc::now(),
                outcome: Outcome::Duplicate { of: crate::store::DuplicateOf::Record(1) },
            },
        ];
        store.commit(&Batch { mailbox: inbox, high_water: 5, records }).unwrap();
        // An older version's quarantine, reason in English text.
        store
            .conn()
            .execute(
                "INSERT INTO messages (mailbox, uidvalidity, uid, sha256, received_at, recorded_at, outcome, reason, reply)
                 VALUES ('c@h/INBOX', 6, 1, 'old', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z', 'quarantined', 'no sender', '')",
                [],
            )
            .unwrap();
        let due = store.due_outbox(Utc::now(), 10).unwrap();
        assert!(store.claim(due[0].id, Utc::now()).unwrap());
        store.mark_sent(due[0].id, Utc::now()).unwrap();
        store
            .claim_digest(Utc::now() - chrono::Duration::days(1), Utc::now(), 0, &[mail("t@x", MailKind::Digest)])
            .unwrap();

        let c = store.metric_counts().unwrap();
        let names: Vec<_> =
            c.mailboxes.iter().map(|m| (m.name.as_str(), m.filed, m.quarantined, m.duplicates)).collect();
        assert_eq!(names, [("c@h/INBOX", 3, 2, 1), ("c@h/Other", 0, 0, 0)]);
        assert!(c.mailboxes.iter().all(|m| m.last_contact.is_some()));
        assert_eq!(
            c.quarantined,
            [("c@h/INBOX".into(), "legacy".into(), 1), ("c@h/INBOX".into(), "too_large".into(), 1)]
        );
        assert_eq!(c.replies, [("complete".into(), "sent".into(), 1), ("missing_cv".into(), "pending".into(), 1)]);
        assert_eq!(c.skipped, [("backlog".into(), 1)]);
        assert_eq!(c.digests, [("pending".into(), 1)]);
        assert_eq!(c.outbox_depth, 2, "one acknowledgement and one digest wait");
        let totals = store.totals().unwrap();
        assert_eq!(
            (totals.filed, totals.quarantined, totals.duplicates, totals.outbox_pending),
            (3, 2, 1, c.outbox_depth),
            "the same numbers as mailroom status"
        );
    }
}
