//! The `attempts` table: failed filing tries, per message. A message whose filing keeps failing
//! (for a reason of its own, not the disk's) is set aside after a few tries, so that it does not
//! hold up the messages after it, nor make the daemon download it again and again.

use std::collections::HashMap;

use chrono::Utc;
use rusqlite::params;

use super::{MailboxKey, Store, StoreError, ts};

/// The store in the role of counting what keeps failing.
pub trait Attempts {
    /// The messages of this mailbox with failed tries recorded: UID → (tries, last error).
    fn failing(&self, mailbox: &MailboxKey) -> Result<HashMap<u32, (u32, String)>, StoreError>;
    /// One more failed try at this message; returns how many there have been.
    fn record_failure(&self, mailbox: &MailboxKey, uid: u32, error: &str) -> Result<u32, StoreError>;
    /// Forgets the tries of messages at or below `up_to` (committed since).
    fn forget_failures(&self, mailbox: &MailboxKey, up_to: u32) -> Result<(), StoreError>;
}

impl Attempts for Store {
    fn failing(&self, mailbox: &MailboxKey) -> Result<HashMap<u32, (u32, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT uid, count, last_error FROM attempts WHERE mailbox = ?1 AND uidvalidity = ?2")?;
        let rows = stmt.query_map(params![mailbox.name, mailbox.uidvalidity], |r| {
            Ok((r.get::<_, u32>(0)?, (r.get::<_, u32>(1)?, r.get::<_, String>(2)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn record_failure(&self, mailbox: &MailboxKey, uid: u32, error: &str) -> Result<u32, StoreError> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO attempts (mailbox, uidvalidity, uid, count, last_error, last_at) VALUES (?1, ?2, ?3, 1, ?4, ?5)
             ON CONFLICT (mailbox, uidvalidity, uid) DO UPDATE SET count = count + 1, last_error = excluded.last_error, last_at = excluded.last_at",
        )?
        .execute(params![mailbox.name, mailbox.uidvalidity, uid, error, ts(Utc::now())])?;
        Ok(conn.query_row(
            "SELECT count FROM attempts WHERE mailbox = ?1 AND uidvalidity = ?2 AND uid = ?3",
            params![mailbox.name, mailbox.uidvalidity, uid],
            |r| r.get(0),
        )?)
    }

    fn forget_failures(&self, mailbox: &MailboxKey, up_to: u32) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM attempts WHERE mailbox = ?1 AND uidvalidity = ?2 AND uid <= ?3",
            params![mailbox.name, mailbox.uidvalidity, up_to],
        )?;
        Ok(())
    }
}
