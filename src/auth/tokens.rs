//! The token file: `<token_dir>/oauth2-tokens.json`, mode 0600, the only place a token is
//! written down.
//!
//! Written atomically: a new file beside it (created 0600, never wider), written, fsynced,
//! renamed over the old one, and the directory fsynced, so a crash leaves the old tokens or the
//! new ones, never a mix or nothing. A refresh takes `oauth2-tokens.lock` for the whole
//! exchange with the identity provider, so two mailroom processes (the daemon and
//! `mailroom digest --now`) never spend the same rotating refresh token twice; the second reads
//! what the first saved. Run as root (as `mailroom auth login` may be), the file takes the owner
//! of its directory, so the service's user can read it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::provider::Flow;

/// A token's text. Its `Debug` says nothing about it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Token {
        Token(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// What the file holds.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub version: u32,
    /// The token endpoint and client the tokens came from: tokens of another client are not used.
    pub token_url: String,
    pub client_id: String,
    pub flow: Flow,
    pub access_token: Option<Token>,
    pub access_obtained_at: Option<DateTime<Utc>>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_token: Option<Token>,
    /// When this refresh token was issued (a rotation issues a new one).
    pub refresh_obtained_at: Option<DateTime<Utc>>,
    /// When it was last used to get an access token (Microsoft's 90 days count from there).
    pub refresh_used_at: Option<DateTime<Utc>>,
    /// An expiry the identity provider stated (`refresh_token_expires_in`).
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The scopes granted, as the token endpoint said.
    pub scope: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("flow", &self.flow)
            .field("access_token", &self.access_token.as_ref().map(|_| "[redacted]"))
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish_non_exhaustive()
    }
}

pub(super) const VERSION: u32 = 1;
const FILE_NAME: &str = "oauth2-tokens.json";
const LOCK_NAME: &str = "oauth2-tokens.lock";

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {message}")]
    Read { path: String, message: String },
    #[error("the token file {path} is damaged ({message}): run `mailroom auth login` again")]
    Damaged { path: String, message: String },
    #[error("cannot save the token file {path}: {message}")]
    Write { path: String, message: String },
    #[error("the token file {path} is locked by another mailroom for more than {seconds} s")]
    Busy { path: String, seconds: u64 },
}

/// What identifies one version of the file on disk, to notice that another process wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The token file of one configuration.
#[derive(Debug, Clone)]
pub struct TokenFile {
    dir: PathBuf,
}

/// Held while a refresh is under way; dropping it releases the lock.
#[derive(Debug)]
pub struct RefreshLock {
    _file: File,
}

impl TokenFile {
    pub fn new(dir: &Path) -> TokenFile {
        TokenFile { dir: dir.to_owned() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn shown(&self) -> String {
        self.path().display().to_string()
    }

    /// The file's current stamp, `None` when it does not exist.
    pub fn stamp(&self) -> Option<Stamp> {
        let m = std::fs::metadata(self.path()).ok()?;
        Some(Stamp { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
    }

    /// The tokens, `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<Tokens>, TokenFileError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TokenFileError::Read { path: self.shown(), message: e.to_string() }),
        };
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the token file was readable by others; set back to 0600");
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        let tokens: Tokens = serde_json::from_str(&text).map_err(|e| TokenFileError::Damaged {
            path: self.shown(),
            // Only where it broke: serde's message could quote a piece of a token.
            message: format!("line {} column {}", e.line(), e.column()),
        })?;
        if tokens.version != VERSION {
            return Err(TokenFileError::Damaged {
                path: self.shown(),
                message: format!("version {} is not {VERSION}", tokens.version),
            });
        }
        Ok(Some(tokens))
    }

    /// Writes the tokens durably (see the module's comment). Blocking: call it off the runtime.
    pub fn save(&self, tokens: &Tokens) -> Result<(), TokenFileError> {
        let write_err = |e: std::io::Error| TokenFileError::Write { path: self.shown(), message: e.to_string() };
        let json = serde_json::to_vec_pretty(tokens)
            .map_err(|e| TokenFileError::Write { path: self.shown(), message: e.to_string() })?;
        write_private(&self.path(), &json).map_err(write_err)
    }

    /// Takes the refresh lock, waiting at most `wait` for another process to finish its refresh.
    pub async fn lock(&self, wait: Duration) -> Result<RefreshLock, TokenFileError> {
        let path = self.dir.join(LOCK_NAME);
        let busy = || TokenFileError::Busy { path: path.display().to_string(), seconds: wait.as_secs() };
        ensure_dir(&self.dir).map_err(|e| TokenFileError::Write { path: self.shown(), message: e.to_string() })?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| TokenFileError::Write { path: path.display().to_string(), message: e.to_string() })?;
        follow_dir_owner(&file, &self.dir);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(RefreshLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(busy()),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(TokenFileError::Write { path: path.display().to_string(), message: e.to_string() });
                }
            }
        }
    }
}

/// Creates the directory (0700) if needed, owned like its parent.
fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if let (Some(parent), Ok(created)) = (dir.parent(), File::open(dir)) {
        follow_dir_owner(&created, parent);
    }
    Ok(())
}

/// Gives a file we created the owner of `dir`, when they differ (only root can; otherwise
/// nothing changes, which is what a non-root process wants anyway).
fn follow_dir_owner(file: &File, dir: &Path) {
    if let (Ok(mine), Ok(theirs)) = (file.metadata(), std::fs::metadata(dir))
        && (mine.uid() != theirs.uid() || mine.gid() != theirs.gid())
    {
        let _ = std::os::unix::fs::fchown(file, Some(theirs.uid()), Some(theirs.gid()));
    }
}

/// Replaces `path` with `bytes`, atomically and durably, readable by the owner only.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    ensure_dir(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of a crash of this very pid (after a reboot) must not make create_new fail.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        follow_dir_owner(&f, dir);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tokens {
        Tokens {
            version: VERSION,
            token_url: "https://idp.example.test/token".into(),
            client_id: "mailroom".into(),
            flow: Flow::AuthorizationCode,
            access_token: Some(Token::new("access-secret-1")),
            access_obtained_at: Some(Utc::now()),
            access_expires_at: Some(Utc::now()),
            refresh_token: Some(Token::new("refresh-secret-1")),
            refresh_obtained_at: Some(Utc::now()),
            refresh_used_at: None,
            refresh_expires_at: None,
            scope: Some("mail".into()),
        }
    }

    #[test]
    fn saved_tokens_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(&dir.path().join("state"));
        assert!(file.load().unwrap().is_none());
        let tokens = sample();
        file.save(&tokens).unwrap();
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(file.load().unwrap().unwrap(), tokens);
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("state")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)], "no temporary file left behind");
    }

    #[test]
    fn debug_never_shows_a_token() {
        let debug = format!("{:?}", sample());
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn a_damaged_file_is_reported_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path());
        std::fs::write(file.path(), "{\"version\": 1, \"access_token\": \"abc-secret").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("damaged") && !err.contains("secret"), "{err}");
    }

    #[tokio::test]
    async fn a_second_refresher_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path());
        let held = file.lock(Duration::from_secs(1)).await.unwrap();
        let err = file.lock(Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, TokenFileError::Busy { .. }), "{err}");
        drop(held);
        file.lock(Duration::from_millis(100)).await.unwrap();
    }
}
