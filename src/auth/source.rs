//! Where access tokens come from while mailroom runs: the token file, and the identity provider
//! when the file's token will not do.
//!
//! - **Ahead of expiry.** A token is used while more than a quarter of its life (at most five
//!   minutes) is left; an IMAP login asks for at least half its life, so a session lasts.
//! - **Rotation is saved first.** A new refresh token is written to the file, with fsync, before
//!   the access token that came with it is handed to anyone; if the write fails, the token is
//!   not used and the write is tried again (the identity provider is not asked again).
//! - **One refresh at a time**, in this process (a mutex) and across processes (the file's
//!   lock; the second process reads what the first saved).
//! - **Capped backoff.** After a failure the provider is not asked again before the backoff has
//!   passed (1 s doubling to 10 min, with jitter), however many callers want a token; they get
//!   the same failure at once. A token file written meanwhile (`mailroom auth login`) is noticed
//!   and tried at once.
//! - **A refused token is never offered again**: the next login gets a new one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::failure::AuthFailure;
use super::flows::{Granted, IdentityProvider};
use super::state::{AuthPart, Recorder};
use super::tokens::{Stamp, Token, TokenFile, Tokens, VERSION};
use crate::error::backoff;
use crate::provider::{Flow, RefreshLife};

/// What a caller needs the token for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// To send now (SMTP): any token that is not about to expire.
    Use,
    /// To open a session that should last (IMAP): at least half the token's life left.
    Login,
}

/// A usable access token.
#[derive(Debug, Clone)]
pub(super) struct Fresh {
    pub token: Token,
    pub expires_at: DateTime<Utc>,
    /// When to stop using it and get another (a session is renewed then).
    pub renew_at: DateTime<Utc>,
}

const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(600);
/// When the identity provider gives no `expires_in`, the token is taken for an hour.
const ASSUMED_LIFE: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct State {
    tokens: Option<Tokens>,
    stamp: Option<Stamp>,
    /// Why the file's tokens cannot be used, when they cannot (damaged, another client's).
    file_problem: Option<String>,
    /// Tokens obtained but not yet saved: not used until they are.
    unsaved: bool,
    /// The file was read (or written) at least once.
    loaded: bool,
    failures: u32,
    next_try: Option<tokio::time::Instant>,
    failure: Option<AuthFailure>,
    refused: Option<Token>,
}

pub(crate) struct TokenSource {
    idp: IdentityProvider,
    file: TokenFile,
    recorder: Arc<Recorder>,
    state: tokio::sync::Mutex<State>,
}

impl TokenSource {
    pub(crate) fn new(idp: IdentityProvider, file: TokenFile, recorder: Arc<Recorder>) -> TokenSource {
        TokenSource { idp, file, recorder, state: tokio::sync::Mutex::new(State::default()) }
    }

    pub(crate) fn idp(&self) -> &IdentityProvider {
        &self.idp
    }

    pub(crate) fn file(&self) -> &TokenFile {
        &self.file
    }

    /// `microsoft365 client_credentials`: how tokens are obtained, for the state and messages.
    pub(crate) fn detail(&self) -> String {
        format!("{} {}", self.idp.provider.as_str(), self.idp.flow.as_str())
    }

    /// A token good enough for `need`: the one held, or a new one.
    pub(crate) async fn bearer(&self, need: Need) -> Result<Fresh, AuthFailure> {
        let mut st = self.state.lock().await;
        self.adopt_file(&mut st);
        if st.unsaved {
            self.persist(&mut st).await?;
        }
        if let Some(fresh) = usable(&st, need, Utc::now()) {
            self.recovered(&mut st);
            return Ok(fresh);
        }
        if let (Some(failure), Some(at)) = (&st.failure, st.next_try)
            && tokio::time::Instant::now() < at
        {
            return Err(failure.clone());
        }
        let wait = Duration::from_secs(5) + self.idp.timeout();
        let _lock = self.file.lock(wait).await.map_err(|e| AuthFailure::transient("token_file", e.to_string()))?;
        // Another process may have refreshed while we waited for the lock.
        self.adopt_file(&mut st);
        if let Some(fresh) = usable(&st, need, Utc::now()) {
            self.recovered(&mut st);
            return Ok(fresh);
        }
        match self.obtain(&st).await {
            Ok(granted) => {
                let now = Utc::now();
                st.tokens = Some(merge(&self.idp, st.tokens.as_ref(), granted, now));
                st.unsaved = true;
                st.refused = None;
                self.persist(&mut st).await?;
                st.failures = 0;
                st.failure = None;
                st.next_try = None;
                let tokens = st.tokens.as_ref().expect("just set");
                tracing::debug!(expires_at = ?tokens.access_expires_at, rotated = tokens.refresh_obtained_at == Some(now), "access token obtained");
                self.recorder.ok(
                    AuthPart::Provider,
                    &self.detail(),
                    refresh_expiry(tokens, self.idp.provider.refresh_life()),
                );
                usable(&st, Need::Use, now).ok_or_else(|| {
                    AuthFailure::transient("short_lived", "the identity provider gave a token that is already expiring")
                })
            }
            Err(failure) => {
                let wait = backoff(st.failures, BACKOFF_BASE, BACKOFF_CAP);
                st.failures = st.failures.saturating_add(1);
                st.next_try = Some(tokio::time::Instant::now() + wait);
                tracing::debug!(failures = st.failures, retry_in_ms = wait.as_millis() as u64, "no access token");
                self.recorder.failing(AuthPart::Provider, &failure);
                st.failure = Some(failure.clone());
                Err(failure)
            }
        }
    }

