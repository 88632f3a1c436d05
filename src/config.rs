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
use crate::provider::{Endpoints, Flow, Provider};

/// Where clamd listens: `antivirus.clamd`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

impl fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClamdAddress::Unix(p) => write!(f, "{}", p.display()),
            ClamdAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            ClamdAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl ClamdAddress {
    /// `""` → `None` (no antivirus); an absolute path → its unix socket; `host:port` or
    /// `[v6]:port` → TCP. The error says what was expected.
    pub fn parse(s: &str) -> Result<Option<ClamdAddress>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s.starts_with('/') {
            return Ok(Some(ClamdAddress::Unix(PathBuf::from(s))));
        }
        let bad = || {
            format!(
                "{s:?} is neither clamd's unix socket (an absolute path such as /run/clamav/clamd.ctl) nor host:port \
                 (such as 127.0.0.1:3310)"
            )
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
        // An IPv6 address is written in brackets, as in a URL: "[::1]:3310".
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
            Some(_) => return Err(bad()),
            None if host.is_empty() || host.contains([':', '/', ' ', '[', ']']) => return Err(bad()),
            None => host,
        };
        Ok(Some(ClamdAddress::Tcp { host: host.to_owned(), port }))
    }
}

/// clamd's own default `StreamMaxLength`: a larger stream is refused by a stock clamd.
pub const DEFAULT_MAX_STREAM_BYTES: u64 = 25 * 1024 * 1024;
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

/// How mailroom logs in to a server: a password (SASL PLAIN/LOGIN), or an OAuth2 access token
/// (SASL XOAUTH2/OAUTHBEARER) from the `[oauth2]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    #[default]
    Password,
    Oauth2,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub imap: ImapConfig,
    pub smtp: SmtpConfig,
    pub identity: Identity,
    /// How tokens are obtained when `imap.auth` or `smtp.auth` is `oauth2`.
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub replies: Replies,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub antivirus: AntivirusConfig,
    #[serde(default)]
    pub digest: DigestConfig,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
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
    /// `password` or `oauth2`.
    #[serde(default)]
    pub auth: AuthMethod,
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
    /// Deadline for connecting, and how long an IMAP command may go without a byte from the
    /// server: a slow link is fine as long as bytes keep coming.
    #[serde(default = "defaults::timeout_secs")]
    pub timeout_secs: u64,
    /// An IDLE connection silent this long is checked (DONE, which a live server answers at
    /// once): a hung server or a dead link is noticed within this plus a few seconds.
    #[serde(default = "defaults::liveness_secs")]
    pub liveness_secs: u64,
    /// Where the submission server keeps a copy of what mailroom sends, looked in after a crash
    /// to tell whether an interrupted acknowledgement left. Unset: the folder the server marks
    /// `\Sent` (RFC 6154); `""`: do not look.
    #[serde(default)]
    pub sent_folder: Option<String>,
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
    /// `password` or `oauth2`.
    #[serde(default)]
    pub auth: AuthMethod,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "defaults::timeout_secs")]
    pub timeout_secs: u64,
}

