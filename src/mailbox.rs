//! Stage 1, fetch: the `Mailbox` trait (where applications arrive) and its IMAP implementation.
//!
//! May: read the configured folder and set our keyword on messages that are committed; and, for
//! the retention purge and erasure only ([`Mailbox::delete`], [`Mailbox::move_to`]), remove the
//! exact messages the store recorded for a purged person.
//! May not: mark anything `\Seen`, or move or delete any other mail (bodies are fetched with `BODY.PEEK[]`),
//! or decide anything about a message. It hands raw bytes, the UID and the server's arrival time
//! to the next stage. Every command has a deadline on *progress* (no byte from the server for
//! `imap.timeout_secs`), not on its length, so a slow link gets a large batch through; a password
//! only ever crosses a TLS connection (there is no plaintext mode). An IDLE that stays silent is
//! checked ([`ImapConfig::liveness_secs`]), so a hung server or a dead link is noticed in seconds.
//! After a crash, the Sent folder is read (never changed) to tell whether an interrupted
//! acknowledgement left ([`Mailbox::find_sent`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_imap::{Client, Session};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::auth::{Auth, AuthPart, BearerAuthenticator, Credential, Mechanism};
use crate::config::{Config, ImapConfig, SaslMechanism, TlsMode};
use crate::error::{Classified, Retry};

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("cannot connect to {server}: {message}")]
    Connect { server: String, message: String },
    #[error("TLS with {server}: {message}")]
    Tls { server: String, message: String },
    #[error("login as {user} refused: {message}")]
    Auth { user: String, message: String },
    #[error("cannot select folder {folder:?}: {message}")]
    Select { folder: String, message: String },
    #[error("IMAP {command}: {message}")]
    Protocol { command: &'static str, message: String },
    #[error("IMAP {command}: no answer within {seconds} s")]
    Timeout { command: &'static str, seconds: u64 },
    /// No credential to log in with (the identity provider failed): retried with backoff.
    #[error("no credentials for the IMAP login: {message}")]
    Credentials { message: String },
}

impl Classified for MailboxError {
    fn retry(&self) -> Retry {
        match self {
            // Wrong password or folder, untrusted certificate: the admin must act.
            MailboxError::Auth { .. } | MailboxError::Select { .. } | MailboxError::Tls { .. } => Retry::Permanent,
            _ => Retry::Transient,
        }
    }
}

/// The folder's state after SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub uid_validity: u32,
    pub exists: u32,
}

/// What is known of a message before downloading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    pub uid: u32,
    pub size: u64,
    pub internal_date: Option<DateTime<Utc>>,
}

/// A downloaded message.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub uid: u32,
    pub internal_date: Option<DateTime<Utc>>,
    pub raw: Vec<u8>,
}

/// Where applications arrive, by role. One value is one open session on one folder.
pub trait Mailbox {
    /// `user@host/folder`: with UIDVALIDITY, the key of the folder's UIDs in the store.
    fn name(&self) -> &str;
    /// Selects the folder. A session may answer from its last SELECT when nothing but an IDLE
    /// announcement came since (then `exists` is as that SELECT found it).
    fn select(&mut self) -> impl Future<Output = Result<Selected, MailboxError>>;
    /// Messages with a UID above `after`, in UID order, without their bodies.
    fn list_after(&mut self, after: u32) -> impl Future<Output = Result<Vec<Envelope>, MailboxError>>;
    /// Downloads these messages without marking them seen.
    fn fetch(&mut self, uids: &[u32]) -> impl Future<Output = Result<Vec<RawMessage>, MailboxError>>;
    /// Sets a keyword (`$MailroomFiled`) on these messages.
    fn add_keyword(&mut self, uids: &[u32], keyword: &str) -> impl Future<Output = Result<(), MailboxError>>;
    /// Waits until the folder may have changed (IDLE) or `at_most` has passed (polling, or the
    /// IDLE refresh). Either way the caller then fetches everything above its high-water mark,
    /// so a wake-up that brings nothing costs one cheap command, and a missed one costs nothing.
    fn wait_for_change(&mut self, at_most: Duration) -> impl Future<Output = Result<Wake, MailboxError>>;
    fn logout(&mut self) -> impl Future<Output = ()>;
    /// Which of these Message-IDs (without angle brackets) are in the account's Sent folder,
    /// where submission servers such as Gmail's and Microsoft 365's keep a copy of what they
    /// accept. Leaves the folder selected for reading only: the next pass selects its own again.
    /// A mailbox without a Sent folder finds none.
    fn find_sent(&mut self, message_ids: &[String]) -> impl Future<Output = Result<Vec<String>, MailboxError>> {
        let _ = message_ids;
        async { Ok(Vec::new()) }
    }

