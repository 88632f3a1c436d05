//! `auth_state`: whether each part of authentication works (the identity provider, the IMAP
//! login, the SMTP login), since when, and why not. The daemon writes it on every change (see
//! [`crate::auth`]); `mailroom status`, the status line and the digest read it.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, parse_ts, ts};
use crate::auth::{AuthJournal, AuthPart, AuthRecord};

/// The store in the role of keeping the auth state.
pub trait AuthStore {
    /// Every part's state, identity provider first.
    fn auth_records(&self) -> Result<Vec<AuthRecord>, StoreError>;
    fn save_auth_record(&self, record: &AuthRecord) -> Result<(), StoreError>;
    fn forget_auth_part(&self, part: AuthPart) -> Result<(), StoreError>;
}

impl AuthStore for Store {
    fn auth_records(&self) -> Result<Vec<AuthRecord>, StoreError> {
        let conn = self.conn();
        let mut out = Vec::new();
        for part in AuthPart::ALL {
            let row = conn
                .query_row(
                    "SELECT ok, since, code, reason, detail, refresh_expires_at, updated_at FROM auth_state WHERE part = ?1",
                    params![part.as_str()],
                    |r| {
                        Ok(AuthRecord {
                            part,
                            ok: r.get(0)?,
                            since: parse_ts(&r.get::<_, String>(1)?),
                            code: r.get(2)?,
                            reason: r.get(3)?,
                            detail: r.get(4)?,
                            refresh_expires_at: r.get::<_, Option<String>>(5)?.map(|s| parse_ts(&s)),
                            updated_at: parse_ts(&r.get::<_, String>(6)?),
                        })
                    },
                )
                .optional()?;
            out.extend(row);
        }
        Ok(out)
    }

    fn save_auth_record(&self, r: &AuthRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO auth_state (part, ok, since, code, reason, detail, refresh_expires_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (part) DO UPDATE SET ok = excluded.ok, since = excluded.since, code = excluded.code,
                 reason = excluded.reason, detail = excluded.detail,
                 refresh_expires_at = excluded.refresh_expires_at, updated_at = excluded.updated_at",
            params![
                r.part.as_str(),
                r.ok,
                ts(r.since),
                r.code,
                r.reason,
                r.detail,
                r.refresh_expires_at.map(ts),
                ts(r.updated_at)
            ],
        )?;
        Ok(())
    }

    fn forget_auth_part(&self, part: AuthPart) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM auth_state WHERE part = ?1", params![part.as_str()])?;
        Ok(())
    }
}

impl AuthJournal for Store {
    fn load_auth(&self) -> Result<Vec<AuthRecord>, String> {
        self.auth_records().map_err(|e| e.to_string())
    }
    fn save_auth(&self, record: &AuthRecord) -> Result<(), String> {
        self.save_auth_record(record).map_err(|e| e.to_string())
    }
    fn forget_auth(&self, part: AuthPart) -> Result<(), String> {
        self.forget_auth_part(part).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn a_record_is_kept_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite3")).unwrap();
        assert!(store.auth_records().unwrap().is_empty());
        let mut r = AuthRecord {
            part: AuthPart::Provider,
            ok: false,
            since: Utc::now(),
            code: Some("invalid_grant".into()),
            reason: Some("refused".into()),
            detail: Some("custom authorization_code".into()),
            refresh_expires_at: None,
            updated_at: Utc::now(),
        };
        store.save_auth_record(&r).unwrap();
        r.ok = true;
        r.code = None;
        store.save_auth_record(&r).unwrap();
        let got = store.auth_records().unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].ok && got[0].code.is_none());
        store.forget_auth_part(AuthPart::Provider).unwrap();
        assert!(store.auth_records().unwrap().is_empty());
    }
}