/// OAuth2: where tokens come from and how they are kept. Used by `imap.auth` and `smtp.auth`
/// set to `oauth2`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// `microsoft365`, `google` or `custom`: a preset fills in the IMAP and SMTP hosts, ports and
    /// TLS (where not written), the endpoints and the scopes.
    #[serde(default = "defaults::provider")]
    pub provider: Provider,
    /// `client_credentials` (app-only), `authorization_code` (delegated, `mailroom auth login`)
    /// or `device_code` (delegated, a code typed on another device).
    pub flow: Flow,
    /// Microsoft 365: the directory (tenant) id, or one of its verified domains.
    #[serde(default)]
    pub tenant: String,
    /// The application (client) id of the app registration.
    pub client_id: String,
    /// The client secret, inline (prefer `client_secret_file` or the environment).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// A file holding the client secret; a relative name is looked up in `$CREDENTIALS_DIRECTORY`.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// `custom`: the authorization endpoint (for `authorization_code`).
    #[serde(default)]
    pub authorization_url: Option<String>,
    /// `custom`: the token endpoint.
    #[serde(default)]
    pub token_url: Option<String>,
    /// `custom`: the device authorization endpoint (for `device_code`).
    #[serde(default)]
    pub device_authorization_url: Option<String>,
    /// The scopes to ask for. Empty: the provider's (see the README).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Where the browser is sent back to after `mailroom auth login`. Default
    /// `http://localhost` (a free port, chosen at login). A loopback `http://` address is
    /// listened on; any other is only shown, and its URL pasted back.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// The IMAP SASL mechanism: `auto` (OAUTHBEARER where the server offers it, else XOAUTH2),
    /// `xoauth2` or `oauthbearer`. SMTP always uses XOAUTH2.
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// How the client secret goes to the token endpoint: `auto` (in the form for the presets,
    /// HTTP Basic for `custom`), `basic` or `body`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Extra CA certificate (PEM) trusted for the identity provider's endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Where the tokens are kept (mode 0600). Default: the directory of `storage.state_path`.
    #[serde(default)]
    pub token_dir: Option<PathBuf>,
    /// Warn (log, status, digest) this many days before a refresh token is known to expire.
    #[serde(default = "defaults::refresh_warning_days")]
    pub refresh_warning_days: u32,
    /// Deadline for each request to the identity provider.
    #[serde(default = "defaults::oauth2_timeout_secs")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaslMechanism {
    #[default]
    Auto,
    Xoauth2,
    Oauthbearer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Auto,
    Basic,
    Body,
}

impl OAuth2Config {
    /// The endpoints: the preset's for the tenant, each replaced by the key when written.
    pub fn endpoints(&self) -> Endpoints {
        let preset = self.provider.endpoints(self.tenant.trim()).unwrap_or_default();
        Endpoints {
            authorization: self.authorization_url.clone().or(preset.authorization),
            token: self.token_url.clone().or(preset.token),
            device_authorization: self.device_authorization_url.clone().or(preset.device_authorization),
        }
    }

    /// The scopes: as written, or the provider's for the flow.
    pub fn scopes(&self) -> Vec<String> {
        if self.scopes.is_empty() { self.provider.scopes(self.flow) } else { self.scopes.clone() }
    }

    /// Whether the client secret goes in the form body (else HTTP Basic).
    pub fn secret_in_body(&self) -> bool {
        match self.client_auth {
            ClientAuth::Auto => self.provider.secret_in_body(),
            ClientAuth::Basic => false,
            ClientAuth::Body => true,
        }
    }

