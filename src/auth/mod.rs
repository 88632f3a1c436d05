//! Credentials for IMAP and SMTP: a password, or an OAuth2 access token, and the state of
//! authentication as something of its own that is never silent.
//!
//! | file | what |
//! |---|---|
//! | `flows.rs` | the OAuth2 grants, through the `oauth2` crate |
//! | `http.rs` | the HTTPS client under them (hyper over rustls) |
//! | `tokens.rs` | the token file: 0600, atomic, fsynced, locked during a refresh |
//! | `source.rs` | access tokens while running: ahead of expiry, rotation saved first, capped backoff |
//! | `sasl.rs` | XOAUTH2 and OAUTHBEARER, and the IMAP authenticator |
//! | `state.rs` | the auth state per part, logged once per change, kept by the store |
//! | `failure.rs` | why it failed, with the provider's codes and what to do |
//! | `login.rs` | `mailroom auth login`: the one-time sign-in of the delegated flows |
//!
//! May: talk to the identity provider, read and write the token directory, read the password
//! and client secret files. May not: log a token, a secret or a password, at any level.
//! Transports ask [`Auth`] for a [`Credential`] before every login, and report what the server
//! said ([`Auth::accepted`], [`Auth::refused`]).

mod failure;
mod flows;
mod http;
pub mod login;
mod sasl;
mod source;
mod state;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub use failure::{AuthFailure, aadsts_code};
pub use flows::IdentityProvider;
pub use sasl::{BearerAuthenticator, Mechanism, challenge_status, oauthbearer, xoauth2};
pub use source::Need;
pub use state::{AuthJournal, AuthPart, AuthRecord};
pub use tokens::{Token, TokenFile, Tokens};

use crate::config::{AuthMethod, Config, ConfigError, Secret};
use source::TokenSource;
use state::Recorder;

/// What a transport logs in with.
#[derive(Debug, Clone)]
pub enum Credential {
    Password { user: String, password: Secret },
    Bearer(Bearer),
}

/// An access token for a user's mailbox.
#[derive(Debug, Clone)]
pub struct Bearer {
    pub user: String,
    pub token: Token,
    pub expires_at: DateTime<Utc>,
    /// A session opened with it should be renewed by then.
    pub renew_at: DateTime<Utc>,
}

/// The credentials of one configuration, shared by every transport of the process (cheap to
/// clone): one token source, so however many folders and senders want a token, the identity
/// provider sees one refresh at a time and one backoff.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<Config>,
    source: Option<TokenSource>,
    recorder: Arc<Recorder>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("oauth2", &self.inner.source.as_ref().map(|s| s.detail())).finish_non_exhaustive()
    }
}

impl Auth {
    /// From a validated configuration. Reads the client secret now; passwords are read at
    /// each login (a changed password file needs no restart).
    pub fn from_config(cfg: &Config) -> Result<Auth, ConfigError> {
        let warning_days = cfg.oauth2.as_ref().map_or(14, |o| o.refresh_warning_days);
        let recorder = Arc::new(Recorder::new(warning_days));
        let source = match (&cfg.oauth2, cfg.uses_oauth2()) {
            (Some(o), true) => {
                let idp = IdentityProvider::new(o, o.client_secret()?, Some(&cfg.imap.username))?;
                Some(TokenSource::new(idp, TokenFile::new(&cfg.token_dir()), Arc::clone(&recorder)))
            }
            (None, true) => {
                return Err(ConfigError::Invalid {
                    key: "oauth2".into(),
                    message: "missing: imap.auth or smtp.auth is \"oauth2\"".into(),
                });
            }
            _ => None,
        };
        Ok(Auth { inner: Arc::new(Inner { cfg: Arc::new(cfg.clone()), source, recorder }) })
    }

    /// Keeps the auth state in `journal` (the store) from now on.
    pub fn with_journal(self, journal: Arc<dyn AuthJournal>) -> Auth {
        let mut used = vec![AuthPart::Imap, AuthPart::Smtp];
        if self.inner.source.is_some() {
            used.push(AuthPart::Provider);
        }
        self.inner.recorder.attach(journal, &used);
        self
    }

    /// Whether tokens come from an identity provider.
    pub fn uses_oauth2(&self) -> bool {
        self.inner.source.is_some()
    }

    /// `microsoft365 client_credentials`, when OAuth2 is used.
    pub fn oauth2_detail(&self) -> Option<String> {
        self.inner.source.as_ref().map(|s| s.detail())
    }

    /// The identity provider, when OAuth2 is used.
    pub fn identity_provider(&self) -> Option<&IdentityProvider> {
        self.inner.source.as_ref().map(|s| s.idp())
    }