    // What the retention purge and erasure need (the privacy module). The defaults refuse, so a
    // mailbox that cannot remove mail says so instead of pretending.

    /// Which of these UIDs the folder still holds.
    fn existing(&mut self, uids: &[u32]) -> impl Future<Output = Result<Vec<u32>, MailboxError>> {
        let _ = uids;
        async { Err(unsupported("UID SEARCH")) }
    }
    /// The UIDs of messages whose `Message-ID` header holds this id (without angle brackets).
    fn search_message_id(&mut self, message_id: &str) -> impl Future<Output = Result<Vec<u32>, MailboxError>> {
        let _ = message_id;
        async { Err(unsupported("UID SEARCH HEADER")) }
    }
    /// Removes exactly these messages for good: `\Deleted`, then `UID EXPUNGE` of these UIDs
    /// alone (UIDPLUS), so mail someone else marked deleted is left alone.
    fn delete(&mut self, uids: &[u32]) -> impl Future<Output = Result<(), MailboxError>> {
        let _ = uids;
        async { Err(unsupported("UID EXPUNGE")) }
    }
    /// Moves these messages into `folder` of the same account, creating it if needed.
    fn move_to(&mut self, uids: &[u32], folder: &str) -> impl Future<Output = Result<(), MailboxError>> {
        let _ = (uids, folder);
        async { Err(unsupported("UID MOVE")) }
    }
}

fn unsupported(command: &'static str) -> MailboxError {
    MailboxError::Protocol { command, message: "not supported by this mailbox".into() }
}

/// Why [`Mailbox::wait_for_change`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The server said something changed.
    Changed,
    /// The time ran out (a poll interval, or the IDLE refresh).
    Timeout,
}

/// `1:3,5,7:9`: a compact UID set.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

type Stream = TlsStream<Watched<BufReader<TcpStream>>>;

/// Read from the socket in pieces this large. rustls asks for 4 KiB at a time, and Dovecot sends
/// 4 KiB TLS records: read straight from the socket, a 700 kB message took about 350 reads and
/// 170 trips through epoll (strace). Buffered below TLS, the 2,000-message backlog makes 43 %
/// fewer system calls (README, "Performance, measured").
const SOCKET_READ_BUFFER: usize = 64 * 1024;

