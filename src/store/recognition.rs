//! Recognising what was seen before: the same message under another UID (a UIDVALIDITY reset, a
//! move to another server), and the folder a person's address was first filed in.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, params};

use super::{MailboxKey, Store, StoreError};

/// The store in the role of the pipeline's memory of messages and people.
pub trait Recognition {
    /// A message recorded before that this one is a copy of: the same raw bytes, or the same
    /// Message-ID **and** the same content fingerprint (a Message-ID alone proves nothing:
    /// clients, forms and lists reuse them). Its row id.
    fn same_message(
        &self,
        sha256: &str,
        message_id: Option<&str>,
        content_sha256: Option<&str>,
    ) -> Result<Option<i64>, StoreError>;

    /// The candidate folder (relative to the data root) this address was first filed in for
    /// this posting: one address, one folder, whatever name it signs with later.
    fn folder_of(&self, address: &str, posting: &str) -> Result<Option<String>, StoreError>;

    /// The UIDs of this mailbox above `after` that are recorded already: a message read aside
    /// (OCR) holds the high-water mark below it while the ones after it commit, so after a crash
    /// the next pass lists those again, and skips them by this.
    fn recorded_after(&self, mailbox: &MailboxKey, after: u32) -> Result<BTreeSet<u32>, StoreError>;
}

impl Recognition for Store {
    fn same_message(
        &self,
        sha256: &str,
        message_id: Option<&str>,
        content_sha256: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        let by_bytes = conn
            .query_row(
                "SELECT id FROM messages WHERE sha256 = ?1 AND outcome != 'duplicate' LIMIT 1",
                params![sha256],
                |r| r.get(0),
            )
            .optional()?;
        if by_bytes.is_some() {
            return Ok(by_bytes);
        }
        match (message_id, content_sha256) {
            (Some(mid), Some(content)) if !mid.is_empty() => Ok(conn
                .query_row(
                    "SELECT id FROM messages WHERE message_id = ?1 AND content_sha256 = ?2 AND outcome != 'duplicate' LIMIT 1",
                    params![mid, content],
                    |r| r.get(0),
                )
                .optional()?),
            _ => Ok(None),
        }
    }

    fn folder_of(&self, address: &str, posting: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT path FROM messages WHERE candidate = ?1 AND posting = ?2 AND outcome = 'filed' AND path IS NOT NULL
                 ORDER BY id LIMIT 1",
                params![address, posting],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn recorded_after(&self, mailbox: &MailboxKey, after: u32) -> Result<BTreeSet<u32>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT uid FROM messages WHERE mailbox = ?1 AND uidvalidity = ?2 AND uid > ?3")?;
        let rows = stmt.query_map(params![mailbox.name, mailbox.uidvalidity, after], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::reason::QuarantineReason;
    use crate::store::{Batch, Ledger, MailboxKey, MessageRecord, Outcome};

    fn record(uid: u32, sha: &str, mid: Option<&str>, content: Option<&str>) -> MessageRecord {
        MessageRecord {
            uid,
            sha256: sha.into(),
            message_id: mid.map(str::to_owned),
            content_sha256: content.map(str::to_owned),
            received_at: Utc::now(),
            outcome: Outcome::Quarantined { reason: QuarantineReason::NotMail, path: None },
        }
    }

    #[test]
    fn a_message_id_counts_only_with_the_same_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite3")).unwrap();
        let mailbox = MailboxKey { name: "m".into(), uidvalidity: 1 };
        let records = vec![record(1, "raw-1", Some("1@localhost"), Some("content-a")), record(2, "raw-2", None, None)];
        store.commit(&Batch { mailbox, high_water: 2, records }).unwrap();
        assert_eq!(store.same_message("raw-1", None, None).unwrap(), Some(1), "the same bytes");
        assert_eq!(store.same_message("raw-9", Some("1@localhost"), Some("content-a")).unwrap(), Some(1));
        assert_eq!(
            store.same_message("raw-9", Some("1@localhost"), Some("content-b")).unwrap(),
            None,
            "another message"
        );
        assert_eq!(store.same_message("raw-9", Some("1@localhost"), None).unwrap(), None, "no evidence");
        assert_eq!(store.same_message("raw-9", None, Some("content-a")).unwrap(), None, "content alone is not enough");
        assert_eq!(store.folder_of("nobody@example.test", "stage").unwrap(), None);
    }
}
