//! The SMTP courier against a fake submission server on loopback (implicit TLS with the test
//! certificate in tests/fixtures/tls): what it does when the connection is lost after the final
//! dot (the mail may have left: `uncertain`, never sent again), and how it reuses connections.
//! The real Postfix is exercised by the end-to-end tier (tests/e2e.rs, tests/crash.rs).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use mailroom::config::Config;
use mailroom::courier::{Courier, SmtpCourier};
use mailroom::error::Retry;
use mailroom::mail::{MailKind, OutgoingMail, ReplyKind};
use mailroom::mailbox::{Envelope, Mailbox, MailboxError, RawMessage, Selected, Wake};
use mailroom::pipeline::Pipeline;
use mailroom::reply::Replier;
use mailroom::service::Quiet;
use mailroom::store::{Ledger, Store};
use tokio::sync::watch;

use common::{application_eml, pdf, write_config};

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    /// The password of each login, in order.
    logins: Vec<String>,
    /// Messages received whole (up to and including the final dot).
    messages: usize,
}

/// A submission server that speaks just enough SMTP; with `drop_after_dot` it reads a whole
/// message and closes the connection instead of answering it.
struct FakeSmtp {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    drop_after_dot: Arc<AtomicBool>,
}

impl FakeSmtp {
    fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let drop_after_dot = Arc::new(AtomicBool::new(false));
        let tls = server_tls();
        let (s, d) = (seen.clone(), drop_after_dot.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                s.lock().unwrap().connections += 1;
                let (s, d, tls) = (s.clone(), d.clone(), tls.clone());
                std::thread::spawn(move || serve(stream, tls, &s, &d));
            }
        });
        FakeSmtp { port, seen, drop_after_dot }
    }
}

