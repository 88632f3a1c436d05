//! Configuration: one serde tree, read from a TOML file and then from `MAILROOM__SECTION__KEY`
//! environment variables, validated once at start.
//!
//! Every struct carries its defaults, so an admin writes only what differs. Unknown keys are
//! errors (a typo must not silently fall back to a default). Relative paths are resolved against
//! the config file's directory, except `password_file`, which is resolved against
//! `$CREDENTIALS_DIRECTORY` when systemd provides one. Secrets never appear in `Debug` output.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;

use crate::lang::{Lang, PostingLang};

/// The default place an installed mailroom reads its configuration from.
pub const DEFAULT_PATH: &str = "/etc/mailroom/mailroom.toml";

/// A configuration problem, naming the key (or file) at fault. The CLI exits 2 on it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

/// A password or other secret: readable by the code that needs it, redacted everywhere else.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// How a connection is secured. There is deliberately no plaintext mode: a password never
/// crosses the wire in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAP 993, SMTP submissions 465).
    Implicit,
    /// Plain greeting, then STARTTLS before anything else (IMAP 143, SMTP submission 587).
    Starttls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub imap: ImapConfig,
    pub smtp: SmtpConfig,
    pub identity: Identity,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub replies: Replies,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub digest: DigestConfig,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub publish: Publish,
    #[serde(default)]
    pub postings: Vec<Posting>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: String,
    #[serde(default = "defaults::imap_port")]
    pub port: u16,
    #[serde(default = "defaults::tls")]
    pub tls: TlsMode,
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) trusted besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "defaults::folder")]
    pub folder: String,
    /// More folders of the same account to watch, each with its own connection.
    #[serde(default)]
    pub also_watch: Vec<String>,
    /// Keyword set on a message once it is committed, so people see what mailroom has handled.
    #[serde(default = "defaults::filed_keyword")]
    pub filed_keyword: String,
    /// Use IMAP IDLE when the server offers it (new mail is seen at once); otherwise poll.
    #[serde(default = "defaults::yes")]
    pub idle: bool,
    /// How often `mailroom run` looks for new mail when IDLE is off or not offered.
    #[serde(default = "defaults::poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// Deadline for connecting and for every single IMAP command.
    #[serde(default = "defaults::timeout_secs")]
    pub timeout_secs: u64,
    /// A fetch brings at most this many messages...
    #[serde(default = "defaults::batch_messages")]
    pub batch_messages: usize,
    /// ...and at most this many bytes (one larger message still comes alone).
    #[serde(default = "defaults::batch_bytes")]
    pub batch_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "defaults::smtp_port")]
    pub port: u16,
    #[serde(default = "defaults::tls")]
    pub tls: TlsMode,
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "defaults::timeout_secs")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The address replies come from (usually the contact address itself).
    pub from: String,
    /// The organisation's name, shown as the sender's name and in the templates.
    pub organisation: String,
    /// The recruiting team: digest recipients. Mail from these addresses is never acknowledged.
    #[serde(default)]
    pub team: Vec<String>,
    /// The organisation's time zone (IANA name): times in replies and the digest's schedule.
    #[serde(default = "defaults::timezone")]
    pub timezone: String,
}

