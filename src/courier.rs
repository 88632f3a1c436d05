//! The way out: the `Courier` trait (hands one rendered mail to the world) and its SMTP
//! implementation.
//!
//! May: talk SMTP. May not: decide what to send or when: it only ever sends what the outbox
//! sender (the `outbox` module) hands it, which only ever comes from committed outbox entries.
//! Mail is sent with a null envelope sender (`MAIL FROM:<>`), as RFC 3834 recommends for
//! automatic responses, so a reply that bounces can never start a loop.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Severity;
use lettre::{Address, Message};

use crate::auth::{Auth, AuthPart, Credential};
use crate::config::{Config, ConfigError, SmtpConfig, TlsMode};
use crate::error::{Classified, Retry};
use crate::mail::OutgoingMail;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub retry: Retry,
    pub message: String,
    /// The connection was lost (or the server fell silent) after the whole message was sent and
    /// before the server answered: it may have been accepted. Never retried (at most once): the
    /// outbox marks it `uncertain`, and it is looked for in the Sent folder.
    pub maybe_sent: bool,
}

impl Classified for SendError {
    fn retry(&self) -> Retry {
        self.retry
    }
}

/// The way out, by role.
pub trait Courier {
    fn deliver(&self, mail: &OutgoingMail) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Mail may soon need sending (new messages are being filed): have a connection ready, so the
    /// acknowledgement does not wait for a login. Best effort, nothing is sent; a courier without
    /// connections does nothing.
    fn warm(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// `Auto-Submitted` (RFC 3834): `auto-replied` on acknowledgements, `auto-generated` on the
/// digest. Other responders must not answer either.
#[derive(Debug, Clone)]
struct AutoSubmitted(&'static str);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted("auto-generated"))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.into())
    }
}

/// `X-Auto-Response-Suppress: All`: Exchange and Outlook must not answer us either.
#[derive(Debug, Clone)]
struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoResponseSuppress)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".into())
    }
}

/// Builds the MIME message. Every header goes through lettre's typed API, and names and subjects
/// are reduced to one line first, so nothing a candidate wrote can add a header. What is copied
/// from the application is bounded and checked here too (an entry queued by an older version
/// may hold anything): a display name that is not a short name, and ids that are not
/// Message-IDs, are left out rather than cut.
pub fn build_message(from: &Mailbox, mail: &OutgoingMail) -> Result<Message, SendError> {
    let permanent = |m: String| SendError { retry: Retry::Permanent, message: m, maybe_sent: false };
    let to = envelope_address(&mail.to)?;
    let one_line =
        |s: &str| s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned();
    let angle = |id: &str| format!("<{}>", one_line(id).trim_matches(['<', '>']));
    let to_name = mail.to_name.as_deref().and_then(|n| crate::mail::person_name(n, 6, 64));
    let mut builder = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(to_name, to))
        .subject(one_line(&mail.subject))
        .message_id(Some(angle(&mail.message_id)))
        .header(AutoSubmitted(mail.kind.auto_submitted()))
        .header(AutoResponseSuppress);
    if let Some(irt) = mail.in_reply_to.as_deref().and_then(crate::mail::message_id) {
        builder = builder.in_reply_to(angle(&irt));
    }
    let references = crate::mail::reply_references(mail.references.iter().map(String::as_str), None);
    if !references.is_empty() {
        builder = builder.references(references.iter().map(|r| angle(r)).collect::<Vec<_>>().join(" "));
    }
    let body = match &mail.html {
        Some(html) => MultiPart::alternative_plain_html(mail.text.clone(), html.clone()),
        None => {
            MultiPart::mixed().singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(mail.text.clone()))
        }
    };
    let built = if mail.attachments.is_empty() {
        builder.multipart(body)
    } else {
        let mut mixed = MultiPart::mixed().multipart(body);
        for a in &mail.attachments {
            let content_type = ContentType::parse(&a.content_type)
                .map_err(|e| permanent(format!("attachment {}: {e}", a.filename)))?;
            mixed = mixed
                .singlepart(lettre::message::Attachment::new(a.filename.clone()).body(a.content.clone(), content_type));
        }
        builder.multipart(mixed)
    };
    built.map_err(|e| permanent(format!("cannot build the reply: {e}")))
}