    /// The client secret, from the config or its file; `None` for a public client.
    pub fn client_secret(&self) -> Result<Option<Secret>, ConfigError> {
        match (&self.client_secret, &self.client_secret_file) {
            (Some(s), _) => Ok(Some(s.clone())),
            (None, Some(f)) => read_password_file(f).map(Some).map_err(|m| invalid("oauth2.client_secret_file", m)),
            (None, None) => Ok(None),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.client_id.trim().is_empty() {
            return Err(invalid("oauth2.client_id", "must not be empty (the application (client) id)"));
        }
        if let Some(why) = self.provider.refuses(self.flow) {
            return Err(invalid("oauth2.flow", why));
        }
        match self.provider {
            Provider::Microsoft365 => {
                let t = self.tenant.trim();
                if t.is_empty() {
                    return Err(invalid(
                        "oauth2.tenant",
                        "missing: the directory (tenant) id or a verified domain of the tenant, e.g. example.org",
                    ));
                }
                if !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
                    return Err(invalid("oauth2.tenant", format!("{t:?} is not a tenant id or domain")));
                }
            }
            Provider::Google | Provider::Custom => {
                if !self.tenant.trim().is_empty() {
                    return Err(invalid("oauth2.tenant", "only used with provider = \"microsoft365\""));
                }
            }
        }
        let endpoints = self.endpoints();
        let needed = [
            ("oauth2.token_url", endpoints.token.as_deref(), true),
            ("oauth2.authorization_url", endpoints.authorization.as_deref(), self.flow == Flow::AuthorizationCode),
            (
                "oauth2.device_authorization_url",
                endpoints.device_authorization.as_deref(),
                self.flow == Flow::DeviceCode,
            ),
        ];
        for (key, url, required) in needed {
            match url {
                Some(u) => check_endpoint(u).map_err(|m| invalid(key, m))?,
                None if required => {
                    return Err(invalid(
                        key,
                        format!("missing: provider = \"custom\" with flow = \"{}\" needs it", self.flow.as_str()),
                    ));
                }
                None => {}
            }
        }
        if let Some(uri) = &self.redirect_uri {
            let parsed = url::Url::parse(uri).map_err(|e| invalid("oauth2.redirect_uri", format!("{uri:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid("oauth2.redirect_uri", "must be an http:// or https:// address"));
            }
        }
        match (&self.client_secret, &self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "oauth2.client_secret",
                    "set either oauth2.client_secret or oauth2.client_secret_file, not both",
                ));
            }
            (None, None) if self.flow == Flow::ClientCredentials => {
                return Err(invalid(
                    "oauth2.client_secret_file",
                    "missing: client_credentials needs the app's client secret (oauth2.client_secret_file)",
                ));
            }
            (None, Some(file)) => {
                read_password_file(file).map_err(|m| invalid("oauth2.client_secret_file", m))?;
            }
            _ => {}
        }
        if self.timeout_secs == 0 {
            return Err(invalid("oauth2.timeout_secs", "must be greater than 0"));
        }
        if let Some(ca) = &self.ca_file {
            crate::tls::load_ca_file(ca).map_err(|e| invalid("oauth2.ca_file", e.to_string()))?;
        }
        if self.scopes.iter().any(|s| s.trim().is_empty() || s.contains(char::is_whitespace)) {
            return Err(invalid("oauth2.scopes", "one scope per list item, without spaces"));
        }
        Ok(())
    }
}

/// An identity provider's endpoint: https, or http on loopback only (a local test identity
/// provider); a token must never cross the network in clear.
fn check_endpoint(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => Err(format!("{u:?} must be an https:// address (http:// only on loopback)")),
    }
}

/// `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
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
    /// What to do with a message carrying a program, a script, a macro-enabled or a
    /// password-protected file.
    pub dangerous: DangerousPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 50 * 1024 * 1024,
            max_parts: 200,
            max_depth: 10,
            max_document_bytes: 40 * 1024 * 1024,
            dangerous: DangerousPolicy::Quarantine,
        }
    }
}

/// A dangerous attachment is never the CV or the letter; this decides what becomes of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DangerousPolicy {
    /// File the application, the dangerous file as `other` with a warning; the digest flags it.
    FileAsOther,
    /// Keep the whole message out of the candidate folders (`_quarantine/`, no reply); the
    /// digest flags it. The default: recruiters are a known target of booby-trapped CVs, and a
    /// file nobody can open by mistake is safer than one with a warning beside it.
    Quarantine,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AntivirusConfig {
    /// clamd's address: empty = no scanning; an absolute path = its unix socket
    /// (`/run/clamav/clamd.ctl` on Debian); `host:port` = TCP.
    pub clamd: String,
    /// clamd unreachable or too slow: `fail_closed` (the message waits and is tried again; nothing
    /// is filed unscanned) or `fail_open` (filed, marked and reported as not scanned).
    pub on_unreachable: OnUnreachable,
    /// Deadline for connecting to clamd and for each of its answers.
    pub timeout_secs: u64,
    /// Larger documents are not sent (they could not be scanned): clamd's `StreamMaxLength`,
    /// 25 MiB unless its configuration says otherwise.
    pub max_stream_bytes: u64,
}