/// When a connection last received a byte: commands time out on silence, not on length.
#[derive(Debug, Clone)]
struct Progress {
    epoch: Instant,
    /// Milliseconds after `epoch`.
    last: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Progress {
        Progress { epoch: Instant::now(), last: Arc::new(AtomicU64::new(0)) }
    }

    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// The TCP stream under TLS, noting every byte that arrives.
#[derive(Debug)]
struct Watched<S> {
    inner: S,
    progress: Progress,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.progress.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// An IMAP session over TLS (implicit or STARTTLS) with rustls.
pub struct ImapMailbox {
    /// `None` only while IDLE owns it, or after IDLE lost the connection.
    session: Option<Session<Stream>>,
    idle: bool,
    name: String,
    folder: String,
    timeout: Duration,
    progress: Progress,
    /// How long an IDLE may stay silent before it is checked.
    liveness: Duration,
    /// `imap.sent_folder`.
    sent_folder: Option<String>,
    /// A session opened with an access token is replaced before the token expires (Exchange
    /// Online ends it then: `* BYE Session invalidated - AccessTokenExpired`).
    renew_at: Option<tokio::time::Instant>,
    cfg: Arc<Config>,
    auth: Auth,
    /// The folder is selected on this session, as the last SELECT found it, and only an IDLE
    /// announcement has come since: the pass after that announcement skips its SELECT, a round
    /// trip on the way to every new application. Anything else (a timeout or poll, the Sent
    /// folder examined, a new session) clears it, so the next pass selects again.
    selected: Option<Selected>,
}

impl std::fmt::Debug for ImapMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapMailbox").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Runs one command until it is done, or until the server has sent nothing for `timeout` (from
/// the command's start or its last byte). A 32 MiB batch at 200 KB/s takes minutes, and is fine.
async fn deadline<T, E: std::fmt::Display>(
    progress: &Progress,
    timeout: Duration,
    command: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, MailboxError> {
    until_silent(progress, timeout, command, fut)
        .await?
        .map_err(|e| MailboxError::Protocol { command, message: e.to_string() })
}

/// [`deadline`], handing the command's own result back as it is.
async fn until_silent<T>(
    progress: &Progress,
    timeout: Duration,
    command: &'static str,
    fut: impl Future<Output = T>,
) -> Result<T, MailboxError> {
    progress.touch();
    tokio::pin!(fut);
    loop {
        let silent = progress.silent_for();
        if silent >= timeout {
            return Err(MailboxError::Timeout { command, seconds: timeout.as_secs() });
        }
        tokio::select! {
            r = &mut fut => return Ok(r),
            _ = tokio::time::sleep(timeout - silent) => {}
        }
    }
}

/// How long a live server may take to answer the DONE that checks a silent IDLE.
const LIVENESS_ANSWER: Duration = Duration::from_secs(10);

impl ImapMailbox {
    /// Connects, secures, logs in, for one `folder` of the configured account, with the
    /// credentials of the configuration alone (a process with several connections shares one
    /// [`Auth`] through [`ImapMailbox::connect_with`]).
    pub async fn connect(cfg: &Config, folder: &str) -> Result<ImapMailbox, MailboxError> {
        let auth = Auth::from_config(cfg).map_err(|e| MailboxError::Credentials { message: e.to_string() })?;
        Self::connect_with(cfg, folder, &auth).await
    }

    /// Connects, secures, logs in with a credential fetched now from `auth`, for one `folder`.
    pub async fn connect_with(cfg: &Config, folder: &str, auth: &Auth) -> Result<ImapMailbox, MailboxError> {
        let imap: &ImapConfig = &cfg.imap;
        // The credential first: no connection waits open while the identity provider answers.
        let credential =
            auth.credential(AuthPart::Imap).await.map_err(|e| MailboxError::Credentials { message: e.to_string() })?;
        let server = format!("{}:{}", imap.host, imap.port);
        let timeout = Duration::from_secs(imap.timeout_secs);
        let tls_config = crate::tls::client_config(imap.ca_file.as_deref())
            .map_err(|e| MailboxError::Tls { server: server.clone(), message: e.to_string() })?;
        let connector = TlsConnector::from(Arc::clone(&tls_config));
        let server_name = ServerName::try_from(imap.host.clone())
            .map_err(|e| MailboxError::Tls { server: server.clone(), message: e.to_string() })?;

        let connect_err = |message: String| MailboxError::Connect { server: server.clone(), message };
        let progress = Progress::new();
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect((imap.host.as_str(), imap.port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_err(e.to_string())),
            Err(_) => {
                return Err(connect_err(format!("no answer within {} s", timeout.as_secs())));
            }
        };
        let _ = tcp.set_nodelay(true);
        // A silently dead peer (NAT timeout, pulled cable) is noticed by the kernel, not never.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(15))
            .with_retries(4);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let tcp = Watched { inner: BufReader::with_capacity(SOCKET_READ_BUFFER, tcp), progress: progress.clone() };

        let tcp = match imap.tls {
            TlsMode::Implicit => tcp,
            TlsMode::Starttls => {
                let mut plain = Client::new(tcp);
                deadline(&progress, timeout, "greeting", async {
                    plain.read_response().await.map_err(|e| e.to_string())
                })
                .await?;
                deadline(&progress, timeout, "STARTTLS", plain.run_command_and_check_ok("STARTTLS", None)).await?;
                plain.into_inner()
            }
        };
        let tls = match deadline(&progress, timeout, "TLS handshake", connector.connect(server_name, tcp)).await {
            Ok(s) => s,
            Err(MailboxError::Protocol { message, .. }) => {
                return Err(MailboxError::Tls { server: server.clone(), message });
            }
            Err(_) => return Err(connect_err("TLS handshake timed out".into())),
        };
        let mut client = Client::new(tls);
        let mut greeting_caps = None;
        if imap.tls == TlsMode::Implicit {
            let greeting = deadline(&progress, timeout, "greeting", async {
                client.read_response().await.map_err(|e| e.to_string())
            })
            .await?;
            greeting_caps = greeting.as_ref().and_then(|g| capabilities_in(g.parsed()));
        }
        let (mut session, mechanism) = match &credential {
            Credential::Password { user, password } => {
                match until_silent(&progress, timeout, "LOGIN", client.login(user, password.expose())).await? {
                    Ok(s) => (s, "password"),
                    Err((e, _)) => {
                        if let async_imap::error::Error::No(answer) = &e {
                            let failure = crate::auth::server_refusal(AuthPart::Imap, &credential, answer);
                            auth.refused(AuthPart::Imap, &credential, &failure).await;
                        }
                        return Err(MailboxError::Auth { user: user.clone(), message: e.to_string() });
                    }
                }
            }
            Credential::Bearer(bearer) => {
                let caps = match greeting_caps {
                    Some(c) => c,
                    None => capabilities(&mut client, &progress, timeout).await?,
                };
                let wanted = cfg.oauth2.as_ref().map(|o| o.mechanism).unwrap_or_default();
                let mechanism = choose_mechanism(&caps, wanted).ok_or_else(|| MailboxError::Auth {
                    user: bearer.user.clone(),
                    message: format!(
                        "the server offers no SASL mechanism for an access token (wanted {}; it offers {})",
                        match wanted {
                            SaslMechanism::Auto => "OAUTHBEARER or XOAUTH2",
                            SaslMechanism::Xoauth2 => "XOAUTH2",
                            SaslMechanism::Oauthbearer => "OAUTHBEARER",
                        },
                        caps.iter().filter(|c| c.starts_with("AUTH=")).cloned().collect::<Vec<_>>().join(" ")
                    ),
                })?;
                let initial = match mechanism {
                    Mechanism::XOAuth2 => crate::auth::xoauth2(&bearer.user, bearer.token.expose()),
                    Mechanism::OAuthBearer => {
                        crate::auth::oauthbearer(&bearer.user, &imap.host, imap.port, bearer.token.expose())
                    }
                };
                let (authenticator, refusal) = BearerAuthenticator::new(initial);
                match until_silent(
                    &progress,
                    timeout,
                    "AUTHENTICATE",
                    client.authenticate(mechanism.name(), authenticator),
                )
                .await?
                {
                    Ok(s) => (s, mechanism.name()),
                    Err((e, _)) => {
                        let challenge = refusal.lock().unwrap_or_else(|p| p.into_inner()).take();
                        let answer = match challenge {
                            Some(c) => format!("{e}; error challenge {c}"),
                            None => e.to_string(),
                        };
                        let failure = crate::auth::server_refusal(AuthPart::Imap, &credential, &answer);
                        auth.refused(AuthPart::Imap, &credential, &failure).await;
                        return Err(MailboxError::Auth { user: bearer.user.clone(), message: failure.to_string() });
                    }
                }
            }
        };
        auth.accepted(AuthPart::Imap, mechanism);
        tracing::debug!(host = %imap.host, folder, mechanism, "IMAP logged in");
        let renew_at = match &credential {
            Credential::Bearer(b) => {
                let left = (b.renew_at - Utc::now()).to_std().unwrap_or_default();
                Some(tokio::time::Instant::now() + left)
            }
            Credential::Password { .. } => None,
        };
        let idle =
            imap.idle && deadline(&progress, timeout, "CAPABILITY", session.capabilities()).await?.has_str("IDLE");
        Ok(ImapMailbox {
            session: Some(session),
            idle,
            name: format!("{}@{}/{}", imap.username, imap.host, folder),
            folder: folder.to_owned(),
            timeout,
            progress,
            liveness: Duration::from_secs(imap.liveness_secs),
            sent_folder: imap.sent_folder.clone(),
            renew_at,
            cfg: Arc::new(cfg.clone()),
            auth: auth.clone(),
            selected: None,
        })
    }

    /// Whether the session's access token is due for renewal.
    fn renewal_due(&self) -> bool {
        self.renew_at.is_some_and(|t| tokio::time::Instant::now() >= t)
    }

    /// Replaces the session by a new one, logged in with a token fetched now. The caller's next
    /// pass selects the folder and fetches everything above the high-water mark, so mail that
    /// arrived in between is not missed.
    async fn renew(&mut self) -> Result<(), MailboxError> {
        tracing::debug!(mailbox = %self.name, "renewing the IMAP session before its access token expires");
        if let Some(mut old) = self.session.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), old.logout()).await;
        }
        let (cfg, auth) = (Arc::clone(&self.cfg), self.auth.clone());
        *self = Self::connect_with(&cfg, &self.folder, &auth).await?;
        Ok(())
    }
}

