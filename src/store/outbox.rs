//! The `outbox` table: every mail mailroom sends, and where it is in its life.
//!
//! ```text
//! pending ──claim──▶ sending ──▶ sent
//!    ▲                  │ └────▶ failed      (permanent error, or too many tries)
//!    └──── transient ───┤
//!    └──── unclaim ─────┘                    (claimed ahead, never handed to SMTP)
//! sending ──(found at start: a crash caught it mid-send; or the connection lost after the
//!            whole mail was sent, before the server answered)──▶ uncertain
//! ```
//!
//! An entry is claimed (`sending`, committed) before it is handed to SMTP, so a crash mid-send
//! can never send it twice: it may or may not have left, so it becomes `uncertain`, is reported,
//! and is never sent again blindly.
//!
//! The claim is durable before the mail leaves (`synchronous = FULL`: the WAL is fsynced). What
//! settles a claimed entry afterwards (`sent`, `failed`, back to `pending`, `uncertain`) is
//! committed at once but without its own fsync (`synchronous = NORMAL`, for that one statement):
//! the next claim's fsync (or a checkpoint) makes it durable with the WAL frames before it.
//! Only a power loss in between can lose it, and then the entry is still `sending`, which the
//! next start turns `uncertain`: never sent twice. This halves the fsyncs per acknowledgement.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::{Store, StoreError, parse_ts, ts};
use crate::mail::OutgoingMail;

/// Where an outbox entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    Pending,
    Sending,
    Sent,
    Failed,
    Uncertain,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
            OutboxState::Uncertain => "uncertain",
        }
    }

    pub fn parse(s: &str) -> Option<OutboxState> {
        [OutboxState::Pending, OutboxState::Sending, OutboxState::Sent, OutboxState::Failed, OutboxState::Uncertain]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub attempts: u32,
    pub mail: OutgoingMail,
}

/// The store in the outbox sender's role.
pub trait OutboxStore: Clone + Send + Sync + super::Health + super::SentCheck + 'static {
    /// Pending entries due at `now`, oldest first.
    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// `pending → sending`, committed before the mail is handed to SMTP. False if already taken.
    fn claim(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// [`OutboxStore::claim`] for several entries in one transaction (one fsync): the ids claimed.
    fn claim_many(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>, StoreError>;
    /// `sending → pending` for claimed entries that were never handed to SMTP (the pass ended
    /// before their turn): not a try. Returns how many.
    fn unclaim(&self, ids: &[i64]) -> Result<usize, StoreError>;
    fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
    fn mark_retry(&self, id: i64, error: &str, next_attempt: DateTime<Utc>) -> Result<(), StoreError>;
    fn mark_failed(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// `sending → uncertain`: the connection was lost after the whole mail was sent and before the
    /// server answered, so it may have left; never sent again, looked for in the Sent folder.
    fn mark_uncertain(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// At start: entries left in `sending` by a crash become `uncertain`. Returns how many.
    fn recover_interrupted(&self) -> Result<usize, StoreError>;
    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// Settles a claimed entry: committed at once, made durable by the next fsync of the WAL (see the
/// module's documentation).
fn settle(store: &Store, sql: &str, params: impl rusqlite::Params) -> Result<(), StoreError> {
    super::execute_relaxed(store, sql, params).map(|_| ())
}

/// Queues one mail inside the caller's transaction (the batch commit, or a digest's claim).
pub(super) fn insert(
    tx: &rusqlite::Transaction<'_>,
    message: Option<i64>,
    mail: &OutgoingMail,
    now: &str,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(mail).expect("outgoing mail serialises");
    tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox (message, reply_message_id, recipient, mail, next_attempt_at, created_at, kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
    )?
    .execute(params![message, mail.message_id, mail.to, json, now, mail.kind.as_str()])?;
    Ok(())
}

impl OutboxStore for Store {
    fn due_outbox(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
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
                    conn.execute(
                        "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1",
                        params![id, format!("unreadable entry: {e}")],
                    )?;
                }
            }
        }
        Ok(out)
    }

    fn claim(&self, id: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
        // Durable before the mail leaves: never on a connection a failed relaxed write left NORMAL.
        let n = super::durable_conn(self)?.execute(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, ts(now)],
        )?;
        Ok(n == 1)
    }

    fn claim_many(&self, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
        let mut conn = super::durable_conn(self)?;
        let tx = conn.transaction()?;
        let mut claimed = Vec::with_capacity(ids.len());
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1 AND state = 'pending'",
            )?;
            for &id in ids {
                if stmt.execute(params![id, ts(now)])? == 1 {
                    claimed.push(id);
                }
            }
        }
        tx.commit()?;
        Ok(claimed)
    }

    fn unclaim(&self, ids: &[i64]) -> Result<usize, StoreError> {
        // Relaxed, like a settling write: lost, the entries stay `sending` and turn `uncertain`.
        let mut n = 0;
        for &id in ids {
            n += super::execute_relaxed(
                self,
                "UPDATE outbox SET state = 'pending', attempts = max(attempts - 1, 0) WHERE id = ?1 AND state = 'sending'",
                params![id],
            )?;
        }
        Ok(n)
    }

    fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        settle(
            self,
            "UPDATE outbox SET state = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1",
            params![id, ts(now)],
        )
    }

    fn mark_retry(&self, id: i64, error: &str, next_attempt: DateTime<Utc>) -> Result<(), StoreError> {
        settle(
            self,
            "UPDATE outbox SET state = 'pending', last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
            params![id, error, ts(next_attempt)],
        )
    }

    fn mark_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        settle(self, "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1", params![id, error])
    }

    fn mark_uncertain(&self, id: i64, error: &str) -> Result<(), StoreError> {
        settle(
            self,
            "UPDATE outbox SET state = 'uncertain', last_error = ?2, check_until = ?3 WHERE id = ?1 AND state = 'sending'",
            params![id, error, ts(Utc::now() + super::LOOK_FOR)],
        )
    }

    fn recover_interrupted(&self) -> Result<usize, StoreError> {
        // Looked for in the Sent folder for a while (see `recovery`): found there, it is `sent`.
        Ok(self.conn().execute(
            "UPDATE outbox SET state = 'uncertain', last_error = 'interrupted while sending; not retried (at most once)',
                 check_until = ?1 WHERE state = 'sending'",
            params![ts(Utc::now() + super::LOOK_FOR)],
        )?)
    }

    fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<String> =
            self.conn()
                .query_row("SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'", [], |r| r.get(0))?;
        Ok(next.map(|s| parse_ts(&s)))
    }
}