impl Identity {
    /// The validated time zone (UTC if it were invalid, which validation prevents).
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub data_dir: PathBuf,
    pub state_path: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            data_dir: PathBuf::from("/var/lib/mailroom/applications"),
            state_path: PathBuf::from("/var/lib/mailroom/state.sqlite3"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replies {
    /// Master switch for acknowledgements. Filing happens either way.
    pub enabled: bool,
    /// Acknowledge messages that were already in the mailbox before mailroom's first start?
    /// Off by default: nobody should get a surprise answer to last year's application.
    pub acknowledge_backlog: bool,
    /// Directory with `fr/…` and `en/…` templates overriding the built-in ones. Empty: built-in.
    pub templates_dir: Option<PathBuf>,
    /// Language used when the posting does not say (`fr` or `en`).
    pub default_language: Lang,
    /// Privacy notice appended to every acknowledgement (who keeps the data, why, how long).
    pub privacy_notice: String,
    /// An address answered within this many days is not answered again (except to confirm that
    /// a file we said was incomplete is now complete).
    pub once_per_days: u32,
    /// At most this many replies in any hour, all addresses together: a circuit breaker against
    /// loops and floods. What it holds back is recorded and reported in the digest.
    pub max_per_hour: u64,
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            enabled: true,
            acknowledge_backlog: false,
            templates_dir: None,
            default_language: Lang::Fr,
            privacy_notice: String::new(),
            once_per_days: 1,
            max_per_hour: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// Send the team a digest on the schedule (`mailroom run`); `mailroom digest` works either way.
    pub enabled: bool,
    /// Cron expression, in `identity.timezone`: 5 fields (`min hour day month weekday`) or 6
    /// (seconds first). Default: every day at 08:00.
    pub schedule: String,
    /// Who gets it. Empty: `identity.team`.
    pub recipients: Vec<String>,
    /// `fr` or `en`.
    pub language: Lang,
    /// The subject, a template (`{{ new_count }}`, `{{ window.start }}`, `{{ window.end }}`,
    /// `{{ organisation }}`). Empty: the built-in one for the language.
    pub subject: String,
    /// A window with nothing new: "send" a short "nothing new" digest, or "skip" it.
    pub when_empty: WhenEmpty,
    /// Candidates still missing a document this many days after applying are listed as needing
    /// a human.
    pub stale_after_days: u32,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            enabled: true,
            schedule: "0 8 * * *".into(),
            recipients: Vec::new(),
            language: Lang::Fr,
            subject: String::new(),
            when_empty: WhenEmpty::Send,
            stale_after_days: 7,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenEmpty {
    Send,
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Larger messages are quarantined from their announced size, without being downloaded.
    pub max_message_bytes: u64,
    pub max_parts: usize,
    pub max_depth: usize,
    pub max_document_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 50 * 1024 * 1024,
            max_parts: 200,
            max_depth: 10,
            max_document_bytes: 40 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter: `info`, `mailroom=debug`, …  `RUST_LOG` wins when set.
    pub level: String,
    /// `auto` (text; colours only on a terminal), `text` or `json`.
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log { level: "info".into(), format: LogFormat::Auto }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

/// Publishing each candidate's folder to the team's cloud (Nextcloud, ownCloud, any WebDAV
/// server). Off while `url` is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Publish {
    /// The WebDAV folder of the account, with `https://`. Nextcloud:
    /// `https://HOST/remote.php/dav/files/USER/`. Empty: publishing is off.
    pub url: String,
    /// The account's login name.
    pub username: String,
    /// An app password (Nextcloud: Personal settings → Security → Devices & sessions). Set one of
    /// `password` and `password_file`.
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// The folder under `url` that receives one folder per posting (created if missing).
    pub root: String,
    /// A link to a candidate's folder for the digest: `{posting}` and `{folder}` are replaced by
    /// the remote names, URL-encoded. Empty: no links.
    pub web_url: String,
    /// What a removal does to Nextcloud's trash bin: `empty` (erase the removed folder from the
    /// trash bin too) or `keep`.
    pub nextcloud_trash: TrashPolicy,
    /// The trash bin's WebDAV address. Empty: derived from `url`
    /// (`…/remote.php/dav/trashbin/USER/trash/`).
    pub trash_url: String,
    /// Deadline for each request, the upload of one file included.
    pub timeout_secs: u64,
    /// The digest lists publishing as needing a human when an item has waited this long.
    pub stuck_after_minutes: u64,
}

impl Default for Publish {
    fn default() -> Self {
        Publish {
            url: String::new(),
            username: String::new(),
            password: None,
            password_file: None,
            ca_file: None,
            root: "Recrutement".into(),
            web_url: String::new(),
            nextcloud_trash: TrashPolicy::Empty,
            trash_url: String::new(),
            timeout_secs: 300,
            stuck_after_minutes: 60,
        }
    }
}

impl Publish {
    /// Publishing is configured.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// The `root` folder as path components.
    pub fn root_components(&self) -> Vec<String> {
        self.root.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect()
    }

    /// The trash bin to empty after a removal: `trash_url`, or the Nextcloud trash bin of the
    /// account in `url`; `None` with `nextcloud_trash = "keep"`.
    pub fn trash(&self) -> Option<String> {
        if self.nextcloud_trash == TrashPolicy::Keep {
            return None;
        }
        if !self.trash_url.trim().is_empty() {
            return Some(with_slash(self.trash_url.trim()));
        }
        let (base, rest) = self.url.split_once("/remote.php/dav/files/")?;
        let user = rest.split('/').next().filter(|u| !u.is_empty())?;
        Some(format!("{base}/remote.php/dav/trashbin/{user}/trash/"))
    }

    /// The app password, from the config or its file.
    pub fn password(&self) -> Result<Secret, ConfigError> {
        password(&self.password, &self.password_file, "publish")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        let url = self.url.trim();
        let Some(after) = url.strip_prefix("https://") else {
            return Err(invalid(
                "publish.url",
                format!("{url:?} must start with https:// (there is no plaintext mode)"),
            ));
        };
        if after.split('/').next().is_none_or(str::is_empty) {
            return Err(invalid("publish.url", format!("{url:?} has no host")));
        }
        if self.username.trim().is_empty() {
            return Err(invalid("publish.username", "must not be empty when publish.url is set"));
        }
        match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "publish.password",
                    "set either publish.password or publish.password_file, not both",
                ));
            }
            (None, None) => {
                return Err(invalid("publish.password", "missing: set publish.password or publish.password_file"));
            }
            (None, Some(file)) => {
                read_password_file(file).map_err(|m| invalid("publish.password_file", m))?;
            }
            (Some(_), None) => {}
        }
        if let Some(ca) = &self.ca_file {
            crate::tls::load_ca_file(ca).map_err(|e| invalid("publish.ca_file", e.to_string()))?;
        }
        let root = self.root_components();
        if root.is_empty() {
            return Err(invalid("publish.root", "must name a folder (e.g. \"Recrutement\")"));
        }
        if root.iter().any(|c| c == "." || c == ".." || c.chars().any(char::is_control)) {
            return Err(invalid("publish.root", format!("{:?}: no \".\", \"..\" or control characters", self.root)));
        }
        if !self.web_url.is_empty() {
            let w = &self.web_url;
            if !(w.starts_with("https://") || w.starts_with("http://")) {
                return Err(invalid("publish.web_url", format!("{w:?} must start with https://")));
            }
            let unknown = w
                .split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}'))
                .map(|(name, _)| name)
                .find(|name| !["posting", "folder"].contains(name));
            if let Some(name) = unknown {
                return Err(invalid(
                    "publish.web_url",
                    format!("unknown placeholder {{{name}}}: use {{posting}} and {{folder}}"),
                ));
            }
        }
        if self.nextcloud_trash == TrashPolicy::Empty && self.trash().is_none() {
            return Err(invalid(
                "publish.nextcloud_trash",
                "\"empty\" needs the trash bin's address: use a Nextcloud publish.url (https://HOST/remote.php/dav/files/USER/), \
                 set publish.trash_url, or set \"keep\" for a server without a trash bin",
            ));
        }
        for (key, v) in
            [("publish.timeout_secs", self.timeout_secs), ("publish.stuck_after_minutes", self.stuck_after_minutes)]
        {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') { url.to_owned() } else { format!("{url}/") }
}