/// The capabilities a response code carries (`* OK [CAPABILITY …]`, as Dovecot greets).
fn capabilities_in(response: &async_imap::imap_proto::Response<'_>) -> Option<Vec<String>> {
    use async_imap::imap_proto::{Outcome, Response, ResponseCode};
    match response {
        Response::Data { outcome: Outcome { code: Some(ResponseCode::Capabilities(caps)), .. }, .. } => {
            Some(caps.iter().map(capability_text).collect())
        }
        _ => None,
    }
}

fn capability_text(c: &async_imap::imap_proto::Capability<'_>) -> String {
    use async_imap::imap_proto::Capability;
    match c {
        Capability::Imap4rev1 => "IMAP4rev1".into(),
        Capability::Auth(m) => format!("AUTH={m}"),
        Capability::Atom(a) => a.to_string(),
    }
}

/// CAPABILITY before login (Microsoft and Google do not put it in their greeting). async-imap
/// offers it only on a logged-in session, so it is sent here with a tag of our own.
async fn capabilities(
    client: &mut Client<Stream>,
    progress: &Progress,
    timeout: Duration,
) -> Result<Vec<String>, MailboxError> {
    use async_imap::imap_proto::Response;
    use tokio::io::AsyncWriteExt;
    const TAG: &str = "mrcap";
    deadline(progress, timeout, "CAPABILITY", async {
        let stream = client.get_mut();
        stream.write_all(format!("{TAG} CAPABILITY\r\n").as_bytes()).await?;
        stream.flush().await?;
        let mut caps = Vec::new();
        loop {
            let Some(response) = client.read_response().await? else {
                return Err(std::io::Error::other("the server closed the connection"));
            };
            match response.parsed() {
                Response::Capabilities(list) => caps.extend(list.iter().map(capability_text)),
                Response::Done { tag, .. } if tag.0 == TAG => return Ok(caps),
                _ => {}
            }
        }
    })
    .await
}