impl Default for AntivirusConfig {
    fn default() -> Self {
        AntivirusConfig {
            clamd: String::new(),
            on_unreachable: OnUnreachable::FailClosed,
            timeout_secs: 30,
            max_stream_bytes: DEFAULT_MAX_STREAM_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnreachable {
    FailClosed,
    FailOpen,
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address and port of the Prometheus endpoint (`GET /metrics`), e.g. `127.0.0.1:9464`.
    /// Empty: no endpoint.
    pub listen: String,
}

impl MetricsConfig {
    /// The validated address, or `None` when metrics are off.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.listen.trim().parse().ok()
    }
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

    /// `secrets`: also read the password file (not for `mailroom status`, which needs none).
    fn validate(&self, secrets: bool) -> Result<(), ConfigError> {
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
            (None, Some(file)) if secrets => {
                read_password_file(file).map_err(|m| invalid("publish.password_file", m))?;
            }
            (None, Some(_)) | (Some(_), None) => {}
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
    /// How long this posting's candidates are kept, in months from the closing date (or from the
    /// candidate's last application when there is none). Default: `privacy.retention_months`.
    #[serde(default)]
    pub retention_months: Option<u32>,
}

/// The retention policy and the privacy notice (GDPR; the CNIL's recruitment guidance).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Run the purge on `schedule` (`mailroom run`). `mailroom purge` works either way.
    pub enabled: bool,
    /// Cron expression, in `identity.timezone`, like `digest.schedule`. Default: every day at 03:00.
    pub schedule: String,
    /// Months a candidate is kept after the posting's closing date, or after their last
    /// application when the posting has none (a posting's own `retention_months` wins).
    pub retention_months: u32,
    /// Months a candidate who consented to be kept (`mailroom candidate consent`) is kept after
    /// the last contact.
    pub consent_retention_months: u32,
    /// Days a quarantined message (and its files) is kept.
    pub quarantine_days: u32,
    /// Days sent acknowledgements and digests (the mails as rendered) and other message records
    /// are kept in the store.
    pub history_days: u32,
    /// Days the audit trail (purges, exports, erasures, holds: counts and keyed hashes) is kept.
    pub audit_days: u32,
    /// What a purge does with the candidate's messages in the mailbox: `delete`,
    /// `move:FOLDER`, or `keep`. `candidate forget` always deletes.
    pub purge_mailbox: PurgeMailbox,
    /// The digest lists the candidates who will be purged within this many days.
    pub announce_days: u32,
    /// The data controller named in the notice. Empty: `identity.organisation`.
    pub controller: String,
    /// Where candidates exercise their rights (an address, or a postal address or web form, as
    /// the notice should say it). Empty: `identity.from`.
    pub contact: String,
    /// The purpose, as the notice states it. Empty: the built-in wording ("your application to
    /// <posting>"), in the reply's language.
    pub purpose: String,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            enabled: true,
            schedule: "0 3 * * *".into(),
            retention_months: 3,
            consent_retention_months: 24,
            quarantine_days: 30,
            history_days: 90,
            audit_days: 365,
            purge_mailbox: PurgeMailbox::Delete,
            announce_days: 7,
            controller: String::new(),
            contact: String::new(),
            purpose: String::new(),
        }
    }
}

/// What happens to a purged candidate's messages in the mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PurgeMailbox {
    /// `UID STORE \Deleted` and `UID EXPUNGE` of exactly those messages.
    Delete,
    /// `UID MOVE` into this folder of the same account (created if missing).
    Move(String),
    /// Left alone.
    Keep,
}

impl TryFrom<String> for PurgeMailbox {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "delete" => Ok(PurgeMailbox::Delete),
            "keep" => Ok(PurgeMailbox::Keep),
            other => match other.strip_prefix("move:") {
                Some(folder) if !folder.trim().is_empty() => Ok(PurgeMailbox::Move(folder.to_owned())),
                _ => Err(format!("{s:?}: expected \"delete\", \"keep\" or \"move:FOLDER\"")),
            },
        }
    }
}