/// The recipient as SMTP and the `To:` header write it. A domain in Unicode is written in its
/// ASCII form (IDNA), which every server takes; only a local part outside ASCII still needs a
/// server that offers SMTPUTF8 (RFC 6531). Errors name no address: they reach the logs.
pub fn envelope_address(address: &str) -> Result<Address, SendError> {
    let permanent = |m: &str| SendError { retry: Retry::Permanent, message: m.to_owned(), maybe_sent: false };
    let (user, domain) = address.rsplit_once('@').ok_or_else(|| permanent("the recipient's address has no domain"))?;
    let domain = if domain.is_ascii() {
        domain.to_owned()
    } else {
        idna::domain_to_ascii(domain).map_err(|_| permanent("the recipient's domain is not a valid domain name"))?
    };
    Address::new(user, domain).map_err(|e| permanent(&format!("the recipient's address is not valid: {e}")))
}

/// A server's reply, or any error text, with the addresses taken out: servers quote the
/// recipient ("<jeanne@…>: Recipient address rejected"), and these texts are logged.
pub fn without_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.contains('@') {
            let core = |c: char| !matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | '"' | '\'' | ',' | ';' | ':' | '.');
            let start = word.find(core).unwrap_or(0);
            let end = word.rfind(core).map_or(word.len(), |e| e + word[e..].chars().next().map_or(1, char::len_utf8));
            out.push_str(&word[..start]);
            out.push_str("(address)");
            out.push_str(&word[end.max(start)..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

/// SMTP submission: lettre's protocol code (commands, replies, AUTH with a password or XOAUTH2,
/// STARTTLS through rustls) over sockets of our own, kept in a small pool.
///
/// Why not lettre's `AsyncSmtpTransport`: its socket lacks `TCP_NODELAY`, and it writes the final
/// `.` of DATA in a segment of its own, which then waits for the server's delayed ACK (about
/// 45 ms on Linux, per message: the server cannot answer before it has the dot). Ours set
/// `TCP_NODELAY`, so a submission costs the server's own time and a few loopback round trips.
/// Owning the steps also tells a refusal before the data (never delivered: safe to retry) from a
/// connection lost after the final dot (perhaps delivered: [`SendError::maybe_sent`], never
/// retried), and bounds every step by `smtp.timeout_secs` (lettre's async client has no read
/// timeout).
///
/// Connections are reused while they work: one logged in with an older credential (a renewed
/// token, a changed password) is closed rather than reused, and one left idle for
/// [`POOL_IDLE`] is closed by a reaper task, so an idle daemon holds no connection.
pub struct SmtpCourier {
    auth: Auth,
    host: String,
    port: u16,
    tls: Tls,
    timeout: Duration,
    hello: ClientId,
    pool: Arc<Pool>,
    from: Mailbox,
}

/// How a connection is secured: only the mode configured is built, since each holds a parsed copy
/// of the trusted roots (lettre builds its own for STARTTLS; implicit TLS shares the process's,
/// see the tls module).
enum Tls {
    /// lettre upgrades its own stream.
    Starttls(TlsParameters),
    /// We wrap the socket before lettre reads the greeting.
    Implicit(tokio_rustls::TlsConnector),
}

/// Idle connections, most recently used last.
#[derive(Default)]
struct Pool {
    idle: Mutex<Vec<Pooled>>,
    /// A reaper task is running (it ends when the pool is empty).
    reaping: AtomicBool,
    /// A connection is being opened ahead of need ([`Courier::warm`]): one at a time.
    warming: AtomicBool,
    /// Notified when a connection opened ahead of need is in the pool (or could not be opened).
    warmed: tokio::sync::Notify,
}

struct Pooled {
    conn: Session,
    /// The secret it logged in with.
    secret: String,
    since: Instant,
}

/// A logged-in connection, with what its server offers beyond what lettre tracks.
struct Session {
    conn: AsyncSmtpConnection,
    /// ESMTP PIPELINING (RFC 2920): MAIL, RCPT and DATA go in one write, their replies are read
    /// after, so a mail costs two round trips (the envelope, then the message) instead of four.
    pipelining: bool,
}

impl std::ops::Deref for Session {
    type Target = AsyncSmtpConnection;
    fn deref(&self) -> &AsyncSmtpConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut AsyncSmtpConnection {
        &mut self.conn
    }
}

/// A connection left idle this long is closed.
pub const POOL_IDLE: Duration = Duration::from_secs(10);
/// Connections kept idle at most: the outbox keeps as many sends in flight
/// (`outbox::SEND_CONCURRENCY` is this), enough to hide the round trips, few enough to be polite
/// to a submission server that limits connections per client.
pub const POOL_MAX: usize = 4;

/// A pooled connection this close to [`POOL_IDLE`] does not count as ready for [`Courier::warm`].
const WARM_MARGIN: Duration = Duration::from_secs(2);

/// Where a send failed: before the data (nothing was delivered), or after it (perhaps delivered).
enum Failure {
    /// MAIL, RCPT or DATA: refused or lost before a byte of the message was sent.
    Envelope(SmtpFailure),
    /// The message and its final dot: a reply code says the server refused it; anything else
    /// (a lost connection, no reply in time) leaves it unknown whether it was accepted.
    Message(SmtpFailure),
}

enum SmtpFailure {
    Smtp(lettre::transport::smtp::Error),
    Io(String),
    Timeout(Duration),
}

impl SmtpFailure {
    fn smtp(&self) -> Option<&lettre::transport::smtp::Error> {
        match self {
            SmtpFailure::Smtp(e) => Some(e),
            _ => None,
        }
    }

    /// The server answered with a reply code (the connection itself worked).
    fn has_reply(&self) -> bool {
        self.smtp().is_some_and(|e| e.status().is_some())
    }

    fn text(&self) -> String {
        match self {
            SmtpFailure::Smtp(e) => without_addresses(&e.to_string()),
            SmtpFailure::Io(e) => e.clone(),
            SmtpFailure::Timeout(t) => format!("no answer from the SMTP server within {} s", t.as_secs()),
        }
    }
}

/// Runs one SMTP step under the timeout.
async fn step<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SmtpFailure> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SmtpFailure::Smtp(e)),
        Err(_) => Err(SmtpFailure::Timeout(timeout)),
    }
}