/// OAUTHBEARER where offered (the standard), else XOAUTH2, unless the configuration names one.
fn choose_mechanism(caps: &[String], wanted: SaslMechanism) -> Option<Mechanism> {
    let offers = |m: Mechanism| caps.iter().any(|c| c.eq_ignore_ascii_case(&format!("AUTH={}", m.name())));
    match wanted {
        SaslMechanism::Xoauth2 => offers(Mechanism::XOAuth2).then_some(Mechanism::XOAuth2),
        SaslMechanism::Oauthbearer => offers(Mechanism::OAuthBearer).then_some(Mechanism::OAuthBearer),
        SaslMechanism::Auto => [Mechanism::OAuthBearer, Mechanism::XOAuth2].into_iter().find(|m| offers(*m)),
    }
}

impl ImapMailbox {
    /// Whether the server offered IDLE (and the config allows it).
    pub fn uses_idle(&self) -> bool {
        self.idle
    }

    fn session(&mut self) -> Result<&mut Session<Stream>, MailboxError> {
        self.session.as_mut().ok_or_else(lost_in_idle)
    }

    /// IDLE until the server announces a change or `at_most` has passed. Whenever the server has
    /// been silent for `liveness`, the IDLE is ended and begun again: a live server answers the
    /// DONE at once, a hung one (or a dead link) is noticed within `liveness` plus
    /// [`LIVENESS_ANSWER`], without a pass over the folder for every check.
    async fn idle_once(&mut self, at_most: Duration) -> Result<Wake, MailboxError> {
        use async_imap::extensions::idle::IdleResponse;
        let until = Instant::now() + at_most.min(IDLE_REFRESH);
        loop {
            let session = self.session.take().ok_or_else(lost_in_idle)?;
            let mut handle = session.idle();
            deadline(&self.progress, self.timeout, "IDLE", handle.init()).await?;
            let left = until.saturating_duration_since(Instant::now());
            let wake = {
                let (wait, _interrupt) = handle.wait_with_timeout(self.liveness);
                match tokio::time::timeout(left, wait).await {
                    Err(_) => Some(Wake::Timeout),
                    Ok(Ok(IdleResponse::NewData(_))) => {
                        // Where mailroom's own latency starts (the latency benchmark reads this line).
                        tracing::debug!("idle: the server announced a change");
                        Some(Wake::Changed)
                    }
                    // Silent for `liveness`: the DONE below proves the link alive, or fails.
                    Ok(Ok(IdleResponse::Timeout)) => None,
                    // We never interrupt; async-imap reports the end of the stream this way.
                    Ok(Ok(IdleResponse::ManualInterrupt)) => {
                        return Err(MailboxError::Protocol {
                            command: "IDLE",
                            message: "the server closed the connection".into(),
                        });
                    }
                    Ok(Err(e)) => return Err(MailboxError::Protocol { command: "IDLE", message: e.to_string() }),
                }
            };
            // A live server answers DONE at once, whatever the command timeout allows.
            let answer = self.timeout.min(LIVENESS_ANSWER);
            self.session = Some(deadline(&self.progress, answer, "DONE", handle.done()).await?);
            match wake {
                Some(wake) => return Ok(wake),
                None if Instant::now() >= until => return Ok(Wake::Timeout),
                None => tracing::trace!("the IDLE connection answered its liveness check"),
            }
        }
    }
}