/// What a removal does to Nextcloud's trash bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrashPolicy {
    /// Delete the removed folder's entry from the trash bin as well: the erasure is an erasure.
    Empty,
    /// Leave it there (Nextcloud expires it after its retention, 30 days by default).
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posting {
    /// Folder name and stable identifier: lower-case letters, digits and `-`.
    pub slug: String,
    pub title: String,
    /// `fr`, `en`, or `auto` (the candidate's language, told from what they wrote).
    #[serde(default = "defaults::language")]
    pub language: PostingLang,
    /// Recipient addresses that mean this posting (`contact+stage@…` works for tagged addresses).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Words in the subject that mean this posting (case and accents ignored).
    #[serde(default)]
    pub subject_keywords: Vec<String>,
    /// Applications that match nothing go to the posting marked default (or to the first one).
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub closing_date: Option<NaiveDate>,
}

mod defaults {
    use super::TlsMode;
    pub(super) fn imap_port() -> u16 {
        993
    }
    pub(super) fn smtp_port() -> u16 {
        465
    }
    pub(super) fn tls() -> TlsMode {
        TlsMode::Implicit
    }
    pub(super) fn folder() -> String {
        "INBOX".into()
    }
    pub(super) fn filed_keyword() -> String {
        "$MailroomFiled".into()
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn poll_interval_secs() -> u64 {
        60
    }
    pub(super) fn timeout_secs() -> u64 {
        60
    }
    pub(super) fn batch_messages() -> usize {
        100
    }
    pub(super) fn batch_bytes() -> u64 {
        32 * 1024 * 1024
    }
    pub(super) fn language() -> super::PostingLang {
        super::PostingLang::Fr
    }
    pub(super) fn timezone() -> String {
        "Europe/Paris".into()
    }
}

impl Config {
    /// Reads the file, applies the environment, resolves paths and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`], with the environment given (tests do not touch the process's).
    pub fn load_with_env(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let load_err = |message: String| ConfigError::Load { path: path.to_owned(), message };
        if !path.is_file() {
            return Err(load_err("no such file (give another with --config FILE)".into()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| load_err(e.to_string()))?;
        Self::from_toml(&text, path.parent().unwrap_or(Path::new(".")), env).map_err(|e| match e {
            ConfigError::Load { message, .. } => load_err(message),
            other => other,
        })
    }

    /// Parses TOML text (relative paths against `base`), applies the environment, validates.
    pub fn from_toml(
        text: &str,
        base: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let load_err = |message: String| ConfigError::Load { path: base.to_owned(), message };
        let overrides: config::Map<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with("MAILROOM__")).collect();
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("MAILROOM")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("identity.team")
                    .with_list_parse_key("imap.also_watch")
                    .with_list_parse_key("digest.recipients")
                    .try_parsing(true)
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let mut cfg: Config = raw.try_deserialize().map_err(|e| load_err(dotted_keys(&e.to_string())))?;
        cfg.resolve_paths(base, std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from));
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path, credentials: Option<PathBuf>) {
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let secret_rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = credentials.as_deref().unwrap_or(base).join(&*p);
            }
        };
        rel(&mut self.storage.data_dir);
        rel(&mut self.storage.state_path);
        for p in [&mut self.imap.ca_file, &mut self.smtp.ca_file, &mut self.replies.templates_dir].into_iter().flatten()
        {
            rel(p);
        }
        for p in [&mut self.imap.password_file, &mut self.smtp.password_file].into_iter().flatten() {
            secret_rel(p);
        }
        if let Some(p) = &mut self.publish.ca_file {
            rel(p);
        }
        if let Some(p) = &mut self.publish.password_file {
            secret_rel(p);
        }
    }

    /// Checks what serde cannot: values in range, files present, addresses well formed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (section, host, port, user, pw, pw_file, ca) in [
            (
                "imap",
                &self.imap.host,
                self.imap.port,
                &self.imap.username,
                &self.imap.password,
                &self.imap.password_file,
                &self.imap.ca_file,
            ),
            (
                "smtp",
                &self.smtp.host,
                self.smtp.port,
                &self.smtp.username,
                &self.smtp.password,
                &self.smtp.password_file,
                &self.smtp.ca_file,
            ),
        ] {
            if host.trim().is_empty() {
                return Err(invalid(format!("{section}.host"), "must not be empty"));
            }
            if port == 0 {
                return Err(invalid(format!("{section}.port"), "must be between 1 and 65535"));
            }
            if user.trim().is_empty() {
                return Err(invalid(format!("{section}.username"), "must not be empty"));
            }
            match (pw, pw_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        format!("{section}.password"),
                        format!("set either {section}.password or {section}.password_file, not both"),
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        format!("{section}.password"),
                        format!("missing: set {section}.password or {section}.password_file"),
                    ));
                }
                (None, Some(file)) => {
                    read_password_file(file).map_err(|m| invalid(format!("{section}.password_file"), m))?;
                }
                (Some(_), None) => {}
            }
            if let Some(ca) = ca {
                crate::tls::load_ca_file(ca).map_err(|e| invalid(format!("{section}.ca_file"), e.to_string()))?;
            }
        }
        if self.imap.folder.trim().is_empty() {
            return Err(invalid("imap.folder", "must not be empty"));
        }
        for (i, f) in self.imap.also_watch.iter().enumerate() {
            if f.trim().is_empty() || *f == self.imap.folder || self.imap.also_watch[..i].contains(f) {
                return Err(invalid(format!("imap.also_watch[{i}]"), format!("{f:?} is empty or listed twice")));
            }
        }
        if !self.imap.filed_keyword.starts_with('$')
            || !self.imap.filed_keyword[1..].chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid("imap.filed_keyword", "must look like $Keyword (ASCII letters, digits, _)"));
        }
        for (key, v) in [
            ("imap.poll_interval_secs", self.imap.poll_interval_secs),
            ("imap.timeout_secs", self.imap.timeout_secs),
            ("smtp.timeout_secs", self.smtp.timeout_secs),
            ("imap.batch_messages", self.imap.batch_messages as u64),
            ("imap.batch_bytes", self.imap.batch_bytes),
            ("limits.max_message_bytes", self.limits.max_message_bytes),
            ("limits.max_parts", self.limits.max_parts as u64),
            ("limits.max_depth", self.limits.max_depth as u64),
            ("limits.max_document_bytes", self.limits.max_document_bytes),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        parse_address(&self.identity.from).map_err(|m| invalid("identity.from", m))?;
        if self.identity.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(
                "identity.timezone",
                format!("{:?} is not a time zone name (e.g. Europe/Paris, UTC)", self.identity.timezone),
            ));
        }
        crate::schedule::Schedule::parse(&self.digest.schedule, self.identity.timezone())
            .map_err(|m| invalid("digest.schedule", m))?;
        for (i, a) in self.digest.recipients.iter().enumerate() {
            parse_address(a).map_err(|m| invalid(format!("digest.recipients[{i}]"), m))?;
        }
        if self.replies.max_per_hour == 0 {
            return Err(invalid(
                "replies.max_per_hour",
                "must be greater than 0 (use replies.enabled = false to stop replies)",
            ));
        }
        if self.identity.organisation.trim().is_empty() {
            return Err(invalid("identity.organisation", "must not be empty"));
        }
        for (i, a) in self.identity.team.iter().enumerate() {
            parse_address(a).map_err(|m| invalid(format!("identity.team[{i}]"), m))?;
        }
        if let Some(dir) = &self.replies.templates_dir
            && !dir.is_dir()
        {
            return Err(invalid("replies.templates_dir", format!("{} is not a directory", dir.display())));
        }
        let mut slugs = HashSet::new();
        for (i, p) in self.postings.iter().enumerate() {
            let key = |k: &str| format!("postings[{i}].{k}");
            if p.slug.is_empty()
                || p.slug.starts_with('_')
                || !p.slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(invalid(key("slug"), "use lower-case ASCII letters, digits, - and _ (not first)"));
            }
            if !slugs.insert(p.slug.as_str()) {
                return Err(invalid(key("slug"), format!("{:?} is used twice", p.slug)));
            }
            if p.title.trim().is_empty() {
                return Err(invalid(key("title"), "must not be empty"));
            }
            for (j, a) in p.addresses.iter().enumerate() {
                parse_address(a).map_err(|m| invalid(format!("postings[{i}].addresses[{j}]"), m))?;
            }
        }
        if self.postings.iter().filter(|p| p.default).count() > 1 {
            return Err(invalid("postings", "at most one posting may have default = true"));
        }
        self.publish.validate()?;
        Ok(())
    }

    /// Enough of a configuration to render templates and inspect messages when there is no file.
    pub fn sample() -> Config {
        let toml = r#"
[imap]
host = "imap.example.test"
username = "contact@example.test"
password = "-"
[smtp]
host = "smtp.example.test"
username = "contact@example.test"
password = "-"
[identity]
from = "contact@example.test"
organisation = "La 27e Région"
"#;
        Config::from_toml(toml, Path::new("."), std::iter::empty()).expect("the sample configuration is valid")
    }

    /// Who gets the digest: `digest.recipients`, or the team.
    pub fn digest_recipients(&self) -> Vec<String> {
        if self.digest.recipients.is_empty() { self.identity.team.clone() } else { self.digest.recipients.clone() }
    }

    /// Every folder to watch: `imap.folder`, then `imap.also_watch`.
    pub fn folders(&self) -> Vec<String> {
        std::iter::once(self.imap.folder.clone()).chain(self.imap.also_watch.iter().cloned()).collect()
    }

    /// The IMAP password, from the config or its file.
    pub fn imap_password(&self) -> Result<Secret, ConfigError> {
        password(&self.imap.password, &self.imap.password_file, "imap")
    }

    pub fn smtp_password(&self) -> Result<Secret, ConfigError> {
        password(&self.smtp.password, &self.smtp.password_file, "smtp")
    }
}