/// Writes of a socket newtype go straight to the stream it wraps (lettre takes its own trait, so
/// each stream it is given is a newtype of ours).
macro_rules! write_through {
    ($socket:ty) => {
        impl tokio::io::AsyncWrite for $socket {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
                Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.get_mut().0).poll_flush(cx)
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
            }
        }
    };
}

/// The TCP socket under every SMTP connection: it acknowledges what it reads at once
/// (`TCP_QUICKACK` re-armed after each read that brought data).
///
/// Why: Postfix's smtpd leaves Nagle's algorithm on. After the TLS handshake it writes its
/// session tickets, then the answer to our EHLO in a second small segment, which Nagle holds
/// until the first one is acknowledged; and Linux delays that acknowledgement up to 40 ms,
/// since we have nothing to send while we wait for the answer. Seen with tcpdump: every new
/// connection took 45–50 ms instead of 4 (what a Python client needs), and a new connection is
/// what an acknowledgement after a quiet spell pays. Linux only: elsewhere this is plain TCP.
#[derive(Debug)]
struct QuickAck(tokio::net::TcpStream);

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.0).poll_read(cx, buf);
        #[cfg(target_os = "linux")]
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Not permanent by design: the kernel may fall back to delayed ACKs, hence each read.
            // A failure only costs the delay this avoids.
            let _ = this.0.set_quickack(true);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = before;
        polled
    }
}

write_through!(QuickAck);

impl AsyncTokioStream for QuickAck {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

/// An implicit-TLS socket as lettre's connection takes it.
#[derive(Debug)]
struct TlsSocket(tokio_rustls::client::TlsStream<QuickAck>);

impl tokio::io::AsyncRead for TlsSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

write_through!(TlsSocket);

impl AsyncTokioStream for TlsSocket {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl SmtpCourier {
    /// With the credentials of the configuration alone (see [`SmtpCourier::with_auth`]).
    pub fn new(cfg: &Config) -> Result<SmtpCourier, ConfigError> {
        Self::with_auth(cfg, Auth::from_config(cfg)?)
    }