    /// A usable token after a failure (another process, or a new sign-in, wrote the file): the
    /// failure is over.
    fn recovered(&self, st: &mut State) {
        if st.failure.take().is_some() {
            st.failures = 0;
            st.next_try = None;
            let expiry = st.tokens.as_ref().and_then(|t| refresh_expiry(t, self.idp.provider.refresh_life()));
            self.recorder.ok(AuthPart::Provider, &self.detail(), expiry);
        }
    }

    /// A server refused this token: it is not offered again.
    pub(crate) async fn refused(&self, token: &Token) {
        self.state.lock().await.refused = Some(token.clone());
    }

    /// How long until the provider may be asked again (zero when it may be now).
    pub(crate) async fn retry_in(&self) -> Duration {
        let st = self.state.lock().await;
        st.next_try.map(|t| t.saturating_duration_since(tokio::time::Instant::now())).unwrap_or_default()
    }

    /// When the refresh token is known to expire, as the file says now.
    pub(crate) async fn refresh_expires_at(&self) -> Option<DateTime<Utc>> {
        let st = self.state.lock().await;
        st.tokens.as_ref().and_then(|t| refresh_expiry(t, self.idp.provider.refresh_life()))
    }

    /// Reads the file again if it changed since we last read or wrote it. A file written by
    /// someone else while we were failing (a new login) ends the backoff.
    fn adopt_file(&self, st: &mut State) {
        if st.unsaved {
            // Ours is newer: it is about to be written over the file.
            return;
        }
        let stamp = self.file.stamp();
        if st.loaded && stamp == st.stamp {
            return;
        }
        let foreign_change = st.loaded;
        st.loaded = true;
        st.stamp = stamp;
        st.file_problem = None;
        let loaded = match self.file.load() {
            Ok(Some(t))
                if t.token_url == self.idp.token_url
                    && t.client_id == self.idp.client_id
                    && t.flow == self.idp.flow =>
            {
                Some(t)
            }
            Ok(Some(_)) => {
                st.file_problem = Some(format!(
                    "the tokens in {} are for another client, endpoint or flow",
                    self.file.path().display()
                ));
                None
            }
            Ok(None) => None,
            Err(e) => {
                st.file_problem = Some(e.to_string());
                None
            }
        };
        if loaded.is_some() && loaded != st.tokens && foreign_change && st.failure.is_some() {
            tracing::info!("the token file changed: trying it now");
            st.next_try = None;
            st.failures = 0;
        }
        st.tokens = loaded;
    }

    async fn obtain(&self, st: &State) -> Result<Granted, AuthFailure> {
        match self.idp.flow {
            Flow::ClientCredentials => self.idp.client_credentials().await,
            Flow::AuthorizationCode | Flow::DeviceCode => {
                match st.tokens.as_ref().and_then(|t| t.refresh_token.clone()) {
                    Some(rt) => self.idp.refresh(&rt).await,
                    None => Err(AuthFailure::needs_human(
                        "not_logged_in",
                        match &st.file_problem {
                            Some(p) => format!("no usable refresh token: {p}"),
                            None => format!("no refresh token yet in {}", self.file.path().display()),
                        },
                        "run `mailroom auth login` (as the service's user) to sign in once",
                    )),
                }
            }
        }
    }

    /// Saves the held tokens; on success they may be used.
    async fn persist(&self, st: &mut State) -> Result<(), AuthFailure> {
        let Some(tokens) = st.tokens.clone() else { return Ok(()) };
        let file = self.file.clone();
        let saved = tokio::task::spawn_blocking(move || file.save(&tokens))
            .await
            .map_err(|e| AuthFailure::transient("token_file", e.to_string()))?;
        match saved {
            Ok(()) => {
                st.unsaved = false;
                st.loaded = true;
                st.stamp = self.file.stamp();
                Ok(())
            }
            Err(e) => {
                let failure = AuthFailure::needs_human(
                    "token_file",
                    format!("{e}; the new tokens are not used until they are saved"),
                    "free space or fix the permissions of the token directory (oauth2.token_dir)",
                );
                self.recorder.failing(AuthPart::Provider, &failure);
                Err(failure)
            }
        }
    }
}

