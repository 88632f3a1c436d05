//! Stage 1, fetch: the `Mailbox` trait (where applications arrive) and its IMAP implementation.
//!
//! May: read the configured folder and set our keyword on messages that are committed; and, for
//! the retention purge and erasure only ([`Mailbox::delete`], [`Mailbox::move_to`]), remove the
//! exact messages the store recorded for a purged person.
//! May not: mark anything `\Seen`, or move or delete any other mail (bodies are fetched with
//! `BODY.PEEK[]`), or decide anything about a message. It hands raw bytes, the UID and the server's arrival time
//! to the next stage. Every command has a deadline; a password only ever crosses a TLS connection
//! (there is no plaintext mode).

use std::sync::Arc;
use std::time::Duration;

use async_imap::{Client, Session};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{Config, ImapConfig, Secret, TlsMode};
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

type Stream = TlsStream<TcpStream>;

/// An IMAP session over TLS (implicit or STARTTLS) with rustls.
pub struct ImapMailbox {
    /// `None` only while IDLE owns it, or after IDLE lost the connection.
    session: Option<Session<Stream>>,
    idle: bool,
    name: String,
    folder: String,
    timeout: Duration,
}

impl std::fmt::Debug for ImapMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapMailbox").field("name", &self.name).finish_non_exhaustive()
    }
}

async fn deadline<T, E: std::fmt::Display>(
    timeout: Duration,
    command: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, MailboxError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(MailboxError::Protocol { command, message: e.to_string() }),
        Err(_) => Err(MailboxError::Timeout { command, seconds: timeout.as_secs() }),
    }
}