    /// With credentials shared with the rest of the process.
    pub fn with_auth(cfg: &Config, auth: Auth) -> Result<SmtpCourier, ConfigError> {
        let smtp: &SmtpConfig = &cfg.smtp;
        let invalid = |key: &str, message: String| ConfigError::Invalid { key: key.into(), message };
        let tls = match smtp.tls {
            TlsMode::Starttls => {
                let mut tls = TlsParameters::builder(smtp.host.clone());
                if let Some(ca) = &smtp.ca_file {
                    // Read as every other user of a CA file reads it (the errors name the file).
                    for cert in crate::tls::load_ca_file(ca).map_err(|e| invalid("smtp.ca_file", e.to_string()))? {
                        let cert = lettre::transport::smtp::client::Certificate::from_der(cert.to_vec())
                            .map_err(|e| invalid("smtp.ca_file", e.to_string()))?;
                        tls = tls.add_root_certificate(cert);
                    }
                }
                Tls::Starttls(tls.build_rustls().map_err(|e| invalid("smtp.tls", e.to_string()))?)
            }
            TlsMode::Implicit => Tls::Implicit(tokio_rustls::TlsConnector::from(
                crate::tls::client_config(smtp.ca_file.as_deref())
                    .map_err(|e| invalid("smtp.ca_file", e.to_string()))?,
            )),
        };
        if smtp.auth == crate::config::AuthMethod::Password {
            // A missing password file is a configuration error at start, not a send failure later.
            cfg.smtp_password()?;
        }
        let from_addr: Address = cfg.identity.from.parse().map_err(|e| invalid("identity.from", format!("{e}")))?;
        Ok(SmtpCourier {
            auth,
            host: smtp.host.clone(),
            port: smtp.port,
            tls,
            timeout: Duration::from_secs(smtp.timeout_secs),
            hello: ClientId::default(),
            pool: Arc::new(Pool::default()),
            from: Mailbox::new(Some(cfg.identity.organisation.clone()), from_addr),
        })
    }

    /// The credential of the moment, as lettre takes it, with the secret that identifies it.
    async fn credential(&self) -> Result<(Credential, Credentials, Vec<Mechanism>, String), SendError> {
        let credential = self.auth.credential(AuthPart::Smtp).await.map_err(|e| SendError {
            retry: Retry::Transient,
            message: format!("no credentials for the SMTP login: {e}"),
            maybe_sent: false,
        })?;
        let (user, secret, mechanisms) = match &credential {
            Credential::Password { user, password } => {
                (user.clone(), password.expose().to_owned(), vec![Mechanism::Plain, Mechanism::Login])
            }
            Credential::Bearer(b) => (b.user.clone(), b.token.expose().to_owned(), vec![Mechanism::Xoauth2]),
        };
        Ok((credential, Credentials::new(user, secret.clone()), mechanisms, secret))
    }

    /// A new connection: TCP with `TCP_NODELAY` and quick acknowledgements ([`QuickAck`]), TLS
    /// (implicit or STARTTLS), EHLO, AUTH.
    async fn connect(&self, credentials: &Credentials, mechanisms: &[Mechanism]) -> Result<Session, SmtpFailure> {
        let io = |what: &str, e: std::io::Error| SmtpFailure::Io(format!("{what} {}:{}: {e}", self.host, self.port));
        let tcp =
            match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
                .await
            {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => return Err(io("cannot connect to", e)),
                Err(_) => return Err(SmtpFailure::Timeout(self.timeout)),
            };
        tcp.set_nodelay(true).map_err(|e| io("cannot set TCP_NODELAY on the connection to", e))?;
        let tcp = QuickAck(tcp);
        let mut conn = match &self.tls {
            Tls::Implicit(implicit) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| SmtpFailure::Io(format!("{}: not a valid server name: {e}", self.host)))?;
                let tls = match tokio::time::timeout(self.timeout, implicit.connect(name, tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return Err(io("TLS with", e)),
                    Err(_) => return Err(SmtpFailure::Timeout(self.timeout)),
                };
                let socket: Box<dyn AsyncTokioStream> = Box::new(TlsSocket(tls));
                step(self.timeout, AsyncSmtpConnection::connect_with_transport(socket, &self.hello)).await?
            }
            Tls::Starttls(starttls) => {
                let socket: Box<dyn AsyncTokioStream> = Box::new(tcp);
                let mut conn =
                    step(self.timeout, AsyncSmtpConnection::connect_with_transport(socket, &self.hello)).await?;
                step(self.timeout, conn.starttls(starttls.clone(), &self.hello)).await?;
                conn
            }
        };
        // lettre keeps only the extensions it knows from its EHLO, and PIPELINING is not one of
        // them: ask again (before AUTH; a round trip per connection, and connections are pooled).
        let ehlo = step(self.timeout, conn.command(Ehlo::new(self.hello.clone()))).await?;
        let pipelining = ehlo
            .message()
            .any(|line| line.split_whitespace().next().is_some_and(|word| word.eq_ignore_ascii_case("PIPELINING")));
        step(self.timeout, conn.auth(mechanisms, credentials)).await?;
        Ok(Session { conn, pipelining })
    }