fn lost_in_idle() -> MailboxError {
    MailboxError::Protocol { command: "IDLE", message: "the connection was lost during IDLE".into() }
}

/// How long one IDLE may last before we end and re-issue it ourselves. RFC 2177 asks for less
/// than 29 minutes; async-imap's own timeout restarts at every server keep-alive, so alone it
/// would never fire on a server that keeps talking.
pub const IDLE_REFRESH: Duration = Duration::from_secs(25 * 60);

impl Mailbox for ImapMailbox {
    fn name(&self) -> &str {
        &self.name
    }

    async fn select(&mut self) -> Result<Selected, MailboxError> {
        if self.renewal_due() {
            self.renew().await?;
        }
        if let Some(selected) = self.selected {
            tracing::trace!("the folder is still selected: no SELECT");
            return Ok(selected);
        }
        let folder = self.folder.clone();
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let mailbox = match until_silent(&progress, timeout, "SELECT", self.session()?.select(&folder)).await? {
            Ok(m) => m,
            Err(async_imap::error::Error::No(msg)) => {
                return Err(MailboxError::Select { folder, message: msg });
            }
            Err(e) => {
                return Err(MailboxError::Protocol { command: "SELECT", message: e.to_string() });
            }
        };
        let uid_validity = mailbox.uid_validity.ok_or_else(|| MailboxError::Protocol {
            command: "SELECT",
            message: "the server sent no UIDVALIDITY".into(),
        })?;
        let selected = Selected { uid_validity, exists: mailbox.exists };
        self.selected = Some(selected);
        Ok(selected)
    }