/// The tokens after a grant: a refresh token the answer did not replace is kept.
pub(crate) fn merge(idp: &IdentityProvider, prev: Option<&Tokens>, granted: Granted, now: DateTime<Utc>) -> Tokens {
    let rotated = granted.refresh_token.is_some();
    let life = granted.expires_in.unwrap_or(ASSUMED_LIFE);
    let delegated = idp.flow.delegated();
    Tokens {
        version: VERSION,
        token_url: idp.token_url.clone(),
        client_id: idp.client_id.clone(),
        flow: idp.flow,
        access_token: Some(granted.access_token),
        access_obtained_at: Some(now),
        access_expires_at: Some(now + chrono::Duration::from_std(life).unwrap_or_default()),
        refresh_token: granted.refresh_token.or_else(|| prev.and_then(|p| p.refresh_token.clone())),
        refresh_obtained_at: if rotated { Some(now) } else { prev.and_then(|p| p.refresh_obtained_at) },
        refresh_used_at: delegated.then_some(now),
        refresh_expires_at: if rotated {
            granted.refresh_expires_in.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now + d)
        } else {
            prev.and_then(|p| p.refresh_expires_at)
        },
        scope: granted.scope.or_else(|| prev.and_then(|p| p.scope.clone())),
    }
}

/// When the refresh token expires: what the provider stated, or its rule for unused tokens.
pub(crate) fn refresh_expiry(t: &Tokens, life: RefreshLife) -> Option<DateTime<Utc>> {
    t.refresh_token.as_ref()?;
    let unused = match life {
        RefreshLife::UnusedDays(days) => {
            t.refresh_used_at.or(t.refresh_obtained_at).map(|u| u + chrono::Duration::days(days.into()))
        }
        RefreshLife::Unknown => None,
    };
    [t.refresh_expires_at, unused].into_iter().flatten().min()
}

/// The margin kept before expiry: a quarter of the token's life, at most five minutes.
pub(crate) fn margin(life: chrono::Duration) -> chrono::Duration {
    (life / 4).min(chrono::Duration::minutes(5))
}

fn usable(st: &State, need: Need, now: DateTime<Utc>) -> Option<Fresh> {
    if st.unsaved {
        return None;
    }
    let t = st.tokens.as_ref()?;
    let token = t.access_token.as_ref()?;
    if st.refused.as_ref() == Some(token) {
        return None;
    }
    let (obtained, expires) = (t.access_obtained_at?, t.access_expires_at?);
    let life = (expires - obtained).max(chrono::Duration::seconds(1));
    let left = expires - now;
    let keep = margin(life);
    let good = match need {
        Need::Use => left > keep,
        Need::Login => left > keep && left >= life / 2,
    };
    good.then(|| Fresh { token: token.clone(), expires_at: expires, renew_at: expires - keep })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(obtained: DateTime<Utc>, life_s: i64) -> Tokens {
        Tokens {
            version: VERSION,
            token_url: "https://idp/token".into(),
            client_id: "c".into(),
            flow: Flow::AuthorizationCode,
            access_token: Some(Token::new("a")),
            access_obtained_at: Some(obtained),
            access_expires_at: Some(obtained + chrono::Duration::seconds(life_s)),
            refresh_token: Some(Token::new("r")),
            refresh_obtained_at: Some(obtained),
            refresh_used_at: Some(obtained),
            refresh_expires_at: None,
            scope: None,
        }
    }

    #[test]
    fn a_login_wants_half_the_life_and_a_send_only_the_margin() {
        let t0 = Utc::now();
        let st = State { tokens: Some(tokens(t0, 3600)), ..State::default() };
        let at = |min: i64| t0 + chrono::Duration::minutes(min);
        assert!(usable(&st, Need::Login, at(10)).is_some());
        assert!(usable(&st, Need::Login, at(31)).is_none(), "less than half left: a new token for a session");
        assert!(usable(&st, Need::Use, at(54)).is_some());
        assert!(usable(&st, Need::Use, at(56)).is_none(), "inside the 5-minute margin");
        let fresh = usable(&st, Need::Use, at(1)).unwrap();
        assert_eq!(fresh.renew_at, t0 + chrono::Duration::minutes(55));
        let short = State { tokens: Some(tokens(t0, 4)), ..State::default() };
        assert!(usable(&short, Need::Use, t0 + chrono::Duration::milliseconds(2900)).is_some());
        assert!(usable(&short, Need::Use, t0 + chrono::Duration::milliseconds(3100)).is_none(), "a quarter of 4 s");
    }

    #[test]
    fn a_refused_or_unsaved_token_is_not_used() {
        let t0 = Utc::now();
        let mut st = State { tokens: Some(tokens(t0, 3600)), refused: Some(Token::new("a")), ..State::default() };
        assert!(usable(&st, Need::Use, t0).is_none());
        st.refused = None;
        st.unsaved = true;
        assert!(usable(&st, Need::Use, t0).is_none());
    }

    #[test]
    fn microsoft_refresh_tokens_expire_90_days_after_their_last_use() {
        let t0 = Utc::now();
        let t = tokens(t0, 3600);
        assert_eq!(refresh_expiry(&t, RefreshLife::UnusedDays(90)), Some(t0 + chrono::Duration::days(90)));
        let stated = Tokens { refresh_expires_at: Some(t0 + chrono::Duration::days(7)), ..t.clone() };
        assert_eq!(refresh_expiry(&stated, RefreshLife::UnusedDays(182)), Some(t0 + chrono::Duration::days(7)));
        assert_eq!(refresh_expiry(&t, RefreshLife::Unknown), None);
    }
}