    /// An idle connection logged in with `secret`, if one is there. Older ones are dropped.
    fn reuse(&self, secret: &str) -> Option<Session> {
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(p) = idle.pop() {
            if p.secret == secret && p.since.elapsed() < POOL_IDLE {
                return Some(p.conn);
            }
        }
        None
    }

    /// A connection that just worked goes back to the pool; a reaper closes it if it stays idle.
    fn give_back(&self, conn: Session, secret: String) {
        {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() >= POOL_MAX {
                return;
            }
            idle.push(Pooled { conn, secret, since: Instant::now() });
        }
        if !self.pool.reaping.swap(true, Ordering::AcqRel) {
            let pool = Arc::downgrade(&self.pool);
            tokio::spawn(reap(pool));
        }
    }

    /// Records what the server said about the credential; a refused one is not used again.
    async fn judge(&self, credential: &Credential, result: Result<(), &lettre::transport::smtp::Error>) {
        match result {
            Ok(()) => self.auth.accepted(
                AuthPart::Smtp,
                match credential {
                    Credential::Password { .. } => "password",
                    Credential::Bearer(_) => "XOAUTH2",
                },
            ),
            Err(e) if is_auth_error(e) => {
                let failure = crate::auth::server_refusal(AuthPart::Smtp, credential, &smtp_answer(e));
                self.auth.refused(AuthPart::Smtp, credential, &failure).await;
                self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
            Err(_) => {}
        }
    }

    /// Connects and logs in, sending nothing: `mailroom check-config --connect`.
    pub async fn check(&self) -> Result<String, SendError> {
        let (credential, credentials, mechanisms, _) = self.credential().await?;
        let result = match self.connect(&credentials, &mechanisms).await {
            Ok(mut conn) => {
                let alive = step(self.timeout, async { Ok(conn.test_connected().await) }).await;
                let _ = tokio::time::timeout(self.timeout, conn.quit()).await;
                match alive {
                    Ok(true) => Ok(()),
                    _ => {
                        return Err(SendError {
                            retry: Retry::Transient,
                            message: "the connection did not answer NOOP".into(),
                            maybe_sent: false,
                        });
                    }
                }
            }
            Err(f) => Err(f),
        };
        if let Some(e) = result.as_ref().err().and_then(SmtpFailure::smtp) {
            self.judge(&credential, Err(e)).await;
        } else if result.is_ok() {
            self.judge(&credential, Ok(())).await;
        }
        match result {
            Ok(()) => Ok(match credential {
                Credential::Password { .. } => "password (PLAIN/LOGIN)".into(),
                Credential::Bearer(_) => "an access token (XOAUTH2)".into(),
            }),
            Err(SmtpFailure::Smtp(e)) if is_auth_error(&e) => Err(SendError {
                retry: Retry::Permanent,
                message: crate::auth::server_refusal(AuthPart::Smtp, &credential, &smtp_answer(&e)).to_string(),
                maybe_sent: false,
            }),
            Err(f) => Err(refusal(f)),
        }
    }

    /// MAIL, RCPT, DATA and the message on one connection. With PIPELINING the three commands go
    /// in one write and their replies are read in order; the first refusal is the answer (a
    /// server refuses DATA when no RCPT succeeded, RFC 2920 §3.1), and the connection is then
    /// closed rather than reused, whatever replies are still on their way.
    async fn transaction(&self, conn: &mut Session, to: &Address, message: &[u8]) -> Result<(), Failure> {
        let mut options = Vec::new();
        if !to.user().is_ascii() {
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        // Null reverse-path: bounces of automatic replies go nowhere (RFC 3834 §3.3).
        let mail = Mail::new(None, options);
        let rcpt = Rcpt::new(to.clone(), Vec::new());
        if conn.pipelining {
            // Each command's text ends in CRLF: one write, then the replies in order.
            let envelope = format!("{mail}{rcpt}{Data}");
            step(self.timeout, conn.command(envelope)).await.map_err(Failure::Envelope)?;
            step(self.timeout, conn.read_response()).await.map_err(Failure::Envelope)?;
            step(self.timeout, conn.read_response()).await.map_err(Failure::Envelope)?;
        } else {
            step(self.timeout, conn.command(mail)).await.map_err(Failure::Envelope)?;
            step(self.timeout, conn.command(rcpt)).await.map_err(Failure::Envelope)?;
            step(self.timeout, conn.command(Data)).await.map_err(Failure::Envelope)?;
        }
        tracing::trace!("smtp: data");
        step(self.timeout, conn.message(message)).await.map_err(Failure::Message)?;
        Ok(())
    }

    /// One mail, on a pooled connection or a new one. A pooled connection that fails before the
    /// message was sent (the server closed it while it was idle) is replaced once: nothing left.
    async fn submit(&self, to: &Address, message: &[u8]) -> Result<(), SendError> {
        let (credential, credentials, mechanisms, secret) = self.credential().await?;
        let mut pooled = self.reuse(&secret);
        if pooled.is_none() {
            // A connection being opened ahead of need is further along than a new one would be.
            let warmed = self.pool.warmed.notified();
            tokio::pin!(warmed);
            warmed.as_mut().enable();
            if self.pool.warming.load(Ordering::Acquire) {
                let _ = tokio::time::timeout(self.timeout, warmed).await;
                pooled = self.reuse(&secret);
            }
        }
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => match self.connect(&credentials, &mechanisms).await {
                    Ok(conn) => {
                        tracing::debug!("smtp: new connection");
                        conn
                    }
                    Err(f) => {
                        if let Some(e) = f.smtp() {
                            self.judge(&credential, Err(e)).await;
                        }
                        return Err(connect_error(f));
                    }
                },
            };
            if !to.user().is_ascii() && !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                // The server will not grow the extension between two tries: permanent.
                self.give_back(conn, secret);
                return Err(SendError {
                    retry: Retry::Permanent,
                    message: "the recipient's address needs SMTPUTF8, which the server does not offer".into(),
                    maybe_sent: false,
                });
            }
            match self.transaction(&mut conn, to, message).await {
                Ok(()) => {
                    self.judge(&credential, Ok(())).await;
                    self.give_back(conn, secret);
                    return Ok(());
                }
                Err(Failure::Envelope(f)) if reused && !f.has_reply() => {
                    tracing::debug!(error = %f.text(), "smtp: a pooled connection was closed; connecting again");
                    pooled = None;
                }
                Err(Failure::Envelope(f)) => {
                    if f.has_reply() {
                        let _ = tokio::time::timeout(self.timeout, conn.abort()).await;
                    }
                    return Err(refusal(f));
                }
                Err(Failure::Message(f)) if f.has_reply() => {
                    let _ = tokio::time::timeout(self.timeout, conn.abort()).await;
                    return Err(refusal(f));
                }
                Err(Failure::Message(f)) => {
                    return Err(SendError {
                        retry: Retry::Permanent,
                        message: format!(
                            "the connection was lost after the message was sent, before the server answered: \
                             it may or may not have been accepted ({})",
                            f.text()
                        ),
                        maybe_sent: true,
                    });
                }
            }
        }
    }
}

