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
];

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
