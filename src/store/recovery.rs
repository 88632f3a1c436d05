//! After a crash: the acknowledgements a crash caught mid-send (`uncertain`), and whether they
//! are worth looking for in the Sent folder. [`super::OutboxStore::recover_interrupted`] gives
//! each a window (`check_until`, [`LOOK_FOR`] after the start that found it) in which the daemon
//! looks for its Message-ID there; found, it is `sent`. Past the window it stays `uncertain`.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Store, StoreError, ts};

/// How long after the start that found it an uncertain acknowledgement is looked for in the
/// Sent folder: the copy a submission server files there can lag behind a restart.
pub const LOOK_FOR: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// The store in the role of settling what a crash left uncertain.
pub trait SentCheck {
    /// Uncertain acknowledgements still looked for at `now`: (outbox id, Message-ID).
    fn to_look_up(&self, now: DateTime<Utc>) -> Result<Vec<(i64, String)>, StoreError>;
    /// Its copy is in the Sent folder: it left. `uncertain → sent`.
    fn found_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
}

impl SentCheck for Store {
    fn to_look_up(&self, now: DateTime<Utc>) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, reply_message_id FROM outbox WHERE state = 'uncertain' AND check_until > ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![ts(now)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn found_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?2, check_until = NULL,
                 last_error = 'interrupted while sending; found in the Sent folder'
             WHERE id = ?1 AND state = 'uncertain'",
            params![id, ts(now)],
        )?;
        Ok(())
    }
}