/// Closes connections left idle for [`POOL_IDLE`]; ends when the pool is empty (or dropped).
async fn reap(pool: std::sync::Weak<Pool>) {
    loop {
        tokio::time::sleep(POOL_IDLE / 2).await;
        let Some(pool) = pool.upgrade() else { return };
        let stale: Vec<Pooled> = {
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            let (stale, fresh) = std::mem::take(&mut *idle).into_iter().partition(|p| p.since.elapsed() >= POOL_IDLE);
            *idle = fresh;
            stale
        };
        for mut p in stale {
            let _ = tokio::time::timeout(Duration::from_secs(2), p.conn.quit()).await;
        }
        let idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.is_empty() {
            pool.reaping.store(false, Ordering::Release);
            return;
        }
    }
}

/// A failure to connect or log in, for the outbox (a refused login is transient: it is our
/// configuration or a token, never this mail's fault; see [`classify_smtp`]).
fn connect_error(f: SmtpFailure) -> SendError {
    refusal(f)
}

/// A refusal (or a failure) before the message was accepted, for the outbox: nothing was delivered.
fn refusal(f: SmtpFailure) -> SendError {
    let retry = match &f {
        SmtpFailure::Smtp(e) => classify_smtp(e),
        _ => Retry::Transient,
    };
    SendError { retry, message: f.text(), maybe_sent: false }
}