fn server_tls() -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let dir = fixtures();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("cert.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

fn serve(stream: TcpStream, tls: Arc<rustls::ServerConfig>, seen: &Mutex<Seen>, drop_after_dot: &AtomicBool) {
    let conn = rustls::ServerConnection::new(tls).unwrap();
    let mut io = BufReader::new(rustls::StreamOwned::new(conn, stream));
    let say = |io: &mut BufReader<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>, text: &str| {
        io.get_mut().write_all(text.as_bytes()).and_then(|()| io.get_mut().flush()).is_ok()
    };
    if !say(&mut io, "220 fake ESMTP\r\n") {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-fake\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".to_owned()
        } else if let Some(b64) = line.strip_prefix("AUTH PLAIN ") {
            let plain = base64_decode(b64.trim());
            let password = plain.split(|b| *b == 0).nth(2).unwrap_or_default();
            seen.lock().unwrap().logins.push(String::from_utf8_lossy(password).into_owned());
            "235 2.7.0 ok\r\n".to_owned()
        } else if ["MAIL", "RCPT", "RSET", "NOOP"].iter().any(|verb| upper.starts_with(verb)) {
            "250 2.0.0 ok\r\n".to_owned()
        } else if upper.starts_with("DATA") {
            if !say(&mut io, "354 go on\r\n") {
                return;
            }
            loop {
                line.clear();
                if io.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
            }
            seen.lock().unwrap().messages += 1;
            if drop_after_dot.load(Ordering::SeqCst) {
                // The whole mail is here; the answer never leaves.
                let _ = io.get_mut().sock.shutdown(std::net::Shutdown::Both);
                return;
            }
            "250 2.0.0 queued\r\n".to_owned()
        } else if upper.starts_with("QUIT") {
            let _ = say(&mut io, "221 bye\r\n");
            return;
        } else {
            "502 5.5.2 what\r\n".to_owned()
        };
        if !say(&mut io, &reply) {
            return;
        }
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

struct World {
    dir: tempfile::TempDir,
    cfg: Config,
    password_file: PathBuf,
}

impl World {
    fn new(smtp: &FakeSmtp) -> World {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("smtp-password");
        set_password(&password_file, "one");
        let imap = "host = \"imap.invalid\"\nusername = \"contact@example.test\"\npassword = \"x\"";
        let smtp = format!(
            "host = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nusername = \"contact@example.test\"\n\
             password_file = \"{}\"\nca_file = \"{}\"\ntimeout_secs = 5",
            smtp.port,
            password_file.display(),
            fixtures().join("ca.pem").display()
        );
        let path = write_config(dir.path(), imap, &smtp, "");
        let cfg = Config::load_with_env(&path, std::iter::empty()).unwrap();
        World { dir, cfg, password_file }
    }

    fn courier(&self) -> SmtpCourier {
        SmtpCourier::new(&self.cfg).unwrap()
    }
}

fn set_password(path: &Path, password: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn ack(n: u32) -> OutgoingMail {
    OutgoingMail {
        to: "jeanne.dupre@example.test".into(),
        to_name: Some("Jeanne Dupré".into()),
        subject: "Re: Candidature".into(),
        text: "Bonjour".into(),
        html: None,
        message_id: format!("mailroom.ack.{n}@example.test"),
        in_reply_to: None,
        references: Vec::new(),
        kind: MailKind::Ack(ReplyKind::Complete),
        attachments: Vec::new(),
    }
}

#[tokio::test]
async fn a_connection_lost_after_the_final_dot_is_perhaps_sent_never_retried() {
    let server = FakeSmtp::start();
    let world = World::new(&server);
    server.drop_after_dot.store(true, Ordering::SeqCst);
    let e = world.courier().deliver(&ack(1)).await.unwrap_err();
    assert!(e.maybe_sent, "the whole mail was sent: it may have been accepted ({e})");
    assert_eq!(e.retry, Retry::Permanent, "{e}");
    assert_eq!(server.seen.lock().unwrap().messages, 1);
    let _ = world.dir.path();
}

#[tokio::test]
async fn connections_are_reused_but_not_once_the_credential_changed() {
    let server = FakeSmtp::start();
    let world = World::new(&server);
    let courier = world.courier();
    for n in 0..3 {
        courier.deliver(&ack(n)).await.unwrap();
    }
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!((seen.connections, seen.messages), (1, 3), "one connection for three mails");
        assert_eq!(seen.logins, ["one"]);
    }
    // A changed password: the pooled connection logged in with the old one is not reused.
    set_password(&world.password_file, "two");
    courier.deliver(&ack(3)).await.unwrap();
    let seen = server.seen.lock().unwrap();
    assert_eq!((seen.connections, seen.messages), (2, 4));
    assert_eq!(seen.logins, ["one", "two"]);
}

#[tokio::test]
async fn a_connection_opened_ahead_of_need_carries_the_next_mail() {
    let server = FakeSmtp::start();
    let world = World::new(&server);
    let courier = world.courier();
    courier.warm().await;
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!((seen.connections, seen.messages), (1, 0), "logged in, nothing sent");
        assert_eq!(seen.logins, ["one"]);
    }
    // One is ready: another warm-up opens none.
    courier.warm().await;
    assert_eq!(server.seen.lock().unwrap().connections, 1);
    courier.deliver(&ack(1)).await.unwrap();
    let seen = server.seen.lock().unwrap();
    assert_eq!((seen.connections, seen.messages), (1, 1), "the mail went on the connection made ahead");
}

/// One application, as the pipeline tier's fake mailbox holds it.
#[derive(Default)]
struct FakeMailbox {
    messages: common::FakeMessages,
}

impl Mailbox for FakeMailbox {
    fn name(&self) -> &str {
        "contact@fake/INBOX"
    }
    async fn select(&mut self) -> Result<Selected, MailboxError> {
        Ok(Selected { uid_validity: 7, exists: self.messages.len() as u32 })
    }
    async fn list_after(&mut self, after: u32) -> Result<Vec<Envelope>, MailboxError> {
        Ok(common::envelopes_after(&self.messages, after))
    }
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<RawMessage>, MailboxError> {
        Ok(common::raw_messages(&self.messages, uids))
    }
    async fn add_keyword(&mut self, _: &[u32], _: &str) -> Result<(), MailboxError> {
        Ok(())
    }
    async fn wait_for_change(&mut self, at_most: std::time::Duration) -> Result<Wake, MailboxError> {
        tokio::time::sleep(at_most).await;
        Ok(Wake::Timeout)
    }
    async fn logout(&mut self) {}
}

/// The whole way: the pass queues the acknowledgement, the outbox hands it to the courier, the
/// server takes the whole mail and the connection dies before its answer. The entry is
/// `uncertain` at once, and the next pass, with the server well again, does not send it again.
#[tokio::test]
async fn an_acknowledgement_perhaps_sent_is_uncertain_and_not_sent_again() {
    let server = FakeSmtp::start();
    let world = World::new(&server);
    let eml = application_eml(
        "Jeanne Dupré <jeanne.dupre@example.test>",
        "contact@example.test",
        "Candidature stage gestion de projet",
        "jeanne-1@example.test",
        &[("Return-Path", "<jeanne.dupre@example.test>")],
        "Bonjour, veuillez trouver ci-joint mon CV et ma lettre de motivation.",
        &[
            ("CV Jeanne Dupré.pdf", "application/pdf", &pdf("cv 1")),
            ("Lettre de motivation.pdf", "application/pdf", &pdf("lm")),
        ],
    );
    let mut mailbox = FakeMailbox::default();
    mailbox.messages.insert(1, (Utc::now() + chrono::Duration::seconds(1), eml));
    let store = Store::open(&world.cfg.storage.state_path).unwrap();
    let pipeline = Pipeline::new(&world.cfg, Replier::new(&world.cfg).unwrap(), store);
    let courier = world.courier();
    let (_stop_tx, stop) = watch::channel(false);

    server.drop_after_dot.store(true, Ordering::SeqCst);
    let (report, sent) = mailroom::daemon::once(&pipeline, &mut mailbox, &courier, &Quiet, stop.clone()).await.unwrap();
    assert_eq!(report.filed, 1);
    assert_eq!((sent.sent, sent.retrying, sent.failed), (0, 0, 1));
    let totals = pipeline.store().totals().unwrap();
    assert_eq!((totals.outbox_uncertain, totals.outbox_pending, totals.outbox_sent), (1, 0, 0));
    assert_eq!(server.seen.lock().unwrap().messages, 1);

    server.drop_after_dot.store(false, Ordering::SeqCst);
    let (_, sent) = mailroom::daemon::once(&pipeline, &mut mailbox, &courier, &Quiet, stop).await.unwrap();
    assert_eq!(sent.sent, 0);
    assert_eq!(server.seen.lock().unwrap().messages, 1, "never handed to the server a second time");
    assert_eq!(pipeline.store().totals().unwrap().outbox_uncertain, 1);
}
