//! Authentication as a state of its own: for each part (the identity provider, the IMAP login,
//! the SMTP login) whether it works, since when, and why not.
//!
//! A change is logged once (not at every retry), with the provider's error code; the state is
//! kept through the [`AuthJournal`] (the store implements it), where `mailroom status`, the
//! daemon's status line and the digest read it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::failure::AuthFailure;

/// What authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPart {
    /// Getting a token from the identity provider.
    Provider,
    Imap,
    Smtp,
}

impl AuthPart {
    pub const ALL: [AuthPart; 3] = [AuthPart::Provider, AuthPart::Imap, AuthPart::Smtp];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthPart::Provider => "provider",
            AuthPart::Imap => "imap",
            AuthPart::Smtp => "smtp",
        }
    }

    pub fn parse(s: &str) -> Option<AuthPart> {
        AuthPart::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            AuthPart::Provider => "identity provider",
            AuthPart::Imap => "IMAP login",
            AuthPart::Smtp => "SMTP login",
        }
    }
}

/// One part's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthRecord {
    pub part: AuthPart,
    pub ok: bool,
    /// When the current state began (for a failure: the first failure of the streak).
    pub since: DateTime<Utc>,
    /// `invalid_grant (AADSTS70008)`, `refused`, … when failing.
    pub code: Option<String>,
    /// What happened and what to do, when failing. Never a token or a secret.
    pub reason: Option<String>,
    /// How it authenticates: `password`, `XOAUTH2`, `microsoft365 client_credentials`, …
    pub detail: Option<String>,
    /// The identity provider only: when the refresh token is known to expire.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl AuthRecord {
    /// Days until the refresh token expires, when that is known.
    pub fn refresh_days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.refresh_expires_at.map(|t| (t - now).num_days())
    }
}

/// Where the auth state is kept, so other processes (`mailroom status`, the digest) can read it.
pub trait AuthJournal: Send + Sync {
    fn load_auth(&self) -> Result<Vec<AuthRecord>, String>;
    fn save_auth(&self, record: &AuthRecord) -> Result<(), String>;
    fn forget_auth(&self, part: AuthPart) -> Result<(), String>;
}

/// The state of every part in this process, written through to the journal on change.
pub(crate) struct Recorder {
    journal: OnceLock<Arc<dyn AuthJournal>>,
    states: Mutex<BTreeMap<AuthPart, AuthRecord>>,
    /// What was last logged per part: a failure's key, so each change is logged once.
    logged: Mutex<BTreeMap<AuthPart, String>>,
    warned_on: Mutex<Option<NaiveDate>>,
    warning_days: u32,
}

impl Recorder {
    pub(crate) fn new(warning_days: u32) -> Recorder {
        Recorder {
            journal: OnceLock::new(),
            states: Mutex::new(BTreeMap::new()),
            logged: Mutex::new(BTreeMap::new()),
            warned_on: Mutex::new(None),
            warning_days,
        }
    }