/// A refusal of the login, rather than of the mail: 530/534/535/538, or, with XOAUTH2, the
/// server's error challenge, which lettre does not answer (it drops the connection; the token
/// is not sent again either way).
fn is_auth_error(e: &lettre::transport::smtp::Error) -> bool {
    let code = e.status().map(|c| c.to_string());
    matches!(code.as_deref(), Some("530" | "534" | "535" | "538" | "454"))
        || (e.is_client() && {
            let text = e.to_string();
            text.contains("does not expect a challenge") || text.contains("No compatible authentication mechanism")
        })
}

fn smtp_answer(e: &lettre::transport::smtp::Error) -> String {
    let text = e.to_string();
    if text.contains("does not expect a challenge") {
        "it answered the token with an error challenge".into()
    } else {
        text
    }
}

/// Whether a refused send may work later.
fn classify_smtp(e: &lettre::transport::smtp::Error) -> Retry {
    match e.status() {
        // 5xx refuses this mail for good, except 53x: authentication, which is our configuration
        // (or the server's) and must not condemn every queued reply.
        Some(code) if code.severity == Severity::PermanentNegativeCompletion && !code.to_string().starts_with("53") => {
            Retry::Permanent
        }
        _ => Retry::Transient,
    }
}

impl Courier for SmtpCourier {
    async fn deliver(&self, mail: &OutgoingMail) -> Result<(), SendError> {
        let message = build_message(&self.from, mail)?;
        let to = envelope_address(&mail.to)?;
        self.submit(&to, &message.formatted()).await
    }