    /// The token file, when OAuth2 is used.
    pub fn token_file(&self) -> Option<&TokenFile> {
        self.inner.source.as_ref().map(|s| s.file())
    }

    /// What to log in to `part` (IMAP or SMTP) with, fetched now: an IMAP login gets a token
    /// with at least half its life left, so the session lasts.
    pub async fn credential(&self, part: AuthPart) -> Result<Credential, AuthFailure> {
        let cfg = &self.inner.cfg;
        let (user, method, password) = match part {
            AuthPart::Imap => (&cfg.imap.username, cfg.imap.auth, cfg.imap_password()),
            AuthPart::Smtp => (&cfg.smtp.username, cfg.smtp.auth, cfg.smtp_password()),
            AuthPart::Provider => {
                return Err(AuthFailure::needs_human(
                    "internal",
                    "no credential for the identity provider",
                    "report a bug",
                ));
            }
        };
        match method {
            AuthMethod::Password => {
                let password = password
                    .map_err(|e| AuthFailure::needs_human("password", e.to_string(), "fix the password or its file"))?;
                Ok(Credential::Password { user: user.clone(), password })
            }
            AuthMethod::Oauth2 => {
                let Some(source) = &self.inner.source else {
                    return Err(AuthFailure::needs_human("config", "no [oauth2] section", "add one"));
                };
                let need = if part == AuthPart::Imap { Need::Login } else { Need::Use };
                let fresh = source.bearer(need).await?;
                Ok(Credential::Bearer(Bearer {
                    user: user.clone(),
                    token: fresh.token,
                    expires_at: fresh.expires_at,
                    renew_at: fresh.renew_at,
                }))
            }
        }
    }

    /// The server took the credential.
    pub fn accepted(&self, part: AuthPart, mechanism: &str) {
        self.inner.recorder.ok(part, mechanism, None);
    }

    /// The server refused the credential: recorded, and a refused token is never offered again.
    pub async fn refused(&self, part: AuthPart, credential: &Credential, failure: &AuthFailure) {
        if let (Credential::Bearer(b), Some(source)) = (credential, &self.inner.source) {
            source.refused(&b.token).await;
        }
        self.inner.recorder.failing(part, failure);
    }

    /// Authentication failed before reaching the server (no token): recorded for `part` too,
    /// so the login that could not happen says why.
    pub fn could_not_log_in(&self, part: AuthPart, failure: &AuthFailure) {
        self.inner.recorder.failing(part, failure);
    }

    /// The state of every part, as this process knows it.
    pub fn records(&self) -> Vec<AuthRecord> {
        self.inner.recorder.records()
    }

    /// When the refresh token is known to expire.
    pub async fn refresh_expires_at(&self) -> Option<DateTime<Utc>> {
        match &self.inner.source {
            Some(s) => s.refresh_expires_at().await,
            None => None,
        }
    }

    /// Keeps the token fresh while the daemon runs, whatever the transports do: renewed ahead of
    /// expiry, so a refresh token is used (Microsoft's expire after 90 days unused) and a
    /// failure is noticed and retried with backoff even while no mail comes. Returns at `stop`.
    pub async fn maintain(&self, mut stop: watch::Receiver<bool>) {
        let Some(source) = &self.inner.source else { return };
        while !*stop.borrow() {
            let wait = match source.bearer(Need::Use).await {
                Ok(fresh) => (fresh.renew_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(100),
                // While failing, look again soon: a new login in the token file is taken at once.
                Err(_) => source.retry_in().await.min(Duration::from_secs(2)),
            };
            let wait = wait.clamp(Duration::from_millis(200), Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// A failure to authenticate at a server, from what it answered.
pub fn server_refusal(part: AuthPart, credential: &Credential, answer: &str) -> AuthFailure {
    let answer: String = answer.chars().filter(|c| !c.is_control()).take(300).collect();
    match credential {
        Credential::Password { user, .. } => AuthFailure::needs_human(
            "refused",
            format!("the server refused the password for {user} ({answer})"),
            match part {
                AuthPart::Smtp => "check smtp.username and smtp.password_file",
                _ => "check imap.username and imap.password_file",
            },
        ),
        Credential::Bearer(b) => AuthFailure::needs_human(
            "refused",
            format!("the server refused the access token for {} ({answer})", b.user),
            "the identity provider gave a token the mail server does not accept: check that the token is \
             for this mailbox (Microsoft 365 app-only: New-ServicePrincipal with the Enterprise Application's \
             object id, Add-MailboxPermission; see the README)",
        ),
    }
}