impl ImapMailbox {
    /// Connects, secures, logs in, for one `folder` of the configured account.
    pub async fn connect(cfg: &Config, folder: &str) -> Result<ImapMailbox, MailboxError> {
        let imap: &ImapConfig = &cfg.imap;
        let password: Secret = cfg
            .imap_password()
            .map_err(|e| MailboxError::Auth { user: imap.username.clone(), message: e.to_string() })?;
        let server = format!("{}:{}", imap.host, imap.port);
        let timeout = Duration::from_secs(imap.timeout_secs);
        let tls_config = crate::tls::client_config(imap.ca_file.as_deref())
            .map_err(|e| MailboxError::Tls { server: server.clone(), message: e.to_string() })?;
        let connector = TlsConnector::from(Arc::clone(&tls_config));
        let server_name = ServerName::try_from(imap.host.clone())
            .map_err(|e| MailboxError::Tls { server: server.clone(), message: e.to_string() })?;

        let connect_err = |message: String| MailboxError::Connect { server: server.clone(), message };
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

        let tcp = match imap.tls {
            TlsMode::Implicit => tcp,
            TlsMode::Starttls => {
                let mut plain = Client::new(tcp);
                deadline(timeout, "greeting", async { plain.read_response().await.map_err(|e| e.to_string()) }).await?;
                deadline(timeout, "STARTTLS", plain.run_command_and_check_ok("STARTTLS", None)).await?;
                plain.into_inner()
            }
        };
        let tls = match tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(MailboxError::Tls { server: server.clone(), message: e.to_string() });
            }
            Err(_) => return Err(connect_err("TLS handshake timed out".into())),
        };
        let mut client = Client::new(tls);
        if imap.tls == TlsMode::Implicit {
            deadline(timeout, "greeting", async { client.read_response().await.map_err(|e| e.to_string()) }).await?;
        }
        let mut session = match tokio::time::timeout(timeout, client.login(&imap.username, password.expose())).await {
            Ok(Ok(s)) => s,
            Ok(Err((e, _))) => {
                return Err(MailboxError::Auth { user: imap.username.clone(), message: e.to_string() });
            }
            Err(_) => {
                return Err(MailboxError::Timeout { command: "LOGIN", seconds: timeout.as_secs() });
            }
        };
        let idle = imap.idle && deadline(timeout, "CAPABILITY", session.capabilities()).await?.has_str("IDLE");
        Ok(ImapMailbox {
            session: Some(session),
            idle,
            name: format!("{}@{}/{}", imap.username, imap.host, folder),
            folder: folder.to_owned(),
            timeout,
        })
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

    async fn idle_once(&mut self, at_most: Duration) -> Result<Wake, MailboxError> {
        use async_imap::extensions::idle::IdleResponse;
        let session = self.session.take().ok_or_else(lost_in_idle)?;
        let mut handle = session.idle();
        deadline(self.timeout, "IDLE", handle.init()).await?;
        let wake = {
            let (wait, _interrupt) = handle.wait_with_timeout(IDLE_SILENCE);
            match tokio::time::timeout(at_most.min(IDLE_REFRESH), wait).await {
                Err(_) => Wake::Timeout,
                Ok(Ok(IdleResponse::NewData(_))) => Wake::Changed,
                // Silence for IDLE_SILENCE: the DONE below proves the link alive, or fails.
                Ok(Ok(IdleResponse::Timeout)) => Wake::Timeout,
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
        self.session = Some(deadline(self.timeout, "DONE", handle.done()).await?);
        Ok(wake)
    }
}

fn lost_in_idle() -> MailboxError {
    MailboxError::Protocol { command: "IDLE", message: "the connection was lost during IDLE".into() }
}

/// How long one IDLE may last before we end and re-issue it ourselves. RFC 2177 asks for less
/// than 29 minutes; async-imap's own timeout restarts at every server keep-alive, so alone it
/// would never fire on a server that keeps talking.
pub const IDLE_REFRESH: Duration = Duration::from_secs(25 * 60);
/// Dovecot says "* OK Still here" every 2 minutes during IDLE: this much silence is a dead link.
const IDLE_SILENCE: Duration = Duration::from_secs(5 * 60);

impl Mailbox for ImapMailbox {
    fn name(&self) -> &str {
        &self.name
    }

    async fn select(&mut self) -> Result<Selected, MailboxError> {
        let folder = self.folder.clone();
        let timeout = self.timeout;
        let mailbox = match tokio::time::timeout(timeout, self.session()?.select(&folder)).await {
            Ok(Ok(m)) => m,
            Ok(Err(async_imap::error::Error::No(msg))) => {
                return Err(MailboxError::Select { folder, message: msg });
            }
            Ok(Err(e)) => {
                return Err(MailboxError::Protocol { command: "SELECT", message: e.to_string() });
            }
            Err(_) => {
                return Err(MailboxError::Timeout { command: "SELECT", seconds: timeout.as_secs() });
            }
        };
        let uid_validity = mailbox.uid_validity.ok_or_else(|| MailboxError::Protocol {
            command: "SELECT",
            message: "the server sent no UIDVALIDITY".into(),
        })?;
        Ok(Selected { uid_validity, exists: mailbox.exists })
    }

    async fn list_after(&mut self, after: u32) -> Result<Vec<Envelope>, MailboxError> {
        let start = after.saturating_add(1);
        let timeout = self.timeout;
        let session = self.session()?;
        let mut out: Vec<Envelope> = deadline(timeout, "UID FETCH (list)", async {
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
        let timeout = self.timeout;
        let session = self.session()?;
        let mut out: Vec<RawMessage> = deadline(timeout, "UID FETCH (bodies)", async {
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
        let timeout = self.timeout;
        let session = self.session()?;
        deadline(timeout, "UID STORE", async {
            let stream = session.uid_store(&set, format!("+FLAGS.SILENT ({keyword})")).await?;
            let _: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(())
        })
        .await
    }

    async fn wait_for_change(&mut self, at_most: Duration) -> Result<Wake, MailboxError> {
        if self.idle {
            self.idle_once(at_most).await
        } else {
            tokio::time::sleep(at_most).await;
            Ok(Wake::Timeout)
        }
    }

    async fn logout(&mut self) {
        if let Some(session) = self.session.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
        }
    }

    async fn existing(&mut self, uids: &[u32]) -> Result<Vec<u32>, MailboxError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(uids);
        let timeout = self.timeout;
        let session = self.session()?;
        let found = deadline(timeout, "UID SEARCH", session.uid_search(format!("UID {set}"))).await?;
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
        let timeout = self.timeout;
        let session = self.session()?;
        let found =
            deadline(timeout, "UID SEARCH", session.uid_search(format!("HEADER Message-ID \"{quoted}\""))).await?;
        let mut out: Vec<u32> = found.into_iter().collect();
        out.sort_unstable();
        Ok(out)
    }

    async fn delete(&mut self, uids: &[u32]) -> Result<(), MailboxError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let timeout = self.timeout;
        let session = self.session()?;
        // Plain EXPUNGE would also remove what other clients marked \Deleted: without UIDPLUS we stop.
        if !deadline(timeout, "CAPABILITY", session.capabilities()).await?.has_str("UIDPLUS") {
            return Err(MailboxError::Protocol {
                command: "UID EXPUNGE",
                message: "the server lacks UIDPLUS, so mailroom cannot expunge only the purged messages; \
                          set privacy.purge_mailbox to \"move:FOLDER\" or \"keep\""
                    .into(),
            });
        }
        deadline(timeout, "UID STORE", async {
            let stream = session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)").await?;
            let _: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(())
        })
        .await?;
        deadline(timeout, "UID EXPUNGE", async {
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
        let timeout = self.timeout;
        let session = self.session()?;
        // Created if missing; an existing folder answers NO, which is fine.
        let _ = deadline(timeout, "CREATE", session.create(folder)).await;
        let caps = deadline(timeout, "CAPABILITY", session.capabilities()).await?;
        if caps.has_str("MOVE") {
            return deadline(timeout, "UID MOVE", session.uid_mv(&set, folder)).await;
        }
        if !caps.has_str("UIDPLUS") {
            return Err(MailboxError::Protocol {
                command: "UID MOVE",
                message: "the server has neither MOVE nor UIDPLUS: mailroom cannot move only the purged messages"
                    .into(),
            });
        }
        deadline(timeout, "UID COPY", session.uid_copy(&set, folder)).await?;
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