    /// Opens one connection into the pool when the pool has none, so that the next mail finds it
    /// logged in. Why: a new connection costs TCP, TLS, EHLO and AUTH (about 18 ms against the
    /// local Postfix, far more against a provider across the internet), and after a quiet spell
    /// every acknowledgement would pay it; the filing that precedes the acknowledgement takes
    /// about as long, so the login happens meanwhile. Unused, the connection is closed by the
    /// reaper after [`POOL_IDLE`]. A refused login is recorded as a send's would be (so the
    /// send does not try the same credential again); any other failure is left to the send.
    async fn warm(&self) {
        // A pooled connection close to its idle limit would be gone by the time the mail comes.
        let fresh = |p: &Pooled| p.since.elapsed() + WARM_MARGIN < POOL_IDLE;
        if self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).iter().any(fresh)
            || self.pool.warming.swap(true, Ordering::AcqRel)
        {
            return;
        }
        // Whatever ends it, a failure, or the future dropped by a stop: the next send must not
        // wait for a warm-up that is over.
        struct Over<'a>(&'a Pool);
        impl Drop for Over<'_> {
            fn drop(&mut self) {
                self.0.warming.store(false, Ordering::Release);
                self.0.warmed.notify_waiters();
            }
        }
        let _over = Over(&self.pool);
        if let Ok((credential, credentials, mechanisms, secret)) = self.credential().await {
            match self.connect(&credentials, &mechanisms).await {
                Ok(conn) => {
                    tracing::debug!("smtp: connection opened ahead of need");
                    self.give_back(conn, secret);
                }
                Err(f) => {
                    if let Some(e) = f.smtp() {
                        self.judge(&credential, Err(e)).await;
                    }
                    let e = connect_error(f);
                    tracing::debug!(error = %e.message, "smtp: could not open a connection ahead of need");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> OutgoingMail {
        OutgoingMail {
            to: "jeanne@example.test".into(),
            to_name: Some("Jeanne\r\nBcc: victim@example.test".into()),
            subject: "Re: Candidature\r\nBcc: victim@example.test".into(),
            text: "Bonjour".into(),
            html: Some("<p>Bonjour</p>".into()),
            message_id: "mailroom.ack.1234@example.test".into(),
            in_reply_to: Some("orig@example.test".into()),
            references: vec!["first@example.test".into(), "orig@example.test".into()],
            kind: crate::mail::MailKind::Ack(crate::mail::ReplyKind::Complete),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn replies_carry_the_loop_breaking_headers() {
        let from = Mailbox::new(Some("Example".into()), "contact@example.test".parse().unwrap());
        let text = String::from_utf8(build_message(&from, &mail()).unwrap().formatted()).unwrap();
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"), "{text}");
        assert!(text.contains("X-Auto-Response-Suppress: All\r\n"), "{text}");
        assert!(text.contains("In-Reply-To: <orig@example.test>\r\n"), "{text}");
        assert!(text.contains("References: <first@example.test> <orig@example.test>\r\n"), "{text}");
        assert!(text.contains("Message-ID: <mailroom.ack.1234@example.test>\r\n"), "{text}");
    }

    /// The header block of a built message, unfolded: (name, value) pairs.
    fn headers_of(text: &str) -> Vec<(String, String)> {
        let head = text.split("\r\n\r\n").next().unwrap();
        let mut out: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                out.last_mut().unwrap().1.push_str(line);
            } else if let Some((n, v)) = line.split_once(':') {
                out.push((n.to_owned(), v.to_owned()));
            }
        }
        out
    }

    #[test]
    fn copied_headers_are_bounded_and_well_formed() {
        let from = Mailbox::new(Some("Example".into()), "contact@example.test".parse().unwrap());
        let huge_id = format!("{}@example.test", "a".repeat(100_000));
        let mut m = mail();
        m.to_name = Some("Jeanne ".repeat(150_000));
        m.in_reply_to = Some(huge_id.clone());
        m.references = (0..20_000).map(|i| format!("ref{i}@lists.example.test")).collect();
        m.references.push(huge_id);
        m.references.push("not an id".into());
        m.references.push("orig@example.test".into());
        let text = String::from_utf8(build_message(&from, &m).unwrap().formatted()).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(head.len() < 4_000, "the header block is {} bytes", head.len());
        for line in head.split("\r\n") {
            assert!(line.len() <= 998, "a header line of {} bytes", line.len());
        }
        let headers = headers_of(&text);
        let get =
            |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned());
        // The address is always there, whatever the name was.
        assert!(get("To").unwrap().contains("<jeanne@example.test>") || get("To").unwrap() == "jeanne@example.test");
        // An id too long to be real is left out, never cut or folded inside.
        assert_eq!(get("In-Reply-To"), None, "{head}");
        let references = get("References").unwrap();
        let ids: Vec<&str> = references.split_whitespace().collect();
        assert!(ids.len() <= 10, "{} references", ids.len());
        assert_eq!(ids.last(), Some(&"<orig@example.test>"));
        for id in ids {
            assert!(id.starts_with('<') && id.ends_with('>') && id.matches('@').count() == 1, "{id}");
            assert!(id.len() <= 250, "{id}");
        }
    }

    #[test]
    fn an_internationalised_domain_is_written_in_ascii() {
        assert_eq!(envelope_address("jeanne@exämple.test").unwrap().to_string(), "jeanne@xn--exmple-cua.test");
        assert_eq!(envelope_address("jeanne@example.test").unwrap().to_string(), "jeanne@example.test");
        // A local part outside ASCII stays as it is: only SMTPUTF8 can carry it.
        assert_eq!(envelope_address("jérôme@exämple.test").unwrap().to_string(), "jérôme@xn--exmple-cua.test");
        for bad in ["no-domain", "a b@example.test", "jeanne@exa mple.test"] {
            let e = envelope_address(bad).unwrap_err();
            assert_eq!(e.retry, Retry::Permanent);
            assert!(!e.message.contains(bad), "errors name no address: {}", e.message);
        }
    }

    #[test]
    fn server_replies_lose_their_addresses() {
        assert_eq!(
            without_addresses("permanent error (550): 5.1.1 <jeanne.dupre@example.test>: Recipient address rejected"),
            "permanent error (550): 5.1.1 <(address)>: Recipient address rejected"
        );
        assert_eq!(without_addresses("to jeanne@example.test, twice"), "to (address), twice");
        assert_eq!(without_addresses("no address here"), "no address here");
    }

    #[test]
    fn crlf_in_name_or_subject_cannot_inject_a_header() {
        let from = Mailbox::new(None, "contact@example.test".parse().unwrap());
        let text = String::from_utf8(build_message(&from, &mail()).unwrap().formatted()).unwrap();
        let header = text.split("\r\n\r\n").next().unwrap();
        assert!(!header.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "{header}");
    }
}