impl Config {
    /// The retention of a posting's candidates, in months.
    pub fn retention_months(&self, posting: &str) -> u32 {
        self.postings
            .iter()
            .find(|p| p.slug == posting)
            .and_then(|p| p.retention_months)
            .unwrap_or(self.privacy.retention_months)
    }

    /// The data controller the notice names.
    pub fn controller(&self) -> &str {
        if self.privacy.controller.trim().is_empty() { &self.identity.organisation } else { &self.privacy.controller }
    }

    /// Where candidates send their requests.
    pub fn privacy_contact(&self) -> &str {
        if self.privacy.contact.trim().is_empty() { &self.identity.from } else { &self.privacy.contact }
    }
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
    pub(super) fn liveness_secs() -> u64 {
        20
    }
    pub(super) fn batch_messages() -> usize {
        100
    }
    pub(super) fn batch_bytes() -> u64 {
        8 * 1024 * 1024
    }
    pub(super) fn language() -> super::PostingLang {
        super::PostingLang::Fr
    }
    pub(super) fn timezone() -> String {
        "Europe/Paris".into()
    }
    pub(super) fn provider() -> crate::provider::Provider {
        crate::provider::Provider::Custom
    }
    pub(super) fn refresh_warning_days() -> u32 {
        14
    }
    pub(super) fn oauth2_timeout_secs() -> u64 {
        30
    }
}

