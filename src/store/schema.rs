//! The schema and its migrations. `PRAGMA user_version` counts the migrations applied; a
//! migration is never edited once released, only followed by another.

use rusqlite::Connection;

use super::StoreError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes (
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    high_water INTEGER NOT NULL DEFAULT 0,
    last_contact TEXT,
    PRIMARY KEY (name, uidvalidity)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    mailbox TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    message_id TEXT,
    received_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    candidate TEXT,
    posting TEXT,
    path TEXT,
    reply TEXT NOT NULL,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX IF NOT EXISTS messages_sha256 ON messages (sha256);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id);
CREATE TABLE IF NOT EXISTS documents (
    message INTEGER NOT NULL REFERENCES messages (id),
    kind TEXT NOT NULL,
    filename TEXT,
    original_name TEXT,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    message INTEGER NOT NULL REFERENCES messages (id),
    reply_message_id TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    mail TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
"#;

/// Schema changes after the first release, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "ALTER TABLE outbox ADD COLUMN kind TEXT; CREATE INDEX IF NOT EXISTS outbox_recipient ON outbox (recipient, created_at);",
    // What the digest shows without reopening every metadata.json. The outbox is rebuilt so a
    // digest (which answers no message) can sit in it. A window's start is unique: the same
    // window can never be claimed (and so sent) twice, by a restart or a second process.
    "ALTER TABLE messages ADD COLUMN candidate_name TEXT;
     ALTER TABLE messages ADD COLUMN missing TEXT;
     ALTER TABLE messages ADD COLUMN repeat INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX IF NOT EXISTS messages_recorded ON messages (recorded_at);
     CREATE TABLE outbox_v2 (
         id INTEGER PRIMARY KEY,
         message INTEGER REFERENCES messages (id),
         reply_message_id TEXT NOT NULL UNIQUE,
         recipient TEXT NOT NULL,
         mail TEXT NOT NULL,
         state TEXT NOT NULL DEFAULT 'pending',
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_at TEXT NOT NULL,
         last_error TEXT,
         created_at TEXT NOT NULL,
         sent_at TEXT,
         kind TEXT
     );
     INSERT INTO outbox_v2 SELECT id, message, reply_message_id, recipient, mail, state, attempts, next_attempt_at, last_error, created_at, sent_at, kind FROM outbox;
     DROP TABLE outbox;
     ALTER TABLE outbox_v2 RENAME TO outbox;
     CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
     CREATE INDEX outbox_recipient ON outbox (recipient, created_at);
     CREATE TABLE IF NOT EXISTS digests (
         id INTEGER PRIMARY KEY,
         window_start TEXT NOT NULL UNIQUE,
         window_end TEXT NOT NULL,
         created_at TEXT NOT NULL,
         candidates INTEGER NOT NULL
     );",
    // The filing of each application, as committed: the truth about what a candidate folder
    // holds, so files are flushed once per batch and metadata.json can always be rebuilt.
    "ALTER TABLE messages ADD COLUMN filed TEXT;
     CREATE INDEX IF NOT EXISTS messages_path ON messages (path);",
    // What became of each reply, as a code SQL can filter on (the `reply` column holds the typed
    // note as JSON from now on). Older rows said it in English; their codes are read off that text
    // once, here.
    "ALTER TABLE messages ADD COLUMN reply_code TEXT;
     UPDATE messages SET reply_code = CASE
         WHEN reply LIKE 'queued:%' THEN 'queued'
         WHEN reply LIKE 'skipped: hourly cap%' THEN 'hourly_cap'
         ELSE 'legacy' END;
     CREATE INDEX IF NOT EXISTS messages_reply_code ON messages (reply_code, recorded_at);",
    // Recognising a message and a person seen before (issue 10): a Message-ID counts only with
    // the same content (the fingerprint of what the sender wrote), and an address keeps the
    // folder it was first filed in. Rows from before have no fingerprint: only their raw bytes
    // can recognise them.
    "ALTER TABLE messages ADD COLUMN content_sha256 TEXT;
     CREATE INDEX IF NOT EXISTS messages_message_id_content ON messages (message_id, content_sha256);
     CREATE INDEX IF NOT EXISTS messages_candidate_posting ON messages (candidate, posting);",
    // Robustness (issue 10): failed filing tries per message (a message that keeps failing is set
    // aside after a few); the daemon's ongoing errors, for `mailroom status`; and until when an
    // acknowledgement left uncertain by a crash is looked for in the Sent folder.
    "CREATE TABLE IF NOT EXISTS attempts (
         mailbox TEXT NOT NULL,
         uidvalidity INTEGER NOT NULL,
         uid INTEGER NOT NULL,
         count INTEGER NOT NULL,
         last_error TEXT NOT NULL,
         last_at TEXT NOT NULL,
         PRIMARY KEY (mailbox, uidvalidity, uid)
     );
     CREATE TABLE IF NOT EXISTS problems (
         area TEXT PRIMARY KEY,
         label TEXT NOT NULL,
         message TEXT NOT NULL,
         since TEXT NOT NULL,
         updated_at TEXT NOT NULL
     );
     ALTER TABLE outbox ADD COLUMN check_until TEXT;",
    // Whether authentication works, per part (identity provider, IMAP, SMTP): written by the
    // daemon on every change, read by status, the status line and the digest.
    "CREATE TABLE IF NOT EXISTS auth_state (
         part TEXT PRIMARY KEY,
         ok INTEGER NOT NULL,
         since TEXT NOT NULL,
         code TEXT,
         reason TEXT,
         detail TEXT,
         refresh_expires_at TEXT,
         updated_at TEXT NOT NULL
     );",
    // Privacy (issue 12): a person's hold and consent; a purge recorded (its steps, and a mark per
    // person it removes) before it acts, so it resumes after a crash; the keyed hashes of
    // forgotten addresses; the audit trail (counts and keyed hashes, never a name or address).
    "CREATE TABLE IF NOT EXISTS people (
         address TEXT PRIMARY KEY,
         consent_at TEXT,
         hold_reason TEXT,
         held_at TEXT
     );
     CREATE TABLE IF NOT EXISTS purges (
         id INTEGER PRIMARY KEY,
         command TEXT NOT NULL,
         action TEXT NOT NULL,
         person TEXT,
         started_at TEXT NOT NULL,
         finished_at TEXT,
         counts TEXT
     );
     CREATE TABLE IF NOT EXISTS purge_steps (
         id INTEGER PRIMARY KEY,
         purge INTEGER NOT NULL REFERENCES purges (id),
         kind TEXT NOT NULL,
         target TEXT NOT NULL,
         done_at TEXT,
         outcome TEXT,
         error TEXT
     );
     CREATE INDEX IF NOT EXISTS purge_steps_purge ON purge_steps (purge, id);
     CREATE TABLE IF NOT EXISTS purging (hash TEXT PRIMARY KEY, purge INTEGER NOT NULL REFERENCES purges (id));
     CREATE TABLE IF NOT EXISTS tombstones (hash TEXT PRIMARY KEY, created_at TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS audit (
         id INTEGER PRIMARY KEY,
         at TEXT NOT NULL,
         action TEXT NOT NULL,
         command TEXT NOT NULL,
         person TEXT,
         counts TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
     CREATE INDEX IF NOT EXISTS messages_candidate ON messages (candidate);",
    // What must appear on (or vanish from) the team's cloud folder, committed with the change of
    // the local folder (see store/publish.rs).
    "CREATE TABLE IF NOT EXISTS publish_queue (
         id INTEGER PRIMARY KEY,
         op TEXT NOT NULL,
         folder TEXT NOT NULL,
         name TEXT,
         sha256 TEXT,
         state TEXT NOT NULL DEFAULT 'pending',
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_at TEXT NOT NULL,
         last_error TEXT,
         created_at TEXT NOT NULL,
         done_at TEXT
     );
     CREATE INDEX IF NOT EXISTS publish_queue_state ON publish_queue (state, id);
     CREATE INDEX IF NOT EXISTS publish_queue_folder ON publish_queue (folder, op, state);",
    // The store at 100,000 candidates (scripts/bench-store): without these, the hourly reply count
    // scanned the whole outbox for every filed message, a per-message count of documents made the
    // digest and the purge quadratic, and `status` counted outcomes by full scans. The outcome
    // indexes are partial: a plain (outcome, …) index lured the planner away from the per-person
    // and per-folder indexes (there are no ANALYZE statistics).
    "CREATE INDEX IF NOT EXISTS documents_message ON documents (message);
     CREATE INDEX IF NOT EXISTS outbox_message ON outbox (message);
     CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind);
     CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_at);
     CREATE INDEX IF NOT EXISTS messages_filed ON messages (recorded_at) WHERE outcome = 'filed';
     CREATE INDEX IF NOT EXISTS messages_quarantined ON messages (recorded_at) WHERE outcome = 'quarantined';
     CREATE INDEX IF NOT EXISTS messages_duplicate ON messages (recorded_at) WHERE outcome = 'duplicate';",
    // The digest at 100,000 candidates (scripts/bench-store): who still lacks a document, the
    // totals per posting and who is purged soon come from every person's filings, read here, in
    // one index, person by person, instead of from 200,000 rows of a table (most of the digest's
    // 2.6 s). Partial, as above: only filings, so it never lures the planner for other outcomes.
    "CREATE INDEX IF NOT EXISTS messages_filed_person
         ON messages (candidate, recorded_at, received_at, posting, missing) WHERE outcome = 'filed';",
];

/// The schema version this build writes (`PRAGMA user_version` once every migration is applied).
pub(super) fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub(super) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    // The version is read under the write lock: `mailroom status` may open a new state at the
    // very moment the daemon creates it, and only one of them may apply each migration.
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let applied = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
        for sql in MIGRATIONS.iter().skip(applied) {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        Ok::<_, rusqlite::Error>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_of_the_previous_version_gains_the_content_fingerprint() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let before = MIGRATIONS.iter().position(|m| m.contains("ADD COLUMN content_sha256")).unwrap();
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64).unwrap();
        conn.execute(
            "INSERT INTO messages (mailbox, uidvalidity, uid, sha256, message_id, received_at, recorded_at, outcome, reply)
             VALUES ('m', 1, 1, 'raw', '1@localhost', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'filed', '')",
            [],
        )
        .unwrap();
        migrate(&conn).unwrap();
        let (content, version): (Option<String>, i64) = conn
            .query_row("SELECT content_sha256, (SELECT user_version FROM pragma_user_version) FROM messages", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((content, version), (None, MIGRATIONS.len() as i64), "old rows have no fingerprint");
    }
}
