//! What `mailroom status` needs to tell the truth: which command last took the state (and when),
//! and the daemon's ongoing errors (`problems`: "cannot file since T: disk full"), recorded by
//! the daemon as they start and cleared when the same work succeeds again.
//!
//! Whether a daemon runs *now* is not stored (a killed daemon cannot say it stopped): `status`
//! asks the lock next to the state file.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, parse_ts, ts};

/// Where an ongoing error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Connecting, logging in, reading the folder.
    Imap,
    /// Writing the documents (or committing them: a full disk).
    Filing,
    /// The state database itself.
    Store,
    /// Handing acknowledgements to the SMTP server.
    Smtp,
    /// Asking clamd to scan the documents.
    Antivirus,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Imap => "imap",
            Area::Filing => "filing",
            Area::Store => "store",
            Area::Smtp => "smtp",
            Area::Antivirus => "antivirus",
        }
    }
}

/// An ongoing error, as `status` shows it: "`label` since `since`: `message`".
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub area: String,
    /// "IMAP login failing", "cannot file", …
    pub label: String,
    /// The error, without personal data.
    pub message: String,
    pub since: DateTime<Utc>,
    /// The last time it was seen.
    pub updated_at: DateTime<Utc>,
}

/// The last command that took the state for work (`run` or `once`).
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub command: String,
    pub pid: u32,
    pub at: DateTime<Utc>,
}

/// The store in the role of the daemon's health record.
pub trait Health {
    /// A command took the state (under the lock) for work.
    fn record_start(&self, command: &str) -> Result<(), StoreError>;
    /// An error in `area`, seen now; `since` stays that of the first time in a row.
    fn set_problem(&self, area: Area, label: &str, message: &str) -> Result<(), StoreError>;
    /// The work of `area` succeeded: its error is over.
    fn clear_problem(&self, area: Area) -> Result<(), StoreError>;
}

impl Health for Store {
    fn record_start(&self, command: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        let started = serde_json::json!({ "command": command, "pid": std::process::id(), "at": ts(Utc::now()) });
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('started', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![started.to_string()],
        )?;
        Ok(())
    }

    fn set_problem(&self, area: Area, label: &str, message: &str) -> Result<(), StoreError> {
        let now = ts(Utc::now());
        self.conn().execute(
            "INSERT INTO problems (area, label, message, since, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (area) DO UPDATE SET label = excluded.label, message = excluded.message, updated_at = excluded.updated_at",
            params![area.as_str(), label, message, now],
        )?;
        Ok(())
    }

    fn clear_problem(&self, area: Area) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM problems WHERE area = ?1", params![area.as_str()])?;
        Ok(())
    }
}

impl Store {
    /// The ongoing errors, oldest first (none when the state predates them).
    pub fn problems(&self) -> Result<Vec<Problem>, StoreError> {
        let conn = self.conn();
        let Ok(mut stmt) = conn.prepare("SELECT area, label, message, since, updated_at FROM problems ORDER BY since")
        else {
            return Ok(Vec::new());
        };
        let rows = stmt.query_map([], |r| {
            Ok(Problem {
                area: r.get(0)?,
                label: r.get(1)?,
                message: r.get(2)?,
                since: parse_ts(&r.get::<_, String>(3)?),
                updated_at: parse_ts(&r.get::<_, String>(4)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The last command that took the state for work.
    pub fn last_start(&self) -> Result<Option<Started>, StoreError> {
        let value: Option<String> =
            self.conn().query_row("SELECT value FROM meta WHERE key = 'started'", [], |r| r.get(0)).optional()?;
        Ok(value.and_then(|v| {
            let v: serde_json::Value = serde_json::from_str(&v).ok()?;
            Some(Started {
                command: v["command"].as_str()?.to_owned(),
                pid: v["pid"].as_u64()? as u32,
                at: parse_ts(v["at"].as_str()?),
            })
        }))
    }
}