impl Config {
    /// Reads the file, applies the environment, resolves paths and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`], but without reading the password files: for commands that talk to
    /// no server (`mailroom status` reads the state, and must work without them).
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Self::load_inner(path, std::env::vars(), false)
    }

    /// Like [`Config::load`], with the environment given (tests do not touch the process's).
    pub fn load_with_env(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        Self::load_inner(path, env, true)
    }

    fn load_inner(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        secrets: bool,
    ) -> Result<Config, ConfigError> {
        let load_err = |message: String| ConfigError::Load { path: path.to_owned(), message };
        if !path.is_file() {
            return Err(load_err("no such file (give another with --config FILE)".into()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| load_err(e.to_string()))?;
        Self::from_toml_inner(&text, path.parent().unwrap_or(Path::new(".")), env, secrets).map_err(|e| match e {
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
        Self::from_toml_inner(text, base, env, true)
    }

    fn from_toml_inner(
        text: &str,
        base: &Path,
        env: impl IntoIterator<Item = (String, String)>,
        secrets: bool,
    ) -> Result<Config, ConfigError> {
        let load_err = |message: String| ConfigError::Load { path: base.to_owned(), message };
        let overrides: config::Map<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with("MAILROOM__")).collect();
        let build = |presets: &[(String, config::Value)]| {
            let mut builder = config::Config::builder();
            for (key, value) in presets {
                builder = builder.set_default(key.as_str(), value.clone())?;
            }
            builder
                .add_source(config::File::from_str(text, config::FileFormat::Toml))
                .add_source(
                    config::Environment::with_prefix("MAILROOM")
                        .prefix_separator("__")
                        .separator("__")
                        .list_separator(",")
                        .with_list_parse_key("identity.team")
                        .with_list_parse_key("imap.also_watch")
                        .with_list_parse_key("digest.recipients")
                        .with_list_parse_key("oauth2.scopes")
                        .try_parsing(true)
                        .source(Some(overrides.clone())),
                )
                .build()
        };
        let mut raw = build(&[]).map_err(|e| load_err(e.to_string()))?;
        // A provider preset fills the servers' keys the admin did not write (lowest priority).
        let presets = provider_presets(&raw);
        if !presets.is_empty() {
            raw = build(&presets).map_err(|e| load_err(e.to_string()))?;
        }
        let mut cfg: Config = raw.try_deserialize().map_err(|e| load_err(dotted_keys(&e.to_string())))?;
        cfg.resolve_paths(base, std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from));
        cfg.validate_inner(secrets)?;
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
        if let Some(o) = &mut self.oauth2 {
            for p in [&mut o.ca_file, &mut o.token_dir].into_iter().flatten() {
                rel(p);
            }
            if let Some(p) = &mut o.client_secret_file {
                secret_rel(p);
            }
        }
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
        self.validate_inner(true)
    }

    fn validate_inner(&self, secrets: bool) -> Result<(), ConfigError> {
        for (section, host, port, user, pw, pw_file, ca, auth) in [
            (
                "imap",
                &self.imap.host,
                self.imap.port,
                &self.imap.username,
                &self.imap.password,
                &self.imap.password_file,
                &self.imap.ca_file,
                self.imap.auth,
            ),
            (
                "smtp",
                &self.smtp.host,
                self.smtp.port,
                &self.smtp.username,
                &self.smtp.password,
                &self.smtp.password_file,
                &self.smtp.ca_file,
                self.smtp.auth,
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
            if auth == AuthMethod::Oauth2 {
                if pw.is_some() || pw_file.is_some() {
                    let key = if pw.is_some() { "password" } else { "password_file" };
                    return Err(invalid(
                        format!("{section}.{key}"),
                        format!("not used with {section}.auth = \"oauth2\" (the token is the credential): remove it"),
                    ));
                }
                if self.oauth2.is_none() {
                    return Err(invalid(
                        "oauth2",
                        format!("missing: {section}.auth = \"oauth2\" needs an [oauth2] section"),
                    ));
                }
            }
            match (pw, pw_file) {
                _ if auth == AuthMethod::Oauth2 => {}
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
                (None, Some(file)) if secrets => {
                    read_password_file(file).map_err(|m| invalid(format!("{section}.password_file"), m))?;
                }
                (None, Some(_)) => {}
                (Some(_), None) => {}
            }
            if let Some(ca) = ca {
                crate::tls::load_ca_file(ca).map_err(|e| invalid(format!("{section}.ca_file"), e.to_string()))?;
            }
        }
        if let Some(o) = &self.oauth2 {
            o.validate()?;
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
            ("imap.liveness_secs", self.imap.liveness_secs),
            ("smtp.timeout_secs", self.smtp.timeout_secs),
            ("imap.batch_messages", self.imap.batch_messages as u64),
            ("imap.batch_bytes", self.imap.batch_bytes),
            ("limits.max_message_bytes", self.limits.max_message_bytes),
            ("limits.max_parts", self.limits.max_parts as u64),
            ("limits.max_depth", self.limits.max_depth as u64),
            ("limits.max_document_bytes", self.limits.max_document_bytes),
            ("antivirus.timeout_secs", self.antivirus.timeout_secs),
            ("antivirus.max_stream_bytes", self.antivirus.max_stream_bytes),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        ClamdAddress::parse(&self.antivirus.clamd).map_err(|m| invalid("antivirus.clamd", m))?;
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
        if !self.metrics.listen.trim().is_empty()
            && let Err(e) = self.metrics.listen.trim().parse::<std::net::SocketAddr>()
        {
            return Err(invalid(
                "metrics.listen",
                format!("{:?} is not an IP address and port such as 127.0.0.1:9464 ({e})", self.metrics.listen),
            ));
        }
        self.publish.validate(secrets)?;
        self.validate_privacy()
    }

    fn validate_privacy(&self) -> Result<(), ConfigError> {
        let p = &self.privacy;
        crate::schedule::Schedule::parse(&p.schedule, self.identity.timezone())
            .map_err(|m| invalid("privacy.schedule", m))?;
        for (key, v) in [
            ("privacy.retention_months", p.retention_months),
            ("privacy.consent_retention_months", p.consent_retention_months),
            ("privacy.quarantine_days", p.quarantine_days),
            ("privacy.history_days", p.history_days),
            ("privacy.audit_days", p.audit_days),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        for (i, posting) in self.postings.iter().enumerate() {
            if posting.retention_months == Some(0) {
                return Err(invalid(format!("postings[{i}].retention_months"), "must be greater than 0"));
            }
        }
        if p.consent_retention_months < p.retention_months {
            return Err(invalid(
                "privacy.consent_retention_months",
                format!(
                    "{} is shorter than privacy.retention_months ({}): consent keeps a candidate longer, not less",
                    p.consent_retention_months, p.retention_months
                ),
            ));
        }
        // The reply window reads the outbox: history kept shorter would answer people twice.
        if p.history_days < self.replies.once_per_days {
            return Err(invalid(
                "privacy.history_days",
                format!("must be at least replies.once_per_days ({})", self.replies.once_per_days),
            ));
        }
        if let PurgeMailbox::Move(folder) = &p.purge_mailbox
            && self.folders().iter().any(|f| f == folder)
        {
            return Err(invalid(
                "privacy.purge_mailbox",
                format!("{folder:?} is a folder mailroom watches: purged mail would be filed again"),
            ));
        }
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

    /// Whether either side logs in with OAuth2.
    pub fn uses_oauth2(&self) -> bool {
        self.imap.auth == AuthMethod::Oauth2 || self.smtp.auth == AuthMethod::Oauth2
    }

    /// Where tokens are kept: `oauth2.token_dir`, or the directory of the state file.
    pub fn token_dir(&self) -> PathBuf {
        match self.oauth2.as_ref().and_then(|o| o.token_dir.clone()) {
            Some(dir) => dir,
            None => match self.storage.state_path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            },
        }
    }
}

/// The defaults a provider preset gives to the keys of `[imap]` and `[smtp]`.
fn provider_presets(raw: &config::Config) -> Vec<(String, config::Value)> {
    let provider = match raw.get_string("oauth2.provider").ok().as_deref() {
        Some("microsoft365") => Provider::Microsoft365,
        Some("google") => Provider::Google,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for (section, server) in [("imap", provider.imap()), ("smtp", provider.smtp())] {
        if let Some(s) = server {
            out.push((format!("{section}.host"), config::Value::from(s.host)));
            out.push((format!("{section}.port"), config::Value::from(i64::from(s.port))));
            out.push((format!("{section}.tls"), config::Value::from(s.tls)));
        }
    }
    out
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
    fn antivirus_is_off_by_default_and_its_keys_are_checked() {
        let c = load(MINIMAL, &[]).unwrap();
        assert!(c.antivirus.clamd.is_empty());
        assert_eq!(c.antivirus.on_unreachable, OnUnreachable::FailClosed, "never file unscanned by default");
        assert_eq!(c.limits.dangerous, DangerousPolicy::Quarantine);
        let c = load(MINIMAL, &[("MAILROOM__ANTIVIRUS__CLAMD", "127.0.0.1:3310")]).unwrap();
        assert_eq!(c.antivirus.clamd, "127.0.0.1:3310");
        for (key, value, named) in [
            ("MAILROOM__ANTIVIRUS__CLAMD", "clamd.ctl", "antivirus.clamd:"),
            ("MAILROOM__ANTIVIRUS__CLAMD", "localhost", "antivirus.clamd:"),
            ("MAILROOM__ANTIVIRUS__TIMEOUT_SECS", "0", "antivirus.timeout_secs:"),
            ("MAILROOM__ANTIVIRUS__MAX_STREAM_BYTES", "0", "antivirus.max_stream_bytes:"),
        ] {
            let err = load(MINIMAL, &[(key, value)]).unwrap_err().to_string();
            assert!(err.starts_with(named), "{key}={value}: {err}");
        }
        let err = load(&format!("{MINIMAL}\n[antivirus]\non_unreachable = \"maybe\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("antivirus.on_unreachable") && err.contains("maybe"), "{err}");
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
