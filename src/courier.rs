//! The way out: the `Courier` trait (hands one rendered mail to the world) and its SMTP
//! implementation.
//!
//! May: talk SMTP. May not: decide what to send or when: it only ever sends what the outbox
//! sender (the `outbox` module) hands it, which only ever comes from committed outbox entries.
//! Mail is sent with a null envelope sender (`MAIL FROM:<>`), as RFC 3834 recommends for
//! automatic responses, so a reply that bounces can never start a loop.

use std::sync::Mutex;
use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::response::Severity;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::auth::{Auth, AuthPart, Credential};
use crate::config::{Config, ConfigError, SmtpConfig, TlsMode};
use crate::error::{Classified, Retry};
use crate::mail::OutgoingMail;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub retry: Retry,
    pub message: String,
}

impl Classified for SendError {
    fn retry(&self) -> Retry {
        self.retry
    }
}

/// The way out, by role.
pub trait Courier {
    fn deliver(&self, mail: &OutgoingMail) -> impl Future<Output = Result<(), SendError>> + Send;
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
    let permanent = |m: String| SendError { retry: Retry::Permanent, message: m };
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
    let permanent = |m: &str| SendError { retry: Retry::Permanent, message: m.to_owned() };
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

/// SMTP submission through lettre (rustls; implicit TLS or STARTTLS; AUTH with a password, or
/// XOAUTH2 with an access token).
///
/// lettre fixes a transport's credentials when it is built, so the transport (and its pool of
/// connections) is built again whenever the credential changes: a new token, a new password.
pub struct SmtpCourier {
    auth: Auth,
    host: String,
    port: u16,
    tls: Tls,
    timeout: Duration,
    /// The transport, and the secret it was built with.
    current: Mutex<Option<(String, AsyncSmtpTransport<Tokio1Executor>)>>,
    from: Mailbox,
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
        let mut tls = TlsParameters::builder(smtp.host.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem = std::fs::read(ca).map_err(|e| invalid("smtp.ca_file", format!("{}: {e}", ca.display())))?;
            let cert = lettre::transport::smtp::client::Certificate::from_pem(&pem)
                .map_err(|e| invalid("smtp.ca_file", e.to_string()))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls.build_rustls().map_err(|e| invalid("smtp.tls", e.to_string()))?;
        if smtp.auth == crate::config::AuthMethod::Password {
            // A missing password file is a configuration error at start, not a send failure later.
            cfg.smtp_password()?;
        }
        let from_addr: Address = cfg.identity.from.parse().map_err(|e| invalid("identity.from", format!("{e}")))?;
        Ok(SmtpCourier {
            auth,
            host: smtp.host.clone(),
            port: smtp.port,
            tls: match smtp.tls {
                TlsMode::Implicit => Tls::Wrapper(tls),
                TlsMode::Starttls => Tls::Required(tls),
            },
            timeout: Duration::from_secs(smtp.timeout_secs),
            current: Mutex::new(None),
            from: Mailbox::new(Some(cfg.identity.organisation.clone()), from_addr),
        })
    }

    /// The transport for the credential of the moment, built anew when it changed.
    async fn transport(&self) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Credential), SendError> {
        let credential = self.auth.credential(AuthPart::Smtp).await.map_err(|e| SendError {
            retry: Retry::Transient,
            message: format!("no credentials for the SMTP login: {e}"),
        })?;
        let (user, secret, mechanisms) = match &credential {
            Credential::Password { user, password } => {
                (user.clone(), password.expose().to_owned(), vec![Mechanism::Plain, Mechanism::Login])
            }
            Credential::Bearer(b) => (b.user.clone(), b.token.expose().to_owned(), vec![Mechanism::Xoauth2]),
        };
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built_with, transport)) = current.as_ref()
            && *built_with == secret
        {
            return Ok((transport.clone(), credential));
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
            .port(self.port)
            .tls(self.tls.clone())
            .credentials(Credentials::new(user, secret.clone()))
            .authentication(mechanisms)
            .timeout(Some(self.timeout))
            .build();
        *current = Some((secret, transport.clone()));
        Ok((transport, credential))
    }

    /// Records what the server said about the credential; a refused one is not used again.
    async fn judge(&self, credential: &Credential, result: &Result<(), lettre::transport::smtp::Error>) {
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
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(_) => {}
        }
    }

    /// Connects and logs in, sending nothing: `mailroom check-config --connect`.
    pub async fn check(&self) -> Result<String, SendError> {
        let (transport, credential) = self.transport().await?;
        let result = match transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => {
                return Err(SendError {
                    retry: Retry::Transient,
                    message: "the connection did not answer NOOP".into(),
                });
            }
            Err(e) => Err(e),
        };
        self.judge(&credential, &result).await;
        match result {
            Ok(()) => Ok(match credential {
                Credential::Password { .. } => "password (PLAIN/LOGIN)".into(),
                Credential::Bearer(_) => "an access token (XOAUTH2)".into(),
            }),
            Err(e) if is_auth_error(&e) => Err(SendError {
                retry: Retry::Permanent,
                message: crate::auth::server_refusal(AuthPart::Smtp, &credential, &smtp_answer(&e)).to_string(),
            }),
            Err(e) => Err(SendError { retry: classify_smtp(&e, false), message: without_addresses(&e.to_string()) }),
        }
    }
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

/// Whether a failed send may work later. `recipient_needs_utf8`: the recipient's local part is
/// not ASCII, so the server must offer SMTPUTF8; lettre checks the server's EHLO and refuses
/// such a recipient itself when it does not. The server will not grow the extension between
/// two retries: that recipient can never be sent to through it, so the failure is permanent.
fn classify_smtp(e: &lettre::transport::smtp::Error, recipient_needs_utf8: bool) -> Retry {
    if recipient_needs_utf8 && e.is_client() && e.to_string().contains("SMTPUTF8") {
        return Retry::Permanent;
    }
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
        let needs_utf8 = !to.user().is_ascii();
        // Null reverse-path: bounces of automatic replies go nowhere (RFC 3834 §3.3).
        let envelope = lettre::address::Envelope::new(None, vec![to])
            .map_err(|e| SendError { retry: Retry::Permanent, message: e.to_string() })?;
        let (transport, credential) = self.transport().await?;
        let result = transport.send_raw(&envelope, &message.formatted()).await.map(|_| ());
        self.judge(&credential, &result).await;
        result.map_err(|e| {
            let retry = classify_smtp(&e, needs_utf8);
            let message = if retry == Retry::Permanent && e.is_client() {
                format!(
                    "the recipient's address needs SMTPUTF8, which the server does not offer ({})",
                    without_addresses(&e.to_string())
                )
            } else {
                without_addresses(&e.to_string())
            };
            SendError { retry, message }
        })
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