    /// Keeps the state in `journal` from now on; a failure's start survives a restart. Parts
    /// not in `used` are forgotten (a side that went back to passwords has no provider).
    pub(crate) fn attach(&self, journal: Arc<dyn AuthJournal>, used: &[AuthPart]) {
        match journal.load_auth() {
            Ok(records) => {
                let mut states = lock(&self.states);
                for r in records {
                    if used.contains(&r.part) {
                        states.insert(r.part, r);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the stored authentication state"),
        }
        for part in AuthPart::ALL.into_iter().filter(|p| !used.contains(p)) {
            if let Err(e) = journal.forget_auth(part) {
                tracing::warn!(error = %e, "cannot update the stored authentication state");
            }
        }
        let _ = self.journal.set(journal);
    }

    pub(crate) fn records(&self) -> Vec<AuthRecord> {
        lock(&self.states).values().cloned().collect()
    }

    /// The part works.
    pub(crate) fn ok(&self, part: AuthPart, detail: &str, refresh_expires_at: Option<DateTime<Utc>>) {
        let now = Utc::now();
        if let Some(key) = lock(&self.logged).remove(&part) {
            let since = lock(&self.states).get(&part).map(|r| r.since);
            tracing::info!(part = part.as_str(), previous = %key, failing_since = ?since, "authentication works again");
        }
        if let Some(expires) = refresh_expires_at {
            self.warn_if_expiring(expires, now);
        }
        let record = {
            let mut states = lock(&self.states);
            let prev = states.get(&part);
            let unchanged = prev.is_some_and(|p| {
                p.ok && p.detail.as_deref() == Some(detail) && p.refresh_expires_at == refresh_expires_at
            });
            if unchanged {
                return;
            }
            let record = AuthRecord {
                part,
                ok: true,
                since: prev.filter(|p| p.ok).map_or(now, |p| p.since),
                code: None,
                reason: None,
                detail: Some(detail.to_owned()),
                refresh_expires_at,
                updated_at: now,
            };
            states.insert(part, record.clone());
            record
        };
        self.save(&record);
    }

    /// The part fails. Logged when the failure is new or different from the last one logged.
    pub(crate) fn failing(&self, part: AuthPart, failure: &AuthFailure) {
        let now = Utc::now();
        let key = failure.key();
        let reason = failure.to_string();
        let first_of_kind = lock(&self.logged).insert(part, key.clone()).as_deref() != Some(key.as_str());
        if first_of_kind {
            tracing::error!(
                part = part.as_str(),
                code = %failure.code,
                provider_code = failure.provider_code.as_deref().unwrap_or(""),
                transient = failure.transient,
                error = %reason,
                "authentication failing; retrying with backoff"
            );
        }
        let record = {
            let mut states = lock(&self.states);
            let prev = states.get(&part);
            if prev.is_some_and(|p| {
                !p.ok && p.code.as_deref() == Some(key.as_str()) && p.reason.as_deref() == Some(&reason)
            }) {
                return;
            }
            let record = AuthRecord {
                part,
                ok: false,
                since: prev.filter(|p| !p.ok).map_or(now, |p| p.since),
                code: Some(key),
                reason: Some(reason),
                detail: prev.and_then(|p| p.detail.clone()),
                refresh_expires_at: prev.and_then(|p| p.refresh_expires_at),
                updated_at: now,
            };
            states.insert(part, record.clone());
            record
        };
        self.save(&record);
    }

    fn warn_if_expiring(&self, expires: DateTime<Utc>, now: DateTime<Utc>) {
        let left = expires - now;
        if left > chrono::Duration::days(self.warning_days.into()) {
            return;
        }
        let today = now.date_naive();
        let mut warned = lock(&self.warned_on);
        if *warned != Some(today) {
            *warned = Some(today);
            tracing::warn!(
                expires_at = %expires,
                days_left = left.num_days(),
                "the refresh token expires soon: run `mailroom auth login` before it does"
            );
        }
    }

    fn save(&self, record: &AuthRecord) {
        if let Some(j) = self.journal.get()
            && let Err(e) = j.save_auth(record)
        {
            tracing::warn!(error = %e, "cannot store the authentication state");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<Vec<AuthRecord>>);

    impl AuthJournal for Memory {
        fn load_auth(&self) -> Result<Vec<AuthRecord>, String> {
            Ok(Vec::new())
        }
        fn save_auth(&self, record: &AuthRecord) -> Result<(), String> {
            self.0.lock().unwrap().push(record.clone());
            Ok(())
        }
        fn forget_auth(&self, _: AuthPart) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_repeated_failure_is_written_once_and_keeps_its_start() {
        let journal = Arc::new(Memory::default());
        let r = Recorder::new(14);
        r.attach(journal.clone(), &AuthPart::ALL);
        let f = AuthFailure::from_error_response(
            "invalid_grant",
            Some("AADSTS70008: expired"),
            crate::provider::Flow::AuthorizationCode,
        );
        r.failing(AuthPart::Provider, &f);
        let since = r.records()[0].since;
        r.failing(AuthPart::Provider, &f);
        r.failing(AuthPart::Provider, &f);
        assert_eq!(journal.0.lock().unwrap().len(), 1, "one write per change, not per try");
        assert_eq!(r.records()[0].since, since);
        r.ok(AuthPart::Provider, "custom authorization_code", None);
        let saved = journal.0.lock().unwrap();
        assert_eq!(saved.len(), 2);
        assert!(saved[1].ok && saved[1].code.is_none());
    }
}