    async fn list_after(&mut self, after: u32) -> Result<Vec<Envelope>, MailboxError> {
        let start = after.saturating_add(1);
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let session = self.session()?;
        let mut out: Vec<Envelope> = deadline(&progress, timeout, "UID FETCH (list)", async {
            let stream = session.uid_fetch(format!("{start}:*"), "(UID RFC822.SIZE INTERNALDATE)").await?;
            let fetches: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(
                fetches
                    .iter()
                    .filter_map(|f| {
                        Some(Envelope {
                            uid: f.uid?,
                            size: f.size.unwrap_or(0) as u64,
                            internal_date: f.internal_date().map(|d| d.with_timezone(&Utc)),
                        })
                    })
                    .collect(),
            )
        })
        .await?;
        // `N:*` always returns the last message, even when its UID is below N.
        out.retain(|e| e.uid > after);
        out.sort_by_key(|e| e.uid);
        out.dedup_by_key(|e| e.uid);
        Ok(out)
    }

    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<RawMessage>, MailboxError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(uids);
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let session = self.session()?;
        let mut out: Vec<RawMessage> = deadline(&progress, timeout, "UID FETCH (bodies)", async {
            let mut stream = session.uid_fetch(&set, "(UID INTERNALDATE BODY.PEEK[])").await?;
            let mut out = Vec::new();
            while let Some(f) = stream.try_next().await? {
                let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                    continue;
                };
                out.push(RawMessage {
                    uid,
                    internal_date: f.internal_date().map(|d| d.with_timezone(&Utc)),
                    raw: body.to_vec(),
                });
            }
            Ok::<_, async_imap::error::Error>(out)
        })
        .await?;
        out.retain(|m| uids.contains(&m.uid));
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    async fn add_keyword(&mut self, uids: &[u32], keyword: &str) -> Result<(), MailboxError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let session = self.session()?;
        deadline(&progress, timeout, "UID STORE", async {
            let stream = session.uid_store(&set, format!("+FLAGS.SILENT ({keyword})")).await?;
            let _: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(())
        })
        .await
    }

    async fn wait_for_change(&mut self, at_most: Duration) -> Result<Wake, MailboxError> {
        // A token-bound session waits no longer than its token, then is renewed.
        let at_most = match self.renew_at {
            Some(t) => at_most.min(t.saturating_duration_since(tokio::time::Instant::now())),
            None => at_most,
        };
        let wake = if self.renewal_due() {
            Wake::Timeout
        } else if self.idle {
            self.idle_once(at_most).await?
        } else {
            tokio::time::sleep(at_most).await;
            Wake::Timeout
        };
        if self.renewal_due() {
            self.renew().await?;
        }
        if wake == Wake::Timeout {
            // A poll, or the IDLE refresh: the next pass selects, as a client that polls must.
            self.selected = None;
        }
        Ok(wake)
    }

    async fn logout(&mut self) {
        // Short: a hung server must not hold up a stop.
        if let Some(session) = self.session.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
        }
    }

    async fn find_sent(&mut self, message_ids: &[String]) -> Result<Vec<String>, MailboxError> {
        self.selected = None;
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let folder = match self.sent_folder.clone() {
            Some(f) if f.is_empty() => return Ok(Vec::new()),
            Some(f) => f,
            None => {
                let session = self.session()?;
                let sent = deadline(&progress, timeout, "LIST", async {
                    let names: Vec<_> = session.list(Some(""), Some("*")).await?.try_collect().await?;
                    Ok::<_, async_imap::error::Error>(
                        names
                            .iter()
                            .find(|n| {
                                n.attributes().iter().any(|a| matches!(a, async_imap::types::NameAttribute::Sent))
                            })
                            .map(|n| n.name().to_owned()),
                    )
                })
                .await?;
                match sent {
                    Some(f) => f,
                    None => return Ok(Vec::new()),
                }
            }
        };
        let session = self.session()?;
        deadline(&progress, timeout, "EXAMINE", session.examine(&folder)).await?;
        let mut found = Vec::new();
        for id in message_ids {
            // Only ids we can quote as an IMAP string are looked for; ours always are.
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
                continue;
            }
            let hits =
                deadline(&progress, timeout, "UID SEARCH", session.uid_search(format!("HEADER Message-ID \"<{id}>\"")))
                    .await?;
            if !hits.is_empty() {
                found.push(id.clone());
            }
        }
        Ok(found)
    }

    async fn existing(&mut self, uids: &[u32]) -> Result<Vec<u32>, MailboxError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(uids);
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let session = self.session()?;
        let found = deadline(&progress, timeout, "UID SEARCH", session.uid_search(format!("UID {set}"))).await?;
        let mut out: Vec<u32> = found.into_iter().filter(|u| uids.contains(u)).collect();
        out.sort_unstable();
        Ok(out)
    }

    async fn search_message_id(&mut self, message_id: &str) -> Result<Vec<u32>, MailboxError> {
        // A quoted string cannot carry line breaks or 8-bit bytes: such an id is never found.
        if message_id.is_empty() || !message_id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Ok(Vec::new());
        }
        let quoted = message_id.replace('\\', "\\\\").replace('"', "\\\"");
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let session = self.session()?;
        let found =
            deadline(&progress, timeout, "UID SEARCH", session.uid_search(format!("HEADER Message-ID \"{quoted}\"")))
                .await?;
        let mut out: Vec<u32> = found.into_iter().collect();
        out.sort_unstable();
        Ok(out)
    }

    async fn delete(&mut self, uids: &[u32]) -> Result<(), MailboxError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let session = self.session()?;
        // Plain EXPUNGE would also remove what other clients marked \Deleted: without UIDPLUS we stop.
        if !deadline(&progress, timeout, "CAPABILITY", session.capabilities()).await?.has_str("UIDPLUS") {
            return Err(MailboxError::Protocol {
                command: "UID EXPUNGE",
                message: "the server lacks UIDPLUS, so mailroom cannot expunge only the purged messages; \
                          set privacy.purge_mailbox to \"move:FOLDER\" or \"keep\""
                    .into(),
            });
        }
        deadline(&progress, timeout, "UID STORE", async {
            let stream = session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)").await?;
            let _: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(())
        })
        .await?;
        deadline(&progress, timeout, "UID EXPUNGE", async {
            let stream = session.uid_expunge(&set).await?;
            let _: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(())
        })
        .await
    }

    async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), MailboxError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let (timeout, progress) = (self.timeout, self.progress.clone());
        let session = self.session()?;
        // Created if missing; an existing folder answers NO, which is fine.
        let _ = deadline(&progress, timeout, "CREATE", session.create(folder)).await;
        let caps = deadline(&progress, timeout, "CAPABILITY", session.capabilities()).await?;
        if caps.has_str("MOVE") {
            return deadline(&progress, timeout, "UID MOVE", session.uid_mv(&set, folder)).await;
        }
        if !caps.has_str("UIDPLUS") {
            return Err(MailboxError::Protocol {
                command: "UID MOVE",
                message: "the server has neither MOVE nor UIDPLUS: mailroom cannot move only the purged messages"
                    .into(),
            });
        }
        deadline(&progress, timeout, "UID COPY", session.uid_copy(&set, folder)).await?;
        self.delete(uids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact_and_sorted() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 7, 8, 3]), "1:3,5,7:9");
        assert_eq!(uid_set(&[42]), "42");
        assert_eq!(uid_set(&[]), "");
    }
}