/// The config crate writes a key below a list as `postings[0]language`; people write
/// `postings[0].language`.
fn dotted_keys(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            out.push('.');
        }
    }
    out
}

fn password(pw: &Option<Secret>, file: &Option<PathBuf>, section: &str) -> Result<Secret, ConfigError> {
    match (pw, file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => read_password_file(f).map_err(|m| invalid(format!("{section}.password_file"), m)),
        (None, None) => Err(invalid(format!("{section}.password"), "missing")),
    }
}

fn read_password_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // One trailing newline is what `echo secret > file` leaves; it is not part of the password.
    let pw = text.strip_suffix('\n').unwrap_or(&text);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    if pw.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(pw))
}

fn parse_address(a: &str) -> Result<lettre::Address, String> {
    a.parse::<lettre::Address>().map_err(|e| format!("{a:?} is not an email address ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[imap]
host = "imap.example.test"
username = "contact@example.test"
password = "hunter2"
[smtp]
host = "smtp.example.test"
username = "contact@example.test"
password = "hunter2"
[identity]
from = "contact@example.test"
organisation = "Example"
"#;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("mailroom.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), text);
        Config::load_with_env(&p, env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn minimal_file_gets_safe_defaults() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.imap.port, 993);
        assert_eq!(c.imap.tls, TlsMode::Implicit);
        assert_eq!(c.imap.folder, "INBOX");
        assert!(c.replies.enabled);
        assert!(!c.replies.acknowledge_backlog, "backlog must not be acknowledged by default");
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load(
            MINIMAL,
            &[
                ("MAILROOM__IMAP__PORT", "1993"),
                ("MAILROOM__IMAP__PASSWORD", "1234"),
                ("MAILROOM__IMAP__TLS", "starttls"),
            ],
        )
        .unwrap();
        assert_eq!(c.imap.port, 1993);
        assert_eq!(c.imap.tls, TlsMode::Starttls);
        assert_eq!(c.imap_password().unwrap().expose(), "1234");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load(&MINIMAL.replace("[smtp]", "[smtp]\nhots = \"x\""), &[]).unwrap_err().to_string();
        assert!(err.contains("hots"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err =
            load(&MINIMAL.replace("from = \"contact@example.test\"", "from = \"nope\""), &[]).unwrap_err().to_string();
        assert!(err.starts_with("identity.from:"), "{err}");
        let err = load(MINIMAL, &[("MAILROOM__SMTP__PORT", "0")]).unwrap_err().to_string();
        assert!(err.starts_with("smtp.port:"), "{err}");
        let no_pw = MINIMAL.replacen("password = \"hunter2\"", "", 1);
        let err = load(&no_pw, &[]).unwrap_err().to_string();
        assert!(err.starts_with("imap.password:"), "{err}");
    }

    #[test]
    fn a_bad_language_names_its_key_and_the_choices() {
        let err = load(&format!("{MINIMAL}[replies]\ndefault_language = \"de\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("replies.default_language") && err.contains("fr or en"), "{err}");
        let posting = "[[postings]]\nslug = \"x\"\ntitle = \"X\"\nlanguage = \"es\"\n";
        let err = load(&format!("{MINIMAL}{posting}"), &[]).unwrap_err().to_string();
        assert!(err.contains("postings[0].language") && err.contains("auto"), "{err}");
    }

    #[test]
    fn password_file_is_read_without_its_newline_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("imap.pw"), "s3cret\n").unwrap();
        let text = MINIMAL.replacen("password = \"hunter2\"", "password_file = \"imap.pw\"", 1);
        let c = Config::load_with_env(&write(dir.path(), &text), std::iter::empty()).unwrap();
        assert_eq!(c.imap_password().unwrap().expose(), "s3cret");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn publish_is_off_until_its_url_is_set_and_its_errors_name_their_key() {
        let c = load(&format!("{MINIMAL}[publish]\n"), &[]).unwrap();
        assert!(!c.publish.enabled());
        let nc = "[publish]\nurl = \"https://cloud.example.org/remote.php/dav/files/rh/\"\nusername = \"rh\"\npassword = \"app\"\n";
        let c = load(&format!("{MINIMAL}{nc}"), &[]).unwrap();
        assert!(c.publish.enabled());
        assert_eq!(c.publish.root_components(), ["Recrutement"]);
        assert_eq!(c.publish.trash().as_deref(), Some("https://cloud.example.org/remote.php/dav/trashbin/rh/trash/"));
        assert!(!format!("{c:?}").contains("\"app\""), "the app password is redacted");
        let err = |extra: &str| load(&format!("{MINIMAL}{extra}"), &[]).unwrap_err().to_string();
        assert!(err(&nc.replace("https://", "http://")).starts_with("publish.url:"));
        assert!(err(&nc.replace("password = \"app\"\n", "")).starts_with("publish.password:"));
        assert!(err(&format!("{nc}web_url = \"https://x/?dir={{poste}}\"\n")).starts_with("publish.web_url:"));
        assert!(err(&format!("{nc}root = \"a/../b\"\n")).starts_with("publish.root:"));
        let plain = nc.replace("/remote.php/dav/files/rh/", "/dav/");
        assert!(err(&plain).starts_with("publish.nextcloud_trash:"), "{}", err(&plain));
        let keep = load(&format!("{MINIMAL}{plain}nextcloud_trash = \"keep\"\n"), &[]).unwrap();
        assert_eq!(keep.publish.trash(), None);
        let own = load(&format!("{MINIMAL}{plain}trash_url = \"https://x/trash\"\n"), &[]).unwrap();
        assert_eq!(own.publish.trash().as_deref(), Some("https://x/trash/"));
        let env = load(
            MINIMAL,
            &[
                ("MAILROOM__PUBLISH__URL", "https://c/remote.php/dav/files/u/"),
                ("MAILROOM__PUBLISH__USERNAME", "u"),
                ("MAILROOM__PUBLISH__PASSWORD", "p"),
            ],
        )
        .unwrap();
        assert!(env.publish.enabled());
    }
}
